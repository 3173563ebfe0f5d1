//! `kill -9` at several points of an enrolment and of event logging, then
//! a restart: the database passes `PRAGMA integrity_check`, no user is
//! half-stored (B-4.11), and the stored users and credentials are exactly
//! the acknowledged ones: every change the lock confirmed before the kill
//! is there, none it had not confirmed (issue 23 item 2).

use std::io::Write;
use std::os::unix::net::UnixStream;

use serde_json::json;

use crate::common::daemon::*;

/// Where the daemon is killed while user 002 is being added.
#[derive(Debug, Clone, Copy)]
enum Point {
    /// User number allocated, nothing stored yet.
    AfterUserNumber,
    /// Half-way through entering the passcode twice.
    AfterFirstPasscode,
    /// While the passcode commit is in flight (request sent, no reply read).
    DuringPasscodeCommit,
    /// Passcode stored; fingerprint enrolment half-way.
    MidFingerprint,
    /// While a burst of failed attempts is being logged.
    DuringEventBurst,
}

fn send_without_waiting(d: &Daemon, request: serde_json::Value) -> UnixStream {
    let mut s = UnixStream::connect(&d.sock).unwrap();
    writeln!(s, "{request}").unwrap();
    s
}

fn crash_at(point: Point) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let d = Daemon::start(&state);
    first_start(&d);
    enter_menu(&d);
    d.press("2");
    let mut keep = Vec::new();
    match point {
        Point::AfterUserNumber => {}
        Point::AfterFirstPasscode => {
            d.press("4");
            d.press(&format!("{USER_CODE}✓"));
        }
        Point::DuringPasscodeCommit => {
            d.press("4");
            d.press(&format!("{USER_CODE}✓"));
            keep.push(send_without_waiting(
                &d,
                json!({"cmd": "press", "keys": format!("{USER_CODE}✓")}),
            ));
        }
        Point::MidFingerprint => {
            d.press("4");
            d.press(&format!("{USER_CODE}✓{USER_CODE}✓"));
            d.press("3");
            d.finger(USER_PERSON);
            d.finger(USER_PERSON);
        }
        Point::DuringEventBurst => {
            d.press("↩↩");
            for i in 0..4 {
                keep.push(send_without_waiting(
                    &d,
                    json!({"cmd": "press", "keys": format!("86420{i}✓")}),
                ));
            }
        }
    }
    // What the lock had confirmed (the engine reports a change only after
    // its commit returned): the administrator and his passcode, plus user
    // 002 with the passcode once both entries were confirmed.
    // Asked only where nothing is in flight: a status request would let
    // an in-flight commit finish before the kill.
    let in_flight = matches!(point, Point::DuringPasscodeCommit | Point::DuringEventBurst);
    let acked = (!in_flight).then(|| d.status());
    d.kill9();
    drop(keep);

    let (users, creds) = check_db(&state);
    let confirmed = match point {
        Point::AfterUserNumber | Point::AfterFirstPasscode | Point::DuringEventBurst => (1, 1),
        Point::MidFingerprint => (2, 2),
        // The commit was in flight, unacknowledged: it is there whole
        // (user and passcode, one transaction) or not at all.
        Point::DuringPasscodeCommit => {
            assert!(
                (users, creds) == (1, 1) || (users, creds) == (2, 2),
                "{point:?}: an unacknowledged batch half-stored: {users} users, {creds} credentials"
            );
            (users, creds)
        }
    };
    assert_eq!(
        (users, creds),
        confirmed,
        "{point:?}: stored (users, credentials) differ from the acknowledged ones"
    );
    if let Some(acked) = acked {
        assert_eq!(
            json!(users),
            acked["engine"]["counts"]["users"],
            "{point:?}: status before the kill: {acked}"
        );
    }
    // And the daemon starts on it, with memory matching disk.
    let d = Daemon::start(&state);
    let s = d.status();
    assert_eq!(
        s["engine"]["counts"]["users"],
        json!(users),
        "{point:?}: {s}"
    );
    assert_eq!(s["engine"]["counts"]["admins"], json!(1));
    assert!(d.sigterm().success());
    check_db(&state);
}

#[test]
fn kill9_after_user_number() {
    crash_at(Point::AfterUserNumber);
}

#[test]
fn kill9_after_first_passcode() {
    crash_at(Point::AfterFirstPasscode);
}

#[test]
fn kill9_during_passcode_commit() {
    crash_at(Point::DuringPasscodeCommit);
}

#[test]
fn kill9_mid_fingerprint_enrolment() {
    crash_at(Point::MidFingerprint);
}

#[test]
fn kill9_during_event_burst() {
    crash_at(Point::DuringEventBurst);
}
