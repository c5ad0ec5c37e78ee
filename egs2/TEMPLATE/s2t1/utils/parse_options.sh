#!/usr/bin/env bash
# Kaldi-style option parsing, sourced by recipe scripts: every `--name value` (or `--name=value`) sets the shell
# variable `name`, which must already be defined (so a typo is an error, not a silent new variable). `--help`
# prints the script's header comment. Dashes in names become underscores. Parsing stops at the first non-option.

while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
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
    if ! declare -p "${_name}" > /dev/null 2>&1; then
        echo "$0: unknown option --${_name} (see $0 --help)" >&2
        exit 1
    fi
    printf -v "${_name}" '%s' "${_value}"
done
unset _name _value
