//! B-1 Capacity and limits.
use latchd::core::action::ModuleCmd;
use latchd::core::input::{EnrolFailure, ModuleReport};
use latchd::core::types::{
    Change, Credential, CredentialId, CredentialKind, CredentialSecret, Modality, Persisted, Role,
    User,
};
use latchd::core::{Action, Input, Prompt, Validity};

use crate::harness::{n, Sim, ADMIN_CODE};

/// An installed lock whose store already holds `per_user` fingerprints for
/// each of `users` extra users (numbers 2..).
fn lock_with_fingerprints(users: u16, per_user: u16) -> Sim {
    lock_with(CredentialKind::Fingerprint, users * per_user, per_user)
}

/// An installed lock whose store already holds `total` credentials of
/// `kind` (faces, palms or fingerprints, each in its own module slot),
/// `per_user` per extra user (numbers 2..).
fn lock_with(kind: CredentialKind, total: u16, per_user: u16) -> Sim {
    let base = Sim::installed();
    let mut store: Persisted = base.store.clone();
    for slot in 0..total {
        let user = n(2 + slot / per_user);
        if slot % per_user == 0 {
            store.users.push(User {
                number: user,
                role: Role::User,
                validity: Validity::ALWAYS,
            });
        }
        let secret = match kind {
            CredentialKind::Face => CredentialSecret::FaceTemplate {
                slot,
                template: vec![slot as u8; 128],
            },
            _ => CredentialSecret::ModuleSlot(slot),
        };
        store.credentials.push(Credential {
            id: CredentialId(100 + u32::from(slot)),
            user,
            kind,
            secret,
        });
    }
    Sim::with_store(store)
}

#[test]
fn b1_1_fifty_first_fingerprint_is_refused_and_nothing_stored() {
    let mut s = lock_with_fingerprints(10, 5);
    assert_eq!(s.engine.status().counts.fingerprints, 50);
    s.enter_menu();
    s.press("2");
    s.press("3");
    s.expect_prompt(Prompt::LimitReached);
    assert!(s.persisted().is_empty());
    assert!(!s
        .module_cmds()
        .iter()
        .any(|c| matches!(c, ModuleCmd::Enrol { .. })));
    // Leaving stores nothing either: the new user never had a credential.
    s.press("↩↩");
    assert!(s.persisted().is_empty());
    assert_eq!(s.engine.status().counts.users, 11);
}

/// B-1.1: 50 faces and 50 palm veins in the lock at most (issue 17 item
/// 8: only the fingerprint cap was tested). The 51st is refused before
/// any module is asked to enrol, from the menu and from the app.
#[test]
fn b1_1_fifty_faces_and_fifty_palms_at_most() {
    use latchd::core::{AppCommand, AppError, Channel};
    for (kind, key, per_user) in [
        (CredentialKind::Face, "1", 3u16),
        (CredentialKind::Palm, "2", 2),
    ] {
        let mut s = lock_with(kind, 50, per_user);
        let counts = s.engine.status().counts;
        let have = match kind {
            CredentialKind::Face => counts.faces,
            _ => counts.palms,
        };
        assert_eq!(have, 50, "{kind:?}");
        s.enter_menu();
        s.press("2");
        s.press(key);
        s.expect_prompt(Prompt::LimitReached);
        assert!(s.persisted().is_empty(), "{kind:?}");
        assert!(!s
            .module_cmds()
            .iter()
            .any(|c| matches!(c, ModuleCmd::Enrol { .. })));
        s.press("↩↩");
        // The owner's app cannot start one either, for the administrator
        // who has none of that kind (so only the lock's cap refuses it).
        let owner = s.owner();
        let r = s.app(
            Channel::Ble,
            owner,
            AppCommand::EnrolFor { user: n(1), kind },
        );
        assert!(
            matches!(r, Err(AppError::Limit(k)) if k == kind),
            "{kind:?}: {r:?}"
        );
    }
}

#[test]
fn b1_1_fifty_passcodes_in_the_lock_at_most() {
    let mut s = Sim::installed();
    let owner = s.owner();
    // 1 admin passcode + 49 visitor codes = 50 passcodes.
    for i in 0..49u32 {
        let code = format!("{:06}", 246_000 + i * 7 + 1);
        let r = s.app(
            latchd::core::Channel::Ble,
            owner,
            latchd::core::AppCommand::AddTempPasscode {
                digits: code.clone().into(),
                validity: crate::harness::a_day(),
                one_time: false,
            },
        );
        assert!(r.is_ok(), "{code}: {r:?}");
    }
    s.enter_menu();
    s.press("24");
    s.expect_prompt(Prompt::LimitReached);
    assert!(s.persisted().is_empty());
}

/// B-1.1: a duress passcode is a passcode: it draws from the lock's fifty
/// like any other, so the fifty cannot be passed by way of duress codes.
#[test]
fn b1_1_duress_codes_draw_from_the_fifty_passcodes() {
    use latchd::core::{AppCommand, AppError, Channel};
    let mut s = Sim::installed();
    let owner = s.owner();
    s.set_duress_passcode(owner, n(1), "975319");
    // 1 admin passcode + 1 duress code + 48 visitor codes = 50 passcodes.
    let add = |s: &mut Sim, i: u32| {
        s.app(
            Channel::Ble,
            owner,
            AppCommand::AddTempPasscode {
                digits: format!("{:06}", 246_000 + i * 7 + 1).into(),
                validity: crate::harness::a_day(),
                one_time: false,
            },
        )
    };
    for i in 0..48u32 {
        assert!(add(&mut s, i).is_ok(), "code {i}");
    }
    assert_eq!(
        add(&mut s, 48),
        Err(AppError::Limit(CredentialKind::Passcode))
    );
}

#[test]
fn b1_2_per_user_limits_are_enforced_in_the_menu() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("2");
    for _ in 0..5 {
        s.press("3");
        s.complete_enrolment(Modality::Fingerprint);
        s.expect_prompt(Prompt::Success);
    }
    s.press("3");
    s.expect_prompt(Prompt::LimitReached);
    for _ in 0..2 {
        s.press("2");
        s.complete_enrolment(Modality::Palm);
        s.expect_prompt(Prompt::Success);
    }
    s.press("2");
    s.expect_prompt(Prompt::LimitReached);
    for _ in 0..3 {
        s.press("1");
        s.complete_enrolment(Modality::Face);
        s.expect_prompt(Prompt::Success);
    }
    s.press("1");
    s.expect_prompt(Prompt::LimitReached);
    s.press("4");
    s.press("802468✓802468✓");
    s.expect_prompt(Prompt::Success);
    s.press("4");
    s.expect_prompt(Prompt::LimitReached);
    let c = s.engine.status().counts;
    assert_eq!(
        (c.fingerprints, c.palms, c.faces, c.passcodes),
        (5, 2, 3, 2)
    );
}

#[test]
fn b1_3_the_same_fingerprint_cannot_be_enrolled_twice() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("23");
    s.input(Input::Module(ModuleReport::EnrolFailed {
        modality: Modality::Fingerprint,
        reason: EnrolFailure::Duplicate { slot: 0 },
    }));
    s.expect_prompt(Prompt::AlreadyEnrolled);
    assert!(s.persisted().is_empty());
    assert_eq!(s.engine.status().step, "menu.choose_method");
}

#[test]
fn b1_4_user_numbers_from_001_shown_digit_by_digit() {
    let mut s = Sim::new();
    s.press("✓1");
    s.press("✓");
    assert_eq!(s.shown_user(), Some(n(1)));
    assert_eq!(s.keypad().digits_shown, vec![0, 0, 1]);
    s.press(&format!("{ADMIN_CODE}✓{ADMIN_CODE}✓↩↩"));
    let u2 = s.add_passcode_user("2", "802468");
    assert_eq!(u2, n(2));
    let u3 = s.add_passcode_user("2", "913579");
    assert_eq!(u3, n(3));
    // Deleting 002 frees its number for the next user.
    s.enter_menu();
    s.press("3002✓");
    s.expect_prompt(Prompt::Deleted);
    s.press("2");
    assert_eq!(s.shown_user(), Some(n(2)));
    assert_eq!(s.keypad().digits_shown, vec![0, 0, 2]);
}

#[test]
fn b1_5_initialising_erases_all_users_and_credentials() {
    let mut s = Sim::installed();
    s.add_passcode_user("2", "802468");
    s.inputs([Input::PowerUp { set_held: true }]);
    s.press("✓");
    assert_eq!(s.expect_persist(), vec![Change::FactoryReset]);
    assert!(s.store.users.is_empty() && s.store.credentials.is_empty());
    let c = s.engine.status().counts;
    assert_eq!((c.users, c.passcodes), (0, 0));
    assert!(s.last.contains(&Action::Module(ModuleCmd::Wipe {
        modality: Modality::Fingerprint
    })));
}
