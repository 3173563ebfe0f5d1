//! B-3 Keypad.
use latchd::core::action::{Notice, SnapshotReason};
use latchd::core::input::DoorPosition;
use latchd::core::types::{Key, Method, Modality};
use latchd::core::{Action, EventKind, Input, Prompt};

use crate::harness::{Sim, ADMIN_CODE};

#[test]
fn b3_1_keys_of_the_front_panel() {
    let mut s = Sim::installed();
    s.input(Input::Touch);
    let lit = s.lit();
    for d in 0..=9 {
        assert!(lit.contains(&Key::Digit(d)));
    }
    for k in [Key::Back, Key::Away, Key::Doorbell] {
        assert!(lit.contains(&k), "{k:?}");
    }
}

#[test]
fn b3_2_touch_wakes_and_twenty_seconds_idle_sleeps() {
    let mut s = Sim::installed();
    assert!(!s.keypad().awake);
    s.input(Input::Touch);
    assert!(s.keypad().awake);
    s.press("1357");
    s.advance(19);
    assert!(s.keypad().awake);
    s.advance(1);
    assert!(!s.keypad().awake);
    assert!(s.lit().is_empty());
    // What was typed before sleeping is gone: "90✓" alone is no code.
    s.input(Input::Touch);
    s.press("90");
    assert!(!s.lit().contains(&Key::Confirm));
}

#[test]
fn b3_3_only_the_valid_keys_are_lit_and_others_do_nothing() {
    let mut s = Sim::installed();
    s.input(Input::Touch);
    assert!(!s.lit().contains(&Key::Confirm));
    s.press("13579");
    assert!(!s.lit().contains(&Key::Confirm));
    s.press("0");
    assert!(s.lit().contains(&Key::Confirm));
    s.press("↩");
    s.enter_menu();
    // 1–3 of B-4.x, 5 ("modify user N", issue 17 item 1) and 6 (the
    // prompt language, item 4); 4 is lit only while a fingerprint module
    // was refused.
    assert_eq!(
        s.lit(),
        vec![
            Key::Digit(1),
            Key::Digit(2),
            Key::Digit(3),
            Key::Digit(5),
            Key::Digit(6),
            Key::Confirm,
            Key::Back
        ]
    );
    // "7" is not lit in the menu: nothing happens.
    s.press("7");
    assert!(s.last.iter().all(|a| !matches!(a, Action::Prompt(_, _))));
    assert_eq!(s.engine.status().step, "menu");
}

#[test]
fn b3_4_holding_zero_mutes_until_the_next_outside_unlock() {
    let mut s = Sim::installed();
    s.input(Input::KeyHeld(Key::Digit(0)));
    assert!(s.engine.status().muted);
    assert_eq!(s.keypad().flashing, vec![Key::Digit(0)]);
    s.advance(2);
    assert!(s.keypad().flashing.is_empty());
    // A failure is silent but still logged.
    s.press("802468✓");
    assert!(s.prompts().is_empty());
    assert!(s
        .logged_prompts()
        .contains(&Prompt::VerifyFailed.text(latchd::core::Language::En)));
    // The mechanical key is not one of the four outside methods: still muted.
    s.input(Input::MechanicalKey);
    assert!(s.engine.status().muted);
    // The passcode unlock ends mute (it is itself still silent).
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(s.unlocked());
    assert!(s.prompts().is_empty());
    assert!(!s.engine.status().muted);
    s.press("b");
    s.expect_prompt(Prompt::Doorbell);
}

/// B-3.4: only "0" held mutes, and only at the door: another key held, or
/// "0" held in the administrator's menu, leaves the prompts on.
#[test]
fn b3_4_only_zero_held_at_the_door_mutes() {
    let mut s = Sim::installed();
    s.input(Input::Touch);
    s.input(Input::KeyHeld(Key::Digit(5)));
    assert!(!s.engine.status().muted);
    assert!(s.keypad().flashing.is_empty());
    s.enter_menu();
    s.input(Input::KeyHeld(Key::Digit(0)));
    assert!(!s.engine.status().muted);
    assert_eq!(s.engine.status().step, "menu");
}

#[test]
fn b3_4_fingerprint_unlock_ends_mute() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("23");
    let slot = s.complete_enrolment(Modality::Fingerprint);
    s.press("↩↩");
    s.input(Input::KeyHeld(Key::Digit(0)));
    s.present_finger(slot);
    assert!(s.unlocked());
    assert!(!s.engine.status().muted);
}

#[test]
fn b3_5_doorbell_rings_notifies_and_takes_a_snapshot() {
    let mut s = Sim::installed();
    s.input(Input::Touch);
    s.press("b");
    s.expect_prompt(Prompt::Doorbell);
    assert!(s.has_event(&EventKind::Doorbell));
    assert_eq!(s.notices(), vec![Notice::Doorbell]);
    assert!(s.last.contains(&Action::Snapshot(SnapshotReason::Doorbell)));
}

#[test]
fn b3_6_away_mode_reports_every_unlock_and_inside_unlock_disarms() {
    let mut s = Sim::installed();
    s.input(Input::Touch);
    s.press("a");
    s.expect_prompt(Prompt::AwayArmed);
    assert!(s.engine.status().away_armed);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(matches!(
        s.notices().as_slice(),
        [Notice::AwayUnlock { event }]
            if event.kind == EventKind::Unlocked { method: Method::Passcode, user: Some(crate::harness::n(1)) }
    ));
    s.input(Input::MechanicalKey);
    assert_eq!(s.notices().len(), 1, "the mechanical key is reported too");
    // Someone inside opens: away mode is off, and that is not an away alarm.
    s.input(Input::InsideHandle);
    assert!(!s.engine.status().away_armed);
    assert!(s.notices().is_empty());
    s.expect_prompt(Prompt::AwayDisarmed);
    s.input(Input::Door(DoorPosition::Open));
    s.input(Input::MechanicalKey);
    assert!(s.notices().is_empty());
}
