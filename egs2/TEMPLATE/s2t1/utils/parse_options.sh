#!/usr/bin/env bash
# Kaldi-style option parsing, sourced by recipe scripts: every `--name value` (or `--name=value`) sets the shell
# variable `name`, which must already be defined (so a typo is an error, not a silent new variable). Dashes in
# names become underscores. Parsing stops at the first non-option.
# `--help` prints the script's header comment and, when the script has an option block (utils/options.sh), every
# option with its value at that point (its default, or what the calling run.sh passed before --help) and its
# description. An alias declared in the block (`# alias --old --new ...`) sets the new name's variable.

. "$(dirname "${BASH_SOURCE[0]}")/options.sh"

while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
            if [ -n "$(option_names "$0")" ]; then
                echo
                echo "Options (--name value; shown with the value they have now):"
                print_options "$0"
            fi
            exit 0 ;;
        --*=*)
            _name="${1%%=*}"; _name="${_name#--}"; _value="${1#*=}"; shift ;;
        --*)
            _name="${1#--}"
            if [ $# -lt 2 ]; then echo "$0: option --${_name} needs a value" >&2; exit 1; fi
            _value="$2"; shift 2 ;;
        *) break ;;
    esac
    _name="${_name//-/_}"
    _new="$(option_alias "$0" "${_name}")"
    if [ -n "${_new}" ]; then
        echo "$0: --${_name} is the old name of --${_new} (accepted until the next release)" >&2
        _name="${_new}"
    fi
    if ! declare -p "${_name}" > /dev/null 2>&1; then
        echo "$0: unknown option --${_name} (see $0 --help)" >&2
        exit 1
    fi
    printf -v "${_name}" '%s' "${_value}"
done
unset _name _value _new
