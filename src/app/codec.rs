//! The compact, versioned binary encoding of [`Request`] and [`Response`]
//! (B-6.6, B-9) carried inside sealed frames.
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
use thiserror::Error;

use super::pairing::{GuestPairingCode, CODE_BYTES};
use super::protocol::{ErrorCode, MAX_PLAINTEXT};
use super::request::{
    CredentialMethod, PasscodeDigits, Request, Setting, TempPasscodeKind, MAX_EVENTS_PER_PAGE,
    MAX_NOTICES_PER_REPLY,
};
use super::response::{
    Credentials, GuestKeyEntry, OwnerKeyEntry, PasscodeEntry, PendingNotice, Response, UserEntry,
    MAX_DETAIL, MAX_LABEL,
};
use super::wire::{
    AlarmKind, Alarms, BoltState, DoorState, EventEntry, EventKind, LockState, LockoutChange, Role,
    Settings, SlotSummary, StatusReport, UnlockMethod, UpdateStep, UpdateSummary, WifiStatus,
    MAX_VERSION,
};
use crate::core::schedule::{Holder, Period, Schedule, ScheduleKind, WeekDay};
use crate::core::time::{Validity, WallTime};
use crate::core::types::{AppKeyId, OperatingMode, TempPasscodeId};

/// Version byte at the start of every command and response.
pub const COMMAND_VERSION: u8 = 1;
/// Longest list in any response (B-1.1: 50 users / passcodes).
pub const MAX_LIST: usize = 64;
/// Longest update URL on the wire (the engine's bound, `core::update`).
pub const MAX_UPDATE_URL: usize = crate::core::update::MAX_SOURCE;
/// The most bundle bytes in one `UpdateChunk`: the request (2 bytes of
/// header, 8 of offset, 2 of length) stays within one sealed message
/// ([`super::protocol::MAX_PLAINTEXT`]).
pub const MAX_UPDATE_CHUNK: usize = 4000;

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
    fn holder(&mut self, h: Holder) {
        let (kind, id) = match h {
            Holder::User(n) => (0, n.get()),
            Holder::TempPasscode(id) => (1, u16::try_from(id.0).unwrap_or(u16::MAX)),
            Holder::GuestKey(id) => (2, u16::try_from(id.0).unwrap_or(u16::MAX)),
        };
        self.u8(kind);
        self.u16(id);
    }
    /// Issue 17 item 2: kind, then Matter's fields (`docs/ble-protocol.md`).
    fn schedule(&mut self, s: &Schedule) {
        match *s {
            Schedule::WeekDay {
                holder,
                index,
                window,
            } => {
                self.u8(0);
                self.holder(holder);
                self.u8(index);
                self.u8(window.days);
                let ((sh, sm), (eh, em)) = window.hm();
                for b in [sh, sm, eh, em] {
                    self.u8(b);
                }
            }
            Schedule::YearDay {
                holder,
                index,
                period,
            } => {
                self.u8(1);
                self.holder(holder);
                self.u8(index);
                self.time(WallTime(period.start));
                self.time(WallTime(period.end));
            }
            Schedule::Holiday {
                index,
                period,
                mode,
            } => {
                self.u8(2);
                self.u8(index);
                self.time(WallTime(period.start));
                self.time(WallTime(period.end));
                self.u8(mode.code());
            }
        }
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
    fn holder(&mut self, _field: &'static str) -> Result<Holder, CommandError> {
        let kind = self.u8("holder kind")?;
        let id = self.u16("holder")?;
        match kind {
            0 => super::request::user_number(id).map(Holder::User),
            1 => Ok(Holder::TempPasscode(TempPasscodeId(u32::from(id)))),
            2 => Ok(Holder::GuestKey(AppKeyId(u32::from(id)))),
            _ => Err(CommandError::BadValue {
                field: "holder kind",
                why: "must be 0 (user), 1 (visitor code) or 2 (guest key)",
            }),
        }
    }
    /// The shape only; the engine applies the rules (index range, a
    /// window that ends after it starts) and answers with a typed error.
    fn schedule(&mut self) -> Result<Schedule, CommandError> {
        let hm = |r: &mut Self, field| -> Result<u16, CommandError> {
            let (h, m) = (r.u8(field)?, r.u8(field)?);
            if h >= 24 || m >= 60 {
                return Err(CommandError::BadValue {
                    field,
                    why: "hours are 0-23 and minutes 0-59",
                });
            }
            Ok(u16::from(h) * 60 + u16::from(m))
        };
        Ok(match self.u8("schedule kind")? {
            0 => Schedule::WeekDay {
                holder: self.holder("holder")?,
                index: self.u8("index")?,
                window: WeekDay {
                    days: self.u8("days")?,
                    start_minute: hm(self, "start")?,
                    end_minute: hm(self, "end")?,
                },
            },
            1 => Schedule::YearDay {
                holder: self.holder("holder")?,
                index: self.u8("index")?,
                period: Period {
                    start: self.time("start")?.0,
                    end: self.time("end")?.0,
                },
            },
            2 => Schedule::Holiday {
                index: self.u8("index")?,
                period: Period {
                    start: self.time("start")?.0,
                    end: self.time("end")?.0,
                },
                mode: read_mode(self)?,
            },
            _ => {
                return Err(CommandError::BadValue {
                    field: "schedule kind",
                    why: "must be 0 (week-day), 1 (year-day) or 2 (holiday)",
                })
            }
        })
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
const CREDENTIAL_METHODS: [CredentialMethod; 4] = [
    CredentialMethod::Face,
    CredentialMethod::Palm,
    CredentialMethod::Fingerprint,
    CredentialMethod::Passcode,
];
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
const ALARM_KINDS: [AlarmKind; 8] = [
    AlarmKind::Tamper,
    AlarmKind::Lockout,
    AlarmKind::Duress,
    AlarmKind::LowBattery,
    AlarmKind::DoorAjar,
    AlarmKind::DoorForcedOpen,
    AlarmKind::Jam,
    AlarmKind::ModuleSwap,
];
const UPDATE_STEPS: [UpdateStep; 10] = [
    UpdateStep::Requested,
    UpdateStep::Waiting,
    UpdateStep::Installing,
    UpdateStep::Installed,
    UpdateStep::Restarting,
    UpdateStep::Refused,
    UpdateStep::Failed,
    UpdateStep::Abandoned,
    UpdateStep::MarkedGood,
    UpdateStep::NotMarked,
];
const LOCKOUT_CHANGES: [LockoutChange; 5] = [
    LockoutChange::Started,
    LockoutChange::Ended,
    LockoutChange::EndedEarly,
    LockoutChange::KeypadDisabled,
    LockoutChange::KeypadReleased,
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

/// A prompt language by its byte (`Language::code`); an unknown byte is
/// refused, never read as a default.
fn read_language(r: &mut Reader<'_>) -> Result<crate::core::Language, CommandError> {
    crate::core::Language::from_code(r.u8("language")?).ok_or(CommandError::BadValue {
        field: "language",
        why: "unknown language (0 = English, 1 = Mandarin zh-TW)",
    })
}

/// An operating mode by its byte (Matter's `OperatingModeEnum` value); an
/// unknown byte is refused, never read as Normal.
fn read_mode(r: &mut Reader<'_>) -> Result<OperatingMode, CommandError> {
    OperatingMode::from_code(r.u8("operating mode")?).ok_or(CommandError::BadValue {
        field: "operating mode",
        why: "unknown operating mode (0 normal, 1 vacation, 2 privacy, 3 no remote, 4 passage)",
    })
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

/// The status request's flag byte asking for the software section.
const STATUS_WITH_UPDATE: u8 = 0x01;

mod op {
    pub const STATUS: u8 = 0x01;
    pub const UNLOCK: u8 = 0x02;
    pub const LOCK: u8 = 0x03;
    pub const LIST_USERS: u8 = 0x10;
    pub const ADD_USER: u8 = 0x11;
    pub const DELETE_USER: u8 = 0x12;
    pub const SET_USER_VALIDITY: u8 = 0x13;
    pub const ENROL_CREDENTIAL: u8 = 0x14;
    pub const DELETE_CREDENTIAL: u8 = 0x15;
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
    pub const PENDING_NOTICES: u8 = 0x41;
    pub const ACK_NOTICES: u8 = 0x42;
    pub const GET_SETTINGS: u8 = 0x50;
    pub const SET_SETTING: u8 = 0x51;
    pub const RELEASE_LOCKOUT: u8 = 0x52;
    pub const SET_AWAY: u8 = 0x53;
    pub const TIME_SYNC: u8 = 0x60;
    pub const SET_SCHEDULE: u8 = 0x16;
    pub const CLEAR_SCHEDULES: u8 = 0x17;
    pub const LIST_SCHEDULES: u8 = 0x18;
    pub const START_UPDATE: u8 = 0x70;
    pub const UPDATE_BEGIN: u8 = 0x71;
    pub const UPDATE_CHUNK: u8 = 0x72;
    pub const UPDATE_COMMIT: u8 = 0x73;
    pub const UPDATE_ABORT: u8 = 0x74;

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
    pub const R_UPDATE_OFFSET: u8 = 0x8C;
    pub const R_SCHEDULES: u8 = 0x8D;
    pub const R_NOTICES: u8 = 0x8E;
    pub const R_ERROR: u8 = 0xFF;
}

impl Request {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        let simple = |o| Writer::new(o).0;
        match self {
            Request::Status => simple(op::STATUS),
            Request::StatusWithUpdate => {
                let mut w = Writer::new(op::STATUS);
                w.u8(STATUS_WITH_UPDATE);
                w.0
            }
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
            Request::EnrolCredential { user, method }
            | Request::DeleteCredential { user, method } => {
                let code = if matches!(self, Request::EnrolCredential { .. }) {
                    op::ENROL_CREDENTIAL
                } else {
                    op::DELETE_CREDENTIAL
                };
                let mut w = Writer::new(code);
                w.u16(*user);
                w.u8(index_of(&CREDENTIAL_METHODS, method));
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
            Request::PendingNotices => simple(op::PENDING_NOTICES),
            Request::AckNotices { up_to } => {
                let mut w = Writer::new(op::ACK_NOTICES);
                w.u64(*up_to);
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
                    Setting::DoorAjar(v) => {
                        w.u8(4);
                        w.opt(*v, Writer::u16);
                    }
                    Setting::Language(l) => {
                        w.u8(5);
                        w.u8(l.code());
                    }
                    Setting::OperatingMode(m) => {
                        w.u8(6);
                        w.u8(m.code());
                    }
                }
                w.0
            }
            Request::SetSchedule(s) => {
                let mut w = Writer::new(op::SET_SCHEDULE);
                w.schedule(s);
                w.0
            }
            Request::ClearSchedules {
                kind,
                holder,
                index,
            } => {
                let mut w = Writer::new(op::CLEAR_SCHEDULES);
                w.u8(match kind {
                    ScheduleKind::WeekDay => 0,
                    ScheduleKind::YearDay => 1,
                    ScheduleKind::Holiday => 2,
                });
                w.opt(*holder, Writer::holder);
                w.opt(*index, Writer::u8);
                w.0
            }
            Request::ListSchedules { holder } => {
                let mut w = Writer::new(op::LIST_SCHEDULES);
                w.opt(*holder, Writer::holder);
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
            Request::StartUpdate { url, allow_older } => {
                let mut w = Writer::new(op::START_UPDATE);
                w.bool(*allow_older);
                // A URL may be longer than the one-byte-length strings:
                // two bytes of length, bounded by the decoder.
                let url = &url.as_bytes()[..url.len().min(MAX_UPDATE_URL)];
                w.u16(url.len() as u16);
                w.0.extend_from_slice(url);
                w.0
            }
            Request::UpdateBegin { size, sha256 } => {
                let mut w = Writer::new(op::UPDATE_BEGIN);
                w.u64(*size);
                w.0.extend_from_slice(sha256);
                w.0
            }
            Request::UpdateChunk { offset, bytes } => {
                let mut w = Writer::new(op::UPDATE_CHUNK);
                w.u64(*offset);
                let bytes = &bytes[..bytes.len().min(MAX_UPDATE_CHUNK)];
                w.u16(bytes.len() as u16);
                w.0.extend_from_slice(bytes);
                w.0
            }
            Request::UpdateCommit { allow_older } => {
                let mut w = Writer::new(op::UPDATE_COMMIT);
                w.bool(*allow_older);
                w.0
            }
            Request::UpdateAbort => simple(op::UPDATE_ABORT),
        }
    }

    /// Decode; refuses anything not exactly one valid request.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let (opcode, mut r) = header(bytes)?;
        let req = match opcode {
            // A flag byte asks for the software section (issue 20).
            op::STATUS if r.buf.is_empty() => Request::Status,
            op::STATUS => match r.u8("status flags")? {
                STATUS_WITH_UPDATE => Request::StatusWithUpdate,
                _ => {
                    return Err(CommandError::BadValue {
                        field: "status flags",
                        why: "unknown flag",
                    })
                }
            },
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
            op::ENROL_CREDENTIAL => Request::EnrolCredential {
                user: r.u16("user")?,
                method: r.enum_u8("method", &CREDENTIAL_METHODS)?,
            },
            op::DELETE_CREDENTIAL => Request::DeleteCredential {
                user: r.u16("user")?,
                method: r.enum_u8("method", &CREDENTIAL_METHODS)?,
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
            op::PENDING_NOTICES => Request::PendingNotices,
            op::ACK_NOTICES => Request::AckNotices {
                up_to: r.u64("up to")?,
            },
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
                4 => {
                    let v = r.opt("door ajar", Reader::u16)?;
                    if v == Some(0) {
                        return Err(CommandError::BadValue {
                            field: "door ajar",
                            why: "0 seconds; send None to turn the door-ajar alarm off",
                        });
                    }
                    Setting::DoorAjar(v)
                }
                5 => Setting::Language(read_language(&mut r)?),
                6 => Setting::OperatingMode(read_mode(&mut r)?),
                _ => {
                    return Err(CommandError::BadValue {
                        field: "setting",
                        why: "unknown setting",
                    })
                }
            }),
            op::SET_SCHEDULE => Request::SetSchedule(r.schedule()?),
            op::CLEAR_SCHEDULES => Request::ClearSchedules {
                kind: r.enum_u8(
                    "schedule kind",
                    &[
                        ScheduleKind::WeekDay,
                        ScheduleKind::YearDay,
                        ScheduleKind::Holiday,
                    ],
                )?,
                holder: r.opt("holder", Reader::holder)?,
                index: r.opt("index", Reader::u8)?,
            },
            op::LIST_SCHEDULES => Request::ListSchedules {
                holder: r.opt("holder", Reader::holder)?,
            },
            op::RELEASE_LOCKOUT => Request::ReleaseLockout,
            op::SET_AWAY => Request::SetAway(r.bool("away")?),
            op::TIME_SYNC => Request::TimeSync {
                now: r.time("now")?,
            },
            op::START_UPDATE => {
                let allow_older = r.bool("allow_older")?;
                let n = usize::from(r.u16("url length")?);
                if n > MAX_UPDATE_URL {
                    return Err(CommandError::BadValue {
                        field: "url",
                        why: "longer than 1024 bytes",
                    });
                }
                let url = String::from_utf8(r.take(n, "url")?.to_vec()).map_err(|_| {
                    CommandError::BadValue {
                        field: "url",
                        why: "not UTF-8",
                    }
                })?;
                Request::StartUpdate { url, allow_older }
            }
            op::UPDATE_BEGIN => {
                let size = r.u64("size")?;
                let mut sha256 = [0u8; 32];
                sha256.copy_from_slice(r.take(32, "sha256")?);
                Request::UpdateBegin { size, sha256 }
            }
            op::UPDATE_CHUNK => {
                let offset = r.u64("offset")?;
                let n = usize::from(r.u16("chunk length")?);
                if n == 0 || n > MAX_UPDATE_CHUNK {
                    return Err(CommandError::BadValue {
                        field: "chunk",
                        why: "1 to 4000 bytes",
                    });
                }
                Request::UpdateChunk {
                    offset,
                    bytes: r.take(n, "chunk")?.to_vec(),
                }
            }
            op::UPDATE_COMMIT => Request::UpdateCommit {
                allow_older: r.bool("allow_older")?,
            },
            op::UPDATE_ABORT => Request::UpdateAbort,
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
        EventKind::AlarmCleared(a) => {
            w.u8(7);
            w.u8(index_of(&ALARM_KINDS, &a));
        }
        EventKind::Lockout(c) => {
            w.u8(8);
            w.u8(index_of(&LOCKOUT_CHANGES, &c));
        }
        EventKind::Away(armed) => {
            w.u8(9);
            w.bool(armed);
        }
        EventKind::Door(open) => {
            w.u8(10);
            w.bool(open);
        }
        EventKind::Jammed => w.u8(11),
        EventKind::ModuleFault => w.u8(12),
        EventKind::FactoryReset => w.u8(13),
        EventKind::HandingSet => w.u8(14),
        EventKind::ValidityChanged => w.u8(15),
        EventKind::TempPasscode(created) => {
            w.u8(16);
            w.bool(created);
        }
        EventKind::WifiWeak(weak) => {
            w.u8(18);
            w.bool(weak);
        }
        EventKind::Update(step) => {
            w.u8(17);
            w.u8(index_of(&UPDATE_STEPS, &step));
        }
        EventKind::ModuleRecovered => w.u8(19),
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
        7 => EventKind::AlarmCleared(r.enum_u8("alarm kind", &ALARM_KINDS)?),
        8 => EventKind::Lockout(r.enum_u8("lockout change", &LOCKOUT_CHANGES)?),
        9 => EventKind::Away(r.bool("away armed")?),
        10 => EventKind::Door(r.bool("door open")?),
        11 => EventKind::Jammed,
        12 => EventKind::ModuleFault,
        13 => EventKind::FactoryReset,
        14 => EventKind::HandingSet,
        15 => EventKind::ValidityChanged,
        16 => EventKind::TempPasscode(r.bool("visitor passcode made")?),
        18 => EventKind::WifiWeak(r.bool("wifi weak")?),
        17 => EventKind::Update(r.enum_u8("update step", &UPDATE_STEPS)?),
        19 => EventKind::ModuleRecovered,
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
            Response::UpdateOffset { offset } => {
                let mut w = Writer::new(op::R_UPDATE_OFFSET);
                w.u64(*offset);
                w.0
            }
            Response::Status(s) => {
                let mut w = Writer::new(op::R_STATUS);
                w.u8(index_of(&LOCK_STATES, &s.lock));
                w.u8(index_of(&DOOR_STATES, &s.door));
                w.u8(index_of(&BOLT_STATES, &s.bolt));
                w.u8(s.battery_percent.min(100));
                w.u8(bits(&[s.wifi.enabled, s.wifi.connected, s.wifi.weak]));
                w.opt(s.wifi.rssi_dbm, |w, v| w.u8(v as u8));
                w.u8(bits(&[
                    s.alarms.tamper,
                    s.alarms.lockout,
                    s.alarms.duress,
                    s.alarms.low_battery,
                    s.alarms.jam,
                    s.alarms.door_ajar,
                    s.alarms.door_forced_open,
                    s.alarms.module_swap,
                ]));
                // Only in the reply to StatusWithUpdate (see `dispatch`).
                if let Some(u) = &s.update {
                    w.str(super::wire::cut(&u.installed, MAX_VERSION));
                    w.opt(u.other_slot.as_ref(), |w, o| {
                        w.str(super::wire::cut(&o.bootname, MAX_VERSION));
                        w.str(super::wire::cut(&o.version, MAX_VERSION));
                        w.opt(o.good, |w, g| w.u8(u8::from(g)));
                    });
                    w.opt(u.in_progress, |w, (step, progress)| {
                        w.u8(index_of(&UPDATE_STEPS, &step));
                        w.u8(progress.min(100));
                    });
                    w.opt(u.last, |w, step| w.u8(index_of(&UPDATE_STEPS, &step)));
                }
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
            Response::Schedules(list) => {
                let mut w = Writer::new(op::R_SCHEDULES);
                w.list(list, |w, s| w.schedule(s));
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
                w.opt(s.door_ajar_secs, Writer::u16);
                w.u8(s.language.code());
                w.u8(s.operating_mode.code());
                w.0
            }
            Response::Notice(e) => {
                let mut w = Writer::new(op::R_NOTICE);
                write_event(&mut w, e);
                w.0
            }
            Response::Notices { notices, more } => {
                let mut w = Writer::new(op::R_NOTICES);
                w.list(notices, |w, n| {
                    w.u64(n.id);
                    write_event(w, &n.entry);
                });
                w.u16(*more);
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
            op::R_UPDATE_OFFSET => Response::UpdateOffset {
                offset: r.u64("offset")?,
            },
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
                let [enabled, connected, weak] = unbits::<3>(&mut r, "wifi flags")?;
                let rssi_dbm = r.opt("rssi", |r, f| r.u8(f).map(|b| b as i8))?;
                let [tamper, lockout, duress, low_battery, jam, door_ajar, door_forced_open, module_swap] =
                    unbits::<8>(&mut r, "alarms")?;
                let update = if r.buf.is_empty() {
                    None
                } else {
                    Some(UpdateSummary {
                        installed: r.str("installed version", MAX_VERSION)?,
                        other_slot: r.opt("other slot", |r, _| {
                            Ok(SlotSummary {
                                bootname: r.str("slot name", MAX_VERSION)?,
                                version: r.str("slot version", MAX_VERSION)?,
                                good: r.opt("slot verdict", |r, f| match r.u8(f)? {
                                    0 => Ok(false),
                                    1 => Ok(true),
                                    _ => Err(CommandError::BadValue {
                                        field: "slot verdict",
                                        why: "not 0 or 1",
                                    }),
                                })?,
                            })
                        })?,
                        in_progress: r.opt("update in progress", |r, _| {
                            let step = r.enum_u8("update step", &UPDATE_STEPS)?;
                            let progress = r.u8("update progress")?;
                            if progress > 100 {
                                return Err(CommandError::BadValue {
                                    field: "update progress",
                                    why: "above 100 %",
                                });
                            }
                            Ok((step, progress))
                        })?,
                        last: r.opt("last update", |r, _| {
                            r.enum_u8("last update", &UPDATE_STEPS)
                        })?,
                    })
                };
                Response::Status(StatusReport {
                    lock,
                    door,
                    bolt,
                    battery_percent,
                    wifi: WifiStatus {
                        enabled,
                        connected,
                        rssi_dbm,
                        weak,
                    },
                    alarms: Alarms {
                        tamper,
                        lockout,
                        duress,
                        low_battery,
                        jam,
                        door_ajar,
                        door_forced_open,
                        module_swap,
                    },
                    update,
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
            op::R_SCHEDULES => {
                Response::Schedules(r.list("schedules", MAX_LIST, Reader::schedule)?)
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
            op::R_NOTICES => {
                let notices = r.list("notices", MAX_NOTICES_PER_REPLY as usize, |r| {
                    Ok(PendingNotice {
                        id: r.u64("notice id")?,
                        entry: read_event(r)?,
                    })
                })?;
                Response::Notices {
                    notices,
                    more: r.u16("more")?,
                }
            }
            op::R_SETTINGS => {
                let auto_lock_secs = r.opt("auto lock", Reader::u16)?;
                let [lockout_protection, remote_unlock, wifi_enabled] =
                    unbits::<3>(&mut r, "settings flags")?;
                let door_ajar_secs = r.opt("door ajar", Reader::u16)?;
                let language = read_language(&mut r)?;
                let operating_mode = read_mode(&mut r)?;
                Response::Settings(Settings {
                    auto_lock_secs,
                    lockout_protection,
                    remote_unlock,
                    wifi_enabled,
                    door_ajar_secs,
                    language,
                    operating_mode,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_stream_requests_round_trip_and_a_chunk_is_bounded() {
        for req in [
            Request::UpdateBegin {
                size: 256 << 20,
                sha256: [0xAB; 32],
            },
            Request::UpdateChunk {
                offset: 12_000,
                bytes: vec![7; MAX_UPDATE_CHUNK],
            },
            Request::UpdateCommit { allow_older: true },
            Request::UpdateAbort,
        ] {
            let bytes = req.encode();
            assert!(bytes.len() <= MAX_PLAINTEXT);
            assert_eq!(Request::decode(&bytes), Ok(req));
        }
        let offset = Response::UpdateOffset { offset: 1 << 33 };
        assert_eq!(Response::decode(&offset.encode()), Ok(offset));
        // A frame claiming more than a chunk, or an empty one, is refused.
        let mut long = Request::UpdateChunk {
            offset: 0,
            bytes: vec![7; MAX_UPDATE_CHUNK],
        }
        .encode();
        long[10..12].copy_from_slice(&((MAX_UPDATE_CHUNK + 1) as u16).to_be_bytes());
        long.push(7);
        assert!(matches!(
            Request::decode(&long),
            Err(CommandError::BadValue { field: "chunk", .. })
        ));
        let empty = Request::UpdateChunk {
            offset: 0,
            bytes: Vec::new(),
        }
        .encode();
        assert!(matches!(
            Request::decode(&empty),
            Err(CommandError::BadValue { field: "chunk", .. })
        ));
        // A short digest is malformed, not zero-padded.
        let mut begin = Request::UpdateBegin {
            size: 1,
            sha256: [1; 32],
        }
        .encode();
        begin.pop();
        assert!(Request::decode(&begin).is_err());
    }

    #[test]
    fn an_update_url_round_trips_up_to_its_bound_and_no_further() {
        let at = |n: usize| Request::StartUpdate {
            url: format!("https://{}", "a".repeat(n - 8)),
            allow_older: false,
        };
        let ok = at(MAX_UPDATE_URL);
        let bytes = ok.encode();
        assert_eq!(Request::decode(&bytes), Ok(ok));
        // A frame claiming a longer URL is refused, not cut: the length
        // follows the version, opcode and flag bytes.
        let mut long = bytes.clone();
        long[3..5].copy_from_slice(&((MAX_UPDATE_URL + 1) as u16).to_be_bytes());
        long.push(b'a');
        assert!(matches!(
            Request::decode(&long),
            Err(CommandError::BadValue { field: "url", .. })
        ));
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

    /// Issue 17 item 8: the notice requests and the `Notices` reply round
    /// trip; a reply longer than 20 notices, or truncated, is refused.
    #[test]
    fn pending_notices_and_their_ack_round_trip() {
        for r in [
            Request::PendingNotices,
            Request::AckNotices { up_to: 0 },
            Request::AckNotices { up_to: u64::MAX },
        ] {
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
        assert_eq!(Request::PendingNotices.encode(), [COMMAND_VERSION, 0x41]);
        assert_eq!(Request::AckNotices { up_to: 7 }.encode()[1], 0x42);
        let entry = |cursor, kind, user| EventEntry {
            cursor,
            at: Some(WallTime(1_795_000_000)),
            kind,
            user,
        };
        let r = Response::Notices {
            notices: vec![
                PendingNotice {
                    id: 3,
                    entry: entry(40, EventKind::Doorbell, None),
                },
                PendingNotice {
                    id: 4,
                    entry: entry(41, EventKind::Alarm(AlarmKind::Duress), Some(2)),
                },
            ],
            more: 5,
        };
        let bytes = r.encode();
        assert_eq!(bytes[1], op::R_NOTICES);
        assert_eq!(Response::decode(&bytes).expect("decodes"), r);
        assert!(Response::decode(&bytes[..bytes.len() - 1]).is_err());
        let full = Response::Notices {
            notices: vec![
                PendingNotice {
                    id: 1,
                    entry: entry(1, EventKind::Doorbell, None),
                };
                usize::from(MAX_NOTICES_PER_REPLY)
            ],
            more: 0,
        };
        let bytes = full.encode();
        assert!(bytes.len() <= MAX_PLAINTEXT, "{} bytes", bytes.len());
        assert_eq!(Response::decode(&bytes).expect("decodes"), full);
        let mut long = bytes.clone();
        long[2] += 1;
        assert!(Response::decode(&long).is_err(), "21 notices are refused");
    }

    #[test]
    fn door_alarm_settings_and_events_round_trip() {
        for r in [
            Request::SetSetting(Setting::DoorAjar(Some(60))),
            Request::SetSetting(Setting::DoorAjar(None)),
        ] {
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
        // "0 s" has one spelling only (off), as for auto-lock.
        let mut w = Writer::new(op::SET_SETTING);
        w.u8(4);
        w.opt(Some(0), Writer::u16);
        assert!(Request::decode(&w.0).is_err());
        let s = Response::Settings(Settings {
            auto_lock_secs: None,
            lockout_protection: true,
            remote_unlock: false,
            wifi_enabled: true,
            door_ajar_secs: Some(60),
            language: crate::core::Language::En,
            operating_mode: OperatingMode::Passage,
        });
        assert_eq!(Response::decode(&s.encode()).expect("decodes"), s);
        for a in [AlarmKind::DoorAjar, AlarmKind::DoorForcedOpen] {
            let n = Response::Notice(EventEntry {
                cursor: 1,
                at: None,
                kind: EventKind::Alarm(a),
                user: None,
            });
            assert_eq!(Response::decode(&n.encode()).expect("decodes"), n);
        }
    }

    /// Issue 17 item 4: the prompt language is set (SetSetting tag 5) and
    /// read back (the settings reply's last byte) by its code; a code the
    /// lock does not know is refused, in either direction, rather than
    /// read as a default.
    #[test]
    fn the_language_setting_round_trips_and_unknown_codes_are_refused() {
        use crate::core::Language;
        for l in Language::ALL {
            let r = Request::SetSetting(Setting::Language(l));
            let bytes = r.encode();
            assert_eq!(bytes[bytes.len() - 2..], [5, l.code()]);
            assert_eq!(Request::decode(&bytes), Ok(r));
            let s = Response::Settings(Settings {
                auto_lock_secs: Some(30),
                lockout_protection: false,
                remote_unlock: true,
                wifi_enabled: false,
                door_ajar_secs: None,
                language: l,
                operating_mode: OperatingMode::Normal,
            });
            let bytes = s.encode();
            assert_eq!(bytes[bytes.len() - 2], l.code());
            assert_eq!(Response::decode(&bytes).expect("decodes"), s);
            let mut unknown = bytes.clone();
            let at = unknown.len() - 2;
            unknown[at] = 9;
            assert!(Response::decode(&unknown).is_err());
        }
        let mut w = Writer::new(op::SET_SETTING);
        w.u8(5);
        w.u8(2);
        let e = Request::decode(&w.0).unwrap_err();
        assert!(e.to_string().contains("language"), "{e}");
    }

    /// Issue 18 item 2: the operating mode is set (SetSetting tag 6, the
    /// byte is Matter's `OperatingModeEnum` value) and read back (the
    /// settings reply's last byte); an unknown byte is refused both ways.
    #[test]
    fn the_operating_mode_setting_round_trips_and_unknown_codes_are_refused() {
        use crate::core::types::OperatingMode;
        for m in OperatingMode::ALL {
            let r = Request::SetSetting(Setting::OperatingMode(m));
            let bytes = r.encode();
            assert_eq!(bytes[bytes.len() - 2..], [6, m.code()]);
            assert_eq!(Request::decode(&bytes), Ok(r));
            let s = Response::Settings(Settings {
                auto_lock_secs: None,
                lockout_protection: true,
                remote_unlock: false,
                wifi_enabled: true,
                door_ajar_secs: Some(60),
                language: crate::core::Language::En,
                operating_mode: m,
            });
            let bytes = s.encode();
            assert_eq!(bytes[bytes.len() - 1], m.code());
            assert_eq!(Response::decode(&bytes).expect("decodes"), s);
            let mut unknown = bytes.clone();
            *unknown.last_mut().unwrap() = 5;
            assert!(Response::decode(&unknown).is_err());
            assert_eq!(m.tag().parse::<OperatingMode>(), Ok(m));
        }
        let mut w = Writer::new(op::SET_SETTING);
        w.u8(6);
        w.u8(5);
        let e = Request::decode(&w.0).unwrap_err();
        assert!(e.to_string().contains("operating mode"), "{e}");
    }

    /// Issue 17 item 2: the schedule requests and the listing round-trip;
    /// a bad holder kind, hour or mode is refused by the codec.
    #[test]
    fn schedule_requests_round_trip() {
        use crate::core::schedule::{Holder, Period, Schedule, ScheduleKind, WeekDay};
        use crate::core::types::{AppKeyId, TempPasscodeId, UserNumber};
        let list = vec![
            Schedule::WeekDay {
                holder: Holder::User(UserNumber::new(12).unwrap()),
                index: 3,
                window: WeekDay::new(0b0111_1110, (7, 5), (23, 59)).unwrap(),
            },
            Schedule::YearDay {
                holder: Holder::TempPasscode(TempPasscodeId(9)),
                index: 4,
                period: Period::new(1_800_000_000, 1_800_086_400).unwrap(),
            },
            Schedule::Holiday {
                index: 8,
                period: Period::new(-5, 5).unwrap(),
                mode: OperatingMode::Privacy,
            },
        ];
        for s in &list {
            let r = Request::SetSchedule(*s);
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
        for r in [
            Request::ClearSchedules {
                kind: ScheduleKind::WeekDay,
                holder: Some(Holder::GuestKey(AppKeyId(7))),
                index: Some(2),
            },
            Request::ClearSchedules {
                kind: ScheduleKind::Holiday,
                holder: None,
                index: None,
            },
            Request::ListSchedules { holder: None },
        ] {
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
        let resp = Response::Schedules(list);
        assert_eq!(Response::decode(&resp.encode()).expect("decodes"), resp);
        // Week-day: kind 0, holder kind 3 (unknown).
        let mut w = Writer::new(op::SET_SCHEDULE);
        for b in [0, 3, 0, 1, 1, 1, 8, 0, 9, 0] {
            w.u8(b);
        }
        assert!(Request::decode(&w.0).is_err());
        // Hour 24.
        let mut w = Writer::new(op::SET_SCHEDULE);
        for b in [0, 0, 0, 1, 1, 1, 24, 0, 9, 0] {
            w.u8(b);
        }
        assert!(Request::decode(&w.0).is_err());
    }

    /// Issue 17 item 7: every event kind the app lists round-trips, and a
    /// kind byte or sub-byte the lock does not know is refused.
    #[test]
    fn every_app_event_kind_round_trips() {
        let mut kinds = vec![
            EventKind::Unlocked(UnlockMethod::Ble),
            EventKind::Locked,
            EventKind::VerificationFailed,
            EventKind::SettingChanged,
            EventKind::UserChanged,
            EventKind::Doorbell,
            EventKind::Jammed,
            EventKind::ModuleFault,
            EventKind::ModuleRecovered,
            EventKind::FactoryReset,
            EventKind::HandingSet,
            EventKind::ValidityChanged,
        ];
        for b in [true, false] {
            kinds.extend([
                EventKind::Away(b),
                EventKind::Door(b),
                EventKind::TempPasscode(b),
                EventKind::WifiWeak(b),
            ]);
        }
        for a in ALARM_KINDS {
            kinds.extend([EventKind::Alarm(a), EventKind::AlarmCleared(a)]);
        }
        kinds.extend(LOCKOUT_CHANGES.map(EventKind::Lockout));
        kinds.extend(UPDATE_STEPS.map(EventKind::Update));
        let names: std::collections::BTreeSet<String> = kinds.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), kinds.len(), "two kinds share a name");
        for page in kinds.chunks(MAX_EVENTS_PER_PAGE as usize) {
            let r = Response::Events {
                events: page
                    .iter()
                    .enumerate()
                    .map(|(i, &kind)| EventEntry {
                        cursor: i as u64,
                        at: None,
                        kind,
                        user: Some(3),
                    })
                    .collect(),
                next_cursor: None,
            };
            assert_eq!(Response::decode(&r.encode()).expect("decodes"), r);
        }
        // Unknown kind byte, and an out-of-range lockout change.
        for (kind, sub) in [(20u8, None), (8, Some(5u8)), (18, Some(2))] {
            let mut w = Writer::new(op::R_NOTICE);
            w.u64(1);
            w.opt(None::<WallTime>, Writer::time);
            w.u8(kind);
            if let Some(b) = sub {
                w.u8(b);
            }
            w.opt(None::<u16>, Writer::u16);
            assert!(Response::decode(&w.0).is_err(), "kind {kind} {sub:?}");
        }
    }

    fn a_status(update: Option<UpdateSummary>) -> StatusReport {
        StatusReport {
            lock: LockState::Locked,
            door: DoorState::Closed,
            bolt: BoltState::Extended,
            battery_percent: 80,
            wifi: WifiStatus {
                enabled: true,
                connected: true,
                rssi_dbm: Some(-60),
                weak: false,
            },
            alarms: Alarms::default(),
            update,
        }
    }

    /// Issue 20: the software section goes only to an app that asks with
    /// the flag byte; the plain status request and reply keep the bytes an
    /// app from before knows (an older decoder refuses trailing bytes).
    #[test]
    fn the_software_section_is_asked_for_and_the_plain_status_is_unchanged() {
        assert_eq!(Request::Status.encode(), vec![COMMAND_VERSION, op::STATUS]);
        assert_eq!(
            Request::StatusWithUpdate.encode(),
            vec![COMMAND_VERSION, op::STATUS, STATUS_WITH_UPDATE]
        );
        for r in [Request::Status, Request::StatusWithUpdate] {
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
        assert!(Request::decode(&[COMMAND_VERSION, op::STATUS, 2]).is_err());
        assert!(Request::decode(&[COMMAND_VERSION, op::STATUS, 1, 1]).is_err());

        let plain = Response::Status(a_status(None)).encode();
        assert_eq!(
            plain,
            vec![
                COMMAND_VERSION,
                op::R_STATUS,
                0,
                0,
                0,
                80,
                0b011,
                1,
                (-60i8) as u8,
                0
            ],
            "the plain reply is the pre-issue-20 encoding"
        );
        assert_eq!(
            Response::decode(&plain),
            Ok(Response::Status(a_status(None)))
        );
        for update in [
            UpdateSummary {
                installed: "0.2.0".into(),
                other_slot: Some(SlotSummary {
                    bootname: "A".into(),
                    version: "0.1.0".into(),
                    good: Some(true),
                }),
                in_progress: None,
                last: Some(UpdateStep::MarkedGood),
            },
            UpdateSummary {
                installed: "0.1.0".into(),
                other_slot: None,
                in_progress: Some((UpdateStep::Installing, 42)),
                last: None,
            },
        ] {
            let r = Response::Status(a_status(Some(update)));
            assert_eq!(Response::decode(&r.encode()), Ok(r));
        }
        // A version longer than the bound is cut, never refused by the lock.
        let long = a_status(Some(UpdateSummary {
            installed: "9".repeat(300),
            other_slot: None,
            in_progress: None,
            last: None,
        }));
        match Response::decode(&Response::Status(long).encode()) {
            Ok(Response::Status(StatusReport {
                update: Some(u), ..
            })) => assert_eq!(u.installed.len(), MAX_VERSION),
            other => panic!("{other:?}"),
        }
        let mut bad = Response::Status(a_status(Some(UpdateSummary {
            installed: "1".into(),
            other_slot: None,
            in_progress: Some((UpdateStep::Installing, 42)),
            last: None,
        })))
        .encode();
        let at = bad.len() - 2;
        bad[at] = 101; // progress above 100 %
        assert!(Response::decode(&bad).is_err());
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
