//! B-8 Locking, and the motor.
use latchd::core::action::{AlarmCmd, MotorCmd};
use latchd::core::event::AlarmKind;
use latchd::core::input::{BoltPosition, DoorPosition, MotorReport};
use latchd::core::types::{Key, SettingChange};
use latchd::core::{AppCommand, AppError, Channel, EventKind, Input, LockHow, LockState, Prompt};

use crate::harness::{Sim, ADMIN_CODE};

/// Installed, unlocked by passcode, bolt retracted.
fn unlocked() -> Sim {
    let mut s = Sim::installed();
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    s.finish_motor();
    assert_eq!(s.engine.status().lock, LockState::Unlocked);
    s
}

/// Installed, the countdown set to 30 s from the app (B-8.3).
fn auto_lock_30s() -> Sim {
    let mut s = Sim::installed();
    let owner = s.owner();
    s.app(
        Channel::Ble,
        owner,
        AppCommand::Setting(SettingChange::AutoLock(Some(crate::harness::secs(30)))),
    )
    .expect("setting");
    s
}

fn drives_out(s: &Sim) -> bool {
    matches!(
        s.drive(),
        Some(MotorCmd::Drive {
            target: BoltPosition::Extended,
            ..
        })
    )
}

#[test]
fn b8_1_outside_lock_after_the_door_was_opened_from_inside() {
    let mut s = Sim::installed();
    s.input(Input::Touch);
    assert!(!s.lit().contains(&Key::Confirm));
    s.inputs([
        Input::InsideHandle,
        Input::Bolt(BoltPosition::Retracted),
        Input::Door(DoorPosition::Open),
        Input::Door(DoorPosition::Closed),
    ]);
    s.input(Input::Touch);
    assert!(s.lit().contains(&Key::Confirm));
    s.press("✓");
    assert!(drives_out(&s));
    s.finish_motor();
    assert!(s.has_event(&EventKind::Locked {
        how: LockHow::Outside
    }));
    s.expect_prompt(Prompt::Locked);
    assert!(!s.lit().contains(&Key::Confirm));
}

#[test]
fn b8_2_the_lock_button_locks_after_the_door_closes() {
    let mut s = unlocked();
    s.input(Input::Door(DoorPosition::Open));
    s.input(Input::LockButton);
    assert!(!drives_out(&s), "never throw the bolt into an open door");
    s.expect_prompt(Prompt::Failure);
    s.input(Input::Door(DoorPosition::Closed));
    s.input(Input::LockButton);
    assert!(drives_out(&s));
    s.finish_motor();
    assert!(s.has_event(&EventKind::Locked {
        how: LockHow::Inside
    }));
    assert_eq!(s.engine.status().lock, LockState::Locked);
}

#[test]
fn b8_2_a_door_opening_during_a_lock_move_stops_the_motor() {
    let mut s = unlocked();
    s.input(Input::LockButton);
    assert!(drives_out(&s));
    s.input(Input::Door(DoorPosition::Open));
    assert!(s
        .last
        .contains(&latchd::core::Action::Motor(MotorCmd::Stop)));
}

#[test]
fn b8_3_auto_lock_countdown() {
    let mut s = auto_lock_30s();
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    s.finish_motor();
    // The door opens and stays open: no lock, however long.
    s.advance(10);
    s.input(Input::Door(DoorPosition::Open));
    s.advance(120);
    assert!(!drives_out(&s));
    // Closing restarts the countdown.
    s.input(Input::Door(DoorPosition::Closed));
    s.advance(29);
    assert!(!drives_out(&s));
    s.advance(1);
    assert!(drives_out(&s));
    s.finish_motor();
    assert!(s.has_event(&EventKind::Locked { how: LockHow::Auto }));
}

/// B-8.3: the countdown never drives against a hand: a bolt held half
/// turned (key or thumb-turn between its ends) when the countdown runs out
/// is left alone, and the countdown starts again once the bolt is back.
#[test]
fn b8_3_the_countdown_leaves_a_bolt_held_half_turned() {
    let mut s = auto_lock_30s();
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    s.finish_motor();
    s.advance(10);
    s.input(Input::Bolt(BoltPosition::Between));
    s.advance(60);
    assert_eq!(s.drive(), None, "the motor stays still");
    assert!(!s.has_event(&EventKind::Locked { how: LockHow::Auto }));
    s.input(Input::Bolt(BoltPosition::Retracted));
    s.advance(29);
    assert_eq!(s.drive(), None);
    s.advance(1);
    assert!(drives_out(&s));
}

/// B-8.3: a bolt retracted by hand (the key, the thumb-turn) starts the
/// countdown as a motor unlock does; a bolt thrown by hand stops it.
#[test]
fn b8_3_a_bolt_retracted_by_hand_starts_the_countdown() {
    let mut s = auto_lock_30s();
    s.input(Input::Bolt(BoltPosition::Extended));
    s.input(Input::Bolt(BoltPosition::Retracted));
    s.advance(29);
    assert_eq!(s.drive(), None);
    s.advance(1);
    assert!(
        drives_out(&s),
        "the countdown locks a bolt turned back by hand"
    );
    s.finish_motor();
    assert!(s.has_event(&EventKind::Locked { how: LockHow::Auto }));
    // Retracted by hand, thrown by hand before the countdown ends: the
    // countdown has nothing left to do.
    s.input(Input::Bolt(BoltPosition::Retracted));
    s.advance(10);
    s.input(Input::Bolt(BoltPosition::Extended));
    s.advance(60);
    assert_eq!(s.drive(), None);
}

#[test]
fn b8_3_countdown_off_by_default() {
    let mut s = unlocked();
    s.advance(3600);
    assert_eq!(s.engine.status().lock, LockState::Unlocked);
}

#[test]
fn b8_jam_raises_the_alarm_and_the_next_lock_retries() {
    let mut s = unlocked();
    s.input(Input::LockButton);
    s.input(Input::Motor(MotorReport::Jammed {
        at: BoltPosition::Between,
    }));
    s.expect_prompt(Prompt::Jammed);
    assert!(s.alarms().iter().any(|a| matches!(
        a,
        AlarmCmd::Sound {
            kind: AlarmKind::Jam,
            ..
        }
    )));
    assert_eq!(s.engine.status().lock, LockState::Jammed);
    assert!(s.alarm_active(AlarmKind::Jam));
    s.input(Input::LockButton);
    assert!(drives_out(&s));
    s.finish_motor();
    assert_eq!(s.engine.status().lock, LockState::Locked);
    assert!(!s.alarm_active(AlarmKind::Jam));
}

#[test]
fn b8_app_lock_refused_while_the_door_is_open() {
    let mut s = unlocked();
    let owner = s.owner();
    s.input(Input::Door(DoorPosition::Open));
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::Lock),
        Err(AppError::DoorOpen)
    );
    assert!(!drives_out(&s));
}
