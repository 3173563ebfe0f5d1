//! The engine's rules for a Matter administrator (issue 18): the Door
//! Lock cluster's commands under the same rules as the owner's app.
use std::time::Duration;

use latchd::core::action::{Action, ModuleCmd, Notice};
use latchd::core::event::{AlarmKind, EventKind, LockHow};
use latchd::core::time::Validity;
use latchd::core::types::{Change, CredentialKind, Method, Modality, Role, SettingChange};
use latchd::core::WallTime;
use latchd::core::{AppCommand, AppError, AppOk, Channel, Input, Principal};

use super::harness::{n, Sim, ADMIN_CODE};

const MATTER: Principal = Principal::Matter {
    fabric: 1,
    node: 112233,
};

fn matter(s: &mut Sim, command: AppCommand) -> Result<AppOk, AppError> {
    s.app(Channel::Matter, MATTER, command)
}

fn remote_unlock_on(s: &mut Sim) {
    assert_eq!(
        matter(s, AppCommand::Setting(SettingChange::RemoteUnlock(true))),
        Ok(AppOk::Done)
    );
}

fn unlock_with(code: Option<&str>) -> AppCommand {
    AppCommand::UnlockWithCode {
        code: code.map(Into::into),
        relock_after: None,
    }
}

#[test]
fn b2_4_a_lock_without_administrator_takes_no_matter_command() {
    let mut s = Sim::new();
    s.press("✓1");
    assert_eq!(matter(&mut s, AppCommand::Lock), Err(AppError::NoAdmin));
    assert_eq!(
        matter(
            &mut s,
            AppCommand::AddUserAt {
                user: n(1),
                role: Role::Admin
            }
        ),
        Err(AppError::NoAdmin)
    );
}

#[test]
fn b6_7_matter_unlock_needs_remote_unlock_and_wifi() {
    let mut s = Sim::installed();
    assert_eq!(
        matter(&mut s, AppCommand::Unlock),
        Err(AppError::RemoteUnlockDisabled)
    );
    assert_eq!(
        matter(&mut s, unlock_with(None)),
        Err(AppError::RemoteUnlockDisabled)
    );
    assert!(s.drive().is_none());
    remote_unlock_on(&mut s);
    assert_eq!(matter(&mut s, unlock_with(None)), Ok(AppOk::Done));
    assert!(s.has_event(&EventKind::Unlocked {
        method: Method::Matter,
        user: None
    }));
    s.finish_motor();
    // Locking is never refused for the setting.
    remote_unlock_off_then_lock(&mut s);
}

fn remote_unlock_off_then_lock(s: &mut Sim) {
    assert_eq!(
        matter(s, AppCommand::Setting(SettingChange::RemoteUnlock(false))),
        Ok(AppOk::Done)
    );
    assert_eq!(matter(s, AppCommand::Lock), Ok(AppOk::Done));
    s.finish_motor();
    assert!(s.has_event(&EventKind::Locked {
        how: LockHow::Matter
    }));
}

#[test]
fn b7_1_wrong_pins_over_matter_count_towards_the_lockout() {
    let mut s = Sim::installed();
    remote_unlock_on(&mut s);
    for _ in 0..4 {
        assert_eq!(
            matter(&mut s, unlock_with(Some("864209"))),
            Err(AppError::WrongCode)
        );
    }
    // A keypad failure counts in the same budget: the fifth locks out.
    s.input(Input::Touch);
    s.press("975318✓");
    assert!(s.engine.status().lockout_active);
    assert!(s.has_event(&EventKind::AlarmRaised {
        alarm: AlarmKind::Lockout
    }));
    // The right code does not open during the lockout either.
    assert_eq!(
        matter(&mut s, unlock_with(Some(ADMIN_CODE))),
        Err(AppError::LockedOut)
    );
    assert!(s.drive().is_none());
}

#[test]
fn b7_1_codes_that_break_the_rules_are_wrong_codes_too() {
    let mut s = Sim::installed();
    remote_unlock_on(&mut s);
    for bad in ["12", "123456", "abcdef"] {
        assert_eq!(
            matter(&mut s, unlock_with(Some(bad))),
            Err(AppError::WrongCode)
        );
    }
    assert_eq!(s.engine.status().recent_failures, 3);
}

#[test]
fn b6_4_a_matter_pin_is_checked_exactly_not_by_windows() {
    let mut s = Sim::installed();
    remote_unlock_on(&mut s);
    // The keypad's anti-peep would find ADMIN_CODE inside this input.
    let padded = format!("9{ADMIN_CODE}");
    assert_eq!(
        matter(&mut s, unlock_with(Some(&padded))),
        Err(AppError::WrongCode)
    );
    assert_eq!(
        matter(&mut s, unlock_with(Some(ADMIN_CODE))),
        Ok(AppOk::Done)
    );
    assert!(s.has_event(&EventKind::Unlocked {
        method: Method::Matter,
        user: Some(n(1))
    }));
}

#[test]
fn require_pin_for_remote_operation() {
    let mut s = Sim::installed();
    remote_unlock_on(&mut s);
    assert_eq!(
        matter(
            &mut s,
            AppCommand::Setting(SettingChange::RequirePinRemote(true))
        ),
        Ok(AppOk::Done)
    );
    assert_eq!(
        matter(&mut s, unlock_with(None)),
        Err(AppError::CodeRequired)
    );
    assert_eq!(
        matter(&mut s, AppCommand::Unlock),
        Err(AppError::CodeRequired)
    );
    assert_eq!(
        matter(&mut s, unlock_with(Some(ADMIN_CODE))),
        Ok(AppOk::Done)
    );
}

#[test]
fn b6_9_a_duress_pin_over_matter_opens_and_tells_the_owner_silently() {
    let mut s = Sim::installed();
    let owner = s.owner();
    s.app(
        Channel::Ble,
        owner,
        AppCommand::SetDuressPasscode {
            user: n(1),
            digits: "975310".into(),
        },
    )
    .unwrap();
    remote_unlock_on(&mut s);
    assert_eq!(matter(&mut s, unlock_with(Some("975310"))), Ok(AppOk::Done));
    assert!(s.notices().contains(&Notice::Duress { user: n(1) }));
    assert!(s.drive().is_some());
}

#[test]
fn b8_3_unlock_with_timeout_relocks_after_its_own_time() {
    let mut s = Sim::installed();
    remote_unlock_on(&mut s);
    let cmd = AppCommand::UnlockWithCode {
        code: None,
        relock_after: Some(Duration::from_secs(7)),
    };
    assert_eq!(matter(&mut s, cmd), Ok(AppOk::Done));
    s.finish_motor();
    s.advance(6);
    assert!(
        s.drive().is_none(),
        "no auto-lock setting: nothing before 7 s"
    );
    s.advance(2);
    assert!(s.drive().is_some(), "relocked after the command's 7 s");
    s.finish_motor();
    assert!(s.has_event(&EventKind::Locked { how: LockHow::Auto }));
}

#[test]
fn b1_2_users_and_pins_from_matter_follow_the_menus_rules() {
    let mut s = Sim::installed();
    assert_eq!(
        matter(
            &mut s,
            AppCommand::AddUserAt {
                user: n(7),
                role: Role::User
            }
        ),
        Ok(AppOk::UserAdded(n(7)))
    );
    assert_eq!(
        matter(
            &mut s,
            AppCommand::AddUserAt {
                user: n(7),
                role: Role::User
            }
        ),
        Err(AppError::UserExists)
    );
    // B-2.3: weak codes and codes of others are refused.
    for weak in ["111111", "123456", "12345"] {
        assert!(matches!(
            matter(
                &mut s,
                AppCommand::SetPasscode {
                    user: n(7),
                    digits: weak.into()
                }
            ),
            Err(AppError::BadPasscode(_))
        ));
    }
    assert!(matches!(
        matter(
            &mut s,
            AppCommand::SetPasscode {
                user: n(7),
                digits: ADMIN_CODE.into()
            }
        ),
        Err(AppError::BadPasscode(_))
    ));
    assert_eq!(
        matter(
            &mut s,
            AppCommand::SetPasscode {
                user: n(7),
                digits: "246801".into()
            }
        ),
        Ok(AppOk::Done)
    );
    assert!(s.has_event(&EventKind::CredentialAdded {
        user: n(7),
        kind: CredentialKind::Passcode
    }));
    // One PIN per user: a new one replaces it, and the old one no longer opens.
    assert_eq!(
        matter(
            &mut s,
            AppCommand::SetPasscode {
                user: n(7),
                digits: "802467".into()
            }
        ),
        Ok(AppOk::Done)
    );
    s.input(Input::Touch);
    s.press("246801✓");
    assert!(s.drive().is_none());
    s.advance(30);
    s.input(Input::Touch);
    s.press("802467✓");
    assert!(s.drive().is_some());
}

#[test]
fn b4_3_the_last_administrator_stays_one() {
    let mut s = Sim::installed();
    assert_eq!(
        matter(
            &mut s,
            AppCommand::SetRole {
                user: n(1),
                role: Role::User
            }
        ),
        Err(AppError::LastAdmin)
    );
    assert_eq!(
        matter(&mut s, AppCommand::DeleteUser(n(1))),
        Err(AppError::LastAdmin)
    );
    matter(
        &mut s,
        AppCommand::AddUserAt {
            user: n(2),
            role: Role::Admin,
        },
    )
    .unwrap();
    assert_eq!(
        matter(
            &mut s,
            AppCommand::SetRole {
                user: n(1),
                role: Role::User
            }
        ),
        Ok(AppOk::Done)
    );
}

#[test]
fn deleting_a_fingerprint_over_matter_removes_it_from_the_module() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("2");
    let user = s.shown_user().unwrap();
    s.press("3");
    let slot = s.complete_enrolment(Modality::Fingerprint);
    s.press("↩↩");
    let id = s
        .store
        .credentials
        .iter()
        .find(|c| c.user == user && c.kind == CredentialKind::Fingerprint)
        .map(|c| c.id)
        .unwrap();
    assert_eq!(
        matter(&mut s, AppCommand::DeleteCredential(id)),
        Ok(AppOk::Done)
    );
    assert!(s.module_cmds().contains(&ModuleCmd::Delete {
        modality: Modality::Fingerprint,
        slot
    }));
    assert!(s.has_event(&EventKind::CredentialRemoved {
        user,
        kind: CredentialKind::Fingerprint
    }));
    assert_eq!(
        matter(&mut s, AppCommand::DeleteCredential(id)),
        Err(AppError::NotFound)
    );
}

/// Issue 17 item 1 over Matter (B-4.9 spirit): ClearCredential runs the
/// keypad's and the app's rule, so the administrator's only credential
/// stays and the menu stays reachable.
#[test]
fn b4_9_matter_cannot_clear_the_last_administrator_credential() {
    let mut s = Sim::installed();
    let id = s
        .store
        .credentials
        .iter()
        .find(|c| c.user == n(1))
        .map(|c| c.id)
        .unwrap();
    assert_eq!(
        matter(&mut s, AppCommand::DeleteCredential(id)),
        Err(AppError::LastAdmin)
    );
    assert!(s.persisted().is_empty());
    assert_eq!(s.store.credentials.len(), 1);
    s.enter_menu();
}

#[test]
fn b7_2_a_matter_administrator_cannot_release_a_lockout_or_touch_app_keys() {
    let mut s = Sim::installed();
    for cmd in [
        AppCommand::ReleaseLockout,
        AppCommand::SetClock(latchd::core::WallTime(1_800_000_000)),
        AppCommand::RevokeAppKey(latchd::core::types::AppKeyId(1)),
        AppCommand::SetAway(true),
        AppCommand::Setting(SettingChange::LockoutProtection(false)),
    ] {
        assert_eq!(
            matter(&mut s, cmd.clone()),
            Err(AppError::Forbidden),
            "{cmd:?}"
        );
    }
    // And the owner's app does not get the Matter commands.
    let owner = s.owner();
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::DeleteCredential(latchd::core::types::CredentialId(1))
        ),
        Err(AppError::Forbidden)
    );
}

/// Issue 13 over Matter: a PIN sent with `UnlockDoor` is an attempt like
/// one typed on the keypad. Its record is committed, as a failure, before
/// anything of the answer shows (the reply included), for a wrong code and
/// the right one alike; the right one then clears it after the motor.
#[test]
fn issue13_a_matter_pin_attempt_is_committed_before_its_answer() {
    for code in ["864209", ADMIN_CODE] {
        let mut s = Sim::installed();
        remote_unlock_on(&mut s);
        let result = matter(&mut s, unlock_with(Some(code)));
        let first_persist = s
            .position(|a| matches!(a, Action::Persist(_)))
            .expect("a commit");
        let answer = s
            .position(|a| {
                matches!(
                    a,
                    Action::Reply { .. }
                        | Action::Prompt(_, _)
                        | Action::Motor(_)
                        | Action::Alarm(_)
                )
            })
            .expect("an answer");
        assert!(first_persist < answer, "{code}: {:?}", s.last);
        let Action::Persist(first) = &s.last[first_persist] else {
            unreachable!()
        };
        assert!(
            matches!(&first[0], Change::PutAttempt(r) if r.strikes == 1),
            "{code}: {first:?}"
        );
        if code == ADMIN_CODE {
            assert_eq!(result, Ok(AppOk::Done));
            let motor = s.position(|a| matches!(a, Action::Motor(_))).unwrap();
            let cleared = s
                .last
                .iter()
                .rposition(|a| matches!(a, Action::Persist(c) if c.iter().any(|c| matches!(c, Change::PutLockout(r) if r.strikes == 0))))
                .expect("the attempt cleared");
            assert!(motor < cleared, "{:?}", s.last);
            assert_eq!(s.engine.status().strikes, 0);
        } else {
            assert_eq!(result, Err(AppError::WrongCode));
            assert_eq!(s.engine.status().strikes, 1);
        }
    }
}

/// Issue 13: wrong PINs over Matter escalate the same budget as the
/// keypad's up to the disabled keypad, which then takes no PIN from a
/// controller either (not even the right one), counting nothing, until
/// the owner's app releases it.
#[test]
fn issue13_a_disabled_keypad_takes_no_matter_pin() {
    let mut s = Sim::installed();
    remote_unlock_on(&mut s);
    for _level in 1..=5 {
        for _ in 0..5 {
            assert_eq!(
                matter(&mut s, unlock_with(Some("864209"))),
                Err(AppError::WrongCode)
            );
        }
        if let Some(left) = s.engine.status().lockout_remaining {
            s.advance_ms(left.as_millis() as u64);
        }
    }
    let st = s.engine.status();
    assert!(st.keypad_disabled, "{st:?}");
    assert!(!st.lockout_active);
    assert_eq!(
        matter(&mut s, unlock_with(Some(ADMIN_CODE))),
        Err(AppError::LockedOut)
    );
    assert!(s.drive().is_none());
    assert!(
        !s.persisted()
            .iter()
            .any(|c| matches!(c, Change::PutAttempt(_) | Change::PutLockout(_))),
        "nothing counted: {:?}",
        s.last
    );
    // Typed on the keypad, the code is refused the same way.
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(!s.unlocked());
}

/// Issue 13 item 4 over Matter: the genuine PIN of a user outside their
/// validity window is answered like a wrong one and counted, so a guesser
/// cannot learn a code that works later.
#[test]
fn issue13_a_pin_outside_its_window_is_a_counted_wrong_code_over_matter() {
    let mut s = Sim::installed();
    remote_unlock_on(&mut s);
    let user = s.add_passcode_user("2", "975310");
    let from = s.now().wall.expect("the sim has wall time").0 + 7 * 86_400;
    let later = Validity {
        from: Some(WallTime(from)),
        until: Some(WallTime(from + 86_400)),
    };
    let owner = s.owner();
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::SetValidity(user, later)),
        Ok(AppOk::Done)
    );
    assert_eq!(
        matter(&mut s, unlock_with(Some("975310"))),
        Err(AppError::WrongCode)
    );
    assert!(s.drive().is_none());
    assert_eq!(s.engine.status().strikes, 1);
    assert!(s.has_event(&EventKind::OutsideValidity {
        method: Method::Passcode,
        user: Some(user)
    }));
}

/// Issue 18 item 2: the cluster's schedule commands are the engine's
/// schedules — a user's week-day window set over Matter refuses that
/// user's PIN outside it, holidays too — and Matter reaches only users'
/// schedules and the holidays, not the owner app's visitor codes.
#[test]
fn schedules_from_matter_are_the_engines_for_users_and_holidays_only() {
    use latchd::core::schedule::{Holder, Period, Schedule, ScheduleError, ScheduleKind, WeekDay};
    use latchd::core::types::OperatingMode;
    const USER_CODE: &str = "246813";
    const H: i64 = 3600;
    // WALL0 is a Tuesday, 06:00 UTC (the sim's zone).
    let tue0 = super::harness::WALL0 - 6 * H;
    let mut s = Sim::installed();
    let u = s.add_passcode_user("2", USER_CODE);
    let opens = |s: &mut Sim| s.code_opens(USER_CODE);
    assert!(opens(&mut s), "no schedule: unrestricted");
    let tuesday_9_to_10 = Schedule::WeekDay {
        holder: Holder::User(u),
        index: 1,
        window: WeekDay::new(1 << 2, (9, 0), (10, 0)).unwrap(),
    };
    assert_eq!(
        matter(&mut s, AppCommand::SetSchedule(tuesday_9_to_10)),
        Ok(AppOk::Done)
    );
    assert!(s.has_event(&EventKind::ScheduleSet {
        schedule: tuesday_9_to_10
    }));
    assert!(!opens(&mut s), "06:00 is outside the window");
    s.set_wall(tue0 + 9 * H + 30 * 60);
    assert!(opens(&mut s), "09:30 is inside");

    // A user that does not exist: the engine's refusal.
    let nobody = Schedule::YearDay {
        holder: Holder::User(n(77)),
        index: 1,
        period: Period::new(0, 10).unwrap(),
    };
    assert_eq!(
        matter(&mut s, AppCommand::SetSchedule(nobody)),
        Err(AppError::Schedule(ScheduleError::NoHolder))
    );

    // A holiday in Vacation from 09:00 for two hours: users are refused.
    let nine = tue0 + 9 * H;
    let vacation = Schedule::Holiday {
        index: 1,
        period: Period::new(nine, nine + 2 * H).unwrap(),
        mode: OperatingMode::Vacation,
    };
    assert_eq!(
        matter(&mut s, AppCommand::SetSchedule(vacation)),
        Ok(AppOk::Done)
    );
    assert!(s.engine.status().schedules.holiday_now.is_some());
    assert!(!opens(&mut s), "the holiday's Vacation refuses users");
    assert_eq!(
        matter(
            &mut s,
            AppCommand::ClearSchedules {
                kind: ScheduleKind::Holiday,
                holder: None,
                index: None
            }
        ),
        Ok(AppOk::Done)
    );
    assert!(opens(&mut s), "holiday cleared, window still open");

    // Clearing the user's week-day schedules leaves the user unrestricted.
    assert_eq!(
        matter(
            &mut s,
            AppCommand::ClearSchedules {
                kind: ScheduleKind::WeekDay,
                holder: Some(Holder::User(u)),
                index: Some(1)
            }
        ),
        Ok(AppOk::Done)
    );
    assert_eq!(s.engine.status().schedules.week_day, 0);

    // A visitor code's schedule is the owner's app's, not Matter's.
    let owner = s.owner();
    let Ok(AppOk::TempPasscodeAdded(code)) = s.app(
        Channel::Ble,
        owner,
        AppCommand::AddTempPasscode {
            digits: "470258".into(),
            validity: super::harness::a_day(),
            one_time: false,
        },
    ) else {
        panic!("no visitor code")
    };
    let visitor = Schedule::WeekDay {
        holder: Holder::TempPasscode(code),
        index: 1,
        window: WeekDay::new(1 << 2, (9, 0), (10, 0)).unwrap(),
    };
    assert_eq!(
        matter(&mut s, AppCommand::SetSchedule(visitor)),
        Err(AppError::Forbidden)
    );
    assert_eq!(
        matter(
            &mut s,
            AppCommand::ClearSchedules {
                kind: ScheduleKind::WeekDay,
                holder: Some(Holder::TempPasscode(code)),
                index: None
            }
        ),
        Err(AppError::Forbidden)
    );
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::SetSchedule(visitor)),
        Ok(AppOk::Done),
        "the owner's app may"
    );
}
