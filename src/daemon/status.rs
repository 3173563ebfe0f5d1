//! Turning the engine's [`Status`] into what technicians see on D-Bus
//! ([`Diagnostics`]), and the device self-test. Only values a technician
//! may see leave here: counts and states, never a secret. (Logged events
//! become `link::EventRecord`s in `link/views.rs`.)
use std::time::Instant as StdInstant;

use super::state::State;
use crate::board::{Board, ModuleHealth};
use crate::core::input::BoltPosition;
use crate::core::types::CredentialKind;
use crate::core::Status;
use crate::dbus::{Capacity, Diagnostics};
use crate::link::{BleHealth, DeviceCheck, MatterHealth, ServiceHealth, StorageHealth, TimeSource};

/// The parts of the diagnostics snapshot that do not come from the engine.
#[derive(Debug, Clone)]
pub struct StaticDiag {
    pub firmware: String,
    pub serial: String,
    pub board: String,
    pub started: StdInstant,
    /// `"ok"` or `"degraded: ..."`, refreshed after every write.
    pub storage_health: String,
    /// Where the device key rests: `tpm2`, `host+tpm2`, `host`, `file`.
    pub key_storage: String,
    /// Unix seconds of the last motor jam this run, 0 for none.
    pub last_jam: i64,
    /// Bolt moves of earlier runs (store counter [`MOTOR_CYCLES`]); the
    /// engine counts this run's.
    pub motor_cycles_before: u64,
    /// The `[wifi]` backend (`wpa_supplicant`, `networkmanager`), `None`
    /// when the board has none: `WifiState` is then `none`, not a
    /// "disconnected" that suggests a radio.
    pub wifi_backend: Option<&'static str>,
    /// `[update] bus` names RAUC (issue 20); `UpdateState` is `off` if not.
    pub updates: bool,
}

/// Below this signal (dBm) a connected link is reported `weak`: about
/// where Wi-Fi starts to drop packets and an MQTT session to time out.
pub const WEAK_RSSI_DBM: i16 = -75;

/// The store counter that keeps bolt moves across restarts (motor wear).
pub const MOTOR_CYCLES: &str = "motor_cycles";

impl StaticDiag {
    /// At start-up: the lock's identity and storage as the state read
    /// them, the board's name, the uptime counted from now.
    pub fn at_start(state: &State, board: &str) -> Self {
        let mut diag = StaticDiag {
            firmware: state.engine_config.firmware.clone(),
            serial: state.engine_config.serial.clone(),
            board: board.into(),
            started: StdInstant::now(),
            storage_health: String::new(),
            key_storage: state.key_storage.into(),
            last_jam: 0,
            motor_cycles_before: state.motor_cycles_before,
            wifi_backend: None,
            updates: state.engine_config.update.enabled,
        };
        diag.set_storage_health(&state.storage_health);
        diag
    }

    /// The board's `[wifi]` backend, if any.
    pub fn with_wifi(mut self, backend: crate::wifi::BackendKind) -> Self {
        use crate::wifi::BackendKind;
        self.wifi_backend = match backend {
            BackendKind::None => None,
            BackendKind::WpaSupplicant => Some("wpa_supplicant"),
            BackendKind::NetworkManager => Some("networkmanager"),
        };
        self
    }

    pub fn set_storage_health(&mut self, h: &StorageHealth) {
        self.storage_health = if h.ok {
            "ok".into()
        } else {
            format!("degraded: {}", h.detail)
        };
    }

    /// `none` (no backend), `off` (the B-9.7 setting), `disconnected`,
    /// `connecting` (the backend is joining a network), `weak` (connected
    /// below [`WEAK_RSSI_DBM`]) or `connected`.
    pub fn wifi_state(&self, s: &Status, h: &ServiceHealth) -> &'static str {
        if self.wifi_backend.is_none() {
            "none"
        } else if !s.wifi_enabled {
            "off"
        } else if !s.wifi_connected && h.wifi_connecting {
            "connecting"
        } else if !s.wifi_connected {
            "disconnected"
        } else if s.wifi_rssi.is_some_and(|r| r < WEAK_RSSI_DBM) {
            "weak"
        } else {
            "connected"
        }
    }

    /// The snapshot: the engine's status, the radios' own reports and the
    /// clock's source.
    pub fn diagnostics(&self, s: &Status, h: &ServiceHealth, time: TimeSource) -> Diagnostics {
        let word = |v: serde_json::Value| match v {
            serde_json::Value::String(s) => s,
            _ => "unknown".into(),
        };
        let counts = &s.counts;
        Diagnostics {
            firmware_version: self.firmware.clone(),
            serial_number: self.serial.clone(),
            board: self.board.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            lock_state: word(serde_json::to_value(s.lock).unwrap_or_default()),
            bolt_state: word(serde_json::to_value(s.bolt).unwrap_or_default()),
            door_state: s
                .door
                .map(|d| word(serde_json::to_value(d).unwrap_or_default()))
                .unwrap_or_else(|| "unknown".into()),
            battery_percent: s.battery_percent,
            battery_mv: s.battery_millivolts,
            external_power: s.external_power,
            wifi_state: self.wifi_state(s, h).into(),
            // A reading only means something while associated.
            wifi_rssi: s.wifi_rssi.filter(|_| s.wifi_connected),
            ble_state: ble_state(&h.ble, s.pairing_mode),
            matter_state: matter_state(&h.matter),
            matter_fabrics: match h.matter {
                MatterHealth::Running { fabrics, .. } => Some(fabrics),
                _ => None,
            },
            motor_cycles: self.motor_cycles_before + s.motor_cycles,
            last_jam: self.last_jam,
            active_alarms: s
                .active_alarms
                .iter()
                .map(|a| word(serde_json::to_value(a).unwrap_or_default()))
                .collect(),
            lockout_active: s.lockout_active,
            lockout_remaining_s: s
                .lockout_remaining
                .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
                .unwrap_or(0),
            users: counts.users as u32,
            users_limit: crate::dbus::users_limit(),
            admins: counts.admins as u32,
            faces: Capacity::of(CredentialKind::Face, counts.faces),
            palms: Capacity::of(CredentialKind::Palm, counts.palms),
            fingerprints: Capacity::of(CredentialKind::Fingerprint, counts.fingerprints),
            passcodes: Capacity::of(CredentialKind::Passcode, counts.passcodes),
            storage_health: self.storage_health.clone(),
            key_storage: self.key_storage.clone(),
            wall_clock: s.wall_time.map(|w| w.0),
            time_floor: s.time_floor.map(|w| w.0),
            time_source: (time != TimeSource::None).then(|| time.word().into()),
            update_state: self.update_state(s),
            update_slots: h.update_slots.clone(),
            last_update: s
                .last_update
                .as_ref()
                .and_then(|k| serde_json::to_string(k).ok())
                .unwrap_or_default(),
        }
    }

    /// `UpdateState`: `off`, `idle`, or the phase, what blocks a wait and
    /// the install's progress.
    pub fn update_state(&self, s: &Status) -> String {
        use crate::core::update::Phase;
        let name = |v: serde_json::Value| match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Object(m) => m
                .get("blocker")
                .and_then(|b| b.as_str())
                .unwrap_or("unknown")
                .to_string(),
            _ => "unknown".into(),
        };
        match &s.update {
            None if !self.updates => "off".into(),
            None => "idle".into(),
            Some(u) => {
                let phase = name(serde_json::to_value(u.phase).unwrap_or_default());
                match u.phase {
                    Phase::Installing => format!("{phase} {}%", u.progress),
                    Phase::WaitingToInstall | Phase::WaitingToRestart => {
                        let blocked: Vec<String> = u
                            .blocked_by
                            .iter()
                            .map(|b| name(serde_json::to_value(b).unwrap_or_default()))
                            .collect();
                        format!("{phase}: {}", blocked.join(", "))
                    }
                    _ => phase,
                }
            }
        }
    }
}

/// `BleState` from what the BLE service says of itself: `off`,
/// `unavailable`, `waiting-for-bluetoothd`, `failed: <why>`; once
/// registered, `connected` (an app holds the channel), `pairing` (the lock
/// is in pairing mode, B-5.1: an owner may pair now) or `advertising`.
pub fn ble_state(ble: &BleHealth, pairing_mode: bool) -> String {
    match ble {
        BleHealth::Off => "off".into(),
        BleHealth::Unavailable(_) => "unavailable".into(),
        BleHealth::WaitingForBluetoothd(_) => "waiting-for-bluetoothd".into(),
        BleHealth::Failed(why) => format!("failed: {why}"),
        BleHealth::Registered {
            app_connected: true,
        } => "connected".into(),
        BleHealth::Registered { .. } if pairing_mode => "pairing".into(),
        BleHealth::Registered { .. } => "advertising".into(),
    }
}

/// `MatterState` from what the node says of itself (issue 22 item 4).
pub fn matter_state(matter: &MatterHealth) -> String {
    match matter {
        MatterHealth::Off => "off".into(),
        MatterHealth::Unavailable(_) => "unavailable".into(),
        MatterHealth::Starting => "starting".into(),
        MatterHealth::Failed(why) => format!("failed: {why}"),
        MatterHealth::Running {
            window_open: true, ..
        } => "commissioning".into(),
        MatterHealth::Running { .. } => "running".into(),
    }
}

/// Check every device this board has, once, and name those it has not
/// (issue 22 item 3: a missing part is reported as missing, never "ok").
/// `status` is the engine's (where it last saw the bolt, the Wi-Fi link);
/// `diag` says what the board has beside its devices (store, Wi-Fi);
/// `health` what the radio services report of themselves.
pub fn self_test(
    board: &mut Board,
    status: &Status,
    diag: &StaticDiag,
    health: &ServiceHealth,
) -> Vec<DeviceCheck> {
    fn check<T: std::fmt::Debug>(
        device: &str,
        r: Result<T, crate::board::DeviceError>,
    ) -> DeviceCheck {
        match r {
            Ok(v) => DeviceCheck {
                device: device.into(),
                ok: true,
                detail: format!("{v:?}").to_lowercase(),
            },
            Err(e) => DeviceCheck {
                device: device.into(),
                ok: false,
                detail: e.to_string(),
            },
        }
    }
    fn presence(device: &str, absent: Option<&'static str>) -> DeviceCheck {
        DeviceCheck {
            device: device.into(),
            ok: absent.is_none(),
            detail: match absent {
                Some(why) => format!("absent: {why}"),
                None => "present".into(),
            },
        }
    }
    vec![
        motor_check(board, status.bolt),
        check("bolt_sensor", board.bolt.read()),
        check("door_sensor", board.door.read()),
        check("battery", board.battery.read().map(|p| p.percent)),
        check("tamper", board.tamper.read()),
        module_check("fingerprint", board.fingerprint.health()),
        module_check("palm", board.palm.health()),
        presence("face", board.face.absent()),
        presence("camera", board.camera.absent()),
        DeviceCheck {
            device: "store".into(),
            ok: diag.storage_health == "ok",
            detail: diag.storage_health.clone(),
        },
        wifi_check(status, diag, health),
        ble_check(&health.ble, status.pairing_mode),
        matter_check(&health.matter),
    ]
}

/// The Matter node as it reported itself.
fn matter_check(matter: &MatterHealth) -> DeviceCheck {
    let (ok, detail) = match matter {
        MatterHealth::Off => (
            false,
            "absent: off by the config ([matter] enabled = false)".into(),
        ),
        MatterHealth::Unavailable(why) => (false, format!("absent: {why}")),
        MatterHealth::Starting => (false, "starting".into()),
        MatterHealth::Failed(why) => (false, format!("failed: {why}")),
        MatterHealth::Running { fabrics, .. } => (
            true,
            format!("{} ({fabrics} fabrics)", matter_state(matter)),
        ),
    };
    DeviceCheck {
        device: "matter".into(),
        ok,
        detail,
    }
}

/// The BLE service as it reported itself.
fn ble_check(ble: &BleHealth, pairing_mode: bool) -> DeviceCheck {
    let (ok, detail) = match ble {
        BleHealth::Off => (
            false,
            "absent: off by the config ([ble] enabled = false)".into(),
        ),
        BleHealth::Unavailable(why) => (false, format!("absent: {why}")),
        BleHealth::WaitingForBluetoothd(why) => (false, format!("waiting for bluetoothd: {why}")),
        BleHealth::Failed(why) => (false, format!("failed: {why}")),
        BleHealth::Registered { .. } => (true, ble_state(ble, pairing_mode)),
    };
    DeviceCheck {
        device: "ble".into(),
        ok,
        detail,
    }
}

/// A UART module as its adapter saw it last.
fn module_check(device: &str, health: ModuleHealth) -> DeviceCheck {
    let (ok, detail) = match health {
        ModuleHealth::Answering => (true, "answering".to_string()),
        ModuleHealth::Starting => (false, "no answer yet (starting)".to_string()),
        ModuleHealth::Failing(why) => (false, format!("not answering: {why}")),
        ModuleHealth::Untrusted(why) => (false, format!("not the lock's own module: {why}")),
        ModuleHealth::Stopped(why) => (false, format!("stopped: {why}")),
    };
    DeviceCheck {
        device: device.into(),
        ok,
        detail,
    }
}

/// The Wi-Fi link as the backend last reported it.
fn wifi_check(status: &Status, diag: &StaticDiag, health: &ServiceHealth) -> DeviceCheck {
    let state = diag.wifi_state(status, health);
    let (ok, detail) = match (state, diag.wifi_backend) {
        ("none", _) | (_, None) => (false, "absent: no [wifi] backend on this board".into()),
        ("off", _) => (true, "radio off (the lock's Wi-Fi setting)".into()),
        ("disconnected", Some(b)) => (false, format!("{b}: not connected to a network")),
        ("connecting", Some(b)) => (false, format!("{b}: joining a network, not connected yet")),
        (state, Some(b)) => (
            true,
            match status.wifi_rssi {
                Some(dbm) => format!("{b}: {state}, {dbm} dBm"),
                None => format!("{b}: {state}"),
            },
        ),
    };
    DeviceCheck {
        device: "wifi".into(),
        ok,
        detail,
    }
}

/// The motor, for real (issue 23 item 2): the driver must accept a coast
/// command (de-energise: the bolt stays put, so this is safe at any time),
/// and the position sensor must then agree with an idle motor — the bolt at
/// one of its limit switches, the one the engine last saw. A move in
/// progress is never interrupted: then the check says so and passes on
/// what the move reports.
fn motor_check(board: &mut Board, believed: BoltPosition) -> DeviceCheck {
    let verdict = |ok: bool, detail: String| DeviceCheck {
        device: "motor".into(),
        ok,
        detail,
    };
    if board.motor.is_moving() {
        return verdict(
            true,
            "moving; not exercised (a self-test never interrupts a bolt move)".into(),
        );
    }
    if let Err(e) = board.motor.stop() {
        return verdict(false, format!("the driver refused a coast command: {e}"));
    }
    match board.bolt.read() {
        Err(e) => verdict(
            false,
            format!("coast accepted, but the position sensor cannot be read: {e}"),
        ),
        Ok(BoltPosition::Between) => verdict(
            false,
            "the motor is idle but the bolt is between its limit switches: jammed, or a \
             switch has failed; check the bolt's travel and the switch wiring"
                .into(),
        ),
        Ok(seen) if believed != BoltPosition::Between && seen != believed => verdict(
            false,
            format!(
                "the position sensor reads {} but the lock last saw the bolt {}; check the \
                 limit switches",
                word(seen),
                word(believed)
            ),
        ),
        Ok(seen) => verdict(
            true,
            format!("coast accepted; bolt {} at its switch", word(seen)),
        ),
    }
}

fn word(p: BoltPosition) -> String {
    match serde_json::to_value(p) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{p:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::absent::UnavailableCamera;
    use crate::board::sim::{build, SimConfig, SimControl};
    use crate::core::types::MotorDirection;
    use crate::core::Input;
    use crate::link::InputSender;

    fn sim(config: SimConfig) -> (Board, SimControl, tokio::sync::mpsc::Receiver<Input>) {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (board, control) = build(config, InputSender::new(tx)).expect("sim board");
        (board, control, rx)
    }

    fn motor(checks: &[DeviceCheck]) -> &DeviceCheck {
        checks.iter().find(|c| c.device == "motor").expect("motor")
    }

    fn device<'a>(checks: &'a [DeviceCheck], name: &str) -> &'a DeviceCheck {
        checks.iter().find(|c| c.device == name).expect(name)
    }

    /// A fresh engine's status with the bolt where the lock last saw it.
    fn engine_status(bolt: BoltPosition) -> Status {
        use crate::core::{Engine, EngineConfig, Now};
        let engine = Engine::new(
            EngineConfig::for_tests("LD-1"),
            crate::core::types::Persisted::default(),
            Now::new(0, None),
        );
        Status {
            bolt,
            ..engine.status()
        }
    }

    fn static_diag() -> StaticDiag {
        StaticDiag {
            firmware: "0".into(),
            serial: "LD-1".into(),
            board: "sim".into(),
            started: StdInstant::now(),
            storage_health: "ok".into(),
            key_storage: "file".into(),
            last_jam: 0,
            motor_cycles_before: 0,
            wifi_backend: None,
            updates: false,
        }
    }

    fn run(board: &mut Board, bolt: BoltPosition) -> Vec<DeviceCheck> {
        self_test(
            board,
            &engine_status(bolt),
            &static_diag(),
            &ServiceHealth::default(),
        )
    }

    /// Issue 22 items 1 and 3: the store, the modules and Wi-Fi are in
    /// the self-test as they are, and `WifiState` tells "no radio" from
    /// "not connected" and a weak link from a good one.
    #[tokio::test(start_paused = true)]
    async fn the_self_test_names_the_store_modules_and_wifi_as_they_are() {
        let (mut board, _control, _rx) = sim(SimConfig::default());
        let mut h = ServiceHealth::default();
        let mut diag = static_diag();
        let mut status = engine_status(BoltPosition::Extended);
        let c = self_test(&mut board, &status, &diag, &h);
        for module in ["fingerprint", "palm"] {
            let m = device(&c, module);
            assert!(m.ok && m.detail == "answering", "{m:?}");
        }
        assert!(device(&c, "store").ok, "{c:?}");
        let wifi = device(&c, "wifi");
        assert!(!wifi.ok && wifi.detail.starts_with("absent: "), "{wifi:?}");
        assert_eq!(diag.wifi_state(&status, &h), "none");

        diag.set_storage_health(&StorageHealth {
            ok: false,
            detail: "disk full".into(),
            db_bytes: 0,
            events: 0,
        });
        let store = self_test(&mut board, &status, &diag, &h);
        let store = device(&store, "store");
        assert!(!store.ok && store.detail.contains("disk full"), "{store:?}");

        let diag = static_diag().with_wifi(crate::wifi::BackendKind::WpaSupplicant);
        status.wifi_enabled = true;
        status.wifi_connected = false;
        status.wifi_rssi = None;
        assert_eq!(diag.wifi_state(&status, &h), "disconnected");
        assert!(!device(&self_test(&mut board, &status, &diag, &h), "wifi").ok);
        // The backend says it is joining a network.
        h.wifi_connecting = true;
        assert_eq!(diag.wifi_state(&status, &h), "connecting");
        let joining = self_test(&mut board, &status, &diag, &h);
        let joining = device(&joining, "wifi");
        assert!(
            !joining.ok && joining.detail.contains("joining"),
            "{joining:?}"
        );
        h.wifi_connecting = false;
        status.wifi_connected = true;
        status.wifi_rssi = Some(-60);
        assert_eq!(diag.wifi_state(&status, &h), "connected");
        let wifi = self_test(&mut board, &status, &diag, &h);
        let wifi = device(&wifi, "wifi");
        assert!(
            wifi.ok && wifi.detail == "wpa_supplicant: connected, -60 dBm",
            "{wifi:?}"
        );
        status.wifi_rssi = Some(WEAK_RSSI_DBM - 1);
        assert_eq!(diag.wifi_state(&status, &h), "weak");
        assert_eq!(
            diag.diagnostics(&status, &h, TimeSource::None).wifi_state,
            "weak"
        );
        status.wifi_enabled = false;
        status.wifi_connected = false;
        assert_eq!(diag.wifi_state(&status, &h), "off");
    }

    /// Issue 22 item 1: `BleState` and the self-test's `ble` entry say
    /// what the BLE service reported, never "advertising" for a service
    /// that is not registered.
    #[test]
    fn ble_state_is_what_the_service_reports() {
        let registered = |app_connected| BleHealth::Registered { app_connected };
        let cases: [(BleHealth, bool, &str, bool); 8] = [
            (BleHealth::Off, false, "off", false),
            (
                BleHealth::Unavailable("no BlueZ".into()),
                false,
                "unavailable",
                false,
            ),
            (
                BleHealth::WaitingForBluetoothd("gone".into()),
                true,
                "waiting-for-bluetoothd",
                false,
            ),
            (
                BleHealth::Failed("busy".into()),
                false,
                "failed: busy",
                false,
            ),
            (registered(false), false, "advertising", true),
            (registered(false), true, "pairing", true),
            (registered(true), false, "connected", true),
            (registered(true), true, "connected", true),
        ];
        for (ble, pairing, word, ok) in cases {
            assert_eq!(ble_state(&ble, pairing), word, "{ble:?}");
            let check = ble_check(&ble, pairing);
            assert_eq!(check.ok, ok, "{check:?}");
            if !ok {
                assert!(
                    !check.detail.is_empty() && check.detail != "ok",
                    "{check:?}"
                );
            }
        }
        assert_eq!(
            ble_check(&BleHealth::Unavailable("no BlueZ".into()), false).detail,
            "absent: no BlueZ"
        );
    }

    #[test]
    fn matter_state_and_its_check_are_what_the_node_reports() {
        let running = |fabrics, window_open| MatterHealth::Running {
            fabrics,
            window_open,
        };
        let cases = [
            (
                MatterHealth::Off,
                "off",
                "absent: off by the config ([matter] enabled = false)",
                false,
            ),
            (
                MatterHealth::Unavailable("no node in this build".into()),
                "unavailable",
                "absent: no node in this build",
                false,
            ),
            (MatterHealth::Starting, "starting", "starting", false),
            (
                MatterHealth::Failed("port in use".into()),
                "failed: port in use",
                "failed: port in use",
                false,
            ),
            (running(0, false), "running", "running (0 fabrics)", true),
            (
                running(2, true),
                "commissioning",
                "commissioning (2 fabrics)",
                true,
            ),
        ];
        for (matter, word, detail, ok) in cases {
            assert_eq!(matter_state(&matter), word, "{matter:?}");
            let check = matter_check(&matter);
            assert_eq!((check.ok, check.detail.as_str()), (ok, detail));
        }
    }

    #[test]
    fn module_health_is_reported_as_seen() {
        let failing = module_check("palm", ModuleHealth::Failing("timed out".into()));
        assert!(
            !failing.ok && failing.detail == "not answering: timed out",
            "{failing:?}"
        );
        assert!(!module_check("fingerprint", ModuleHealth::Starting).ok);
        let swapped = module_check(
            "fingerprint",
            ModuleHealth::Untrusted("wrong password".into()),
        );
        assert!(!swapped.ok && swapped.detail.contains("not the lock's own"));
        assert!(!module_check("palm", ModuleHealth::Stopped("gone".into())).ok);
    }

    #[tokio::test(start_paused = true)]
    async fn the_motor_check_passes_on_a_healthy_sim_and_fails_on_injected_faults() {
        let (mut board, control, _rx) = sim(SimConfig::default());
        let healthy = run(&mut board, BoltPosition::Extended);
        assert!(motor(&healthy).ok, "{:?}", motor(&healthy));
        assert!(motor(&healthy).detail.contains("coast accepted"));
        // The sim simulates a face service and a camera; a board without
        // a camera names it as absent, not "ok".
        for present in ["face", "camera"] {
            let c = healthy.iter().find(|c| c.device == present).unwrap();
            assert!(c.ok && c.detail == "present", "{c:?}");
        }
        let sim_camera = std::mem::replace(&mut board.camera, Box::new(UnavailableCamera));
        let c = run(&mut board, BoltPosition::Extended);
        let camera = c.iter().find(|c| c.device == "camera").unwrap();
        assert!(
            !camera.ok && camera.detail.starts_with("absent: "),
            "{camera:?}"
        );
        board.camera = sim_camera;

        // A driver that refuses commands.
        control.motor_fault(Some("H-bridge over-current".into()));
        let c = run(&mut board, BoltPosition::Extended);
        assert!(!motor(&c).ok);
        assert!(motor(&c).detail.contains("H-bridge"), "{:?}", motor(&c));
        control.motor_fault(None);

        // A sensor that disagrees with what the lock saw.
        let c = run(&mut board, BoltPosition::Retracted);
        assert!(!motor(&c).ok, "{:?}", motor(&c));

        // A jam leaves the bolt between its switches with the motor idle.
        control.jam(1);
        board
            .motor
            .drive(BoltPosition::Retracted, MotorDirection::Clockwise)
            .unwrap();
        tokio::time::sleep(SimConfig::default().motor_travel * 2).await;
        let c = run(&mut board, BoltPosition::Between);
        assert!(!motor(&c).ok, "{:?}", motor(&c));
        assert!(motor(&c).detail.contains("between"));
    }
}
