//! Turning the engine's [`Status`] into what technicians see on D-Bus
//! ([`Diagnostics`]), and the device self-test. Only values a technician
//! may see leave here: counts and states, never a secret. (Logged events
//! become `link::EventRecord`s in `link/views.rs`.)
use std::time::Instant as StdInstant;

use super::state::State;
use crate::board::Board;
use crate::core::input::BoltPosition;
use crate::core::types::CredentialKind;
use crate::core::Status;
use crate::dbus::{Capacity, Diagnostics};
use crate::link::{DeviceCheck, StorageHealth};

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
}

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
        };
        diag.set_storage_health(&state.storage_health);
        diag
    }

    pub fn set_storage_health(&mut self, h: &StorageHealth) {
        self.storage_health = if h.ok {
            "ok".into()
        } else {
            format!("degraded: {}", h.detail)
        };
    }

    pub fn diagnostics(&self, s: &Status) -> Diagnostics {
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
            wifi_state: if !s.wifi_enabled {
                "off".into()
            } else if s.wifi_connected {
                "connected".into()
            } else {
                "disconnected".into()
            },
            // A reading only means something while associated.
            wifi_rssi: s.wifi_rssi.filter(|_| s.wifi_connected),
            ble_state: if s.ble_connected {
                "connected".into()
            } else {
                "advertising".into()
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
        }
    }
}

/// Check every device this board has, once, and name those it has not
/// (issue 22 item 3: a missing part is reported as missing, never "ok").
/// `believed` is where the engine last saw the bolt.
pub fn self_test(board: &mut Board, believed: BoltPosition) -> Vec<DeviceCheck> {
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
        motor_check(board, believed),
        check("bolt_sensor", board.bolt.read()),
        check("door_sensor", board.door.read()),
        check("battery", board.battery.read().map(|p| p.percent)),
        check("tamper", board.tamper.read()),
        presence("face", board.face.absent()),
        presence("camera", board.camera.absent()),
    ]
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

    #[tokio::test(start_paused = true)]
    async fn the_motor_check_passes_on_a_healthy_sim_and_fails_on_injected_faults() {
        let (mut board, control, _rx) = sim(SimConfig::default());
        let healthy = self_test(&mut board, BoltPosition::Extended);
        assert!(motor(&healthy).ok, "{:?}", motor(&healthy));
        assert!(motor(&healthy).detail.contains("coast accepted"));
        // The sim simulates a face service and a camera; a board without
        // a camera names it as absent, not "ok".
        for present in ["face", "camera"] {
            let c = healthy.iter().find(|c| c.device == present).unwrap();
            assert!(c.ok && c.detail == "present", "{c:?}");
        }
        let sim_camera = std::mem::replace(&mut board.camera, Box::new(UnavailableCamera));
        let c = self_test(&mut board, BoltPosition::Extended);
        let camera = c.iter().find(|c| c.device == "camera").unwrap();
        assert!(
            !camera.ok && camera.detail.starts_with("absent: "),
            "{camera:?}"
        );
        board.camera = sim_camera;

        // A driver that refuses commands.
        control.motor_fault(Some("H-bridge over-current".into()));
        let c = self_test(&mut board, BoltPosition::Extended);
        assert!(!motor(&c).ok);
        assert!(motor(&c).detail.contains("H-bridge"), "{:?}", motor(&c));
        control.motor_fault(None);

        // A sensor that disagrees with what the lock saw.
        let c = self_test(&mut board, BoltPosition::Retracted);
        assert!(!motor(&c).ok, "{:?}", motor(&c));

        // A jam leaves the bolt between its switches with the motor idle.
        control.jam(1);
        board
            .motor
            .drive(BoltPosition::Retracted, MotorDirection::Clockwise)
            .unwrap();
        tokio::time::sleep(SimConfig::default().motor_travel * 2).await;
        let c = self_test(&mut board, BoltPosition::Between);
        assert!(!motor(&c).ok, "{:?}", motor(&c));
        assert!(motor(&c).detail.contains("between"));
    }
}
