//! Issue 15: the wall clock jumping a day forward or back (NTP stepping,
//! an owner setting the time, a dead RTC coming back) changes nothing that
//! runs on the monotonic clock: a keypad lockout, the auto-lock countdown
//! and the pairing window each end exactly when they would have.
//!
//! The engine gets both clocks with every call (`core::time::Now`); the
//! daemon's `link::Clock` takes the monotonic one from tokio's `Instant`
//! (CLOCK_MONOTONIC), which a wall-clock step does not move.
use latchd::core::action::MotorCmd;
use latchd::core::input::{BoltPosition, DoorPosition, SetPress};
use latchd::core::policy::lockout_for;
use latchd::core::types::SettingChange;
use latchd::core::{AppCommand, Channel, Input, Prompt};

use crate::harness::{secs, Sim, ADMIN_CODE};

const DAY: i64 = 86_400;

/// Step the wall clock by `by` seconds, as `date -s` would, and let the
/// engine see it (any input carries the new wall time).
fn jump(s: &mut Sim, by: i64) {
    s.wall_origin += by;
    if let Some(w) = s.wall.as_mut() {
        *w += by;
    }
    s.input(Input::Tick);
}

#[test]
fn a_lockout_lasts_its_time_whatever_the_wall_clock_does() {
    for by in [DAY, -DAY] {
        let mut s = Sim::installed();
        for _ in 0..5 {
            s.input(Input::Touch);
            s.press("802468✓");
        }
        let full = lockout_for(1);
        assert_eq!(s.engine.status().lockout_remaining, Some(full));
        s.advance(10);
        jump(&mut s, by);
        let st = s.engine.status();
        assert!(st.lockout_active, "jump {by}: the lockout ended early");
        assert_eq!(
            st.lockout_remaining,
            Some(full - secs(10)),
            "jump {by}: the lockout's remaining time moved"
        );
        // Still refusing the right code until the monotonic end.
        s.advance_ms((full - secs(10)).as_millis() as u64 - 1);
        assert!(s.engine.status().lockout_active, "jump {by}");
        s.input(Input::Touch);
        s.press(&format!("{ADMIN_CODE}✓"));
        assert!(!s.unlocked(), "jump {by}: opened during the lockout");
        s.advance_ms(1);
        assert!(!s.engine.status().lockout_active, "jump {by}: did not end");
        s.input(Input::Touch);
        s.press(&format!("{ADMIN_CODE}✓"));
        assert!(s.unlocked(), "jump {by}: the code works after the lockout");
    }
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
fn the_auto_lock_countdown_ignores_the_wall_clock() {
    for by in [DAY, -DAY] {
        let mut s = Sim::installed();
        let owner = s.owner();
        s.app(
            Channel::Ble,
            owner,
            AppCommand::Setting(SettingChange::AutoLock(Some(secs(30)))),
        )
        .expect("setting");
        s.input(Input::Touch);
        s.press(&format!("{ADMIN_CODE}✓"));
        s.finish_motor();
        s.input(Input::Door(DoorPosition::Open));
        s.input(Input::Door(DoorPosition::Closed));
        s.advance(10);
        jump(&mut s, by);
        assert!(!drives_out(&s), "jump {by}: locked at the jump");
        s.advance(19);
        assert!(!drives_out(&s), "jump {by}: locked early");
        s.advance(1);
        assert!(drives_out(&s), "jump {by}: not locked after 30 s");
    }
}

#[test]
fn the_pairing_window_ignores_the_wall_clock() {
    for by in [DAY, -DAY] {
        let mut s = Sim::installed();
        s.input(Input::Set(SetPress::Long));
        s.expect_prompt(Prompt::PairingMode);
        s.advance(60);
        jump(&mut s, by);
        assert!(s.engine.status().pairing_mode, "jump {by}: window closed");
        s.advance(119);
        assert!(s.engine.status().pairing_mode, "jump {by}: closed early");
        s.advance(1);
        s.expect_prompt(Prompt::PairingEnded);
        assert!(!s.engine.status().pairing_mode);
    }
}
