//! Verification attempts: a passcode confirmed on the keypad (B-6.4,
//! anti-peep), a finger, palm or face the modules report (B-6.2, B-6.3),
//! and what each does to the brute-force budget (B-7, [`super::policy`]).
//!
//! ```text
//!  attempt ─► timed lockout? ── admin biometric ─► opens (logged) / releases in the menu
//!     │                      └─ anything else ──► "locked", not counted
//!     │ keypad disabled? (passcode, not in the menu) ─► "keypad disabled", not counted
//!     ▼
//!  verdict (pure: MAC lookup, validity window, role)
//!     ▼
//!  Persist(PutAttempt: the record *as if it failed*)   ◄── the first action of the attempt
//!     ▼
//!  failed ─► prompt / alarm (nothing more to store)
//!  opened ─► prompt, motor ─► Persist(PutLockout: the attempt cleared, typos forgiven)
//! ```
//!
//! # The attempt is stored before its answer shows (IP-Box)
//!
//! An attacker who cuts the power as soon as a guess visibly failed (or
//! visibly did not succeed: no motor current) must not get the guess for
//! free. So every counted attempt's batch starts with one commit of the
//! lockout record as it will stand *if the attempt fails*, before any
//! prompt, LED, alarm or motor action, for success and failure alike: both
//! answer after exactly one commit. A success then clears the record after
//! the motor has started. A power cut anywhere after that first commit
//! leaves the attempt counted as a failure; a cut before it leaves no
//! trace and no answer was given. The engine computes the verdict before
//! emitting the commit (it is pure and takes microseconds); what matters
//! is that nothing of the verdict is visible before the commit is.
//!
//! A runtime that cannot commit the record drops the rest of the batch
//! (nothing opens) and keeps the record in memory rather than forget it.
use core::time::Duration;

use super::action::{Action, ModuleCmd, Notice, Prompt};
use super::engine::{Engine, Menu, Mode, Out};
use super::event::{AlarmKind, EventKind, ReleasedBy, SpoofSeen};
use super::input::ModuleReport;
use super::passcode::PasscodeTarget;
use super::policy::{FailureOutcome, Lockout};
use super::schedule::Holder;
use super::time::Instant;
use super::types::{
    limits, Change, CredentialKind, Method, Modality, Role, TempPasscodeId, UserNumber,
};

/// A recognition the engine asked for and has not heard back about is
/// forgotten after this long (the pipeline may find no face at all).
pub const FACE_ATTEMPT_STALE: Duration = Duration::from_secs(15);

/// Who started a face recognition (B-6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceTrigger {
    /// Someone touched the keypad: counts like any credential (B-7.1).
    Manual,
    /// The camera saw someone approach: its own budget ([`super::auto_face::AutoFace`]).
    Automatic,
    /// SET asked for an administrator's face (issue 17 item 6): its answer
    /// counts only while the lock still waits for the administrator.
    AtSet,
}

/// The face recognition in flight, if any.
#[derive(Debug, Clone, Copy)]
pub(super) struct FaceAttempt {
    pub trigger: FaceTrigger,
    pub asked: Instant,
}

/// An attempt whose record is committed and whose verdict is pending.
#[derive(Debug)]
pub(super) struct Pending {
    /// What forgives it on success (keypad entries are all `Passcode`).
    method: Method,
    before: Lockout,
    failed: Lockout,
    outcome: FailureOutcome,
}

/// What a keypad input amounts to, decided before anything is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// No stored code in it.
    Wrong,
    /// A stored code outside its validity window (or with no end, for a
    /// visitor code). Issue 13 item 4: answered and counted like a wrong
    /// code, so a guesser cannot learn a code that works later.
    OutsideValidity {
        method: Method,
        user: Option<UserNumber>,
    },
    /// A user's code (or duress code) valid now.
    User { user: UserNumber, duress: bool },
    /// A visitor code valid now.
    Temp { id: TempPasscodeId, one_time: bool },
    /// A valid code that does not do this here (a user's code in the
    /// administrator check): refused without counting, it is not a guess.
    NotHere,
}

/// The 6-digit windows of an input of `len` digits: the codes of the
/// shortest length it tried (issue 13: padding pays for every window).
pub fn guesses_in(len: usize) -> u32 {
    len.saturating_sub(limits::PASSCODE_MIN - 1).max(1) as u32
}

impl Engine {
    // ----- the attempt record -----

    /// Commit the record as it stands if this attempt fails (with `extra`
    /// changes that must not wait, such as spending a one-time code).
    pub(super) fn begin_attempt(
        &mut self,
        out: &mut Out,
        method: Method,
        weight: u32,
        extra: Vec<Change>,
    ) -> Pending {
        let now = self.now.mono;
        let before = self.lockout.clone();
        let mut failed = before.clone();
        let outcome = failed.fail(now, weight, method, self.settings.lockout_protection);
        let mut changes = vec![Change::PutAttempt(failed.record(now))];
        changes.extend(extra);
        self.dir.apply(&changes, &self.macer);
        out.push(Action::Persist(changes));
        Pending {
            method,
            before,
            failed,
            outcome,
        }
    }

    /// The attempt failed: the committed record stands.
    pub(super) fn attempt_failed(
        &mut self,
        out: &mut Out,
        p: Pending,
        method: Method,
        spoof: Option<SpoofSeen>,
    ) {
        self.lockout = p.failed;
        self.log(out, EventKind::VerifyFailed { method, spoof });
        let FailureOutcome::LockedOut {
            level,
            duration,
            keypad_disabled,
        } = p.outcome
        else {
            self.say(out, Prompt::VerifyFailed);
            return;
        };
        // Issue 18: a lockout suspends Passage (`core::modes`).
        self.passage_lockout(out);
        if let Some(d) = duration {
            self.log(out, EventKind::LockoutStarted);
            self.log(
                out,
                EventKind::LockoutLevel {
                    level,
                    minutes: (d.as_secs() / 60) as u32,
                },
            );
            self.raise_alarm(out, AlarmKind::Lockout, Some(d));
        }
        if keypad_disabled {
            self.log(
                out,
                EventKind::KeypadDisabled {
                    strikes: self.lockout.strikes(),
                },
            );
            if duration.is_none() {
                // Protection off (B-7.3): no siren, but the alarm state
                // shows the disabled keypad on every channel.
                self.raise_alarm(out, AlarmKind::Lockout, None);
            }
        }
        // The owner hears of every level, the first lockout included, on
        // every channel the runtime has (queued while offline).
        out.push(Action::Notify(Notice::Lockout {
            level,
            minutes: duration.map(|d| (d.as_secs() / 60) as u32),
            keypad_disabled: self.lockout.keypad_disabled(),
        }));
        self.say(
            out,
            if duration.is_some() {
                Prompt::LockedOut
            } else {
                Prompt::KeypadDisabled
            },
        );
        if matches!(self.mode, Mode::VerifyAdmin) {
            self.mode = Mode::Idle;
        }
    }

    /// The attempt did not fail (it opened, or it was a valid credential
    /// refused without counting): put the record back as it was, with the
    /// typos a success forgives, and store that after what was shown.
    pub(super) fn attempt_resolved(&mut self, out: &mut Out, p: Pending, success: bool) {
        self.lockout = p.before;
        if success {
            self.lockout.succeeded(self.now.mono, p.method);
        }
        self.persist_lockout(out);
    }

    /// B-7.2: end the lockout, re-enable the keypad and clear the strikes.
    /// Returns whether anything was in force. The caller persists.
    pub(super) fn release_lockout(&mut self, out: &mut Out, by: ReleasedBy) -> bool {
        let now = self.now.mono;
        let was_locked = self.lockout.is_locked(now);
        let was_disabled = self.lockout.keypad_disabled();
        if !self.lockout.release(now) {
            return false;
        }
        if was_locked {
            self.log(out, EventKind::LockoutEnded { early: true });
        }
        if was_disabled {
            self.log(out, EventKind::KeypadReleased { by });
        }
        if was_locked || was_disabled {
            self.clear_alarm(out, AlarmKind::Lockout, true);
        }
        true
    }

    // ----- the keypad -----

    /// A passcode typed on the keypad and confirmed (B-6.4, anti-peep).
    pub(super) fn passcode_entered(&mut self, out: &mut Out) {
        let input = zeroize::Zeroizing::new(self.keypad.buffer.to_vec());
        self.keypad.clear();
        if self.lockout.is_locked(self.now.mono) {
            self.say(out, Prompt::LockedOut);
            return;
        }
        // Decision: the menu's administrator check (SET, on the inside)
        // still takes a code while the keypad is disabled, so a household
        // without biometrics or an app can release it there.
        if self.lockout.keypad_disabled() && matches!(self.mode, Mode::Idle) {
            self.say(out, Prompt::KeypadDisabled);
            return;
        }
        let verdict = self.verdict(&input);
        let extra = match verdict {
            // Spent in the same commit as the attempt: it can never open
            // twice, and the answer still follows exactly one commit.
            Verdict::Temp { id, one_time: true } => vec![Change::DeleteTempPasscode(id)],
            _ => Vec::new(),
        };
        let pending = self.begin_attempt(out, Method::Passcode, guesses_in(input.len()), extra);
        match verdict {
            Verdict::Wrong => self.attempt_failed(out, pending, Method::Passcode, None),
            Verdict::OutsideValidity { method, user } => {
                // The owner's log says why; the keypad says nothing more
                // than for a wrong code.
                self.log(out, EventKind::OutsideValidity { method, user });
                self.attempt_failed(out, pending, method, None);
            }
            Verdict::NotHere => {
                self.say(out, Prompt::VerifyFailed);
                self.attempt_resolved(out, pending, false);
            }
            Verdict::User { user, duress } => {
                if matches!(self.mode, Mode::VerifyAdmin) {
                    self.open_menu(out, user);
                } else if duress {
                    // B-6.9: opens as usual, and silently tells the owner.
                    self.unlock(out, Method::DuressPasscode, Some(user));
                    self.raise_alarm(out, AlarmKind::Duress, None);
                    out.push(Action::Notify(Notice::Duress { user }));
                } else {
                    self.unlock(out, Method::Passcode, Some(user));
                }
                self.attempt_resolved(out, pending, true);
                if matches!(self.mode, Mode::Menu(_)) {
                    self.release_in_menu(out, user);
                }
            }
            Verdict::Temp { .. } => {
                // B-6.10: a one-time code was spent in the attempt's commit.
                self.unlock(out, Method::TempPasscode, None);
                self.attempt_resolved(out, pending, true);
            }
        }
    }

    /// What `input` amounts to in the current step. Pure.
    fn verdict(&self, input: &[u8]) -> Verdict {
        let wall = self.now.wall;
        let admin_check = matches!(self.mode, Mode::VerifyAdmin);
        match self.dir.passcodes().find(&self.macer, input) {
            None => Verdict::Wrong,
            Some(PasscodeTarget::User { user, duress, .. }) => {
                let Some(u) = self.dir.users.get(&user) else {
                    return Verdict::Wrong;
                };
                // Issue 17 item 2: outside the user's schedules is outside
                // their window (`core::schedule`).
                if !self.user_in_time(u) {
                    // A duress code is logged as a passcode too
                    // (`Method::as_logged`, issue 14 item 5).
                    return Verdict::OutsideValidity {
                        method: Method::Passcode,
                        user: Some(user),
                    };
                }
                // Decision: a duress code or a non-administrator's code does
                // not open the menu; it is refused without counting.
                if admin_check && (u.role != Role::Admin || duress) {
                    return Verdict::NotHere;
                }
                // Issue 18: a code the operating mode refuses (Vacation,
                // Privacy) is answered and counted like one outside its
                // window. At SET (inside) the mode does not apply.
                if !admin_check && !self.mode_admits_user(u.role) {
                    return Verdict::OutsideValidity {
                        method: Method::Passcode,
                        user: Some(user),
                    };
                }
                Verdict::User { user, duress }
            }
            Some(PasscodeTarget::Temp(id)) => {
                let Some(t) = self.dir.temp_passcodes.get(&id) else {
                    return Verdict::Wrong;
                };
                // Every visitor code has an end (issue 13 item 3); one
                // stored without one (before this rule) opens nothing.
                if t.validity.until.is_none()
                    || !t.validity.admits(wall)
                    || !self.schedule_admits(Holder::TempPasscode(id))
                {
                    return Verdict::OutsideValidity {
                        method: Method::TempPasscode,
                        user: None,
                    };
                }
                // Visitor codes never open the menu.
                if admin_check {
                    return Verdict::NotHere;
                }
                if !self.mode_admits_visitor() {
                    return Verdict::OutsideValidity {
                        method: Method::TempPasscode,
                        user: None,
                    };
                }
                Verdict::Temp {
                    id,
                    one_time: t.one_time,
                }
            }
        }
    }

    /// B-4.1: an administrator verified at SET: the menu opens.
    fn open_menu(&mut self, out: &mut Out, user: UserNumber) {
        self.log(out, EventKind::MenuEntered { user: Some(user) });
        // Issue 18: an administrator inside ends Privacy (`core::modes`).
        self.privacy_ended_inside(out);
        self.mode = Mode::Menu(Menu::Main);
        self.wake(out);
        self.say(out, Prompt::MenuMain);
    }

    /// An administrator who opened the menu (from inside) releases a
    /// disabled keypad and whatever strikes were counted.
    fn release_in_menu(&mut self, out: &mut Out, user: UserNumber) {
        if self.lockout.keypad_disabled() || self.lockout.is_locked(self.now.mono) {
            self.release_lockout(out, ReleasedBy::Administrator { user });
            self.persist_lockout(out);
            self.say(out, Prompt::KeypadReleased);
        }
    }

    // ----- biometrics -----

    pub(super) fn on_module(&mut self, out: &mut Out, r: ModuleReport) {
        if let Mode::Menu(Menu::Enrol { .. }) = self.mode {
            self.enrol_report(out, r);
            return;
        }
        match r {
            ModuleReport::Recognised { modality, slot } => {
                let holder = self.dir.by_slot(modality, slot).map(|c| c.user);
                if holder.is_none() {
                    // A template the store does not know (e.g. an enrolment
                    // cut off before its Persist): it opens nothing and is
                    // removed from the module.
                    out.push(Action::Module(ModuleCmd::Delete { modality, slot }));
                }
                self.biometric_presented(out, modality, holder, None);
            }
            ModuleReport::NotRecognised { modality } => {
                self.biometric_presented(out, modality, None, None);
            }
            ModuleReport::SpoofRefused {
                modality,
                slot,
                reason,
            } => {
                let user = self.dir.by_slot(modality, slot).map(|c| c.user);
                self.biometric_presented(out, modality, None, Some(SpoofSeen { user, reason }));
            }
            ModuleReport::Fault { modality, detail } => {
                if modality == Modality::Face {
                    self.face_attempt = None;
                }
                self.module_fault(out, modality, &detail);
            }
            ModuleReport::Recovered { modality } => self.module_recovered(out, modality),
            ModuleReport::Untrusted { modality, detail } => {
                self.module_untrusted(out, modality, &detail);
            }
            // Enrolment reports with no enrolment running are stale.
            ModuleReport::EnrolProgress { .. }
            | ModuleReport::Enrolled { .. }
            | ModuleReport::EnrolFailed { .. } => {}
        }
    }

    /// A module stopped answering (once per outage): logged, said, and the
    /// owner told (issue 15 item 5: a dead reader is news before the next
    /// person at the door finds it) — within the fault's noise budget, so a
    /// loose connector does not ring the owner's phone every few seconds.
    pub(super) fn module_fault(&mut self, out: &mut Out, modality: Modality, detail: &str) {
        let logged = self.log(
            out,
            EventKind::ModuleFault {
                detail: format!("{modality:?}: {detail}"),
            },
        );
        self.say(out, Prompt::ModuleFault);
        if logged {
            out.push(Action::Notify(Notice::ModuleFault { modality }));
        }
    }

    /// The outage ended: logged (the owner's event list shows the reader
    /// came back), nothing said.
    pub(super) fn module_recovered(&mut self, out: &mut Out, modality: Modality) {
        self.log(
            out,
            EventKind::ModuleRecovered {
                detail: format!("{modality:?}"),
            },
        );
    }

    /// Issue 13 item 7: a module that is not the lock's own. A module
    /// fault in the log, the module-swap alarm (sounded like tamper: the
    /// outside panel was opened) and, with it, the owner's notice.
    pub(super) fn module_untrusted(&mut self, out: &mut Out, modality: Modality, detail: &str) {
        self.log(
            out,
            EventKind::ModuleFault {
                detail: format!("{modality:?}: {detail}"),
            },
        );
        if !self.alarm_active(AlarmKind::ModuleSwap) {
            self.raise_alarm(
                out,
                AlarmKind::ModuleSwap,
                Some(super::engine::TAMPER_ALARM),
            );
        }
        self.say(out, Prompt::ModuleFault);
    }

    /// One biometric presentation: `holder` is whose template matched (if
    /// any), `spoof` set when the liveness check refused it.
    fn biometric_presented(
        &mut self,
        out: &mut Out,
        modality: Modality,
        holder: Option<UserNumber>,
        spoof: Option<SpoofSeen>,
    ) {
        let method: Method = modality.into();
        let trigger = match modality {
            // A report the engine did not ask for (a module that reports by
            // itself) counts like a manual attempt: the safe side.
            Modality::Face => self
                .face_attempt
                .take()
                .map_or(FaceTrigger::Manual, |a| a.trigger),
            _ => FaceTrigger::Manual,
        };
        // A face SET asked for, answered after the lock stopped waiting
        // for the administrator (↩, the time-out): an administrator's face
        // must not open the door by surprise.
        if trigger == FaceTrigger::AtSet && !matches!(self.mode, Mode::VerifyAdmin) {
            return;
        }
        self.keypad.clear();
        match self.mode {
            Mode::Idle | Mode::VerifyAdmin => {}
            _ => return,
        }
        let user = holder.and_then(|u| self.dir.users.get(&u)).cloned();
        // Issue 18: a user the operating mode refuses at the door is
        // treated as outside their window; at SET the mode does not apply.
        let at_set = matches!(self.mode, Mode::VerifyAdmin);
        let valid = user
            .as_ref()
            .filter(|u| self.user_in_time(u) && (at_set || self.mode_admits_user(u.role)));
        let admin = valid
            .filter(|u| u.role == Role::Admin && spoof.is_none())
            .map(|u| u.number);
        if trigger == FaceTrigger::Automatic && matches!(self.mode, Mode::Idle) {
            let valid = valid.map(|u| u.number).filter(|_| spoof.is_none());
            self.automatic_face(out, holder, valid, admin, spoof);
            return;
        }
        if self.lockout.is_locked(self.now.mono) {
            match admin {
                Some(a) => self.admin_during_lockout(out, method, a),
                None => {
                    // B-7: nothing else opens, and nothing is counted again.
                    self.say(out, Prompt::LockedOut);
                    if matches!(self.mode, Mode::VerifyAdmin) {
                        self.mode = Mode::Idle;
                    }
                }
            }
            return;
        }
        if let (Some(u), None, None) = (&user, valid, &spoof) {
            // B-6.8/B-9.4. Decision: a genuine biometric outside its
            // window is refused with its own prompt and not counted: a
            // finger cannot be guessed, and the person should hear why.
            self.log(
                out,
                EventKind::VerifyFailed {
                    method,
                    spoof: None,
                },
            );
            self.log(
                out,
                EventKind::OutsideValidity {
                    method,
                    user: Some(u.number),
                },
            );
            self.say(out, Prompt::UserNotValidNow);
            return;
        }
        let pending = self.begin_attempt(out, method, 1, Vec::new());
        let Some(u) = valid.filter(|_| spoof.is_none()).cloned() else {
            self.attempt_failed(out, pending, method, spoof);
            return;
        };
        if matches!(self.mode, Mode::VerifyAdmin) {
            if u.role == Role::Admin {
                self.open_menu(out, u.number);
                self.attempt_resolved(out, pending, true);
                self.release_in_menu(out, u.number);
            } else {
                // Not an administrator: refused without counting.
                self.say(out, Prompt::VerifyFailed);
                self.attempt_resolved(out, pending, false);
            }
            return;
        }
        self.auto_face.succeeded();
        self.unlock(out, method, Some(u.number));
        self.attempt_resolved(out, pending, true);
    }

    /// An administrator's biometric during a timed lockout: a stranger
    /// must not lock the owner out of their home. At the door it opens
    /// (logged, the lockout goes on); at SET it opens the menu and
    /// releases the lockout.
    fn admin_during_lockout(&mut self, out: &mut Out, method: Method, admin: UserNumber) {
        if matches!(self.mode, Mode::VerifyAdmin) {
            self.open_menu(out, admin);
            self.release_in_menu(out, admin);
            return;
        }
        self.log(
            out,
            EventKind::LockoutOverridden {
                method,
                user: Some(admin),
            },
        );
        self.unlock(out, method, Some(admin));
    }

    /// A face the camera recognised (or not) by itself (B-6.2 automatic).
    fn automatic_face(
        &mut self,
        out: &mut Out,
        holder: Option<UserNumber>,
        valid: Option<UserNumber>,
        admin: Option<UserNumber>,
        spoof: Option<SpoofSeen>,
    ) {
        if self.lockout.is_locked(self.now.mono) {
            if let Some(a) = admin {
                self.admin_during_lockout(out, Method::Face, a);
            }
            return;
        }
        if let Some(user) = valid {
            self.auto_face.succeeded();
            self.unlock(out, Method::Face, Some(user));
            return;
        }
        // Silent for the passer-by; logged for the owner. It never feeds
        // the keypad's lockout.
        self.log(
            out,
            EventKind::AutoFaceRefused {
                user: holder.or(spoof.as_ref().and_then(|s| s.user)),
                spoof,
            },
        );
        if let Some(pause) = self.auto_face.fail(self.now.mono) {
            self.log(
                out,
                EventKind::AutoFacePaused {
                    minutes: (pause.as_secs() / 60) as u32,
                },
            );
        }
    }

    /// B-6.2 manual: touching the keypad starts one recognition.
    pub(super) fn manual_face(&mut self, out: &mut Out) {
        let now = self.now.mono;
        // One recognition at a time: a second touch while the camera is
        // still looking asks for nothing more.
        let in_flight = self
            .face_attempt
            .is_some_and(|a| now < a.asked + FACE_ATTEMPT_STALE);
        if self.dir.count(CredentialKind::Face) > 0 && !self.lockout.is_locked(now) && !in_flight {
            self.face_attempt = Some(FaceAttempt {
                trigger: FaceTrigger::Manual,
                asked: self.now.mono,
            });
            out.push(Action::Module(ModuleCmd::RecogniseFace));
        }
    }

    /// Issue 17 item 6: SET also asks the camera for an administrator's
    /// face (one recognition), when an administrator holds one — during a
    /// lockout too, which an administrator may end (B-7.2). Its answer is
    /// taken like a fingerprint at SET: an administrator opens the menu,
    /// anyone else is refused.
    pub(super) fn admin_face(&mut self, out: &mut Out) {
        let admin_face = self.dir.credentials.values().any(|c| {
            c.kind == CredentialKind::Face
                && self
                    .dir
                    .users
                    .get(&c.user)
                    .is_some_and(|u| u.role == Role::Admin)
        });
        if admin_face {
            self.face_attempt = Some(FaceAttempt {
                trigger: FaceTrigger::AtSet,
                asked: self.now.mono,
            });
            out.push(Action::Module(ModuleCmd::RecogniseFace));
        }
    }

    /// B-6.2 automatic: the camera saw someone approach. Starts one
    /// recognition when the lock is idle and locked (an open bolt needs no
    /// face), someone has a face enrolled, no lockout runs, the automatic
    /// budget allows it and none is in flight.
    pub(super) fn on_motion(&mut self, out: &mut Out) {
        let now = self.now.mono;
        let in_flight = self
            .face_attempt
            .is_some_and(|a| now < a.asked + FACE_ATTEMPT_STALE);
        let open = self.mech.bolt == super::input::BoltPosition::Retracted
            || self.mech.motor != super::lock::MotorState::Idle;
        if !matches!(self.mode, Mode::Idle)
            || open
            || self.handing.is_none()
            || !self.dir.has_admin()
            || self.dir.count(CredentialKind::Face) == 0
            || self.lockout.is_locked(now)
            || !self.auto_face.allowed(now)
            || in_flight
        {
            return;
        }
        self.face_attempt = Some(FaceAttempt {
            trigger: FaceTrigger::Automatic,
            asked: now,
        });
        out.push(Action::Module(ModuleCmd::RecogniseFace));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_pays_per_six_digit_window() {
        assert_eq!(guesses_in(6), 1);
        assert_eq!(guesses_in(10), 5);
        assert_eq!(guesses_in(16), 11);
        assert_eq!(guesses_in(32), 27);
        assert_eq!(guesses_in(0), 1);
    }
}
