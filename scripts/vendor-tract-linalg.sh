#!/usr/bin/env bash
# Rebuilds third_party/tract-linalg: tract-linalg as published on crates.io,
# with one change — every x86-64 assembly kernel ends with `vzeroupper`.
#
# Why, and what else is left out: the LATCHD.md this script writes into the
# copy (the heredoc below), with the figures in latchd's README (issue 19).
#
# Run: scripts/vendor-tract-linalg.sh          (fetches the crate with cargo)
# Check only: scripts/vendor-tract-linalg.sh --check   (exit 1 on a difference)
set -euo pipefail

version=0.23.9
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/third_party/tract-linalg"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The pristine crate, downloaded and checksummed by cargo from the registry.
mkdir -p "$work/probe/src"
cat >"$work/probe/Cargo.toml" <<EOF
[package]
name = "probe"
version = "0.0.0"
edition = "2021"
[dependencies]
tract-linalg = "=$version"
EOF
touch "$work/probe/src/lib.rs"
(cd "$work/probe" && cargo fetch --quiet)
crate="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -name "tract-linalg-$version.crate" | head -n1)"
[ -n "$crate" ] || { echo "tract-linalg-$version.crate not found after cargo fetch" >&2; exit 1; }
tar -xzf "$crate" -C "$work"
src="$work/tract-linalg-$version"

out="$work/tract-linalg"
mv "$src" "$out"
# Not needed to build the library: its benches, tests, lock file, two core
# dumps and a spreadsheet the published crate happens to carry.
rm -rf "$out/benches" "$out/tests" "$out/Cargo.lock" "$out"/core.* "$out"/*.xlsx \
    "$out/.cargo_vcs_info.json" "$out/.cargo-ok"
# Their targets go too (cargo checks that a package's targets exist), and
# with them the dev-dependencies only they use.
python3 - "$out/Cargo.toml" <<'EOF'
import re, sys
path = sys.argv[1]
text = open(path).read()
sections = re.split(r'(?m)^(?=\[)', text)
keep = [s for s in sections
        if not re.match(r'\[\[(bench|test)\]\]', s)
        and 'dev-dependencies' not in s.split('\n', 1)[0]]
open(path, 'w').write(''.join(keep))
EOF
# The change: `vzeroupper` before every `ret` of the x86-64 kernels.
grep -rlE '^\s+ret\s*$' "$out/x86_64" | sort | while read -r f; do
    sed -i -E 's/^(\s+)ret\s*$/\1vzeroupper\n\1ret/' "$f"
done
cat >"$out/LATCHD.md" <<EOF
# tract-linalg $version, as latchd builds it

This is tract-linalg $version from crates.io with one change, made by
\`scripts/vendor-tract-linalg.sh\` (run it with \`--check\` to confirm that
nothing else differs): every x86-64 assembly kernel (\`x86_64/**/*.j2\`)
executes \`vzeroupper\` before it returns. The benches, tests, lock file,
two core dumps and a spreadsheet of the published crate are left out, with
the targets and dev-dependencies that name them.

Why: the published kernels return with the upper halves of the YMM/ZMM
registers dirty, and every later instruction of code built for x86-64's
baseline (SSE: all of latchd, and tract outside its kernels) then pays for
it. Measured on an AMD EPYC with AVX-512 (figures in latchd's README, issue
19): the detector's frame scaling took 2.4 ms after a model run and 0.8 ms
before one; the face pipeline per frame was ≈ 25 % faster with this change.
\`tests/it/face_vector_state.rs\` fails without it (it reads the CPU's
XINUSE bits after a detector and an embedder run).

aarch64 (the lock's SoC) has no such state: the change is x86-64 only.
Licence: tract's (MIT OR Apache-2.0), files LICENSE*; the change is under
the same terms. Worth sending upstream (sonos/tract); drop this copy and the
\`[patch.crates-io]\` entry in latchd's Cargo.toml once a release has it.
EOF

if [ "${1:-}" = "--check" ]; then
    if diff -r "$out" "$dest" >/dev/null; then
        echo "third_party/tract-linalg is tract-linalg $version with the vzeroupper change"
    else
        diff -r "$out" "$dest" | head -n 40
        echo "third_party/tract-linalg differs from what this script makes" >&2
        exit 1
    fi
else
    rm -rf "$dest"
    mkdir -p "$(dirname "$dest")"
    cp -r "$out" "$dest"
    echo "third_party/tract-linalg rebuilt from tract-linalg $version"
fi
