//! Turning the engine's [`Status`] into what technicians see on D-Bus
//! ([`Diagnostics`]), and the device self-test. Only values a technician
//! may see leave here: counts and states, never a secret. (Logged events
//! become `link::EventRecord`s in `link/views.rs`.)
use std::time::Instant as StdInstant;

use super::state::State;
use crate::board::Board;
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
            battery_percent: s.battery_percent.unwrap_or(0),
            battery_mv: s.battery_millivolts.unwrap_or(0),
            external_power: s.external_power,
            wifi_state: if !s.wifi_enabled {
                "off".into()
            } else if s.wifi_connected {
                "connected".into()
            } else {
                "disconnected".into()
            },
            wifi_rssi: s.wifi_rssi.unwrap_or(0),
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
        }
    }
}

/// Read every device once.
pub fn self_test(board: &Board) -> Vec<DeviceCheck> {
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
    let moving = board.motor.is_moving();
    vec![
        DeviceCheck {
            device: "motor".into(),
            ok: true,
            detail: if moving { "moving" } else { "idle" }.into(),
        },
        check("bolt_sensor", board.bolt.read()),
        check("door_sensor", board.door.read()),
        check("battery", board.battery.read().map(|p| p.percent)),
        check("tamper", board.tamper.read()),
    ]
}
