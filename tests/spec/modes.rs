//! The lock's operating modes (issue 18 item 2, `core::modes`): Vacation,
//! Privacy and Passage as engine rules, set by the owner's app or a Matter
//! administrator; NoRemoteLockUnlock is remote unlock off (B-6.7).
use latchd::core::action::Prompt;
use latchd::core::event::{EventKind, LockHow};
use latchd::core::input::{BoltPosition, DoorPosition};
use latchd::core::policy::STRIKES_PER_LEVEL;
use latchd::core::types::{DoorMode, Method, OperatingMode, SettingChange};
use latchd::core::{AppCommand, AppError, AppOk, Channel, Input, LockState, Principal};

use super::harness::{a_day, secs, Sim, ADMIN_CODE};

const USER_CODE: &str = "246813";
const MATTER: Principal = Principal::Matter {
    fabric: 1,
    node: 112233,
};

fn set_mode(
    s: &mut Sim,
    via: Channel,
    who: Principal,
    m: OperatingMode,
) -> Result<AppOk, AppError> {
    s.app(
        via,
        who,
        AppCommand::Setting(SettingChange::OperatingMode(m)),
    )
}

/// A lock with an owner app (remote unlock on) and a keypad user.
fn household() -> (Sim, Principal) {
    let mut s = Sim::installed();
    s.add_passcode_user("2", USER_CODE);
    let owner = s.owner();
    assert_eq!(
        set_mode(&mut s, Channel::Ble, owner, OperatingMode::Normal),
        Ok(AppOk::Done)
    );
    assert!(s.engine.status().settings.remote_unlock);
    (s, owner)
}

fn at_door(s: &mut Sim, code: &str) {
    s.input(Input::Touch);
    s.press(&format!("{code}✓"));
}

fn relock(s: &mut Sim) {
    s.finish_motor();
    s.input(Input::LockButton);
    s.finish_motor();
    assert_eq!(s.engine.status().lock, LockState::Locked);
    s.all.clear();
}

#[test]
fn modes_normal_and_no_remote_are_the_remote_unlock_setting() {
    let (mut s, owner) = household();
    assert_eq!(
        s.engine.status().settings.operating_mode(),
        OperatingMode::Normal
    );
    set_mode(
        &mut s,
        Channel::Ble,
        owner,
        OperatingMode::NoRemoteLockUnlock,
    )
    .unwrap();
    let st = s.engine.status().settings;
    assert!(!st.remote_unlock);
    assert_eq!(st.mode, DoorMode::Normal);
    assert_eq!(
        s.app(Channel::Matter, MATTER, AppCommand::Unlock),
        Err(AppError::RemoteUnlockDisabled)
    );
    // Vacation keeps remote unlock as it was (off here).
    set_mode(&mut s, Channel::Ble, owner, OperatingMode::Vacation).unwrap();
    assert!(!s.engine.status().settings.remote_unlock);
}

#[test]
fn modes_vacation_only_administrators_open_from_outside() {
    let (mut s, owner) = household();
    s.add_temp_passcode(owner, "470258", a_day(), false);
    set_mode(&mut s, Channel::Matter, MATTER, OperatingMode::Vacation).unwrap();
    // The user's own code: answered and counted like a wrong code.
    at_door(&mut s, USER_CODE);
    assert!(!s.unlocked());
    s.expect_prompt(Prompt::VerifyFailed);
    assert_eq!(s.engine.status().strikes, 1);
    // A visitor code too.
    at_door(&mut s, "470258");
    assert!(!s.unlocked());
    assert_eq!(s.engine.status().strikes, 2);
    // Over Matter, the user's PIN is a wrong code as well.
    assert_eq!(
        s.app(
            Channel::Matter,
            MATTER,
            AppCommand::UnlockWithCode {
                code: Some(USER_CODE.into()),
                relock_after: None
            }
        ),
        Err(AppError::WrongCode)
    );
    assert!(!s.unlocked());
    // An administrator's code opens, and so does the owner's app.
    at_door(&mut s, ADMIN_CODE);
    assert!(s.unlocked());
    relock(&mut s);
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::Unlock),
        Ok(AppOk::Done)
    );
    assert!(s.unlocked());
    relock(&mut s);
    // Back to Normal: the user's code opens again.
    set_mode(&mut s, Channel::Ble, owner, OperatingMode::Normal).unwrap();
    at_door(&mut s, USER_CODE);
    assert!(s.has_event(&EventKind::Unlocked {
        method: Method::Passcode,
        user: Some(latchd::core::types::UserNumber::new(2).unwrap())
    }));
}

#[test]
fn modes_privacy_needs_the_door_locked() {
    let (mut s, owner) = household();
    at_door(&mut s, ADMIN_CODE);
    s.finish_motor();
    assert_eq!(
        set_mode(&mut s, Channel::Ble, owner, OperatingMode::Privacy),
        Err(AppError::NotLocked)
    );
    s.input(Input::LockButton);
    s.finish_motor();
    assert_eq!(
        set_mode(&mut s, Channel::Ble, owner, OperatingMode::Privacy),
        Ok(AppOk::Done)
    );
}

#[test]
fn modes_privacy_nothing_opens_from_outside_and_it_is_not_left_from_outside() {
    let (mut s, owner) = household();
    set_mode(&mut s, Channel::Ble, owner, OperatingMode::Privacy).unwrap();
    // An administrator's code at the door, the owner's app, a controller.
    at_door(&mut s, ADMIN_CODE);
    assert!(!s.unlocked());
    s.expect_prompt(Prompt::VerifyFailed);
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::Unlock),
        Err(AppError::PrivacyMode)
    );
    assert_eq!(
        s.app(Channel::Matter, MATTER, AppCommand::Unlock),
        Err(AppError::PrivacyMode)
    );
    assert!(!s.unlocked());
    // Neither the app nor a controller can end it.
    for (via, who) in [(Channel::Ble, owner), (Channel::Matter, MATTER)] {
        for m in [
            OperatingMode::Normal,
            OperatingMode::NoRemoteLockUnlock,
            OperatingMode::Vacation,
            OperatingMode::Passage,
        ] {
            assert_eq!(set_mode(&mut s, via, who, m), Err(AppError::PrivacyMode));
        }
    }
    // It survives a restart (stored in the settings row).
    s.restart();
    assert_eq!(s.engine.status().settings.mode, DoorMode::Privacy);
    at_door(&mut s, USER_CODE);
    assert!(!s.unlocked());
    // The lock button still locks; the inside handle ends the mode.
    s.input(Input::LockButton);
    assert!(s.has_event(&EventKind::Locked {
        how: LockHow::Inside
    }));
    s.input(Input::InsideHandle);
    assert_eq!(s.engine.status().settings.mode, DoorMode::Normal);
    assert!(s.persisted().iter().any(|c| matches!(
        c,
        latchd::core::Change::PutSettings(st) if st.mode == DoorMode::Normal
    )));
    at_door(&mut s, USER_CODE);
    assert!(s.unlocked());
}

#[test]
fn modes_privacy_an_administrator_at_set_ends_it() {
    let (mut s, owner) = household();
    set_mode(&mut s, Channel::Ble, owner, OperatingMode::Privacy).unwrap();
    s.enter_menu();
    s.press("↩↩");
    assert_eq!(
        s.engine.status().settings.operating_mode(),
        OperatingMode::Normal
    );
}

#[test]
fn modes_passage_holds_the_bolt_until_someone_locks() {
    let (mut s, owner) = household();
    s.app(
        Channel::Ble,
        owner,
        AppCommand::Setting(SettingChange::AutoLock(Some(secs(30)))),
    )
    .unwrap();
    set_mode(&mut s, Channel::Matter, MATTER, OperatingMode::Passage).unwrap();
    // Entering the mode moves nothing.
    assert!(s.drive().is_none());
    at_door(&mut s, USER_CODE);
    s.finish_motor();
    s.input(Input::Door(DoorPosition::Open));
    s.input(Input::Door(DoorPosition::Closed));
    s.advance(3600);
    assert_eq!(s.engine.status().lock, LockState::Unlocked);
    // Leaving the mode starts the countdown again.
    set_mode(&mut s, Channel::Ble, owner, OperatingMode::Normal).unwrap();
    s.advance(30);
    assert!(matches!(
        s.drive(),
        Some(latchd::core::MotorCmd::Drive {
            target: BoltPosition::Extended,
            ..
        })
    ));
    s.finish_motor();
    // Someone locking in Passage locks (and the next unlock holds again).
    set_mode(&mut s, Channel::Ble, owner, OperatingMode::Passage).unwrap();
    at_door(&mut s, USER_CODE);
    s.finish_motor();
    s.input(Input::LockButton);
    s.finish_motor();
    assert_eq!(s.engine.status().lock, LockState::Locked);
}

#[test]
fn modes_passage_never_holds_the_door_open_through_a_lockout() {
    let (mut s, owner) = household();
    set_mode(&mut s, Channel::Ble, owner, OperatingMode::Passage).unwrap();
    at_door(&mut s, USER_CODE);
    s.finish_motor();
    assert_eq!(s.engine.status().lock, LockState::Unlocked);
    for i in 0..STRIKES_PER_LEVEL {
        at_door(&mut s, &format!("90{i}417"));
    }
    assert!(s.engine.status().lockout_active);
    // The lockout threw the bolt.
    s.finish_motor();
    assert_eq!(s.engine.status().lock, LockState::Locked);
    assert!(s.has_event(&EventKind::Locked { how: LockHow::Auto }));
    // And Passage cannot be entered again during it.
    set_mode(&mut s, Channel::Ble, owner, OperatingMode::Normal).unwrap();
    assert_eq!(
        set_mode(&mut s, Channel::Ble, owner, OperatingMode::Passage),
        Err(AppError::LockedOut)
    );
    // The owner's log says why (mutation testing, issue 23: nothing read
    // this event).
    assert!(s.has_event(&EventKind::AppRefused {
        via: Channel::Ble,
        reason: latchd::core::event::AppRefusal::LockedOut
    }));
}
