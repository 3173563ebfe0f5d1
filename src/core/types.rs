//! The lock's domain values: users, credentials, settings and the records
//! the store keeps. Types carry meaning and an invalid value cannot be
//! built (a `UserNumber` is 1..=999, a `PasscodeMac` is a MAC, never digits).
use core::fmt;
use core::time::Duration;
use serde::{Deserialize, Serialize};

use super::time::{Validity, WallTime};

/// A user's number, shown as three digits (B-1.4: "001").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct UserNumber(u16);

impl UserNumber {
    pub const MIN: u16 = 1;
    pub const MAX: u16 = 999;

    pub fn new(n: u16) -> Option<Self> {
        (Self::MIN..=Self::MAX)
            .contains(&n)
            .then_some(UserNumber(n))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// The three digits lit one after another on the keypad (B-1.4).
    pub fn digits(self) -> [u8; 3] {
        [
            (self.0 / 100) as u8,
            (self.0 / 10 % 10) as u8,
            (self.0 % 10) as u8,
        ]
    }
}

impl TryFrom<u16> for UserNumber {
    type Error = String;
    fn try_from(n: u16) -> Result<Self, String> {
        UserNumber::new(n).ok_or_else(|| format!("user number {n} is outside 001..=999"))
    }
}

impl From<UserNumber> for u16 {
    fn from(u: UserNumber) -> u16 {
        u.0
    }
}

impl fmt::Display for UserNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.0)
    }
}

/// B-4.3: administrator = unlock + menu; user = unlock only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    User,
}

/// B-2.1: which way the door opens, which decides the motor direction
/// that retracts the bolt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handing {
    /// Keypad "1".
    RightHand,
    /// Keypad "2".
    LeftHand,
}

/// Motor shaft direction as the board wires it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MotorDirection {
    Clockwise,
    CounterClockwise,
}

/// A front-panel key (B-3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Key {
    Digit(u8),
    /// "↩": back / cancel / exit ("⏏" in the first-admin step).
    Back,
    /// "✓": confirm.
    Confirm,
    Away,
    Doorbell,
}

impl Key {
    /// Every key of the front panel, in display order.
    pub const ALL: [Key; 14] = [
        Key::Digit(1),
        Key::Digit(2),
        Key::Digit(3),
        Key::Digit(4),
        Key::Digit(5),
        Key::Digit(6),
        Key::Digit(7),
        Key::Digit(8),
        Key::Digit(9),
        Key::Digit(0),
        Key::Back,
        Key::Confirm,
        Key::Away,
        Key::Doorbell,
    ];
}

/// The biometric kinds a module or the camera recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    Face,
    Palm,
    Fingerprint,
}

/// How a door was opened or a verification attempted (B-6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Face,
    Palm,
    Fingerprint,
    Passcode,
    DuressPasscode,
    TempPasscode,
    MechanicalKey,
    Ble,
    Remote,
    /// The inside handle / lock button side (an inside unlock).
    Inside,
    /// A Matter controller (the user is the PIN's holder when a PIN was given).
    Matter,
}

impl Method {
    /// The method as the event log records it. B-6.9 and issue 14 item 5:
    /// a duress passcode is logged as a passcode, so the log — read by
    /// technicians, the app and whoever holds the phone — cannot tell a
    /// duress unlock from an ordinary one; only the owner's sealed notice
    /// ([`Notice::Duress`](super::action::Notice::Duress)) says it.
    pub fn as_logged(self) -> Method {
        match self {
            Method::DuressPasscode => Method::Passcode,
            other => other,
        }
    }
}

impl From<Modality> for Method {
    fn from(m: Modality) -> Method {
        match m {
            Modality::Face => Method::Face,
            Modality::Palm => Method::Palm,
            Modality::Fingerprint => Method::Fingerprint,
        }
    }
}

/// The kinds of credential a user can hold (B-1.2, B-4.4, B-6.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Face,
    Palm,
    Fingerprint,
    Passcode,
    DuressPasscode,
}

impl From<Modality> for CredentialKind {
    fn from(m: Modality) -> CredentialKind {
        match m {
            Modality::Face => CredentialKind::Face,
            Modality::Palm => CredentialKind::Palm,
            Modality::Fingerprint => CredentialKind::Fingerprint,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CredentialId(pub u32);

/// A keyed MAC (HMAC-SHA256 under the device key) of a passcode's digits.
/// The digits themselves are never stored (B-11.2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PasscodeMac(pub [u8; 32]);

impl fmt::Debug for PasscodeMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasscodeMac(..)")
    }
}

/// What proves a credential. Module-held biometrics are a slot number in
/// the module; face templates come from the face pipeline and are sealed
/// by the store before they touch disk.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialSecret {
    /// Fingerprint or palm template living in the module's slot.
    ModuleSlot(u16),
    /// Face template bytes (an embedding, not an image: B-11.1).
    FaceTemplate {
        slot: u16,
        template: Vec<u8>,
    },
    Passcode(PasscodeMac),
}

impl fmt::Debug for CredentialSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSecret::ModuleSlot(s) => write!(f, "ModuleSlot({s})"),
            CredentialSecret::FaceTemplate { slot, template } => {
                write!(
                    f,
                    "FaceTemplate {{ slot: {slot}, {} bytes }}",
                    template.len()
                )
            }
            CredentialSecret::Passcode(_) => f.write_str("Passcode(..)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub id: CredentialId,
    pub user: UserNumber,
    pub kind: CredentialKind,
    pub secret: CredentialSecret,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub number: UserNumber,
    pub role: Role,
    /// B-9.4: outside this window the user cannot unlock.
    pub validity: Validity,
}

/// App-adjustable settings (B-9.7). Defaults are what a lock sold to homes
/// should ship with: protection on, remote unlock off until the owner
/// turns it on, auto-lock off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// B-8.3: `None` = countdown lock disabled.
    pub auto_lock: Option<Duration>,
    /// B-7.3.
    pub lockout_protection: bool,
    /// B-6.7.
    pub remote_unlock: bool,
    /// B-9.7 / B-10.7: off saves battery; BLE still works.
    pub wifi: bool,
    /// Matter's `RequirePINforRemoteOperation`: an unlock over Matter must
    /// carry a user's PIN. Off by default (remote unlock itself is off).
    #[serde(default)]
    pub require_pin_remote: bool,
    /// Issue 17 item 3: a door open this long raises the door-ajar alarm
    /// (prompt + owner notice). `None` = off. Settings stored before this
    /// field read as the default, 60 s.
    #[serde(default = "Settings::default_door_ajar")]
    pub door_ajar: Option<Duration>,
    /// Issue 17 item 4: the prompt language an administrator (menu "6")
    /// or the owner's app chose. `None`: the config's `[prompts]
    /// language`, which is also where a factory reset returns. Settings
    /// stored before this field read as `None`. Decision: a tag this
    /// build does not know (stored by a newer version, then rolled back
    /// to this one) reads as `None` too — the lock speaks its configured
    /// language rather than refuse to load its settings and not start.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lang::known_or_none"
    )]
    pub language: Option<super::lang::Language>,
    /// Issue 18 item 2: the door's operating mode ([`DoorMode`]). Settings
    /// stored before this field read as Normal (no migration: serde's
    /// default). Remote unlock stays `remote_unlock` alone; the five
    /// Matter modes are the pair, [`Settings::operating_mode`]. Decision:
    /// a mode this build does not know (stored by a newer version, then
    /// rolled back) reads as Vacation — the settings load and the lock
    /// starts, administrators still open, and nothing fails open.
    #[serde(default, deserialize_with = "DoorMode::known_or_vacation")]
    pub mode: DoorMode,
}

impl Settings {
    /// The door-ajar alarm's default delay.
    pub const DEFAULT_DOOR_AJAR: Duration = Duration::from_secs(60);
    /// Longest door-ajar delay an app may set (one hour).
    pub const MAX_DOOR_AJAR: Duration = Duration::from_secs(3600);

    fn default_door_ajar() -> Option<Duration> {
        Some(Self::DEFAULT_DOOR_AJAR)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            auto_lock: None,
            lockout_protection: true,
            remote_unlock: false,
            wifi: true,
            require_pin_remote: false,
            door_ajar: Some(Settings::DEFAULT_DOOR_AJAR),
            language: None,
            mode: DoorMode::Normal,
        }
    }
}

/// Issue 18 item 2: the rules the door follows besides remote unlock. The
/// rules themselves live where they act (`core::modes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoorMode {
    #[default]
    Normal,
    /// Only administrators' credentials open from outside.
    Vacation,
    /// Nothing opens from outside; only someone inside ends it.
    Privacy,
    /// The bolt stays retracted after an unlock (no auto-lock).
    Passage,
}

impl DoorMode {
    fn known_or_vacation<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DoorMode, D::Error> {
        Ok(match String::deserialize(d)?.as_str() {
            "normal" => DoorMode::Normal,
            "vacation" => DoorMode::Vacation,
            "privacy" => DoorMode::Privacy,
            "passage" => DoorMode::Passage,
            _ => DoorMode::Vacation,
        })
    }
}

/// The operating mode as Matter's `OperatingModeEnum` and the app see it:
/// one value for the pair (`mode`, `remote_unlock`). Decision: remote
/// unlock keeps its one source of truth, `Settings::remote_unlock` (B-6.7):
/// `NoRemoteLockUnlock` *is* Normal with remote unlock off, and `Normal`
/// is Normal with it on (what Matter's Normal, "all interfaces enabled",
/// says). Vacation, Privacy and Passage leave remote unlock as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatingMode {
    Normal,
    Vacation,
    Privacy,
    Passage,
    NoRemoteLockUnlock,
}

impl OperatingMode {
    pub const ALL: [OperatingMode; 5] = [
        OperatingMode::Normal,
        OperatingMode::Vacation,
        OperatingMode::Privacy,
        OperatingMode::NoRemoteLockUnlock,
        OperatingMode::Passage,
    ];

    /// Its byte on the app's wire: Matter's `OperatingModeEnum` value.
    pub fn code(self) -> u8 {
        match self {
            OperatingMode::Normal => 0,
            OperatingMode::Vacation => 1,
            OperatingMode::Privacy => 2,
            OperatingMode::NoRemoteLockUnlock => 3,
            OperatingMode::Passage => 4,
        }
    }

    pub fn from_code(b: u8) -> Option<OperatingMode> {
        OperatingMode::ALL.into_iter().find(|m| m.code() == b)
    }

    /// Its name for `latchctl`: normal, vacation, privacy, no-remote, passage.
    pub fn tag(self) -> &'static str {
        match self {
            OperatingMode::Normal => "normal",
            OperatingMode::Vacation => "vacation",
            OperatingMode::Privacy => "privacy",
            OperatingMode::NoRemoteLockUnlock => "no-remote",
            OperatingMode::Passage => "passage",
        }
    }
}

impl core::str::FromStr for OperatingMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OperatingMode::ALL
            .into_iter()
            .find(|m| m.tag().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown mode `{s}`: normal, vacation, privacy, no-remote or passage")
            })
    }
}

impl Settings {
    /// The pair (`mode`, `remote_unlock`) as one operating mode.
    pub fn operating_mode(&self) -> OperatingMode {
        match self.mode {
            DoorMode::Normal if self.remote_unlock => OperatingMode::Normal,
            DoorMode::Normal => OperatingMode::NoRemoteLockUnlock,
            DoorMode::Vacation => OperatingMode::Vacation,
            DoorMode::Privacy => OperatingMode::Privacy,
            DoorMode::Passage => OperatingMode::Passage,
        }
    }

    /// `self` with the operating mode `m` (see [`OperatingMode`]).
    pub fn with_operating_mode(mut self, m: OperatingMode) -> Settings {
        match m {
            OperatingMode::Normal => {
                self.mode = DoorMode::Normal;
                self.remote_unlock = true;
            }
            OperatingMode::NoRemoteLockUnlock => {
                self.mode = DoorMode::Normal;
                self.remote_unlock = false;
            }
            OperatingMode::Vacation => self.mode = DoorMode::Vacation,
            OperatingMode::Privacy => self.mode = DoorMode::Privacy,
            OperatingMode::Passage => self.mode = DoorMode::Passage,
        }
        self
    }
}

/// One setting change, as the app sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingChange {
    AutoLock(Option<Duration>),
    LockoutProtection(bool),
    RemoteUnlock(bool),
    Wifi(bool),
    RequirePinRemote(bool),
    /// Issue 17 item 3: the door-ajar delay; `None` = off.
    DoorAjar(Option<Duration>),
    /// Issue 17 item 4: the prompt language.
    Language(super::lang::Language),
    /// Issue 18 item 2: the operating mode (`core::modes`).
    OperatingMode(OperatingMode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TempPasscodeId(pub u32);

/// B-6.10: a visitor passcode made in the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TempPasscode {
    pub id: TempPasscodeId,
    pub mac: PasscodeMac,
    pub validity: Validity,
    /// Consumed by its first successful use.
    pub one_time: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AppKeyId(pub u32);

/// Who an app key speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKeyRole {
    /// Paired in pairing mode and bound to an administrator (B-5.1).
    Owner { admin: UserNumber },
    /// A visitor's BLE key (B-6.6): unlock/lock inside its window only.
    Guest,
}

/// An app's long-term public key, registered through pairing (owner) or
/// through a guest pairing code (guest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppKey {
    pub id: AppKeyId,
    pub role: AppKeyRole,
    pub public_key: [u8; 32],
    pub validity: Validity,
    pub label: String,
}

/// Bytes of a guest invite's secret (the rest of the 15-byte guest
/// pairing code is its public 2-byte id).
pub const GUEST_INVITE_SECRET: usize = 13;

/// An owner's invitation for a guest BLE key (B-6.6), waiting to be
/// redeemed once by the guest's app with its one-time pairing code. It
/// holds the key's slot from creation, so the owner revokes an invite and
/// the key it becomes by the same number. The secret is made by the
/// channel (the engine has no randomness) and sealed by the store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestInvite {
    /// The slot: the id the guest key gets when the invite is redeemed.
    pub slot: AppKeyId,
    /// Public id, the first two bytes of the pairing code.
    pub code_id: u16,
    /// The secret part of the pairing code.
    pub secret: [u8; GUEST_INVITE_SECRET],
    /// The guest key's validity window (both ends set).
    pub validity: Validity,
    /// The code cannot be redeemed at or after this time.
    pub code_expires_at: WallTime,
    /// Redemption attempts started; the code is burned at
    /// [`limits::GUEST_CODE_ATTEMPTS`].
    pub attempts: u8,
}

impl std::fmt::Debug for GuestInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestInvite")
            .field("slot", &self.slot)
            .field("code_id", &self.code_id)
            .field("validity", &self.validity)
            .field("code_expires_at", &self.code_expires_at)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// The lockout bookkeeping as it is persisted (B-7, see
/// [`super::policy`]). Times are stored as *remaining* durations:
/// monotonic time restarts with the daemon, and time spent powered off
/// must never shorten a lockout.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LockoutRecord {
    /// Records written before failures had weights: for each failure still
    /// inside the 5-minute window, how long until it leaves it. Read only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures_expire_in: Vec<Duration>,
    /// Failures a success may still forgive.
    #[serde(default)]
    pub recent: Vec<RecentFailure>,
    /// Remaining time of an active lockout.
    pub locked_for: Option<Duration>,
    /// Guesses counted against the budget since the last release.
    #[serde(default)]
    pub strikes: u32,
    /// Time until the next strike leaks away.
    #[serde(default)]
    pub leak_in: Option<Duration>,
    /// The keypad refuses passcodes until the owner releases it.
    #[serde(default)]
    pub keypad_disabled: bool,
}

/// One failed attempt still inside the forgiveness window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentFailure {
    pub expires_in: Duration,
    /// Strikes it cost (the 6-digit windows of a keypad input).
    pub weight: u32,
    pub method: Option<Method>,
}

/// Everything the engine needs from the store at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Persisted {
    /// `None` until the first start asked for it (B-2.1).
    pub handing: Option<Handing>,
    pub users: Vec<User>,
    pub credentials: Vec<Credential>,
    pub settings: Settings,
    pub lockout: LockoutRecord,
    pub temp_passcodes: Vec<TempPasscode>,
    pub app_keys: Vec<AppKey>,
    pub guest_invites: Vec<GuestInvite>,
    /// The high-water mark of trusted wall time (see `core::clock`):
    /// the lock has known for sure that it was at least this late.
    #[serde(default)]
    pub time_floor: Option<WallTime>,
    /// Owner pairings made so far: the verification code of generation
    /// 0 is the label's; each owner pairing moves to the next (issue 13).
    #[serde(default)]
    pub pairing_generation: u32,
    /// An update waiting for a safe moment (issue 20), taken up again at
    /// the next start.
    #[serde(default)]
    pub pending_update: Option<super::update::PendingUpdate>,
    /// Week-day, year-day and holiday schedules (issue 17 item 2).
    #[serde(default)]
    pub schedules: Vec<super::schedule::Schedule>,
}

/// One change to persistent state. An [`super::Action::Persist`] carries
/// a list of these that the runtime commits in one SQLite transaction
/// before it performs any action that follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    SetHanding(Handing),
    /// Insert or replace a user.
    PutUser(User),
    /// Delete a user and every credential and app key bound to it.
    DeleteUser(UserNumber),
    PutCredential(Credential),
    DeleteCredential(CredentialId),
    PutSettings(Settings),
    PutLockout(LockoutRecord),
    /// The lockout record as it stands if the attempt being verified
    /// fails, committed before the attempt's result shows (the attempt is
    /// counted even if the power goes before the answer). Stored like
    /// [`Change::PutLockout`]; a runtime that cannot commit it keeps it
    /// in memory rather than forget the attempt.
    PutAttempt(LockoutRecord),
    /// The high-water mark of trusted wall time rose to this.
    PutTimeFloor(WallTime),
    /// An owner pairing used the code of the current generation; the next
    /// pairing needs the code of this one (spoken by system information).
    SetPairingGeneration(u32),
    PutTempPasscode(TempPasscode),
    DeleteTempPasscode(TempPasscodeId),
    PutAppKey(AppKey),
    DeleteAppKey(AppKeyId),
    /// Insert or replace a guest invite (created, or an attempt counted).
    PutGuestInvite(GuestInvite),
    /// Remove a guest invite (redeemed, revoked or burned).
    DeleteGuestInvite(AppKeyId),
    /// An update began (`Some`) or stopped (`None`) waiting for a safe
    /// moment (see `core::update::PendingUpdate`).
    PutPendingUpdate(Option<super::update::PendingUpdate>),
    /// Insert or replace a schedule (issue 17 item 2).
    PutSchedule(super::schedule::Schedule),
    /// Remove a schedule. A holder's schedules also go with the holder
    /// (`DeleteUser`, `DeleteTempPasscode`, `DeleteAppKey`) and all of them
    /// with a `FactoryReset`.
    DeleteSchedule(super::schedule::ScheduleKey),
    /// B-10.6 / B-1.5: erase users, credentials, temp passcodes, app keys,
    /// settings, lockout and the door handing. The event log is kept.
    FactoryReset,
}

impl Change {
    /// A change that counts an attempt, holds a lockout or the time floor,
    /// or takes access away (a spent one-time code, a revoked key, a deleted
    /// user or credential, a reset). The store keeps room on a full
    /// partition for these only (`store::reserve`): a full disk must never
    /// stop the lock from counting a guess, opening for its family, or
    /// losing a stolen phone's key.
    pub fn is_protective(&self) -> bool {
        match self {
            Change::PutAttempt(_)
            | Change::PutLockout(_)
            | Change::PutTimeFloor(_)
            | Change::SetPairingGeneration(_)
            | Change::DeleteUser(_)
            | Change::DeleteCredential(_)
            | Change::DeleteTempPasscode(_)
            | Change::DeleteAppKey(_)
            | Change::PutGuestInvite(_)
            | Change::DeleteGuestInvite(_)
            | Change::FactoryReset => true,
            Change::SetHanding(_)
            | Change::PutUser(_)
            | Change::PutCredential(_)
            | Change::PutSettings(_)
            | Change::PutTempPasscode(_)
            | Change::PutAppKey(_)
            // A schedule can narrow access or widen it (a second window,
            // one removed): it waits for room like any other edit.
            | Change::PutSchedule(_)
            | Change::DeleteSchedule(_)
            // Bookkeeping of a waiting update: on a full partition it waits
            // for room like an addition (the engine puts it last in a batch).
            | Change::PutPendingUpdate(_) => false,
        }
    }
}

/// Capacity limits (B-1.1, B-1.2).
pub mod limits {
    pub const FACES: usize = 50;
    pub const PALMS: usize = 50;
    pub const FINGERPRINTS: usize = 50;
    pub const PASSCODES: usize = 50;
    pub const FACES_PER_USER: usize = 3;
    pub const PALMS_PER_USER: usize = 2;
    pub const FINGERPRINTS_PER_USER: usize = 5;
    pub const PASSCODES_PER_USER: usize = 1;
    pub const DURESS_PER_USER: usize = 1;
    /// Longest keypad input accepted before "input too long" (B-6.4's
    /// anti-peep padding included). Issue 13: 16, not 32 — a code of up to
    /// 10 digits with 6 or more of padding still hides it from a peeper,
    /// and since a failed input pays one strike per 6-digit window
    /// (`core::policy`), one mistyped padded entry costs at most 11.
    pub const MAX_INPUT_DIGITS: usize = 16;
    pub const PASSCODE_MIN: usize = 6;
    pub const PASSCODE_MAX: usize = 10;
    /// Registered app keys and outstanding guest invites together.
    pub const APP_KEYS: usize = 64;
    /// Outstanding guest invites.
    pub const GUEST_INVITES: usize = 16;
    /// Redemption attempts a guest pairing code survives.
    pub const GUEST_CODE_ATTEMPTS: u8 = 5;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18 item 2: the mode is a field with a default (no migration);
    /// a mode this build does not know loads as Vacation, not Normal.
    #[test]
    fn stored_settings_read_their_mode_and_an_unknown_one_fails_closed() {
        let read = |v: serde_json::Value| serde_json::from_value::<Settings>(v).unwrap();
        let mut row = serde_json::json!({
            "auto_lock": null,
            "lockout_protection": true,
            "remote_unlock": true,
            "wifi": true,
        });
        // Stored before there were modes.
        assert_eq!(read(row.clone()).mode, DoorMode::Normal);
        assert_eq!(read(row.clone()).operating_mode(), OperatingMode::Normal);
        for m in [DoorMode::Privacy, DoorMode::Passage, DoorMode::Normal] {
            let s = Settings {
                mode: m,
                ..Settings::default()
            };
            assert_eq!(read(serde_json::to_value(&s).unwrap()).mode, m);
        }
        row["mode"] = "curfew".into();
        assert_eq!(read(row).mode, DoorMode::Vacation);
    }

    #[test]
    fn user_numbers_are_three_digits() {
        let u = UserNumber::new(1).unwrap();
        assert_eq!(u.to_string(), "001");
        assert_eq!(u.digits(), [0, 0, 1]);
        assert_eq!(UserNumber::new(123).unwrap().digits(), [1, 2, 3]);
        assert!(UserNumber::new(0).is_none());
        assert!(UserNumber::new(1000).is_none());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = CredentialSecret::Passcode(PasscodeMac([7; 32]));
        assert!(!format!("{s:?}").contains('7'));
    }
}
