//! Issue 22 item 5: one table of situations a technician meets, each row
//! the situation and the value `busctl` must read for every property of
//! `org.latchd.Diagnostics1`.
//!
//! Two kinds of row:
//! * `Daemon`: the real `latchd` binary (simulated board) on a private
//!   `dbus-daemon` that is also its system bus, so the BLE service looks
//!   for bluetoothd there and finds none. Nothing is injected.
//! * `Snapshot`: the daemon's own snapshot code (`StaticDiag::diagnostics`)
//!   over a real engine fed real inputs, with the BLE service's report
//!   given to the same `HealthBoard` the service writes, served by the
//!   real D-Bus service and read with `busctl`. These are the rows that
//!   need a Bluetooth adapter and a phone (BLE registered, an app
//!   connected): that the service itself reports "registered" and "app
//!   connected" is checked in the VM (`tests/vm/vm_ble.rs`, guest test),
//!   not here.
//!
//! Needs the Debian packages `dbus-daemon` and `systemd` (for busctl).
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use latchd::core::input::{
    BoltPosition, DoorPosition, PowerReading, SetPress, TamperState, WifiStatus,
};
use latchd::core::{Engine, EngineConfig, Input, Now, PairingCodes, Persisted};
use latchd::daemon::status::StaticDiag;
use latchd::dbus::{
    serve, BackendError, BackendFuture, BusChoice, DeviceCheck, DiagnosticsBackend, EventRecord,
    BUS_NAME, INTERFACE, OBJECT_PATH, PROPERTY_NAMES,
};
use latchd::link::{BleHealth, HealthBoard, MatterHealth, TimeSource};
use latchd::wifi::BackendKind;
use tokio::sync::{broadcast, watch};

use crate::common::bus::TestBus;

/// Only hit when something is broken; never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(30);
/// The wall time of the snapshot rows (2026-11-26 06:00 UTC).
const WALL0: i64 = 1_795_500_000;

/// How a row puts the lock into its situation.
enum Setup {
    /// The `latchd` binary with this config file; no bluetoothd, no Wi-Fi
    /// backend.
    Daemon { config: &'static str },
    /// A snapshot of a real engine: `battery` read or not yet, what the
    /// BLE service reported, SET held for pairing mode, the Wi-Fi backend
    /// joining.
    Snapshot {
        battery: bool,
        ble: BleHealth,
        pairing: bool,
        wifi_joining: bool,
        matter: MatterHealth,
    },
}

/// What a property must read. `Any` only for values that are the
/// machine's, not the situation's (uptime, the generated serial, the
/// version being built).
enum Expect {
    Is(&'static str),
    Owned(String),
    StartsWith(&'static str),
    Any,
}

struct Situation {
    name: &'static str,
    setup: Setup,
    /// Every property differing from the baseline of its kind of row.
    differs: Vec<(&'static str, Expect)>,
}

/// The no-Bluetooth row's truth depends on the build: without the BlueZ
/// client BLE is `unavailable`; with it, and no bluetoothd on the bus, the
/// service waits for bluetoothd.
fn no_bluetooth() -> &'static str {
    if cfg!(feature = "board-linux") {
        "s \"waiting-for-bluetoothd\""
    } else {
        "s \"unavailable\""
    }
}

/// `[matter] enabled` in a build without the node says so; with it, the
/// node runs (no fabric: nobody commissioned it).
fn matter_on() -> &'static str {
    if cfg!(feature = "matter") {
        "s \"running\""
    } else {
        "s \"unavailable\""
    }
}

fn situations() -> Vec<Situation> {
    use Expect::*;
    let registered = |app_connected| BleHealth::Registered { app_connected };
    let running = |fabrics| MatterHealth::Running {
        fabrics,
        window_open: false,
    };
    vec![
        Situation {
            name: "no Bluetooth (no-BlueZ build, or no bluetoothd), no Wi-Fi backend",
            setup: Setup::Daemon {
                config: "[lock]\ntimedate_bus = \"off\"\n[matter]\nenabled = false\n",
            },
            differs: vec![("BleState", Is(no_bluetooth()))],
        },
        Situation {
            name: "no Wi-Fi backend, BLE off in the config",
            setup: Setup::Daemon {
                config: "[lock]\ntimedate_bus = \"off\"\n[ble]\nenabled = false\n[matter]\nenabled = false\n",
            },
            differs: vec![("BleState", Is("s \"off\""))],
        },
        Situation {
            name: "Matter node on (a build with it), no home app yet",
            setup: Setup::Daemon {
                config: "[lock]\ntimedate_bus = \"off\"\n[ble]\nenabled = false\n[matter]\nport = 55417\n",
            },
            differs: vec![
                ("BleState", Is("s \"off\"")),
                ("MatterState", Is(matter_on())),
                (
                    "MatterFabrics",
                    Is(if cfg!(feature = "matter") { "y 0" } else { "y 255" }),
                ),
            ],
        },
        Situation {
            name: "BLE registered (VM only: the service's report given here)",
            setup: Setup::Snapshot {
                battery: true,
                ble: registered(false),
                pairing: false,
                wifi_joining: false,
                matter: running(1),
            },
            differs: vec![],
        },
        Situation {
            name: "an app connected (VM only: the service's report given here)",
            setup: Setup::Snapshot {
                battery: true,
                ble: registered(true),
                pairing: false,
                wifi_joining: false,
                matter: running(1),
            },
            differs: vec![("BleState", Is("s \"connected\""))],
        },
        Situation {
            name: "pairing mode (SET held), BLE registered",
            setup: Setup::Snapshot {
                battery: true,
                ble: registered(false),
                pairing: true,
                wifi_joining: false,
                matter: running(1),
            },
            differs: vec![("BleState", Is("s \"pairing\""))],
        },
        Situation {
            name: "before the first battery reading",
            setup: Setup::Snapshot {
                battery: false,
                ble: registered(false),
                pairing: false,
                wifi_joining: false,
                matter: running(1),
            },
            differs: vec![
                ("BatteryPercent", Is("y 255")),
                ("BatteryMillivolts", Is("u 0")),
            ],
        },
        Situation {
            name: "Wi-Fi backend joining a network",
            setup: Setup::Snapshot {
                battery: true,
                ble: registered(false),
                pairing: false,
                wifi_joining: true,
                matter: running(1),
            },
            differs: vec![
                ("WifiState", Is("s \"connecting\"")),
                ("WifiRssi", Is("n 0")),
            ],
        },
        Situation {
            name: "BLE registration failed",
            setup: Setup::Snapshot {
                battery: true,
                ble: BleHealth::Failed("org.bluez.Error.Failed: advertisement slots full".into()),
                pairing: false,
                wifi_joining: false,
                matter: running(1),
            },
            differs: vec![(
                "BleState",
                Is("s \"failed: org.bluez.Error.Failed: advertisement slots full\""),
            )],
        },
        Situation {
            name: "pairing mode: the Matter window open, two home apps already",
            setup: Setup::Snapshot {
                battery: true,
                ble: registered(false),
                pairing: true,
                wifi_joining: false,
                matter: MatterHealth::Running {
                    fabrics: 2,
                    window_open: true,
                },
            },
            differs: vec![
                ("BleState", Is("s \"pairing\"")),
                ("MatterState", Is("s \"commissioning\"")),
                ("MatterFabrics", Is("y 2")),
            ],
        },
        Situation {
            name: "the Matter node could not start",
            setup: Setup::Snapshot {
                battery: true,
                ble: registered(false),
                pairing: false,
                wifi_joining: false,
                matter: MatterHealth::Failed(
                    "Matter: cannot bind UDP port 5540: Address in use".into(),
                ),
            },
            differs: vec![
                (
                    "MatterState",
                    Is("s \"failed: Matter: cannot bind UDP port 5540: Address in use\""),
                ),
                ("MatterFabrics", Is("y 255")),
            ],
        },
    ]
}

/// The latchd binary, simulated board, as the config leaves it after
/// power-up: first start (no users), bolt extended, no trusted time.
fn daemon_baseline() -> BTreeMap<&'static str, Expect> {
    use Expect::*;
    BTreeMap::from([
        (
            "FirmwareVersion",
            Owned(format!("s \"{}\"", env!("CARGO_PKG_VERSION"))),
        ),
        ("SerialNumber", StartsWith("s \"")),
        ("Board", Is("s \"sim\"")),
        ("UptimeSeconds", Any),
        ("LockState", Is("s \"locked\"")),
        ("BoltState", Is("s \"extended\"")),
        ("DoorState", Is("s \"closed\"")),
        ("BatteryPercent", Is("y 80")),
        ("BatteryMillivolts", StartsWith("u ")),
        ("ExternalPower", Is("b false")),
        ("WifiState", Is("s \"none\"")),
        ("WifiRssi", Is("n 0")),
        ("BleState", Is("s \"off\"")),
        ("MatterState", Is("s \"off\"")),
        ("MatterFabrics", Is("y 255")),
        ("MotorCycles", Is("t 0")),
        ("LastJam", Is("x 0")),
        ("ActiveAlarms", Is("as 0")),
        ("LockoutActive", Is("b false")),
        ("LockoutRemainingSeconds", Is("u 0")),
        ("Users", Is("u 0")),
        ("UsersLimit", Is("u 999")),
        ("Admins", Is("u 0")),
        ("Faces", Is("(uuu) 0 50 3")),
        ("Palms", Is("(uuu) 0 50 2")),
        ("Fingerprints", Is("(uuu) 0 50 5")),
        ("Passcodes", Is("(uuu) 0 50 1")),
        ("StorageHealth", Is("s \"ok\"")),
        ("KeyStorage", Is("s \"file\"")),
        ("WallClock", Is("x 0")),
        ("TrustedTimeFloor", Is("x 0")),
        ("TimeSource", Is("s \"none\"")),
        // No [update] bus: RAUC is not configured.
        ("UpdateState", Is("s \"off\"")),
        ("UpdateSlots", Is("as 0")),
        ("LastUpdate", Is("s \"\"")),
    ])
}

/// The snapshot rows: a fresh engine told where its sensors are, on a
/// wpa_supplicant board linked at -60 dBm, wall time from NTP.
fn snapshot_baseline() -> BTreeMap<&'static str, Expect> {
    use Expect::*;
    BTreeMap::from([
        ("FirmwareVersion", Is("s \"0.1.0\"")),
        ("SerialNumber", Is("s \"LD-0001\"")),
        ("Board", Is("s \"sim\"")),
        ("UptimeSeconds", Any),
        ("LockState", Is("s \"locked\"")),
        ("BoltState", Is("s \"extended\"")),
        ("DoorState", Is("s \"closed\"")),
        ("BatteryPercent", Is("y 64")),
        ("BatteryMillivolts", Is("u 3810")),
        ("ExternalPower", Is("b false")),
        ("WifiState", Is("s \"connected\"")),
        ("WifiRssi", Is("n -60")),
        ("BleState", Is("s \"advertising\"")),
        ("MatterState", Is("s \"running\"")),
        ("MatterFabrics", Is("y 1")),
        ("MotorCycles", Is("t 0")),
        ("LastJam", Is("x 0")),
        ("ActiveAlarms", Is("as 0")),
        ("LockoutActive", Is("b false")),
        ("LockoutRemainingSeconds", Is("u 0")),
        ("Users", Is("u 0")),
        ("UsersLimit", Is("u 999")),
        ("Admins", Is("u 0")),
        ("Faces", Is("(uuu) 0 50 3")),
        ("Palms", Is("(uuu) 0 50 2")),
        ("Fingerprints", Is("(uuu) 0 50 5")),
        ("Passcodes", Is("(uuu) 0 50 1")),
        ("StorageHealth", Is("s \"ok\"")),
        ("KeyStorage", Is("s \"file\"")),
        ("WallClock", Owned(format!("x {WALL0}"))),
        ("TrustedTimeFloor", Owned(format!("x {WALL0}"))),
        ("TimeSource", Is("s \"ntp\"")),
        ("UpdateState", Is("s \"off\"")),
        ("UpdateSlots", Is("as 0")),
        ("LastUpdate", Is("s \"\"")),
    ])
}

/// The D-Bus service's other seam; the situation table reads properties
/// only.
struct PropertiesOnly;

impl DiagnosticsBackend for PropertiesOnly {
    fn self_test(&self) -> BackendFuture<'_, Vec<DeviceCheck>> {
        Box::pin(async { Err(BackendError("not part of this test".into())) })
    }
    fn recent_events(&self, _limit: u32) -> BackendFuture<'_, Vec<EventRecord>> {
        Box::pin(async { Err(BackendError("not part of this test".into())) })
    }
    fn events_before(&self, _: Option<u64>, _: u32) -> BackendFuture<'_, Vec<EventRecord>> {
        Box::pin(async { Err(BackendError("not part of this test".into())) })
    }
    fn export(&self) -> BackendFuture<'_, String> {
        Box::pin(async { Err(BackendError("not part of this test".into())) })
    }
}

async fn get_property(address: &str, name: &str) -> Option<String> {
    let out = tokio::time::timeout(
        HANG_GUARD,
        tokio::process::Command::new("busctl")
            .arg(format!("--address={address}"))
            .args(["--no-pager", "get-property", BUS_NAME, OBJECT_PATH])
            .args([INTERFACE, name])
            .output(),
    )
    .await
    .expect("busctl hung")
    .expect("run busctl (Debian package systemd)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The snapshot the engine task would publish in this situation.
fn snapshot(
    battery: bool,
    ble: &BleHealth,
    pairing: bool,
    wifi_joining: bool,
    matter: &MatterHealth,
) -> latchd::dbus::Diagnostics {
    let config = EngineConfig {
        passcode_key: [0x5a; 32],
        serial: "LD-0001".into(),
        firmware: "0.1.0".into(),
        pairing_codes: PairingCodes::new(|g| format!("482913-{g}")),
        low_battery_percent: 20,
        one_time_code_ttl: EngineConfig::DEFAULT_ONE_TIME_CODE_TTL,
        weak_wifi_dbm: latchd::core::wifi_signal::DEFAULT_WEAK_DBM,
        update: latchd::core::update::UpdatePolicy::default(),
        matter_code: None,
        default_language: latchd::core::Language::En,
        time_zone: latchd::core::schedule::LocalZone::utc(),
    };
    let now = Now::new(1_000, Some(WALL0));
    let mut engine = Engine::new(config, Persisted::default(), now);
    let mut inputs = vec![
        Input::Bolt(BoltPosition::Extended),
        Input::Door(DoorPosition::Closed),
        Input::Tamper(TamperState::Intact),
    ];
    if battery {
        inputs.push(Input::Power(PowerReading {
            percent: 64,
            millivolts: 3810,
            external: false,
        }));
    }
    inputs.push(Input::PowerUp { set_held: false });
    if !wifi_joining {
        inputs.push(Input::Wifi(WifiStatus {
            connected: true,
            rssi: -60,
        }));
    }
    if pairing {
        inputs.push(Input::Set(SetPress::Long));
    }
    for input in inputs {
        engine.handle(now, input);
    }
    // The reports go through the shared object the services write.
    let health = HealthBoard::new();
    health.set_ble(ble.clone());
    health.set_wifi_connecting(wifi_joining);
    health.set_matter(matter.clone());
    let diag = StaticDiag {
        firmware: "0.1.0".into(),
        serial: "LD-0001".into(),
        board: "sim".into(),
        started: StdInstant::now(),
        storage_health: "ok".into(),
        key_storage: "file".into(),
        last_jam: 0,
        motor_cycles_before: 0,
        wifi_backend: None,
        updates: false,
    }
    .with_wifi(BackendKind::WpaSupplicant);
    diag.diagnostics(&engine.status(), &health.get(), TimeSource::Ntp)
}

/// Read every property, once the daemon owns its name.
async fn read_all(address: &str) -> BTreeMap<&'static str, String> {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        let mut read = BTreeMap::new();
        for name in PROPERTY_NAMES {
            if let Some(v) = get_property(address, name).await {
                read.insert(name, v);
            }
        }
        // The Matter node reports itself once it has loaded its fabrics
        // and bound its sockets; read its settled state, not the start.
        let settled = !matches!(
            read.get("MatterState").map(String::as_str),
            Some("s \"starting\"" | "s \"unknown\"")
        );
        let all = read.len() == PROPERTY_NAMES.len();
        if (all && settled) || tokio::time::Instant::now() > deadline {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_property_tells_the_truth_in_each_situation() {
    let mut failures = Vec::new();
    for s in situations() {
        let bus = TestBus::start();
        let state = tempfile::tempdir().expect("state dir");
        let (read, mut expected, _keep) = match &s.setup {
            Setup::Daemon { config } => {
                let config_path = state.path().join("latchd.toml");
                std::fs::write(&config_path, config).expect("config");
                let daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchd"))
                    .arg("--headless")
                    .arg("--config")
                    .arg(&config_path)
                    .arg("--state-dir")
                    .arg(state.path().join("state"))
                    .args(["--dbus", &bus.address])
                    // The private bus is its system bus too: no bluetoothd,
                    // no network service there.
                    .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("spawn latchd");
                let read = read_all(&bus.address).await;
                (read, daemon_baseline(), Some(daemon))
            }
            Setup::Snapshot {
                battery,
                ble,
                pairing,
                wifi_joining,
                matter,
            } => {
                let (_tx, rx) =
                    watch::channel(snapshot(*battery, ble, *pairing, *wifi_joining, matter));
                let (_events_tx, events) = broadcast::channel(4);
                let handle = serve(
                    BusChoice::Address(bus.address.clone()),
                    rx,
                    Arc::new(PropertiesOnly),
                    events,
                )
                .await
                .expect("serve on the private bus");
                let read = read_all(&bus.address).await;
                handle.shutdown().await.expect("clean shutdown");
                (read, snapshot_baseline(), None)
            }
        };
        for (name, e) in s.differs {
            expected.insert(name, e);
        }
        assert_eq!(expected.len(), PROPERTY_NAMES.len(), "{}", s.name);
        for (name, e) in &expected {
            let got = read.get(name).map(String::as_str).unwrap_or("<not read>");
            let ok = match e {
                Expect::Is(v) => got == *v,
                Expect::Owned(v) => got == v,
                Expect::StartsWith(p) => got.starts_with(p),
                Expect::Any => got != "<not read>",
            };
            if !ok {
                failures.push(format!("{}: {name} = {got}", s.name));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The engine task republishes the snapshot when a radio reports a new
/// state or the time source changes, with no input to the engine: a quiet
/// lock's `BleState` and `TimeSource` follow the services (issue 22).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_lock_follows_its_radios_and_time_source() {
    use latchd::daemon::{start, Options};
    use tokio_util::sync::CancellationToken;

    let bus = TestBus::start();
    let dir = tempfile::tempdir().expect("state dir");
    let mut config = latchd::config::Config::default();
    config.lock.timedate_bus = "off".into();
    config.ble.enabled = false;
    let d = start(
        Options {
            config,
            state_dir: dir.path().join("state"),
            front_panel: false,
            control_socket: None,
            dbus: Some(BusChoice::Address(bus.address.clone())),
            set_held: false,
        },
        CancellationToken::new(),
    )
    .await
    .expect("daemon starts");
    let until = |name: &'static str, want: &'static str| {
        let address = bus.address.clone();
        async move {
            let deadline = tokio::time::Instant::now() + HANG_GUARD;
            loop {
                let got = get_property(&address, name).await;
                if got.as_deref() == Some(want) {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{name} stayed {got:?}, expected {want}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    until("BleState", "s \"off\"").await;
    until("TimeSource", "s \"none\"").await;
    let processed = d.published.borrow().daemon.processed;

    // What the BLE service reports as it registers and an app takes the
    // channel; what timedate reports when NTP synchronises.
    d.health.set_ble(BleHealth::Registered {
        app_connected: false,
    });
    until("BleState", "s \"advertising\"").await;
    d.health.set_ble_app(true);
    until("BleState", "s \"connected\"").await;
    d.clock.set_ntp_synchronized(true);
    until("TimeSource", "s \"ntp\"").await;
    d.health.set_ble(BleHealth::WaitingForBluetoothd(
        "bluetoothd restarted".into(),
    ));
    until("BleState", "s \"waiting-for-bluetoothd\"").await;
    assert_eq!(
        d.published.borrow().daemon.processed,
        processed,
        "no input reached the engine"
    );
    d.stop().await.expect("clean stop");
}
