//! Everything that can happen to the lock, as the engine hears it.
//!
//! Board tasks turn edges, key codes and module replies into these; the
//! BLE and remote services turn *already authenticated* app messages into
//! [`Input::App`]. The engine trusts an `AppRequest`'s principal: checking
//! the signature/AEAD is the channel's job, checking what that principal
//! may do is the engine's.
use serde::{Deserialize, Serialize};

use super::redacted::Redacted;
use super::time::{Validity, WallTime};
use super::types::{
    AppKey, AppKeyId, GuestInvite, Key, Modality, Role, SettingChange, TempPasscodeId, UserNumber,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// A deadline from [`super::Engine::next_deadline`] has passed.
    Tick,
    /// The daemon has started and loaded the store: the engine announces
    /// first-start prompts, resumes a persisted lockout, and so on.
    PowerUp {
        /// B-10.6: SET was held for 5 s while the battery went in.
        set_held: bool,
    },
    /// A front-panel key was pressed (the board reports the press once).
    Key(Key),
    /// A key held until the keypad flashes (B-3.4 holds "0").
    KeyHeld(Key),
    /// The keypad was touched (B-3.2, B-6.2 manual face).
    Touch,
    /// The camera saw someone approach (B-6.2 automatic face): starts a
    /// recognition whose failures have their own budget and never feed
    /// the keypad's lockout.
    Motion,
    /// The SET button on the back panel.
    Set(SetPress),
    /// The electronic lock button on the back panel (B-8.2).
    LockButton,
    /// The bolt's limit switches.
    Bolt(BoltPosition),
    /// The door sensor.
    Door(DoorPosition),
    /// The motor driver's report on the last [`super::MotorCmd`].
    Motor(MotorReport),
    /// The mechanical key was turned (B-6.5).
    MechanicalKey,
    /// The inside handle / thumb-turn retracted the bolt from inside (an
    /// inside unlock: it disarms away mode, B-3.6, and arms the outside
    /// lock key, B-8.1).
    InsideHandle,
    /// The front panel's tamper switch (B-10.4).
    Tamper(TamperState),
    /// Battery and USB-C emergency power (B-10.1, B-10.3).
    Power(PowerReading),
    /// A biometric module or the face pipeline reports.
    Module(ModuleReport),
    /// An authenticated command from the owner's or a guest's app.
    App(AppRequest),
    /// Wi-Fi link state (B-10.7).
    Wifi(WifiStatus),
    /// Whether an app is connected over BLE (B-9.1).
    BleConnected(bool),
    /// A channel refused an app frame before it became a command (unknown
    /// key, bad seal, replay...): logged, nothing else changes.
    AppRefused {
        via: Channel,
        reason: super::event::AppRefusal,
    },
    /// An Improv client asked the lock to identify itself (B-5.1: the
    /// installer checks which lock the phone is talking to).
    Identify,
    /// The update task's report on an [`super::action::UpdateCmd`], or on
    /// the slot this daemon booted from.
    Update(UpdateReport),
}

/// What the update task reports (`core::update`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateReport {
    /// RAUC verified the bundle and read this version from its manifest.
    Inspected { version: String },
    /// RAUC's install progress, 0–100.
    Progress { percent: u8 },
    /// RAUC finished writing the other slot and made it primary.
    Installed,
    /// RAUC refused or failed (its `LastError`, or the D-Bus error).
    Failed { error: String },
    /// After a restart into a new slot the self-test passed and the slot
    /// was marked good.
    MarkedGood { slot: String, version: String },
    /// After a restart into a new slot the self-test did not pass in
    /// time (or marking failed): the slot was not marked good, and the
    /// boot counter falls back to the old one.
    NotMarked { reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetPress {
    /// A short press: enter the menu (B-4.1) or confirm a factory reset.
    Short,
    /// Held ≥ 3 s: pairing mode (B-5.1).
    Long,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoltPosition {
    Extended,
    Retracted,
    /// Neither limit switch closed.
    Between,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoorPosition {
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TamperState {
    Intact,
    Opened,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MotorReport {
    /// The move finished on its limit switch.
    Done(BoltPosition),
    /// Stalled twice (the driver already retried once): the bolt is stuck.
    Jammed { at: BoltPosition },
    /// The driver could not drive the motor at all.
    Fault { detail: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerReading {
    pub percent: u8,
    pub millivolts: u32,
    /// USB-C emergency power present.
    pub external: bool,
}

/// Reports from the fingerprint module, the palm-vein module and the face
/// pipeline. Slots are the module's (or the face store's) template slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModuleReport {
    /// A presented finger/palm/face matched the template in `slot`.
    Recognised { modality: Modality, slot: u16 },
    /// Something was presented and matched nothing: one failed verification.
    NotRecognised { modality: Modality },
    /// What was presented matched `slot` but the liveness check refused
    /// it (a photo, a screen): one failed verification, logged with the
    /// matched user and `reason`.
    SpoofRefused {
        modality: Modality,
        slot: u16,
        reason: String,
    },
    /// Enrolment moved on; the engine turns this into a prompt.
    EnrolProgress { modality: Modality, step: EnrolStep },
    /// Enrolment finished. Face templates come back as bytes for the store
    /// to seal; module-held templates stay in the module.
    Enrolled {
        modality: Modality,
        slot: u16,
        template: Option<Vec<u8>>,
    },
    EnrolFailed {
        modality: Modality,
        reason: EnrolFailure,
    },
    /// The module is not answering or answers nonsense. Reported once per
    /// outage, however many polls fail.
    Fault { modality: Modality, detail: String },
    /// The outage a [`ModuleReport::Fault`] began has ended: the module
    /// answers again (no restart needed, issue 15 item 5).
    Recovered { modality: Modality },
    /// The module answered but is not the lock's own (it does not know the
    /// lock's module password, issue 13 item 7): never used for identify
    /// or enrol until an administrator re-pairs ([`ModuleCmd::Pair`]).
    ///
    /// [`ModuleCmd::Pair`]: crate::core::ModuleCmd::Pair
    Untrusted { modality: Modality, detail: String },
}

/// What to tell the person during an enrolment (B-4.5–B-4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrolStep {
    /// Face: next pose wanted.
    FacePose(FacePose),
    /// Face: what is wrong with the current frame.
    FaceFix(FaceFix),
    /// Finger/palm: present again (touch `n` of `of`).
    PresentAgain { n: u8, of: u8 },
    /// Finger/palm: lift / withdraw before the next touch.
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FacePose {
    Straight,
    Up,
    Down,
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaceFix {
    NoFace,
    SeveralFaces,
    TooFar,
    TooClose,
    Blurry,
    Covered,
    WrongPose,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrolFailure {
    /// B-1.3: this finger is already enrolled (in `slot`).
    Duplicate { slot: u16 },
    /// Nothing usable presented in time.
    Timeout,
    /// The captures did not merge into one template.
    Quality,
    /// The module failed; the detail says how.
    Module(String),
}

/// An app command that has passed the channel's authentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRequest {
    /// Echoed in [`super::Action::Reply`] so the channel can answer.
    pub id: u64,
    pub via: Channel,
    pub principal: Principal,
    pub command: AppCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Nearby, over the BLE secure channel.
    Ble,
    /// Over Wi-Fi through the broker (B-6.7).
    Remote,
    /// Over IP from a Matter controller (Home Assistant, Apple Home, Google
    /// Home...). Remote for B-6.7: unlocking needs remote unlock turned on.
    Matter,
}

/// Who sent an app command, as its key says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// A new app that proved it knows the lock's verification code while
    /// pairing mode is active (B-5.1). It may only register its owner key.
    Pairing,
    Owner {
        key: AppKeyId,
        admin: UserNumber,
    },
    Guest {
        key: AppKeyId,
        validity: Validity,
    },
    /// A guest's app that presented the public id of a guest pairing code
    /// (B-6.6). It may only count an attempt at, and redeem, that invite;
    /// the channel lets it redeem only after the handshake proved it holds
    /// the code's secret.
    Invitee {
        code_id: u16,
    },
    /// An administrator of a Matter fabric: the node's CASE session and
    /// access control list proved who it is; the engine gives it the owner's
    /// rights over the Door Lock cluster's commands, under the lock's rules.
    Matter {
        /// The fabric's index on this node (1..=254).
        fabric: u8,
        /// The controller's operational node id on that fabric.
        node: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppCommand {
    Unlock,
    Lock,
    AddUser {
        role: Role,
        validity: Validity,
    },
    DeleteUser(UserNumber),
    SetValidity(UserNumber, Validity),
    /// B-6.10. `digits` follow the passcode rules (B-2.3).
    AddTempPasscode {
        digits: Redacted<String>,
        validity: Validity,
        one_time: bool,
    },
    RevokeTempPasscode(TempPasscodeId),
    /// B-6.9: a duress passcode for an existing user, entered in the app.
    SetDuressPasscode {
        user: UserNumber,
        digits: Redacted<String>,
    },
    /// Register an app key (a guest key redeemed from its pairing code, or
    /// an owner key from pairing mode). The id is assigned by the engine.
    AddAppKey(AppKey),
    /// Revoke an app key, or the guest invite holding that slot.
    RevokeAppKey(AppKeyId),
    /// B-6.6: an owner invites a guest; the engine assigns the slot
    /// (`invite.slot` is ignored) and checks the window.
    CreateGuestInvite(GuestInvite),
    /// An invitee starts a redemption: counts one attempt (before the lock
    /// answers the handshake) and refuses a spent or expired code.
    GuestRedeemAttempt,
    /// An invitee finished the handshake: the invite becomes a guest key.
    RedeemGuestInvite {
        public_key: [u8; 32],
        label: String,
    },
    /// Set the lock's wall clock (owner only).
    SetClock(WallTime),
    Setting(SettingChange),
    /// B-7.2: end an active lockout early, re-enable a disabled keypad and
    /// clear the strikes counted (issue 13).
    ReleaseLockout,
    /// List the owner keys (issue 13 item 6); owners only, logged.
    ListOwnerKeys,
    /// Revoke one owner key (issue 13 item 6); owners only, logged. An
    /// owner may revoke its own key; pairing mode pairs a new one.
    RevokeOwnerKey(AppKeyId),
    /// B-3.6 from the app side.
    SetAway(bool),
    /// Unlock from a channel that may present a user's PIN (Matter's
    /// `UnlockDoor`/`UnlockWithTimeout`). A wrong code counts towards the
    /// lockout (B-7.1) like one typed on the keypad; without a code the
    /// `require_pin_remote` setting decides. `relock_after` locks again
    /// that long after the bolt is back (instead of the auto-lock countdown).
    UnlockWithCode {
        code: Option<Redacted<String>>,
        relock_after: Option<core::time::Duration>,
    },
    /// Add a user under a number the caller chose (Matter `SetUser`);
    /// refused if that number is taken.
    AddUserAt {
        user: UserNumber,
        role: Role,
    },
    /// Change a user's role (Matter `SetUser` modify). The last
    /// administrator stays one.
    SetRole {
        user: UserNumber,
        role: Role,
    },
    /// Give a user a passcode, or replace theirs (B-1.2: one per user;
    /// B-2.3 rules).
    SetPasscode {
        user: UserNumber,
        digits: Redacted<String>,
    },
    /// Remove one credential (its template leaves the module too).
    DeleteCredential(super::types::CredentialId),
    /// Issue 17 item 1: put the lock into enrolment for an existing user;
    /// the person then enrols at the lock (B-9.3). Ends after one
    /// credential, on "↩" or when the keypad sleeps.
    EnrolFor {
        user: UserNumber,
        kind: super::types::CredentialKind,
    },
    /// Issue 17 item 1: remove a user's newest credential of `kind`.
    DeleteCredentialOf {
        user: UserNumber,
        kind: super::types::CredentialKind,
    },
    /// Issue 17 item 2: set (insert or replace) a week-day, year-day or
    /// holiday schedule. Owners (and Matter administrators) only.
    SetSchedule(super::schedule::Schedule),
    /// Issue 17 item 2: clear schedules of `kind` for `holder` (`None`:
    /// the holidays), the one at `index` or (`None`) all of them.
    ClearSchedules {
        kind: super::schedule::ScheduleKind,
        holder: Option<super::schedule::Holder>,
        index: Option<u8>,
    },
    /// Issue 17 item 2: the schedules of `holder`, or (`None`) every
    /// schedule of the lock.
    ListSchedules {
        holder: Option<super::schedule::Holder>,
    },
    /// Issue 20: install the RAUC bundle at `source` (an http(s) URL) when
    /// it is safe; owner keys only. `allow_older` lets a bundle that is
    /// not newer than the running version install (a deliberate downgrade).
    StartUpdate {
        source: String,
        allow_older: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WifiStatus {
    pub connected: bool,
    /// dBm; meaningful only when connected.
    pub rssi: i16,
}
