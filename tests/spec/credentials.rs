//! Issue 17 item 1: credentials for existing users — the menu path
//! (modify user N → method, B-1.2 limits), the app's enrolment for user
//! N (time-limited, ↩ cancels, owner only) and deleting one credential.
use latchd::core::action::ModuleCmd;
use latchd::core::types::{CredentialKind, Modality, Role};
use latchd::core::{AppCommand, AppError, AppOk, Channel, EventKind, Prompt};

use crate::harness::{n, Sim};

#[test]
fn b9_3_the_menu_adds_a_credential_to_an_existing_user() {
    let mut s = Sim::installed();
    let user = s.add_passcode_user("2", "802469");
    s.enter_menu();
    s.press("5");
    s.expect_prompt(Prompt::EnterUserNumber);
    s.press("9✓");
    s.expect_prompt(Prompt::NoSuchUser);
    s.press(&format!("{}✓", user.get()));
    s.expect_prompt(Prompt::ChooseMethodOrDuress);
    s.press("3");
    s.complete_enrolment(Modality::Fingerprint);
    s.expect_prompt(Prompt::Success);
    assert!(s.has_event(&EventKind::CredentialAdded {
        user,
        kind: CredentialKind::Fingerprint
    }));
    // No new user was made: the fingerprint is the existing user's.
    assert!(!s
        .events()
        .iter()
        .any(|e| matches!(e.kind, EventKind::UserAdded { .. })));
    assert_eq!(s.store.users.len(), 2);
    // B-1.2: one passcode per user.
    s.press("4");
    s.expect_prompt(Prompt::LimitReached);
}

#[test]
fn the_app_puts_the_lock_into_enrolment_for_user_n() {
    let mut s = Sim::installed();
    let owner = s.owner();
    let r = s.app(
        Channel::Ble,
        owner,
        AppCommand::AddUser {
            role: Role::User,
            validity: latchd::core::time::Validity::ALWAYS,
        },
    );
    let Ok(AppOk::UserAdded(user)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::EnrolFor {
                user: n(9),
                kind: CredentialKind::Face
            }
        ),
        Err(AppError::NoSuchUser)
    );
    assert_eq!(
        s.app(
            Channel::Remote,
            owner,
            AppCommand::EnrolFor {
                user,
                kind: CredentialKind::Palm
            }
        ),
        Ok(AppOk::Done)
    );
    s.expect_prompt(Prompt::PlacePalm);
    s.complete_enrolment(Modality::Palm);
    s.expect_prompt(Prompt::Success);
    assert!(s.has_event(&EventKind::CredentialAdded {
        user,
        kind: CredentialKind::Palm
    }));
    // One credential, then back to idle: the person never sees the menu.
    assert_eq!(s.engine.status().step, "idle");

    // "↩" cancels: the module stops and nothing is stored.
    s.app(
        Channel::Ble,
        owner,
        AppCommand::EnrolFor {
            user,
            kind: CredentialKind::Fingerprint,
        },
    )
    .expect("starts");
    s.press("↩");
    assert!(s.module_cmds().contains(&ModuleCmd::CancelEnrol {
        modality: Modality::Fingerprint
    }));
    assert_eq!(s.engine.status().step, "idle");

    // Time-out: nobody comes within the window.
    s.app(
        Channel::Ble,
        owner,
        AppCommand::EnrolFor {
            user,
            kind: CredentialKind::Fingerprint,
        },
    )
    .expect("starts");
    s.advance(119);
    assert_eq!(s.engine.status().step, "enrol.fingerprint");
    s.advance(1);
    assert_eq!(s.engine.status().step, "idle");
    assert!(s.module_cmds().contains(&ModuleCmd::CancelEnrol {
        modality: Modality::Fingerprint
    }));
    // A passcode enrolment started from the app: "↩" leaves to idle, not the menu.
    s.app(
        Channel::Ble,
        owner,
        AppCommand::EnrolFor {
            user,
            kind: CredentialKind::Passcode,
        },
    )
    .expect("starts");
    s.expect_prompt(Prompt::EnterPasscode);
    s.press("↩");
    assert_eq!(s.engine.status().step, "idle");
}

#[test]
fn the_app_enrolment_is_owner_only_and_waits_for_a_busy_keypad() {
    let mut s = Sim::installed();
    let owner = s.owner();
    let guest = latchd::core::Principal::Guest {
        key: latchd::core::types::AppKeyId(9),
        validity: latchd::core::time::Validity::ALWAYS,
    };
    assert_eq!(
        s.app(
            Channel::Ble,
            guest,
            AppCommand::EnrolFor {
                user: n(1),
                kind: CredentialKind::Face
            }
        ),
        Err(AppError::Forbidden)
    );
    s.enter_menu();
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::EnrolFor {
                user: n(1),
                kind: CredentialKind::Face
            }
        ),
        Err(AppError::Busy)
    );
    s.press("↩");
    // B-1.2: one passcode per user; the administrator has one.
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::EnrolFor {
                user: n(1),
                kind: CredentialKind::Passcode
            }
        ),
        Err(AppError::Limit(CredentialKind::Passcode))
    );
}

#[test]
fn the_app_deletes_one_credential_of_a_user_but_not_the_last_admins_last() {
    let mut s = Sim::installed();
    let owner = s.owner();
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::DeleteCredentialOf {
                user: n(1),
                kind: CredentialKind::Passcode
            }
        ),
        Err(AppError::LastAdmin)
    );
    s.app(
        Channel::Ble,
        owner,
        AppCommand::EnrolFor {
            user: n(1),
            kind: CredentialKind::Fingerprint,
        },
    )
    .expect("starts");
    let slot = s.complete_enrolment(Modality::Fingerprint);
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::DeleteCredentialOf {
                user: n(1),
                kind: CredentialKind::Fingerprint
            }
        ),
        Ok(AppOk::Done)
    );
    assert!(s.has_event(&EventKind::CredentialRemoved {
        user: n(1),
        kind: CredentialKind::Fingerprint
    }));
    assert!(s.module_cmds().contains(&ModuleCmd::Delete {
        modality: Modality::Fingerprint,
        slot
    }));
    // The finger no longer opens; the passcode still does.
    s.present_finger(slot);
    assert!(!s.unlocked());
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::DeleteCredentialOf {
                user: n(1),
                kind: CredentialKind::Fingerprint
            }
        ),
        Err(AppError::NotFound)
    );
}

/// Issue 17 item 8: an administrator sets a user's duress passcode at the
/// lock (menu 5 → user → 5), B-6.9; it replaces the user's old one.
#[test]
fn b6_9_an_administrator_sets_a_duress_passcode_at_the_lock() {
    use latchd::core::action::Notice;
    let mut s = Sim::installed();
    let user = s.add_passcode_user("2", "802469");
    let set_duress = |s: &mut Sim, code: &str| {
        s.enter_menu();
        s.press("5");
        s.press(&format!("{}✓", user.get()));
        s.expect_prompt(Prompt::ChooseMethodOrDuress);
        s.press("5");
        s.expect_prompt(Prompt::EnterPasscode);
        s.press(&format!("{code}✓{code}✓"));
        s.expect_prompt(Prompt::Success);
        s.press("↩↩");
    };
    let duress_codes = |s: &Sim| {
        s.store
            .credentials
            .iter()
            .filter(|c| c.user == user && c.kind == CredentialKind::DuressPasscode)
            .count()
    };
    set_duress(&mut s, "975319");
    assert_eq!(duress_codes(&s), 1);
    // Entered at the door: an ordinary unlock, and the owner is told.
    s.input(latchd::core::Input::Touch);
    s.press("975319✓");
    assert!(s.drive().is_some());
    assert!(s.notices().contains(&Notice::Duress { user }));
    s.finish_motor();

    // A second one replaces the first (one duress code per user, B-1.2
    // spirit, as from the app): the old code no longer opens anything.
    set_duress(&mut s, "864208");
    assert_eq!(duress_codes(&s), 1);
    s.advance(200);
    let before = s.notices().len();
    s.input(latchd::core::Input::Touch);
    s.press("975319✓");
    s.expect_prompt(Prompt::VerifyFailed);
    assert_eq!(s.notices().len(), before);
}

#[test]
fn b6_9_a_new_user_is_not_offered_a_duress_code_first() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("2");
    s.expect_prompt(Prompt::ChooseMethod);
    assert!(!s
        .engine
        .status()
        .keypad
        .lit
        .contains(&latchd::core::types::Key::Digit(5)));
    // Unlit, "5" does nothing (B-3.3): no passcode entry starts.
    s.press("5");
    assert_eq!(s.engine.status().step, "menu.choose_method");
}

#[test]
fn b6_9_a_duress_code_at_the_lock_must_differ_from_every_code() {
    let mut s = Sim::installed();
    let user = s.add_passcode_user("2", "802469");
    s.enter_menu();
    s.press("5");
    s.press(&format!("{}✓", user.get()));
    s.press("5");
    // The user's own passcode: refused (anti-peep must stay unambiguous).
    s.press("802469✓");
    s.expect_prompt(Prompt::PasscodeTaken);
    assert!(s
        .store
        .credentials
        .iter()
        .all(|c| c.kind != CredentialKind::DuressPasscode));
}
