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
#     FUZZ_SEED=1 scripts/fuzz.sh            # libFuzzer's seed fixed (the slow suite does this)
#
# cargo-fuzz is installed from crates.io when missing. The machine has one
# (stable) toolchain, so libFuzzer's instrumentation flags are enabled with
# RUSTC_BOOTSTRAP=1 and no sanitizer: the parsers are safe Rust, so ASan
# would find nothing that a panic, an abort or an OOM (which libFuzzer
# reports) would not. Each target starts from its committed seeds
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
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked --quiet
fi
if [ -n "$runs" ]; then
    limit=(-runs="$runs")
else
    limit=(-max_total_time="$seconds")
fi
# FUZZ_SEED fixes libFuzzer's random seed (the slow suite sets 1): a short
# run is then a regression check whose failure reproduces, not a lottery;
# exploring is the long runs' job.
if [ -n "${FUZZ_SEED:-}" ]; then
    limit+=(-seed="$FUZZ_SEED")
fi
cd fuzz
echo "== build ($(date -u +%T))"
RUSTC_BOOTSTRAP=1 cargo fuzz build --sanitizer none
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target"
    status=0
    RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
        "${limit[@]}" -rss_limit_mb=1024 -malloc_limit_mb=512 -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
    rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")"
    units="$(ls "corpus/$target" | wc -l)"
    printf '%-15s executions %-10s per second %-7s corpus %-6s peak %s MB\n' \
        "$target" "${execs:-?}" "${rate:-?}" "$units" "${rss:-?}"
    if [ "$status" -ne 0 ]; then
        tail -60 "$log"
        echo "fuzzing $target failed (exit $status); the crash input is in fuzz/artifacts/$target"
        exit 1
    fi
done
