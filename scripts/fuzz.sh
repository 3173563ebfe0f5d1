#!/usr/bin/env bash
# Bounded fuzzing of every parser of outside bytes (docs/fuzzing.md): the
# BLE frame parser and Improv RPC, the MQTT sealed one-shot, the ZFM and
# palm UART decoders and drivers, the video server's HTTP head, the
# control socket's JSON, latchd.toml and the board file, the store's row
# decoders. Called by scripts/test-vm.sh.
#
#     scripts/fuzz.sh                        # every target, FUZZ_SECONDS each (default 10)
#     FUZZ_RUNS=10000000 scripts/fuzz.sh     # every target for 10^7 executions (hours; not CI)
#     scripts/fuzz.sh zfm_frame http_head    # only these
#     FUZZ_SEED=1 scripts/fuzz.sh            # the slow suite's (CI's) regression run, see below
#
# The targets are built with cargo and the flags `cargo fuzz build
# --sanitizer none` passes (cargo-fuzz 0.13's project.rs; libfuzzer-sys
# builds libFuzzer itself), so a fresh machine does not compile cargo-fuzz
# first (≈ 2 min of CI); `cargo fuzz` itself still works on the crate.
# The machine has one (stable) toolchain, so the instrumentation flags are
# enabled with RUSTC_BOOTSTRAP=1, and no sanitizer: the parsers are safe
# Rust, so ASan would find nothing that a panic, an abort or an OOM (which
# libFuzzer reports) would not. Each target starts from its committed seeds
# (fuzz/seeds/<target>, written by fuzz/seeds.py) and keeps what it finds
# in fuzz/corpus/<target> (not committed). Prints one summary line per
# target: executions, executions per second, corpus size, peak memory.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-10}"
runs="${FUZZ_RUNS:-}"
all=(frame_parser improv_rpc remote_oneshot zfm_frame zfm_driver palm_frame palm_driver
     http_head control_json config_files store_rows)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
# FUZZ_SEED alone (the slow suite sets 1) is the regression run: libFuzzer's
# seed fixed, a fixed number of executions per target (≈ 5–15 s each on
# these machines) from a fresh corpus of the committed seeds only, so every
# machine does the same amount of search whatever its speed. A time bound
# did not: CI's faster cores reached execution 247,618 of zfm_driver in
# 10 s and found a driver bug that runs here had not reached. Runs are
# still not bit-for-bit repeatable (coverage of code with randomly seeded
# hash maps differs), so a failure reproduces from its input in
# fuzz/artifacts, not from the seed. Exploring is the long runs' job
# (FUZZ_SECONDS or FUZZ_RUNS, corpus kept).
declare -A regression_runs=(
    [frame_parser]=2000000 [improv_rpc]=400000 [remote_oneshot]=5000
    [zfm_frame]=400000 [zfm_driver]=500000 [palm_frame]=400000
    [palm_driver]=500000 [http_head]=1500000 [control_json]=1500000
    [config_files]=150000 [store_rows]=150000
)
regression=""
if [ -n "${FUZZ_SEED:-}" ] && [ -z "$runs" ] && [ -z "${FUZZ_SECONDS:-}" ]; then
    regression=1
fi
cd fuzz
triple="$(rustc -vV | sed -n 's/^host: //p')"
# cargo-fuzz's coverage flags. One codegen unit per crate (cargo-fuzz's
# release default: the sancov pass otherwise blocks ThinLTO's inlining,
# "≈ 3× faster" says its source) builds the latchd crate on one core; the
# regression run's fixed counts take about a minute either way, so it
# builds with cargo's default units and the long runs with one.
flags=(-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4
       -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
       -Cllvm-args=-sanitizer-coverage-pc-table
       -Cllvm-args=-sanitizer-coverage-trace-compares
       -Cllvm-args=-simplifycfg-branch-fold-threshold=0
       -Cllvm-args=-sanitizer-coverage-stack-depth --cfg fuzzing)
[ -n "$regression" ] || flags+=(-Ccodegen-units=1)
echo "== build ($(date -u +%T))"
RUSTC_BOOTSTRAP=1 RUSTFLAGS="${flags[*]}" cargo build --locked --release --target "$triple" \
    --config 'profile.release.debug="line-tables-only"' --bins
bin="${CARGO_TARGET_DIR:-target}/$triple/release"
log="$(mktemp)"
fresh="$(mktemp -d)"
trap 'rm -rf "$log" "$fresh"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target"
    corpus="corpus/$target"
    if [ -n "$regression" ]; then
        corpus="$fresh/$target"
        mkdir -p "$corpus"
        limit=(-runs="${regression_runs[$target]}" -seed="$FUZZ_SEED")
    elif [ -n "$runs" ]; then
        limit=(-runs="$runs")
    else
        limit=(-max_total_time="$seconds")
    fi
    if [ -z "$regression" ] && [ -n "${FUZZ_SEED:-}" ]; then
        limit+=(-seed="$FUZZ_SEED")
    fi
    status=0
    "$bin/$target" "$corpus" "seeds/$target" \
        "${limit[@]}" -rss_limit_mb=1024 -malloc_limit_mb=512 -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
    rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")"
    units="$(ls "$corpus" | wc -l)"
    printf '%-15s executions %-10s per second %-7s corpus %-6s peak %s MB\n' \
        "$target" "${execs:-?}" "${rate:-?}" "$units" "${rss:-?}"
    if [ "$status" -ne 0 ]; then
        tail -60 "$log"
        echo "fuzzing $target failed (exit $status); the crash input is in fuzz/artifacts/$target"
        exit 1
    fi
done
