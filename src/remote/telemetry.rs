//! What the lock publishes: topic names, the retained state document, the
//! document of a logged event (which leaves only sealed to the owner keys,
//! `owner_events`), and Home Assistant discovery configs. Pure functions
//! of the engine's status and the event log; nothing secret (no user
//! names, codes, keys or key ids) leaves through here in clear.
use serde_json::{json, Value};

use crate::core::event::{Event, EventKind};
use crate::core::input::{BoltPosition, DoorPosition};
use crate::core::types::Method;
use crate::core::{AlarmKind, LockState, Status};
use crate::link::EventRecord;

/// Every topic of one lock, under `<prefix>/<serial>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `online` / `offline`, retained (birth and last will, B-10.7).
    pub availability: String,
    /// Sealed commands in (the lock subscribes, QoS 1).
    pub cmd: String,
    /// The challenge commands must answer (hex, retained; `freshness.rs`).
    pub challenge: String,
    /// Sealed replies out (QoS 1).
    pub reply: String,
    /// The retained state document.
    pub state: String,
    /// Each event of the log, sealed to every owner key (QoS 1, not
    /// retained; `owner_events`).
    pub events: String,
    /// Doorbell and alarm notices for the HA event entity (QoS 1).
    pub alert: String,
    /// The newest doorbell/alarm snapshot, JPEG bytes (QoS 1, retained).
    pub snapshot: String,
    /// Notices sealed to each owner key (duress, unlock while away; QoS 1).
    pub notify: String,
}

impl Topics {
    pub fn new(prefix: &str, serial: &str) -> Self {
        let t = |leaf: &str| format!("{prefix}/{serial}/{leaf}");
        Topics {
            availability: t("availability"),
            cmd: t("cmd"),
            challenge: t("challenge"),
            reply: t("reply"),
            state: t("state"),
            events: t("events"),
            alert: t("alert"),
            snapshot: t("snapshot"),
            notify: t("notify"),
        }
    }
}

fn lock_word(s: LockState) -> &'static str {
    match s {
        LockState::Locked => "locked",
        LockState::Unlocked => "unlocked",
        LockState::Moving => "moving",
        LockState::Jammed => "jammed",
        LockState::Unknown => "unknown",
    }
}

fn alarm_word(a: AlarmKind) -> &'static str {
    match a {
        AlarmKind::Tamper => "tamper",
        AlarmKind::Lockout => "lockout",
        AlarmKind::Duress => "duress",
        AlarmKind::LowBattery => "low_battery",
        AlarmKind::Jam => "jam",
        AlarmKind::ModuleSwap => "module_swap",
        AlarmKind::DoorAjar => "door_ajar",
        AlarmKind::DoorForcedOpen => "door_forced_open",
    }
}

/// Fields of the state document that tell whether anyone is home or the
/// door is open: only with `[remote] clear_presence` (issue 14 item 2).
pub const PRESENCE_FIELDS: [&str; 4] = ["lock", "bolt", "door", "away"];

/// The retained state document. Without `presence` it holds the device's
/// health — battery, power, Wi-Fi signal, alarms, lockout — and nothing
/// that says whether the door is open or anyone is home. Duress is left
/// out on purpose: B-6.9 says a duress unlock is silent at the door, and a
/// state topic that a household dashboard shows is "at the door". It goes
/// to the owner as a sealed notice only (not over this path).
pub fn state_json(s: &Status, presence: bool) -> Value {
    let alarms: Vec<&str> = s
        .active_alarms
        .iter()
        .filter(|a| in_clear(**a, presence))
        .map(|a| alarm_word(*a))
        .collect();
    let mut doc = json!({
        "battery_percent": s.battery_percent,
        "low_battery": s.low_battery,
        "external_power": s.external_power,
        "wifi_rssi": s.wifi_rssi,
        "wifi_weak": s.wifi_weak,
        "alarms": alarms,
        "lockout": s.lockout_active,
    });
    if presence {
        if let Value::Object(m) = &mut doc {
            m.insert("lock".into(), lock_word(s.lock).into());
            let bolt = match s.bolt {
                BoltPosition::Extended => "extended",
                BoltPosition::Retracted => "retracted",
                BoltPosition::Between => "between",
            };
            m.insert("bolt".into(), bolt.into());
            let door = match s.door {
                Some(DoorPosition::Open) => "open",
                Some(DoorPosition::Closed) => "closed",
                None => "unknown",
            };
            m.insert("door".into(), door.into());
            m.insert("away".into(), s.away_armed.into());
        }
    }
    doc
}

/// The form of a logged event that may be published (B-6.9): a duress
/// unlock reads as an ordinary passcode unlock, as it does on the keypad;
/// the duress alarm is not published at all (the owner hears of duress
/// only by the sealed notice). Everything else passes unchanged. Events
/// leave sealed to the owners (`owner_events`), and this holds there too:
/// the owner's phone may be shown to the person under duress.
pub fn public_event(event: &Event) -> Option<Event> {
    let kind = match &event.kind {
        EventKind::AlarmRaised {
            alarm: AlarmKind::Duress,
        }
        | EventKind::AlarmCleared {
            alarm: AlarmKind::Duress,
        } => return None,
        EventKind::Unlocked {
            method: Method::DuressPasscode,
            user,
        } => EventKind::Unlocked {
            method: Method::Passcode,
            user: *user,
        },
        other => other.clone(),
    };
    Some(Event {
        kind,
        ..event.clone()
    })
}

/// One event document: `{"id", "time", "kind", "detail"}`, the plaintext
/// of a sealed event. The id is the log's sequence number (and the sealed
/// frame's counter), so an app drops a repeat (QoS 1 is at-least-once)
/// by id.
pub fn event_json(r: &EventRecord) -> Value {
    json!({ "id": r.id, "time": r.time, "kind": r.kind, "detail": r.detail })
}

/// Event types the HA event entity announces (payload `{"event_type"}` on
/// the alert topic).
pub const ALERT_TYPES: [&str; 12] = [
    "doorbell",
    "tamper",
    "lockout",
    "low_battery",
    "jam",
    "door_ajar",
    "door_forced_open",
    "module_swap",
    "keypad_disabled",
    "clock_behind",
    "wifi_weak",
    "module_fault",
];

/// Whether an alarm may be shown on the clear topics: never duress
/// (B-6.9, silent at the door); a door left open (the door stands open)
/// only with `clear_presence`, like the door state.
fn in_clear(a: AlarmKind, presence: bool) -> bool {
    match a {
        AlarmKind::Duress => false,
        AlarmKind::DoorAjar => presence,
        _ => true,
    }
}

/// The alert document for a notice, if it is one HA may see. Duress and
/// away-unlock notices are for the owner's app only. A door left open says
/// the door stands open (someone just came or went): presence, so it is
/// published only with `clear_presence`, like the door state. A door
/// forced open is an alarm like tamper and always is.
pub fn alert_json(n: &crate::core::action::Notice, presence: bool) -> Option<Value> {
    use crate::core::action::Notice;
    let t = match n {
        Notice::Doorbell => "doorbell",
        Notice::Alarm(a) if !in_clear(*a, presence) => return None,
        Notice::Alarm(a) => alarm_word(*a),
        // The alarm notice of a timed lockout already went out; a keypad
        // that disabled itself is news for the household dashboard too.
        Notice::Lockout {
            keypad_disabled: true,
            ..
        } => "keypad_disabled",
        Notice::ClockBehind => "clock_behind",
        // B-10.7: "the device reports when Wi-Fi is weak"; no secret in it.
        Notice::WifiWeak { .. } => "wifi_weak",
        // A reader that stopped answering: the household should know
        // before someone stands at the door; no presence in it.
        Notice::ModuleFault { .. } => "module_fault",
        Notice::Duress { .. } | Notice::AwayUnlock { .. } | Notice::Lockout { .. } => return None,
    };
    Some(json!({ "event_type": t }))
}

/// One Home Assistant discovery message: topic and retained payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    pub topic: String,
    pub payload: Value,
}

/// Home Assistant discovery configs for this lock.
///
/// Decision: the `lock` entity has **no command topic**. HA reads state;
/// it cannot unlock, because an unlock must be sealed with an app key and
/// HA holds none. An owner who wants HA to unlock issues it a key through
/// the owner's app (a bridge that seals commands); until then a broker
/// account that can reach HA's topics gains nothing at the door.
///
/// `camera`: snapshots are published, so a `camera` entity shows the newest.
/// `presence`: the state document carries the lock and door state
/// (`clear_presence`), so the `lock` and door `binary_sensor` entities are
/// announced; without it they are not (they would read absent fields).
pub fn discovery(
    prefix: &str,
    serial: &str,
    topics: &Topics,
    firmware: &str,
    camera: bool,
    presence: bool,
) -> Vec<Discovery> {
    let device = json!({
        "identifiers": [format!("latchd_{serial}")],
        "name": format!("Lock {serial}"),
        "manufacturer": "latchd",
        "model": "latchd smart lock",
        "serial_number": serial,
        "sw_version": firmware,
    });
    let common = |name: &str, object: &str| {
        json!({
            "name": name,
            "unique_id": format!("latchd_{serial}_{object}"),
            "object_id": format!("latchd_{serial}_{object}"),
            "availability_topic": topics.availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        })
    };
    let with = |mut base: Value, extra: Value| {
        if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
            b.extend(e);
        }
        base
    };
    let topic =
        |component: &str, object: &str| format!("{prefix}/{component}/{serial}/{object}/config");
    let mut configs = vec![
        Discovery {
            topic: topic("lock", "lock"),
            payload: with(
                common("Lock", "lock"),
                json!({
                    "state_topic": topics.state,
                    "value_template": "{{ value_json.lock }}",
                    "state_locked": "locked",
                    "state_unlocked": "unlocked",
                    "state_jammed": "jammed",
                    "optimistic": false,
                }),
            ),
        },
        Discovery {
            topic: topic("sensor", "battery"),
            payload: with(
                common("Battery", "battery"),
                json!({
                    "state_topic": topics.state,
                    "value_template": "{{ value_json.battery_percent }}",
                    "device_class": "battery",
                    "unit_of_measurement": "%",
                    "state_class": "measurement",
                }),
            ),
        },
        Discovery {
            topic: topic("sensor", "wifi_rssi"),
            payload: with(
                common("Wi-Fi signal", "wifi_rssi"),
                json!({
                    "state_topic": topics.state,
                    "value_template": "{{ value_json.wifi_rssi }}",
                    "device_class": "signal_strength",
                    "unit_of_measurement": "dBm",
                    "state_class": "measurement",
                    "entity_category": "diagnostic",
                }),
            ),
        },
        Discovery {
            topic: topic("binary_sensor", "door"),
            payload: with(
                common("Door", "door"),
                json!({
                    "state_topic": topics.state,
                    "value_template": "{{ value_json.door }}",
                    "payload_on": "open",
                    "payload_off": "closed",
                    "device_class": "door",
                }),
            ),
        },
        Discovery {
            topic: topic("event", "alert"),
            payload: with(
                common("Doorbell and alarms", "alert"),
                json!({
                    "state_topic": topics.alert,
                    "event_types": ALERT_TYPES
                        .iter()
                        .filter(|t| presence || **t != alarm_word(AlarmKind::DoorAjar))
                        .collect::<Vec<_>>(),
                    "device_class": "doorbell",
                }),
            ),
        },
    ];
    if !presence {
        configs.retain(|d| {
            let field = d.payload["value_template"].as_str().unwrap_or_default();
            !PRESENCE_FIELDS
                .iter()
                .any(|f| field.contains(&format!("value_json.{f} ")))
        });
    }
    if camera {
        configs.push(Discovery {
            topic: topic("camera", "snapshot"),
            payload: with(
                common("Door camera snapshot", "snapshot"),
                // Raw JPEG bytes on the topic (no `image_encoding`).
                json!({ "topic": topics.snapshot }),
            ),
        });
    }
    configs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duress_never_travels_in_clear() {
        use crate::core::types::UserNumber;
        let ev = |kind| Event {
            at: None,
            mono_ms: 1,
            kind,
        };
        let user = UserNumber::new(3);
        assert_eq!(
            public_event(&ev(EventKind::Unlocked {
                method: Method::DuressPasscode,
                user,
            })),
            Some(ev(EventKind::Unlocked {
                method: Method::Passcode,
                user,
            }))
        );
        for alarm in [
            EventKind::AlarmRaised {
                alarm: AlarmKind::Duress,
            },
            EventKind::AlarmCleared {
                alarm: AlarmKind::Duress,
            },
        ] {
            assert_eq!(public_event(&ev(alarm)), None);
        }
        let tamper = ev(EventKind::AlarmRaised {
            alarm: AlarmKind::Tamper,
        });
        assert_eq!(public_event(&tamper), Some(tamper.clone()));
    }

    /// Every notice the engine can raise, each alarm kind once. The match
    /// makes a new variant a compile error here until it is listed.
    /// The `event_types` the alert entity declares to Home Assistant.
    fn discovery_event_types(presence: bool) -> Vec<String> {
        let t = Topics::new("latchd", "LD-1");
        let d = discovery("homeassistant", "LD-1", &t, "0.1.0", false, presence);
        let alert = d
            .iter()
            .find(|m| m.topic.contains("/event/"))
            .expect("the alert entity");
        alert.payload["event_types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    fn every_notice() -> Vec<crate::core::action::Notice> {
        use crate::core::action::Notice;
        use crate::core::types::UserNumber;
        let alarms = [
            AlarmKind::Tamper,
            AlarmKind::Lockout,
            AlarmKind::Duress,
            AlarmKind::LowBattery,
            AlarmKind::Jam,
            AlarmKind::ModuleSwap,
            AlarmKind::DoorAjar,
            AlarmKind::DoorForcedOpen,
        ];
        for a in alarms {
            match a {
                AlarmKind::Tamper
                | AlarmKind::Lockout
                | AlarmKind::Duress
                | AlarmKind::LowBattery
                | AlarmKind::Jam
                | AlarmKind::ModuleSwap
                | AlarmKind::DoorAjar
                | AlarmKind::DoorForcedOpen => {}
            }
        }
        let user = UserNumber::new(3).expect("user 3");
        let duress_unlock = Event {
            at: None,
            mono_ms: 1,
            kind: EventKind::Unlocked {
                method: Method::DuressPasscode,
                user: Some(user),
            },
        };
        let mut all = vec![
            Notice::AwayUnlock {
                event: duress_unlock,
            },
            Notice::Duress { user },
            Notice::Doorbell,
            Notice::Lockout {
                level: 1,
                minutes: Some(3),
                keypad_disabled: false,
            },
            Notice::Lockout {
                level: 5,
                minutes: None,
                keypad_disabled: true,
            },
            Notice::ClockBehind,
            Notice::WifiWeak { rssi: -80 },
            Notice::ModuleFault {
                modality: crate::core::types::Modality::Palm,
            },
        ];
        all.extend(alarms.map(Notice::Alarm));
        for n in &all {
            match n {
                Notice::AwayUnlock { .. }
                | Notice::Duress { .. }
                | Notice::Doorbell
                | Notice::Alarm(_)
                | Notice::Lockout { .. }
                | Notice::ClockBehind
                | Notice::WifiWeak { .. }
                | Notice::ModuleFault { .. } => {}
            }
        }
        all
    }

    /// Home Assistant's MQTT event entity drops an event whose type is not
    /// in its `event_types`: every alert the lock publishes is listed
    /// (module swap, a disabled keypad, a clock behind and weak Wi-Fi
    /// were published but never shown).
    #[test]
    fn every_published_alert_type_is_declared_to_home_assistant() {
        for presence in [false, true] {
            let declared = discovery_event_types(presence);
            for n in every_notice() {
                if let Some(doc) = alert_json(&n, presence) {
                    let t = doc["event_type"].as_str().unwrap().to_owned();
                    assert!(
                        declared.contains(&t),
                        "{t} (presence {presence}) not in {declared:?}"
                    );
                }
            }
        }
    }

    /// Issue 23 item 2, B-6.9: the clear alert topic (what a household
    /// dashboard shows, maybe to the person under duress) never carries
    /// duress: neither the duress notice nor the duress alarm becomes an
    /// alert, and no alert document says "duress". Other alarms still do.
    #[test]
    fn duress_never_becomes_a_clear_alert() {
        use crate::core::action::Notice;
        let mut published = Vec::new();
        for n in every_notice() {
            let doc = alert_json(&n, true);
            match &n {
                Notice::Duress { .. } | Notice::Alarm(AlarmKind::Duress) => {
                    assert_eq!(doc, None, "{n:?} became a clear alert")
                }
                Notice::Alarm(a) => {
                    assert_eq!(doc, Some(json!({ "event_type": alarm_word(*a) })), "{n:?}")
                }
                _ => {}
            }
            if let Some(doc) = doc {
                assert!(!doc.to_string().contains("duress"), "{n:?}: {doc}");
                published.push(doc["event_type"].as_str().unwrap().to_owned());
            }
        }
        assert!(published.contains(&"doorbell".to_owned()), "{published:?}");
        assert!(published.contains(&"tamper".to_owned()), "{published:?}");
    }

    /// The retained state document's alarm list leaves an active duress
    /// alarm out, with or without the presence opt-in.
    #[test]
    fn an_active_duress_alarm_is_not_in_the_state_document() {
        use crate::core::{Engine, EngineConfig, Now};
        let engine = Engine::new(
            EngineConfig::for_tests("LD-1"),
            crate::core::types::Persisted::default(),
            Now::new(0, None),
        );
        let s = Status {
            active_alarms: vec![AlarmKind::Duress, AlarmKind::Tamper],
            ..engine.status()
        };
        for presence in [false, true] {
            let doc = state_json(&s, presence);
            assert_eq!(doc["alarms"], json!(["tamper"]), "{doc}");
            assert!(!doc.to_string().contains("duress"), "{doc}");
        }
    }

    #[test]
    fn discovery_has_the_required_fields() {
        let t = Topics::new("latchd", "LD-1");
        let d = discovery("homeassistant", "LD-1", &t, "0.1.0", false, true);
        assert_eq!(d.len(), 5);
        for m in &d {
            assert!(m.topic.starts_with("homeassistant/") && m.topic.ends_with("/config"));
            assert!(m.payload["unique_id"].is_string() && m.payload["state_topic"].is_string());
            assert!(
                m.payload.get("command_topic").is_none(),
                "HA must not command"
            );
        }
        // With snapshots published, a camera entity reads them (HA's MQTT
        // camera: `topic` required, raw image bytes).
        let d = discovery("homeassistant", "LD-1", &t, "0.1.0", true, true);
        assert_eq!(d.len(), 6);
        let cam = d.last().unwrap();
        assert_eq!(cam.topic, "homeassistant/camera/LD-1/snapshot/config");
        assert_eq!(cam.payload["topic"], "latchd/LD-1/snapshot");
        assert!(cam.payload["unique_id"].is_string());
        assert!(cam.payload.get("image_encoding").is_none());
        assert!(cam.payload.get("command_topic").is_none());
    }

    /// Issue 14 item 2: without the presence opt-in the state document
    /// says nothing of the lock, bolt, door or away mode, and HA is not
    /// told of entities that would read them; health fields stay.
    /// A door left open tells the broker the door stands open (presence):
    /// only with `clear_presence`, on the state document, the alert topic
    /// and in the event types announced. A door forced open is an alarm
    /// like tamper: always.
    #[test]
    fn a_door_left_open_is_presence_a_forced_door_is_an_alarm() {
        use crate::core::action::Notice;
        use crate::core::{Engine, EngineConfig, Now};
        let engine = Engine::new(
            EngineConfig::for_tests("LD-1"),
            crate::core::types::Persisted::default(),
            Now::new(0, None),
        );
        let s = Status {
            active_alarms: vec![AlarmKind::DoorAjar, AlarmKind::DoorForcedOpen],
            ..engine.status()
        };
        assert_eq!(state_json(&s, false)["alarms"], json!(["door_forced_open"]));
        assert_eq!(
            state_json(&s, true)["alarms"],
            json!(["door_ajar", "door_forced_open"])
        );
        let ajar = Notice::Alarm(AlarmKind::DoorAjar);
        let forced = Notice::Alarm(AlarmKind::DoorForcedOpen);
        assert_eq!(alert_json(&ajar, false), None);
        assert_eq!(
            alert_json(&ajar, true),
            Some(json!({"event_type": "door_ajar"}))
        );
        assert_eq!(
            alert_json(&forced, false),
            Some(json!({"event_type": "door_forced_open"}))
        );
        let t = Topics::new("latchd", "LD-1");
        let types = |presence| {
            discovery("homeassistant", "LD-1", &t, "0.1.0", false, presence)
                .into_iter()
                .find(|d| d.topic.ends_with("/alert/config"))
                .expect("the alert entity")
                .payload["event_types"]
                .clone()
        };
        assert!(!types(false).to_string().contains("door_ajar"));
        assert!(types(true).to_string().contains("door_ajar"));
        assert!(types(false).to_string().contains("door_forced_open"));
    }

    #[test]
    fn presence_is_published_only_when_opted_in() {
        use crate::core::{Engine, EngineConfig, Now};
        let engine = Engine::new(
            EngineConfig::for_tests("LD-1"),
            crate::core::types::Persisted::default(),
            Now::new(0, None),
        );
        let s = Status {
            away_armed: true,
            ..engine.status()
        };
        let private = state_json(&s, false);
        for f in PRESENCE_FIELDS {
            assert!(private.get(f).is_none(), "{f} in clear: {private}");
        }
        for f in ["battery_percent", "wifi_rssi", "alarms", "low_battery"] {
            assert!(private.get(f).is_some(), "{f} missing: {private}");
        }
        let open = state_json(&s, true);
        for f in PRESENCE_FIELDS {
            assert!(open.get(f).is_some(), "{f} missing: {open}");
        }
        let t = Topics::new("latchd", "LD-1");
        let objects = |presence| -> Vec<String> {
            discovery("homeassistant", "LD-1", &t, "0.1.0", false, presence)
                .iter()
                .map(|d| d.topic.clone())
                .collect()
        };
        let without = objects(false);
        assert_eq!(without.len(), 3, "{without:?}");
        assert!(without
            .iter()
            .all(|t| !t.contains("/lock/") && !t.contains("/door/")));
        assert_eq!(objects(true).len(), 5);
    }
}
