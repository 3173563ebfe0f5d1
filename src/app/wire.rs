//! The wire's mirror of the lock's own types: what the app sees of a
//! core type, in one place, with the explicit conversions from core.
//!
//! ```text
//!   core (src/core)                         wire (this module)            conversion
//!   AppKey + AppKeyRole                 ─►  Principal                     principal(&AppKey)
//!   Principal (engine)                  ◄─  AppKey                        engine_principal(&AppKey)
//!   Role                                ◄►  Role                          Role::from_core / to_core
//!   Settings                            ─►  Settings                      settings(&Settings)
//!   Status (LockState, BoltPosition,    ─►  StatusReport (LockState,      status_report(&Status)
//!     DoorPosition, WifiStatus, alarms)       BoltState, DoorState, WifiStatus, Alarms)
//!   Method                              ─►  UnlockMethod                  unlock_method(Method)
//!   AlarmKind                           ─►  AlarmKind                     alarm_kind(AlarmKind)
//!   Event (EventKind)                   ─►  EventEntry (EventKind)        event_entry(id, &Event)
//! ```
//!
//! The wire types are deliberately smaller than core's: the app needs no
//! jam alarm in an event (the status report shows it), no prompt or menu
//! event, and a duress unlock must look like any passcode unlock to
//! whoever holds the phone (B-6.9). Importers write `wire::LockState`;
//! the same names in `core` stay what the engine means.
use super::crypto::KeyId;
use crate::core::action::Notice;
use crate::core::event::{self, Event};
use crate::core::input::{BoltPosition, DoorPosition};
use crate::core::lock;
use crate::core::time::{Validity, WallTime};
use crate::core::types::{self, AppKey, AppKeyRole, Method};
use crate::core::Status;

/// Who sent an authenticated request: the principal bound to the stored key
/// the session was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// An owner key, bound to an administrator user (B-5).
    Owner {
        /// The app key.
        key_id: KeyId,
        /// The administrator the key acts as.
        admin_user: u16,
    },
    /// A guest BLE key with a validity window (B-6.6).
    Guest {
        /// The guest key.
        key_id: KeyId,
        /// First second the key works (inclusive).
        valid_from: WallTime,
        /// First second the key no longer works (exclusive).
        valid_until: WallTime,
    },
}

impl Principal {
    /// The key id.
    pub fn key_id(&self) -> KeyId {
        match self {
            Principal::Owner { key_id, .. } | Principal::Guest { key_id, .. } => *key_id,
        }
    }
}

/// A user's role (B-4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Unlock + menu.
    Administrator,
    /// Unlock only.
    User,
}

/// All settings, as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Auto-lock countdown in seconds; `None` = off.
    pub auto_lock_secs: Option<u16>,
    /// Lockout protection.
    pub lockout_protection: bool,
    /// Remote unlock.
    pub remote_unlock: bool,
    /// Wi-Fi.
    pub wifi_enabled: bool,
    /// Door-ajar alarm delay in seconds; `None` = off.
    pub door_ajar_secs: Option<u16>,
    /// The prompt language in force (issue 17 item 4).
    pub language: crate::core::Language,
    /// The operating mode (issue 18 item 2).
    pub operating_mode: types::OperatingMode,
}

/// Lock state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// Locked.
    Locked,
    /// Unlocked.
    Unlocked,
    /// The motor could not complete a move.
    Jammed,
    /// Not known (just booted).
    Unknown,
}

/// Door sensor state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorState {
    /// Closed.
    Closed,
    /// Open.
    Open,
    /// Not known.
    Unknown,
}

/// Bolt sensor state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoltState {
    /// Extended (thrown).
    Extended,
    /// Retracted.
    Retracted,
    /// Moving.
    Moving,
    /// Not known.
    Unknown,
}

/// Active alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Alarms {
    /// Tamper alarm (B-10.4).
    pub tamper: bool,
    /// Lockout (B-7.1).
    pub lockout: bool,
    /// Duress (B-6.9).
    pub duress: bool,
    /// Low battery (B-10.1).
    pub low_battery: bool,
    /// The motor jammed (B-8.6).
    pub jam: bool,
    /// The door stayed open past the `door_ajar` setting (Matter `DoorAjar`).
    pub door_ajar: bool,
    /// The door opened with the bolt out (Matter `DoorForcedOpen`).
    pub door_forced_open: bool,
    /// The fingerprint module is not the lock's (issue 13 item 7).
    pub module_swap: bool,
}

impl Alarms {
    /// The active alarms by name, in the order of the wire bits.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.tamper, "tamper"),
            (self.lockout, "lockout"),
            (self.duress, "duress"),
            (self.low_battery, "low_battery"),
            (self.jam, "jam"),
            (self.door_ajar, "door_ajar"),
            (self.door_forced_open, "door_forced_open"),
            (self.module_swap, "module_swap"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

impl StatusReport {
    /// One line for a person, e.g. `lock Locked, door Closed, bolt
    /// Extended, battery 80 %, Wi-Fi connected, alarms: jam`.
    pub fn text(&self) -> String {
        let alarms = self.alarms.names();
        let line = format!(
            "lock {:?}, door {:?}, bolt {:?}, battery {} %, Wi-Fi {}, alarms: {}",
            self.lock,
            self.door,
            self.bolt,
            self.battery_percent,
            match (self.wifi.connected, self.wifi.weak) {
                (true, false) => "connected",
                (true, true) => "connected (weak signal)",
                (false, _) => "not connected",
            },
            if alarms.is_empty() {
                "none".to_string()
            } else {
                alarms.join(", ")
            }
        );
        match &self.update {
            Some(u) => format!("{line}\nsoftware: {}", u.text()),
            None => line,
        }
    }

    /// The same for a program (`--json`).
    pub fn json(&self) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "lock": format!("{:?}", self.lock).to_lowercase(),
            "door": format!("{:?}", self.door).to_lowercase(),
            "bolt": format!("{:?}", self.bolt).to_lowercase(),
            "battery_percent": self.battery_percent,
            "wifi_connected": self.wifi.connected,
            "wifi_weak": self.wifi.weak,
            "alarms": self.alarms.names(),
        });
        if let (Some(u), serde_json::Value::Object(m)) = (&self.update, &mut doc) {
            m.insert("software".into(), u.json());
        }
        doc
    }
}

/// Wi-Fi state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WifiStatus {
    /// Wi-Fi switched on.
    pub enabled: bool,
    /// Associated with an access point.
    pub connected: bool,
    /// Signal strength when connected.
    pub rssi_dbm: Option<i8>,
    /// Connected, but the signal stayed weak (B-10.7).
    pub weak: bool,
}

/// The software update part of a status report (issue 20): only in the
/// reply to [`crate::app::Request::StatusWithUpdate`], so an app that
/// asks for the plain status gets the same bytes as before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSummary {
    /// The version running now (at most [`MAX_VERSION`] bytes).
    pub installed: String,
    /// The slot not booted, as RAUC last reported it; `None` without RAUC
    /// or before its first reading.
    pub other_slot: Option<SlotSummary>,
    /// The update under way: its step and install progress (%).
    pub in_progress: Option<(UpdateStep, u8)>,
    /// How the last update ended, or what the start-up check said of the
    /// booted slot (since the daemon started).
    pub last: Option<UpdateStep>,
}

/// Longest version or slot name in an [`UpdateSummary`] on the wire.
pub const MAX_VERSION: usize = 64;

/// The other A/B slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSummary {
    /// The bootloader's name for it (`A`, `B`).
    pub bootname: String,
    /// The version of the bundle last installed into it (empty: unknown).
    pub version: String,
    /// The bootloader's verdict: good, bad, or not known.
    pub good: Option<bool>,
}

impl UpdateSummary {
    /// `installed 0.2.0, other slot A 0.1.0 (good), last update marked_good`.
    pub fn text(&self) -> String {
        let other = match &self.other_slot {
            Some(o) => format!(
                "other slot {} {}{}",
                o.bootname,
                if o.version.is_empty() {
                    "-"
                } else {
                    &o.version
                },
                match o.good {
                    Some(true) => " (good)",
                    Some(false) => " (bad)",
                    None => "",
                }
            ),
            None => "other slot unknown".into(),
        };
        let mut line = format!("installed {}, {other}", self.installed);
        if let Some((step, progress)) = self.in_progress {
            line.push_str(&format!(", update {} {progress} %", step.name()));
        }
        if let Some(last) = self.last {
            line.push_str(&format!(", last update {}", last.name()));
        }
        line
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "installed": self.installed,
            "other_slot": self.other_slot.as_ref().map(|o| serde_json::json!({
                "bootname": o.bootname,
                "version": o.version,
                "good": o.good,
            })),
            "in_progress": self.in_progress.map(|(step, progress)| serde_json::json!({
                "step": step.name(),
                "progress": progress,
            })),
            "last": self.last.map(UpdateStep::name),
        })
    }
}

/// The status report (B-9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// Lock state.
    pub lock: LockState,
    /// Door state.
    pub door: DoorState,
    /// Bolt state.
    pub bolt: BoltState,
    /// Battery 0..=100 %.
    pub battery_percent: u8,
    /// Wi-Fi.
    pub wifi: WifiStatus,
    /// Alarms.
    pub alarms: Alarms,
    /// Versions and slots, when the app asked for them (issue 20).
    pub update: Option<UpdateSummary>,
}

/// How a door was unlocked (B-6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockMethod {
    /// Face.
    Face,
    /// Palm vein.
    Palm,
    /// Fingerprint.
    Fingerprint,
    /// Passcode.
    Passcode,
    /// Temporary passcode.
    TemporaryPasscode,
    /// Mechanical key.
    MechanicalKey,
    /// BLE key.
    Ble,
    /// Remote over Wi-Fi.
    Remote,
    /// From inside (handle / button).
    Inside,
}

/// Alarm kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmKind {
    /// Tamper.
    Tamper,
    /// Lockout.
    Lockout,
    /// Duress.
    Duress,
    /// Low battery.
    LowBattery,
    /// The door was left open (Matter `DoorAjar`, issue 17 item 3).
    DoorAjar,
    /// The door was forced open (Matter `DoorForcedOpen`).
    DoorForcedOpen,
    /// The motor jammed (B-8.6).
    Jam,
    /// The fingerprint module is not the lock's (issue 13 item 7).
    ModuleSwap,
}

/// What happened to the lockout and the keypad's brute-force budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutChange {
    /// A lockout started (B-7.1).
    Started,
    /// It ended by itself.
    Ended,
    /// An owner released it early (B-7.2).
    EndedEarly,
    /// Repeated lockouts disabled the keypad until a release.
    KeypadDisabled,
    /// The disabled keypad was released.
    KeypadReleased,
}

/// A step of a software update (issue 20, `docs/updates.md`); the
/// details (version, what blocks it, RAUC's error) are in the event log
/// on D-Bus and in the sealed MQTT event documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateStep {
    /// An owner asked for one.
    Requested,
    /// It waits for a safe moment (door, bolt, battery, …).
    Waiting,
    /// RAUC is writing the other slot.
    Installing,
    /// RAUC finished writing; the restart follows when safe.
    Installed,
    /// The lock asked to restart into the new slot.
    Restarting,
    /// The lock refused the bundle (not newer, bad version).
    Refused,
    /// RAUC refused or failed (signature, space, …).
    Failed,
    /// Never safe within the wait: nothing changed.
    Abandoned,
    /// The new slot passed the self-test and was kept.
    MarkedGood,
    /// The new slot failed the self-test: the old one comes back.
    NotMarked,
}

impl UpdateStep {
    /// A stable name for programs.
    pub fn name(self) -> &'static str {
        match self {
            UpdateStep::Requested => "requested",
            UpdateStep::Waiting => "waiting",
            UpdateStep::Installing => "installing",
            UpdateStep::Installed => "installed",
            UpdateStep::Restarting => "restarting",
            UpdateStep::Refused => "refused",
            UpdateStep::Failed => "failed",
            UpdateStep::Abandoned => "abandoned",
            UpdateStep::MarkedGood => "marked_good",
            UpdateStep::NotMarked => "not_marked",
        }
    }
}

/// Event kinds (B-9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Unlocked by a method.
    Unlocked(UnlockMethod),
    /// Locked.
    Locked,
    /// A failed verification.
    VerificationFailed,
    /// An alarm.
    Alarm(AlarmKind),
    /// A setting changed.
    SettingChanged,
    /// A user or credential changed.
    UserChanged,
    /// The doorbell rang.
    Doorbell,
    /// An alarm ended.
    AlarmCleared(AlarmKind),
    /// The lockout or the keypad's budget changed.
    Lockout(LockoutChange),
    /// Away mode armed (`true`) or disarmed (B-3.6).
    Away(bool),
    /// The door opened (`true`) or closed.
    Door(bool),
    /// The motor jammed.
    Jammed,
    /// A biometric module failed or stopped answering.
    ModuleFault,
    /// It answers again (issue 15 item 5).
    ModuleRecovered,
    /// The lock was reset to factory settings.
    FactoryReset,
    /// The door direction was set.
    HandingSet,
    /// A user's validity window changed (B-9.4).
    ValidityChanged,
    /// A visitor passcode was made (`true`) or revoked (B-6.10).
    TempPasscode(bool),
    /// The Wi-Fi signal became weak (`true`) or recovered (B-10.7).
    WifiWeak(bool),
    /// A software update moved on (issue 20).
    Update(UpdateStep),
}

impl EventKind {
    /// A stable name for programs (`--json`), e.g. `door_opened`.
    pub fn name(&self) -> String {
        let alarm = |a: &AlarmKind| format!("{a:?}").to_lowercase();
        match self {
            EventKind::Unlocked(m) => format!("unlocked.{}", format!("{m:?}").to_lowercase()),
            EventKind::Locked => "locked".into(),
            EventKind::VerificationFailed => "verification_failed".into(),
            EventKind::Alarm(a) => format!("alarm.{}", alarm(a)),
            EventKind::AlarmCleared(a) => format!("alarm_cleared.{}", alarm(a)),
            EventKind::SettingChanged => "setting_changed".into(),
            EventKind::UserChanged => "user_changed".into(),
            EventKind::Doorbell => "doorbell".into(),
            EventKind::Lockout(c) => match c {
                LockoutChange::Started => "lockout_started",
                LockoutChange::Ended => "lockout_ended",
                LockoutChange::EndedEarly => "lockout_released",
                LockoutChange::KeypadDisabled => "keypad_disabled",
                LockoutChange::KeypadReleased => "keypad_released",
            }
            .into(),
            EventKind::Away(true) => "away_armed".into(),
            EventKind::Away(false) => "away_disarmed".into(),
            EventKind::Door(true) => "door_opened".into(),
            EventKind::Door(false) => "door_closed".into(),
            EventKind::Jammed => "jammed".into(),
            EventKind::ModuleFault => "module_fault".into(),
            EventKind::ModuleRecovered => "module_recovered".into(),
            EventKind::FactoryReset => "factory_reset".into(),
            EventKind::HandingSet => "handing_set".into(),
            EventKind::ValidityChanged => "validity_changed".into(),
            EventKind::TempPasscode(true) => "visitor_passcode_created".into(),
            EventKind::TempPasscode(false) => "visitor_passcode_revoked".into(),
            EventKind::WifiWeak(true) => "wifi_weak".into(),
            EventKind::WifiWeak(false) => "wifi_recovered".into(),
            EventKind::Update(step) => format!("update.{}", step.name()),
        }
    }
}

/// One event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventEntry {
    /// Cursor of this event (monotonic per lock); pass as `before`.
    pub cursor: u64,
    /// Wall-clock time, if the clock was known.
    pub at: Option<WallTime>,
    /// What happened.
    pub kind: EventKind,
    /// The user, if any.
    pub user: Option<u16>,
}

impl Role {
    /// The engine's role.
    pub fn to_core(self) -> types::Role {
        match self {
            Role::Administrator => types::Role::Admin,
            Role::User => types::Role::User,
        }
    }

    /// The wire role of an engine role.
    pub fn from_core(role: types::Role) -> Self {
        match role {
            types::Role::Admin => Role::Administrator,
            types::Role::User => Role::User,
        }
    }
}

impl Principal {
    /// The engine's principal for this key, given the id the engine
    /// assigned to the stored key (`AppKey::id`).
    pub fn to_core(
        &self,
        app_key: types::AppKeyId,
    ) -> Result<crate::core::Principal, super::codec::CommandError> {
        Ok(match *self {
            Principal::Owner { admin_user, .. } => crate::core::Principal::Owner {
                key: app_key,
                admin: super::request::user_number(admin_user)?,
            },
            Principal::Guest {
                valid_from,
                valid_until,
                ..
            } => crate::core::Principal::Guest {
                key: app_key,
                validity: Validity {
                    from: Some(valid_from),
                    until: Some(valid_until),
                },
            },
        })
    }
}

/// The principal a stored key speaks for on the wire (the role check).
pub fn principal(key: &AppKey) -> Principal {
    match key.role {
        AppKeyRole::Owner { admin } => Principal::Owner {
            key_id: KeyId::of(&key.public_key),
            admin_user: admin.get(),
        },
        AppKeyRole::Guest => Principal::Guest {
            key_id: KeyId::of(&key.public_key),
            valid_from: key.validity.from.unwrap_or(WallTime(i64::MIN)),
            valid_until: key.validity.until.unwrap_or(WallTime(i64::MAX)),
        },
    }
}

/// The engine's principal for a stored key.
pub fn engine_principal(key: &AppKey) -> crate::core::Principal {
    match key.role {
        AppKeyRole::Owner { admin } => crate::core::Principal::Owner { key: key.id, admin },
        AppKeyRole::Guest => crate::core::Principal::Guest {
            key: key.id,
            validity: key.validity,
        },
    }
}

/// The lock's settings as the app reads them back (B-9.7), with the
/// prompt language in force (`language`: the stored choice, else the
/// config's default, which the store does not hold).
pub fn settings(s: &types::Settings, language: crate::core::Language) -> Settings {
    Settings {
        auto_lock_secs: s
            .auto_lock
            .map(|d| u16::try_from(d.as_secs()).unwrap_or(u16::MAX)),
        lockout_protection: s.lockout_protection,
        remote_unlock: s.remote_unlock,
        wifi_enabled: s.wifi,
        door_ajar_secs: s
            .door_ajar
            .map(|d| u16::try_from(d.as_secs()).unwrap_or(u16::MAX)),
        language,
        operating_mode: s.operating_mode(),
    }
}

/// The engine's status as the app's status report (B-9.1).
pub fn status_report(s: &Status) -> StatusReport {
    let lock = match s.lock {
        lock::LockState::Locked => LockState::Locked,
        lock::LockState::Unlocked => LockState::Unlocked,
        lock::LockState::Jammed => LockState::Jammed,
        lock::LockState::Moving | lock::LockState::Unknown => LockState::Unknown,
    };
    let bolt = match (s.lock, s.bolt) {
        (lock::LockState::Moving, _) => BoltState::Moving,
        (_, BoltPosition::Extended) => BoltState::Extended,
        (_, BoltPosition::Retracted) => BoltState::Retracted,
        (_, BoltPosition::Between) => BoltState::Unknown,
    };
    let door = match s.door {
        Some(DoorPosition::Open) => DoorState::Open,
        Some(DoorPosition::Closed) => DoorState::Closed,
        None => DoorState::Unknown,
    };
    let has = |k: event::AlarmKind| s.active_alarms.contains(&k);
    StatusReport {
        lock,
        door,
        bolt,
        battery_percent: s.battery_percent.unwrap_or(0).min(100),
        wifi: WifiStatus {
            enabled: s.wifi_enabled,
            connected: s.wifi_connected,
            rssi_dbm: s.wifi_rssi.and_then(|r| i8::try_from(r).ok()),
            weak: s.wifi_weak,
        },
        alarms: Alarms {
            tamper: has(event::AlarmKind::Tamper),
            lockout: s.lockout_active,
            duress: has(event::AlarmKind::Duress),
            low_battery: s.low_battery,
            jam: has(event::AlarmKind::Jam),
            door_ajar: has(event::AlarmKind::DoorAjar),
            door_forced_open: has(event::AlarmKind::DoorForcedOpen),
            module_swap: has(event::AlarmKind::ModuleSwap),
        },
        update: Some(update_summary(s)),
    }
}

/// The engine's side of [`UpdateSummary`]; the other slot comes from RAUC
/// (the link fills it in).
fn update_summary(s: &Status) -> UpdateSummary {
    use crate::core::update::Phase;
    UpdateSummary {
        installed: cut(&s.firmware, MAX_VERSION).into(),
        other_slot: None,
        in_progress: s.update.as_ref().map(|u| {
            let step = match u.phase {
                Phase::Inspecting => UpdateStep::Requested,
                Phase::WaitingToInstall => UpdateStep::Waiting,
                Phase::Installing => UpdateStep::Installing,
                Phase::WaitingToRestart => UpdateStep::Installed,
                Phase::Restarting => UpdateStep::Restarting,
            };
            (step, u.progress.min(100))
        }),
        last: s.last_update.as_ref().and_then(update_step),
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The app's step for an update event.
fn update_step(kind: &event::EventKind) -> Option<UpdateStep> {
    use event::EventKind as E;
    Some(match kind {
        E::UpdateRequested { .. } => UpdateStep::Requested,
        E::UpdateWaiting { .. } => UpdateStep::Waiting,
        E::UpdateInstalling { .. } => UpdateStep::Installing,
        E::UpdateInstalled { .. } => UpdateStep::Installed,
        E::UpdateRestarting { .. } => UpdateStep::Restarting,
        E::UpdateRefused { .. } => UpdateStep::Refused,
        E::UpdateFailed { .. } => UpdateStep::Failed,
        E::UpdateAbandoned { .. } => UpdateStep::Abandoned,
        E::UpdateMarkedGood { .. } => UpdateStep::MarkedGood,
        E::UpdateNotMarked { .. } => UpdateStep::NotMarked,
        _ => return None,
    })
}

/// How the app names an unlock method. A duress unlock looks like any
/// passcode unlock to whoever holds the phone (B-6.9: the alarm is silent).
pub fn unlock_method(m: Method) -> UnlockMethod {
    match m {
        Method::Face => UnlockMethod::Face,
        Method::Palm => UnlockMethod::Palm,
        Method::Fingerprint => UnlockMethod::Fingerprint,
        Method::Passcode | Method::DuressPasscode => UnlockMethod::Passcode,
        Method::TempPasscode => UnlockMethod::TemporaryPasscode,
        Method::MechanicalKey => UnlockMethod::MechanicalKey,
        Method::Ble => UnlockMethod::Ble,
        // A Matter controller is remote over Wi-Fi too; the app protocol
        // has no word of its own for it.
        Method::Remote | Method::Matter => UnlockMethod::Remote,
        Method::Inside => UnlockMethod::Inside,
    }
}

/// The app's alarm kind; `None` for a jam, which the wire has no event
/// for (reporting it as tamper would be wrong; the status report shows it).
pub fn alarm_kind(a: event::AlarmKind) -> AlarmKind {
    match a {
        event::AlarmKind::Tamper => AlarmKind::Tamper,
        event::AlarmKind::Lockout => AlarmKind::Lockout,
        event::AlarmKind::Duress => AlarmKind::Duress,
        event::AlarmKind::LowBattery => AlarmKind::LowBattery,
        event::AlarmKind::Jam => AlarmKind::Jam,
        event::AlarmKind::ModuleSwap => AlarmKind::ModuleSwap,
        event::AlarmKind::DoorAjar => AlarmKind::DoorAjar,
        event::AlarmKind::DoorForcedOpen => AlarmKind::DoorForcedOpen,
    }
}

/// The one classification of the engine's notices (issue 17 item 8):
/// what the owner's app is told of `notice`, if it is an owner notice —
/// duress (B-6.9), an unlock while away (B-3.6), a lockout level (issue 13),
/// the doorbell (B-3.5; its snapshot is stored under the event `cursor`),
/// the alarms (tamper, forced door, …) and a module fault. `cursor`: the
/// newest logged event when it was sent (0: none). The clock falling
/// behind and a weak Wi-Fi are the technician's, not notices.
///
/// The broker seals only those [`sealed_on_broker`] says (the others go to
/// its clear alert topic); BLE keeps every one for the owner's next
/// session (`Request::PendingNotices`).
pub fn notice_entry(notice: &Notice, cursor: u64, now: Option<WallTime>) -> Option<EventEntry> {
    let at = |kind, user| {
        Some(EventEntry {
            cursor,
            at: now,
            kind,
            user,
        })
    };
    match notice {
        Notice::Duress { user } => at(EventKind::Alarm(AlarmKind::Duress), Some(user.get())),
        Notice::AwayUnlock { event } => event_entry(cursor, event),
        Notice::Lockout { .. } => at(EventKind::Alarm(AlarmKind::Lockout), None),
        Notice::Doorbell => at(EventKind::Doorbell, None),
        // Duress and lockout raise an alarm too: their own notice (above,
        // with the user, or the level) is the one the owner gets.
        Notice::Alarm(event::AlarmKind::Duress | event::AlarmKind::Lockout) => None,
        Notice::Alarm(a) => at(EventKind::Alarm(alarm_kind(*a)), None),
        Notice::ModuleFault { .. } => at(EventKind::ModuleFault, None),
        Notice::ClockBehind | Notice::WifiWeak { .. } => None,
    }
}

/// The notices the broker seals to the owner keys (`Response::Notice` on
/// `notify`); it publishes the others in clear on its alert topic.
pub fn sealed_on_broker(notice: &Notice) -> bool {
    matches!(
        notice,
        Notice::Duress { .. } | Notice::AwayUnlock { .. } | Notice::Lockout { .. }
    )
}

/// A logged event (log id `cursor`) as the app sees it, if it is one the
/// app shows: prompts, menu steps and the like are not.
pub fn event_entry(cursor: u64, event: &Event) -> Option<EventEntry> {
    use event::EventKind as E;
    // Every kind is named (no `_` arm): a new kind must be decided here.
    let (kind, user) = match &event.kind {
        event::EventKind::Unlocked { method, user } => (
            EventKind::Unlocked(unlock_method(*method)),
            user.map(|u| u.get()),
        ),
        event::EventKind::Locked { .. } => (EventKind::Locked, None),
        event::EventKind::VerifyFailed { .. } | event::EventKind::AppRefused { .. } => {
            (EventKind::VerificationFailed, None)
        }
        // Answered like a wrong credential at the door; the owner sees whose.
        E::OutsideValidity { user, .. } => (EventKind::VerificationFailed, user.map(|u| u.get())),
        event::EventKind::AlarmRaised { alarm } => (EventKind::Alarm(alarm_kind(*alarm)), None),
        E::AlarmCleared { alarm } => (EventKind::AlarmCleared(alarm_kind(*alarm)), None),
        E::LockoutStarted => (EventKind::Lockout(LockoutChange::Started), None),
        E::LockoutEnded { early: false } => (EventKind::Lockout(LockoutChange::Ended), None),
        E::LockoutEnded { early: true } => (EventKind::Lockout(LockoutChange::EndedEarly), None),
        E::KeypadDisabled { .. } => (EventKind::Lockout(LockoutChange::KeypadDisabled), None),
        E::KeypadReleased { .. } => (EventKind::Lockout(LockoutChange::KeypadReleased), None),
        E::AwayMode { armed } => (EventKind::Away(*armed), None),
        E::DoorOpened => (EventKind::Door(true), None),
        E::DoorClosed => (EventKind::Door(false), None),
        E::Jammed => (EventKind::Jammed, None),
        E::ModuleFault { .. } => (EventKind::ModuleFault, None),
        E::ModuleRecovered { .. } => (EventKind::ModuleRecovered, None),
        E::FactoryReset => (EventKind::FactoryReset, None),
        E::HandingSet { .. } => (EventKind::HandingSet, None),
        E::ValidityChanged { user, .. } => (EventKind::ValidityChanged, Some(user.get())),
        E::TempPasscodeCreated { .. } => (EventKind::TempPasscode(true), None),
        E::TempPasscodeRevoked { .. } => (EventKind::TempPasscode(false), None),
        E::WifiWeak { .. } => (EventKind::WifiWeak(true), None),
        E::WifiRecovered { .. } => (EventKind::WifiWeak(false), None),
        event::EventKind::SettingChanged { .. } | event::EventKind::ClockSet { .. } => {
            (EventKind::SettingChanged, None)
        }
        event::EventKind::UserAdded { user }
        | event::EventKind::UserDeleted { user }
        | event::EventKind::CredentialAdded { user, .. }
        | event::EventKind::CredentialRemoved { user, .. } => {
            (EventKind::UserChanged, Some(user.get()))
        }
        event::EventKind::AppKeyAdded { .. }
        | event::EventKind::AppKeyRevoked { .. }
        | event::EventKind::GuestInviteCreated { .. } => (EventKind::UserChanged, None),
        event::EventKind::Doorbell => (EventKind::Doorbell, None),
        // The lock's own bookkeeping, not something that happened at the
        // door: shown to technicians (D-Bus, export), not in the app's list.
        E::Prompt { .. }
        | E::EventsSuppressed { .. }
        | E::PairingMode { .. }
        | E::MenuEntered { .. }
        | E::ClockSyncRefused { .. }
        | E::ClockBehind { .. }
        | E::LockoutLevel { .. }
        | E::LockoutOverridden { .. }
        | E::AutoFaceRefused { .. }
        | E::AutoFacePaused { .. }
        | E::OwnerKeysListed
        | E::ScheduleSet { .. }
        | E::SchedulesCleared { .. }
        | E::PairingCodeRotated { .. } => return None,
        // Software updates (issue 20): each step; the progress steps
        // (25/50/75 %) only on D-Bus and MQTT, where their number is.
        E::UpdateRequested { by, .. } => (EventKind::Update(UpdateStep::Requested), Some(by.get())),
        E::UpdateWaiting { .. }
        | E::UpdateInstalling { .. }
        | E::UpdateInstalled { .. }
        | E::UpdateRestarting { .. }
        | E::UpdateRefused { .. }
        | E::UpdateFailed { .. }
        | E::UpdateAbandoned { .. }
        | E::UpdateMarkedGood { .. }
        | E::UpdateNotMarked { .. } => (EventKind::Update(update_step(&event.kind)?), None),
        E::UpdateProgress { .. } => return None,
    };
    Some(EventEntry {
        cursor,
        at: event.at,
        kind,
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(u: u16) -> types::UserNumber {
        types::UserNumber::new(u).unwrap()
    }

    /// Issue 20: the owner's list shows each update step and who asked;
    /// progress steps stay on D-Bus and MQTT.
    #[test]
    fn update_steps_reach_the_owners_list() {
        use event::EventKind as E;
        let ev = |kind| Event {
            at: None,
            mono_ms: 0,
            kind,
        };
        let e = event_entry(
            3,
            &ev(E::UpdateRequested {
                by: n(1),
                via: crate::core::Channel::Ble,
                allow_older: false,
            }),
        )
        .unwrap();
        assert_eq!(
            (e.kind, e.user),
            (EventKind::Update(UpdateStep::Requested), Some(1))
        );
        let e = event_entry(
            4,
            &ev(E::UpdateNotMarked {
                reason: "motor".into(),
            }),
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::Update(UpdateStep::NotMarked));
        assert!(event_entry(5, &ev(E::UpdateProgress { percent: 50 })).is_none());
    }

    /// Issue 17 item 7: what happened at the door reaches the owner's
    /// list (it dropped jam, lockout end, away, door, module faults,
    /// factory reset, handing, validity edits and visitor codes).
    #[test]
    fn the_owners_list_shows_what_happened_at_the_door() {
        use event::EventKind as E;
        let always = Validity::ALWAYS;
        let cases = [
            (E::Jammed, EventKind::Jammed, None),
            (
                E::LockoutEnded { early: false },
                EventKind::Lockout(LockoutChange::Ended),
                None,
            ),
            (
                E::LockoutEnded { early: true },
                EventKind::Lockout(LockoutChange::EndedEarly),
                None,
            ),
            (E::AwayMode { armed: true }, EventKind::Away(true), None),
            (E::DoorOpened, EventKind::Door(true), None),
            (E::DoorClosed, EventKind::Door(false), None),
            (
                E::ModuleFault {
                    detail: "fingerprint: timeout".into(),
                },
                EventKind::ModuleFault,
                None,
            ),
            (
                E::ModuleRecovered {
                    detail: "Fingerprint".into(),
                },
                EventKind::ModuleRecovered,
                None,
            ),
            (E::FactoryReset, EventKind::FactoryReset, None),
            (
                E::HandingSet {
                    handing: types::Handing::LeftHand,
                },
                EventKind::HandingSet,
                None,
            ),
            (
                E::ValidityChanged {
                    user: n(4),
                    validity: always,
                },
                EventKind::ValidityChanged,
                Some(4),
            ),
            (
                E::TempPasscodeCreated {
                    id: 2,
                    validity: always,
                    one_time: true,
                },
                EventKind::TempPasscode(true),
                None,
            ),
            (
                E::TempPasscodeRevoked { id: 2 },
                EventKind::TempPasscode(false),
                None,
            ),
            (E::WifiWeak { rssi: -80 }, EventKind::WifiWeak(true), None),
            (
                E::WifiRecovered { rssi: -60 },
                EventKind::WifiWeak(false),
                None,
            ),
            (
                E::AlarmCleared {
                    alarm: event::AlarmKind::Jam,
                },
                EventKind::AlarmCleared(AlarmKind::Jam),
                None,
            ),
        ];
        for (kind, want, user) in cases {
            let e = event_entry(
                1,
                &Event {
                    at: None,
                    mono_ms: 0,
                    kind: kind.clone(),
                },
            )
            .unwrap_or_else(|| panic!("{kind:?} is not in the owner's list"));
            assert_eq!((e.kind, e.user), (want, user), "{kind:?}");
        }
    }

    #[test]
    fn prompts_are_not_app_events_but_unlocks_are() {
        let ev = |kind| Event {
            at: Some(WallTime(5)),
            mono_ms: 0,
            kind,
        };
        assert!(event_entry(
            9,
            &ev(event::EventKind::Prompt {
                prompt: "locked".into()
            })
        )
        .is_none());
        let e = event_entry(
            9,
            &ev(event::EventKind::Unlocked {
                method: Method::DuressPasscode,
                user: Some(n(2)),
            }),
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::Unlocked(UnlockMethod::Passcode));
        assert_eq!((e.cursor, e.user), (9, Some(2)));
    }
}
