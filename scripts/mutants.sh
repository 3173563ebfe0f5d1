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
# --in-place: the checkout is never modified). Each group of files below
# runs only the tests that matter for it: for most, the library's unit tests
# and the engine's scenario tests (`cargo test --lib --test spec`, seconds,
# not the integration suite's minutes; the spec suite matters: a --lib run
# reported `core::app::check_window` mutants as missed that every spec test
# of validity windows catches). Results: target/mutants/GROUP/mutants.out/
# (caught.txt, missed.txt, unviable.txt, timeout.txt, outcomes.json);
# docs/mutants.md records each run and explains every survivor.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-mutants >/dev/null 2>&1; then
    echo "installing cargo-mutants from crates.io"
    cargo install cargo-mutants --locked
fi

# The safety-critical files (issue 23), in groups: each group's mutants run
# only the tests that matter for it.
#
# * protection — the engine's credential checks, lockout, time windows, the
#   menu's administrator gate; the remote gate and its freshness window;
#   the app channel's crypto, frames, session, pairing and role checks:
#   `cargo test --lib --test spec`.
# * engine — the engine's own handlers of the door, bolt, motor, touch,
#   SET and the inside paths (the rest of engine.rs is wiring): the same
#   tests, the mutants limited with --re.
# * store — the commit paths: the unit tests of the store and the
#   integration tests of a real SQLite file, crashes included
#   (`cargo test --lib --test it -- store daemon_crash`).
# * motor — the H-bridge driver and its thread (`cargo test --lib -- motor`).
protection=(
    src/core/passcode.rs
    src/core/policy.rs
    src/core/attempt.rs
    src/core/time.rs
    src/core/trusted_time.rs
    src/core/users.rs
    src/core/app.rs
    src/core/menu.rs
    src/remote/gate.rs
    src/remote/freshness.rs
    src/app/crypto.rs
    src/app/protocol.rs
    src/app/pairing.rs
    src/app/authz.rs
)
engine=(src/core/engine.rs)
engine_re='Engine::(power_up|on_touch|on_set|on_bolt|on_door|on_motor|on_lock_button|on_mechanical_key|on_inside_handle|on_tamper|expire|check_clock)'
store=(src/store/state.rs src/store/thread.rs)
motor=(src/board/drivers/motor.rs src/board/drivers/motor_thread.rs)

group_of() {
    local f=$1 g
    for g in engine store motor; do
        local -n list=$g
        [[ " ${list[*]} " == *" $f "* ]] && { echo "$g"; return; }
    done
    echo protection
}

# The copy builds in its own target directory: a shared CARGO_TARGET_DIR
# would let the mutated tree's test binary replace another checkout's.
unset CARGO_TARGET_DIR
export CARGO_TERM_COLOR=never
out=${MUTANTS_OUT:-target/mutants}

# run GROUP FILE...: one cargo-mutants run over FILEs with GROUP's tests.
run() {
    local group=$1
    shift
    local args=() f
    for f in "$@"; do
        [ -f "$f" ] || { echo "mutants: no such file: $f" >&2; exit 2; }
        args+=(--file "$f")
    done
    local tests=()
    case $group in
        protection) tests=(--cargo-test-arg=--lib --cargo-test-arg=--test=spec) ;;
        engine) tests=(--cargo-test-arg=--lib --cargo-test-arg=--test=spec --re "$engine_re") ;;
        store) tests=(--cargo-test-arg=--lib --cargo-test-arg=--test=it --cargo-test-arg=--
            --cargo-test-arg=store --cargo-test-arg=daemon_crash) ;;
        motor) tests=(--cargo-test-arg=--lib --cargo-test-arg=-- --cargo-test-arg=motor) ;;
    esac
    echo "mutants: $group: $*"
    # shellcheck disable=SC2086 # MUTANTS_ARGS is a list of extra flags
    nice -n 10 cargo mutants --test-tool cargo --jobs 1 "${tests[@]}" \
        --output "$out/$group" "${args[@]}" ${MUTANTS_ARGS:-}
}

if [ $# -eq 0 ]; then
    set -- "${protection[@]}" "${engine[@]}" "${store[@]}" "${motor[@]}"
fi
declare -A chosen=()
for f in "$@"; do
    g=$(group_of "$f")
    chosen[$g]+="$f "
done
status=0
for g in protection engine store motor; do
    [ -n "${chosen[$g]:-}" ] || continue
    # shellcheck disable=SC2086 # the group's files, split on spaces
    run "$g" ${chosen[$g]} || status=$?
done
exit "$status"
