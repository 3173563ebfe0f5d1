//! B-2 First start.
use latchd::core::action::MotorCmd;
use latchd::core::input::BoltPosition;
use latchd::core::types::{Change, CredentialKind, Handing, Key, MotorDirection, Role};
use latchd::core::{AppCommand, AppError, Channel, Input, Prompt};

use crate::harness::{n, Sim, ADMIN_CODE};

fn retract_direction(choice: &str) -> MotorDirection {
    let mut s = Sim::new();
    s.press(&format!("✓{choice}"));
    s.press(&format!("✓{ADMIN_CODE}✓{ADMIN_CODE}✓↩↩"));
    s.press(&format!("{ADMIN_CODE}✓"));
    match s.drive() {
        Some(MotorCmd::Drive {
            target: BoltPosition::Retracted,
            direction,
        }) => direction,
        other => panic!("expected an unlock drive, got {other:?}"),
    }
}

#[test]
fn b2_1_first_start_asks_the_door_direction() {
    let mut s = Sim::new();
    s.expect_prompt(Prompt::ChooseDirection);
    assert_eq!(s.lit(), vec![Key::Confirm]);
    // "1"/"2" do nothing until "✓" continues.
    s.press("1");
    assert!(s.persisted().is_empty());
    s.press("✓");
    assert!(s.lit().contains(&Key::Digit(1)) && s.lit().contains(&Key::Digit(2)));
    s.press("2");
    assert_eq!(
        s.expect_persist(),
        vec![Change::SetHanding(Handing::LeftHand)]
    );
    s.expect_prompt(Prompt::DirectionSet);
    // B-2.2 follows.
    s.expect_prompt(Prompt::CreateAdmin);
}

/// B-2.1: the question waits for its answer: a touch on the keypad gone
/// to sleep asks the door direction again (whoever missed the first prompt
/// hears it), with only "✓" lit.
#[test]
fn b2_1_a_touch_asks_the_direction_again() {
    let mut s = Sim::new();
    s.advance(120);
    assert!(!s.keypad().awake, "the keypad sleeps while nobody answers");
    s.input(Input::Touch);
    s.expect_prompt(Prompt::ChooseDirection);
    assert_eq!(s.lit(), vec![Key::Confirm]);
    // So does the key that wakes it, and the key counts ("✓" continues);
    // a key on the keypad awake answers without the question again.
    s.advance(120);
    s.press("✓");
    s.expect_prompt(Prompt::ChooseDirection);
    assert!(s.lit().contains(&Key::Digit(1)) && s.lit().contains(&Key::Digit(2)));
    s.press("↩");
    s.expect_no_prompt(Prompt::ChooseDirection);
    assert_eq!(s.lit(), vec![Key::Confirm]);
}

#[test]
fn b2_1_the_direction_decides_the_motor_direction() {
    // Right-hand door: retract counter-clockwise; left-hand: clockwise.
    assert_eq!(retract_direction("1"), MotorDirection::CounterClockwise);
    assert_eq!(retract_direction("2"), MotorDirection::Clockwise);
}

/// B-2.2: "⏏" (the back key) leaves the offer to create the first
/// administrator: the keypad sleeps, nothing is stored, and the next touch
/// offers it again (B-2.4: the lock stays in its initial state).
#[test]
fn b2_2_exit_leaves_the_first_administrator_offer() {
    let mut s = Sim::new();
    s.press("✓1");
    assert_eq!(s.lit(), vec![Key::Back, Key::Confirm]);
    s.press("↩");
    assert!(!s.keypad().awake, "the exit key puts the keypad to sleep");
    assert_eq!(s.persisted(), Vec::new());
    s.input(Input::Touch);
    s.expect_prompt(Prompt::CreateAdmin);
    assert_eq!(s.lit(), vec![Key::Back, Key::Confirm]);
}

#[test]
fn b2_2_first_administrator_by_passcode_entered_twice() {
    let mut s = Sim::new();
    s.press("✓1");
    assert_eq!(s.lit(), vec![Key::Back, Key::Confirm]);
    s.press("✓");
    s.expect_prompt(Prompt::EnterPasscode);
    s.press(&format!("{ADMIN_CODE}✓"));
    s.expect_prompt(Prompt::RepeatPasscode);
    assert!(s.persisted().is_empty());
    s.press(&format!("{ADMIN_CODE}✓"));
    let changes = s.expect_persist();
    // The user and its first credential in ONE Persist, before "success".
    assert_eq!(changes.len(), 2);
    assert!(matches!(&changes[0], Change::PutUser(u) if u.number == n(1) && u.role == Role::Admin));
    assert!(matches!(&changes[1], Change::PutCredential(c) if c.kind == CredentialKind::Passcode));
    let persist = s.position(|a| matches!(a, latchd::core::Action::Persist(_)));
    let success = s.position(|a| matches!(a, latchd::core::Action::Prompt(Prompt::Success, _)));
    assert!(persist < success);
}

#[test]
fn b2_2_mismatch_fails_and_starts_over() {
    let mut s = Sim::new();
    s.press("✓1✓");
    s.press("135790✓135791✓");
    s.expect_prompt(Prompt::PasscodeMismatch);
    s.expect_prompt(Prompt::EnterPasscode);
    assert!(s.store.users.is_empty());
    s.press("135790✓");
    s.expect_prompt(Prompt::RepeatPasscode);
}

#[test]
fn b2_3_passcode_rules_on_the_keypad() {
    let mut s = Sim::new();
    s.press("✓1✓");
    // Fewer than 6 digits: "✓" is not lit and does nothing.
    s.press("13579");
    assert!(!s.lit().contains(&Key::Confirm));
    s.press("✓");
    assert!(s.prompts().is_empty());
    // "↩" goes back to the methods; "4" is the passcode again.
    s.press("↩4");
    s.expect_prompt(Prompt::EnterPasscode);
    s.press("111111✓");
    s.expect_prompt(Prompt::PasscodeTooSimple);
    s.press("123456✓");
    s.expect_prompt(Prompt::PasscodeTooSimple);
    s.press("654321✓");
    s.expect_prompt(Prompt::PasscodeTooSimple);
    // 11 digits are refused as too long.
    s.press("13579024681");
    s.expect_prompt(Prompt::InputTooLong);
    assert!(s.store.users.is_empty());
}

#[test]
fn b2_3_passcode_rules_for_app_made_codes() {
    let mut s = Sim::installed();
    let owner = s.owner();
    for bad in ["222222", "345678", "98765", "12345678901", "12a456"] {
        let r = s.app(
            Channel::Ble,
            owner,
            AppCommand::AddTempPasscode {
                digits: bad.into(),
                validity: crate::harness::a_day(),
                one_time: false,
            },
        );
        assert!(matches!(r, Err(AppError::BadPasscode(_))), "{bad}: {r:?}");
        let r = s.app(
            Channel::Ble,
            owner,
            AppCommand::SetDuressPasscode {
                user: n(1),
                digits: bad.into(),
            },
        );
        assert!(matches!(r, Err(AppError::BadPasscode(_))), "{bad}: {r:?}");
    }
    assert!(s.store.temp_passcodes.is_empty());
}

#[test]
fn b2_4_initial_state_lets_anyone_reach_add_administrator() {
    let mut s = Sim::new();
    s.press("✓1");
    s.advance(30);
    // Asleep; a touch and "✓" reach the first-administrator step.
    s.input(Input::Touch);
    s.expect_prompt(Prompt::CreateAdmin);
    s.press("✓");
    s.expect_prompt(Prompt::EnterPasscode);
    // Cancelling stores nothing and stays in the initial state.
    s.press("↩↩");
    assert!(s.store.users.is_empty());
    assert_eq!(s.engine.status().step, "initial");
    // Once an administrator exists, "✓" alone reaches nothing.
    let mut s = Sim::installed();
    s.input(Input::Touch);
    s.press("✓");
    assert_eq!(s.engine.status().step, "idle");
    assert!(s.prompts().is_empty());
}
