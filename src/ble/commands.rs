//! App commands carried inside sealed frames (B-6.6, B-9): typed request and
//! response enums, their compact versioned binary encoding, and the role
//! check.
//!
//! ```text
//!  sealed Data frame ─► SecureSession::open ─► Request::decode ─► authorize(principal, now)
//!                                                                     │ Ok
//!                                                                     ▼
//!                              engine (src/core) gets (Principal, Request) as an
//!                              already-authenticated, already-authorised input
//! ```
//!
//! ## Encoding
//!
//! `version (1) ‖ opcode (1) ‖ fields…`, big-endian integers, `bool` as
//! 0/1, `Option<T>` as a 0/1 tag then `T`, lists as a `u8` count then the
//! items, strings as a `u8` length then UTF-8. A decoder refuses unknown
//! versions, unknown opcodes, out-of-range values, truncation and trailing
//! bytes — every refusal is a [`CommandError`].
//!
//! Why not JSON inside the AEAD: an `Unlock` is 2 bytes here against ~18
//! as JSON (`{"cmd":"unlock"}`), a status report 17 bytes against ~180. On
//! an LE link with the default 23-byte MTU every 20 bytes is another radio
//! packet (and battery), so the whole sealed unlock (12 header + 2 + 16
//! tag = 30 bytes) fits in two writes; the JSON one would take three. A
//! hand-written codec is also the smaller fuzzing surface.
//!
//! ## Roles
//!
//! [`authorize`] is a pure function: an owner key may do everything; a
//! guest key may only unlock and lock, and only inside its window
//! `valid_from ≤ now < valid_until`; with the wall clock unknown a guest is
//! refused (ARCHITECTURE.md: never guess time for a time-windowed key).

use crate::core::time::Instant;

use thiserror::Error;

use super::crypto::KeyId;
use super::pairing::{GuestPairingCode, CODE_BYTES};
use super::protocol::{ChannelError, ErrorCode, SecureSession, MAX_PLAINTEXT};
use crate::core::input::{AppCommand, Principal as CorePrincipal};
use crate::core::time::{Validity, WallTime};
use crate::core::types::{self as core_types, AppKeyId};

/// Version byte at the start of every command and response.
pub const COMMAND_VERSION: u8 = 1;
/// Most events one page may return.
pub const MAX_EVENTS_PER_PAGE: u8 = 32;
/// Longest list in any response (B-1.1: 50 users / passcodes).
pub const MAX_LIST: usize = 64;
/// Longest detail string in an error response.
pub const MAX_DETAIL: usize = 120;
/// Longest key label in a listing (longer ones are cut).
pub const MAX_LABEL: usize = 64;

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

/// The role check refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthzError {
    #[error("a guest key may only unlock and lock; `{0}` needs the owner's app")]
    Forbidden(&'static str),
    #[error("this guest key is not valid yet (from {} s, now {} s since the epoch)", valid_from.0, now.0)]
    NotYetValid { valid_from: WallTime, now: WallTime },
    #[error("this guest key expired at {} s (now {} s since the epoch); ask the owner for a new one", valid_until.0, now.0)]
    Expired {
        valid_until: WallTime,
        now: WallTime,
    },
    #[error("the lock's clock is not set, so time-limited keys are refused; the owner must sync the time")]
    ClockUnknown,
}

impl AuthzError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthzError::Forbidden(_) => ErrorCode::Forbidden,
            AuthzError::NotYetValid { .. } | AuthzError::Expired { .. } => {
                ErrorCode::OutsideValidity
            }
            AuthzError::ClockUnknown => ErrorCode::ClockUnknown,
        }
    }
}

/// Is `principal` allowed to run `request` at wall-clock `now`?
pub fn authorize(
    principal: &Principal,
    request: &Request,
    now: Option<WallTime>,
) -> Result<(), AuthzError> {
    match principal {
        Principal::Owner { .. } => Ok(()),
        Principal::Guest {
            valid_from,
            valid_until,
            ..
        } => {
            if !matches!(request, Request::Unlock | Request::Lock) {
                return Err(AuthzError::Forbidden(request.name()));
            }
            let now = now.ok_or(AuthzError::ClockUnknown)?;
            if now < *valid_from {
                return Err(AuthzError::NotYetValid {
                    valid_from: *valid_from,
                    now,
                });
            }
            if now >= *valid_until {
                return Err(AuthzError::Expired {
                    valid_until: *valid_until,
                    now,
                });
            }
            Ok(())
        }
    }
}

/// A command could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("command is truncated: needed {needed} more bytes for {field}")]
    Truncated { field: &'static str, needed: usize },
    #[error("command has {0} unexpected trailing bytes")]
    Trailing(usize),
    #[error("command encoding version {0} is not supported (this lock speaks {COMMAND_VERSION}); update the app")]
    UnsupportedVersion(u8),
    #[error("opcode {0:#04x} is not a known command")]
    UnknownOpcode(u8),
    #[error("field `{field}` is invalid: {why}")]
    BadValue {
        field: &'static str,
        why: &'static str,
    },
    #[error("encoded message of {0} bytes exceeds the {MAX_PLAINTEXT}-byte maximum")]
    TooLarge(usize),
}

impl CommandError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            CommandError::UnsupportedVersion(_) => ErrorCode::UnsupportedCommandVersion,
            CommandError::UnknownOpcode(_) => ErrorCode::UnknownCommand,
            CommandError::TooLarge(_) => ErrorCode::TooLarge,
            _ => ErrorCode::MalformedCommand,
        }
    }
}

// ────────────────────────────── value types ──────────────────────────────

/// A user's role (B-4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Unlock + menu.
    Administrator,
    /// Unlock only.
    User,
}

/// How long a temporary passcode works (B-6.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempPasscodeKind {
    /// Works once, then is spent.
    OneTime,
    /// Works any number of times in `[from, until)`.
    Window {
        /// Inclusive start.
        from: WallTime,
        /// Exclusive end.
        until: WallTime,
    },
}

/// 6–10 ASCII digits. The engine applies the full passcode rules (B-2.3).
#[derive(Clone, PartialEq, Eq)]
pub struct PasscodeDigits(String);

impl PasscodeDigits {
    /// Validate 6–10 ASCII digits.
    pub fn new(s: &str) -> Result<Self, CommandError> {
        if !(6..=10).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CommandError::BadValue {
                field: "passcode",
                why: "must be 6 to 10 digits",
            });
        }
        Ok(PasscodeDigits(s.to_owned()))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PasscodeDigits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasscodeDigits({} digits)", self.0.len())
    }
}

impl Drop for PasscodeDigits {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// One setting change (B-9.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Auto-lock countdown in seconds; `None` = off (B-8.3).
    AutoLock(Option<u16>),
    /// Lockout protection on/off (B-7.3).
    LockoutProtection(bool),
    /// Remote unlock on/off (B-6.7).
    RemoteUnlock(bool),
    /// Wi-Fi on/off (B-10.7).
    WifiEnabled(bool),
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
}

/// A request from the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Lock/door/bolt state, battery, Wi-Fi, alarms (B-9.1).
    Status,
    /// Unlock (B-6.6).
    Unlock,
    /// Lock.
    Lock,
    /// List users (B-9.3).
    ListUsers,
    /// Add a user; the lock allocates the number (B-4.4).
    AddUser {
        /// Role.
        role: Role,
        /// Validity period.
        validity: Validity,
    },
    /// Delete a user (B-4.9).
    DeleteUser {
        /// User number.
        user: u16,
    },
    /// Change a user's validity period (B-9.4).
    SetUserValidity {
        /// User number.
        user: u16,
        /// New validity.
        validity: Validity,
    },
    /// Create a temporary passcode (B-6.10).
    CreatePasscode {
        /// The digits.
        digits: PasscodeDigits,
        /// One-time or windowed.
        kind: TempPasscodeKind,
    },
    /// Set a user's duress passcode (B-6.9).
    SetDuressPasscode {
        /// User number.
        user: u16,
        /// The digits.
        digits: PasscodeDigits,
    },
    /// List temporary passcodes.
    ListPasscodes,
    /// Revoke a temporary passcode.
    RevokePasscode {
        /// Its id.
        id: u16,
    },
    /// Create a guest BLE key: returns a one-time guest pairing code.
    CreateGuestKey {
        /// Inclusive start.
        valid_from: WallTime,
        /// Exclusive end.
        valid_until: WallTime,
    },
    /// List guest keys and outstanding invites.
    ListGuestKeys,
    /// List the owner keys (issue 13 item 6).
    ListOwnerKeys,
    /// Revoke one owner key (issue 13 item 6).
    RevokeOwnerKey {
        /// Its slot.
        slot: u16,
    },
    /// Revoke a guest key or invite.
    RevokeGuestKey {
        /// Its slot.
        slot: u16,
    },
    /// Events, newest first, strictly older than `before` (a cursor from a
    /// previous page; `None` = from the newest).
    Events {
        /// Cursor.
        before: Option<u64>,
        /// Page size, 1..=[`MAX_EVENTS_PER_PAGE`].
        limit: u8,
    },
    /// Read settings.
    GetSettings,
    /// Change one setting.
    SetSetting(Setting),
    /// End an active lockout early (B-7.2).
    ReleaseLockout,
    /// Arm or disarm away mode (B-3.6).
    SetAway(bool),
    /// Set the lock's wall clock (owner only).
    TimeSync {
        /// Current UTC time.
        now: WallTime,
    },
}

impl Request {
    /// Short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Unlock => "unlock",
            Request::Lock => "lock",
            Request::ListUsers => "list users",
            Request::AddUser { .. } => "add user",
            Request::DeleteUser { .. } => "delete user",
            Request::SetUserValidity { .. } => "set user validity",
            Request::CreatePasscode { .. } => "create passcode",
            Request::SetDuressPasscode { .. } => "set duress passcode",
            Request::ListPasscodes => "list passcodes",
            Request::RevokePasscode { .. } => "revoke passcode",
            Request::CreateGuestKey { .. } => "create guest key",
            Request::ListGuestKeys => "list guest keys",
            Request::ListOwnerKeys => "list owner keys",
            Request::RevokeOwnerKey { .. } => "revoke owner key",
            Request::RevokeGuestKey { .. } => "revoke guest key",
            Request::Events { .. } => "events",
            Request::GetSettings => "get settings",
            Request::SetSetting(_) => "set setting",
            Request::ReleaseLockout => "release lockout",
            Request::SetAway(_) => "set away mode",
            Request::TimeSync { .. } => "time sync",
        }
    }
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
}

/// The status report (B-9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// Enrolled credential kinds of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Credentials {
    /// Face.
    pub face: bool,
    /// Palm vein.
    pub palm: bool,
    /// Fingerprint.
    pub fingerprint: bool,
    /// Passcode.
    pub passcode: bool,
    /// Duress passcode.
    pub duress_passcode: bool,
}

/// A user in a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserEntry {
    /// Number (B-1.4).
    pub user: u16,
    /// Role.
    pub role: Role,
    /// Validity.
    pub validity: Validity,
    /// Enrolled credentials.
    pub credentials: Credentials,
}

/// A temporary passcode in a listing (never the digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasscodeEntry {
    /// Id.
    pub id: u16,
    /// Kind.
    pub kind: TempPasscodeKind,
    /// A one-time code already used.
    pub used: bool,
}

/// A guest key or invite in a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestKeyEntry {
    /// Slot.
    pub slot: u16,
    /// Inclusive start.
    pub valid_from: WallTime,
    /// Exclusive end.
    pub valid_until: WallTime,
    /// The guest redeemed the code (a key exists) or not (invite pending).
    pub redeemed: bool,
}

/// An owner key in a listing (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerKeyEntry {
    /// Slot.
    pub slot: u16,
    /// The administrator it speaks for.
    pub admin: u16,
    /// Its label.
    pub label: String,
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

/// A response from the lock.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// Done, nothing to return.
    Ok,
    /// Status.
    Status(StatusReport),
    /// Users.
    Users(Vec<UserEntry>),
    /// A user was added with this number.
    UserAdded {
        /// Number.
        user: u16,
    },
    /// A temporary passcode was created.
    PasscodeCreated {
        /// Its id.
        id: u16,
    },
    /// Temporary passcodes.
    Passcodes(Vec<PasscodeEntry>),
    /// A guest invite was created: hand `code` to the guest.
    GuestKeyCreated {
        /// Slot.
        slot: u16,
        /// The one-time guest pairing code.
        code: GuestPairingCode,
        /// The code cannot be redeemed from this time on.
        code_expires_at: WallTime,
    },
    /// Guest keys.
    GuestKeys(Vec<GuestKeyEntry>),
    /// Owner keys.
    OwnerKeys(Vec<OwnerKeyEntry>),
    /// A page of events, newest first.
    Events {
        /// Events.
        events: Vec<EventEntry>,
        /// Pass as `before` for the next page; `None` = no older events.
        next_cursor: Option<u64>,
    },
    /// Settings.
    Settings(Settings),
    /// Unsolicited, owner keys only, sealed over the broker: something the
    /// app must be told of at once (B-6.9 duress, B-3.6 an unlock while
    /// away). `cursor` is the newest logged event when it was sent (0:
    /// none); the log around it has the details.
    Notice(EventEntry),
    /// The request was refused.
    Error {
        /// Code.
        code: ErrorCode,
        /// Human-readable reason (≤ [`MAX_DETAIL`] bytes).
        detail: String,
    },
}

impl Response {
    /// An error response; the detail is cut to [`MAX_DETAIL`] bytes on a
    /// character boundary.
    pub fn error(code: ErrorCode, detail: &str) -> Self {
        let mut end = detail.len().min(MAX_DETAIL);
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        Response::Error {
            code,
            detail: detail[..end].to_owned(),
        }
    }
}

// ─────────────────────────────── codec ───────────────────────────────

struct Writer(Vec<u8>);

impl Writer {
    fn new(op: u8) -> Self {
        Writer(vec![COMMAND_VERSION, op])
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
    fn time(&mut self, t: WallTime) {
        self.0.extend_from_slice(&t.0.to_be_bytes());
    }
    fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                f(self, x);
            }
        }
    }
    fn str(&mut self, s: &str) {
        // Callers bound every string below 256 bytes.
        self.u8(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn list<T>(&mut self, items: &[T], f: impl Fn(&mut Self, &T)) {
        self.u8(items.len().min(MAX_LIST) as u8);
        for it in items.iter().take(MAX_LIST) {
            f(self, it);
        }
    }
    fn validity(&mut self, v: Validity) {
        self.opt(v.from, Self::time);
        self.opt(v.until, Self::time);
    }
    fn temp_kind(&mut self, k: TempPasscodeKind) {
        match k {
            TempPasscodeKind::OneTime => self.u8(0),
            TempPasscodeKind::Window { from, until } => {
                self.u8(1);
                self.time(from);
                self.time(until);
            }
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CommandError> {
        if self.buf.len() < n {
            return Err(CommandError::Truncated {
                field,
                needed: n - self.buf.len(),
            });
        }
        let (h, t) = self.buf.split_at(n);
        self.buf = t;
        Ok(h)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, CommandError> {
        Ok(self.take(1, field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, CommandError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, CommandError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_be_bytes(a))
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, CommandError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CommandError::BadValue {
                field,
                why: "boolean must be 0 or 1",
            }),
        }
    }
    fn time(&mut self, field: &'static str) -> Result<WallTime, CommandError> {
        self.u64(field).map(|v| WallTime(v as i64))
    }
    fn opt<T>(
        &mut self,
        field: &'static str,
        f: impl FnOnce(&mut Self, &'static str) -> Result<T, CommandError>,
    ) -> Result<Option<T>, CommandError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => f(self, field).map(Some),
            _ => Err(CommandError::BadValue {
                field,
                why: "option tag must be 0 or 1",
            }),
        }
    }
    fn str(&mut self, field: &'static str, max: usize) -> Result<String, CommandError> {
        let n = self.u8(field)? as usize;
        if n > max {
            return Err(CommandError::BadValue {
                field,
                why: "string too long",
            });
        }
        let b = self.take(n, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| CommandError::BadValue {
            field,
            why: "not UTF-8",
        })
    }
    fn list<T>(
        &mut self,
        field: &'static str,
        max: usize,
        f: impl Fn(&mut Self) -> Result<T, CommandError>,
    ) -> Result<Vec<T>, CommandError> {
        let n = self.u8(field)? as usize;
        if n > max {
            return Err(CommandError::BadValue {
                field,
                why: "list too long",
            });
        }
        (0..n).map(|_| f(self)).collect()
    }
    fn validity(&mut self) -> Result<Validity, CommandError> {
        let from = self.opt("validity.from", Self::time)?;
        let until = self.opt("validity.until", Self::time)?;
        if let (Some(f), Some(u)) = (from, until) {
            if f >= u {
                return Err(CommandError::BadValue {
                    field: "validity",
                    why: "start must be before end",
                });
            }
        }
        Ok(Validity { from, until })
    }
    fn window(&mut self, field: &'static str) -> Result<(WallTime, WallTime), CommandError> {
        let from = self.time(field)?;
        let until = self.time(field)?;
        if from >= until {
            return Err(CommandError::BadValue {
                field,
                why: "start must be before end",
            });
        }
        Ok((from, until))
    }
    fn temp_kind(&mut self) -> Result<TempPasscodeKind, CommandError> {
        match self.u8("passcode kind")? {
            0 => Ok(TempPasscodeKind::OneTime),
            1 => {
                let (from, until) = self.window("passcode window")?;
                Ok(TempPasscodeKind::Window { from, until })
            }
            _ => Err(CommandError::BadValue {
                field: "passcode kind",
                why: "must be 0 (one-time) or 1 (window)",
            }),
        }
    }
    fn enum_u8<T>(&mut self, field: &'static str, table: &[T]) -> Result<T, CommandError>
    where
        T: Copy,
    {
        let i = self.u8(field)? as usize;
        table.get(i).copied().ok_or(CommandError::BadValue {
            field,
            why: "value out of range",
        })
    }
    fn finish(self) -> Result<(), CommandError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CommandError::Trailing(self.buf.len()))
        }
    }
}

fn header<'a>(bytes: &'a [u8]) -> Result<(u8, Reader<'a>), CommandError> {
    if bytes.len() > MAX_PLAINTEXT {
        return Err(CommandError::TooLarge(bytes.len()));
    }
    let mut r = Reader { buf: bytes };
    let v = r.u8("version")?;
    if v != COMMAND_VERSION {
        return Err(CommandError::UnsupportedVersion(v));
    }
    let op = r.u8("opcode")?;
    Ok((op, r))
}

const ROLES: [Role; 2] = [Role::Administrator, Role::User];
const LOCK_STATES: [LockState; 4] = [
    LockState::Locked,
    LockState::Unlocked,
    LockState::Jammed,
    LockState::Unknown,
];
const DOOR_STATES: [DoorState; 3] = [DoorState::Closed, DoorState::Open, DoorState::Unknown];
const BOLT_STATES: [BoltState; 4] = [
    BoltState::Extended,
    BoltState::Retracted,
    BoltState::Moving,
    BoltState::Unknown,
];
const METHODS: [UnlockMethod; 9] = [
    UnlockMethod::Face,
    UnlockMethod::Palm,
    UnlockMethod::Fingerprint,
    UnlockMethod::Passcode,
    UnlockMethod::TemporaryPasscode,
    UnlockMethod::MechanicalKey,
    UnlockMethod::Ble,
    UnlockMethod::Remote,
    UnlockMethod::Inside,
];
const ALARM_KINDS: [AlarmKind; 4] = [
    AlarmKind::Tamper,
    AlarmKind::Lockout,
    AlarmKind::Duress,
    AlarmKind::LowBattery,
];

fn index_of<T: PartialEq>(table: &[T], v: &T) -> u8 {
    // Every value is in its table by construction of the tables above.
    table.iter().position(|x| x == v).unwrap_or(0) as u8
}

fn bits(flags: &[bool]) -> u8 {
    flags
        .iter()
        .enumerate()
        .fold(0, |acc, (i, &f)| acc | ((f as u8) << i))
}

fn unbits<const N: usize>(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<[bool; N], CommandError> {
    let b = r.u8(field)?;
    if u16::from(b) >> N != 0 {
        return Err(CommandError::BadValue {
            field,
            why: "unknown flag bits set",
        });
    }
    Ok(std::array::from_fn(|i| b & (1 << i) != 0))
}

mod op {
    pub const STATUS: u8 = 0x01;
    pub const UNLOCK: u8 = 0x02;
    pub const LOCK: u8 = 0x03;
    pub const LIST_USERS: u8 = 0x10;
    pub const ADD_USER: u8 = 0x11;
    pub const DELETE_USER: u8 = 0x12;
    pub const SET_USER_VALIDITY: u8 = 0x13;
    pub const CREATE_PASSCODE: u8 = 0x20;
    pub const LIST_PASSCODES: u8 = 0x21;
    pub const REVOKE_PASSCODE: u8 = 0x22;
    pub const SET_DURESS_PASSCODE: u8 = 0x23;
    pub const CREATE_GUEST_KEY: u8 = 0x30;
    pub const LIST_GUEST_KEYS: u8 = 0x31;
    pub const REVOKE_GUEST_KEY: u8 = 0x32;
    pub const LIST_OWNER_KEYS: u8 = 0x33;
    pub const REVOKE_OWNER_KEY: u8 = 0x34;
    pub const EVENTS: u8 = 0x40;
    pub const GET_SETTINGS: u8 = 0x50;
    pub const SET_SETTING: u8 = 0x51;
    pub const RELEASE_LOCKOUT: u8 = 0x52;
    pub const SET_AWAY: u8 = 0x53;
    pub const TIME_SYNC: u8 = 0x60;

    pub const R_OK: u8 = 0x80;
    pub const R_STATUS: u8 = 0x81;
    pub const R_USERS: u8 = 0x82;
    pub const R_USER_ADDED: u8 = 0x83;
    pub const R_PASSCODE_CREATED: u8 = 0x84;
    pub const R_PASSCODES: u8 = 0x85;
    pub const R_GUEST_KEY_CREATED: u8 = 0x86;
    pub const R_GUEST_KEYS: u8 = 0x87;
    pub const R_EVENTS: u8 = 0x88;
    pub const R_SETTINGS: u8 = 0x89;
    pub const R_NOTICE: u8 = 0x8A;
    pub const R_OWNER_KEYS: u8 = 0x8B;
    pub const R_ERROR: u8 = 0xFF;
}

impl Request {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let simple = |o| Writer::new(o).0;
        match self {
            Request::Status => simple(op::STATUS),
            Request::Unlock => simple(op::UNLOCK),
            Request::Lock => simple(op::LOCK),
            Request::ListUsers => simple(op::LIST_USERS),
            Request::AddUser { role, validity } => {
                let mut w = Writer::new(op::ADD_USER);
                w.u8(index_of(&ROLES, role));
                w.validity(*validity);
                w.0
            }
            Request::DeleteUser { user } => {
                let mut w = Writer::new(op::DELETE_USER);
                w.u16(*user);
                w.0
            }
            Request::SetUserValidity { user, validity } => {
                let mut w = Writer::new(op::SET_USER_VALIDITY);
                w.u16(*user);
                w.validity(*validity);
                w.0
            }
            Request::CreatePasscode { digits, kind } => {
                let mut w = Writer::new(op::CREATE_PASSCODE);
                w.str(digits.as_str());
                w.temp_kind(*kind);
                w.0
            }
            Request::SetDuressPasscode { user, digits } => {
                let mut w = Writer::new(op::SET_DURESS_PASSCODE);
                w.u16(*user);
                w.str(digits.as_str());
                w.0
            }
            Request::ListPasscodes => simple(op::LIST_PASSCODES),
            Request::RevokePasscode { id } => {
                let mut w = Writer::new(op::REVOKE_PASSCODE);
                w.u16(*id);
                w.0
            }
            Request::CreateGuestKey {
                valid_from,
                valid_until,
            } => {
                let mut w = Writer::new(op::CREATE_GUEST_KEY);
                w.time(*valid_from);
                w.time(*valid_until);
                w.0
            }
            Request::ListGuestKeys => simple(op::LIST_GUEST_KEYS),
            Request::ListOwnerKeys => simple(op::LIST_OWNER_KEYS),
            Request::RevokeOwnerKey { slot } => {
                let mut w = Writer::new(op::REVOKE_OWNER_KEY);
                w.u16(*slot);
                w.0
            }
            Request::RevokeGuestKey { slot } => {
                let mut w = Writer::new(op::REVOKE_GUEST_KEY);
                w.u16(*slot);
                w.0
            }
            Request::Events { before, limit } => {
                let mut w = Writer::new(op::EVENTS);
                w.opt(*before, Writer::u64);
                w.u8(*limit);
                w.0
            }
            Request::GetSettings => simple(op::GET_SETTINGS),
            Request::SetSetting(s) => {
                let mut w = Writer::new(op::SET_SETTING);
                match s {
                    Setting::AutoLock(v) => {
                        w.u8(0);
                        w.opt(*v, Writer::u16);
                    }
                    Setting::LockoutProtection(b) => {
                        w.u8(1);
                        w.bool(*b);
                    }
                    Setting::RemoteUnlock(b) => {
                        w.u8(2);
                        w.bool(*b);
                    }
                    Setting::WifiEnabled(b) => {
                        w.u8(3);
                        w.bool(*b);
                    }
                }
                w.0
            }
            Request::ReleaseLockout => simple(op::RELEASE_LOCKOUT),
            Request::SetAway(on) => {
                let mut w = Writer::new(op::SET_AWAY);
                w.bool(*on);
                w.0
            }
            Request::TimeSync { now } => {
                let mut w = Writer::new(op::TIME_SYNC);
                w.time(*now);
                w.0
            }
        }
    }

    /// Decode; refuses anything not exactly one valid request.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let (opcode, mut r) = header(bytes)?;
        let req = match opcode {
            op::STATUS => Request::Status,
            op::UNLOCK => Request::Unlock,
            op::LOCK => Request::Lock,
            op::LIST_USERS => Request::ListUsers,
            op::ADD_USER => Request::AddUser {
                role: r.enum_u8("role", &ROLES)?,
                validity: r.validity()?,
            },
            op::DELETE_USER => Request::DeleteUser {
                user: r.u16("user")?,
            },
            op::SET_USER_VALIDITY => Request::SetUserValidity {
                user: r.u16("user")?,
                validity: r.validity()?,
            },
            op::CREATE_PASSCODE => {
                let s = r.str("passcode", 10)?;
                Request::CreatePasscode {
                    digits: PasscodeDigits::new(&s)?,
                    kind: r.temp_kind()?,
                }
            }
            op::SET_DURESS_PASSCODE => {
                let user = r.u16("user")?;
                let s = r.str("passcode", 10)?;
                Request::SetDuressPasscode {
                    user,
                    digits: PasscodeDigits::new(&s)?,
                }
            }
            op::LIST_PASSCODES => Request::ListPasscodes,
            op::REVOKE_PASSCODE => Request::RevokePasscode { id: r.u16("id")? },
            op::CREATE_GUEST_KEY => {
                let (valid_from, valid_until) = r.window("guest key window")?;
                Request::CreateGuestKey {
                    valid_from,
                    valid_until,
                }
            }
            op::LIST_GUEST_KEYS => Request::ListGuestKeys,
            op::LIST_OWNER_KEYS => Request::ListOwnerKeys,
            op::REVOKE_OWNER_KEY => Request::RevokeOwnerKey {
                slot: r.u16("slot")?,
            },
            op::REVOKE_GUEST_KEY => Request::RevokeGuestKey {
                slot: r.u16("slot")?,
            },
            op::EVENTS => {
                let before = r.opt("before", Reader::u64)?;
                let limit = r.u8("limit")?;
                if limit == 0 || limit > MAX_EVENTS_PER_PAGE {
                    return Err(CommandError::BadValue {
                        field: "limit",
                        why: "page size must be 1..=32",
                    });
                }
                Request::Events { before, limit }
            }
            op::GET_SETTINGS => Request::GetSettings,
            op::SET_SETTING => Request::SetSetting(match r.u8("setting")? {
                0 => {
                    let v = r.opt("auto lock", Reader::u16)?;
                    if v == Some(0) {
                        return Err(CommandError::BadValue {
                            field: "auto lock",
                            why: "0 seconds; send None to turn auto-lock off",
                        });
                    }
                    Setting::AutoLock(v)
                }
                1 => Setting::LockoutProtection(r.bool("lockout protection")?),
                2 => Setting::RemoteUnlock(r.bool("remote unlock")?),
                3 => Setting::WifiEnabled(r.bool("wifi")?),
                _ => {
                    return Err(CommandError::BadValue {
                        field: "setting",
                        why: "unknown setting",
                    })
                }
            }),
            op::RELEASE_LOCKOUT => Request::ReleaseLockout,
            op::SET_AWAY => Request::SetAway(r.bool("away")?),
            op::TIME_SYNC => Request::TimeSync {
                now: r.time("now")?,
            },
            other => return Err(CommandError::UnknownOpcode(other)),
        };
        r.finish()?;
        Ok(req)
    }
}

fn write_event(w: &mut Writer, e: &EventEntry) {
    w.u64(e.cursor);
    w.opt(e.at, Writer::time);
    match e.kind {
        EventKind::Unlocked(m) => {
            w.u8(0);
            w.u8(index_of(&METHODS, &m));
        }
        EventKind::Locked => w.u8(1),
        EventKind::VerificationFailed => w.u8(2),
        EventKind::Alarm(a) => {
            w.u8(3);
            w.u8(index_of(&ALARM_KINDS, &a));
        }
        EventKind::SettingChanged => w.u8(4),
        EventKind::UserChanged => w.u8(5),
        EventKind::Doorbell => w.u8(6),
    }
    w.opt(e.user, Writer::u16);
}

fn read_event(r: &mut Reader<'_>) -> Result<EventEntry, CommandError> {
    let cursor = r.u64("event cursor")?;
    let at = r.opt("event time", Reader::time)?;
    let kind = match r.u8("event kind")? {
        0 => EventKind::Unlocked(r.enum_u8("unlock method", &METHODS)?),
        1 => EventKind::Locked,
        2 => EventKind::VerificationFailed,
        3 => EventKind::Alarm(r.enum_u8("alarm kind", &ALARM_KINDS)?),
        4 => EventKind::SettingChanged,
        5 => EventKind::UserChanged,
        6 => EventKind::Doorbell,
        _ => {
            return Err(CommandError::BadValue {
                field: "event kind",
                why: "unknown event kind",
            })
        }
    };
    let user = r.opt("event user", Reader::u16)?;
    Ok(EventEntry {
        cursor,
        at,
        kind,
        user,
    })
}

impl Response {
    /// Encode. Lists longer than [`MAX_LIST`] are cut (the engine pages
    /// events and never holds more than 50 users).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Response::Ok => Writer::new(op::R_OK).0,
            Response::Status(s) => {
                let mut w = Writer::new(op::R_STATUS);
                w.u8(index_of(&LOCK_STATES, &s.lock));
                w.u8(index_of(&DOOR_STATES, &s.door));
                w.u8(index_of(&BOLT_STATES, &s.bolt));
                w.u8(s.battery_percent.min(100));
                w.u8(bits(&[s.wifi.enabled, s.wifi.connected]));
                w.opt(s.wifi.rssi_dbm, |w, v| w.u8(v as u8));
                w.u8(bits(&[
                    s.alarms.tamper,
                    s.alarms.lockout,
                    s.alarms.duress,
                    s.alarms.low_battery,
                ]));
                w.0
            }
            Response::Users(users) => {
                let mut w = Writer::new(op::R_USERS);
                w.list(users, |w, u| {
                    w.u16(u.user);
                    w.u8(index_of(&ROLES, &u.role));
                    w.validity(u.validity);
                    let c = u.credentials;
                    w.u8(bits(&[
                        c.face,
                        c.palm,
                        c.fingerprint,
                        c.passcode,
                        c.duress_passcode,
                    ]));
                });
                w.0
            }
            Response::UserAdded { user } => {
                let mut w = Writer::new(op::R_USER_ADDED);
                w.u16(*user);
                w.0
            }
            Response::PasscodeCreated { id } => {
                let mut w = Writer::new(op::R_PASSCODE_CREATED);
                w.u16(*id);
                w.0
            }
            Response::Passcodes(list) => {
                let mut w = Writer::new(op::R_PASSCODES);
                w.list(list, |w, p| {
                    w.u16(p.id);
                    w.temp_kind(p.kind);
                    w.bool(p.used);
                });
                w.0
            }
            Response::GuestKeyCreated {
                slot,
                code,
                code_expires_at,
            } => {
                let mut w = Writer::new(op::R_GUEST_KEY_CREATED);
                w.u16(*slot);
                w.0.extend_from_slice(code.to_bytes().as_ref());
                w.time(*code_expires_at);
                w.0
            }
            Response::OwnerKeys(list) => {
                let mut w = Writer::new(op::R_OWNER_KEYS);
                w.list(list, |w, k| {
                    w.u16(k.slot);
                    w.u16(k.admin);
                    let mut end = k.label.len().min(MAX_LABEL);
                    while !k.label.is_char_boundary(end) {
                        end -= 1;
                    }
                    w.str(&k.label[..end]);
                });
                w.0
            }
            Response::GuestKeys(list) => {
                let mut w = Writer::new(op::R_GUEST_KEYS);
                w.list(list, |w, g| {
                    w.u16(g.slot);
                    w.time(g.valid_from);
                    w.time(g.valid_until);
                    w.bool(g.redeemed);
                });
                w.0
            }
            Response::Events {
                events,
                next_cursor,
            } => {
                let mut w = Writer::new(op::R_EVENTS);
                w.list(events, write_event);
                w.opt(*next_cursor, Writer::u64);
                w.0
            }
            Response::Settings(s) => {
                let mut w = Writer::new(op::R_SETTINGS);
                w.opt(s.auto_lock_secs, Writer::u16);
                w.u8(bits(&[
                    s.lockout_protection,
                    s.remote_unlock,
                    s.wifi_enabled,
                ]));
                w.0
            }
            Response::Notice(e) => {
                let mut w = Writer::new(op::R_NOTICE);
                write_event(&mut w, e);
                w.0
            }
            Response::Error { code, detail } => {
                let mut w = Writer::new(op::R_ERROR);
                w.u8(*code as u8);
                let mut end = detail.len().min(MAX_DETAIL);
                while !detail.is_char_boundary(end) {
                    end -= 1;
                }
                w.str(&detail[..end]);
                w.0
            }
        }
    }

    /// Decode; refuses anything not exactly one valid response.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let (opcode, mut r) = header(bytes)?;
        let resp = match opcode {
            op::R_OK => Response::Ok,
            op::R_STATUS => {
                let lock = r.enum_u8("lock state", &LOCK_STATES)?;
                let door = r.enum_u8("door state", &DOOR_STATES)?;
                let bolt = r.enum_u8("bolt state", &BOLT_STATES)?;
                let battery_percent = r.u8("battery")?;
                if battery_percent > 100 {
                    return Err(CommandError::BadValue {
                        field: "battery",
                        why: "above 100 %",
                    });
                }
                let [enabled, connected] = unbits::<2>(&mut r, "wifi flags")?;
                let rssi_dbm = r.opt("rssi", |r, f| r.u8(f).map(|b| b as i8))?;
                let [tamper, lockout, duress, low_battery] = unbits::<4>(&mut r, "alarms")?;
                Response::Status(StatusReport {
                    lock,
                    door,
                    bolt,
                    battery_percent,
                    wifi: WifiStatus {
                        enabled,
                        connected,
                        rssi_dbm,
                    },
                    alarms: Alarms {
                        tamper,
                        lockout,
                        duress,
                        low_battery,
                    },
                })
            }
            op::R_USERS => Response::Users(r.list("users", MAX_LIST, |r| {
                let user = r.u16("user")?;
                let role = r.enum_u8("role", &ROLES)?;
                let validity = r.validity()?;
                let [face, palm, fingerprint, passcode, duress_passcode] =
                    unbits::<5>(r, "credentials")?;
                Ok(UserEntry {
                    user,
                    role,
                    validity,
                    credentials: Credentials {
                        face,
                        palm,
                        fingerprint,
                        passcode,
                        duress_passcode,
                    },
                })
            })?),
            op::R_USER_ADDED => Response::UserAdded {
                user: r.u16("user")?,
            },
            op::R_PASSCODE_CREATED => Response::PasscodeCreated { id: r.u16("id")? },
            op::R_PASSCODES => Response::Passcodes(r.list("passcodes", MAX_LIST, |r| {
                Ok(PasscodeEntry {
                    id: r.u16("id")?,
                    kind: r.temp_kind()?,
                    used: r.bool("used")?,
                })
            })?),
            op::R_GUEST_KEY_CREATED => {
                let slot = r.u16("slot")?;
                let mut code = [0u8; CODE_BYTES];
                code.copy_from_slice(r.take(CODE_BYTES, "guest code")?);
                Response::GuestKeyCreated {
                    slot,
                    code: GuestPairingCode::from_bytes(code),
                    code_expires_at: r.time("code expiry")?,
                }
            }
            op::R_OWNER_KEYS => Response::OwnerKeys(r.list("owner keys", MAX_LIST, |r| {
                Ok(OwnerKeyEntry {
                    slot: r.u16("slot")?,
                    admin: r.u16("admin")?,
                    label: r.str("label", MAX_LABEL)?,
                })
            })?),
            op::R_GUEST_KEYS => Response::GuestKeys(r.list("guest keys", MAX_LIST, |r| {
                let slot = r.u16("slot")?;
                let (valid_from, valid_until) = r.window("guest key window")?;
                Ok(GuestKeyEntry {
                    slot,
                    valid_from,
                    valid_until,
                    redeemed: r.bool("redeemed")?,
                })
            })?),
            op::R_EVENTS => {
                let events = r.list("events", MAX_EVENTS_PER_PAGE as usize, read_event)?;
                let next_cursor = r.opt("next cursor", Reader::u64)?;
                Response::Events {
                    events,
                    next_cursor,
                }
            }
            op::R_NOTICE => Response::Notice(read_event(&mut r)?),
            op::R_SETTINGS => {
                let auto_lock_secs = r.opt("auto lock", Reader::u16)?;
                let [lockout_protection, remote_unlock, wifi_enabled] =
                    unbits::<3>(&mut r, "settings flags")?;
                Response::Settings(Settings {
                    auto_lock_secs,
                    lockout_protection,
                    remote_unlock,
                    wifi_enabled,
                })
            }
            op::R_ERROR => {
                let b = r.u8("error code")?;
                let code = ErrorCode::from_u8(b).ok_or(CommandError::BadValue {
                    field: "error code",
                    why: "unknown error code",
                })?;
                Response::Error {
                    code,
                    detail: r.str("detail", MAX_DETAIL)?,
                }
            }
            other => return Err(CommandError::UnknownOpcode(other)),
        };
        r.finish()?;
        Ok(resp)
    }
}

fn user_number(n: u16) -> Result<core_types::UserNumber, CommandError> {
    core_types::UserNumber::new(n).ok_or(CommandError::BadValue {
        field: "user",
        why: "user numbers are 1 to 999",
    })
}

impl Request {
    /// The engine command this request becomes, for `Input::App`.
    ///
    /// `Ok(None)` for requests the daemon answers itself rather than the
    /// engine: queries (`Status`, `ListUsers`, `ListPasscodes`, `Events`,
    /// `GetSettings`, `ListGuestKeys`), guest invites (`CreateGuestKey`,
    /// `RevokeGuestKey` — an invite lives in the store until redeemed; a
    /// redeemed key is revoked with `AppCommand::RevokeAppKey`), and
    /// `TimeSync` (the daemon's wall clock).
    pub fn engine_command(&self) -> Result<Option<AppCommand>, CommandError> {
        let role = |r: &Role| match r {
            Role::Administrator => core_types::Role::Admin,
            Role::User => core_types::Role::User,
        };
        Ok(Some(match self {
            Request::Unlock => AppCommand::Unlock,
            Request::Lock => AppCommand::Lock,
            Request::AddUser { role: r, validity } => AppCommand::AddUser {
                role: role(r),
                validity: *validity,
            },
            Request::DeleteUser { user } => AppCommand::DeleteUser(user_number(*user)?),
            Request::SetUserValidity { user, validity } => {
                AppCommand::SetValidity(user_number(*user)?, *validity)
            }
            Request::CreatePasscode { digits, kind } => {
                let (validity, one_time) = match kind {
                    TempPasscodeKind::OneTime => (Validity::ALWAYS, true),
                    TempPasscodeKind::Window { from, until } => (
                        Validity {
                            from: Some(*from),
                            until: Some(*until),
                        },
                        false,
                    ),
                };
                AppCommand::AddTempPasscode {
                    digits: digits.as_str().to_owned(),
                    validity,
                    one_time,
                }
            }
            Request::RevokePasscode { id } => {
                AppCommand::RevokeTempPasscode(core_types::TempPasscodeId(u32::from(*id)))
            }
            Request::SetDuressPasscode { user, digits } => AppCommand::SetDuressPasscode {
                user: user_number(*user)?,
                digits: digits.as_str().to_owned(),
            },
            Request::SetSetting(s) => AppCommand::Setting(match *s {
                Setting::AutoLock(secs) => core_types::SettingChange::AutoLock(
                    secs.map(|v| std::time::Duration::from_secs(u64::from(v))),
                ),
                Setting::LockoutProtection(b) => core_types::SettingChange::LockoutProtection(b),
                Setting::RemoteUnlock(b) => core_types::SettingChange::RemoteUnlock(b),
                Setting::WifiEnabled(b) => core_types::SettingChange::Wifi(b),
            }),
            Request::ReleaseLockout => AppCommand::ReleaseLockout,
            Request::ListOwnerKeys => AppCommand::ListOwnerKeys,
            Request::RevokeOwnerKey { slot } => {
                AppCommand::RevokeOwnerKey(AppKeyId(u32::from(*slot)))
            }
            Request::SetAway(on) => AppCommand::SetAway(*on),
            Request::Status
            | Request::ListUsers
            | Request::ListPasscodes
            | Request::CreateGuestKey { .. }
            | Request::ListGuestKeys
            | Request::RevokeGuestKey { .. }
            | Request::Events { .. }
            | Request::GetSettings
            | Request::TimeSync { .. } => return Ok(None),
        }))
    }
}

impl Principal {
    /// The engine's principal for this key, given the id the engine
    /// assigned to the stored key (`AppKey::id`).
    pub fn to_core(&self, app_key: AppKeyId) -> Result<CorePrincipal, CommandError> {
        Ok(match *self {
            Principal::Owner { admin_user, .. } => CorePrincipal::Owner {
                key: app_key,
                admin: user_number(admin_user)?,
            },
            Principal::Guest {
                valid_from,
                valid_until,
                ..
            } => CorePrincipal::Guest {
                key: app_key,
                validity: Validity {
                    from: Some(valid_from),
                    until: Some(valid_until),
                },
            },
        })
    }
}

/// A request could not be accepted on the lock.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// The frame did not verify; nothing changed, no response is sent
    /// beyond the error code.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The frame verified but the command is malformed; answer with
    /// [`Response::error`].
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The frame verified but the principal may not do this; answer with
    /// [`Response::error`].
    #[error(transparent)]
    Authz(#[from] AuthzError),
}

impl RequestError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            RequestError::Channel(e) => e.code(),
            RequestError::Command(e) => e.code(),
            RequestError::Authz(e) => e.code(),
        }
    }
}

/// Lock side: open a sealed request frame, decode it and run the role
/// check. The result is what the engine receives.
pub fn open_request(
    session: &mut SecureSession,
    principal: &Principal,
    now: Instant,
    wall_now: Option<WallTime>,
    frame: &[u8],
) -> Result<Request, RequestError> {
    let plaintext = session.open(now, frame)?;
    let request = Request::decode(&plaintext)?;
    authorize(principal, &request, wall_now)?;
    Ok(request)
}

/// Lock side: seal a response.
pub fn seal_response(
    session: &mut SecureSession,
    now: Instant,
    response: &Response,
) -> Result<Vec<u8>, ChannelError> {
    session.seal(now, &response.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(from: i64, until: i64) -> Principal {
        Principal::Guest {
            key_id: KeyId([1; 8]),
            valid_from: WallTime(from),
            valid_until: WallTime(until),
        }
    }

    #[test]
    fn b_6_6_guest_window_edges() {
        let g = guest(100, 200);
        assert!(matches!(
            authorize(&g, &Request::Unlock, Some(WallTime(99))),
            Err(AuthzError::NotYetValid { .. })
        ));
        assert_eq!(authorize(&g, &Request::Unlock, Some(WallTime(100))), Ok(()));
        assert_eq!(authorize(&g, &Request::Lock, Some(WallTime(199))), Ok(()));
        assert!(matches!(
            authorize(&g, &Request::Unlock, Some(WallTime(200))),
            Err(AuthzError::Expired { .. })
        ));
        assert_eq!(
            authorize(&g, &Request::Unlock, None),
            Err(AuthzError::ClockUnknown)
        );
    }

    #[test]
    fn guest_may_only_unlock_and_lock() {
        let g = guest(0, i64::MAX);
        for req in [
            Request::Status,
            Request::ListUsers,
            Request::TimeSync { now: WallTime(5) },
            Request::ReleaseLockout,
            Request::CreateGuestKey {
                valid_from: WallTime(0),
                valid_until: WallTime(1),
            },
        ] {
            assert_eq!(
                authorize(&g, &req, Some(WallTime(1))).map_err(|e| e.code()),
                Err(ErrorCode::Forbidden)
            );
        }
    }

    #[test]
    fn owner_may_do_everything_even_with_unknown_clock() {
        let o = Principal::Owner {
            key_id: KeyId([2; 8]),
            admin_user: 1,
        };
        assert_eq!(
            authorize(&o, &Request::TimeSync { now: WallTime(9) }, None),
            Ok(())
        );
        assert_eq!(authorize(&o, &Request::Unlock, None), Ok(()));
    }

    #[test]
    fn requests_map_to_engine_commands() {
        assert_eq!(
            Request::Unlock.engine_command(),
            Ok(Some(AppCommand::Unlock))
        );
        assert_eq!(Request::Status.engine_command(), Ok(None));
        assert!(Request::DeleteUser { user: 0 }.engine_command().is_err());
        assert_eq!(
            Request::SetSetting(Setting::AutoLock(Some(30))).engine_command(),
            Ok(Some(AppCommand::Setting(
                core_types::SettingChange::AutoLock(Some(std::time::Duration::from_secs(30)))
            )))
        );
        let g = guest(5, 10).to_core(AppKeyId(4)).expect("maps");
        assert_eq!(
            g,
            CorePrincipal::Guest {
                key: AppKeyId(4),
                validity: Validity {
                    from: Some(WallTime(5)),
                    until: Some(WallTime(10))
                }
            }
        );
    }

    #[test]
    fn a_notice_round_trips_and_refuses_trailing_bytes() {
        let n = Response::Notice(EventEntry {
            cursor: 41,
            at: Some(WallTime(1_795_000_000)),
            kind: EventKind::Alarm(AlarmKind::Duress),
            user: Some(1),
        });
        let bytes = n.encode();
        assert_eq!(bytes[1], op::R_NOTICE);
        assert_eq!(Response::decode(&bytes).expect("decodes"), n);
        let mut long = bytes.clone();
        long.push(0);
        assert!(Response::decode(&long).is_err());
        assert!(Response::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn unlock_is_two_bytes() {
        assert_eq!(Request::Unlock.encode(), vec![COMMAND_VERSION, op::UNLOCK]);
    }

    #[test]
    fn decoder_refuses_bad_input() {
        assert_eq!(
            Request::decode(&[]).map_err(|e| e.code()),
            Err(ErrorCode::MalformedCommand)
        );
        assert_eq!(
            Request::decode(&[2, 1]),
            Err(CommandError::UnsupportedVersion(2))
        );
        assert_eq!(
            Request::decode(&[1, 0x7E]),
            Err(CommandError::UnknownOpcode(0x7E))
        );
        assert_eq!(
            Request::decode(&[1, op::UNLOCK, 0]),
            Err(CommandError::Trailing(1))
        );
        assert!(Request::decode(&[1, op::EVENTS, 0, 0]).is_err());
        assert!(Request::decode(&[1, op::EVENTS, 0, 33]).is_err());
        // Inverted window.
        let mut w = Writer::new(op::CREATE_GUEST_KEY);
        w.time(WallTime(10));
        w.time(WallTime(10));
        assert!(Request::decode(&w.0).is_err());
        // Non-digit passcode.
        let mut w = Writer::new(op::CREATE_PASSCODE);
        w.str("12345a");
        w.u8(0);
        assert!(Request::decode(&w.0).is_err());
    }
}
