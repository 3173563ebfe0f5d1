//! B-7 Lockout.
use latchd::core::action::AlarmCmd;
use latchd::core::event::AlarmKind;
use latchd::core::types::{Change, Method, Modality, SettingChange};
use latchd::core::{AppCommand, AppOk, Channel, EventKind, Input, Prompt};

use crate::harness::{secs, Sim, ADMIN_CODE};

/// Fail once with `kind` (0 passcode, 1 face, 2 palm, 3 fingerprint).
fn fail(s: &mut Sim, kind: usize) {
    match kind % 4 {
        0 => {
            s.input(Input::Touch);
            s.press("802468✓");
        }
        1 => s.present_unknown(Modality::Face),
        2 => s.present_unknown(Modality::Palm),
        _ => s.present_unknown(Modality::Fingerprint),
    }
}

fn locked_out(s: &Sim) -> bool {
    s.engine.status().lockout_active
}

#[test]
fn b7_1_five_failures_in_five_minutes_lock_for_three() {
    let mut s = Sim::installed();
    for k in 0..4 {
        fail(&mut s, k);
        s.expect_prompt(Prompt::VerifyFailed);
        s.advance(70);
    }
    assert!(!locked_out(&s));
    fail(&mut s, 4);
    assert!(locked_out(&s));
    s.expect_prompt(Prompt::LockedOut);
    assert!(s.has_event(&EventKind::LockoutStarted));
    assert!(s.alarms().contains(&AlarmCmd::Sound {
        kind: AlarmKind::Lockout,
        duration: secs(180)
    }));
    assert_eq!(s.engine.status().lockout_remaining, Some(secs(180)));
    // The lockout is persisted as a remaining duration (with the attempt
    // that started it, before its answer showed).
    assert!(s
        .expect_persist()
        .iter()
        .any(|c| matches!(c, Change::PutAttempt(r) if r.locked_for == Some(secs(180)))));
}

/// Decision (issue 13): failures no longer leave the count after five
/// minutes — a patient guesser would spread them out. Spread over six
/// minutes, five failures still lock; only a success of the same method
/// (typos), the slow leak (one per 4 h) or a release forgives them.
#[test]
fn b7_1_failures_spread_out_still_lock() {
    let mut s = Sim::installed();
    for k in 0..4 {
        fail(&mut s, k);
        s.advance(90);
    }
    assert!(!locked_out(&s));
    assert_eq!(s.engine.status().strikes, 4);
    s.advance(3600);
    fail(&mut s, 4);
    assert!(locked_out(&s));
}

#[test]
fn b7_1_during_lockout_no_credential_unlocks_but_mechanical_ways_do() {
    let mut s = Sim::installed();
    for k in 0..5 {
        fail(&mut s, k);
    }
    assert!(locked_out(&s));
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(!s.unlocked());
    s.expect_prompt(Prompt::LockedOut);
    let owner = s.owner();
    // Issue 13: a stranger at the keypad cannot lock the owner out: an
    // owner key still opens during the lockout, and the log says so.
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::Unlock),
        Ok(AppOk::Done)
    );
    assert!(s.unlocked());
    assert!(s.has_event(&EventKind::LockoutOverridden {
        method: Method::Ble,
        user: Some(crate::harness::n(1))
    }));
    assert!(locked_out(&s), "the lockout goes on");
    s.input(Input::MechanicalKey);
    assert!(s.events().iter().any(|e| matches!(
        e.kind,
        EventKind::Unlocked {
            method: Method::MechanicalKey,
            ..
        }
    )));
    s.input(Input::InsideHandle);
    assert!(s.unlocked());
}

#[test]
fn b7_2_the_lockout_ends_by_itself_after_three_minutes() {
    let mut s = Sim::installed();
    for k in 0..5 {
        fail(&mut s, k);
    }
    s.advance(179);
    assert!(locked_out(&s));
    s.advance(1);
    assert!(!locked_out(&s));
    assert!(s.has_event(&EventKind::LockoutEnded { early: false }));
    assert!(s.alarms().contains(&AlarmCmd::Silence {
        kind: AlarmKind::Lockout
    }));
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(s.unlocked());
}

#[test]
fn b7_2_the_owner_app_ends_a_lockout_early() {
    let mut s = Sim::installed();
    let owner = s.owner();
    for k in 0..5 {
        fail(&mut s, k);
    }
    assert!(locked_out(&s));
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::ReleaseLockout),
        Ok(AppOk::Done)
    );
    assert!(!locked_out(&s));
    assert!(s.has_event(&EventKind::LockoutEnded { early: true }));
    assert!(s
        .expect_persist()
        .iter()
        .any(|c| matches!(c, Change::PutLockout(r) if r.locked_for.is_none())));
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::Unlock),
        Ok(AppOk::Done)
    );
}

#[test]
fn b7_3_protection_can_be_turned_off() {
    let mut s = Sim::installed();
    let owner = s.owner();
    s.app(
        Channel::Ble,
        owner,
        AppCommand::Setting(SettingChange::LockoutProtection(false)),
    )
    .expect("setting");
    for k in 0..12 {
        fail(&mut s, k);
    }
    assert!(!locked_out(&s));
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(s.unlocked());
}

#[test]
fn b7_1_the_lockout_survives_a_crash() {
    let mut s = Sim::installed();
    for k in 0..5 {
        fail(&mut s, k);
    }
    s.advance(60);
    // The daemon dies and restarts (monotonic time starts over). The last
    // persisted record said 3 minutes: time spent down does not count, so
    // the lockout can only get longer, never shorter.
    s.restart();
    assert!(locked_out(&s));
    assert_eq!(s.engine.status().lockout_remaining, Some(secs(180)));
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(!s.unlocked());
    s.advance(180);
    assert!(!locked_out(&s));
}

#[test]
fn b7_1_the_lockout_survives_an_orderly_restart_exactly() {
    let mut s = Sim::installed();
    for k in 0..5 {
        fail(&mut s, k);
    }
    s.advance(60);
    // On shutdown the runtime persists the checkpoint.
    s.store.lockout = s.engine.lockout_record(s.now());
    s.restart();
    assert_eq!(s.engine.status().lockout_remaining, Some(secs(120)));
    s.advance(119);
    assert!(locked_out(&s));
    s.advance(1);
    assert!(!locked_out(&s));
}

#[test]
fn b7_1_counted_failures_survive_a_restart() {
    let mut s = Sim::installed();
    for k in 0..4 {
        fail(&mut s, k);
    }
    s.restart();
    fail(&mut s, 0);
    assert!(locked_out(&s));
}
