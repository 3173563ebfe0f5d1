//! Commands from the owner's and guests' apps (B-5, B-6.6, B-6.7, B-7.2,
//! B-9), after the BLE or remote channel has authenticated them.
//!
//! ```text
//!  AppRequest{principal, via, command}
//!     │ authorise: Pairing  → only AddAppKey(Owner) while pairing mode runs
//!     │            Owner    → key still registered, bound admin still an
//!     │                       administrator and inside its validity
//!     │            Guest    → key still registered, inside its validity;
//!     │                       Unlock/Lock only
//!     │            Invitee  → the invite of its code id exists: count an
//!     │                       attempt, or redeem it once (B-6.6)
//!     │ channel:   Remote unlock needs remote unlock on and Wi-Fi on (B-6.7)
//!     ▼
//!  command → Persist (if any) → Reply{id, Ok|Err}
//!  refused for who-may-do-what reasons → also EventKind::AppRefused
//! ```
//!
//! The engine trusts that the principal is who the channel says; it does
//! not trust that the principal is still allowed: a revoked key, a deleted
//! administrator or an expired guest window is refused here too.
use core::time::Duration;

use super::action::{Action, AppError, AppOk, AppResult, OwnerKeyEntry, Prompt};
use super::engine::{Engine, Mode, Out};
use super::event::{AppRefusal, EventKind, LockHow, ReleasedBy};
use super::input::{AppCommand, AppRequest, Channel, Principal};
use super::passcode::{Passcode, PasscodeTarget};
use super::time::{Validity, WallTime};
use super::trusted_time::SyncRefused;
use super::types::{
    limits, AppKey, AppKeyId, AppKeyRole, Change, Credential, CredentialKind, CredentialSecret,
    GuestInvite, Method, SettingChange, TempPasscode, User, UserNumber,
};
use super::users::LimitError;

/// Shortest and longest auto-lock countdown accepted (B-8.3).
pub const AUTO_LOCK_MIN: Duration = Duration::from_secs(1);
pub const AUTO_LOCK_MAX: Duration = Duration::from_secs(3600);

/// Who a request speaks for, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Pairing,
    Owner {
        admin: UserNumber,
    },
    Guest,
    Invitee {
        slot: AppKeyId,
    },
    /// A Matter fabric's administrator (see `matter.rs`).
    Matter,
}

pub(super) fn check_window(v: &Validity) -> Result<(), AppError> {
    match (v.from, v.until) {
        (Some(f), Some(u)) if u <= f => Err(AppError::BadValidity),
        _ => Ok(()),
    }
}

pub(super) fn limit_error(e: LimitError) -> AppError {
    match e {
        LimitError::Lock(k) | LimitError::User(k) => AppError::Limit(k),
    }
}

impl Engine {
    pub(super) fn on_app(&mut self, out: &mut Out, req: AppRequest) {
        let result = self
            .authorise(&req.principal)
            .and_then(|who| self.app_command(out, who, req.via, req.command));
        if let Err(e) = &result {
            // Who-may-do-what refusals are security events; a bad
            // argument from an authorised key (a weak passcode) is not.
            let reason = match e {
                AppError::Forbidden => Some(AppRefusal::Forbidden),
                AppError::OutsideValidity => Some(AppRefusal::OutsideValidity),
                AppError::RemoteUnlockDisabled => Some(AppRefusal::RemoteUnlockDisabled),
                AppError::LockedOut => Some(AppRefusal::LockedOut),
                AppError::InviteRefused => Some(AppRefusal::InviteRefused),
                _ => None,
            };
            if let Some(reason) = reason {
                self.log(
                    out,
                    EventKind::AppRefused {
                        via: req.via,
                        reason,
                    },
                );
            }
        }
        out.push(Action::Reply { id: req.id, result });
    }

    /// A frame the channel refused before it became a command.
    pub(super) fn on_app_refused(&mut self, out: &mut Out, via: Channel, reason: AppRefusal) {
        self.log(out, EventKind::AppRefused { via, reason });
    }

    fn authorise(&self, p: &Principal) -> Result<Who, AppError> {
        let wall = self.now.wall;
        match *p {
            Principal::Pairing => Ok(Who::Pairing),
            Principal::Owner { key, admin } => {
                let k = self.dir.app_keys.get(&key).ok_or(AppError::Forbidden)?;
                if k.role != (AppKeyRole::Owner { admin }) {
                    return Err(AppError::Forbidden);
                }
                let u = self.dir.users.get(&admin).ok_or(AppError::Forbidden)?;
                if u.role != super::types::Role::Admin {
                    return Err(AppError::Forbidden);
                }
                if !k.validity.admits(wall) || !self.user_in_time(u) {
                    return Err(AppError::OutsideValidity);
                }
                Ok(Who::Owner { admin })
            }
            Principal::Guest { key, validity } => {
                let k = self.dir.app_keys.get(&key).ok_or(AppError::Forbidden)?;
                if k.role != AppKeyRole::Guest {
                    return Err(AppError::Forbidden);
                }
                // Issue 17 item 2: and inside its schedules, if it has any.
                if !k.validity.admits(wall)
                    || !validity.admits(wall)
                    || !self.schedule_admits(super::schedule::Holder::GuestKey(key))
                {
                    return Err(AppError::OutsideValidity);
                }
                Ok(Who::Guest)
            }
            Principal::Invitee { code_id } => self
                .dir
                .guest_invites
                .values()
                .find(|i| i.code_id == code_id)
                .map(|i| Who::Invitee { slot: i.slot })
                .ok_or(AppError::InviteRefused),
            Principal::Matter { .. } => self.authorise_matter().map(|()| Who::Matter),
        }
    }

    /// Changes to users and credentials wait while someone is in the
    /// keypad menu, so the two cannot race (a user deleted mid-enrolment).
    pub(super) fn not_busy(&self) -> Result<(), AppError> {
        match self.mode {
            Mode::Idle => Ok(()),
            _ => Err(AppError::Busy),
        }
    }

    fn app_command(&mut self, out: &mut Out, who: Who, via: Channel, cmd: AppCommand) -> AppResult {
        let admin = match (who, &cmd) {
            (Who::Matter, _) => return self.matter_command(out, via, cmd),
            (Who::Pairing, AppCommand::AddAppKey(_)) => None,
            (Who::Pairing, _) => return Err(AppError::Forbidden),
            (Who::Guest, AppCommand::Unlock | AppCommand::Lock) => None,
            (Who::Guest, _) => return Err(AppError::Forbidden),
            (Who::Invitee { slot }, _) => {
                return match cmd {
                    AppCommand::GuestRedeemAttempt => self.count_redeem_attempt(out, slot),
                    AppCommand::RedeemGuestInvite { public_key, label } => {
                        self.redeem_invite(out, slot, public_key, label)
                    }
                    _ => Err(AppError::Forbidden),
                }
            }
            (
                Who::Owner { .. },
                AppCommand::GuestRedeemAttempt | AppCommand::RedeemGuestInvite { .. },
            ) => return Err(AppError::Forbidden),
            // The Door Lock cluster's commands are Matter's (matter.rs);
            // the owner's app has its own for the same needs.
            (
                Who::Owner { .. },
                AppCommand::UnlockWithCode { .. }
                | AppCommand::AddUserAt { .. }
                | AppCommand::SetRole { .. }
                | AppCommand::SetPasscode { .. }
                | AppCommand::DeleteCredential(_),
            ) => return Err(AppError::Forbidden),
            (Who::Owner { admin }, _) => Some(admin),
        };
        match cmd {
            AppCommand::Unlock => self.app_unlock(out, via, admin),
            AppCommand::Lock => self.app_lock(out, LockHow::App),
            AppCommand::AddUser { role, validity } => {
                // Decision: a user added from the app is stored at once
                // (it holds no credential and opens nothing until one is
                // enrolled on the lock, B-9.3); keypad-added users are
                // stored only with their first credential (B-4.11).
                self.not_busy()?;
                check_window(&validity)?;
                let number = self
                    .dir
                    .free_user_number()
                    .ok_or(AppError::NoFreeUserNumber)?;
                self.persist(
                    out,
                    vec![Change::PutUser(User {
                        number,
                        role,
                        validity,
                    })],
                );
                self.log(out, EventKind::UserAdded { user: number });
                Ok(AppOk::UserAdded(number))
            }
            AppCommand::DeleteUser(user) => {
                self.not_busy()?;
                self.may_delete(user).map_err(|p| match p {
                    Prompt::NoSuchUser => AppError::NoSuchUser,
                    Prompt::CannotDeleteLastAdmin => AppError::LastAdmin,
                    _ => AppError::OnlyUser,
                })?;
                self.delete_user(out, user);
                Ok(AppOk::Done)
            }
            AppCommand::SetValidity(user, validity) => {
                self.not_busy()?;
                check_window(&validity)?;
                let u = self.dir.users.get(&user).ok_or(AppError::NoSuchUser)?;
                let changed = User {
                    validity,
                    ..u.clone()
                };
                self.persist(out, vec![Change::PutUser(changed)]);
                self.log(out, EventKind::ValidityChanged { user, validity });
                Ok(AppOk::Done)
            }
            AppCommand::AddTempPasscode {
                digits,
                validity,
                one_time,
            } => {
                self.not_busy()?;
                let digits = digits.into_inner();
                check_window(&validity)?;
                let validity = self.temp_code_window(validity, one_time)?;
                let code =
                    Passcode::parse(&digits).map_err(|e| AppError::BadPasscode(e.to_string()))?;
                if self.dir.passcode_total() >= limits::PASSCODES {
                    return Err(AppError::Limit(CredentialKind::Passcode));
                }
                if self
                    .dir
                    .passcodes()
                    .conflicts(&self.macer, code.digits(), |_| false)
                {
                    return Err(AppError::BadPasscode(
                        "it equals or contains a passcode already in use; choose another".into(),
                    ));
                }
                let id = self.dir.next_temp_id();
                let t = TempPasscode {
                    id,
                    mac: self.macer.mac(code.digits()),
                    validity,
                    one_time,
                };
                self.persist(out, vec![Change::PutTempPasscode(t)]);
                self.log(
                    out,
                    EventKind::TempPasscodeCreated {
                        id: id.0,
                        validity,
                        one_time,
                    },
                );
                Ok(AppOk::TempPasscodeAdded(id))
            }
            AppCommand::RevokeTempPasscode(id) => {
                if !self.dir.temp_passcodes.contains_key(&id) {
                    return Err(AppError::NotFound);
                }
                self.persist(out, vec![Change::DeleteTempPasscode(id)]);
                self.log(out, EventKind::TempPasscodeRevoked { id: id.0 });
                Ok(AppOk::Done)
            }
            AppCommand::SetDuressPasscode { user, digits } => {
                self.not_busy()?;
                let digits = digits.into_inner();
                if !self.dir.users.contains_key(&user) {
                    return Err(AppError::NoSuchUser);
                }
                let code =
                    Passcode::parse(&digits).map_err(|e| AppError::BadPasscode(e.to_string()))?;
                // A user has one duress code (B-1.2 spirit); a new one replaces it.
                let old = self.duress_credential(user);
                if old.is_none() {
                    self.dir
                        .check_limits(user, CredentialKind::DuressPasscode)
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
                let mut changes: Vec<Change> =
                    old.map(Change::DeleteCredential).into_iter().collect();
                changes.push(Change::PutCredential(Credential {
                    id: self.dir.next_credential_id(),
                    user,
                    kind: CredentialKind::DuressPasscode,
                    secret: CredentialSecret::Passcode(self.macer.mac(code.digits())),
                }));
                self.persist(out, changes);
                self.log(
                    out,
                    EventKind::CredentialAdded {
                        user,
                        kind: CredentialKind::DuressPasscode,
                    },
                );
                Ok(AppOk::Done)
            }
            AppCommand::SetSchedule(s) => self.set_schedule(out, s),
            AppCommand::ClearSchedules {
                kind,
                holder,
                index,
            } => self.clear_schedules(out, kind, holder, index),
            AppCommand::ListSchedules { holder } => Ok(AppOk::Schedules(
                self.schedules()
                    .into_iter()
                    .filter(|s| holder.is_none() || s.key().holder() == holder)
                    .collect(),
            )),
            AppCommand::AddAppKey(key) => self.add_app_key(out, who, key),
            AppCommand::RevokeAppKey(id) => {
                let change = if self.dir.app_keys.contains_key(&id) {
                    Change::DeleteAppKey(id)
                } else if self.dir.guest_invites.contains_key(&id) {
                    Change::DeleteGuestInvite(id)
                } else {
                    return Err(AppError::NotFound);
                };
                self.persist(out, vec![change]);
                self.log(out, EventKind::AppKeyRevoked { slot: id.0 });
                Ok(AppOk::Done)
            }
            AppCommand::CreateGuestInvite(invite) => self.create_invite(out, invite),
            AppCommand::SetClock(to) => self.owner_time_sync(out, to),
            // Matched above: only an invitee reaches these.
            AppCommand::GuestRedeemAttempt | AppCommand::RedeemGuestInvite { .. } => {
                Err(AppError::Forbidden)
            }
            AppCommand::Setting(change) => self.change_setting(out, change),
            AppCommand::ReleaseLockout => {
                // B-7.2: the owner ends a lockout early; issue 13: and
                // re-enables a disabled keypad, clearing every strike.
                if let Some(admin) = admin {
                    self.release_lockout(out, ReleasedBy::Owner { via, admin });
                }
                self.persist_lockout(out);
                Ok(AppOk::Done)
            }
            AppCommand::RevokeOwnerKey(id) => {
                let owner = self
                    .dir
                    .app_keys
                    .get(&id)
                    .is_some_and(|k| matches!(k.role, AppKeyRole::Owner { .. }));
                if !owner {
                    return Err(AppError::NotFound);
                }
                self.persist(out, vec![Change::DeleteAppKey(id)]);
                self.log(out, EventKind::AppKeyRevoked { slot: id.0 });
                Ok(AppOk::Done)
            }
            AppCommand::ListOwnerKeys => {
                let keys = self
                    .dir
                    .app_keys
                    .values()
                    .filter_map(|k| match k.role {
                        AppKeyRole::Owner { admin } => Some(OwnerKeyEntry {
                            slot: k.id,
                            admin,
                            label: k.label.clone(),
                        }),
                        AppKeyRole::Guest => None,
                    })
                    .collect();
                self.log(out, EventKind::OwnerKeysListed);
                Ok(AppOk::OwnerKeys(keys))
            }
            AppCommand::SetAway(armed) => {
                if self.away != armed {
                    self.away = armed;
                    self.log(out, EventKind::AwayMode { armed });
                }
                Ok(AppOk::Done)
            }
            AppCommand::StartUpdate {
                source,
                allow_older,
            } => {
                // Only an owner key gets here (guests, pairing apps,
                // invitees and Matter fabrics are refused above).
                let by = admin.ok_or(AppError::Forbidden)?;
                self.start_update(out, by, via, source, allow_older)
            }
            AppCommand::EnrolFor { user, kind } => {
                self.enrol_for(out, user, kind)?;
                Ok(AppOk::Done)
            }
            AppCommand::DeleteCredentialOf { user, kind } => {
                self.delete_credential_of(out, user, kind)
            }
            // Refused above for every principal that reaches this match.
            AppCommand::UnlockWithCode { .. }
            | AppCommand::AddUserAt { .. }
            | AppCommand::SetRole { .. }
            | AppCommand::SetPasscode { .. }
            | AppCommand::DeleteCredential(_) => Err(AppError::Forbidden),
        }
    }

    /// Issue 17 item 1: remove `user`'s newest credential of `kind`, by
    /// the rule the menu uses too (`remove_credential_of`: the last
    /// credential that opens the menu for any administrator stays, as the
    /// last administrator does, B-4.9). Refused while the keypad is in use.
    fn delete_credential_of(
        &mut self,
        out: &mut Out,
        user: UserNumber,
        kind: CredentialKind,
    ) -> AppResult {
        self.not_busy()?;
        self.remove_credential_of(out, user, kind)?;
        Ok(AppOk::Done)
    }

    /// Lock from an app or a Matter controller.
    pub(super) fn app_lock(&mut self, out: &mut Out, how: LockHow) -> AppResult {
        if self.handing.is_none() {
            return Err(AppError::NoHanding);
        }
        if self.mech.door_open() {
            return Err(AppError::DoorOpen);
        }
        self.lock(out, how);
        Ok(AppOk::Done)
    }

    /// B-6.6/B-6.7: unlock from the app. A lockout stops BLE and remote
    /// unlock too (the owner releases it first, B-7.2).
    fn app_unlock(&mut self, out: &mut Out, via: Channel, admin: Option<UserNumber>) -> AppResult {
        let method = match via {
            Channel::Ble => Method::Ble,
            Channel::Remote | Channel::Matter => {
                if !(self.remote_unlock_on() && self.settings.wifi) {
                    return Err(AppError::RemoteUnlockDisabled);
                }
                if via == Channel::Matter {
                    Method::Matter
                } else {
                    Method::Remote
                }
            }
        };
        // Issue 18: Vacation takes owner keys only, Privacy nothing.
        self.mode_admits_app(admin.is_some())?;
        if self.handing.is_none() {
            return Err(AppError::NoHanding);
        }
        if self.lockout.is_locked(self.now.mono) {
            // Issue 13: a stranger at the keypad must not lock the owner
            // out of their home; an owner key still opens, and the log
            // says so. Guest keys wait for the lockout to end (B-7).
            let Some(admin) = admin else {
                return Err(AppError::LockedOut);
            };
            self.log(
                out,
                EventKind::LockoutOverridden {
                    method,
                    user: Some(admin),
                },
            );
        }
        self.unlock(out, method, admin);
        Ok(AppOk::Done)
    }

    /// Issue 13 item 3: every visitor code has an end. A one-time code
    /// given none ends [`super::EngineConfig::one_time_code_ttl`] after it
    /// was made (which needs the time); a reusable one must say its end.
    fn temp_code_window(&self, v: Validity, one_time: bool) -> Result<Validity, AppError> {
        if v.until.is_some() {
            return Ok(v);
        }
        if !one_time {
            return Err(AppError::BadValidity);
        }
        let now = self.now.wall.ok_or(AppError::ClockUnknown)?;
        let ttl = self.config.one_time_code_ttl.as_secs() as i64;
        let from = v.from.unwrap_or(now).max(now);
        Ok(Validity {
            from: v.from,
            until: Some(WallTime(from.0.saturating_add(ttl))),
        })
    }

    /// An owner sets the lock's clock: bounded by the trusted floor and
    /// sane limits, logged either way, and the floor it sets is stored.
    fn owner_time_sync(&mut self, out: &mut Out, to: WallTime) -> AppResult {
        match self.trusted.owner_sync(self.now.mono, to) {
            Ok(floor) => {
                self.persist(out, vec![Change::PutTimeFloor(floor)]);
                out.push(Action::SetClock(to));
                self.now.wall = Some(to);
                self.log(out, EventKind::ClockSet { to });
                Ok(AppOk::Done)
            }
            Err(refused) => {
                let floor = match refused {
                    SyncRefused::BehindFloor { floor } => Some(floor),
                    SyncRefused::OutOfRange => self.trusted.floor(self.now.mono),
                };
                self.log(out, EventKind::ClockSyncRefused { to, floor });
                Err(match refused {
                    SyncRefused::BehindFloor { .. } => AppError::ClockBehindTrusted,
                    SyncRefused::OutOfRange => AppError::ClockOutOfRange,
                })
            }
        }
    }

    /// B-5.1: pairing binds an owner key to the lowest-numbered
    /// administrator, once per pairing window. An owner may add guest keys
    /// and owner keys bound to an existing administrator.
    fn add_app_key(&mut self, out: &mut Out, who: Who, key: AppKey) -> AppResult {
        check_window(&key.validity)?;
        let role = match who {
            Who::Pairing => {
                if self.pairing_until.is_none() {
                    return Err(AppError::Forbidden);
                }
                if !matches!(key.role, AppKeyRole::Owner { .. }) {
                    return Err(AppError::Forbidden);
                }
                let admin = self.dir.admins().next().ok_or(AppError::NoAdmin)?.number;
                AppKeyRole::Owner { admin }
            }
            Who::Owner { .. } => match key.role {
                AppKeyRole::Guest => AppKeyRole::Guest,
                AppKeyRole::Owner { admin } => {
                    let u = self.dir.users.get(&admin).ok_or(AppError::NoSuchUser)?;
                    if u.role != super::types::Role::Admin {
                        return Err(AppError::Forbidden);
                    }
                    AppKeyRole::Owner { admin }
                }
            },
            Who::Guest | Who::Invitee { .. } | Who::Matter => return Err(AppError::Forbidden),
        };
        if self
            .dir
            .app_keys
            .values()
            .any(|k| k.public_key == key.public_key)
        {
            return Err(AppError::KeyExists);
        }
        if self.dir.app_key_slots_full() {
            return Err(AppError::Limit(CredentialKind::Passcode));
        }
        let id = self.dir.next_app_key_id();
        let guest = role == AppKeyRole::Guest;
        let mut changes = vec![Change::PutAppKey(AppKey { id, role, ..key })];
        // Issue 13 item 6: the code this pairing proved is used up (the
        // label's pairs the first owner only); the next one is spoken by
        // system information, at the lock. Same commit as the key.
        let rotated = (who == Who::Pairing).then(|| self.pairing_generation.saturating_add(1));
        changes.extend(rotated.map(Change::SetPairingGeneration));
        self.persist(out, changes);
        self.log(out, EventKind::AppKeyAdded { slot: id.0, guest });
        if let Some(generation) = rotated {
            self.log(out, EventKind::PairingCodeRotated { generation });
        }
        if who == Who::Pairing {
            // Decision: one binding per pairing window.
            self.pairing_until = None;
            self.log(out, EventKind::PairingMode { active: false });
            self.say(out, Prompt::PairingEnded);
        }
        Ok(AppOk::AppKeyAdded(id))
    }

    /// B-6.6: an owner invites a guest. The window must be closed on both
    /// ends (a guest key never works forever) and still open at its end.
    fn create_invite(&mut self, out: &mut Out, invite: GuestInvite) -> AppResult {
        let now = self.now.wall.ok_or(AppError::ClockUnknown)?;
        let (Some(from), Some(until)) = (invite.validity.from, invite.validity.until) else {
            return Err(AppError::BadValidity);
        };
        if until <= from || until <= now || invite.code_expires_at <= now {
            return Err(AppError::BadValidity);
        }
        if self.dir.guest_invites.len() >= limits::GUEST_INVITES || self.dir.app_key_slots_full() {
            return Err(AppError::Limit(CredentialKind::Passcode));
        }
        if self
            .dir
            .guest_invites
            .values()
            .any(|i| i.code_id == invite.code_id)
        {
            // The channel picks a fresh id and asks again.
            return Err(AppError::KeyExists);
        }
        let slot = self.dir.next_app_key_id();
        self.persist(
            out,
            vec![Change::PutGuestInvite(GuestInvite {
                slot,
                attempts: 0,
                ..invite
            })],
        );
        self.log(out, EventKind::GuestInviteCreated { slot: slot.0 });
        Ok(AppOk::GuestInviteCreated(slot))
    }

    /// One redemption attempt of a guest code, counted before the lock
    /// answers the handshake (so a guesser pays for each try, even one it
    /// abandons). The code is burned after the last allowed attempt.
    fn count_redeem_attempt(&mut self, out: &mut Out, slot: AppKeyId) -> AppResult {
        let invite = self
            .dir
            .guest_invites
            .get(&slot)
            .ok_or(AppError::InviteRefused)?
            .clone();
        let now = self.now.wall.ok_or(AppError::ClockUnknown)?;
        if now >= invite.code_expires_at || invite.attempts >= limits::GUEST_CODE_ATTEMPTS {
            self.persist(out, vec![Change::DeleteGuestInvite(slot)]);
            return Err(AppError::InviteRefused);
        }
        self.persist(
            out,
            vec![Change::PutGuestInvite(GuestInvite {
                attempts: invite.attempts + 1,
                ..invite
            })],
        );
        Ok(AppOk::Done)
    }

    /// The guest's app proved the code: the invite becomes a guest key in
    /// the same slot, with the window the owner chose.
    fn redeem_invite(
        &mut self,
        out: &mut Out,
        slot: AppKeyId,
        public_key: [u8; 32],
        label: String,
    ) -> AppResult {
        let invite = self
            .dir
            .guest_invites
            .get(&slot)
            .ok_or(AppError::InviteRefused)?
            .clone();
        let now = self.now.wall.ok_or(AppError::ClockUnknown)?;
        if now >= invite.code_expires_at {
            self.persist(out, vec![Change::DeleteGuestInvite(slot)]);
            return Err(AppError::InviteRefused);
        }
        if self
            .dir
            .app_keys
            .values()
            .any(|k| k.public_key == public_key)
        {
            return Err(AppError::KeyExists);
        }
        self.persist(
            out,
            vec![
                Change::DeleteGuestInvite(slot),
                Change::PutAppKey(AppKey {
                    id: slot,
                    role: AppKeyRole::Guest,
                    public_key,
                    validity: invite.validity,
                    label,
                }),
            ],
        );
        self.log(
            out,
            EventKind::AppKeyAdded {
                slot: slot.0,
                guest: true,
            },
        );
        Ok(AppOk::AppKeyAdded(slot))
    }

    /// B-9.7 settings. Decision: turning lockout protection off stops
    /// counting; a lockout already running still runs (release it, B-7.2).
    pub(super) fn change_setting(&mut self, out: &mut Out, change: SettingChange) -> AppResult {
        let mut s = self.settings.clone();
        match &change {
            SettingChange::AutoLock(d) => {
                if let Some(d) = d {
                    if !(AUTO_LOCK_MIN..=AUTO_LOCK_MAX).contains(d) {
                        return Err(AppError::BadSetting(format!(
                            "the auto-lock countdown must be between {} s and {} s",
                            AUTO_LOCK_MIN.as_secs(),
                            AUTO_LOCK_MAX.as_secs()
                        )));
                    }
                }
                s.auto_lock = *d;
            }
            SettingChange::LockoutProtection(on) => s.lockout_protection = *on,
            SettingChange::RemoteUnlock(on) => s.remote_unlock = *on,
            SettingChange::Wifi(on) => s.wifi = *on,
            SettingChange::RequirePinRemote(on) => s.require_pin_remote = *on,
            SettingChange::DoorAjar(d) => {
                if let Some(d) = d {
                    if !(super::door::DOOR_AJAR_MIN..=super::types::Settings::MAX_DOOR_AJAR)
                        .contains(d)
                    {
                        return Err(AppError::BadSetting(format!(
                            "the door-ajar delay must be between {} s and {} s (or off)",
                            super::door::DOOR_AJAR_MIN.as_secs(),
                            super::types::Settings::MAX_DOOR_AJAR.as_secs()
                        )));
                    }
                }
                s.door_ajar = *d;
            }
            // Issue 17 item 4: stored as chosen, even when it equals the
            // config's default, so a later change of the default does not
            // re-language a lock whose owner chose.
            SettingChange::Language(l) => s.language = Some(*l),
            SettingChange::OperatingMode(m) => {
                self.may_set_mode(*m)?;
                s = s.with_operating_mode(*m);
            }
        }
        self.persist(out, vec![Change::PutSettings(s)]);
        self.log(
            out,
            EventKind::SettingChanged {
                change: change.clone(),
            },
        );
        // Passage entered or left changes whether the countdown runs.
        if let SettingChange::AutoLock(_) | SettingChange::OperatingMode(_) = change {
            self.start_auto_lock();
        }
        Ok(AppOk::Done)
    }
}
