#!/usr/bin/env bash
# Bounded fuzzing of the BLE channel's parsers (docs/ble-protocol.md,
# "Fuzzing"): the frame parser/reassembler and the Improv RPC parser, each
# for FUZZ_SECONDS (default 60). Called by scripts/test-vm.sh.
#
# cargo-fuzz is installed from crates.io when missing. The machine has one
# (stable) toolchain, so libFuzzer's instrumentation flags are enabled with
# RUSTC_BOOTSTRAP=1 and no sanitizer: the parsers are safe Rust, so ASan
# would find nothing that a panic, an abort or an OOM (which libFuzzer
# reports) would not.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked --quiet
fi
cd fuzz
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in frame_parser improv_rpc; do
    echo "== fuzz $target for ${seconds} s"
    status=0
    RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -print_final_stats=1 >"$log" 2>&1 || status=$?
    # Only libFuzzer's summary; the whole log when it found something.
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|INFO: Seed)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -60 "$log"
        echo "fuzzing $target failed (exit $status); crash inputs are in fuzz/artifacts/$target"
        exit 1
    fi
done
