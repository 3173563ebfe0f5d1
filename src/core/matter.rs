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
//!                           checked exactly, a wrong one counts (B-7.1)
//!  Lock                     as the app's lock
//!  AddUserAt / SetRole / DeleteUser / SetPasscode / DeleteCredential
//!                           the menu's rules: one PIN per user (B-1.2),
//!                           B-2.3 passcode rules, the last administrator stays
//!  Setting(auto-lock, remote unlock, require PIN)
//!  anything else            Forbidden (keys, invites, clock, lockout release)
//! ```
//!
//! Decision: a Matter administrator has the owner's rights over users and
//! settings but not over the app's keys and guest invites, the clock, or
//! ending a lockout (B-7.2 stays the owner's app's): a controller that can
//! be reached from far away must not be able to wipe the brute-force budget.
use core::time::Duration;

use zeroize::Zeroizing;

use super::action::{Action, AppError, AppOk, AppResult, ModuleCmd, Notice};
use super::app::limit_error;
use super::engine::{Engine, Out};
use super::event::{AlarmKind, EventKind, LockHow};
use super::input::{AppCommand, Channel};
use super::passcode::{Passcode, PasscodeTarget};
use super::time::Validity;
use super::types::{
    Change, Credential, CredentialId, CredentialKind, CredentialSecret, Method, Modality, Role,
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
                self.matter_unlock(out, code.map(Zeroizing::new), relock_after)
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
                self.set_passcode(out, user, Zeroizing::new(digits))
            }
            AppCommand::DeleteCredential(id) => self.delete_credential(out, id),
            AppCommand::Setting(
                change @ (SettingChange::AutoLock(_)
                | SettingChange::RemoteUnlock(_)
                | SettingChange::RequirePinRemote(_)),
            ) => self.change_setting(out, change),
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
        if !(self.settings.remote_unlock && self.settings.wifi) {
            return Err(AppError::RemoteUnlockDisabled);
        }
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
        // A code that breaks the B-2.3 rules can be no stored code: it is
        // a wrong code like any other, and counted.
        let target = Passcode::parse(&code)
            .ok()
            .and_then(|p| self.dir.passcodes().exact(&self.macer, p.digits()));
        match target {
            None => {
                self.verification_failed(out, Method::Matter);
                Err(AppError::WrongCode)
            }
            Some(PasscodeTarget::User { user, duress, .. }) => {
                let admitted = self
                    .dir
                    .users
                    .get(&user)
                    .is_some_and(|u| u.validity.admits(self.now.wall));
                if !admitted {
                    // B-6.8: the genuine code of a user outside their window
                    // is refused and logged, not counted (it is not a guess).
                    self.log(
                        out,
                        EventKind::VerifyFailed {
                            method: Method::Matter,
                            spoof: None,
                        },
                    );
                    return Err(AppError::OutsideValidity);
                }
                if duress {
                    // B-6.9: opens as usual and silently tells the owner.
                    self.unlock_relocking(out, Method::DuressPasscode, Some(user), relock_after);
                    self.raise_alarm(out, AlarmKind::Duress, None);
                    out.push(Action::Notify(Notice::Duress { user }));
                } else {
                    self.unlock_relocking(out, Method::Matter, Some(user), relock_after);
                }
                Ok(AppOk::Done)
            }
            Some(PasscodeTarget::Temp(id)) => {
                let Some(t) = self.dir.temp_passcodes.get(&id).cloned() else {
                    self.verification_failed(out, Method::Matter);
                    return Err(AppError::WrongCode);
                };
                if !t.validity.admits(self.now.wall) {
                    self.log(
                        out,
                        EventKind::VerifyFailed {
                            method: Method::TempPasscode,
                            spoof: None,
                        },
                    );
                    return Err(AppError::OutsideValidity);
                }
                if t.one_time {
                    self.persist(out, vec![Change::DeleteTempPasscode(id)]);
                }
                self.unlock_relocking(out, Method::TempPasscode, None, relock_after);
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

    /// Remove one credential; a module-held template leaves the module.
    fn delete_credential(&mut self, out: &mut Out, id: CredentialId) -> AppResult {
        self.not_busy()?;
        let c = self
            .dir
            .credentials
            .get(&id)
            .cloned()
            .ok_or(AppError::NotFound)?;
        // The same templates `delete_user` removes for a whole user.
        let slot = match (c.kind, &c.secret) {
            (CredentialKind::Fingerprint, CredentialSecret::ModuleSlot(s)) => {
                Some((Modality::Fingerprint, *s))
            }
            (CredentialKind::Palm, CredentialSecret::ModuleSlot(s)) => Some((Modality::Palm, *s)),
            (CredentialKind::Face, CredentialSecret::FaceTemplate { slot, .. }) => {
                Some((Modality::Face, *slot))
            }
            _ => None,
        };
        self.persist(out, vec![Change::DeleteCredential(id)]);
        if let Some((modality, slot)) = slot {
            out.push(Action::Module(ModuleCmd::Delete { modality, slot }));
        }
        self.log(
            out,
            EventKind::CredentialRemoved {
                user: c.user,
                kind: c.kind,
            },
        );
        Ok(AppOk::Done)
    }
}
