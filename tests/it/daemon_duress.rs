//! Issue 14 item 5, B-6.9: a duress unlock looks like any passcode unlock
//! on every surface the person forced to open the door, a technician or a
//! passer-by can read — the daemon's log at its most verbose, every
//! message on its D-Bus (watched with `dbus-monitor`), `latchctl`'s status,
//! events and support export, the voice prompts and the simulated front
//! panel. Only the owner's sealed notice tells it (proved over a real
//! broker in `remote_mqtt::a_duress_unlock_is_an_ordinary_unlock_on_every_clear_topic`).
//!
//! Needs `dbus-daemon`, `dbus-monitor` (Debian `dbus-bin`) and `busctl`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latchd::core::passcode::{Macer, Passcode};
use latchd::core::time::Validity;
use latchd::core::types::{
    Change, Credential, CredentialId, CredentialKind, CredentialSecret, Handing, Role, User,
    UserNumber,
};
use latchd::store::{Store, StoreOptions};
use serde_json::json;

use crate::common::bus::TestBus;
use crate::common::daemon::{Daemon, ADMIN_CODE};

/// Administrator 001's duress passcode.
const DURESS_CODE: &str = "975318";

/// Administrator 001 with `ADMIN_CODE` and the duress code `DURESS_CODE`.
fn seed(state: &Path) {
    latchd::daemon::create_state_dir(state).expect("state dir");
    let (mut store, key) = Store::open(state, StoreOptions::default()).expect("store");
    let macer = Macer::new(&key.passcode_key());
    let mac = |code: &str| macer.mac(Passcode::parse(code).expect("a valid code").digits());
    let admin = UserNumber::new(1).expect("001");
    store
        .apply(&[
            Change::SetHanding(Handing::RightHand),
            Change::PutUser(User {
                number: admin,
                role: Role::Admin,
                validity: Validity::ALWAYS,
            }),
            Change::PutCredential(Credential {
                id: CredentialId(1),
                user: admin,
                kind: CredentialKind::Passcode,
                secret: CredentialSecret::Passcode(mac(ADMIN_CODE)),
            }),
            Change::PutCredential(Credential {
                id: CredentialId(2),
                user: admin,
                kind: CredentialKind::DuressPasscode,
                secret: CredentialSecret::Passcode(mac(DURESS_CODE)),
            }),
        ])
        .expect("seed");
}

/// `dbus-monitor` on the test bus (which allows eavesdropping): every
/// method call, reply and signal, as text, killed on drop.
struct Monitor {
    child: Child,
    out: std::path::PathBuf,
}

impl Monitor {
    fn start(address: &str, out: &Path) -> Monitor {
        let file = std::fs::File::create(out).expect("monitor output");
        let child = Command::new("dbus-monitor")
            .args(["--address", address])
            .stdout(Stdio::from(file))
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-monitor (Debian package dbus-bin)");
        Monitor {
            child,
            out: out.to_owned(),
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn latchctl(bus: &str, args: &[&str]) -> String {
    let mut all = vec!["--bus", bus];
    all.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_latchctl"), &all)
}

/// Polls `cond`; the bound only turns a hang into a failure.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "never saw {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Nothing the lock says anywhere but in the owner's sealed notice may
/// name duress or carry the code's digits.
fn assert_silent(surface: &str, text: &str) {
    let lower = text.to_lowercase();
    assert!(!lower.contains("duress"), "{surface} says duress:\n{text}");
    assert!(
        !text.contains(DURESS_CODE),
        "{surface} carries the code:\n{text}"
    );
}

/// The control socket's status without the enrolment counts: those say
/// that a duress code is set (the owner's app shows it), not that one was
/// used, and are the same after either unlock.
fn front_panel(d: &Daemon) -> String {
    let mut status = d.status();
    let counts = status["engine"]["counts"].take();
    assert_eq!(counts["duress_passcodes"], json!(1), "{counts}");
    status.to_string()
}

#[test]
fn a_duress_unlock_leaves_nothing_a_technician_or_the_door_can_read() {
    let bus = TestBus::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    seed(&state);
    let monitor = Monitor::start(&bus.address, &dir.path().join("monitor.txt"));
    // The most verbose log the daemon writes: whatever a debug build or a
    // technician's `RUST_LOG` would put in the journal.
    let d = Daemon::start_with_env(
        &state,
        &["--dbus", &bus.address],
        &[("RUST_LOG", "latchd=trace,info")],
    );
    wait_until("latchd on the bus", || {
        Command::new(env!("CARGO_BIN_EXE_latchctl"))
            .args(["--bus", &bus.address, "status"])
            .output()
            .is_ok_and(|o| o.status.success())
    });

    d.ok(json!({"cmd": "touch"}));
    d.press(&format!("{DURESS_CODE}✓"));
    d.settle();
    // The door opens as for any code (B-6.9), and the log says so.
    assert_eq!(d.status()["sim"]["bolt"], json!("retracted"));
    assert_eq!(d.count_events("unlocked.passcode"), 1);
    let prompts = d.last_prompts(100);

    // The same unlock with the ordinary code, for the comparison below.
    d.ok(json!({"cmd": "lock_button"}));
    d.settle();
    let said_before = d.last_prompts(100).len();
    d.ok(json!({"cmd": "touch"}));
    d.press(&format!("{ADMIN_CODE}✓"));
    d.settle();
    assert_eq!(d.count_events("unlocked.passcode"), 2);
    assert_eq!(
        d.last_prompts(100)[said_before..],
        prompts[..],
        "the door says the same for both codes"
    );

    // What a technician reads over D-Bus, and every message on the bus.
    let status = latchctl(&bus.address, &["--json", "status"]);
    let events = latchctl(&bus.address, &["--json", "events", "-n", "1000"]);
    let export = latchctl(&bus.address, &["export"]);
    // Issue 17 item 7: the owner's full audit export, as a spreadsheet.
    let audit = latchctl(&bus.address, &["audit", "--format", "csv"]);
    assert!(events.contains("unlocked.passcode"), "{events}");
    assert_eq!(
        audit.matches(",unlocked.passcode,").count(),
        2,
        "both unlocks in the audit: {audit}"
    );
    wait_until("the events signalled on the bus", || {
        monitor.text().matches("unlocked.passcode").count() >= 2
    });
    for (surface, text) in [
        ("latchctl status", status),
        ("latchctl events", events),
        ("latchctl export", export),
        ("latchctl audit", audit),
        ("the D-Bus traffic", monitor.text()),
        ("the front panel", front_panel(&d)),
        ("the voice prompts", format!("{prompts:?}")),
        (
            "the control socket's event list",
            format!("{:?}", d.events()),
        ),
    ] {
        assert_silent(surface, &text);
    }
    let log = d.log.clone();
    assert!(d.sigterm().success());
    let log = std::fs::read_to_string(log).expect("the daemon's log");
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "{log}");
    assert_silent("the daemon's log", &log);
}
