//! Turning the engine's [`Status`] and [`Event`]s into what technicians
//! see on D-Bus ([`Diagnostics`], [`EventRecord`]), and the device
//! self-test. Only values a technician may see leave here: user numbers
//! yes; passcodes, keys and templates never (events carry none).
use std::time::Instant as StdInstant;

use crate::board::Board;
use crate::core::{Event, Status};
use crate::dbus::{Capacity, DeviceCheck, Diagnostics, EventRecord};
use crate::store::Store;

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
    pub fn refresh_storage(&mut self, store: &Store) {
        let h = store.health();
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
        let cap = |enrolled: usize, per_user| Capacity {
            enrolled: enrolled as u32,
            ..Capacity::empty(per_user)
        };
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
            users_limit: crate::dbus::USERS_LIMIT,
            admins: counts.admins as u32,
            faces: cap(counts.faces, crate::dbus::FACES_PER_USER),
            palms: cap(counts.palms, crate::dbus::PALMS_PER_USER),
            fingerprints: cap(counts.fingerprints, crate::dbus::FINGERPRINTS_PER_USER),
            passcodes: cap(counts.passcodes, crate::dbus::PASSCODES_PER_USER),
            storage_health: self.storage_health.clone(),
            key_storage: self.key_storage.clone(),
        }
    }
}

/// An event as technicians see it: a dotted kind (`unlocked.fingerprint`,
/// `alarm_raised.tamper`) and the remaining fields as `key=value`.
pub fn event_record(id: u64, event: &Event) -> EventRecord {
    let value = serde_json::to_value(&event.kind).unwrap_or_default();
    let mut kind = String::from("unknown");
    let mut detail = Vec::new();
    if let serde_json::Value::Object(map) = value {
        if let Some(serde_json::Value::String(t)) = map.get("type") {
            kind = t.clone();
        }
        let mut qualified = false;
        for (k, v) in &map {
            if k == "type" {
                continue;
            }
            match v {
                serde_json::Value::String(s)
                    if !qualified && matches!(k.as_str(), "method" | "alarm" | "how") =>
                {
                    kind.push('.');
                    kind.push_str(s);
                    qualified = true;
                }
                // One level of nesting (a spoof's user and reason) as
                // dotted keys, so no JSON lands in the detail text.
                serde_json::Value::Object(inner) => {
                    for (ik, iv) in inner {
                        push_field(&mut detail, &format!("{k}.{ik}"), iv);
                    }
                }
                other => push_field(&mut detail, k, other),
            }
        }
    }
    EventRecord {
        id,
        time: event.at.map(|w| w.0).unwrap_or(0),
        kind,
        detail: detail.join(", "),
    }
}

fn push_field(detail: &mut Vec<String>, key: &str, value: &serde_json::Value) {
    match value {
        serde_json::Value::String(s) => detail.push(format!("{key}={s}")),
        serde_json::Value::Null => {}
        other => detail.push(format!("{key}={other}")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::EventKind;
    use crate::core::types::{Method, UserNumber};
    use crate::core::WallTime;

    #[test]
    fn events_get_dotted_kinds_and_no_secrets() {
        let e = Event {
            at: Some(WallTime(1_700_000_000)),
            mono_ms: 5,
            kind: EventKind::Unlocked {
                method: Method::Fingerprint,
                user: UserNumber::new(3),
            },
        };
        let r = event_record(9, &e);
        assert_eq!(r.id, 9);
        assert_eq!(r.time, 1_700_000_000);
        assert_eq!(r.kind, "unlocked.fingerprint");
        assert_eq!(r.detail, "user=3");
    }

    #[test]
    fn a_spoof_shows_its_user_and_reason_as_dotted_fields() {
        let e = Event {
            at: None,
            mono_ms: 5,
            kind: EventKind::VerifyFailed {
                method: Method::Face,
                spoof: Some(crate::core::event::SpoofSeen {
                    user: UserNumber::new(2),
                    reason: "glare".into(),
                }),
            },
        };
        let r = event_record(1, &e);
        assert_eq!(r.kind, "verify_failed.face");
        assert_eq!(r.detail, "spoof.reason=glare, spoof.user=2");
        let plain = Event {
            at: None,
            mono_ms: 5,
            kind: EventKind::VerifyFailed {
                method: Method::Passcode,
                spoof: None,
            },
        };
        assert_eq!(event_record(2, &plain).detail, "");
    }
}
