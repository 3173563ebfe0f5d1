//! The lock's operating modes (issue 18 item 2; Matter's Door Lock
//! `OperatingMode`): what each lets open, and how each is entered and left.
//!
//! ```text
//!  mode        outside credentials          app / remote / Matter unlock   the bolt
//!  Normal      as their validity says       as remote unlock says (B-6.7)  auto-lock (B-8.3)
//!  Vacation    administrators' only         owner keys / admin PIN only    auto-lock
//!  Privacy     none                         none                           auto-lock
//!  Passage     as Normal                    as Normal                      stays retracted
//!  (NoRemoteLockUnlock = Normal with remote unlock off: `Settings::operating_mode`)
//! ```
//!
//! A running holiday schedule (`core::schedule`) decides who opens in
//! place of the setting ([`Engine::door_mode`]); the bolt (Passage) stays
//! the setting's.
//!
//! Every refusal goes through the path a credential outside its validity
//! window already takes (B-9.4, issue 13 item 4): a code is counted and
//! answered like a wrong code, so a guesser cannot tell a refused code from
//! a wrong one; a biometric is refused uncounted with its own prompt.
//! Mechanical means (inside handle, lock button, key) are never refused.
//!
//! Decision (Privacy, following Matter's wording "only possible if the
//! door is locked; manual unlocking changes the mode to Normal; all
//! external interaction is disabled"): entered only with the bolt thrown;
//! left only from inside — the inside handle or the key turning the bolt,
//! or an administrator verified at SET — never from an app or a controller
//! (they are the outside it shuts out). It lasts until then.
//!
//! Decision (Passage): entering it moves nothing (a mode write is not an
//! unlock); after the next unlock the bolt stays retracted — no auto-lock
//! countdown, closing the door does not relock — until someone locks
//! (lock button, "✓" outside, app, Matter) or the mode changes. An explicit
//! Matter `UnlockWithTimeout` still relocks: a request to lock more is kept.
//! A lockout suspends it: a lockout starting while it holds the bolt open
//! locks the door, and it cannot be entered during one.
use super::action::AppError;
use super::engine::{Engine, Out};
use super::event::LockHow;
use super::input::BoltPosition;
use super::lock::MotorState;
use super::types::{Change, DoorMode, OperatingMode, Role, SettingChange};

impl Engine {
    /// Whether the mode lets a credential of a user with `role` open from
    /// outside (keypad, finger, palm, face).
    pub(super) fn mode_admits_user(&self, role: Role) -> bool {
        match self.door_mode() {
            DoorMode::Normal | DoorMode::Passage => true,
            DoorMode::Vacation => role == Role::Admin,
            DoorMode::Privacy => false,
        }
    }

    /// Whether the mode lets a visitor code or a guest key open.
    pub(super) fn mode_admits_visitor(&self) -> bool {
        matches!(self.door_mode(), DoorMode::Normal | DoorMode::Passage)
    }

    /// An unlock from an app or a controller: `owner` when it speaks for an
    /// administrator (an owner key, a Matter administrator without a PIN).
    pub(super) fn mode_admits_app(&self, owner: bool) -> Result<(), AppError> {
        match self.door_mode() {
            DoorMode::Normal | DoorMode::Passage => Ok(()),
            DoorMode::Vacation if owner => Ok(()),
            DoorMode::Vacation => Err(AppError::VacationMode),
            DoorMode::Privacy => Err(AppError::PrivacyMode),
        }
    }

    /// Passage holds the bolt open only while no lockout is in force.
    pub(super) fn passage_holds(&self) -> bool {
        self.settings.mode == DoorMode::Passage
            && !self.lockout.is_locked(self.now.mono)
            && !self.lockout.keypad_disabled()
    }

    /// A lockout started: a bolt Passage held open is thrown now (the door
    /// closed; an open door relocks through B-8.3 when it closes).
    pub(super) fn passage_lockout(&mut self, out: &mut Out) {
        if self.settings.mode != DoorMode::Passage {
            return;
        }
        let retracted =
            self.mech.bolt == BoltPosition::Retracted && self.mech.motor == MotorState::Idle;
        if retracted && !self.mech.door_open() {
            self.lock(out, LockHow::Auto);
        } else {
            self.start_auto_lock();
        }
    }

    /// Someone inside (handle, key, an administrator at SET) ends Privacy.
    pub(super) fn privacy_ended_inside(&mut self, out: &mut Out) {
        if self.settings.mode != DoorMode::Privacy {
            return;
        }
        let mut s = self.settings.clone();
        s.mode = DoorMode::Normal;
        // Remote unlock stays as it was: the log says which mode that is.
        let change = SettingChange::OperatingMode(s.operating_mode());
        self.persist(out, vec![Change::PutSettings(s)]);
        self.log(out, super::event::EventKind::SettingChanged { change });
    }

    /// Whether an app or a controller may set mode `to` now.
    pub(super) fn may_set_mode(&self, to: OperatingMode) -> Result<(), AppError> {
        let from = self.settings.operating_mode();
        if from == OperatingMode::Privacy && to != OperatingMode::Privacy {
            return Err(AppError::PrivacyMode);
        }
        let locked =
            self.mech.bolt == BoltPosition::Extended && self.mech.motor == MotorState::Idle;
        let lockout = self.lockout.is_locked(self.now.mono) || self.lockout.keypad_disabled();
        match to {
            OperatingMode::Privacy if from != OperatingMode::Privacy && !locked => {
                Err(AppError::NotLocked)
            }
            OperatingMode::Passage if lockout => Err(AppError::LockedOut),
            _ => Ok(()),
        }
    }
}
