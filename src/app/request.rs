//! What an app may ask of the lock (B-6.6, B-9): the [`Request`] enum, its
//! argument types, and the engine command each one becomes.
//!
//! ```text
//!  Request ─ engine_command ─┬─ Some(AppCommand) ─► Input::App ─► engine decides
//!                            └─ None ─► answered by dispatch (status, listings,
//!                                       events, guest invites, time sync)
//! ```
//!
//! The encoding is in `codec.rs`, the role check in `authz.rs`.
use super::codec::CommandError;
use super::wire::Role;
use crate::core::input::AppCommand;
use crate::core::schedule::{Holder, Schedule, ScheduleKind};
use crate::core::time::{Validity, WallTime};
use crate::core::types as core_types;

/// Most events one page may return.
pub const MAX_EVENTS_PER_PAGE: u8 = 32;
/// The most notices in one `Notices` reply (issue 17 item 8); the reply
/// counts the rest, which the app fetches after acknowledging these.
pub const MAX_NOTICES_PER_REPLY: u8 = 20;

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
    /// Door-ajar alarm delay in seconds; `None` = off (issue 17 item 3).
    DoorAjar(Option<u16>),
    /// The prompt language (issue 17 item 4).
    Language(crate::core::Language),
    /// The operating mode (issue 18 item 2).
    OperatingMode(crate::core::types::OperatingMode),
}

/// A credential enrolled at the lock (issue 17 item 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialMethod {
    /// Face.
    Face,
    /// Palm vein.
    Palm,
    /// Fingerprint.
    Fingerprint,
    /// Passcode.
    Passcode,
}

impl CredentialMethod {
    fn to_core(self) -> core_types::CredentialKind {
        match self {
            CredentialMethod::Face => core_types::CredentialKind::Face,
            CredentialMethod::Palm => core_types::CredentialKind::Palm,
            CredentialMethod::Fingerprint => core_types::CredentialKind::Fingerprint,
            CredentialMethod::Passcode => core_types::CredentialKind::Passcode,
        }
    }
}

/// A request from the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Lock/door/bolt state, battery, Wi-Fi, alarms (B-9.1).
    Status,
    /// [`Request::Status`] plus the software versions and A/B slots
    /// (issue 20): the status opcode with a flag byte, so a lock that
    /// predates it refuses it (trailing bytes) and the app asks again
    /// without the flag.
    StatusWithUpdate,
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
    /// Put the lock into enrolment of `method` for existing user `user`;
    /// the person enrols at the lock (issue 17 item 1, B-9.3).
    EnrolCredential {
        /// User number.
        user: u16,
        /// What to enrol.
        method: CredentialMethod,
    },
    /// Delete the user's newest credential of `method` (issue 17 item 1).
    DeleteCredential {
        /// User number.
        user: u16,
        /// Which kind.
        method: CredentialMethod,
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
    /// Issue 17 item 8: the owner notices this key has not acknowledged,
    /// oldest first (at most [`MAX_NOTICES_PER_REPLY`]; the reply counts
    /// the rest). Owner keys only. A BLE-only owner's app sends it right
    /// after its session opens.
    PendingNotices,
    /// Issue 17 item 8: every notice up to and including id `up_to` (from
    /// a `Notices` reply) reached this app; they are not offered to this
    /// key again. Owner keys only.
    AckNotices {
        /// The newest notice id the app has shown.
        up_to: u64,
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
    /// Set (insert or replace) a week-day, year-day or holiday schedule
    /// (issue 17 item 2; owner only). The engine checks the rules.
    SetSchedule(Schedule),
    /// Clear the schedules of `kind` for `holder` (`None` for holidays),
    /// the one at `index` or (`None`) all of them.
    ClearSchedules {
        /// Week-day, year-day or holiday.
        kind: ScheduleKind,
        /// Whose (`None`: the lock's holidays).
        holder: Option<Holder>,
        /// Which one (`None`: all).
        index: Option<u8>,
    },
    /// The schedules of `holder`, or (`None`) the lock's first
    /// [`super::codec::MAX_LIST`] in order (holidays, then by holder).
    ListSchedules {
        /// Whose.
        holder: Option<Holder>,
    },
    /// Install the RAUC bundle at `url` when it is safe (issue 20; owner
    /// only). The answer only says the lock took the request: progress
    /// and the result are in the event log.
    StartUpdate {
        /// An `http://` or `https://` URL the lock can reach.
        url: String,
        /// Let a bundle that is not newer than the running version install.
        allow_older: bool,
    },
    /// Start streaming a bundle of `size` bytes with this sha256 over the
    /// BLE session (issue 20; owner only, BLE only). Answered with the
    /// offset the lock wants next: 0, or where the same bundle stopped.
    UpdateBegin { size: u64, sha256: [u8; 32] },
    /// The bundle's bytes at `offset` (at most
    /// [`super::codec::MAX_UPDATE_CHUNK`]). Answered with the next offset.
    UpdateChunk { offset: u64, bytes: Vec<u8> },
    /// The whole bundle is there: check its sha256 and install it when it
    /// is safe, as `StartUpdate` does for a URL.
    UpdateCommit { allow_older: bool },
    /// Drop the streamed bundle.
    UpdateAbort,
}

impl Request {
    /// Short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::StatusWithUpdate => "status_with_update",
            Request::Unlock => "unlock",
            Request::Lock => "lock",
            Request::ListUsers => "list users",
            Request::AddUser { .. } => "add user",
            Request::DeleteUser { .. } => "delete user",
            Request::SetUserValidity { .. } => "set user validity",
            Request::EnrolCredential { .. } => "enrol credential",
            Request::DeleteCredential { .. } => "delete credential",
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
            Request::PendingNotices => "pending notices",
            Request::AckNotices { .. } => "ack notices",
            Request::GetSettings => "get settings",
            Request::SetSetting(_) => "set setting",
            Request::ReleaseLockout => "release lockout",
            Request::SetAway(_) => "set away mode",
            Request::TimeSync { .. } => "time sync",
            Request::SetSchedule(_) => "set schedule",
            Request::ClearSchedules { .. } => "clear schedules",
            Request::ListSchedules { .. } => "list schedules",
            Request::StartUpdate { .. } => "start update",
            Request::UpdateBegin { .. } => "update begin",
            Request::UpdateChunk { .. } => "update chunk",
            Request::UpdateCommit { .. } => "update commit",
            Request::UpdateAbort => "update abort",
        }
    }
}

/// A user number from the wire (B-1.4: 001..=999).
pub(super) fn user_number(n: u16) -> Result<core_types::UserNumber, CommandError> {
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
        Ok(Some(match self {
            Request::Unlock => AppCommand::Unlock,
            Request::Lock => AppCommand::Lock,
            Request::AddUser { role: r, validity } => AppCommand::AddUser {
                role: r.to_core(),
                validity: *validity,
            },
            Request::DeleteUser { user } => AppCommand::DeleteUser(user_number(*user)?),
            Request::SetUserValidity { user, validity } => {
                AppCommand::SetValidity(user_number(*user)?, *validity)
            }
            Request::StartUpdate { url, allow_older } => AppCommand::StartUpdate {
                source: url.clone(),
                allow_older: *allow_older,
            },
            Request::EnrolCredential { user, method } => AppCommand::EnrolFor {
                user: user_number(*user)?,
                kind: method.to_core(),
            },
            Request::DeleteCredential { user, method } => AppCommand::DeleteCredentialOf {
                user: user_number(*user)?,
                kind: method.to_core(),
            },
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
                    digits: digits.as_str().into(),
                    validity,
                    one_time,
                }
            }
            Request::RevokePasscode { id } => {
                AppCommand::RevokeTempPasscode(core_types::TempPasscodeId(u32::from(*id)))
            }
            Request::SetDuressPasscode { user, digits } => AppCommand::SetDuressPasscode {
                user: user_number(*user)?,
                digits: digits.as_str().into(),
            },
            Request::SetSetting(s) => AppCommand::Setting(match *s {
                Setting::AutoLock(secs) => core_types::SettingChange::AutoLock(
                    secs.map(|v| std::time::Duration::from_secs(u64::from(v))),
                ),
                Setting::LockoutProtection(b) => core_types::SettingChange::LockoutProtection(b),
                Setting::RemoteUnlock(b) => core_types::SettingChange::RemoteUnlock(b),
                Setting::WifiEnabled(b) => core_types::SettingChange::Wifi(b),
                Setting::DoorAjar(secs) => core_types::SettingChange::DoorAjar(
                    secs.map(|v| std::time::Duration::from_secs(u64::from(v))),
                ),
                Setting::Language(l) => core_types::SettingChange::Language(l),
                Setting::OperatingMode(m) => core_types::SettingChange::OperatingMode(m),
            }),
            Request::ReleaseLockout => AppCommand::ReleaseLockout,
            Request::ListOwnerKeys => AppCommand::ListOwnerKeys,
            Request::RevokeOwnerKey { slot } => {
                AppCommand::RevokeOwnerKey(core_types::AppKeyId(u32::from(*slot)))
            }
            Request::SetAway(on) => AppCommand::SetAway(*on),
            Request::SetSchedule(s) => AppCommand::SetSchedule(*s),
            Request::ClearSchedules {
                kind,
                holder,
                index,
            } => AppCommand::ClearSchedules {
                kind: *kind,
                holder: *holder,
                index: *index,
            },
            Request::ListSchedules { holder } => AppCommand::ListSchedules { holder: *holder },
            Request::Status
            | Request::StatusWithUpdate
            | Request::ListUsers
            | Request::ListPasscodes
            | Request::CreateGuestKey { .. }
            | Request::ListGuestKeys
            | Request::RevokeGuestKey { .. }
            | Request::Events { .. }
            | Request::PendingNotices
            | Request::AckNotices { .. }
            | Request::GetSettings
            | Request::TimeSync { .. }
            | Request::UpdateBegin { .. }
            | Request::UpdateChunk { .. }
            | Request::UpdateCommit { .. }
            | Request::UpdateAbort => return Ok(None),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::crypto::KeyId;
    use crate::app::wire::Principal;
    use crate::core::types::AppKeyId;

    fn guest(from: i64, until: i64) -> Principal {
        Principal::Guest {
            key_id: KeyId([1; 8]),
            valid_from: WallTime(from),
            valid_until: WallTime(until),
        }
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
            crate::core::Principal::Guest {
                key: AppKeyId(4),
                validity: Validity {
                    from: Some(WallTime(5)),
                    until: Some(WallTime(10))
                }
            }
        );
    }
}
