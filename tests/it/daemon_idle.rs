//! An idle lock makes no wake-ups (ARCHITECTURE: "no polling"): the daemon
//! runs in-process on paused tokio time, so an hour passes in
//! milliseconds and the count is exact.
use std::time::Duration;

use latchd::board::sim::parse_keys;
use latchd::config::Config;
use latchd::daemon::{start, Options};
use tokio_util::sync::CancellationToken;

#[tokio::test(start_paused = true)]
async fn idle_daemon_wakes_only_for_its_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    // No timedate1 watcher: its reconnect back-off sleeps on the same
    // paused clock, and tokio advances paused time to the next timer
    // whenever every task waits, including while the engine task awaits a
    // commit on the store thread (real time): the keypad would time out
    // mid-entry. What it adds to an idle lock is not the engine's
    // wake-ups, which this test counts.
    let mut config = Config::default();
    config.lock.timedate_bus = "off".into();
    let opts = Options {
        config,
        state_dir: dir.path().join("state"),
        front_panel: false,
        control_socket: None,
        dbus: None,
        set_held: false,
    };
    let mut d = start(opts, CancellationToken::new()).await.unwrap();
    let sim = d.sim.clone().expect("sim board");
    // First start: direction, administrator, back to idle.
    sim.press(&parse_keys("✓1✓135792✓135792✓↩↩").unwrap())
        .unwrap();
    d.barrier().await;
    assert_eq!(d.published.borrow().engine.step, "idle");

    // Let every pending timer (keypad sleep, 20 s) run out.
    tokio::time::sleep(Duration::from_secs(60)).await;
    d.barrier().await;
    let settled = d.published.borrow().daemon;
    assert_eq!(settled.next_deadline_in_ms, None, "{settled:?}");

    // A whole idle hour: not one wake-up.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let after = d.published.borrow().daemon;
    assert_eq!(after.wakeups, settled.wakeups, "{after:?}");

    // Sanity: an input does wake it.
    sim.touch().unwrap();
    d.barrier().await;
    assert_eq!(d.published.borrow().daemon.wakeups, settled.wakeups + 1);
    d.stop().await.unwrap();
}
