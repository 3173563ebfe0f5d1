//! The real `latchd` binary, headless on the sim board, driven through its
//! control socket: first start → administrator → a user with a passcode
//! and a fingerprint → unlocks → lockout → restart.

use serde_json::json;

use crate::common::daemon::*;

fn bolt(d: &Daemon) -> String {
    d.status()["sim"]["bolt"].as_str().unwrap().to_owned()
}

/// B-2.1, B-2.2, B-4.1, B-4.4, B-4.7, B-4.8, B-6.3, B-6.4, B-8.2, B-7.1 and
/// the lockout surviving a restart.
#[test]
fn first_start_enrol_unlock_lockout_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start(&state);
    first_start(&d);

    // B-4.4: add user 002 with a passcode (B-4.8) and a fingerprint (B-4.7).
    enter_menu(&d);
    d.press("2");
    assert!(d.last_prompts(3).iter().any(|p| p == "User number 0 0 2."));
    d.press("4");
    d.press(&format!("{USER_CODE}✓{USER_CODE}✓"));
    d.press("3");
    for _ in 0..3 {
        d.finger(USER_PERSON);
    }
    let s = d.status();
    let counts = &s["engine"]["counts"];
    assert_eq!(counts["users"], json!(2), "{s}");
    assert_eq!(counts["passcodes"], json!(2));
    assert_eq!(counts["fingerprints"], json!(1));
    d.press("↩↩");
    assert_eq!(d.step(), "idle");

    // B-6.4 with anti-peep digits around the code, then B-8.2.
    assert_eq!(bolt(&d), "extended");
    d.press(&format!("90{USER_CODE}37✓"));
    d.settle();
    assert_eq!(bolt(&d), "retracted");
    assert!(d.last_prompts(3).iter().any(|p| p == "Unlocked."));
    d.ok(json!({"cmd": "lock_button"}));
    d.settle();
    assert_eq!(bolt(&d), "extended");

    // B-6.3: person 2's finger.
    d.finger(USER_PERSON);
    d.settle();
    assert_eq!(bolt(&d), "retracted");
    d.ok(json!({"cmd": "lock_button"}));
    d.settle();
    assert_eq!(bolt(&d), "extended");

    // B-7.1: five wrong codes lock the system; the right one then fails.
    for i in 0..5 {
        d.press(&format!("97531{i}✓"));
    }
    let s = d.status();
    assert_eq!(s["engine"]["lockout_active"], json!(true), "{s}");
    assert_eq!(
        d.last_prompt(),
        "The system is locked. Please try again later."
    );
    d.press(&format!("{USER_CODE}✓"));
    d.settle();
    assert_eq!(bolt(&d), "extended");

    // Restart: the lockout is still in force, for the finger too, and it
    // resumes with the time that was left at shutdown (not the full three
    // minutes persisted when it started).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The status shows the engine's time as of its last input: wake it.
    d.press("1");
    let remaining = |s: &serde_json::Value| {
        let r = &s["engine"]["lockout_remaining"];
        r["secs"].as_u64().unwrap() * 1000 + r["nanos"].as_u64().unwrap() / 1_000_000
    };
    let before = remaining(&d.status());
    assert!(before < 179_000, "{before}");
    assert!(d.sigterm().success());
    let d = Daemon::start(&state);
    let s = d.status();
    assert_eq!(s["engine"]["lockout_active"], json!(true), "{s}");
    assert!(remaining(&s) <= before, "{} > {before}", remaining(&s));
    d.finger(USER_PERSON);
    d.settle();
    assert_eq!(bolt(&d), "extended");
    assert_eq!(
        d.last_prompt(),
        "The system is locked. Please try again later."
    );

    // The log has the story.
    let events = d.ok(json!({"cmd": "events", "n": 1000}));
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for want in [
        "unlocked.passcode",
        "unlocked.fingerprint",
        "locked.inside",
        "lockout_started",
    ] {
        assert!(kinds.contains(&want), "no {want} in {kinds:?}");
    }
    assert!(d.sigterm().success());
    assert_eq!(check_db(&state), (2, 3));
    // Motor wear survives the restart: four bolt moves in the first run.
    let db = rusqlite::Connection::open(state.join("latchd.db")).unwrap();
    let cycles: i64 = db
        .query_row(
            "SELECT value FROM service_counters WHERE name = 'motor_cycles'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cycles, 4);
}

/// SIGTERM in the middle of a motor move: the move finishes (its `Done`
/// report reaches the engine and the store during shutdown), the daemon
/// exits 0, the socket is removed, and the state is there on restart.
/// (That the bridge is coasted when the board is dropped is checked where
/// it is observable: `board::drivers::motor_thread::tests::stop_and_drop_coast_without_a_report` and, after SIGKILL too,
/// `tests/vm/vm_motor_failsafe.rs`.)
#[test]
fn sigterm_mid_move_exits_zero_with_state_intact() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start(&state);
    first_start(&d);
    let sock = d.sock.clone();
    d.press(&format!("{ADMIN_CODE}✓"));
    // The unlock is handled; the bolt is travelling (600 ms).
    let status = d.sigterm();
    assert!(status.success(), "{status}");
    assert!(!sock.exists(), "control socket left behind");
    // The move finished: the engine counts a bolt cycle only on the
    // motor's `Done`, and stores the count at once. A shutdown that cut the
    // move short would leave none.
    let db = rusqlite::Connection::open(state.join("latchd.db")).unwrap();
    let cycles: i64 = db
        .query_row(
            "SELECT value FROM service_counters WHERE name = 'motor_cycles'",
            [],
            |r| r.get(0),
        )
        .expect("the finished move's cycle was stored");
    assert_eq!(cycles, 1);
    drop(db);

    let d = Daemon::start(&state);
    assert_eq!(d.step(), "idle", "first start must not repeat");
    assert_eq!(d.status()["engine"]["counts"]["admins"], json!(1));
    let events = d.ok(json!({"cmd": "events", "n": 50}));
    assert!(events.to_string().contains("unlocked.passcode"), "{events}");
    let log = d.log_text();
    assert!(log.contains("stopped cleanly"));
    assert!(
        !log.contains("did not finish its move"),
        "the move was cut short: {log}"
    );
    assert!(d.sigterm().success());
    check_db(&state);
}

/// Malformed control lines are answered with an error and change nothing.
#[test]
fn control_socket_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start(&state);
    let before = d.status();
    for bad in [
        json!("not an object"),
        json!({"cmd": "open_sesame"}),
        json!({"cmd": "press", "keys": "12x"}),
        json!({"cmd": "press", "keys": "1", "extra": true}),
        json!({"cmd": "finger", "person": 0}),
        json!({"cmd": "battery", "percent": 250}),
        json!({"cmd": "door", "open": true}),
    ] {
        let r = d.call(bad.clone());
        assert_eq!(r["ok"], json!(false), "{bad} -> {r}");
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let after = d.status();
    assert_eq!(before["engine"], after["engine"]);
    assert_eq!(before["daemon"]["processed"], after["daemon"]["processed"]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&d.sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}
