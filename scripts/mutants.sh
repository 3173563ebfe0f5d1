#!/usr/bin/env bash
# Mutation testing of the protection code (issue 23 item 1): cargo-mutants
# makes one-line sabotages (a condition negated, a function returning a
# default, an operator swapped) and runs the tests against each; a mutant
# the tests still pass ("missed") is a protection nothing checks.
#
#     scripts/mutants.sh                      # every file below (hours)
#     scripts/mutants.sh src/remote/gate.rs   # one file (minutes to an hour)
#     MUTANTS_ARGS="--list" scripts/mutants.sh   # only list the mutants
#
# Not in scripts/test.sh or CI: each mutant rebuilds the crate. One mutant
# at a time (-j 1), niced, in cargo-mutants' own copy of the tree (never
# --in-place: the checkout is never modified). The tests run are the
# library's unit tests and the engine's scenario tests (`cargo test --lib
# --test spec`): the protections below are tested there, and a run of them
# takes seconds, not the integration suite's minutes. (The spec suite
# matters: a --lib run reported `core::app::check_window` mutants as
# missed that every spec test of validity windows catches.) Results: target/mutants/mutants.out/
# (caught.txt, missed.txt, unviable.txt, timeout.txt, outcomes.json);
# docs/mutants.md records each run and explains every survivor.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-mutants >/dev/null 2>&1; then
    echo "installing cargo-mutants from crates.io"
    cargo install cargo-mutants --locked
fi

# The safety-critical files (issue 23): the engine's credential checks,
# lockout and duress, time windows; the remote gate and its freshness
# window; the app channel's crypto, session and role checks.
files=(
    src/core/passcode.rs
    src/core/policy.rs
    src/core/attempt.rs
    src/core/time.rs
    src/core/trusted_time.rs
    src/core/users.rs
    src/core/app.rs
    src/remote/gate.rs
    src/remote/freshness.rs
    src/app/crypto.rs
    src/app/protocol.rs
    src/app/authz.rs
)
if [ $# -gt 0 ]; then
    files=("$@")
fi
args=()
for f in "${files[@]}"; do
    [ -f "$f" ] || { echo "mutants: no such file: $f" >&2; exit 2; }
    args+=(--file "$f")
done

# The copy builds in its own target directory: a shared CARGO_TARGET_DIR
# would let the mutated tree's test binary replace another checkout's.
unset CARGO_TARGET_DIR
export CARGO_TERM_COLOR=never
# shellcheck disable=SC2086 # MUTANTS_ARGS is a list of extra flags
exec nice -n 10 cargo mutants \
    --test-tool cargo \
    --jobs 1 \
    --cargo-test-arg=--lib \
    --cargo-test-arg=--test=spec \
    --output "${MUTANTS_OUT:-target/mutants}" \
    "${args[@]}" ${MUTANTS_ARGS:-}
