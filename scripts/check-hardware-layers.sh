#!/usr/bin/env bash
# The hardware side's import rules (issue 12, "board holds only hardware"):
#
#   board      → core (and link: InputSender/OrderedSender)
#   biometrics → board, core (and link)
#   video      → board, core (and link)
#
# Reads every `crate::<module>` path outside comments under src/board,
# src/biometrics and src/video; prints the ones a rule forbids and exits
# non-zero if there is one. With --list it prints every cross-module path
# it allowed as well.
set -euo pipefail
cd "$(dirname "$0")/.."

list=0
[ "${1:-}" = "--list" ] && list=1
status=0

# check <dir under src> <allowed top-level modules, space separated>
check() {
    local dir=$1 allowed=$2 out
    out=$(grep -rnE 'crate::' "src/$dir" --include='*.rs' | awk -v dir="$dir" -v allowed=" $allowed " -v list="$list" '
        {
            # file:line:code — keep the code after the second colon.
            split($0, part, ":")
            code = substr($0, length(part[1]) + length(part[2]) + 3)
            if (code ~ /^[ \t]*\/\//) next          # comments and doc comments
            if (code ~ /crate::\{/) { print "FORBIDDEN " part[1] ":" part[2] ": grouped crate::{...} import; name each module"; next }
            while (match(code, /crate::[a-z_0-9]+/)) {
                m = substr(code, RSTART + 7, RLENGTH - 7)
                if (m != dir) {
                    if (index(allowed, " " m " ") == 0) print "FORBIDDEN " part[1] ":" part[2] ": crate::" m
                    else if (list == 1) print "allowed   " part[1] ":" part[2] ": crate::" m
                }
                code = substr(code, RSTART + RLENGTH)
            }
        }')
    if [ -n "$out" ]; then
        echo "$out"
        if grep -q '^FORBIDDEN' <<<"$out"; then status=1; fi
    fi
}

check board "core link"
check biometrics "board core link"
check video "board core link"

if [ $status -ne 0 ]; then
    echo "hardware layering: forbidden imports above" >&2
else
    echo "hardware layering: ok (board → core; biometrics, video → board, core)"
fi
exit $status
