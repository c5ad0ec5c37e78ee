#!/usr/bin/env bash
# The option block of a recipe script, read at run time so that the block is the one place where an option, its
# default and its description are written. Sourced by parse_options.sh and by the recipes' run.sh.
#
# A script's option block is the text between a line starting with "# ---- options" and a line starting with
# "# ---- end of options". Inside it:
#   name=default          # description (indented "# ..." lines below continue it)
#   # alias --old --new   description of the alias (the old name sets the new one's variable)
#   # Some heading        a heading for --help (any other comment line at the start of a line)

# option_block FILE: one tab-separated record per line of FILE's option block, in order:
#   opt <TAB> name <TAB> default as written <TAB> description
#   alias <TAB> old name <TAB> new name <TAB> description
#   section <TAB> heading
option_block() {
    awk '
        /^# ---- end of options/ { inside = 0 }
        inside && /^[A-Za-z_][A-Za-z0-9_]*=/ {
            n++; kind[n] = "opt"
            eq = index($0, "="); name[n] = substr($0, 1, eq - 1); rest = substr($0, eq + 1)
            hash = index(rest, "  #"); if (hash == 0) hash = index(rest, " #")
            if (hash > 0) { value[n] = substr(rest, 1, hash - 1); desc[n] = substr(rest, hash) }
            else { value[n] = rest; desc[n] = "" }
            sub(/[ \t]+$/, "", value[n]); sub(/^[ \t]*# ?/, "", desc[n])
            next
        }
        inside && /^[ \t]+#/ && n > 0 && kind[n] != "section" {  # continues the description above
            line = $0; sub(/^[ \t]+# ?/, "", line); desc[n] = desc[n] " " line; next
        }
        inside && /^# alias --/ {
            n++; kind[n] = "alias"; line = substr($0, 11)
            sp = index(line, " "); name[n] = substr(line, 1, sp - 1); line = substr(line, sp + 1); sub(/^ *--/, "", line)
            sp = index(line, " "); if (sp == 0) sp = length(line) + 1
            value[n] = substr(line, 1, sp - 1); desc[n] = substr(line, sp + 1); sub(/^ +/, "", desc[n])
            next
        }
        inside && /^# / { n++; kind[n] = "section"; name[n] = substr($0, 3); next }
        /^# ---- options/ { inside = 1 }
        END {
            for (i = 1; i <= n; i++) {
                if (kind[i] == "section") print "section\t" name[i]
                else print kind[i] "\t" name[i] "\t" value[i] "\t" desc[i]
            }
        }' "$1"
}

# option_names FILE: the names of FILE's options, one per line
option_names() { option_block "$1" | awk -F '\t' '$1 == "opt" { print $2 }'; }

# option_alias FILE NAME: the option an old name stands for (nothing if NAME is no alias)
option_alias() { option_block "$1" | awk -F '\t' -v n="$2" '$1 == "alias" && $2 == n { print $3 }'; }

# print_options FILE: --help text of FILE's options, each with its value at this point (the default, or what the
# calling recipe set) and its description
print_options() {
    local kind name value desc shown
    while IFS=$'\t' read -r kind name value desc; do
        case "${kind}" in
            section) printf '\n%s\n' "${name}" ;;
            opt)
                shown="${!name-}"
                if [ -z "${shown}" ] || [[ "${shown}" == *[[:space:]]* ]]; then shown="\"${shown}\""; fi
                printf '  --%s %s\n      %s\n' "${name}" "${shown}" "${desc}" ;;
            alias) printf '  --%s (old name of --%s) %s\n' "${name}" "${value}" "${desc}" ;;
        esac
    done < <(option_block "$1")
}

# parse_recipe_options FILE ARGS...: a recipe run.sh's own options (those of FILE's block) set their variables;
# every other argument is kept, in order, in the array `rest` (for speechlm.sh); `--help` sets help=true and
# prints FILE's header and options (speechlm.sh's follow, as the recipe calls it: pass "${help_opt[@]}" on)
parse_recipe_options() {
    local file="$1" own
    shift
    own=" $(option_names "${file}" | tr '\n' ' ') "
    rest=() help=false help_opt=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --help|-h) help=true; shift ;;
            --*)
                if [[ "${own}" == *" ${1#--} "* ]]; then
                    [ $# -ge 2 ] || { echo "${file}: option $1 needs a value" >&2; exit 1; }
                    printf -v "${1#--}" '%s' "$2"; shift 2
                else
                    rest+=("$1"); shift
                fi ;;
            *) rest+=("$1"); shift ;;
        esac
    done
    if [ "${help}" = true ]; then
        help_opt=(--help)  # speechlm.sh prints its options after the recipe has set them
        sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "${file}"
        echo
        echo "Options of this script (shown with their values now):"
        print_options "${file}"
        echo
        echo "---- speechlm.sh, as this script calls it ----"
    fi
}
