#!/usr/bin/env bash
# Lint meta-latchd with oelint-adv (installed from PyPI if missing) and check
# that latchd-crates.inc matches Cargo.lock. Exit status non-zero on any finding.
#
#   yocto-layer/lint.sh
#
# Suppressed, with reasons:
#   oelint.var.mandatoryvar.HOMEPAGE, oelint.var.suggestedvar.BUGTRACKER
#       the project has not published a home page or tracker yet; inventing
#       URLs would be worse than leaving them out.
#   oelint.var.bbclassextend
#       latchd is a daemon for the target board; native/nativesdk variants
#       make no sense.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
release=${OELINT_RELEASE:-scarthgap}

if ! command -v oelint-adv >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check "oelint-adv>=9,<10"
fi

python3 "$here/scripts/gen-crates-inc.py" --check

mapfile -t files < <(find "$here/meta-latchd" -name '*.bb' -o -name '*.bbappend' | sort)
out=$(oelint-adv --quiet --release "$release" \
    --suppress oelint.var.mandatoryvar.HOMEPAGE \
    --suppress oelint.var.suggestedvar.BUGTRACKER \
    --suppress oelint.var.bbclassextend \
    "${files[@]}" 2>&1) || true
if [ -n "$out" ]; then
    printf '%s\n' "$out"
    echo "lint.sh: oelint-adv ($release) reported the findings above" >&2
    exit 1
fi
echo "lint.sh: meta-latchd clean (oelint-adv $(oelint-adv --version | awk '{print $2}'), release $release)"
