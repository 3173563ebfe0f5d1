//! The event log's entries (B-9.6): every unlock (method, user), lock,
//! failure, alarm and setting change. Prompts are not events: they go to
//! the diagnostics stream (`Action::Trace`; BEHAVIOUR.md: "the event log
//! records what happened, not what was said").
//!
//! Each kind has a [`Retention`] class (issue 14 item 4): *records* —
//! unlocks, locks, failures, lockouts, alarms, user, key and setting
//! changes, resets — and *noise*, what anyone outside can cause at will
//! (doorbell presses, refused app frames, unknown faces; see
//! `core::noise`). The store keeps the two in separate budgets, so no
//! amount of noise pushes a record out of the log.
use serde::{Deserialize, Serialize};

use super::input::Channel;
use super::noise::NoiseKind;
use super::time::{Validity, WallTime};
use super::types::{CredentialKind, Handing, Method, SettingChange, UserNumber};
use super::update::{Blocker, Phase, UpdateRefusal};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time, when known.
    pub at: Option<WallTime>,
    /// Monotonic milliseconds, for ordering within one run.
    pub mono_ms: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    Tamper,
    Lockout,
    Duress,
    LowBattery,
    Jam,
    /// Issue 13 item 7: the fingerprint module does not know the lock's
    /// module password (swapped or replaced); it is not used until an
    /// administrator re-pairs a factory-fresh module.
    ModuleSwap,
    /// Issue 17 item 3 (Matter `DoorAjar`): the door stayed open longer
    /// than the `door_ajar` setting. A prompt and an owner notice, no siren.
    DoorAjar,
    /// Issue 17 item 3 (Matter `DoorForcedOpen`): the door opened while the
    /// bolt was out and no unlock was in progress. Siren, snapshot, notice.
    DoorForcedOpen,
}

/// A presentation refused by the liveness check although it matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoofSeen {
    /// Whose enrolled face it matched (`None`: a template the store does
    /// not know).
    pub user: Option<UserNumber>,
    /// Why the check refused it, for the owner.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockHow {
    /// B-8.1: "✓" on the front keypad after leaving.
    Outside,
    /// B-8.2: the back panel's lock button.
    Inside,
    /// B-8.3: countdown.
    Auto,
    App,
    /// A Matter controller's `LockDoor`.
    Matter,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EventKind {
    Unlocked {
        method: Method,
        user: Option<UserNumber>,
    },
    Locked {
        how: LockHow,
    },
    VerifyFailed {
        method: Method,
        /// The presented biometric matched an enrolled template but the
        /// liveness check refused it (a photo, a screen): what it showed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spoof: Option<SpoofSeen>,
    },
    AlarmRaised {
        alarm: AlarmKind,
    },
    AlarmCleared {
        alarm: AlarmKind,
    },
    LockoutStarted,
    LockoutEnded {
        early: bool,
    },
    HandingSet {
        handing: Handing,
    },
    UserAdded {
        user: UserNumber,
    },
    UserDeleted {
        user: UserNumber,
    },
    CredentialAdded {
        user: UserNumber,
        kind: CredentialKind,
    },
    CredentialRemoved {
        user: UserNumber,
        kind: CredentialKind,
    },
    SettingChanged {
        change: SettingChange,
    },
    Doorbell,
    AwayMode {
        armed: bool,
    },
    DoorOpened,
    DoorClosed,
    PairingMode {
        active: bool,
    },
    MenuEntered {
        user: Option<UserNumber>,
    },
    FactoryReset,
    Jammed,
    ModuleFault {
        detail: String,
    },
    /// A module that had a fault answers again (issue 15 item 5).
    ModuleRecovered {
        detail: String,
    },
    /// A spoken prompt. Written only by versions before issue 14 item 4
    /// (prompts are traced now, not stored); kept so their rows still
    /// read, and pruned as noise.
    Prompt {
        prompt: String,
    },
    /// Events of one noise kind that were not logged because a flood
    /// used up that kind's budget (`core::noise`): how many since the
    /// last entry or summary of that kind.
    EventsSuppressed {
        noise: NoiseKind,
        count: u64,
    },
    /// An app command over BLE or the broker was refused: the owner sees
    /// every attempt, successful or not (B-9.6).
    AppRefused {
        via: Channel,
        reason: AppRefusal,
    },
    /// An owner or guest app key was registered in slot `slot`.
    AppKeyAdded {
        slot: u32,
        guest: bool,
    },
    /// An app key or a guest invite was revoked.
    AppKeyRevoked {
        slot: u32,
    },
    /// An owner created a guest invite (B-6.6).
    GuestInviteCreated {
        slot: u32,
    },
    /// An owner set the lock's clock.
    ClockSet {
        to: WallTime,
    },
    /// An owner's time sync was refused: earlier than the trusted floor
    /// (`floor` set), or out of range.
    ClockSyncRefused {
        to: WallTime,
        floor: Option<WallTime>,
    },
    /// The wall clock read earlier than the time the lock already trusted
    /// (a rollback): time-windowed credentials are refused until it is
    /// right again. Logged once per episode.
    ClockBehind {
        reading: WallTime,
        floor: WallTime,
    },
    /// A lockout level was reached (issue 13: 3, 6, 12, 24 … minutes).
    LockoutLevel {
        level: u32,
        minutes: u32,
    },
    /// Repeated lockouts disabled the keypad until a release.
    KeypadDisabled {
        strikes: u32,
    },
    /// The disabled keypad was released.
    KeypadReleased {
        by: ReleasedBy,
    },
    /// An owner key or an administrator's biometric opened the door
    /// during a lockout (a stranger must not lock the owner out).
    LockoutOverridden {
        method: Method,
        user: Option<UserNumber>,
    },
    /// A stored credential was presented outside its validity window. On
    /// the keypad it was answered and counted like a wrong code; this
    /// entry tells the owner why.
    OutsideValidity {
        method: Method,
        user: Option<UserNumber>,
    },
    /// An automatic face recognition (the camera saw someone) matched
    /// nobody who may open now, or a spoof. Not a failed verification of
    /// the lock (B-7.1): automatic attempts have their own budget.
    AutoFaceRefused {
        user: Option<UserNumber>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spoof: Option<SpoofSeen>,
    },
    /// Too many automatic failures: the camera stops starting
    /// recognitions for this long (touching the keypad still does).
    AutoFacePaused {
        minutes: u32,
    },
    /// An owner listed the owner keys (issue 13 item 6).
    OwnerKeysListed,
    /// An owner changed a user's validity window (B-9.4, issue 17 item 7).
    ValidityChanged {
        user: UserNumber,
        validity: Validity,
    },
    /// An owner set a schedule (issue 17 item 2).
    ScheduleSet {
        schedule: super::schedule::Schedule,
    },
    /// An owner cleared schedules: of this kind, this holder (`None`: the
    /// holidays) and this index (`None`: all of them).
    SchedulesCleared {
        kind: super::schedule::ScheduleKind,
        holder: Option<super::schedule::Holder>,
        index: Option<u8>,
    },
    /// An owner made a visitor passcode (B-6.10): its id and window, never
    /// its digits.
    TempPasscodeCreated {
        id: u32,
        validity: Validity,
        one_time: bool,
    },
    /// An owner revoked a visitor passcode.
    TempPasscodeRevoked {
        id: u32,
    },
    /// B-10.7: the Wi-Fi signal stayed below the weak line (dBm).
    WifiWeak {
        rssi: i16,
    },
    /// The weak signal came back above the line.
    WifiRecovered {
        rssi: i16,
    },
    /// An owner pairing used up the current verification code; the next
    /// one is spoken by system information.
    PairingCodeRotated {
        generation: u32,
    },
    /// Issue 20: an owner asked for a software update.
    UpdateRequested {
        by: UserNumber,
        via: Channel,
        allow_older: bool,
    },
    /// The update waits for a safe moment: what blocks it.
    UpdateWaiting {
        phase: Phase,
        blocked_by: Vec<Blocker>,
    },
    UpdateInstalling {
        version: String,
    },
    UpdateProgress {
        percent: u8,
    },
    UpdateInstalled {
        version: String,
    },
    UpdateRestarting {
        version: String,
    },
    /// The lock refused the bundle (downgrade, bad version).
    UpdateRefused {
        refusal: UpdateRefusal,
    },
    /// RAUC refused or failed: its error.
    UpdateFailed {
        phase: Phase,
        error: String,
    },
    /// It was never safe within the wait: nothing changed.
    UpdateAbandoned {
        phase: Phase,
        blocked_by: Vec<Blocker>,
    },
    /// The new slot passed the self-test and was marked good.
    UpdateMarkedGood {
        slot: String,
        version: String,
    },
    /// The new slot was not marked good: the boot counter falls back.
    UpdateNotMarked {
        reason: String,
    },
}

/// Which budget of the bounded log an event counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// What the lock did and what was tried against it: evicted only by
    /// newer records.
    Record,
    /// What anyone outside can cause at will: rate-limited by the engine,
    /// kept in its own smaller budget.
    Noise,
}

/// The serde names (`kind_name` column) of every [`Retention::Noise`]
/// kind, for the store's pruning. `noise_names_match_the_kinds` keeps it
/// in step with [`EventKind::retention`].
pub const NOISE_KIND_NAMES: [&str; 7] = [
    "doorbell",
    "app_refused",
    "auto_face_refused",
    "module_fault",
    "module_recovered",
    "events_suppressed",
    "prompt",
];

impl EventKind {
    /// Record or noise (see [`Retention`]).
    pub fn retention(&self) -> Retention {
        match self {
            // Every refusal, the channel's `rate_limited` summary too (it
            // is exempt from the engine's budget, not from this class).
            EventKind::Prompt { .. }
            | EventKind::EventsSuppressed { .. }
            | EventKind::AppRefused { .. } => Retention::Noise,
            k if NoiseKind::of(k).is_some() => Retention::Noise,
            _ => Retention::Record,
        }
    }
}

/// Who released a disabled keypad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleasedBy {
    /// An owner key, over BLE or the broker.
    Owner { via: Channel, admin: UserNumber },
    /// An administrator verified at SET (the menu, inside).
    Administrator { user: UserNumber },
}

/// Why an app command was refused. The first five and `Stale` are decided
/// at the channel's edge (the frame never reached the engine as a
/// command); the rest by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppRefusal {
    /// It named a key the lock does not hold (revoked or never issued).
    UnknownKey,
    /// The seal did not verify: modified, forged, or the wrong key.
    BadSeal,
    /// A counter already used: a replay, or reordered.
    Replay,
    /// It verified but did not decode as a command.
    Malformed,
    /// Too many refused frames: from here on frames are dropped without
    /// being checked. Logged once when a burst starts; the channel counts
    /// the dropped frames (`RemoteStats::rate_limited`).
    RateLimited,
    /// The key's role may not do this.
    Forbidden,
    /// Outside the key's validity window, or the lock's clock is unknown.
    OutsideValidity,
    /// Remote unlock is turned off (B-6.7).
    RemoteUnlockDisabled,
    /// The lock is locked out (B-7).
    LockedOut,
    /// A guest pairing code that is unknown, spent, expired or mistyped.
    InviteRefused,
    /// An owner pairing whose key confirmation failed: a wrong
    /// verification code (an old one, the label's after the first owner)
    /// or a man in the middle.
    PairingFailed,
    /// A remote command that verified but is not fresh: it answers a
    /// challenge the lock no longer accepts (held back by the broker, or
    /// sealed before the lock's current broker connection).
    Stale,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(kind: &EventKind) -> String {
        match serde_json::to_value(kind).unwrap() {
            serde_json::Value::Object(m) => m["type"].as_str().unwrap().to_owned(),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn noise_names_match_the_kinds() {
        let noise = [
            EventKind::Doorbell,
            EventKind::AppRefused {
                via: Channel::Remote,
                reason: AppRefusal::BadSeal,
            },
            EventKind::AutoFaceRefused {
                user: None,
                spoof: None,
            },
            EventKind::ModuleFault { detail: "x".into() },
            EventKind::ModuleRecovered { detail: "x".into() },
            EventKind::EventsSuppressed {
                noise: NoiseKind::Doorbell,
                count: 3,
            },
            EventKind::Prompt {
                prompt: "Ding dong.".into(),
            },
        ];
        let names: Vec<String> = noise.iter().map(name).collect();
        assert_eq!(names, NOISE_KIND_NAMES);
        assert!(noise.iter().all(|k| k.retention() == Retention::Noise));
        for record in [
            EventKind::LockoutStarted,
            EventKind::VerifyFailed {
                method: Method::Passcode,
                spoof: None,
            },
            EventKind::AlarmRaised {
                alarm: AlarmKind::Tamper,
            },
            EventKind::FactoryReset,
            EventKind::DoorOpened,
            EventKind::AppKeyAdded {
                slot: 1,
                guest: false,
            },
        ] {
            assert_eq!(record.retention(), Retention::Record, "{record:?}");
            assert!(!NOISE_KIND_NAMES.contains(&name(&record).as_str()));
        }
    }
}
