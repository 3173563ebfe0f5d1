//! Matter figures with Home Assistant's controller (issue 18):
//!
//! * commissioning time: manual code → commissioned and interviewed node,
//!   on the veth pair of a private network namespace;
//! * command round trip: a timed `UnlockDoor` / `LockDoor` from the
//!   controller to its answer. The engine emits the motor command before
//!   the reply in the same batch, so this bounds controller → motor command;
//! * memory: the daemon's resident set (VmRSS, VmHWM) with the node running
//!   and commissioned, against the same lock with `[matter] enabled = false`.
//!
//! ```text
//! scripts/matter-env.sh
//! cargo bench --features matter --bench matter
//! ```
//!
//! Needs what tests/it/matter_controller.rs needs (user namespaces, iproute2).
#[path = "../tests/it/common/daemon.rs"]
mod daemon_common;
#[path = "../tests/it/common/matter.rs"]
mod matter_common;

use std::time::Instant;

use serde_json::json;

use daemon_common::{first_start, Daemon};
use matter_common::{lock_config, manual_code, Controller, NetNs};

const ROUND_TRIPS: usize = 40;

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let ns = NetNs::new();
    let dir = tempfile::tempdir().unwrap();

    // The same lock without the node, for the memory baseline.
    let plain_state = dir.path().join("plain");
    let plain_config = dir.path().join("plain.toml");
    std::fs::write(
        &plain_config,
        "[matter]\nenabled = false\n[sim]\nmotor_travel_ms = 100\n",
    )
    .unwrap();
    let plain = Daemon::start_wrapped(
        &ns.enter(),
        &plain_state,
        &["--config", plain_config.to_str().unwrap()],
    );
    first_start(&plain);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (plain_rss, plain_hwm) = rss_kib(plain.pid());
    assert!(plain.sigterm().success());

    let state = dir.path().join("lock");
    let config = lock_config(dir.path());
    let d = Daemon::start_wrapped(&ns.enter(), &state, &["--config", config.to_str().unwrap()]);
    first_start(&d);
    let code = manual_code(&state, &config);
    let mut c = Controller::start(&ns, &dir.path().join("controller"));
    d.ok(json!({"cmd": "set", "long": true}));
    let wall = Instant::now();
    let done = c.ok("commission", json!({"code": code}));
    let node = done["node_id"].as_u64().unwrap();
    println!(
        "commissioning: {:.2} s by the controller's clock, {:.2} s wall (manual code → interviewed node)",
        done["seconds"].as_f64().unwrap(),
        wall.elapsed().as_secs_f64()
    );
    c.ok(
        "write",
        json!({"node": node, "path": "1/257/37", "value": 0}),
    );

    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS {
        let command = if i % 2 == 0 { "UnlockDoor" } else { "LockDoor" };
        let r = c
            .lock_cmd(node, command, json!({}))
            .unwrap_or_else(|e| panic!("{command}: {e}"));
        times.push(r["seconds"].as_f64().unwrap() * 1000.0);
        d.settle();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "command round trip ({ROUND_TRIPS} timed Unlock/LockDoor): median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        times[times.len() - 1]
    );
    let (rss, hwm) = rss_kib(d.pid());
    println!(
        "memory: VmRSS {rss} KiB with the node (commissioned, subscribed) vs {plain_rss} KiB without (+{} KiB); peak {hwm} vs {plain_hwm} KiB",
        rss.saturating_sub(plain_rss)
    );
    c.stop();
    assert!(d.sigterm().success());
}
