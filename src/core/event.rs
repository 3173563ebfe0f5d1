//! The event log's entries (B-9.6): every unlock (method, user), lock,
//! failure, alarm and setting change, and every prompt (BEHAVIOUR.md:
//! "every prompt also goes to the event log").
use serde::{Deserialize, Serialize};

use super::time::WallTime;
use super::types::{CredentialKind, Handing, Method, SettingChange, UserNumber};

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
    Prompt {
        prompt: String,
    },
}
