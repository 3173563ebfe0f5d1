//! `org.latchd.Diagnostics1` on a private `dbus-daemon`, read with the real
//! clients: `busctl` (systemd), a zbus client, and the built `latchctl`.
//!
//! Each test starts its own bus (a session-type config written to a temp
//! dir) and serves the interface with a small backend defined here — the
//! `DiagnosticsBackend` seam is ours, the bus and its clients are real.
//! Needs the Debian packages `dbus-daemon` and `systemd` (for busctl).
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use latchd::dbus::{
    serve, BackendError, BackendFuture, BusChoice, Capacity, DbusError, DbusHandle, DeviceCheck,
    Diagnostics, DiagnosticsBackend, EventRecord, BUS_NAME, INTERFACE, OBJECT_PATH, PROPERTY_NAMES,
};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{broadcast, watch};
use zbus::zvariant::OwnedValue;

use crate::common::bus::TestBus;

/// Generous bound for anything that should take milliseconds; only hit
/// when something is broken, never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(20);

impl TestBus {
    fn choice(&self) -> BusChoice {
        BusChoice::Address(self.address.clone())
    }
}

/// Our side of the seam: canned answers, and a record of the limit asked.
struct TestBackend {
    events: Vec<EventRecord>,
    checks: Vec<DeviceCheck>,
    export: String,
    last_limit: AtomicU32,
    /// A broken daemon: `EventsBefore` ignores `before`.
    stuck_pages: bool,
}

impl DiagnosticsBackend for TestBackend {
    fn self_test(&self) -> BackendFuture<'_, Vec<DeviceCheck>> {
        Box::pin(async move { Ok(self.checks.clone()) })
    }

    fn recent_events(&self, limit: u32) -> BackendFuture<'_, Vec<EventRecord>> {
        self.last_limit.store(limit, Ordering::SeqCst);
        Box::pin(async move {
            let skip = self.events.len().saturating_sub(limit as usize);
            Ok(self.events[skip..].to_vec())
        })
    }

    fn events_before(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> BackendFuture<'_, Vec<EventRecord>> {
        let before = if self.stuck_pages { None } else { before };
        Box::pin(async move {
            let older: Vec<_> = self
                .events
                .iter()
                .filter(|e| before.is_none_or(|b| e.id < b))
                .cloned()
                .collect();
            let skip = older.len().saturating_sub(limit as usize);
            Ok(older[skip..].to_vec())
        })
    }

    fn export(&self) -> BackendFuture<'_, String> {
        Box::pin(async move {
            if self.export.is_empty() {
                Err(BackendError("export store unreadable".into()))
            } else {
                Ok(self.export.clone())
            }
        })
    }
}

fn event(id: u64, kind: &str, detail: &str) -> EventRecord {
    EventRecord {
        id,
        time: 1_795_664_340 + id as i64,
        kind: kind.into(),
        detail: detail.into(),
    }
}

fn backend(export: &str) -> Arc<TestBackend> {
    Arc::new(TestBackend {
        events: vec![
            event(1, "unlock.fingerprint", "user 001"),
            event(2, "lock.inside", ""),
            event(3, "verify.failed", "passcode"),
        ],
        checks: vec![
            DeviceCheck {
                device: "motor".into(),
                ok: true,
                detail: "travel 410 ms".into(),
            },
            DeviceCheck {
                device: "camera".into(),
                ok: false,
                detail: "no frames from /dev/video0".into(),
            },
        ],
        export: export.into(),
        last_limit: AtomicU32::new(0),
        stuck_pages: false,
    })
}

fn sample() -> Diagnostics {
    Diagnostics {
        firmware_version: "0.1.0".into(),
        serial_number: "LD-0001".into(),
        board: "sim".into(),
        uptime_s: 93_784,
        lock_state: "locked".into(),
        bolt_state: "extended".into(),
        door_state: "closed".into(),
        battery_percent: Some(87),
        battery_mv: Some(3912),
        external_power: false,
        wifi_state: "connected".into(),
        wifi_rssi: Some(-61),
        ble_state: "advertising".into(),
        matter_state: "running".into(),
        matter_fabrics: Some(2),
        motor_cycles: 1234,
        last_jam: 1_700_000_000,
        active_alarms: vec!["tamper".into()],
        lockout_active: false,
        lockout_remaining_s: 0,
        users: 3,
        users_limit: 999,
        admins: 1,
        faces: Capacity {
            enrolled: 4,
            limit: 50,
            per_user_limit: 3,
        },
        palms: Capacity {
            enrolled: 0,
            limit: 50,
            per_user_limit: 2,
        },
        fingerprints: Capacity {
            enrolled: 7,
            limit: 50,
            per_user_limit: 5,
        },
        passcodes: Capacity {
            enrolled: 3,
            limit: 50,
            per_user_limit: 1,
        },
        storage_health: "ok".into(),
        key_storage: "tpm2".into(),
        wall_clock: Some(1_795_664_344),
        time_floor: Some(1_795_600_000),
        time_source: Some("ntp".into()),
        update_state: "waiting_to_install: door_open".into(),
        update_slots: vec!["rootfs.0 (A) booted good 0.1.0".into()],
        last_update: String::new(),
    }
}

/// A served interface and the daemon-side ends of its channels.
struct Served {
    bus: TestBus,
    handle: DbusHandle,
    diag_tx: watch::Sender<Diagnostics>,
    events_tx: broadcast::Sender<EventRecord>,
    backend: Arc<TestBackend>,
}

async fn serve_sample(export: &str) -> Served {
    serve_diag(export, sample()).await
}

async fn serve_diag(export: &str, diag: Diagnostics) -> Served {
    serve_backend(backend(export), diag).await
}

async fn serve_backend(backend: Arc<TestBackend>, diag: Diagnostics) -> Served {
    let bus = TestBus::start();
    let (diag_tx, diag_rx) = watch::channel(diag);
    let (events_tx, events_rx) = broadcast::channel(16);
    let handle = serve(bus.choice(), diag_rx, backend.clone(), events_rx)
        .await
        .expect("serve on the private bus");
    Served {
        bus,
        handle,
        diag_tx,
        events_tx,
        backend,
    }
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(program: &str, args: &[&str]) -> Output {
    let out = tokio::time::timeout(
        HANG_GUARD,
        tokio::process::Command::new(program).args(args).output(),
    )
    .await
    .expect("command hung")
    .unwrap_or_else(|e| {
        panic!("cannot run {program}: {e} (busctl is in the Debian package systemd)")
    });
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn busctl(bus: &TestBus, args: &[&str]) -> Output {
    let address = format!("--address={}", bus.address);
    let mut all = vec![address.as_str(), "--no-pager"];
    all.extend_from_slice(args);
    let out = run("busctl", &all).await;
    assert_eq!(out.code, Some(0), "busctl {args:?} failed: {}", out.stderr);
    out
}

async fn latchctl(bus: &str, args: &[&str]) -> Output {
    let mut all = vec!["--bus", bus];
    all.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_latchctl"), &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_shows_only_the_read_only_interface() {
    let s = serve_sample("{}").await;
    let out = busctl(&s.bus, &["introspect", BUS_NAME, OBJECT_PATH, INTERFACE]).await;
    let mut methods = Vec::new();
    let mut signals = Vec::new();
    let mut properties = Vec::new();
    for line in out.stdout.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        match cols.as_slice() {
            [name, "method", ..] => methods.push(name.trim_start_matches('.')),
            [name, "signal", ..] => signals.push(name.trim_start_matches('.')),
            [name, "property", ..] => {
                assert!(line.contains("emits-change"), "{line}");
                properties.push(name.trim_start_matches('.'));
            }
            _ => {}
        }
    }
    // Nothing that unlocks, reveals a secret or changes users.
    assert_eq!(
        methods,
        [
            "EventsBefore",
            "ExportDiagnostics",
            "RecentEvents",
            "SelfTest"
        ]
    );
    assert_eq!(signals, ["AlarmRaised", "EventLogged"]);
    let mut expected = PROPERTY_NAMES.to_vec();
    expected.sort_unstable();
    assert_eq!(properties, expected);
    assert!(
        out.stdout.contains(".SelfTest") && out.stdout.contains("a(sbs)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("a(txss)"), "{}", out.stdout);

    // The doc comments reach the introspection XML.
    let xml = busctl(
        &s.bus,
        &["introspect", "--xml-interface", BUS_NAME, OBJECT_PATH],
    )
    .await;
    assert!(
        xml.stdout.contains("Exercise every device once"),
        "{}",
        xml.stdout
    );
    assert!(
        xml.stdout.contains("Battery charge, 0..100 %"),
        "{}",
        xml.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_property_reads_back_with_busctl() {
    let s = serve_sample("{}").await;
    let expected = [
        ("FirmwareVersion", "s \"0.1.0\""),
        ("SerialNumber", "s \"LD-0001\""),
        ("Board", "s \"sim\""),
        ("UptimeSeconds", "t 93784"),
        ("LockState", "s \"locked\""),
        ("BoltState", "s \"extended\""),
        ("DoorState", "s \"closed\""),
        ("BatteryPercent", "y 87"),
        ("BatteryMillivolts", "u 3912"),
        ("ExternalPower", "b false"),
        ("WifiState", "s \"connected\""),
        ("WifiRssi", "n -61"),
        ("BleState", "s \"advertising\""),
        ("MatterState", "s \"running\""),
        ("MatterFabrics", "y 2"),
        ("MotorCycles", "t 1234"),
        ("LastJam", "x 1700000000"),
        ("ActiveAlarms", "as 1 \"tamper\""),
        ("LockoutActive", "b false"),
        ("LockoutRemainingSeconds", "u 0"),
        ("Users", "u 3"),
        ("UsersLimit", "u 999"),
        ("Admins", "u 1"),
        ("Faces", "(uuu) 4 50 3"),
        ("Palms", "(uuu) 0 50 2"),
        ("Fingerprints", "(uuu) 7 50 5"),
        ("Passcodes", "(uuu) 3 50 1"),
        ("StorageHealth", "s \"ok\""),
        ("KeyStorage", "s \"tpm2\""),
        ("WallClock", "x 1795664344"),
        ("TrustedTimeFloor", "x 1795600000"),
        ("TimeSource", "s \"ntp\""),
        ("UpdateState", "s \"waiting_to_install: door_open\""),
        ("UpdateSlots", "as 1 \"rootfs.0 (A) booted good 0.1.0\""),
        ("LastUpdate", "s \"\""),
    ];
    assert_eq!(expected.len(), PROPERTY_NAMES.len());
    for (name, value) in expected {
        let out = busctl(
            &s.bus,
            &["get-property", BUS_NAME, OBJECT_PATH, INTERFACE, name],
        )
        .await;
        if name == "UptimeSeconds" {
            // Computed when read (issue 22): the sample's, plus the
            // seconds this test has taken so far.
            let up: u64 = out.stdout.trim()[2..].parse().expect("t N");
            assert!((93_784..93_784 + 60).contains(&up), "{up}");
            continue;
        }
        assert_eq!(out.stdout.trim(), value, "property {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_answers_through_busctl() {
    let s = serve_sample(r#"{"serial":"LD-0001","users":"redacted"}"#).await;
    let call = |method: &'static str, extra: &'static [&'static str]| {
        let mut args = vec!["call", BUS_NAME, OBJECT_PATH, INTERFACE, method];
        args.extend_from_slice(extra);
        args
    };
    let out = busctl(&s.bus, &call("SelfTest", &[])).await;
    assert_eq!(
        out.stdout.trim(),
        r#"a(sbs) 2 "motor" true "travel 410 ms" "camera" false "no frames from /dev/video0""#
    );

    let out = busctl(&s.bus, &call("RecentEvents", &["u", "2"])).await;
    assert_eq!(
        out.stdout.trim(),
        r#"a(txss) 2 2 1795664342 "lock.inside" "" 3 1795664343 "verify.failed" "passcode""#
    );

    // An enormous limit is capped before it reaches the daemon.
    let out = busctl(&s.bus, &call("RecentEvents", &["u", "4000000000"])).await;
    assert!(out.stdout.starts_with("a(txss) 3 "), "{}", out.stdout);
    assert_eq!(s.backend.last_limit.load(Ordering::SeqCst), 1000);

    let out = busctl(&s.bus, &call("ExportDiagnostics", &[])).await;
    assert_eq!(
        out.stdout.trim(),
        r#"s "{\"serial\":\"LD-0001\",\"users\":\"redacted\"}""#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_failures_become_dbus_errors() {
    // An empty export makes the test backend fail.
    let s = serve_sample("").await;
    let address = format!("--address={}", s.bus.address);
    let out = run(
        "busctl",
        &[
            &address,
            "call",
            BUS_NAME,
            OBJECT_PATH,
            INTERFACE,
            "ExportDiagnostics",
        ],
    )
    .await;
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("export store unreadable"),
        "{}",
        out.stderr
    );

    let out = latchctl(&s.bus.address, &["export"]).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("export store unreadable"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_cannot_take_the_name() {
    let s = serve_sample("{}").await;
    let (_tx, rx) = watch::channel(Diagnostics::default());
    let (_etx, erx) = broadcast::channel(1);
    let second = serve(s.bus.choice(), rx, backend("{}"), erx).await;
    assert!(
        matches!(second, Err(DbusError::OwnName { .. })),
        "{:?}",
        second.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_changes_are_signalled() {
    let s = serve_sample("{}").await;
    let conn = zbus::connection::Builder::address(s.bus.address.as_str())
        .expect("address")
        .build()
        .await
        .expect("client connection");
    let rule = |member: &'static str, interface: &'static str| {
        zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .path(OBJECT_PATH)
            .and_then(|b| b.interface(interface))
            .and_then(|b| b.member(member))
            .expect("rule")
            .build()
    };
    let mut logged =
        zbus::MessageStream::for_match_rule(rule("EventLogged", INTERFACE), &conn, None)
            .await
            .expect("subscribe EventLogged");
    let mut changed = zbus::MessageStream::for_match_rule(
        rule("PropertiesChanged", "org.freedesktop.DBus.Properties"),
        &conn,
        None,
    )
    .await
    .expect("subscribe PropertiesChanged");
    let mut alarms =
        zbus::MessageStream::for_match_rule(rule("AlarmRaised", INTERFACE), &conn, None)
            .await
            .expect("subscribe AlarmRaised");

    s.events_tx
        .send(event(4, "alarm.tamper", "front panel removed"))
        .expect("service listens");
    let msg = tokio::time::timeout(HANG_GUARD, logged.next())
        .await
        .expect("EventLogged arrives")
        .expect("stream open")
        .expect("message");
    let body: (u64, i64, String, String) = msg.body().deserialize().expect("(txss)");
    assert_eq!(
        body,
        (
            4,
            1_795_664_344,
            "alarm.tamper".into(),
            "front panel removed".into()
        )
    );

    s.diag_tx.send_modify(|d| {
        d.battery_percent = Some(41);
        d.active_alarms.push("lockout".into());
    });
    let msg = tokio::time::timeout(HANG_GUARD, changed.next())
        .await
        .expect("PropertiesChanged arrives")
        .expect("stream open")
        .expect("message");
    let (iface, props, invalidated): (
        String,
        std::collections::HashMap<String, OwnedValue>,
        Vec<String>,
    ) = msg.body().deserialize().expect("(sa{sv}as)");
    assert_eq!(iface, INTERFACE);
    let mut names: Vec<_> = props.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["ActiveAlarms", "BatteryPercent"]);
    assert_eq!(u8::try_from(&props["BatteryPercent"]).expect("y"), 41);
    assert!(invalidated.is_empty());

    // Only the alarm that is new is announced.
    let msg = tokio::time::timeout(HANG_GUARD, alarms.next())
        .await
        .expect("AlarmRaised arrives")
        .expect("stream open")
        .expect("message");
    let (alarm,): (String,) = msg.body().deserialize().expect("(s)");
    assert_eq!(alarm, "lockout");

    s.handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latchctl_status_table_and_json() {
    let s = serve_sample("{}").await;
    let out = latchctl(&s.bus.address, &["status"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for needle in [
        "Serial number    LD-0001",
        "Uptime           1d 02:0",
        "Last jam         2023-11-14 22:13:20 UTC",
        "Battery          87 % (3912 mV)",
        "Wi-Fi            connected (-61 dBm)",
        "Active alarms    tamper",
        "Users            3 of 999 (1 administrators)",
        "Device key       tpm2",
        "fingerprints          7     50         5",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle:?} in\n{}",
            out.stdout
        );
    }

    let out = latchctl(&s.bus.address, &["status", "--json"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let mut d: Diagnostics =
        serde_json::from_str(&out.stdout).expect("status --json is a Diagnostics");
    assert!(d.uptime_s >= 93_784, "{}", d.uptime_s);
    d.uptime_s = 93_784;
    assert_eq!(d, sample());
}

/// Issue 22 item 1: a quiet lock's uptime still counts — the snapshot
/// never changes here, yet two reads a second apart differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uptime_is_computed_when_read() {
    let s = serve_sample("{}").await;
    let read = || async {
        let out = busctl(
            &s.bus,
            &[
                "get-property",
                BUS_NAME,
                OBJECT_PATH,
                INTERFACE,
                "UptimeSeconds",
            ],
        )
        .await;
        out.stdout.trim()[2..].parse::<u64>().expect("t N")
    };
    let first = read().await;
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let second = read().await;
    assert!(second >= first + 2, "{first} then {second}");
    s.handle.shutdown().await.expect("clean shutdown");
}

/// Issue 22 item 2: readings the lock does not have are shown as unknown —
/// the documented sentinel on the bus, "unknown" in `latchctl status`,
/// `null` in `--json` — never as a plausible 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_readings_say_unknown_everywhere() {
    let s = serve_diag("{}", Diagnostics::default()).await;
    for (name, value) in [
        ("BatteryPercent", "y 255"),
        ("BatteryMillivolts", "u 0"),
        ("WifiRssi", "n 0"),
        ("DoorState", "s \"unknown\""),
        ("WallClock", "x 0"),
        ("TrustedTimeFloor", "x 0"),
        ("TimeSource", "s \"none\""),
        ("MatterFabrics", "y 255"),
    ] {
        let out = busctl(
            &s.bus,
            &["get-property", BUS_NAME, OBJECT_PATH, INTERFACE, name],
        )
        .await;
        assert_eq!(out.stdout.trim(), value, "property {name}");
    }
    let out = latchctl(&s.bus.address, &["status"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for needle in [
        "Battery          unknown (no reading yet)",
        "Wi-Fi            unknown (signal unknown)",
        "Door             unknown",
        "Wall clock       unknown",
        "Time floor       none yet",
        "Time source      none (no trusted source",
        "Matter           unknown (fabrics unknown)",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle:?} in\n{}",
            out.stdout
        );
    }
    let out = latchctl(&s.bus.address, &["status", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    for key in [
        "battery_percent",
        "battery_mv",
        "wifi_rssi",
        "wall_clock",
        "time_floor",
        "time_source",
        "matter_fabrics",
    ] {
        assert!(v[key].is_null(), "{key}: {}", v[key]);
    }
    s.handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latchctl_events_self_test_and_export() {
    let s = serve_sample(r#"{"b":[1,2],"a":"x"}"#).await;

    let out = latchctl(&s.bus.address, &["events", "-n", "2"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(
        lines[0].contains("TIME (UTC)") && lines[0].contains("KIND"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("2026-11-26 03:39:02") && lines[1].contains("lock.inside"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].ends_with("verify.failed             passcode"),
        "{:?}",
        lines[2]
    );

    let out = latchctl(&s.bus.address, &["--json", "events", "-n", "5"]).await;
    let events: Vec<EventRecord> = serde_json::from_str(&out.stdout).expect("events --json");
    assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3]);

    let out = latchctl(&s.bus.address, &["events", "-n", "0"]).await;
    assert_eq!(
        out.code,
        Some(2),
        "a zero count is a usage error: {}",
        out.stderr
    );

    // One device fails in the test backend: the table says so and exit code 6.
    let out = latchctl(&s.bus.address, &["self-test"]).await;
    assert_eq!(out.code, Some(6), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("camera           FAIL   no frames from /dev/video0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("1 of 2 devices failed"),
        "{}",
        out.stderr
    );
    let out = latchctl(&s.bus.address, &["self-test", "--json"]).await;
    assert_eq!(out.code, Some(6));
    let checks: Vec<DeviceCheck> = serde_json::from_str(&out.stdout).expect("self-test --json");
    assert_eq!(checks.len(), 2);
    assert!(checks[0].ok && !checks[1].ok);

    let out = latchctl(&s.bus.address, &["export"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "{\n  \"a\": \"x\",\n  \"b\": [\n    1,\n    2\n  ]\n}\n"
    );
    let out = latchctl(&s.bus.address, &["export", "--json"]).await;
    assert_eq!(out.stdout, "{\"b\":[1,2],\"a\":\"x\"}\n");
}

/// Issue 17 item 7: `latchctl audit` reads the whole log over several
/// `EventsBefore` pages, oldest first, as JSON or spreadsheet-safe CSV,
/// and refuses a daemon whose pages do not go back in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latchctl_audit_exports_the_whole_log() {
    const N: u64 = 2_345;
    let events: Vec<EventRecord> = (1..=N)
        .map(|i| match i {
            7 => event(i, "wifi.joined", "ssid==HYPERLINK(\"http://x\")"),
            8 => event(i, "unlocked.ble", "=cmd|' /C calc'!A0"),
            _ => event(i, "door_opened", ""),
        })
        .collect();
    let mut b = Arc::try_unwrap(backend("{}")).ok().expect("fresh");
    b.events = events;
    let s = serve_backend(Arc::new(b), sample()).await;

    let out = latchctl(&s.bus.address, &["audit", "--format", "csv"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let rows: Vec<&str> = out.stdout.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(rows[0], "id,time,utc,kind,detail");
    assert_eq!(rows.len() as u64, N + 1, "every event, one row each");
    let ids: Vec<u64> = rows[1..]
        .iter()
        .map(|r| r.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=N).collect::<Vec<_>>(), "oldest first, none twice");
    // A cell that a spreadsheet would run as a formula is defused.
    assert!(
        rows[8].ends_with(",unlocked.ble,'=cmd|' /C calc'!A0"),
        "{}",
        rows[8]
    );
    assert!(
        rows[7].ends_with(",\"ssid==HYPERLINK(\"\"http://x\"\")\""),
        "{}",
        rows[7]
    );
    // More than one page was asked for, each at most the cap.
    assert_eq!(
        s.backend.last_limit.load(Ordering::SeqCst),
        0,
        "RecentEvents not used"
    );

    let out = latchctl(&s.bus.address, &["audit"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let doc: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(doc.len() as u64, N);
    assert_eq!(doc[0]["id"], 1);
    assert_eq!(doc[0]["utc"], "2026-11-26 03:39:01");

    // A daemon that answers every page with the newest events.
    let mut b = Arc::try_unwrap(backend("{}")).ok().expect("fresh");
    b.events = (1..=1_500).map(|i| event(i, "door_opened", "")).collect();
    b.stuck_pages = true;
    let stuck = serve_backend(Arc::new(b), sample()).await;
    let out = latchctl(&stuck.bus.address, &["audit", "--format", "csv"]).await;
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(out.stderr.contains("run it again"), "{}", out.stderr);
    assert!(
        out.stdout.is_empty(),
        "nothing half-written: {}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latchctl_follows_new_events() {
    let s = serve_sample("{}").await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchctl"))
        .args([
            "--bus",
            &s.bus.address,
            "--json",
            "events",
            "-n",
            "2",
            "--follow",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn latchctl");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    async fn next(
        lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    ) -> EventRecord {
        let line = tokio::time::timeout(HANG_GUARD, lines.next_line())
            .await
            .expect("latchctl printed a line")
            .expect("read")
            .expect("not EOF");
        serde_json::from_str::<EventRecord>(&line).expect("one JSON event per line")
    }
    // History first: once it is printed, latchctl has already subscribed.
    assert_eq!(next(&mut lines).await.id, 2);
    assert_eq!(next(&mut lines).await.id, 3);
    s.events_tx
        .send(event(4, "unlock.ble", "owner key 1"))
        .expect("send");
    let e = next(&mut lines).await;
    assert_eq!((e.id, e.kind.as_str()), (4, "unlock.ble"));

    // The daemon leaving ends --follow with "not running" (3).
    s.handle.shutdown().await.expect("shutdown");
    let status = tokio::time::timeout(HANG_GUARD, child.wait())
        .await
        .expect("latchctl ends when latchd leaves")
        .expect("wait");
    assert_eq!(status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latchctl_explains_a_missing_daemon_and_a_missing_bus() {
    let bus = TestBus::start();
    let out = latchctl(&bus.address, &["status"]).await;
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(
        out.stderr.contains("latchd is not running"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());

    let out = latchctl("unix:path=/nonexistent/latchd-test-bus", &["status"]).await;
    assert_eq!(out.code, Some(5), "{}", out.stderr);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);

    let out = latchctl("sytem", &["status"]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("is not a bus"), "{}", out.stderr);
}

/// The real daemon (simulated board) serving on a private bus, read by
/// latchctl: the seam between daemon and D-Bus service, end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latchd_binary_serves_diagnostics_to_latchctl() {
    let bus = TestBus::start();
    let state = tempfile::tempdir().expect("state dir");
    let _daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchd"))
        .arg("--headless")
        .arg("--state-dir")
        .arg(state.path())
        .args(["--dbus", &bus.address])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn latchd");

    // Until latchd owns the name latchctl says "not running" (3); then 0.
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    let out = loop {
        let out = latchctl(&bus.address, &["--json", "status"]).await;
        if out.code != Some(3) || tokio::time::Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let d: Diagnostics = serde_json::from_str(&out.stdout).expect("status --json");
    assert_eq!(d.board, "sim");
    assert_eq!(d.fingerprints.limit, 50);

    let out = latchctl(&bus.address, &["self-test"]).await;
    assert!(matches!(out.code, Some(0) | Some(6)), "{}", out.stderr);
    assert!(out.stdout.contains("devices,"), "{}", out.stdout);
    let out = latchctl(&bus.address, &["--json", "export"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    serde_json::from_str::<serde_json::Value>(&out.stdout).expect("export is JSON");
}
