//! What a Matter fabric's administrator may do (the Door Lock cluster's
//! commands, issue 18), after the node's CASE session and access control
//! list established who it is.
//!
//! ```text
//!  AppRequest{principal: Matter{fabric, node}, via: Matter, command}
//!     │ authorise: an administrator exists (a lock still in its initial
//!     │            state takes no remote commands, B-2.4)
//!     ▼
//!  Unlock / UnlockWithCode  B-6.7 remote unlock on, not locked out; a PIN is
//!                           checked exactly, a wrong one counts in the
//!                           keypad's budget (B-7.1, committed before the
//!                           answer; a disabled keypad takes no PIN)
//!  Lock                     as the app's lock
//!  AddUserAt / SetRole / DeleteUser / SetPasscode / DeleteCredential
//!                           the menu's rules: one PIN per user (B-1.2),
//!                           B-2.3 passcode rules, the last administrator stays
//!  Setting(auto-lock, remote unlock, require PIN, operating mode)
//!                           the app's rules (`core::modes`: Privacy is not
//!                           left from here)
//!  SetSchedule / ClearSchedules
//!                           a user's week-day and year-day schedules and the
//!                           holidays, the app's rules (`core::schedule`);
//!                           not those of visitor codes and guest keys
//!  anything else            Forbidden (keys, invites, clock, lockout release)
//! ```
//!
//! Decision: a Matter administrator has the owner's rights over users and
//! settings but not over the app's keys and guest invites, the clock, or
//! ending a lockout (B-7.2 stays the owner's app's): a controller that can
//! be reached from far away must not be able to wipe the brute-force budget.
use core::time::Duration;

use zeroize::Zeroizing;

use super::action::{Action, AppError, AppOk, AppResult, Notice};
use super::app::limit_error;
use super::engine::{Engine, Out};
use super::event::{AlarmKind, EventKind, LockHow};
use super::input::{AppCommand, Channel};
use super::passcode::{Passcode, PasscodeTarget};
use super::redacted::Redacted;
use super::time::Validity;
use super::types::{
    Change, Credential, CredentialId, CredentialKind, CredentialSecret, Method, Role,
    SettingChange, User, UserNumber,
};

impl Engine {
    /// A Matter principal may act once the lock has an administrator.
    pub(super) fn authorise_matter(&self) -> Result<(), AppError> {
        if self.dir.has_admin() {
            Ok(())
        } else {
            Err(AppError::NoAdmin)
        }
    }

    /// The principal is Matter's whatever `_via` says: the channel that
    /// built it is the Matter node.
    pub(super) fn matter_command(
        &mut self,
        out: &mut Out,
        _via: Channel,
        cmd: AppCommand,
    ) -> AppResult {
        match cmd {
            AppCommand::Unlock => self.matter_unlock(out, None, None),
            AppCommand::UnlockWithCode { code, relock_after } => {
                self.matter_unlock(out, code.map(Redacted::into_inner), relock_after)
            }
            AppCommand::Lock => self.app_lock(out, LockHow::Matter),
            AppCommand::AddUserAt { user, role } => {
                self.not_busy()?;
                if self.dir.users.contains_key(&user) {
                    return Err(AppError::UserExists);
                }
                self.persist(
                    out,
                    vec![Change::PutUser(User {
                        number: user,
                        role,
                        validity: Validity::default(),
                    })],
                );
                self.log(out, EventKind::UserAdded { user });
                Ok(AppOk::UserAdded(user))
            }
            AppCommand::SetRole { user, role } => {
                self.not_busy()?;
                let u = self
                    .dir
                    .users
                    .get(&user)
                    .ok_or(AppError::NoSuchUser)?
                    .clone();
                if u.role == Role::Admin && role != Role::Admin && self.dir.admins().count() <= 1 {
                    return Err(AppError::LastAdmin);
                }
                if u.role != role {
                    self.persist(out, vec![Change::PutUser(User { role, ..u })]);
                }
                Ok(AppOk::Done)
            }
            AppCommand::DeleteUser(user) => {
                // The app's rules: not the last administrator, not the only user.
                self.not_busy()?;
                self.may_delete(user).map_err(|p| match p {
                    super::action::Prompt::NoSuchUser => AppError::NoSuchUser,
                    super::action::Prompt::CannotDeleteLastAdmin => AppError::LastAdmin,
                    _ => AppError::OnlyUser,
                })?;
                self.delete_user(out, user);
                Ok(AppOk::Done)
            }
            AppCommand::SetPasscode { user, digits } => {
                self.set_passcode(out, user, digits.into_inner())
            }
            AppCommand::DeleteCredential(id) => self.delete_credential(out, id),
            AppCommand::Setting(
                change @ (SettingChange::AutoLock(_)
                | SettingChange::RemoteUnlock(_)
                | SettingChange::RequirePinRemote(_)
                | SettingChange::OperatingMode(_)),
            ) => self.change_setting(out, change),
            // Issue 18: the users' schedules and the holidays. Visitor
            // codes and guest keys are the owner's app's, schedules and all.
            AppCommand::SetSchedule(s) if matter_may_schedule(s.key().holder()) => {
                self.set_schedule(out, s)
            }
            AppCommand::ClearSchedules {
                kind,
                holder,
                index,
            } if matter_may_schedule(holder) => self.clear_schedules(out, kind, holder, index),
            _ => Err(AppError::Forbidden),
        }
    }

    /// Matter `UnlockDoor` / `UnlockWithTimeout`.
    fn matter_unlock(
        &mut self,
        out: &mut Out,
        code: Option<Zeroizing<String>>,
        relock_after: Option<Duration>,
    ) -> AppResult {
        // B-6.7: Matter is a remote channel.
        if !(self.remote_unlock_on() && self.settings.wifi) {
            return Err(AppError::RemoteUnlockDisabled);
        }
        // Issue 18: Privacy refuses before any PIN is looked at (nothing
        // counted); in Vacation a PIN must be an administrator's, below.
        self.mode_admits_app(true)?;
        if self.lockout.is_locked(self.now.mono) {
            return Err(AppError::LockedOut);
        }
        if self.handing.is_none() {
            return Err(AppError::NoHanding);
        }
        let Some(code) = code else {
            if self.settings.require_pin_remote {
                return Err(AppError::CodeRequired);
            }
            self.unlock_relocking(out, Method::Matter, None, relock_after);
            return Ok(AppOk::Done);
        };
        // Issue 13: a keypad the brute-force budget disabled takes no PIN
        // from a controller either (only the owner's app releases it).
        if self.lockout.keypad_disabled() {
            return Err(AppError::LockedOut);
        }
        // A code that breaks the B-2.3 rules can be no stored code: it is
        // a wrong code like any other, and counted. One code is one guess
        // (no anti-peep windows over a remote channel).
        let target = Passcode::parse(&code)
            .ok()
            .and_then(|p| self.dir.passcodes().exact(&self.macer, p.digits()));
        let wall = self.now.wall;
        let verdict = match target {
            None => MatterPin::Wrong,
            Some(PasscodeTarget::User { user, duress, .. }) => match self.dir.users.get(&user) {
                None => MatterPin::Wrong,
                Some(u) if !self.user_in_time(u) => MatterPin::OutsideValidity {
                    method: if duress {
                        Method::DuressPasscode
                    } else {
                        Method::Passcode
                    },
                    user: Some(user),
                },
                // Issue 18: refused by the mode like outside its window.
                Some(u) if !self.mode_admits_user(u.role) => MatterPin::OutsideValidity {
                    method: Method::Passcode,
                    user: Some(user),
                },
                Some(_) => MatterPin::User { user, duress },
            },
            Some(PasscodeTarget::Temp(id)) => match self.dir.temp_passcodes.get(&id) {
                None => MatterPin::Wrong,
                // Every visitor code has an end (issue 13 item 3).
                Some(t)
                    if t.validity.until.is_none()
                        || !t.validity.admits(wall)
                        || !self.schedule_admits(super::schedule::Holder::TempPasscode(id)) =>
                {
                    MatterPin::OutsideValidity {
                        method: Method::TempPasscode,
                        user: None,
                    }
                }
                Some(_) if !self.mode_admits_visitor() => MatterPin::OutsideValidity {
                    method: Method::TempPasscode,
                    user: None,
                },
                Some(t) => MatterPin::Temp {
                    id,
                    one_time: t.one_time,
                },
            },
        };
        // Issue 13: the attempt is committed, as if it failed, before any
        // answer (attempt.rs); a one-time code is spent in that commit.
        let extra = match verdict {
            MatterPin::Temp { id, one_time: true } => vec![Change::DeleteTempPasscode(id)],
            _ => Vec::new(),
        };
        let pending = self.begin_attempt(out, Method::Matter, 1, extra);
        match verdict {
            MatterPin::Wrong => {
                self.attempt_failed(out, pending, Method::Matter, None);
                Err(AppError::WrongCode)
            }
            MatterPin::OutsideValidity { method, user } => {
                // Issue 13 item 4: counted and answered like a wrong code,
                // so a guesser cannot learn a code that works later; the
                // owner's log says why.
                self.log(out, EventKind::OutsideValidity { method, user });
                self.attempt_failed(out, pending, Method::Matter, None);
                Err(AppError::WrongCode)
            }
            MatterPin::User { user, duress } => {
                if duress {
                    // B-6.9: opens as usual and silently tells the owner.
                    self.unlock_relocking(out, Method::DuressPasscode, Some(user), relock_after);
                    self.raise_alarm(out, AlarmKind::Duress, None);
                    out.push(Action::Notify(Notice::Duress { user }));
                } else {
                    self.unlock_relocking(out, Method::Matter, Some(user), relock_after);
                }
                self.attempt_resolved(out, pending, true);
                Ok(AppOk::Done)
            }
            MatterPin::Temp { .. } => {
                self.unlock_relocking(out, Method::TempPasscode, None, relock_after);
                self.attempt_resolved(out, pending, true);
                Ok(AppOk::Done)
            }
        }
    }

    /// One PIN per user (B-1.2), following B-2.3; a new one replaces theirs.
    fn set_passcode(
        &mut self,
        out: &mut Out,
        user: UserNumber,
        digits: Zeroizing<String>,
    ) -> AppResult {
        self.not_busy()?;
        if !self.dir.users.contains_key(&user) {
            return Err(AppError::NoSuchUser);
        }
        let code = Passcode::parse(&digits).map_err(|e| AppError::BadPasscode(e.to_string()))?;
        let old = self
            .dir
            .credentials
            .values()
            .find(|c| c.user == user && c.kind == CredentialKind::Passcode)
            .map(|c| c.id);
        if old.is_none() {
            self.dir
                .check_limits(user, CredentialKind::Passcode)
                .map_err(limit_error)?;
        }
        let replaced = |t: &PasscodeTarget| matches!(t, PasscodeTarget::User { credential, .. } if Some(*credential) == old);
        if self
            .dir
            .passcodes()
            .conflicts(&self.macer, code.digits(), replaced)
        {
            return Err(AppError::BadPasscode(
                "it equals or contains a passcode already in use; choose another".into(),
            ));
        }
        let mut changes: Vec<Change> = old.map(Change::DeleteCredential).into_iter().collect();
        changes.push(Change::PutCredential(Credential {
            id: self.dir.next_credential_id(),
            user,
            kind: CredentialKind::Passcode,
            secret: CredentialSecret::Passcode(self.macer.mac(code.digits())),
        }));
        self.persist(out, changes);
        self.log(
            out,
            EventKind::CredentialAdded {
                user,
                kind: CredentialKind::Passcode,
            },
        );
        Ok(AppOk::Done)
    }

    /// Remove one credential by the menu's and the app's rule
    /// (`remove_credential`): a module-held template leaves the module, and
    /// the last credential that opens the menu for an administrator stays.
    pub(super) fn delete_credential(&mut self, out: &mut Out, id: CredentialId) -> AppResult {
        self.not_busy()?;
        self.remove_credential(out, id)?;
        Ok(AppOk::Done)
    }
}

/// What a PIN sent with `UnlockDoor` amounts to, decided before anything
/// is shown (the keypad's verdict, for one exact code).
#[derive(Debug, Clone, Copy)]
enum MatterPin {
    Wrong,
    OutsideValidity {
        method: Method,
        user: Option<UserNumber>,
    },
    User {
        user: UserNumber,
        duress: bool,
    },
    Temp {
        id: super::types::TempPasscodeId,
        one_time: bool,
    },
}

/// Whose schedules a Matter administrator may set: a user's, or the
/// lock's holidays (`None`).
fn matter_may_schedule(holder: Option<super::schedule::Holder>) -> bool {
    matches!(holder, None | Some(super::schedule::Holder::User(_)))
}
