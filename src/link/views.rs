//! The lock's public views: what technicians (D-Bus), dashboards (MQTT)
//! and the front panel see of a device check and of a logged event. Only
//! values such an audience may see leave here: user numbers yes;
//! passcodes, keys and templates never (events carry none).
use serde::{Deserialize, Serialize};

use crate::core::Event;

/// One device's self-test result. On the bus: `(sbs)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCheck {
    /// Device name (`"motor"`, `"bolt_sensor"`, `"fingerprint"`, ...).
    pub device: String,
    pub ok: bool,
    /// What was seen, or what is wrong and what to check.
    pub detail: String,
}

/// One entry of the event log as technicians see it. On the bus: `(txss)`.
///
/// `detail` is written by the daemon for this audience: a user number may
/// appear, a passcode or key never does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Monotonic log sequence number; newer events have larger ids.
    pub id: u64,
    /// Unix seconds (UTC) when it happened.
    pub time: i64,
    /// Short kind word chosen by the daemon, e.g. `"door_closed"`, `"unlock"`.
    pub kind: String,
    pub detail: String,
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
