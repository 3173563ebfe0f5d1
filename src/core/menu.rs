//! The front keypad and the voice menu (B-2, B-3, B-4, B-8.1, B-10.6).
//!
//! ```text
//!  first start:  ChooseDirection ─✓─► "1"/"2" ─► initial state ─✓─► first admin passcode
//!  idle:         digits… ✓ (unlock, anti-peep) · ✓ alone (outside lock) · away · bell
//!  SET short ─► VerifyAdmin ─admin credential─► Menu
//!  Menu:  1 add admin ─┐                      ┌─ 1 face ─► module enrol ─┐
//!         2 add user  ─┴► number shown ─► ChooseMethod ─ 2 palm ─► module enrol ─┼─► Persist ─► Success
//!         3 delete ─► number ✓             ├─ 3 finger / 4 passcode ✓ repeat ✓ ─┘
//!         5 modify user N ─► number ✓ ─► ChooseMethod (also 5 duress passcode, B-6.9)
//!                                          └─ 0 delete a credential ─► 1…5, lit only for
//!                                             the kinds N holds ─► Persist ─► Deleted ─► Menu
//!         6 language ─► 1 English · 2 中文 ─► LanguageSet (in the new language) ─► Menu
//!         4 re-pair the fingerprint module (lit only while one was refused, issue 13 item 7)
//!         ✓ system information (↩ during it: back to the menu) · ↩ back
//! ```
//!
//! Only the keys valid in the current step are lit, and a key that is not
//! lit does nothing (B-3.3). A new user is stored only together with its
//! first credential, in one `Persist` (B-4.11): a user whose enrolment is
//! cancelled or fails leaves nothing behind.
use super::redacted::Redacted;

use super::action::{Action, ModuleCmd, Prompt};
use super::engine::{Engine, Menu, Mode, Out, Target, MUTE_FLASH};
use super::event::{EventKind, LockHow};
use super::input::{EnrolFailure, EnrolStep, FacePose, ModuleReport};
use super::lang::Language;
use super::passcode::{check_rules, PasscodeError, PasscodeTarget};
use super::time::Validity;
use super::types::{
    limits, Change, Credential, CredentialId, CredentialKind, CredentialSecret, Handing, Key,
    Modality, Role, SettingChange, User, UserNumber,
};

const DIGITS: [Key; 10] = [
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
];

/// The method keys of B-4.4 (and 5, the duress passcode of B-6.9): the
/// same key picks a kind to add and, in the deletion step, one to delete.
const METHOD_KEYS: [(u8, CredentialKind); 5] = [
    (1, CredentialKind::Face),
    (2, CredentialKind::Palm),
    (3, CredentialKind::Fingerprint),
    (4, CredentialKind::Passcode),
    (5, CredentialKind::DuressPasscode),
];

/// The kind a method key stands for.
fn kind_of_key(key: u8) -> Option<CredentialKind> {
    METHOD_KEYS
        .into_iter()
        .find_map(|(k, kind)| (k == key).then_some(kind))
}

/// Why one credential was not deleted (issue 17 item 1), whoever asked:
/// the app answers with the matching [`AppError`](super::action::AppError),
/// the menu with a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum DeleteRefusal {
    #[error("no such user")]
    NoSuchUser,
    #[error("the user holds no credential of that kind")]
    NotFound,
    /// B-4.9 spirit: it is the last credential that opens the menu.
    #[error("the last credential that opens the menu for an administrator cannot be deleted; add another one first")]
    LastAdminCredential,
}

impl From<DeleteRefusal> for super::action::AppError {
    fn from(r: DeleteRefusal) -> Self {
        match r {
            DeleteRefusal::NoSuchUser => Self::NoSuchUser,
            DeleteRefusal::NotFound => Self::NotFound,
            DeleteRefusal::LastAdminCredential => Self::LastAdmin,
        }
    }
}

/// Longest user number typed in the delete step.
const USER_NUMBER_DIGITS: usize = 3;

/// Issue 17 item 1: how long an enrolment the owner's app started waits
/// for the person to begin at the lock (each step then keeps it awake
/// for the keypad's 20 s).
pub const APP_ENROL_WINDOW: core::time::Duration = core::time::Duration::from_secs(120);

impl Engine {
    /// The keys lit in the current step (B-3.3).
    pub(super) fn lit_keys(&self) -> Vec<Key> {
        let buf = self.keypad.buffer.len();
        let mut lit = Vec::new();
        let confirm_if = |lit: &mut Vec<Key>, cond: bool| {
            if cond {
                lit.push(Key::Confirm);
            }
        };
        match &self.mode {
            Mode::ChooseDirection { confirmed: false } => lit.push(Key::Confirm),
            Mode::ChooseDirection { confirmed: true } => {
                lit.extend([Key::Digit(1), Key::Digit(2), Key::Back])
            }
            Mode::FactoryReset { .. } => lit.extend([Key::Back, Key::Confirm]),
            // B-2.2: in the initial state "⏏" and "✓" light.
            Mode::Idle if !self.dir.has_admin() => lit.extend([Key::Back, Key::Confirm]),
            Mode::Idle => {
                lit.extend(DIGITS);
                lit.extend([Key::Back, Key::Away, Key::Doorbell]);
                // "✓" confirms a passcode, or locks from outside (B-8.1).
                confirm_if(
                    &mut lit,
                    buf >= limits::PASSCODE_MIN || (buf == 0 && self.outside_lock_armed),
                );
            }
            Mode::VerifyAdmin => {
                lit.extend(DIGITS);
                lit.push(Key::Back);
                confirm_if(&mut lit, buf >= limits::PASSCODE_MIN);
            }
            Mode::Menu(m) => match m {
                Menu::Main | Menu::SystemInfo => {
                    lit.extend([Key::Digit(1), Key::Digit(2), Key::Digit(3)]);
                    // Issue 17 item 1: "5" adds a credential to a user;
                    // item 4: "6" chooses the prompt language.
                    lit.extend([Key::Digit(5), Key::Digit(6)]);
                    // Issue 13 item 7: "4" (re-pair the fingerprint module)
                    // lights only while a module was refused.
                    if self.alarm_active(super::event::AlarmKind::ModuleSwap) {
                        lit.push(Key::Digit(4));
                    }
                    lit.extend([Key::Confirm, Key::Back]);
                }
                Menu::ChooseMethod(target) => {
                    lit.extend([Key::Digit(1), Key::Digit(2), Key::Digit(3), Key::Digit(4)]);
                    // "5" (a duress passcode, B-6.9) only for a stored user:
                    // a duress code is never anyone's only credential.
                    if !target.new {
                        lit.push(Key::Digit(5));
                    }
                    // "0" (delete one, issue 17 item 1) only if there is
                    // something to delete.
                    if self.offers_delete(*target) {
                        lit.push(Key::Digit(0));
                    }
                    lit.push(Key::Back);
                }
                Menu::DeleteCredential(target) => {
                    // B-3.3: only the kinds the user holds.
                    lit.extend(
                        METHOD_KEYS
                            .into_iter()
                            .filter(|(_, kind)| self.dir.holds(target.user, *kind))
                            .map(|(k, _)| Key::Digit(k)),
                    );
                    lit.push(Key::Back);
                }
                Menu::Enrol { .. } => lit.push(Key::Back),
                Menu::Passcode { .. } => {
                    lit.extend(DIGITS);
                    lit.push(Key::Back);
                    // B-4.8: "✓" lights once ≥ 6 digits.
                    confirm_if(&mut lit, buf >= limits::PASSCODE_MIN);
                }
                Menu::Language => {
                    lit.extend(Language::ALL.map(|l| Key::Digit(l.menu_key())));
                    lit.push(Key::Back);
                }
                Menu::Delete | Menu::Modify => {
                    lit.extend(DIGITS);
                    lit.push(Key::Back);
                    confirm_if(&mut lit, buf >= 1);
                }
            },
        }
        lit
    }

    pub(super) fn on_key(&mut self, out: &mut Out, key: Key) {
        let was_awake = self.keypad.awake;
        self.wake(out);
        if !was_awake {
            // The press that wakes the keypad also counts, if its key is lit
            // in the step it wakes into.
            if let Mode::ChooseDirection { .. } = self.mode {
                self.say(out, Prompt::ChooseDirection);
            }
        }
        if !self.lit_keys().contains(&key) {
            return;
        }
        self.keypad.digits_shown.clear();
        match &self.mode {
            Mode::ChooseDirection { confirmed } => {
                let confirmed = *confirmed;
                self.key_direction(out, key, confirmed)
            }
            Mode::FactoryReset { .. } => self.key_factory_reset(out, key),
            Mode::Idle => self.key_idle(out, key),
            Mode::VerifyAdmin => self.key_verify_admin(out, key),
            Mode::Menu(_) => self.key_menu(out, key),
        }
    }

    /// B-3.4: holding "0" until the keypad flashes twice mutes the prompts
    /// until the next outside unlock.
    pub(super) fn on_key_held(&mut self, out: &mut Out, key: Key) {
        if key != Key::Digit(0) || !matches!(self.mode, Mode::Idle) {
            return;
        }
        self.wake(out);
        self.keypad.clear();
        self.muted = true;
        self.keypad.flash_until = Some(self.now.mono + MUTE_FLASH);
        self.say(out, Prompt::MuteOn);
    }

    /// Append a digit, refusing input longer than `max`.
    fn push_digit(&mut self, out: &mut Out, key: Key, max: usize) {
        let Key::Digit(d) = key else { return };
        if self.keypad.buffer.len() >= max {
            self.keypad.clear();
            self.say(out, Prompt::InputTooLong);
            return;
        }
        self.keypad.buffer.push(d);
    }

    // ----- B-2.1 -----

    fn key_direction(&mut self, out: &mut Out, key: Key, confirmed: bool) {
        match (confirmed, key) {
            (false, Key::Confirm) => self.mode = Mode::ChooseDirection { confirmed: true },
            (true, Key::Back) => self.mode = Mode::ChooseDirection { confirmed: false },
            (true, Key::Digit(d @ (1 | 2))) => {
                let handing = if d == 1 {
                    Handing::RightHand
                } else {
                    Handing::LeftHand
                };
                self.persist(out, vec![Change::SetHanding(handing)]);
                self.log(out, EventKind::HandingSet { handing });
                self.say(out, Prompt::DirectionSet);
                self.start_normal(out);
            }
            _ => {}
        }
    }

    // ----- B-10.6 -----

    fn key_factory_reset(&mut self, out: &mut Out, key: Key) {
        match key {
            Key::Confirm => {
                self.persist(out, vec![Change::FactoryReset]);
                for modality in [Modality::Fingerprint, Modality::Palm, Modality::Face] {
                    out.push(Action::Module(ModuleCmd::Wipe { modality }));
                }
                // Nothing of the old owner survives: modes and flags reset.
                self.away = false;
                self.muted = false;
                self.pairing_until = None;
                self.outside_lock_armed = false;
                self.auto_lock_at = None;
                self.door_watch.reset();
                self.alarms.retain(|(k, _)| {
                    !matches!(
                        k,
                        super::event::AlarmKind::Lockout
                            | super::event::AlarmKind::Duress
                            | super::event::AlarmKind::DoorAjar
                            | super::event::AlarmKind::DoorForcedOpen
                    )
                });
                self.log(out, EventKind::FactoryReset);
                self.say(out, Prompt::FactoryResetDone);
                self.mode = Mode::Idle;
                // B-10.6: the door direction is asked again.
                self.start_normal(out);
            }
            Key::Back => {
                // Nothing is erased.
                self.mode = Mode::Idle;
                self.start_normal(out);
            }
            _ => {}
        }
    }

    // ----- idle: unlock, outside lock, away, doorbell, first admin -----

    fn key_idle(&mut self, out: &mut Out, key: Key) {
        if !self.dir.has_admin() {
            // Initial state (B-2.2/B-2.4): "✓" starts the first
            // administrator; "⏏" leaves.
            match key {
                Key::Confirm => self.start_first_admin(out),
                Key::Back => self.sleep(),
                _ => {}
            }
            return;
        }
        match key {
            Key::Digit(_) => self.push_digit(out, key, limits::MAX_INPUT_DIGITS),
            Key::Back => self.keypad.clear(),
            Key::Confirm if self.keypad.buffer.is_empty() => {
                // B-8.1: lit only after the door was opened from inside.
                self.lock(out, LockHow::Outside);
            }
            Key::Confirm => self.passcode_entered(out),
            Key::Away => {
                // B-3.6. Decision: the outside key only arms; disarming is
                // an inside unlock or the app, so a passer-by cannot turn
                // the owner's notifications off.
                if !self.away {
                    self.away = true;
                    self.log(out, EventKind::AwayMode { armed: true });
                }
                self.say(out, Prompt::AwayArmed);
            }
            Key::Doorbell => {
                // B-3.5. It always rings; beyond the doorbell's noise
                // budget (`core::noise`) it is counted instead of logged,
                // and neither notifies nor takes a picture.
                let logged = self.log(out, EventKind::Doorbell);
                self.say(out, Prompt::Doorbell);
                if logged {
                    out.push(Action::Notify(super::action::Notice::Doorbell));
                    self.snapshot(out, super::action::SnapshotReason::Doorbell);
                }
            }
        }
    }

    /// B-2.2: the first administrator starts with a passcode.
    fn start_first_admin(&mut self, out: &mut Out) {
        let Some(user) = self.dir.free_user_number() else {
            self.say(out, Prompt::LimitReached);
            return;
        };
        let target = Target {
            user,
            role: Role::Admin,
            new: true,
            remote: false,
        };
        self.show_number(out, user);
        self.start_method(out, target, 4);
    }

    fn key_verify_admin(&mut self, out: &mut Out, key: Key) {
        match key {
            Key::Digit(_) => self.push_digit(out, key, limits::MAX_INPUT_DIGITS),
            Key::Back => {
                self.mode = Mode::Idle;
                self.keypad.clear();
            }
            Key::Confirm => self.passcode_entered(out),
            _ => {}
        }
    }

    // ----- the menu -----

    fn key_menu(&mut self, out: &mut Out, key: Key) {
        let Mode::Menu(menu) = &self.mode else {
            return;
        };
        match menu {
            Menu::Main => match key {
                Key::Digit(1) => self.start_add(out, Role::Admin),
                Key::Digit(2) => self.start_add(out, Role::User),
                Key::Digit(3) => {
                    self.mode = Mode::Menu(Menu::Delete);
                    self.keypad.clear();
                    self.say(out, Prompt::EnterUserNumber);
                }
                Key::Digit(5) => {
                    self.mode = Mode::Menu(Menu::Modify);
                    self.keypad.clear();
                    self.say(out, Prompt::EnterUserNumber);
                }
                Key::Digit(6) => {
                    self.mode = Mode::Menu(Menu::Language);
                    self.say(out, Prompt::ChooseLanguage);
                }
                Key::Digit(4) if self.alarm_active(super::event::AlarmKind::ModuleSwap) => {
                    // Issue 13 item 7: re-pair the fingerprint module after
                    // a replacement. Only a factory-fresh module is adopted
                    // (the adapter checks); the swap alarm ends here, and
                    // a module that is still not the lock's raises it again.
                    out.push(Action::Module(ModuleCmd::Pair {
                        modality: Modality::Fingerprint,
                    }));
                    self.clear_alarm(out, super::event::AlarmKind::ModuleSwap, true);
                    self.say(out, Prompt::Success);
                }
                Key::Confirm => {
                    // B-4.10; the announcement ends back in the menu.
                    let p = Prompt::SystemInfo {
                        serial: self.config.serial.clone(),
                        firmware: self.config.firmware.clone(),
                        verification_code: self.config.pairing_codes.code(self.pairing_generation),
                        matter_code: self.config.matter_code.clone(),
                    };
                    self.say(out, p);
                    self.mode = Mode::Menu(Menu::SystemInfo);
                }
                Key::Back => {
                    self.mode = Mode::Idle;
                    self.sleep();
                }
                _ => {}
            },
            Menu::SystemInfo => {
                self.mode = Mode::Menu(Menu::Main);
                if key == Key::Back {
                    // B-4.10: "↩" returns to the menu; the menu prompt
                    // interrupts the announcement (the newest prompt wins).
                    self.say(out, Prompt::MenuMain);
                } else {
                    self.key_menu(out, key);
                }
            }
            Menu::ChooseMethod(target) => {
                let target = *target;
                match key {
                    Key::Digit(m @ 1..=4) => self.start_method(out, target, m),
                    Key::Digit(5) if !target.new => self.start_method(out, target, 5),
                    Key::Digit(0) => {
                        self.mode = Mode::Menu(Menu::DeleteCredential(target));
                        self.say(out, Prompt::ChooseCredentialToDelete);
                    }
                    Key::Back => self.menu_back_to_main(out),
                    _ => {}
                }
            }
            Menu::DeleteCredential(target) => {
                let target = *target;
                match key {
                    Key::Digit(k) => {
                        if let Some(kind) = kind_of_key(k) {
                            self.delete_credential_step(out, target, kind);
                        }
                    }
                    Key::Back => self.back_to_methods(out, target),
                    _ => {}
                }
            }
            Menu::Enrol {
                target, modality, ..
            } => {
                let (target, modality) = (*target, *modality);
                if key == Key::Back {
                    out.push(Action::Module(ModuleCmd::CancelEnrol { modality }));
                    self.back_to_methods(out, target);
                }
            }
            Menu::Passcode { target, .. } => {
                let target = *target;
                match key {
                    Key::Digit(_) => self.push_digit(out, key, limits::PASSCODE_MAX),
                    Key::Back => {
                        self.keypad.clear();
                        self.back_to_methods(out, target);
                    }
                    Key::Confirm => self.passcode_step(out),
                    _ => {}
                }
            }
            Menu::Language => match key {
                Key::Digit(k) => {
                    if let Some(lang) = Language::from_menu_key(k) {
                        self.set_language(out, lang);
                    }
                }
                Key::Back => {
                    self.mode = Mode::Menu(Menu::Main);
                    self.say(out, Prompt::MenuMain);
                }
                _ => {}
            },
            Menu::Delete | Menu::Modify => match key {
                Key::Digit(_) => self.push_digit(out, key, USER_NUMBER_DIGITS),
                Key::Back => {
                    self.keypad.clear();
                    self.mode = Mode::Menu(Menu::Main);
                    self.say(out, Prompt::MenuMain);
                }
                Key::Confirm if matches!(menu, Menu::Delete) => self.delete_step(out),
                Key::Confirm => self.modify_step(out),
                _ => {}
            },
        }
    }

    /// Issue 17 item 4: an administrator chose `lang` in the language
    /// menu. Stored like the app's setting (and logged as a setting
    /// change), confirmed in the new language, then back to the menu.
    fn set_language(&mut self, out: &mut Out, lang: Language) {
        let change = SettingChange::Language(lang);
        let mut settings = self.settings.clone();
        settings.language = Some(lang);
        self.persist(out, vec![Change::PutSettings(settings)]);
        self.log(out, EventKind::SettingChanged { change });
        self.say(out, Prompt::LanguageSet);
        self.mode = Mode::Menu(Menu::Main);
    }

    fn menu_back_to_main(&mut self, out: &mut Out) {
        if self.dir.has_admin() {
            self.mode = Mode::Menu(Menu::Main);
            self.say(out, Prompt::MenuMain);
        } else {
            // Leaving the first-administrator flow: back to the initial state.
            self.mode = Mode::Idle;
            self.sleep();
        }
    }

    /// Back to choosing a method for the same user. A user that was never
    /// stored stays unstored; if it has no credential yet, the choice goes
    /// on until one succeeds or "↩" leaves.
    fn back_to_methods(&mut self, out: &mut Out, target: Target) {
        if target.remote {
            // An enrolment the app started ends here, stored or not: the
            // person at the lock never reaches the menu.
            self.mode = Mode::Idle;
            self.sleep();
            return;
        }
        self.mode = Mode::Menu(Menu::ChooseMethod(target));
        let p = self.choose_method_prompt(target);
        self.say(out, p);
    }

    /// What the method choice says: "5" (duress) is offered to stored
    /// users, "0" (delete one) to those who hold a credential.
    fn choose_method_prompt(&self, target: Target) -> Prompt {
        if target.new {
            Prompt::ChooseMethod
        } else if self.offers_delete(target) {
            Prompt::ChooseMethodOrDelete
        } else {
            Prompt::ChooseMethodOrDuress
        }
    }

    /// Issue 17 item 1: "0" in the method choice, for a stored user who
    /// holds at least one credential.
    fn offers_delete(&self, target: Target) -> bool {
        !target.new && self.dir.credentials.values().any(|c| c.user == target.user)
    }

    fn show_number(&mut self, out: &mut Out, user: UserNumber) {
        // B-1.4: the number's digits are lit one after the other.
        self.keypad.digits_shown = user.digits().to_vec();
        self.say(out, Prompt::UserNumber(user));
    }

    /// B-4.4: allocate the next free number and show it.
    fn start_add(&mut self, out: &mut Out, role: Role) {
        let Some(user) = self.dir.free_user_number() else {
            self.say(out, Prompt::LimitReached);
            return;
        };
        self.show_number(out, user);
        self.back_to_methods(
            out,
            Target {
                user,
                role,
                new: true,
                remote: false,
            },
        );
    }

    /// Issue 17 item 1: "5", a user number, "✓": add credentials to that
    /// existing user (B-9.3), with the per-user limits of B-1.2. A wrong
    /// number is refused as in the delete step.
    fn modify_step(&mut self, out: &mut Out) {
        let typed: Vec<u8> = self.keypad.buffer.to_vec();
        self.keypad.clear();
        let number = typed.iter().fold(0u16, |n, d| n * 10 + u16::from(*d));
        let Some(u) = UserNumber::new(number).and_then(|n| self.dir.users.get(&n)) else {
            self.keypad.digits_shown = typed;
            self.say(out, Prompt::NoSuchUser);
            return;
        };
        let target = Target {
            user: u.number,
            role: u.role,
            new: false,
            remote: false,
        };
        self.show_number(out, target.user);
        self.back_to_methods(out, target);
    }

    /// Issue 17 item 1: the owner's app puts the lock into enrolment of
    /// `kind` for an existing user. Refused while the keypad is in use, for
    /// a user that does not exist, or over a B-1 limit; it lasts
    /// [`APP_ENROL_WINDOW`] (then as long as the person keeps going) and
    /// ends on "↩", on the keypad's sleep, or after one credential.
    pub(super) fn enrol_for(
        &mut self,
        out: &mut Out,
        user: UserNumber,
        kind: CredentialKind,
    ) -> Result<(), super::action::AppError> {
        use super::action::AppError;
        self.not_busy()?;
        let u = self.dir.users.get(&user).ok_or(AppError::NoSuchUser)?;
        let method = match kind {
            CredentialKind::Face => 1,
            CredentialKind::Palm => 2,
            CredentialKind::Fingerprint => 3,
            CredentialKind::Passcode => 4,
            _ => {
                return Err(AppError::BadSetting(
                    "only face, palm, fingerprint or passcode is enrolled at the lock".into(),
                ))
            }
        };
        self.dir
            .check_limits(user, kind)
            .map_err(|_| AppError::Limit(kind))?;
        let target = Target {
            user,
            role: u.role,
            new: false,
            remote: true,
        };
        self.wake(out);
        self.keypad.clear();
        self.show_number(out, user);
        self.start_method(out, target, method);
        if !matches!(
            self.mode,
            Mode::Menu(Menu::Enrol { .. } | Menu::Passcode { .. })
        ) {
            // No free module slot: nothing started.
            self.mode = Mode::Idle;
            self.sleep();
            return Err(AppError::Limit(kind));
        }
        self.keypad.sleep_at = Some(self.now.mono + APP_ENROL_WINDOW);
        Ok(())
    }

    /// B-4.4: 1 face, 2 palm, 3 fingerprint, 4 passcode. Limits (B-1.1,
    /// B-1.2) are checked before anything starts.
    fn start_method(&mut self, out: &mut Out, target: Target, method: u8) {
        let (kind, modality) = match method {
            1 => (CredentialKind::Face, Some(Modality::Face)),
            2 => (CredentialKind::Palm, Some(Modality::Palm)),
            3 => (CredentialKind::Fingerprint, Some(Modality::Fingerprint)),
            5 => (CredentialKind::DuressPasscode, None),
            _ => (CredentialKind::Passcode, None),
        };
        let slot = match modality {
            Some(m) => self.dir.free_slot(m),
            None => Some(0),
        };
        // A new duress code replaces the user's old one (as from the app).
        let replacing =
            self.duress_credential(target.user).is_some() && kind == CredentialKind::DuressPasscode;
        let limits = if replacing {
            Ok(())
        } else {
            self.dir.check_limits(target.user, kind)
        };
        let (Ok(()), Some(slot)) = (limits, slot) else {
            self.say(out, Prompt::LimitReached);
            self.mode = Mode::Menu(Menu::ChooseMethod(target));
            return;
        };
        match modality {
            Some(modality) => {
                self.mode = Mode::Menu(Menu::Enrol {
                    target,
                    modality,
                    slot,
                });
                out.push(Action::Module(ModuleCmd::Enrol { modality, slot }));
                let first = match modality {
                    Modality::Face => Prompt::FacePose(FacePose::Straight),
                    Modality::Palm => Prompt::PlacePalm,
                    Modality::Fingerprint => Prompt::PlaceFinger,
                };
                self.say(out, first);
            }
            None => {
                self.keypad.clear();
                self.mode = Mode::Menu(Menu::Passcode {
                    target,
                    kind,
                    first: None,
                });
                self.say(out, Prompt::EnterPasscode);
            }
        }
    }

    /// Store a credential, with its user if the user is new (B-4.11), then
    /// report success and go on choosing methods for the same user.
    fn store_credential(
        &mut self,
        out: &mut Out,
        target: Target,
        kind: CredentialKind,
        secret: CredentialSecret,
    ) {
        let cred = Credential {
            id: self.dir.next_credential_id(),
            user: target.user,
            kind,
            secret,
        };
        let mut changes = Vec::new();
        if kind == CredentialKind::DuressPasscode {
            // One duress code per user: the new one replaces the old in
            // the same commit.
            changes.extend(
                self.duress_credential(target.user)
                    .map(Change::DeleteCredential),
            );
        }
        if target.new {
            changes.push(Change::PutUser(User {
                number: target.user,
                role: target.role,
                validity: Validity::ALWAYS,
            }));
        }
        changes.push(Change::PutCredential(cred));
        self.persist(out, changes);
        if target.new {
            self.log(out, EventKind::UserAdded { user: target.user });
        }
        self.log(
            out,
            EventKind::CredentialAdded {
                user: target.user,
                kind,
            },
        );
        self.say(out, Prompt::Success);
        self.back_to_methods(
            out,
            Target {
                new: false,
                ..target
            },
        );
    }

    /// The user's duress passcode, if one is stored (at most one).
    pub(super) fn duress_credential(&self, user: UserNumber) -> Option<CredentialId> {
        self.dir
            .credentials
            .values()
            .find(|c| c.user == user && c.kind == CredentialKind::DuressPasscode)
            .map(|c| c.id)
    }

    /// B-4.8: first entry, repeat, compare.
    fn passcode_step(&mut self, out: &mut Out) {
        let Mode::Menu(Menu::Passcode {
            target,
            kind,
            first,
        }) = &mut self.mode
        else {
            return;
        };
        let (target, kind, first_code) = (*target, *kind, first.take());
        let replaced = match kind {
            CredentialKind::DuressPasscode => self.duress_credential(target.user),
            _ => None,
        };
        let typed: Redacted<Vec<u8>> = Redacted::new(self.keypad.buffer.to_vec());
        self.keypad.clear();
        match first_code {
            None => {
                if let Err(e) = check_rules(&typed) {
                    let p = match e {
                        PasscodeError::Length(_) | PasscodeError::NotDigits => Prompt::Failure,
                        PasscodeError::AllSame | PasscodeError::Consecutive => {
                            Prompt::PasscodeTooSimple
                        }
                    };
                    self.say(out, p);
                    return;
                }
                // Equal to, or containing, a stored code: refused so that
                // anti-peep stays unambiguous (see passcode.rs).
                let replaced_by_this = |t: &PasscodeTarget| matches!(t, PasscodeTarget::User { credential, .. } if Some(*credential) == replaced);
                if self
                    .dir
                    .passcodes()
                    .conflicts(&self.macer, &typed, replaced_by_this)
                {
                    self.say(out, Prompt::PasscodeTaken);
                    return;
                }
                if let Mode::Menu(Menu::Passcode { first, .. }) = &mut self.mode {
                    *first = Some(typed);
                }
                self.say(out, Prompt::RepeatPasscode);
            }
            Some(first_code) => {
                if first_code.as_slice() != typed.as_slice() {
                    // B-2.2: mismatch = failure prompt, start over.
                    self.say(out, Prompt::PasscodeMismatch);
                    self.say(out, Prompt::EnterPasscode);
                    return;
                }
                // Limits again: an app command may have used the last
                // passcode slot while this person was typing.
                if replaced.is_none() && self.dir.check_limits(target.user, kind).is_err() {
                    self.say(out, Prompt::LimitReached);
                    self.back_to_methods(out, target);
                    return;
                }
                let mac = self.macer.mac(&typed);
                self.store_credential(out, target, kind, CredentialSecret::Passcode(mac));
            }
        }
    }

    /// Reports from a module while an enrolment runs (B-4.5–B-4.7).
    pub(super) fn enrol_report(&mut self, out: &mut Out, r: ModuleReport) {
        let Mode::Menu(Menu::Enrol {
            target,
            modality,
            slot,
        }) = self.mode
        else {
            return;
        };
        match r {
            ModuleReport::EnrolProgress { modality: m, step } if m == modality => {
                // Progress keeps the keypad (and so the menu) awake.
                self.wake(out);
                let p = match step {
                    EnrolStep::FacePose(p) => Prompt::FacePose(p),
                    EnrolStep::FaceFix(f) => Prompt::FaceFix(f),
                    EnrolStep::PresentAgain { .. } => Prompt::PresentAgain,
                    EnrolStep::Remove => Prompt::Remove,
                };
                self.say(out, p);
            }
            ModuleReport::Enrolled {
                modality: m,
                slot: s,
                template,
            } if m == modality => {
                self.wake(out);
                let secret = match (modality, template) {
                    (Modality::Face, Some(t)) if !t.is_empty() && s == slot => {
                        Some(CredentialSecret::FaceTemplate { slot, template: t })
                    }
                    (Modality::Palm | Modality::Fingerprint, _) if s == slot => {
                        Some(CredentialSecret::ModuleSlot(slot))
                    }
                    _ => None,
                };
                let Some(secret) = secret else {
                    // Not what was asked for (another slot, a face without a
                    // template): refuse it and drop whatever the module kept,
                    // unless that slot belongs to someone.
                    if self.dir.by_slot(modality, s).is_none() {
                        out.push(Action::Module(ModuleCmd::Delete { modality, slot: s }));
                    }
                    self.say(out, Prompt::Failure);
                    self.back_to_methods(out, target);
                    return;
                };
                // B-1.3 belt and braces: the slot must still be free.
                if self.dir.by_slot(modality, slot).is_some() {
                    self.say(out, Prompt::Failure);
                    self.back_to_methods(out, target);
                    return;
                }
                self.store_credential(out, target, modality.into(), secret);
            }
            ModuleReport::EnrolFailed {
                modality: m,
                reason,
            } if m == modality => {
                let p = match reason {
                    EnrolFailure::Duplicate { .. } => Prompt::AlreadyEnrolled,
                    EnrolFailure::Timeout | EnrolFailure::Quality | EnrolFailure::Module(_) => {
                        Prompt::Failure
                    }
                };
                self.say(out, p);
                self.back_to_methods(out, target);
            }
            ModuleReport::Fault {
                modality: m,
                detail,
            } => {
                self.module_fault(out, m, &detail);
                if m == modality {
                    self.back_to_methods(out, target);
                }
            }
            ModuleReport::Recovered { modality: m } => self.module_recovered(out, m),
            ModuleReport::Untrusted {
                modality: m,
                detail,
            } => {
                self.module_untrusted(out, m, &detail);
                if m == modality {
                    self.back_to_methods(out, target);
                }
            }
            // Recognitions and reports of another modality do not belong to
            // this enrolment.
            _ => {}
        }
    }

    /// B-4.9: delete a user by number.
    fn delete_step(&mut self, out: &mut Out) {
        let typed: Vec<u8> = self.keypad.buffer.to_vec();
        self.keypad.clear();
        let number = typed.iter().fold(0u16, |n, d| n * 10 + u16::from(*d));
        let refuse = |e: &mut Engine, out: &mut Out, p: Prompt| {
            // The wrong number's digits light one by one, with a failure
            // prompt; "↩" goes back or another number may be typed.
            e.keypad.digits_shown = typed.clone();
            e.say(out, p);
        };
        let Some(user) = UserNumber::new(number).filter(|n| self.dir.users.contains_key(n)) else {
            refuse(self, out, Prompt::NoSuchUser);
            return;
        };
        if let Err(p) = self.may_delete(user) {
            refuse(self, out, p);
            return;
        }
        self.delete_user(out, user);
        self.say(out, Prompt::Deleted);
        self.mode = Mode::Menu(Menu::Main);
    }

    /// The last administrator and the only remaining user cannot be
    /// deleted (B-4.9).
    pub(super) fn may_delete(&self, user: UserNumber) -> Result<(), Prompt> {
        let Some(u) = self.dir.users.get(&user) else {
            return Err(Prompt::NoSuchUser);
        };
        if u.role == Role::Admin && self.dir.admins().count() <= 1 {
            return Err(Prompt::CannotDeleteLastAdmin);
        }
        if self.dir.users.len() <= 1 {
            return Err(Prompt::Failure);
        }
        Ok(())
    }

    /// Issue 17 item 1: the administrator pressed the key of a kind the
    /// user holds. Decision: no "✓" to confirm, as in the delete step
    /// (B-4.9): the newest credential of that kind goes at once, then
    /// "Deleted" and the menu. A refusal stays in the step ("↩" goes back).
    fn delete_credential_step(&mut self, out: &mut Out, target: Target, kind: CredentialKind) {
        match self.remove_credential_of(out, target.user, kind) {
            Ok(()) => {
                self.say(out, Prompt::Deleted);
                self.mode = Mode::Menu(Menu::Main);
            }
            Err(DeleteRefusal::LastAdminCredential) => {
                self.say(out, Prompt::CannotDeleteLastAdmin);
            }
            // Only lit kinds of a stored user get here, and no app command
            // changes users while the menu is open: not expected.
            Err(DeleteRefusal::NoSuchUser | DeleteRefusal::NotFound) => {
                self.say(out, Prompt::Failure);
            }
        }
    }

    /// Issue 17 item 1: delete `user`'s newest credential of `kind` — the
    /// one rule for the app (`DeleteCredentialOf`) and the menu. The
    /// caller decides whether it may act now (the app waits while the
    /// keypad is in use, `not_busy`; the menu is the keypad).
    pub(super) fn remove_credential_of(
        &mut self,
        out: &mut Out,
        user: UserNumber,
        kind: CredentialKind,
    ) -> Result<(), DeleteRefusal> {
        if !self.dir.users.contains_key(&user) {
            return Err(DeleteRefusal::NoSuchUser);
        }
        let id = self
            .dir
            .newest_credential(user, kind)
            .ok_or(DeleteRefusal::NotFound)?;
        self.remove_credential(out, id)
    }

    /// Delete one credential: refused if it is the last one that opens the
    /// menu for any administrator; otherwise persisted, its module-held
    /// template deleted from the module (as `delete_user` does for a whole
    /// user), and logged. Also Matter's `ClearCredential`.
    pub(super) fn remove_credential(
        &mut self,
        out: &mut Out,
        id: CredentialId,
    ) -> Result<(), DeleteRefusal> {
        let c = self
            .dir
            .credentials
            .get(&id)
            .cloned()
            .ok_or(DeleteRefusal::NotFound)?;
        if self.opens_menu(&c)
            && !self
                .dir
                .credentials
                .values()
                .any(|o| o.id != id && self.opens_menu(o))
        {
            return Err(DeleteRefusal::LastAdminCredential);
        }
        self.persist(out, vec![Change::DeleteCredential(id)]);
        if let Some((modality, slot)) = super::users::module_slot_of(&c) {
            out.push(Action::Module(ModuleCmd::Delete { modality, slot }));
        }
        self.log(
            out,
            EventKind::CredentialRemoved {
                user: c.user,
                kind: c.kind,
            },
        );
        Ok(())
    }

    /// B-4.1: the menu opens with an administrator's credential; a duress
    /// code unlocks but never opens it (`attempt`), so it does not keep the
    /// menu reachable (B-4.9 spirit: neither may the last administrator's
    /// last way in be deleted). Nor does a face: it verifies at SET only
    /// while the camera works (it may be turned off, dark or covered), so
    /// a face alone could leave the menu out of reach.
    fn opens_menu(&self, c: &Credential) -> bool {
        !matches!(
            c.kind,
            CredentialKind::DuressPasscode | CredentialKind::Face
        ) && self
            .dir
            .users
            .get(&c.user)
            .is_some_and(|u| u.role == Role::Admin)
    }

    /// Persist the deletion, then remove the module-held templates.
    pub(super) fn delete_user(&mut self, out: &mut Out, user: UserNumber) {
        let slots = self.dir.module_slots_of(user);
        self.persist(out, vec![Change::DeleteUser(user)]);
        for (modality, slot) in slots {
            out.push(Action::Module(ModuleCmd::Delete { modality, slot }));
        }
        self.log(out, EventKind::UserDeleted { user });
    }
}
