//! B-4 Menu (administration on the lock).
use latchd::core::action::ModuleCmd;
use latchd::core::input::{EnrolStep, FaceFix, FacePose, ModuleReport, SetPress};
use latchd::core::types::{Change, CredentialKind, CredentialSecret, Key, Modality, Role};
use latchd::core::{Action, EventKind, Input, Prompt};

use crate::harness::{n, with_admin_face, Sim, ADMIN_CODE};

#[test]
fn b4_1_set_then_an_administrator_credential_opens_the_menu() {
    let mut s = Sim::installed();
    s.input(Input::Set(SetPress::Short));
    s.expect_prompt(Prompt::VerifyAdmin);
    s.press(&format!("{ADMIN_CODE}✓"));
    s.expect_prompt(Prompt::MenuMain);
    assert!(s.has_event(&EventKind::MenuEntered { user: Some(n(1)) }));
    // Opening the menu does not open the door.
    assert!(!s.unlocked());
    assert!(s.drive().is_none());
}

#[test]
fn b4_1_an_administrator_fingerprint_opens_the_menu() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("1");
    s.press("3");
    let slot = s.complete_enrolment(Modality::Fingerprint);
    s.press("↩↩");
    s.input(Input::Set(SetPress::Short));
    s.present_finger(slot);
    s.expect_prompt(Prompt::MenuMain);
}

/// Issue 17 item 6: SET asks the camera for an administrator's face, and
/// an administrator's face opens the menu like a fingerprint does.
#[test]
fn b4_1_an_administrators_face_at_set_opens_the_menu() {
    let (mut s, slot) = with_admin_face();
    s.input(Input::Set(SetPress::Short));
    s.expect_prompt(Prompt::VerifyAdmin);
    assert!(s.module_cmds().contains(&ModuleCmd::RecogniseFace));
    s.present(Modality::Face, slot);
    s.expect_prompt(Prompt::MenuMain);
    assert!(s.has_event(&EventKind::MenuEntered { user: Some(n(2)) }));
    assert!(!s.unlocked(), "opening the menu does not open the door");
}

/// Issue 17 item 6: a user's face at SET is refused (and does not open
/// the door); with no administrator's face enrolled SET asks the camera
/// for nothing.
#[test]
fn b4_1_at_set_a_users_face_is_refused_and_no_admin_face_asks_nothing() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("21");
    let slot = s.complete_enrolment(Modality::Face);
    s.press("↩↩");
    s.advance(30);
    s.input(Input::Set(SetPress::Short));
    assert!(!s.module_cmds().contains(&ModuleCmd::RecogniseFace));
    s.present(Modality::Face, slot);
    s.expect_prompt(Prompt::VerifyFailed);
    assert_eq!(s.engine.status().step, "verify_admin");
    assert!(!s.unlocked());
}

/// Issue 17 item 6: the answer to SET's face request that comes after the
/// lock stopped waiting for the administrator (↩) opens nothing — not the
/// menu, and not the door.
#[test]
fn b4_1_a_late_answer_to_sets_face_request_opens_nothing() {
    let (mut s, slot) = with_admin_face();
    s.input(Input::Set(SetPress::Short));
    assert!(s.module_cmds().contains(&ModuleCmd::RecogniseFace));
    s.press("↩");
    assert_eq!(s.engine.status().step, "idle");
    s.present(Modality::Face, slot);
    assert!(!s.unlocked(), "a late face opened the door");
    assert_eq!(s.engine.status().step, "idle");
    assert!(!s.has_event(&EventKind::MenuEntered { user: Some(n(2)) }));
}

#[test]
fn b4_1_a_failed_admin_verification_counts_towards_lockout() {
    let mut s = Sim::installed();
    s.input(Input::Set(SetPress::Short));
    s.press("802468✓");
    s.expect_prompt(Prompt::VerifyFailed);
    assert_eq!(s.engine.status().recent_failures, 1);
    assert_eq!(s.engine.status().step, "verify_admin");
}

#[test]
fn b4_2_menu_keys_and_back() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("3");
    s.expect_prompt(Prompt::EnterUserNumber);
    s.press("↩");
    s.expect_prompt(Prompt::MenuMain);
    s.press("1");
    s.expect_prompt(Prompt::ChooseMethod);
    s.press("↩");
    s.expect_prompt(Prompt::MenuMain);
    s.press("↩");
    assert_eq!(s.engine.status().step, "idle");
}

#[test]
fn b4_3_a_plain_user_unlocks_but_cannot_open_the_menu() {
    let mut s = Sim::installed();
    s.add_passcode_user("2", "802468");
    s.input(Input::Set(SetPress::Short));
    s.press("802468✓");
    s.expect_prompt(Prompt::VerifyFailed);
    assert_eq!(s.engine.status().step, "verify_admin");
    // Not a guess: not counted.
    assert_eq!(s.engine.status().recent_failures, 0);
    s.press("↩");
    s.press("802468✓");
    assert!(s.unlocked());
}

#[test]
fn b4_4_adding_allocates_the_next_number_then_methods() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("1");
    s.expect_prompt(Prompt::UserNumber(n(2)));
    s.expect_prompt(Prompt::ChooseMethod);
    assert_eq!(
        s.lit(),
        vec![
            Key::Digit(1),
            Key::Digit(2),
            Key::Digit(3),
            Key::Digit(4),
            Key::Back
        ]
    );
    s.press("4");
    s.press("802468✓802468✓");
    let ch = s.expect_persist();
    assert!(matches!(&ch[0], Change::PutUser(u) if u.number == n(2) && u.role == Role::Admin));
}

#[test]
fn b4_5_face_enrolment_follows_the_prompts() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("21");
    assert!(s.last.contains(&Action::Module(ModuleCmd::Enrol {
        modality: Modality::Face,
        slot: 0
    })));
    s.expect_prompt(Prompt::FacePose(FacePose::Straight));
    for pose in [
        FacePose::Up,
        FacePose::Down,
        FacePose::Left,
        FacePose::Right,
    ] {
        s.input(Input::Module(ModuleReport::EnrolProgress {
            modality: Modality::Face,
            step: EnrolStep::FacePose(pose),
        }));
        s.expect_prompt(Prompt::FacePose(pose));
    }
    for fix in [FaceFix::Covered, FaceFix::TooFar, FaceFix::Blurry] {
        s.input(Input::Module(ModuleReport::EnrolProgress {
            modality: Modality::Face,
            step: EnrolStep::FaceFix(fix),
        }));
        s.expect_prompt(Prompt::FaceFix(fix));
    }
    s.input(Input::Module(ModuleReport::Enrolled {
        modality: Modality::Face,
        slot: 0,
        template: Some(vec![9; 128]),
    }));
    let ch = s.expect_persist();
    assert!(matches!(&ch[1], Change::PutCredential(c)
        if c.kind == CredentialKind::Face
        && c.secret == CredentialSecret::FaceTemplate { slot: 0, template: vec![9; 128] }));
    let persist = s.position(|a| matches!(a, Action::Persist(_)));
    let success = s.position(|a| matches!(a, Action::Prompt(Prompt::Success, _)));
    assert!(persist.is_some() && persist < success);
}

#[test]
fn b4_6_palm_enrolment() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("22");
    s.expect_prompt(Prompt::PlacePalm);
    s.input(Input::Module(ModuleReport::EnrolProgress {
        modality: Modality::Palm,
        step: EnrolStep::Remove,
    }));
    s.expect_prompt(Prompt::Remove);
    s.complete_enrolment(Modality::Palm);
    s.expect_prompt(Prompt::Success);
    assert_eq!(s.engine.status().counts.palms, 1);
}

#[test]
fn b4_7_fingerprint_enrolment_with_several_touches() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("23");
    s.expect_prompt(Prompt::PlaceFinger);
    s.input(Input::Module(ModuleReport::EnrolProgress {
        modality: Modality::Fingerprint,
        step: EnrolStep::PresentAgain { n: 2, of: 4 },
    }));
    s.expect_prompt(Prompt::PresentAgain);
    let slot = s.complete_enrolment(Modality::Fingerprint);
    let ch = s.expect_persist();
    assert!(ch.iter().any(|c| matches!(c, Change::PutCredential(c)
        if c.secret == CredentialSecret::ModuleSlot(slot))));
    // The new finger unlocks.
    s.press("↩↩");
    s.present_finger(slot);
    assert!(s.unlocked());
}

#[test]
fn b4_8_passcode_enrolment_confirm_lights_at_six_digits() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("24");
    s.press("80246");
    assert!(!s.lit().contains(&Key::Confirm));
    s.press("8");
    assert!(s.lit().contains(&Key::Confirm));
    s.press("✓802468✓");
    s.expect_prompt(Prompt::Success);
}

#[test]
fn b4_8_a_passcode_equal_to_another_users_is_refused() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("24");
    s.press(&format!("{ADMIN_CODE}✓"));
    s.expect_prompt(Prompt::PasscodeTaken);
    // Containing another code is refused too (anti-peep would be ambiguous).
    s.press(&format!("4{ADMIN_CODE}2✓"));
    s.expect_prompt(Prompt::PasscodeTaken);
    assert!(s.persisted().is_empty());
    s.press("↩↩");
    assert!(s.persisted().is_empty());
    assert_eq!(s.store.users.len(), 1);
}

#[test]
fn b4_9_delete_a_user_removes_its_module_templates() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("23");
    let slot = s.complete_enrolment(Modality::Fingerprint);
    s.press("2");
    let palm = s.complete_enrolment(Modality::Palm);
    s.press("↩↩");
    s.enter_menu();
    s.press("3002✓");
    assert_eq!(s.expect_persist(), vec![Change::DeleteUser(n(2))]);
    s.expect_prompt(Prompt::Deleted);
    let cmds = s.module_cmds();
    assert!(cmds.contains(&ModuleCmd::Delete {
        modality: Modality::Fingerprint,
        slot
    }));
    assert!(cmds.contains(&ModuleCmd::Delete {
        modality: Modality::Palm,
        slot: palm
    }));
    assert!(s.store.credentials.iter().all(|c| c.user != n(2)));
}

/// B-4.9: the number typed is read whole: "11" deletes user 011 and no
/// other (not user 001, not user 002).
#[test]
fn b4_9_delete_reads_a_user_number_of_two_digits() {
    let mut s = Sim::installed();
    for i in 0..10u32 {
        s.add_passcode_user("2", &format!("{:06}", 802_469 + i * 13));
    }
    s.enter_menu();
    s.press("3");
    s.press("11✓");
    assert_eq!(s.expect_persist(), vec![Change::DeleteUser(n(11))]);
    s.expect_prompt(Prompt::Deleted);
}

/// B-1.3/B-4.5/B-4.7: a module's "enrolled" is stored only for the slot
/// the lock asked for (and a face only with its template); anything else
/// is a failure, nothing is stored, and the stray slot is wiped.
#[test]
fn b4_an_enrolment_ending_in_another_slot_or_without_a_template_stores_nothing() {
    for (method, modality, template) in [
        ("1", Modality::Face, Some(vec![1, 2, 3, 4])),
        ("3", Modality::Fingerprint, None),
        ("2", Modality::Palm, None),
    ] {
        let mut s = Sim::installed();
        s.enter_menu();
        s.press("2");
        s.press(method);
        let slot = s.enrol_slot().expect("an enrolment");
        s.input(Input::Module(ModuleReport::Enrolled {
            modality,
            slot: slot + 7,
            template: template.clone(),
        }));
        s.expect_prompt(Prompt::Failure);
        assert_eq!(s.persisted(), Vec::new(), "{modality:?}");
        assert!(s.module_cmds().contains(&ModuleCmd::Delete {
            modality,
            slot: slot + 7
        }));
        assert_eq!(s.engine.status().step, "menu.choose_method");
    }
    // A face in the right slot without a template: no face to match later.
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("2");
    s.press("1");
    let slot = s.enrol_slot().expect("an enrolment");
    s.input(Input::Module(ModuleReport::Enrolled {
        modality: Modality::Face,
        slot,
        template: Some(Vec::new()),
    }));
    s.expect_prompt(Prompt::Failure);
    assert_eq!(s.persisted(), Vec::new());
}

#[test]
fn b4_9_a_wrong_number_lights_its_digits_and_fails() {
    let mut s = Sim::installed();
    s.add_passcode_user("2", "802468");
    s.enter_menu();
    s.press("3");
    s.press("47✓");
    s.expect_prompt(Prompt::NoSuchUser);
    assert_eq!(s.keypad().digits_shown, vec![4, 7]);
    assert!(s.persisted().is_empty());
    // A correct number may now be entered.
    s.press("2✓");
    s.expect_prompt(Prompt::Deleted);
}

#[test]
fn b4_9_the_last_administrator_cannot_be_deleted() {
    let mut s = Sim::installed();
    s.add_passcode_user("2", "802468");
    s.enter_menu();
    s.press("3001✓");
    s.expect_prompt(Prompt::CannotDeleteLastAdmin);
    assert_eq!(s.keypad().digits_shown, vec![0, 0, 1]);
    assert!(s.persisted().is_empty());
    // "↩" goes back.
    s.press("↩");
    s.expect_prompt(Prompt::MenuMain);
}

#[test]
fn b4_9_the_only_remaining_user_cannot_be_deleted() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("3001✓");
    assert!(s.persisted().is_empty());
    assert!(s.prompts().contains(&Prompt::CannotDeleteLastAdmin));
    assert_eq!(s.store.users.len(), 1);
}

#[test]
fn b4_10_system_information_speaks_serial_firmware_and_code() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("✓");
    s.expect_prompt(Prompt::SystemInfo {
        serial: "LD-0001".into(),
        firmware: "0.1.0".into(),
        verification_code: "482913".into(),
        matter_code: None,
    });
    // The verification code is not written to the event log.
    assert!(s.logged_prompts().iter().all(|p| !p.contains("482913")));
    assert_eq!(s.engine.status().step, "menu.system_info");
}

#[test]
fn b4_10_back_during_system_information_returns_to_the_menu() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("✓");
    s.press("↩");
    s.expect_prompt(Prompt::MenuMain);
    assert_eq!(s.engine.status().step, "menu");
    // A second "↩" leaves the menu as usual.
    s.press("↩");
    assert_eq!(s.engine.status().step, "idle");
}

#[test]
fn b4_10_after_system_information_the_menu_keys_work() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("✓");
    // The announcement ended: the menu is where the administrator is.
    s.press("2");
    assert_eq!(s.engine.status().step, "menu.choose_method");
}

#[test]
fn b4_11_cancelled_enrolment_stores_nothing() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("23");
    s.input(Input::Module(ModuleReport::EnrolProgress {
        modality: Modality::Fingerprint,
        step: EnrolStep::PresentAgain { n: 1, of: 4 },
    }));
    s.press("↩");
    assert!(s.module_cmds().contains(&ModuleCmd::CancelEnrol {
        modality: Modality::Fingerprint
    }));
    s.press("4802468✓");
    s.press("↩↩");
    s.press("↩");
    assert!(s
        .all
        .iter()
        .filter(|a| matches!(a, Action::Persist(_)))
        .all(|a| match a {
            Action::Persist(ch) => !ch
                .iter()
                .any(|c| matches!(c, Change::PutUser(u) if u.number == n(2))),
            _ => true,
        }));
    assert_eq!(s.store.users.len(), 1);
}

#[test]
fn b4_11_a_failed_or_abandoned_enrolment_stores_nothing() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("22");
    s.input(Input::Module(ModuleReport::EnrolFailed {
        modality: Modality::Palm,
        reason: latchd::core::input::EnrolFailure::Quality,
    }));
    s.expect_prompt(Prompt::Failure);
    // The keypad sleeping mid-enrolment abandons it.
    s.press("3");
    s.advance(20);
    assert!(s.module_cmds().contains(&ModuleCmd::CancelEnrol {
        modality: Modality::Fingerprint
    }));
    assert_eq!(s.engine.status().step, "idle");
    // A late "enrolled" report is stale: nothing is stored.
    s.input(Input::Module(ModuleReport::Enrolled {
        modality: Modality::Fingerprint,
        slot: 0,
        template: None,
    }));
    assert!(s.persisted().is_empty());
    assert_eq!(s.store.users.len(), 1);
}
