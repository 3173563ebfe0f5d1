//! Issue 17 item 1: credentials for existing users — the menu path
//! (modify user N → method, B-1.2 limits), the app's enrolment for user
//! N (time-limited, ↩ cancels, owner only) and deleting one credential,
//! from the app and at the keypad (menu 5 → user N → 0 → kind).
use latchd::core::action::ModuleCmd;
use latchd::core::types::{
    Credential, CredentialId, CredentialKind, CredentialSecret, Modality, Role,
};
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
    s.expect_prompt(Prompt::ChooseMethodOrDelete);
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

/// B-1.2 with B-6.9: a user's duress code lets a *new duress code*
/// replace it past the limit, and nothing else: the user's one passcode
/// stays one.
#[test]
fn b1_2_a_duress_code_opens_no_way_past_the_passcode_limit() {
    let mut s = Sim::installed();
    let owner = s.owner();
    let user = s.add_passcode_user("2", "802469");
    s.set_duress_passcode(owner, user, "975319");
    s.enter_menu();
    s.press("5");
    s.press(&format!("{}✓", user.get()));
    s.press("4");
    s.expect_prompt(Prompt::LimitReached);
    assert_eq!(s.engine.status().step, "menu.choose_method");
    // The duress code itself may be replaced.
    s.press("5");
    s.expect_prompt(Prompt::EnterPasscode);
}

/// A user made in the menu is stored with its first credential: from then
/// on it is an existing user (a duress code is offered, B-6.9, and the
/// next credential adds to it without making the user again).
#[test]
fn b4_4_a_new_user_is_an_existing_one_after_its_first_credential() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("2");
    let user = s.shown_user().expect("a number");
    assert!(!s.lit().contains(&latchd::core::types::Key::Digit(5)));
    s.press("4");
    s.press("802469✓802469✓");
    s.expect_prompt(Prompt::Success);
    assert!(s.has_event(&EventKind::UserAdded { user }));
    assert!(s.lit().contains(&latchd::core::types::Key::Digit(5)));
    s.press("3");
    s.complete_enrolment(Modality::Fingerprint);
    s.expect_prompt(Prompt::Success);
    assert!(!s
        .events()
        .iter()
        .any(|e| matches!(e.kind, EventKind::UserAdded { .. })));
    let puts = s
        .persisted()
        .iter()
        .filter(|c| matches!(c, latchd::core::types::Change::PutUser(_)))
        .count();
    assert_eq!(puts, 0, "the user is not written again");
}

/// Issue 17 item 1: the user number typed in menu 5 is read whole: "11"
/// is user 011, not user 001 or any other one.
#[test]
fn b9_3_menu_5_reads_a_user_number_of_two_digits() {
    let mut s = Sim::installed();
    let users: Vec<_> = (0..10u32)
        .map(|i| s.add_passcode_user("2", &format!("{:06}", 802_469 + i * 13)))
        .collect();
    assert_eq!(users.last(), Some(&n(11)));
    s.enter_menu();
    s.press("5");
    s.press("11✓");
    assert_eq!(s.shown_user(), Some(n(11)));
    s.expect_prompt(Prompt::ChooseMethodOrDelete);
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
        s.expect_prompt(Prompt::ChooseMethodOrDelete);
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

/// Menu 5 → user N → "0" → the kind: the credential-deletion step of
/// `ChooseMethod`, for a stored user who holds something.
fn open_delete_step(s: &mut Sim, user: latchd::core::types::UserNumber) {
    s.enter_menu();
    s.press("5");
    s.press(&format!("{}✓", user.get()));
    s.expect_prompt(Prompt::ChooseMethodOrDelete);
    s.press("0");
    s.expect_prompt(Prompt::ChooseCredentialToDelete);
    assert_eq!(s.engine.status().step, "menu.delete_credential");
}

/// Issue 17 item 1 (B-4.2 menu, B-9.3 at the keypad): an administrator
/// deletes one fingerprint of a user; the module drops its template, the
/// change is stored before "Deleted" is said (B-4.11), the finger no longer
/// opens and the user's passcode still does.
#[test]
fn b4_2_the_menu_deletes_one_fingerprint_of_a_user() {
    use latchd::core::action::Action;
    use latchd::core::types::{Change, Key};
    let mut s = Sim::installed();
    let user = s.add_passcode_user("2", "802469");
    s.enter_menu();
    s.press("5");
    s.press(&format!("{}✓", user.get()));
    s.press("3");
    let slot = s.complete_enrolment(Modality::Fingerprint);
    s.expect_prompt(Prompt::Success);
    // Back in the method choice, "0" (delete) is offered now.
    s.expect_prompt(Prompt::ChooseMethodOrDelete);
    assert!(s.lit().contains(&Key::Digit(0)));
    s.press("0");
    s.expect_prompt(Prompt::ChooseCredentialToDelete);
    // B-3.3: only the kinds this user holds are lit.
    assert_eq!(s.lit(), vec![Key::Digit(3), Key::Digit(4), Key::Back]);
    let id = s
        .store
        .credentials
        .iter()
        .find(|c| c.user == user && c.kind == CredentialKind::Fingerprint)
        .map(|c| c.id)
        .unwrap();
    s.press("3");
    s.expect_prompt(Prompt::Deleted);
    assert_eq!(s.persisted(), vec![Change::DeleteCredential(id)]);
    assert!(s.module_cmds().contains(&ModuleCmd::Delete {
        modality: Modality::Fingerprint,
        slot
    }));
    assert!(s.has_event(&EventKind::CredentialRemoved {
        user,
        kind: CredentialKind::Fingerprint
    }));
    let stored = s.position(|a| matches!(a, Action::Persist(_))).unwrap();
    let said = s
        .position(|a| matches!(a, Action::Prompt(Prompt::Deleted, _)))
        .unwrap();
    assert!(stored < said, "B-4.11: stored before it is reported");
    // Back to the menu, as after deleting a user.
    assert_eq!(s.engine.status().step, "menu");
    s.press("↩");
    s.advance(30);

    s.present_finger(slot);
    assert!(!s.unlocked(), "the deleted finger no longer opens");
    s.input(latchd::core::Input::Touch);
    s.press("802469✓");
    assert!(s.unlocked(), "the passcode still does");
}

/// Issue 17 item 1, B-3.3: in the deletion step a kind the user does not
/// hold is unlit and does nothing; "0" is unlit for a new user and for a
/// stored user with no credential (made by the app), who is offered the
/// plain method choice.
#[test]
fn b3_3_an_unlit_kind_deletes_nothing() {
    use latchd::core::types::Key;
    let mut s = Sim::installed();
    let user = s.add_passcode_user("2", "802469");
    open_delete_step(&mut s, user);
    assert_eq!(s.lit(), vec![Key::Digit(4), Key::Back]);
    for k in ["1", "2", "3", "5", "0", "✓"] {
        s.press(k);
        assert!(s.persisted().is_empty(), "{k}");
        assert!(s.prompts().is_empty(), "{k}");
        assert_eq!(s.engine.status().step, "menu.delete_credential", "{k}");
    }
    assert_eq!(s.store.credentials.len(), 2);
    s.press("↩↩");

    // A new user holds nothing: "0" is not offered.
    s.press("2");
    s.expect_prompt(Prompt::ChooseMethod);
    assert!(!s.lit().contains(&Key::Digit(0)));
    s.press("0");
    assert_eq!(s.engine.status().step, "menu.choose_method");
    s.press("↩↩");

    // Nor for a stored user without a credential.
    let owner = s.owner();
    let Ok(AppOk::UserAdded(empty)) = s.app(
        Channel::Ble,
        owner,
        AppCommand::AddUser {
            role: Role::User,
            validity: latchd::core::time::Validity::ALWAYS,
        },
    ) else {
        panic!("user added")
    };
    s.advance(200);
    s.enter_menu();
    s.press("5");
    s.press(&format!("{}✓", empty.get()));
    s.expect_prompt(Prompt::ChooseMethodOrDuress);
    assert!(!s.lit().contains(&Key::Digit(0)));
    s.press("0");
    assert_eq!(s.engine.status().step, "menu.choose_method");
}

/// Issue 17 item 1, B-4.9 spirit: the menu must stay reachable, so the
/// last credential that opens it for any administrator (B-4.1) is kept,
/// with the prompt of the last-administrator refusal. A duress code does
/// not open the menu and does not count; once the administrator has a
/// fingerprint too, the passcode may go.
#[test]
fn b4_9_the_last_administrator_credential_is_refused_at_the_keypad() {
    use latchd::core::types::Key;
    let mut s = Sim::installed();
    open_delete_step(&mut s, n(1));
    assert_eq!(s.lit(), vec![Key::Digit(4), Key::Back]);
    s.press("4");
    s.expect_prompt(Prompt::CannotDeleteLastAdmin);
    assert!(s.persisted().is_empty());
    assert_eq!(s.store.credentials.len(), 1);
    // Still in the step: "↩" goes back.
    assert_eq!(s.engine.status().step, "menu.delete_credential");
    s.press("↩↩");
    // A duress code for the administrator (menu 5 → 1 → 5).
    s.press("5");
    s.press("1✓5");
    s.press("975319✓975319✓");
    s.expect_prompt(Prompt::Success);
    s.press("0");
    assert_eq!(s.lit(), vec![Key::Digit(4), Key::Digit(5), Key::Back]);
    s.press("4");
    s.expect_prompt(Prompt::CannotDeleteLastAdmin);
    assert!(s.persisted().is_empty());
    // The app path runs the same rule.
    s.press("↩↩↩");
    let owner = s.owner();
    s.advance(200);
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
    // The administrator's menu still opens with the passcode; with a
    // fingerprint added, the passcode may be deleted.
    s.enter_menu();
    s.press("5");
    s.press("1✓3");
    s.complete_enrolment(Modality::Fingerprint);
    s.press("0");
    s.press("4");
    s.expect_prompt(Prompt::Deleted);
    assert!(s.has_event(&EventKind::CredentialRemoved {
        user: n(1),
        kind: CredentialKind::Passcode
    }));
}

/// Issue 17 item 1: a face verifies an administrator at SET only while
/// the camera works (item 6), so an administrator's face does not keep the
/// menu reachable: with a passcode and a face, the passcode stays.
#[test]
fn b4_9_an_administrators_face_does_not_keep_the_menu_reachable() {
    let base = Sim::installed();
    let mut store = base.store.clone();
    store.credentials.push(Credential {
        id: CredentialId(900),
        user: n(1),
        kind: CredentialKind::Face,
        secret: CredentialSecret::FaceTemplate {
            slot: 0,
            template: vec![7; 128],
        },
    });
    let mut s = Sim::with_store(store);
    open_delete_step(&mut s, n(1));
    s.press("4");
    s.expect_prompt(Prompt::CannotDeleteLastAdmin);
    assert!(s.persisted().is_empty());
    s.press("1");
    s.expect_prompt(Prompt::Deleted);
    assert!(s.has_event(&EventKind::CredentialRemoved {
        user: n(1),
        kind: CredentialKind::Face
    }));
}

/// Issue 17 item 1: "↩" in the deletion step goes back one step, to the
/// method choice of the same user, and deletes nothing; "↩" again is the
/// menu.
#[test]
fn b4_2_back_leaves_the_deletion_step_one_step_at_a_time() {
    let mut s = Sim::installed();
    let user = s.add_passcode_user("2", "802469");
    open_delete_step(&mut s, user);
    s.press("↩");
    s.expect_prompt(Prompt::ChooseMethodOrDelete);
    assert_eq!(s.engine.status().step, "menu.choose_method");
    assert!(s.persisted().is_empty());
    s.press("↩");
    s.expect_prompt(Prompt::MenuMain);
    assert_eq!(s.engine.status().step, "menu");
    assert_eq!(s.store.credentials.len(), 2);
}

/// Issue 17 item 1: nothing is deleted from the app while the keypad is in
/// the deletion step (the two cannot race; `Busy`, as for every change to
/// users while the menu is open); once the menu is left the same command
/// works.
#[test]
fn the_app_cannot_delete_while_the_keypad_deletes() {
    let mut s = Sim::installed();
    let user = s.add_passcode_user("2", "802469");
    let owner = s.owner();
    s.advance(200);
    open_delete_step(&mut s, user);
    let delete = AppCommand::DeleteCredentialOf {
        user,
        kind: CredentialKind::Passcode,
    };
    assert_eq!(
        s.app(Channel::Ble, owner, delete.clone()),
        Err(AppError::Busy)
    );
    assert!(s.persisted().is_empty());
    assert_eq!(s.store.credentials.len(), 2);
    s.press("↩↩↩");
    assert_eq!(s.app(Channel::Ble, owner, delete), Ok(AppOk::Done));
    assert_eq!(s.store.credentials.len(), 1);
}
