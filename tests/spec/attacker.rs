//! Issue 13: a lock that holds against a patient attacker — brute force
//! with anti-peep padding (B-6.4, B-7), attempts stored before their answer
//! shows, wall-clock rollback (B-6.8, B-6.10, B-9.4), the validity oracle,
//! owner keys (B-5), and automatic face recognition (B-6.2). Each test
//! names the spec item whose behaviour it pins down.
use latchd::core::action::{AlarmCmd, ModuleCmd, Notice};
use latchd::core::event::{AlarmKind, AppRefusal, ReleasedBy};
use latchd::core::input::{ModuleReport, SetPress};
use latchd::core::policy::{lockout_for, LOCKOUT_CAP};
use latchd::core::types::{AppKey, AppKeyId, AppKeyRole, Change, Key, Method, Modality};
use latchd::core::{
    Action, AppCommand, AppError, AppOk, Channel, EventKind, Input, Principal, Prompt, Validity,
    WallTime,
};

use crate::harness::{a_day, code_of, n, Sim, ADMIN_CODE, WALL0};

/// A wrong 6-digit code: one strike.
const WRONG: &str = "802468";

fn wrong(s: &mut Sim) {
    s.input(Input::Touch);
    s.press(&format!("{WRONG}✓"));
}

/// Wait for the running lockout to end.
fn sit_out(s: &mut Sim) {
    if let Some(left) = s.engine.status().lockout_remaining {
        s.advance_ms(left.as_millis() as u64);
    }
}

fn first_index(s: &Sim, f: impl Fn(&Action) -> bool) -> usize {
    s.position(f).unwrap_or(usize::MAX)
}

fn visible(a: &Action) -> bool {
    matches!(
        a,
        Action::Prompt(_, _) | Action::Motor(_) | Action::Alarm(_) | Action::Keypad(_)
    )
}

// ----- item 1: padding, escalation, disable, release -----

/// B-6.4 + B-7.1: an anti-peep input pays one strike for every 6-digit
/// window it tried, so a robot's padded guesses cost what they test. Today
/// one 32-digit input tested 27 codes for the price of one failure.
#[test]
fn b7_1_a_padded_input_pays_for_every_window_it_tried() {
    let mut s = Sim::installed();
    s.input(Input::Touch);
    // 16 digits, no stored code in them: 11 six-digit windows.
    s.press("9080706050403020✓");
    assert_eq!(s.engine.status().strikes, 11);
    // Two levels at once: the second lockout, six minutes.
    assert_eq!(s.engine.status().lockout_level, 2);
    assert_eq!(s.engine.status().lockout_remaining, Some(lockout_for(2)));
    s.expect_prompt(Prompt::LockedOut);
    // B-6.4: anti-peep still opens for the right code inside padding.
    sit_out(&mut s);
    s.input(Input::Touch);
    s.press(&format!("90{ADMIN_CODE}7060✓"));
    assert!(s.unlocked());
}

/// B-7.1/B-7.2 escalated: lockouts double (3, 6, 12, 24 min) and the fifth
/// level disables the keypad until the owner releases it; the timed
/// lockouts run out by themselves, the disabled keypad does not.
#[test]
fn b7_1_lockouts_escalate_and_the_fifth_level_disables_the_keypad() {
    let mut s = Sim::installed();
    let owner = s.owner();
    for level in 1..=4u32 {
        for _ in 0..5 {
            wrong(&mut s);
        }
        assert_eq!(s.engine.status().lockout_level, level);
        assert_eq!(
            s.engine.status().lockout_remaining,
            Some(lockout_for(level)),
            "level {level}"
        );
        assert!(s.has_event(&EventKind::LockoutLevel {
            level,
            minutes: (lockout_for(level).as_secs() / 60) as u32
        }));
        sit_out(&mut s);
        assert!(!s.engine.status().lockout_active);
    }
    assert_eq!(
        [1, 2, 3, 4].map(|l| lockout_for(l).as_secs() / 60),
        [3, 6, 12, 24]
    );
    for _ in 0..5 {
        wrong(&mut s);
    }
    let st = s.engine.status();
    assert!(st.keypad_disabled);
    assert!(s.has_event(&EventKind::KeypadDisabled { strikes: 25 }));
    assert!(st.lockout_remaining.unwrap() <= LOCKOUT_CAP);
    assert!(s.notices().contains(&Notice::Lockout {
        level: 5,
        minutes: Some(48),
        keypad_disabled: true
    }));
    sit_out(&mut s);
    // The timed lockout is over; the keypad stays disabled, says so, and
    // counts nothing (not even the right code opens).
    assert!(s.engine.status().keypad_disabled);
    assert!(s.alarm_active(AlarmKind::Lockout));
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(!s.unlocked());
    s.expect_prompt(Prompt::KeypadDisabled);
    assert!(
        !s.persisted()
            .iter()
            .any(|c| matches!(c, Change::PutAttempt(_) | Change::PutLockout(_))),
        "nothing counted"
    );
    // Hours later it is still disabled.
    s.advance(12 * 3600);
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    s.expect_prompt(Prompt::KeypadDisabled);
    // The owner's app releases it (B-7.2): every strike is cleared.
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::ReleaseLockout),
        Ok(AppOk::Done)
    );
    assert!(s.has_event(&EventKind::KeypadReleased {
        by: ReleasedBy::Owner {
            via: Channel::Ble,
            admin: n(1)
        }
    }));
    let st = s.engine.status();
    assert!(!st.keypad_disabled && st.strikes == 0 && st.lockout_level == 0);
    assert!(!s.alarm_active(AlarmKind::Lockout));
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(s.unlocked());
}

/// The escalation and the disabled keypad survive restarts and power
/// cuts: a restart is not a release.
#[test]
fn b7_1_escalation_and_the_disabled_keypad_survive_a_restart() {
    let mut s = Sim::installed();
    for _ in 0..3 {
        for _ in 0..5 {
            wrong(&mut s);
        }
        sit_out(&mut s);
    }
    s.restart();
    assert_eq!(s.engine.status().strikes, 15);
    for _ in 0..5 {
        wrong(&mut s);
    }
    assert_eq!(s.engine.status().lockout_remaining, Some(lockout_for(4)));
    sit_out(&mut s);
    for _ in 0..5 {
        wrong(&mut s);
    }
    sit_out(&mut s);
    s.restart();
    assert!(s.engine.status().keypad_disabled);
    assert!(s.alarm_active(AlarmKind::Lockout));
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    s.expect_prompt(Prompt::KeypadDisabled);
}

/// B-7.2: an administrator releases a disabled keypad in the menu (SET is
/// on the inside, so the check there still takes a code).
#[test]
fn b7_2_an_administrator_releases_the_disabled_keypad_in_the_menu() {
    let mut s = Sim::installed();
    for _ in 0..5 {
        for _ in 0..5 {
            wrong(&mut s);
        }
        sit_out(&mut s);
    }
    assert!(s.engine.status().keypad_disabled);
    s.input(Input::Set(SetPress::Short));
    s.press(&format!("{ADMIN_CODE}✓"));
    s.expect_prompt(Prompt::MenuMain);
    s.expect_prompt(Prompt::KeypadReleased);
    assert!(s.has_event(&EventKind::KeypadReleased {
        by: ReleasedBy::Administrator { user: n(1) }
    }));
    assert!(!s.engine.status().keypad_disabled);
    assert_eq!(s.store.lockout.strikes, 0);
    assert!(!s.store.lockout.keypad_disabled);
}

/// A stranger must not lock the owner out of their home: during a lockout
/// an administrator's biometric still opens (logged) and, at SET, opens
/// the menu and releases the lockout; another user's does not.
#[test]
fn b7_1_an_administrators_biometric_opens_during_a_lockout() {
    let mut s = Sim::installed();
    // 001's finger, and user 002 with a finger.
    s.enter_menu();
    s.press("1");
    let admin2 = s.shown_user().expect("number");
    s.press("3");
    let admin_slot = s.complete_enrolment(Modality::Fingerprint);
    s.press("↩↩");
    s.enter_menu();
    s.press("23");
    let user_slot = s.complete_enrolment(Modality::Fingerprint);
    s.press("↩↩");
    for _ in 0..5 {
        wrong(&mut s);
    }
    assert!(s.engine.status().lockout_active);
    s.present_finger(user_slot);
    assert!(!s.unlocked());
    s.expect_prompt(Prompt::LockedOut);
    s.present_finger(admin_slot);
    assert!(s.unlocked());
    assert!(s.has_event(&EventKind::LockoutOverridden {
        method: Method::Fingerprint,
        user: Some(admin2)
    }));
    assert!(s.engine.status().lockout_active, "opening is not releasing");
    // At SET the administrator's finger opens the menu and releases.
    s.input(Input::Set(SetPress::Short));
    s.present_finger(admin_slot);
    s.expect_prompt(Prompt::MenuMain);
    assert!(!s.engine.status().lockout_active);
    assert!(s.has_event(&EventKind::LockoutEnded { early: true }));
    assert!(s.alarms().contains(&AlarmCmd::Silence {
        kind: AlarmKind::Lockout
    }));
}

/// The owner hears of the first lockout (and every level after), on the
/// channels the runtime has, and so does a guest key's refusal.
#[test]
fn b7_1_the_owner_is_told_of_the_first_lockout() {
    let mut s = Sim::installed();
    for _ in 0..5 {
        wrong(&mut s);
    }
    assert!(s.notices().contains(&Notice::Lockout {
        level: 1,
        minutes: Some(3),
        keypad_disabled: false
    }));
}

/// A success forgives a few recent failures of its own method (a person's
/// typos), never a robot's padded inputs, and never those of another
/// method.
#[test]
fn b7_1_a_success_forgives_typos_but_not_padded_guesses() {
    let mut s = Sim::installed();
    wrong(&mut s);
    wrong(&mut s);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(s.unlocked());
    assert_eq!(s.engine.status().strikes, 0);
    s.advance(60);
    s.input(Input::Touch);
    s.press("90807060504030✓"); // 14 digits: 9 strikes
    sit_out(&mut s);
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(s.unlocked());
    assert_eq!(s.engine.status().strikes, 9);
    assert_eq!(s.store.lockout.strikes, 9);
}

/// B-7.3 with protection off: no timed lockouts and no siren, but the
/// budget still disables the keypad (the safer behaviour wins).
#[test]
fn b7_3_protection_off_still_disables_the_keypad_at_the_budget() {
    let mut s = Sim::installed();
    let owner = s.owner();
    s.app(
        Channel::Ble,
        owner,
        AppCommand::Setting(latchd::core::types::SettingChange::LockoutProtection(false)),
    )
    .expect("setting");
    for _ in 0..24 {
        wrong(&mut s);
        assert!(!s.engine.status().lockout_active);
    }
    wrong(&mut s);
    assert!(s.engine.status().keypad_disabled);
    assert!(!s.engine.status().lockout_active);
    assert!(!s
        .alarms()
        .iter()
        .any(|a| matches!(a, AlarmCmd::Sound { .. })));
    s.expect_prompt(Prompt::KeypadDisabled);
}

// ----- item 2: the attempt is stored before its answer shows -----

/// For a wrong and a right code alike: the attempt's batch starts with one
/// commit of the record as it stands if the attempt fails, before any
/// prompt, light, alarm or motor; a success clears it after the motor.
#[test]
fn b7_1_an_attempt_is_stored_before_its_answer_shows() {
    for code in [WRONG, ADMIN_CODE] {
        let mut s = Sim::installed();
        s.input(Input::Touch);
        let typed: String = code.chars().collect();
        s.press(&typed);
        s.press("✓");
        let persist = first_index(&s, |a| matches!(a, Action::Persist(_)));
        let shown = first_index(&s, visible);
        assert!(persist < shown, "{code}: {:?}", s.last);
        let commits_before_answer = s.last[..shown]
            .iter()
            .filter(|a| matches!(a, Action::Persist(_)))
            .count();
        assert_eq!(commits_before_answer, 1, "{code}");
        let Action::Persist(first) = &s.last[persist] else {
            unreachable!()
        };
        assert!(
            matches!(&first[0], Change::PutAttempt(r) if r.strikes == 1),
            "{code}: {first:?}"
        );
        if code == ADMIN_CODE {
            let motor = first_index(&s, |a| matches!(a, Action::Motor(_)));
            let clear = s
                .last
                .iter()
                .rposition(
                    |a| matches!(a, Action::Persist(c) if matches!(c[0], Change::PutLockout(_))),
                )
                .expect("the success clears the record");
            assert!(motor < clear);
            assert_eq!(s.store.lockout.strikes, 0);
        } else {
            assert_eq!(s.store.lockout.strikes, 1);
        }
    }
}

/// The IP-Box attack: the power goes right after the attempt's first
/// commit, before the answer (or the motor) — whatever the code was, the
/// attempt comes back counted as a failure.
#[test]
fn b7_1_a_power_cut_before_the_answer_still_counts_the_attempt() {
    for code in [WRONG, ADMIN_CODE] {
        let mut s = Sim::installed();
        let before = s.store.clone();
        s.input(Input::Touch);
        s.press(&format!("{code}✓"));
        // Only the first commit of the batch reached the disk.
        let mut cut = before.clone();
        let first = s
            .last
            .iter()
            .find_map(|a| match a {
                Action::Persist(c) => Some(c.clone()),
                _ => None,
            })
            .expect("a commit");
        for c in &first {
            crate::harness::apply(&mut cut, c);
        }
        s.store = cut;
        s.restart();
        assert_eq!(s.engine.status().strikes, 1, "{code}");
    }
}

/// A one-time visitor code is spent in the attempt's own commit: the
/// answer still follows exactly one commit, and it can never open twice.
#[test]
fn b6_10_a_one_time_code_is_spent_in_the_attempts_commit() {
    let mut s = Sim::installed();
    let owner = s.owner();
    s.add_temp_passcode(owner, "470258", a_day(), true);
    s.input(Input::Touch);
    s.press("470258✓");
    assert!(s.unlocked());
    let Some(Action::Persist(first)) = s.last.iter().find(|a| matches!(a, Action::Persist(_)))
    else {
        panic!("no commit")
    };
    assert!(matches!(first[0], Change::PutAttempt(_)));
    assert!(matches!(first[1], Change::DeleteTempPasscode(_)));
    s.press("470258✓");
    assert!(!s.unlocked());
}

// ----- item 3: wall-clock rollback, every visitor code has an end -----

fn window(from: i64, until: i64) -> Validity {
    Validity {
        from: Some(WallTime(from)),
        until: Some(WallTime(until)),
    }
}

/// One credential of every time-windowed kind, valid for the next hour.
struct Windowed {
    owner: Principal,
    guest: Principal,
}

fn windowed(s: &mut Sim) -> Windowed {
    let owner = s.owner();
    let u = s.add_passcode_user("2", "802468");
    let hour = window(WALL0 - 60, WALL0 + 3600);
    s.app(Channel::Ble, owner, AppCommand::SetValidity(u, hour))
        .expect("user window");
    s.add_temp_passcode(owner, "470258", hour, false);
    let key = s.add_guest_key(owner, hour, "visitor");
    Windowed {
        owner,
        guest: Principal::Guest {
            key,
            validity: hour,
        },
    }
}

/// Which of the three windowed credentials open now.
fn which_open(s: &mut Sim, w: &Windowed) -> [bool; 3] {
    s.input(Input::Touch);
    s.press("802468✓");
    let user = s.unlocked();
    s.press("470258✓");
    let visitor = s.unlocked();
    let guest = s.app(Channel::Ble, w.guest, AppCommand::Unlock).is_ok();
    [user, visitor, guest]
}

/// B-6.8/B-6.10/B-6.6: a wall clock set back below the time the lock
/// already trusted reopens nothing — not even what would be inside its
/// window at the false time; it is logged and the owner is told.
#[test]
fn b6_8_a_clock_set_back_reopens_no_windowed_credential() {
    let mut s = Sim::installed();
    let w = windowed(&mut s);
    assert_eq!(which_open(&mut s, &w), [true, true, true]);
    s.advance(2 * 3600);
    assert_eq!(which_open(&mut s, &w), [false, false, false], "expired");
    // The clock is set back into the window (a spoofed NTP answer, an RTC
    // reset): the lock knows it is later than that.
    s.wall = Some(WALL0 + 600);
    s.input(Input::Tick);
    assert!(s
        .events()
        .iter()
        .any(|e| matches!(e.kind, EventKind::ClockBehind { .. })));
    assert!(s.notices().contains(&Notice::ClockBehind));
    assert_eq!(s.engine.status().wall_time, None, "fails closed");
    assert_eq!(which_open(&mut s, &w), [false, false, false]);
    // Unbounded credentials still open (after the owner clears the
    // strikes those refusals cost).
    s.app(Channel::Ble, w.owner, AppCommand::ReleaseLockout)
        .expect("release");
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(s.unlocked());
    // The owner cannot sync it back below the floor either.
    assert_eq!(
        s.app(
            Channel::Ble,
            w.owner,
            AppCommand::SetClock(WallTime(WALL0 + 600))
        ),
        Err(AppError::ClockBehindTrusted)
    );
    assert!(s.events().iter().any(|e| matches!(
        e.kind,
        EventKind::ClockSyncRefused { to: WallTime(t), floor: Some(_) } if t == WALL0 + 600
    )));
}

/// Set forward past the windows' end (a trusted source), the expired ones
/// are refused; set back to the true time afterwards, the lock is behind
/// its floor and refuses them too, rather than guess.
#[test]
fn b6_8_a_clock_set_forward_expires_windows_and_cannot_come_back() {
    let mut s = Sim::installed();
    let w = windowed(&mut s);
    s.wall = Some(WALL0 + 7200);
    assert_eq!(which_open(&mut s, &w), [false, false, false]);
    s.wall = Some(WALL0 + 30);
    assert_eq!(which_open(&mut s, &w), [false, false, false]);
    assert_eq!(s.engine.status().wall_time, None);
}

/// The high-water mark is persisted: a restart with the clock behind it,
/// or with no clock at all (no network, no RTC), refuses the windows.
#[test]
fn b6_8_a_restart_without_network_keeps_the_high_water_mark() {
    let mut s = Sim::installed();
    let w = windowed(&mut s);
    s.advance(2 * 3600);
    s.input(Input::Tick);
    assert!(s.store.time_floor >= Some(WallTime(WALL0 + 3600)));
    // Power cut, no RTC: the clock comes back in the past.
    s.wall_origin = WALL0;
    s.wall = Some(WALL0 + 60);
    s.restart();
    assert_eq!(s.engine.status().wall_time, None);
    assert_eq!(which_open(&mut s, &w), [false, false, false]);
    // No clock at all: refused too.
    s.wall = None;
    s.restart();
    assert_eq!(which_open(&mut s, &w), [false, false, false]);
}

/// B-9 time sync: bounded (not behind the floor, not absurd), logged, and
/// the floor it sets is stored at once.
#[test]
fn b9_an_owner_time_sync_is_bounded_logged_and_stored() {
    let mut s = Sim::installed();
    let owner = s.owner();
    s.wall = None;
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::SetClock(WallTime(1_000))),
        Err(AppError::ClockOutOfRange)
    );
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::SetClock(WallTime(WALL0 + 3 * 365 * 86_400))
        ),
        Err(AppError::ClockOutOfRange)
    );
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::SetClock(WallTime(WALL0 + 100))
        ),
        Ok(AppOk::Done)
    );
    assert!(s.last.contains(&Action::SetClock(WallTime(WALL0 + 100))));
    assert!(s.has_event(&EventKind::ClockSet {
        to: WallTime(WALL0 + 100)
    }));
    assert!(s
        .expect_persist()
        .contains(&Change::PutTimeFloor(WallTime(WALL0 + 100))));
}

/// Every visitor code has an end: a one-time code made without one ends a
/// day later (configurable); a reusable one must say its end.
#[test]
fn b6_10_every_visitor_code_has_an_end() {
    let mut s = Sim::installed();
    let owner = s.owner();
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::AddTempPasscode {
                digits: "470258".into(),
                validity: Validity::ALWAYS,
                one_time: false,
            },
        ),
        Err(AppError::BadValidity)
    );
    s.add_temp_passcode(owner, "470258", Validity::ALWAYS, true);
    let made = s.wall.expect("known");
    let stored = s.store.temp_passcodes[0].validity;
    assert_eq!(stored.until, Some(WallTime(made + 86_400)));
    s.advance(86_400);
    s.input(Input::Touch);
    s.press("470258✓");
    assert!(!s.unlocked(), "a day later it is spent by time");
    // Without a known clock no open-ended one-time code can be made.
    s.wall = None;
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::AddTempPasscode {
                digits: "571369".into(),
                validity: Validity::ALWAYS,
                one_time: true,
            },
        ),
        Err(AppError::ClockUnknown)
    );
}

// ----- item 4: the validity oracle -----

/// A correct visitor code outside its window is answered and counted
/// exactly like a wrong code at the keypad; only the owner's log says why.
#[test]
fn b6_10_a_visitor_code_outside_its_window_answers_like_a_wrong_one() {
    let mut s = Sim::installed();
    let owner = s.owner();
    s.add_temp_passcode(owner, "470258", window(WALL0 + 3600, WALL0 + 7200), false);
    s.input(Input::Touch);
    s.press("470258✓");
    let early = s.prompts();
    let early_strikes = s.engine.status().strikes;
    assert!(s.has_event(&EventKind::OutsideValidity {
        method: Method::TempPasscode,
        user: None
    }));
    s.press("571369✓");
    assert_eq!(s.prompts(), early, "same answer as a wrong code");
    assert_eq!(early, vec![Prompt::VerifyFailed]);
    assert_eq!(early_strikes, 1);
    assert_eq!(s.engine.status().strikes, 2);
}

// ----- item 6: owner keys -----

/// B-5.1: the label's verification code pairs the first owner only; the
/// pairing moves the lock to the next code, in the same commit as the key,
/// and system information (inside) speaks the new one.
#[test]
fn b5_1_the_label_code_pairs_the_first_owner_only() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("✓");
    s.expect_prompt(Prompt::SystemInfo {
        serial: "LD-0001".into(),
        firmware: "0.1.0".into(),
        verification_code: code_of(0),
        matter_code: None,
    });
    s.press("↩");
    s.owner();
    let commit = s
        .last
        .iter()
        .find_map(|a| match a {
            Action::Persist(c) if c.iter().any(|c| matches!(c, Change::PutAppKey(_))) => {
                Some(c.clone())
            }
            _ => None,
        })
        .expect("the key's commit");
    assert!(
        commit.contains(&Change::SetPairingGeneration(1)),
        "{commit:?}"
    );
    assert!(s.has_event(&EventKind::PairingCodeRotated { generation: 1 }));
    assert_eq!(s.engine.status().pairing_generation, 1);
    s.advance(30);
    s.enter_menu();
    s.press("✓");
    s.expect_prompt(Prompt::SystemInfo {
        serial: "LD-0001".into(),
        firmware: "0.1.0".into(),
        verification_code: code_of(1),
        matter_code: None,
    });
    // A restart keeps the generation.
    s.press("↩↩");
    s.restart();
    assert_eq!(s.engine.status().pairing_generation, 1);
}

/// Owner keys are listed and revoked one by one, each logged; a revoked
/// owner key can do nothing more; a guest cannot list or revoke them.
#[test]
fn b9_owner_keys_are_listed_and_revoked_one_by_one() {
    let mut s = Sim::installed();
    let first = s.owner();
    let r = s.app(
        Channel::Ble,
        first,
        AppCommand::AddAppKey(AppKey {
            id: AppKeyId(0),
            role: AppKeyRole::Owner { admin: n(1) },
            public_key: [8; 32],
            validity: Validity::ALWAYS,
            label: "second phone".into(),
        }),
    );
    let Ok(AppOk::AppKeyAdded(second_key)) = r else {
        panic!("{r:?}")
    };
    let second = Principal::Owner {
        key: second_key,
        admin: n(1),
    };
    let Ok(AppOk::OwnerKeys(keys)) = s.app(Channel::Remote, first, AppCommand::ListOwnerKeys)
    else {
        panic!("no listing")
    };
    assert_eq!(keys.len(), 2);
    assert!(keys
        .iter()
        .any(|k| k.slot == second_key && k.label == "second phone"));
    assert!(s.has_event(&EventKind::OwnerKeysListed));
    assert_eq!(
        s.app(
            Channel::Ble,
            second,
            AppCommand::RevokeOwnerKey(AppKeyId(99))
        ),
        Err(AppError::NotFound)
    );
    assert_eq!(
        s.app(Channel::Ble, first, AppCommand::RevokeOwnerKey(second_key)),
        Ok(AppOk::Done)
    );
    assert!(s.has_event(&EventKind::AppKeyRevoked { slot: second_key.0 }));
    assert_eq!(
        s.app(Channel::Ble, second, AppCommand::Unlock),
        Err(AppError::Forbidden)
    );
    assert!(s.has_event(&EventKind::AppRefused {
        via: Channel::Ble,
        reason: AppRefusal::Forbidden
    }));
}

// ----- item 8: automatic face recognition -----

fn with_face(s: &mut Sim) -> u16 {
    s.enter_menu();
    s.press("21");
    let slot = s.complete_enrolment(Modality::Face);
    s.press("↩↩");
    s.advance(30);
    slot
}

/// B-6.2 automatic: the camera's motion starts a recognition; an enrolled
/// face opens.
#[test]
fn b6_2_automatic_recognition_opens_for_an_enrolled_face() {
    let mut s = Sim::installed();
    let slot = with_face(&mut s);
    s.input(Input::Motion);
    assert!(s.module_cmds().contains(&ModuleCmd::RecogniseFace));
    s.present(Modality::Face, slot);
    assert!(s.unlocked());
}

/// B-6.2 automatic, its refusals one by one: motion asks the camera for
/// nothing while a menu is open (a face there would not be for the door),
/// while the bolt is open or the motor moves (an open door needs no face),
/// or during a lockout (a passer-by's face cannot be a way round it); and
/// asks again once each ends. Found by mutation testing (issue 23): every
/// one of these conditions could be and-ed away with every test green.
#[test]
fn b6_2_motion_asks_nothing_in_a_menu_while_open_or_locked_out() {
    let mut s = Sim::installed();
    with_face(&mut s);
    let asks = |s: &mut Sim| {
        s.input(Input::Motion);
        let asked = s.module_cmds().contains(&ModuleCmd::RecogniseFace);
        if asked {
            // End the attempt: nothing in flight for the next check.
            s.input(Input::Module(ModuleReport::Fault {
                modality: Modality::Face,
                detail: "test".into(),
            }));
        }
        asked
    };

    s.enter_menu();
    // SET asked for an administrator's face: let that attempt go stale
    // (the menu is still open), so only the menu refuses.
    s.advance(16);
    assert_ne!(s.engine.status().step, "idle", "the menu outlived the wait");
    assert!(!asks(&mut s), "in the menu");
    s.press("↩↩");
    s.advance(30);
    assert!(asks(&mut s), "idle again");

    // Keys, not a touch: a touch would ask for a face itself, and an
    // attempt in flight would hide the refusals below.
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(s.unlocked());
    assert!(!asks(&mut s), "the motor is moving");
    s.finish_motor();
    assert!(!asks(&mut s), "the bolt is open");
    s.input(Input::LockButton);
    s.finish_motor();
    s.advance(30);
    assert!(asks(&mut s), "locked again");

    for _ in 0..5 {
        s.press("000000✓");
    }
    assert!(s.engine.status().lockout_active);
    assert!(!asks(&mut s), "during a lockout");
}

/// B-6.2 automatic on a lock that is not set up: with no door handing
/// (B-2 not done) or no administrator, motion asks the camera for nothing;
/// the same lock set up asks. Found by mutation testing (issue 23).
#[test]
fn b6_2_motion_asks_nothing_on_a_lock_without_handing_or_administrator() {
    let mut s = Sim::installed();
    with_face(&mut s);
    let motion_asks = |store: latchd::core::types::Persisted| {
        let mut s = Sim::with_store(store);
        s.advance(30);
        s.input(Input::Motion);
        s.module_cmds().contains(&ModuleCmd::RecogniseFace)
    };
    assert!(motion_asks(s.store.clone()), "set up");
    let mut no_handing = s.store.clone();
    no_handing.handing = None;
    assert!(!motion_asks(no_handing), "no handing");
    let mut no_admin = s.store.clone();
    for u in &mut no_admin.users {
        u.role = latchd::core::types::Role::User;
    }
    assert!(!motion_asks(no_admin), "no administrator");
}

/// Passers-by do not feed the keypad's lockout (they would start lockouts
/// and the siren): automatic failures are silent, logged, and pause
/// automatic recognition after three; a manual attempt (touch) still
/// works and counts like any credential.
#[test]
fn b6_2_automatic_failures_have_their_own_bounded_budget() {
    let mut s = Sim::installed();
    with_face(&mut s);
    for i in 0..3 {
        s.input(Input::Motion);
        assert!(s.module_cmds().contains(&ModuleCmd::RecogniseFace), "{i}");
        s.present_unknown(Modality::Face);
        assert!(s.prompts().is_empty(), "silent for the passer-by");
        assert!(s
            .events()
            .iter()
            .any(|e| matches!(e.kind, EventKind::AutoFaceRefused { .. })));
        s.advance(20);
    }
    assert!(
        s.has_event(&EventKind::AutoFacePaused { minutes: 10 })
            || {
                // The pause was logged with the third failure.
                s.all.iter().any(|a| matches!(a, Action::Log(e) if e.kind == EventKind::AutoFacePaused { minutes: 10 }))
            }
    );
    let st = s.engine.status();
    assert_eq!(st.strikes, 0);
    assert!(!st.lockout_active);
    // Paused: motion starts nothing.
    s.input(Input::Motion);
    assert!(!s.module_cmds().contains(&ModuleCmd::RecogniseFace));
    // Manual still works and counts.
    s.input(Input::Touch);
    assert!(s.module_cmds().contains(&ModuleCmd::RecogniseFace));
    s.input(Input::Module(ModuleReport::NotRecognised {
        modality: Modality::Face,
    }));
    s.expect_prompt(Prompt::VerifyFailed);
    assert_eq!(s.engine.status().strikes, 1);
    // After the pause, motion starts recognitions again.
    s.advance(10 * 60);
    s.input(Input::Motion);
    assert!(s.module_cmds().contains(&ModuleCmd::RecogniseFace));
}

/// Issue 13 item 7: a fingerprint module that does not know the lock's
/// module password (swapped in from outside) is a module fault, the
/// module-swap alarm (sounded) and an owner notice; an administrator's
/// re-pair (menu key 4) asks the module side to adopt a factory-fresh
/// module and ends the alarm.
#[test]
fn a_swapped_fingerprint_module_is_a_fault_an_alarm_and_a_notice_until_re_paired() {
    let mut s = Sim::installed();
    s.enter_menu();
    assert!(
        !s.lit().contains(&Key::Digit(4)),
        "no module refused: no re-pair"
    );
    s.press("4");
    assert!(s.module_cmds().is_empty());
    s.press("↩");
    let detail = "the fingerprint module does not know this lock's module password".to_string();
    s.input(Input::Module(ModuleReport::Untrusted {
        modality: Modality::Fingerprint,
        detail: detail.clone(),
    }));
    assert!(s.has_event(&EventKind::ModuleFault {
        detail: format!("Fingerprint: {detail}"),
    }));
    assert!(s.alarms().iter().any(|a| matches!(
        a,
        AlarmCmd::Sound {
            kind: AlarmKind::ModuleSwap,
            ..
        }
    )));
    assert!(s.notices().contains(&Notice::Alarm(AlarmKind::ModuleSwap)));
    assert!(s.alarm_active(AlarmKind::ModuleSwap));
    s.expect_prompt(Prompt::ModuleFault);

    s.enter_menu();
    assert!(s.lit().contains(&Key::Digit(4)));
    s.press("4");
    assert!(s.module_cmds().contains(&ModuleCmd::Pair {
        modality: Modality::Fingerprint
    }));
    assert!(!s.alarm_active(AlarmKind::ModuleSwap));
    s.expect_prompt(Prompt::Success);

    // Refused again (the replacement is not factory-fresh): raised again.
    s.input(Input::Module(ModuleReport::Untrusted {
        modality: Modality::Fingerprint,
        detail,
    }));
    assert!(s.alarm_active(AlarmKind::ModuleSwap));
}

/// Issue 13 item 7 during an enrolment: the module found not the lock's
/// own ends the enrolment with the same alarm; another module's end of an
/// outage is logged; another module's progress is not this enrolment's.
#[test]
fn module_reports_during_an_enrolment_are_not_lost() {
    use latchd::core::input::{EnrolFailure, EnrolStep, FacePose};
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("2");
    s.press("3");
    assert!(s.enrol_slot().is_some(), "a fingerprint enrolment runs");
    s.input(Input::Module(ModuleReport::EnrolProgress {
        modality: Modality::Face,
        step: EnrolStep::FacePose(FacePose::Left),
    }));
    assert!(s.prompts().is_empty(), "{:?}", s.prompts());
    // Another module's late end of an enrolment (same slot number, even):
    // neither stored as this fingerprint nor ending this enrolment.
    let slot = s.enrol_slot().expect("the fingerprint's slot");
    s.input(Input::Module(ModuleReport::Enrolled {
        modality: Modality::Face,
        slot,
        template: Some(vec![1, 2, 3, 4]),
    }));
    s.input(Input::Module(ModuleReport::EnrolFailed {
        modality: Modality::Face,
        reason: EnrolFailure::Timeout,
    }));
    assert!(s.prompts().is_empty(), "{:?}", s.prompts());
    assert_eq!(s.persisted(), Vec::new());
    assert_eq!(s.engine.status().step, "enrol.fingerprint");
    s.input(Input::Module(ModuleReport::Recovered {
        modality: Modality::Palm,
    }));
    assert!(s.has_event(&EventKind::ModuleRecovered {
        detail: "Palm".into()
    }));
    s.input(Input::Module(ModuleReport::Untrusted {
        modality: Modality::Fingerprint,
        detail: "not this lock's module".into(),
    }));
    assert!(s.alarm_active(AlarmKind::ModuleSwap));
    s.expect_prompt(Prompt::ModuleFault);
    assert_eq!(s.engine.status().step, "menu.choose_method");
}

// ----- issue 14 item 4: noise cannot flood the log -----

/// B-3.5 + issue 14 item 4: a doorbell flood rings every time, but only
/// the doorbell's burst is logged (and notified, and photographed); the
/// rest is counted and told as one `EventsSuppressed` when the next token
/// comes. A lockout logged before it is a record, not noise.
#[test]
fn a_doorbell_flood_is_counted_not_logged() {
    let mut s = Sim::installed();
    s.all.clear();
    for _ in 0..1_000 {
        s.input(Input::Touch);
        s.press("b");
        s.expect_prompt(Prompt::Doorbell);
        s.advance_ms(100);
    }
    let logged = |s: &Sim| -> Vec<EventKind> {
        s.all
            .iter()
            .filter_map(|a| match a {
                Action::Log(e) => Some(e.kind.clone()),
                _ => None,
            })
            .collect()
    };
    let bells = logged(&s)
        .iter()
        .filter(|k| **k == EventKind::Doorbell)
        .count();
    assert_eq!(bells, 10, "the doorbell's burst");
    let notices = s
        .all
        .iter()
        .filter(|a| matches!(a, Action::Notify(Notice::Doorbell)))
        .count();
    assert_eq!(notices, 10, "no push per press beyond the burst");
    // The next token comes 6 minutes after the burst: the count is told.
    s.advance(6 * 60);
    let suppressed: u64 = logged(&s)
        .iter()
        .filter_map(|k| match k {
            EventKind::EventsSuppressed { count, .. } => Some(*count),
            _ => None,
        })
        .sum();
    assert_eq!(suppressed, 990);
    assert_eq!(
        EventKind::LockoutStarted.retention(),
        latchd::core::event::Retention::Record
    );
}
