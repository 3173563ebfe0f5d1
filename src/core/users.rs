//! The engine's in-memory copy of who may open the door: users, their
//! credentials, visitor codes and app keys, with the indexes that make a
//! verification one lookup (passcode MAC → holder, module slot → holder).
//!
//! The directory is only changed through [`Directory::apply`], with the
//! same [`Change`]s the engine hands to the store in `Action::Persist`, so
//! memory and disk cannot drift apart.
use std::collections::{BTreeMap, HashMap};

use super::passcode::{Macer, PasscodeIndex, PasscodeTarget};
use super::schedule::{Holder, Schedules};
use super::types::{
    limits, AppKey, AppKeyId, Change, Credential, CredentialId, CredentialKind, CredentialSecret,
    GuestInvite, Modality, Persisted, Role, TempPasscode, TempPasscodeId, User, UserNumber,
};

/// Why a credential cannot be added (B-1.1, B-1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the lock already holds the maximum number of {0:?} credentials")]
    Lock(CredentialKind),
    #[error("this user already holds the maximum number of {0:?} credentials")]
    User(CredentialKind),
}

/// Credential counts per kind, for limits and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CredentialCounts {
    pub faces: usize,
    pub palms: usize,
    pub fingerprints: usize,
    pub passcodes: usize,
    pub duress_passcodes: usize,
    pub temp_passcodes: usize,
    pub users: usize,
    pub admins: usize,
}

#[derive(Debug, Default)]
pub struct Directory {
    pub users: BTreeMap<UserNumber, User>,
    pub credentials: BTreeMap<CredentialId, Credential>,
    pub temp_passcodes: BTreeMap<TempPasscodeId, TempPasscode>,
    pub app_keys: BTreeMap<AppKeyId, AppKey>,
    pub guest_invites: BTreeMap<AppKeyId, GuestInvite>,
    /// Week-day, year-day and holiday schedules (`core::schedule`).
    pub schedules: Schedules,
    passcodes: PasscodeIndex,
    slots: HashMap<(Modality, u16), CredentialId>,
}

fn modality_of(kind: CredentialKind) -> Option<Modality> {
    match kind {
        CredentialKind::Face => Some(Modality::Face),
        CredentialKind::Palm => Some(Modality::Palm),
        CredentialKind::Fingerprint => Some(Modality::Fingerprint),
        CredentialKind::Passcode | CredentialKind::DuressPasscode => None,
    }
}

fn slot_of(secret: &CredentialSecret) -> Option<u16> {
    match secret {
        CredentialSecret::ModuleSlot(s) => Some(*s),
        CredentialSecret::FaceTemplate { slot, .. } => Some(*slot),
        CredentialSecret::Passcode(_) => None,
    }
}

/// Lock-wide capacity of a kind (B-1.1). Duress and visitor codes share the
/// 50 passcodes: they are passcodes, and each one widens what a guesser can
/// hit, so they count against the same budget.
pub fn lock_limit(kind: CredentialKind) -> usize {
    match kind {
        CredentialKind::Face => limits::FACES,
        CredentialKind::Palm => limits::PALMS,
        CredentialKind::Fingerprint => limits::FINGERPRINTS,
        CredentialKind::Passcode | CredentialKind::DuressPasscode => limits::PASSCODES,
    }
}

/// Per-user capacity of a kind (B-1.2).
pub fn user_limit(kind: CredentialKind) -> usize {
    match kind {
        CredentialKind::Face => limits::FACES_PER_USER,
        CredentialKind::Palm => limits::PALMS_PER_USER,
        CredentialKind::Fingerprint => limits::FINGERPRINTS_PER_USER,
        CredentialKind::Passcode => limits::PASSCODES_PER_USER,
        CredentialKind::DuressPasscode => limits::DURESS_PER_USER,
    }
}

/// The app keys and outstanding guest invites: what an app channel checks
/// a frame against before anything reaches the engine (which checks
/// again). The runtime keeps one copy beside the store and publishes it
/// after every commit that changes it, so an unauthenticated frame costs
/// no store read; it follows the store through [`AppAccess::apply`], the
/// same step [`Directory::apply`] takes for these two tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppAccess {
    pub keys: BTreeMap<AppKeyId, AppKey>,
    pub invites: BTreeMap<AppKeyId, GuestInvite>,
}

impl AppAccess {
    /// The keys and invites the store loaded.
    pub fn from_persisted(p: &Persisted) -> Self {
        AppAccess {
            keys: p.app_keys.iter().map(|k| (k.id, k.clone())).collect(),
            invites: p
                .guest_invites
                .iter()
                .map(|i| (i.slot, i.clone()))
                .collect(),
        }
    }

    /// Follow committed changes.
    pub fn apply(&mut self, changes: &[Change]) {
        for c in changes {
            apply_app_change(&mut self.keys, &mut self.invites, c);
        }
    }

    /// Whether a change can alter the keys or invites.
    pub fn touched_by(c: &Change) -> bool {
        matches!(
            c,
            Change::DeleteUser(_)
                | Change::PutAppKey(_)
                | Change::DeleteAppKey(_)
                | Change::PutGuestInvite(_)
                | Change::DeleteGuestInvite(_)
                | Change::FactoryReset
        )
    }

    /// The outstanding invite with this public code id.
    pub fn invite(&self, code_id: u16) -> Option<&GuestInvite> {
        self.invites.values().find(|i| i.code_id == code_id)
    }
}

/// One change to the app keys and invites. An owner key is bound to its
/// administrator and goes with them; a factory reset removes them all.
fn apply_app_change(
    keys: &mut BTreeMap<AppKeyId, AppKey>,
    invites: &mut BTreeMap<AppKeyId, GuestInvite>,
    c: &Change,
) {
    match c {
        Change::DeleteUser(n) => {
            keys.retain(|_, k| k.role != super::types::AppKeyRole::Owner { admin: *n });
        }
        Change::PutAppKey(k) => {
            keys.insert(k.id, k.clone());
        }
        Change::DeleteAppKey(id) => {
            keys.remove(id);
        }
        Change::PutGuestInvite(i) => {
            invites.insert(i.slot, i.clone());
        }
        Change::DeleteGuestInvite(id) => {
            invites.remove(id);
        }
        Change::FactoryReset => {
            keys.clear();
            invites.clear();
        }
        _ => {}
    }
}

impl Directory {
    pub fn load(p: &Persisted, macer: &Macer) -> Directory {
        let mut d = Directory {
            users: p.users.iter().map(|u| (u.number, u.clone())).collect(),
            credentials: p
                .credentials
                .iter()
                // A credential whose user is gone is dead data: never let it open.
                .filter(|c| p.users.iter().any(|u| u.number == c.user))
                .map(|c| (c.id, c.clone()))
                .collect(),
            temp_passcodes: p.temp_passcodes.iter().map(|t| (t.id, t.clone())).collect(),
            app_keys: p.app_keys.iter().map(|k| (k.id, k.clone())).collect(),
            guest_invites: p
                .guest_invites
                .iter()
                .map(|i| (i.slot, i.clone()))
                .collect(),
            schedules: Schedules::load(&p.schedules),
            ..Directory::default()
        };
        d.reindex(macer);
        d
    }

    fn reindex(&mut self, _macer: &Macer) {
        self.passcodes.clear();
        self.slots.clear();
        for c in self.credentials.values() {
            match (&c.secret, modality_of(c.kind)) {
                (CredentialSecret::Passcode(mac), None) => self.passcodes.insert(
                    *mac,
                    PasscodeTarget::User {
                        user: c.user,
                        credential: c.id,
                        duress: c.kind == CredentialKind::DuressPasscode,
                    },
                ),
                (secret, Some(m)) => {
                    if let Some(slot) = slot_of(secret) {
                        self.slots.insert((m, slot), c.id);
                    }
                }
                // A passcode kind with a slot secret (or the reverse) is
                // corrupt; it is left out of both indexes and opens nothing.
                _ => {}
            }
        }
        for t in self.temp_passcodes.values() {
            self.passcodes.insert(t.mac, PasscodeTarget::Temp(t.id));
        }
    }

    /// Apply persisted changes to memory (the same list the store commits).
    pub fn apply(&mut self, changes: &[Change], macer: &Macer) {
        for c in changes {
            apply_app_change(&mut self.app_keys, &mut self.guest_invites, c);
            match c {
                Change::PutUser(u) => {
                    self.users.insert(u.number, u.clone());
                }
                Change::DeleteUser(n) => {
                    self.users.remove(n);
                    self.credentials.retain(|_, c| c.user != *n);
                    self.schedules.remove_holder(Holder::User(*n));
                }
                Change::PutCredential(cr) => {
                    self.credentials.insert(cr.id, cr.clone());
                }
                Change::DeleteCredential(id) => {
                    self.credentials.remove(id);
                }
                Change::PutTempPasscode(t) => {
                    self.temp_passcodes.insert(t.id, t.clone());
                }
                Change::DeleteTempPasscode(id) => {
                    self.temp_passcodes.remove(id);
                    self.schedules.remove_holder(Holder::TempPasscode(*id));
                }
                Change::DeleteAppKey(id) => {
                    self.schedules.remove_holder(Holder::GuestKey(*id));
                }
                Change::PutSchedule(s) => self.schedules.put(*s),
                Change::DeleteSchedule(k) => self.schedules.remove(k),
                Change::FactoryReset => {
                    self.schedules.clear();
                    self.users.clear();
                    self.credentials.clear();
                    self.temp_passcodes.clear();
                }
                // App keys and invites: `apply_app_change` above.
                Change::PutAppKey(_)
                | Change::PutGuestInvite(_)
                | Change::DeleteGuestInvite(_)
                | Change::SetHanding(_)
                | Change::PutSettings(_)
                | Change::PutLockout(_)
                | Change::PutAttempt(_)
                | Change::PutTimeFloor(_)
                | Change::SetPairingGeneration(_)
                | Change::PutPendingUpdate(_) => {}
            }
        }
        self.reindex(macer);
    }

    pub fn passcodes(&self) -> &PasscodeIndex {
        &self.passcodes
    }

    pub fn by_slot(&self, modality: Modality, slot: u16) -> Option<&Credential> {
        self.slots
            .get(&(modality, slot))
            .and_then(|id| self.credentials.get(id))
    }

    pub fn admins(&self) -> impl Iterator<Item = &User> {
        self.users.values().filter(|u| u.role == Role::Admin)
    }

    pub fn has_admin(&self) -> bool {
        self.admins().next().is_some()
    }

    pub fn count(&self, kind: CredentialKind) -> usize {
        self.credentials.values().filter(|c| c.kind == kind).count()
    }

    pub fn count_for(&self, user: UserNumber, kind: CredentialKind) -> usize {
        self.credentials
            .values()
            .filter(|c| c.user == user && c.kind == kind)
            .count()
    }

    /// Everything that draws from the 50-passcode budget.
    pub fn passcode_total(&self) -> usize {
        self.count(CredentialKind::Passcode)
            + self.count(CredentialKind::DuressPasscode)
            + self.temp_passcodes.len()
    }

    /// B-1.1/B-1.2: may `user` get one more credential of `kind`?
    pub fn check_limits(&self, user: UserNumber, kind: CredentialKind) -> Result<(), LimitError> {
        let total = match kind {
            CredentialKind::Passcode | CredentialKind::DuressPasscode => self.passcode_total(),
            k => self.count(k),
        };
        if total >= lock_limit(kind) {
            return Err(LimitError::Lock(kind));
        }
        if self.count_for(user, kind) >= user_limit(kind) {
            return Err(LimitError::User(kind));
        }
        Ok(())
    }

    /// The lowest user number not in use (B-4.4).
    pub fn free_user_number(&self) -> Option<UserNumber> {
        (UserNumber::MIN..=UserNumber::MAX)
            .filter_map(UserNumber::new)
            .find(|n| !self.users.contains_key(n))
    }

    /// The lowest free template slot of a modality. Slots are 0-based, as
    /// the modules number them, and bounded by the lock-wide limit.
    pub fn free_slot(&self, modality: Modality) -> Option<u16> {
        let cap = lock_limit(modality.into()) as u16;
        (0..cap).find(|s| !self.slots.contains_key(&(modality, *s)))
    }

    pub fn next_credential_id(&self) -> CredentialId {
        CredentialId(
            self.credentials
                .keys()
                .next_back()
                .map_or(1, |c| c.0.saturating_add(1)),
        )
    }

    pub fn next_temp_id(&self) -> TempPasscodeId {
        TempPasscodeId(
            self.temp_passcodes
                .keys()
                .next_back()
                .map_or(1, |c| c.0.saturating_add(1)),
        )
    }

    /// Keys and invites share one slot space: an invite keeps its slot
    /// when it becomes a key.
    pub fn next_app_key_id(&self) -> AppKeyId {
        let last = self
            .app_keys
            .keys()
            .next_back()
            .max(self.guest_invites.keys().next_back());
        AppKeyId(last.map_or(1, |c| c.0.saturating_add(1)))
    }

    /// Every app-key slot is held by a key or an invite.
    pub fn app_key_slots_full(&self) -> bool {
        self.app_keys.len() + self.guest_invites.len() >= limits::APP_KEYS
    }

    pub fn counts(&self) -> CredentialCounts {
        CredentialCounts {
            faces: self.count(CredentialKind::Face),
            palms: self.count(CredentialKind::Palm),
            fingerprints: self.count(CredentialKind::Fingerprint),
            passcodes: self.count(CredentialKind::Passcode),
            duress_passcodes: self.count(CredentialKind::DuressPasscode),
            temp_passcodes: self.temp_passcodes.len(),
            users: self.users.len(),
            admins: self.admins().count(),
        }
    }

    /// The module-held templates of a user, to delete from the modules.
    pub fn module_slots_of(&self, user: UserNumber) -> Vec<(Modality, u16)> {
        self.credentials
            .values()
            .filter(|c| c.user == user)
            .filter_map(module_slot_of)
            .collect()
    }

    /// The user's newest credential of `kind` (the highest id: a new
    /// credential gets one above every stored one), the one a deletion by
    /// kind removes.
    pub fn newest_credential(
        &self,
        user: UserNumber,
        kind: CredentialKind,
    ) -> Option<CredentialId> {
        self.credentials
            .values()
            .filter(|c| c.user == user && c.kind == kind)
            .map(|c| c.id)
            .max()
    }

    /// Whether `user` holds a credential of `kind`.
    pub fn holds(&self, user: UserNumber, kind: CredentialKind) -> bool {
        self.count_for(user, kind) > 0
    }
}

/// The module slot holding a credential's template (faces, palms,
/// fingerprints), to delete it from the module with the credential.
pub fn module_slot_of(c: &Credential) -> Option<(Modality, u16)> {
    Some((modality_of(c.kind)?, slot_of(&c.secret)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::Validity;

    fn user(n: u16, role: Role) -> User {
        User {
            number: UserNumber::new(n).unwrap(),
            role,
            validity: Validity::ALWAYS,
        }
    }

    #[test]
    fn numbers_and_slots_are_lowest_free() {
        let m = Macer::new(&[0; 32]);
        let mut d = Directory::default();
        d.apply(
            &[
                Change::PutUser(user(1, Role::Admin)),
                Change::PutUser(user(3, Role::User)),
                Change::PutCredential(Credential {
                    id: CredentialId(1),
                    user: UserNumber::new(1).unwrap(),
                    kind: CredentialKind::Fingerprint,
                    secret: CredentialSecret::ModuleSlot(0),
                }),
            ],
            &m,
        );
        assert_eq!(d.free_user_number(), UserNumber::new(2));
        assert_eq!(d.free_slot(Modality::Fingerprint), Some(1));
        assert_eq!(d.free_slot(Modality::Palm), Some(0));
        assert_eq!(d.next_credential_id(), CredentialId(2));
        d.apply(&[Change::DeleteUser(UserNumber::new(1).unwrap())], &m);
        assert_eq!(d.free_slot(Modality::Fingerprint), Some(0));
        assert!(!d.has_admin());
    }

    /// The channels' copy of the app keys follows the same changes as the
    /// engine's directory: a deleted administrator takes its owner key,
    /// a reset takes everything.
    #[test]
    fn app_access_follows_the_directory() {
        let m = Macer::new(&[0; 32]);
        let owner = |id: u32, admin: u16| AppKey {
            id: AppKeyId(id),
            role: super::super::types::AppKeyRole::Owner {
                admin: UserNumber::new(admin).unwrap(),
            },
            public_key: [id as u8; 32],
            validity: Validity::ALWAYS,
            label: String::new(),
        };
        let invite = GuestInvite {
            slot: AppKeyId(3),
            code_id: 9,
            secret: [0; super::super::types::GUEST_INVITE_SECRET],
            validity: Validity::ALWAYS,
            code_expires_at: crate::core::time::WallTime(10),
            attempts: 1,
        };
        let batches = [
            vec![
                Change::PutUser(user(1, Role::Admin)),
                Change::PutUser(user(2, Role::Admin)),
                Change::PutAppKey(owner(1, 1)),
                Change::PutAppKey(owner(2, 2)),
                Change::PutGuestInvite(invite.clone()),
            ],
            vec![Change::DeleteUser(UserNumber::new(1).unwrap())],
            vec![Change::DeleteGuestInvite(AppKeyId(3))],
            vec![Change::FactoryReset],
        ];
        let mut d = Directory::default();
        let mut access = AppAccess::default();
        let mut seen = Vec::new();
        for batch in &batches {
            assert!(batch.iter().any(AppAccess::touched_by));
            d.apply(batch, &m);
            access.apply(batch);
            assert_eq!(access.keys, d.app_keys);
            assert_eq!(access.invites, d.guest_invites);
            seen.push((access.keys.len(), access.invites.len()));
        }
        assert_eq!(seen, vec![(2, 1), (1, 1), (1, 0), (0, 0)]);
        // A guest's redemption finds its invite by the code's public id
        // (the app channel's lookup before it answers the handshake).
        access.apply(&[Change::PutGuestInvite(invite.clone())]);
        assert_eq!(access.invite(9), Some(&invite));
        assert_eq!(access.invite(8), None);
        assert!(!AppAccess::touched_by(&Change::PutUser(user(
            4,
            Role::User
        ))));
    }
}
