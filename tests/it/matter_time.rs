//! Issue 18 item 3: Time Synchronization on the node, read and written by
//! Home Assistant's controller. The node's `UTCTime` is the lock's trusted
//! wall time (`src/matter/clock.rs`); a controller's `SetUTCTime` is taken
//! by the cluster (it is mandatory) but never moves the lock's own clock,
//! which opens the time windows and schedules of every credential.
//!
//! Run alone:
//!     cargo test --all-features --test it matter_time:: -- --nocapture
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::common::bus::TestBus;
use crate::common::daemon::{first_start, Daemon};
use crate::common::matter::{
    lock_config, manual_code, wait_for_diagnostics, wait_until, Controller, NetNs,
};

/// 2000-01-01 00:00 UTC, Matter's epoch, in Unix seconds.
const MATTER_EPOCH: i64 = 946_684_800;

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The node's UTCTime in Unix seconds (null: none).
fn node_time(c: &mut Controller, node: u64) -> Option<i64> {
    c.read(node, "0/56/0")
        .as_u64()
        .map(|us| (us / 1_000_000) as i64 + MATTER_EPOCH)
}

#[test]
fn the_nodes_clock_is_the_locks_and_a_controller_cannot_move_the_locks() {
    let ns = NetNs::new();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("lock");
    // A board whose clock the lock trusts from start-up (its RTC).
    let config = lock_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text + "[lock]\ntrust_system_clock = true\n").unwrap();
    let bus = TestBus::start();
    let wrapper = ns.enter();
    let d = Daemon::start_wrapped(
        &wrapper,
        &state,
        &["--config", config.to_str().unwrap(), "--dbus", &bus.address],
    );
    first_start(&d);
    wait_for_diagnostics(&bus.address, "running", 0);
    let lock_time = |d: &Daemon| d.status()["engine"]["wall_time"].as_i64();
    assert!(lock_time(&d).is_some(), "the lock trusts its clock");
    let code = manual_code(&state, &config);
    let mut c = Controller::start(&ns, &dir.path().join("controller"));
    d.ok(json!({"cmd": "set", "long": true}));
    let node = c.ok("commission", json!({"code": code}))["node_id"]
        .as_u64()
        .unwrap();

    // Any status change feeds the lock's time to the node.
    d.ok(json!({"cmd": "battery", "percent": 79}));
    wait_until("the node's clock to be the lock's", || {
        c.read(node, "0/56/2") == json!(1) // TimeSource Unknown: not Admin
    });
    let t = node_time(&mut c, node).expect("UTCTime is set");
    assert!((t - now_s()).abs() < 120, "UTCTime {t} vs now {}", now_s());
    let granularity = c.read(node, "0/56/1");
    assert!(
        granularity.as_u64().is_some_and(|g| g >= 1),
        "Granularity {granularity}"
    );

    // A controller sets the node's clock to 2001: the cluster takes it…
    let year_2001_us = 365 * 86_400 * 1_000_000u64;
    c.invoke(
        node,
        0,
        "TimeSynchronization",
        "SetUTCTime",
        json!({"UTCTime": year_2001_us, "granularity": 3}),
    )
    .unwrap();
    // …the lock's own clock does not move…
    d.settle();
    let lock = lock_time(&d).expect("the lock still knows its time");
    assert!((lock - now_s()).abs() < 120, "lock clock {lock}");
    // …and the node's clock is the lock's again at the next change.
    d.ok(json!({"cmd": "battery", "percent": 78}));
    wait_until("the node's clock back to the lock's", || {
        node_time(&mut c, node).is_some_and(|t| (t - now_s()).abs() < 120)
    });
    c.stop();
    assert!(d.sigterm().success());
}
