//! Issue 13 item 3 in the running daemon: the time it can trust.
//!
//! * The high-water mark of trusted wall time is on the disk: a restart
//!   whose clock reads earlier than it (a clock set back, an RTC reset)
//!   believes no wall time at all, logs it once, and fails closed.
//! * NTP synchronisation comes from the real `systemd-timedated`
//!   (`org.freedesktop.timedate1`, run here on a private bus): the daemon
//!   trusts the system clock exactly when timedated says it is synchronised.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::common::bus;
use crate::common::daemon::*;

fn config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("latchd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn wall_time(d: &Daemon) -> Value {
    d.status()["engine"]["wall_time"].clone()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The floor lives in the store: a lock whose clock now reads a day
/// earlier than a time it once trusted refuses to believe it.
#[test]
fn a_clock_behind_the_stored_floor_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = config(
        dir.path(),
        "[lock]\ntrust_system_clock = true\ntimedate_bus = \"off\"\n",
    );
    let args = ["--config", cfg.to_str().unwrap()];
    let d = Daemon::start_with(&state, &args);
    first_start(&d);
    assert!(wall_time(&d).is_i64(), "a trusted RTC: known");
    assert!(d.sigterm().success());
    let db = rusqlite::Connection::open(state.join("latchd.db")).unwrap();
    let stored: i64 = db
        .query_row(
            "SELECT value FROM lock_state WHERE name = 'time_floor'",
            [],
            |r| r.get::<_, String>(0),
        )
        .map(|v| v.parse().unwrap())
        .expect("the floor was stored");
    assert!((stored - now_s()).abs() < 600, "{stored}");
    // While it was off, someone set the clock back a day — the same as a
    // floor a day ahead of it.
    db.execute(
        "UPDATE lock_state SET value = ?1 WHERE name = 'time_floor'",
        [(now_s() + 86_400).to_string()],
    )
    .unwrap();
    drop(db);
    let d = Daemon::start_with(&state, &args);
    d.press("1");
    assert_eq!(wall_time(&d), Value::Null, "behind the floor: unknown");
    assert_eq!(d.count_events("clock_behind"), 1, "logged once");
    d.press("2");
    assert_eq!(d.count_events("clock_behind"), 1);
    assert!(d.sigterm().success());
}

/// Without a trusted RTC, no timedated: the wall clock is unknown, and
/// the daemon says why in its log.
#[test]
fn without_a_time_source_the_wall_clock_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus::TestBus::start();
    let cfg = config(
        dir.path(),
        &format!("[lock]\ntimedate_bus = \"{}\"\n", bus.address),
    );
    let d = Daemon::start_with(
        &dir.path().join("state"),
        &["--config", cfg.to_str().unwrap()],
    );
    first_start(&d);
    assert_eq!(wall_time(&d), Value::Null);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.log_text().contains("cannot read NTP synchronisation") {
        assert!(Instant::now() < deadline, "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.sigterm().success());
}

struct Timedated(Child);

impl Drop for Timedated {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn timedated_path() -> &'static str {
    [
        "/lib/systemd/systemd-timedated",
        "/usr/lib/systemd/systemd-timedated",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("systemd-timedated must be installed (Debian package systemd)")
}

/// The real timedated on a private bus: what it says of NTP
/// synchronisation (from the kernel's clock state) is what the daemon
/// trusts.
#[test]
fn the_daemon_trusts_the_clock_exactly_when_timedated_says_it_is_synchronised() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus::TestBus::start();
    let _timedated = Timedated(
        Command::new(timedated_path())
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-timedated starts"),
    );
    // Ask it ourselves, as a technician would.
    let ask = || {
        Command::new("busctl")
            .args([
                "--address",
                &bus.address,
                "get-property",
                "org.freedesktop.timedate1",
                "/org/freedesktop/timedate1",
                "org.freedesktop.timedate1",
                "NTPSynchronized",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let said = loop {
        if let Some(s) = ask() {
            break s;
        }
        assert!(Instant::now() < deadline, "timedated never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    let synced = match said.as_str() {
        "b true" => true,
        "b false" => false,
        other => panic!("timedated said {other:?}"),
    };
    let cfg = config(
        dir.path(),
        &format!("[lock]\ntimedate_bus = \"{}\"\n", bus.address),
    );
    let d = Daemon::start_with(
        &dir.path().join("state"),
        &["--config", cfg.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.log_text().contains("NTP synchronisation") {
        assert!(Instant::now() < deadline, "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    first_start(&d);
    let wall = wall_time(&d);
    assert_eq!(
        wall.is_i64(),
        synced,
        "timedated said {said}, the engine has {wall}"
    );
    eprintln!("timedated: NTPSynchronized = {synced}; the engine's wall time: {wall}");
    let _ = json!(null);
    assert!(d.sigterm().success());
}
