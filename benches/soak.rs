//! Issue 15 item 4, soak: `LATCHD_SOAK_INPUTS` (default 1,000,000) inputs
//! of mixed traffic through the control socket and the app protocol (MQTT,
//! a Mosquitto broker the driver starts) into the real `latchd` (release,
//! sim board, headless), with VmRSS, open fds, database size, WAL size and
//! event-log rows sampled every `LATCHD_SOAK_EVERY` inputs (default: 200
//! samples). The driver, the mix and the margins are in
//! `tests/it/common/soak.rs`, shared with the CI test
//! `tests/it/soak_short.rs`.
//!
//! Writes `target/soak/soak.csv` (or `LATCHD_SOAK_CSV`), prints the summary
//! (warm-up maximum, last, maximum after the warm-up, limit) and exits 1 if
//! a metric grew past its margin after the warm-up (the first 10 %,
//! `LATCHD_SOAK_WARMUP_PCT`). It is a check, not a timing.
//!
//! Other knobs: `LATCHD_SOAK_MAX_EVENTS` (the lock's `[store] max_events`,
//! default 10,000 as shipped), `LATCHD_SOAK_STATE_PARENT` (where the state
//! directory goes; default the system's temporary directory),
//! `LATCHD_SOAK_SEED`, `LATCHD_SOAK_WRAPPER` (a command prefix latchd runs
//! under, e.g. `heaptrack -o FILE` to find what the private memory is).
//!
//! Run: `scripts/soak.sh` (installs mosquitto and gnuplot, runs this,
//! plots `target/soak/soak.png`), or
//! `cargo bench --no-default-features --bench soak`.

#[path = "../tests/it/common/daemon.rs"]
mod daemon;
#[path = "../tests/it/common/mosquitto.rs"]
mod mosquitto;
#[path = "../tests/it/common/ports.rs"]
mod ports;
#[path = "../tests/it/common/shared.rs"]
mod shared;
#[path = "../tests/it/common/soak.rs"]
mod soak;

use std::path::PathBuf;
use std::process::ExitCode;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let inputs = env_u64("LATCHD_SOAK_INPUTS", 1_000_000);
    let cfg = soak::SoakConfig {
        inputs,
        every: env_u64("LATCHD_SOAK_EVERY", (inputs / 200).max(1)),
        max_events: env_u64("LATCHD_SOAK_MAX_EVENTS", 10_000) as usize,
        state_parent: std::env::var_os("LATCHD_SOAK_STATE_PARENT").map(PathBuf::from),
        seed: env_u64("LATCHD_SOAK_SEED", 0x5eed_50a6),
        progress: true,
        wrapper: std::env::var("LATCHD_SOAK_WRAPPER")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    };
    let warm = env_u64("LATCHD_SOAK_WARMUP_PCT", 10) as f64 / 100.0;
    let csv = std::env::var_os("LATCHD_SOAK_CSV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/soak/soak.csv"),
        PathBuf::from,
    );
    println!("soak: {cfg:?}");
    let report = soak::run(&cfg);
    if let Some(dir) = csv.parent() {
        std::fs::create_dir_all(dir).expect("csv directory");
    }
    std::fs::write(&csv, report.csv()).expect("write the CSV");
    println!("soak: wrote {}", csv.display());
    print!("{}", report.summary(warm));
    if report.rows(warm).iter().all(|r| r.bounded()) {
        println!("soak: verdict: bounded and flat after the warm-up");
        ExitCode::SUCCESS
    } else {
        println!("soak: verdict: GROWTH past the margin after the warm-up");
        ExitCode::FAILURE
    }
}
