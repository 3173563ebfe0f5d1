//! Schedules (issue 17 item 2, `core::schedule`): week-day and year-day
//! schedules of users, visitor codes and guest keys, and lock-wide
//! holidays with an operating mode — Matter's Door Lock model — in the
//! lock's local time. Outside its schedules a credential is refused like a
//! wrong one (the validity-oracle rule).
use latchd::core::action::Prompt;
use latchd::core::event::EventKind;
use latchd::core::schedule::{Holder, Period, Schedule, ScheduleError, ScheduleKind, WeekDay};
use latchd::core::time::{Validity, WallTime};
use latchd::core::types::{AppKeyId, Method, OperatingMode, UserNumber};
use latchd::core::{AppCommand, AppError, AppOk, Channel, Input, Principal};

use super::harness::{a_day, n, Sim, ADMIN_CODE, WALL0};

const USER_CODE: &str = "246813";
const SUN: u8 = 1;
const TUE: u8 = 1 << 2;
const WED: u8 = 1 << 3;
const SAT: u8 = 1 << 6;
/// WALL0 is Tuesday 2026-11-24 06:00 UTC; this is that day's 00:00. The
/// tests only move the clock forward: the trusted-time floor refuses a
/// clock set back (`core::trusted_time`).
const TUE0: i64 = WALL0 - 6 * 3600;
const H: i64 = 3600;

fn household() -> (Sim, Principal, UserNumber) {
    let mut s = Sim::installed();
    let u = s.add_passcode_user("2", USER_CODE);
    let owner = s.owner();
    (s, owner, u)
}

fn week_day(holder: Holder, index: u8, days: u8, start: (u8, u8), end: (u8, u8)) -> Schedule {
    Schedule::WeekDay {
        holder,
        index,
        window: WeekDay {
            days,
            start_minute: u16::from(start.0) * 60 + u16::from(start.1),
            end_minute: u16::from(end.0) * 60 + u16::from(end.1),
        },
    }
}

fn set(s: &mut Sim, owner: Principal, sch: Schedule) -> Result<AppOk, AppError> {
    s.app(Channel::Ble, owner, AppCommand::SetSchedule(sch))
}

fn opens(s: &mut Sim, code: &str) -> bool {
    s.code_opens(code)
}

#[test]
fn schedules_week_day_outside_is_refused_like_a_wrong_code() {
    let (mut s, owner, u) = household();
    // No schedule: unrestricted (Matter semantics).
    assert!(opens(&mut s, USER_CODE));
    // Tuesday 08:00–09:00 and 10:00–11:00: either one admits.
    set(
        &mut s,
        owner,
        week_day(Holder::User(u), 1, TUE, (8, 0), (9, 0)),
    )
    .unwrap();
    set(
        &mut s,
        owner,
        week_day(Holder::User(u), 2, TUE, (10, 0), (11, 0)),
    )
    .unwrap();
    assert_eq!(s.engine.status().schedules.week_day, 2);
    // Tuesday 06:00: outside. Answered and counted like a wrong code;
    // only the owner's log says why.
    let strikes = s.engine.status().strikes;
    assert!(!opens(&mut s, USER_CODE));
    s.expect_prompt(Prompt::VerifyFailed);
    s.expect_no_prompt(Prompt::UserNotValidNow);
    assert_eq!(s.engine.status().strikes, strikes + 1);
    assert!(s.has_event(&EventKind::OutsideValidity {
        method: Method::Passcode,
        user: Some(u)
    }));
    s.set_wall(TUE0 + 8 * H + 30 * 60);
    assert!(opens(&mut s, USER_CODE));
    s.set_wall(TUE0 + 9 * H + 30 * 60);
    assert!(!opens(&mut s, USER_CODE), "09:30 is between the windows");
    s.set_wall(TUE0 + 10 * H);
    assert!(opens(&mut s, USER_CODE), "10:00 starts the second window");
    s.set_wall(TUE0 + 11 * H);
    assert!(!opens(&mut s, USER_CODE), "11:00 ends it");
    // Wednesday at 08:30: not its day.
    s.set_wall(TUE0 + 24 * H + 8 * H + 30 * 60);
    assert!(!opens(&mut s, USER_CODE));
    // The administrator has no schedule and opens at any time.
    assert!(opens(&mut s, ADMIN_CODE));
    // The schedules survive a restart (a week later, between the windows).
    s.set_wall(TUE0 + 7 * 24 * H + 9 * H + 30 * 60);
    s.restart();
    assert!(!opens(&mut s, USER_CODE));
    assert_eq!(s.store.schedules.len(), 2);
}

#[test]
fn schedules_a_window_across_midnight_is_refused_and_two_schedules_cover_the_night() {
    let (mut s, owner, u) = household();
    assert_eq!(
        set(
            &mut s,
            owner,
            week_day(Holder::User(u), 1, TUE, (22, 0), (6, 0))
        ),
        Err(AppError::Schedule(ScheduleError::BadWindow))
    );
    assert!(s.store.schedules.is_empty());
    // The night shift as Matter has it: Tuesday 22:00–23:59 (to the end
    // of the day) and Wednesday 00:00–06:00.
    set(
        &mut s,
        owner,
        week_day(Holder::User(u), 1, TUE, (22, 0), (23, 59)),
    )
    .unwrap();
    set(
        &mut s,
        owner,
        week_day(Holder::User(u), 2, WED, (0, 0), (6, 0)),
    )
    .unwrap();
    s.set_wall(TUE0 + 21 * H + 59 * 60);
    assert!(!opens(&mut s, USER_CODE));
    s.set_wall(TUE0 + 24 * H - 60);
    assert!(opens(&mut s, USER_CODE), "23:59:30 is inside");
    s.set_wall(TUE0 + 24 * H + 30 * 60);
    assert!(opens(&mut s, USER_CODE), "Wednesday 00:30 is inside");
    s.set_wall(TUE0 + 24 * H + 6 * H);
    assert!(!opens(&mut s, USER_CODE), "Wednesday 06:00 is outside");
}

#[test]
fn schedules_follow_local_time_across_the_dst_change_in_berlin() {
    // scripts/test.sh installs tzdata: a missing zone fails here.
    let berlin = latchd::zone::load("Europe/Berlin").expect("tzdata's Europe/Berlin");
    let (mut s, owner, u) = household();
    s.restart_in_zone(berlin);
    // Saturday and Sunday 09:00–17:00, Berlin time. On Sunday 2027-03-28
    // the clocks go from 02:00 CET (UTC+1) to 03:00 CEST (UTC+2) (the
    // 2026 change is before the harness's clock, which only moves forward;
    // `zone::tests::berlin_follows_dst` reads 2026-03-29).
    set(
        &mut s,
        owner,
        week_day(Holder::User(u), 1, SAT | SUN, (9, 0), (17, 0)),
    )
    .unwrap();
    let sat0_utc = 1_806_105_600; // 2027-03-27 00:00 UTC
    let sun0_utc = 1_806_192_000; // 2027-03-28 00:00 UTC
                                  // Saturday 07:30 UTC is 08:30 CET: outside.
    s.set_wall(sat0_utc + 7 * H + 30 * 60);
    assert!(!opens(&mut s, USER_CODE));
    // Saturday 08:30 UTC is 09:30 CET: inside.
    s.set_wall(sat0_utc + 8 * H + 30 * 60);
    assert!(opens(&mut s, USER_CODE));
    // Sunday 07:30 UTC is 09:30 CEST: inside (in CET it would be 08:30).
    s.set_wall(sun0_utc + 7 * H + 30 * 60);
    assert!(opens(&mut s, USER_CODE));
    // Sunday 15:30 UTC is 17:30 CEST: outside (in CET it would be 16:30).
    s.set_wall(sun0_utc + 15 * H + 30 * 60);
    assert!(!opens(&mut s, USER_CODE));
}

#[test]
fn schedules_year_day_admits_its_period_only() {
    let (mut s, owner, u) = household();
    let period = Period::new(WALL0 + H, WALL0 + 2 * H).unwrap();
    set(
        &mut s,
        owner,
        Schedule::YearDay {
            holder: Holder::User(u),
            index: 1,
            period,
        },
    )
    .unwrap();
    assert!(!opens(&mut s, USER_CODE));
    s.set_wall(WALL0 + H);
    assert!(opens(&mut s, USER_CODE));
    s.set_wall(WALL0 + 2 * H);
    assert!(!opens(&mut s, USER_CODE));
    // A week-day schedule beside it widens, never narrows: any one admits.
    set(
        &mut s,
        owner,
        week_day(Holder::User(u), 1, WED, (7, 0), (9, 0)),
    )
    .unwrap();
    assert!(!opens(&mut s, USER_CODE));
    s.set_wall(TUE0 + 24 * H + 8 * H);
    assert!(opens(&mut s, USER_CODE));
    // The validity window still applies on top of the schedules.
    s.app(
        Channel::Ble,
        owner,
        AppCommand::SetValidity(
            u,
            Validity {
                from: None,
                until: Some(WallTime(TUE0 + 24 * H)),
            },
        ),
    )
    .unwrap();
    assert!(!opens(&mut s, USER_CODE));
}

#[test]
fn schedules_an_unknown_wall_clock_refuses_scheduled_credentials_only() {
    let (mut s, owner, u) = household();
    set(
        &mut s,
        owner,
        week_day(Holder::User(u), 1, 0x7f, (0, 0), (23, 59)),
    )
    .unwrap();
    assert!(opens(&mut s, USER_CODE), "every day, all day");
    s.wall = None;
    assert!(!opens(&mut s, USER_CODE));
    s.expect_prompt(Prompt::VerifyFailed);
    assert!(opens(&mut s, ADMIN_CODE), "no schedule, no window: opens");
}

#[test]
fn schedules_holiday_vacation_refuses_ordinary_users_for_its_period() {
    let (mut s, owner, _) = household();
    let holiday = |index, mode| Schedule::Holiday {
        index,
        period: Period::new(WALL0 + H, WALL0 + 2 * H).unwrap(),
        mode,
    };
    assert_eq!(
        set(&mut s, owner, holiday(1, OperatingMode::Passage)),
        Err(AppError::Schedule(ScheduleError::HolidayMode))
    );
    set(&mut s, owner, holiday(1, OperatingMode::Vacation)).unwrap();
    assert!(s.has_event(&EventKind::ScheduleSet {
        schedule: holiday(1, OperatingMode::Vacation)
    }));
    assert!(opens(&mut s, USER_CODE), "before the holiday");
    // The status (front panel, `latchctl status`) shows it, and when it runs.
    let shown = s.engine.status().schedules;
    assert_eq!((shown.holidays, shown.week_day, shown.year_day), (1, 0, 0));
    assert_eq!(shown.holiday_now, None);
    assert_eq!(shown.time_zone, "UTC");
    s.set_wall(WALL0 + H);
    let strikes = s.engine.status().strikes;
    assert!(!opens(&mut s, USER_CODE), "Vacation: administrators only");
    assert_eq!(
        s.engine.status().schedules.holiday_now,
        Some(OperatingMode::Vacation)
    );
    s.expect_prompt(Prompt::VerifyFailed);
    assert_eq!(s.engine.status().strikes, strikes + 1);
    assert!(opens(&mut s, ADMIN_CODE));
    // The setting itself is untouched.
    assert_eq!(
        s.engine.status().settings.operating_mode(),
        OperatingMode::NoRemoteLockUnlock
    );
    s.set_wall(WALL0 + 2 * H);
    assert!(opens(&mut s, USER_CODE), "after the holiday");
    assert_eq!(s.engine.status().schedules.holiday_now, None);
}

#[test]
fn schedules_holiday_no_remote_and_privacy() {
    let (mut s, owner, _) = household();
    s.app(
        Channel::Ble,
        owner,
        AppCommand::Setting(latchd::core::types::SettingChange::OperatingMode(
            OperatingMode::Normal,
        )),
    )
    .unwrap();
    let period = Period::new(WALL0 + H, WALL0 + 2 * H).unwrap();
    set(
        &mut s,
        owner,
        Schedule::Holiday {
            index: 1,
            period,
            mode: OperatingMode::NoRemoteLockUnlock,
        },
    )
    .unwrap();
    let privacy = Period::new(WALL0 + 3 * H, WALL0 + 4 * H).unwrap();
    set(
        &mut s,
        owner,
        Schedule::Holiday {
            index: 2,
            period: privacy,
            mode: OperatingMode::Privacy,
        },
    )
    .unwrap();
    s.set_wall(WALL0 + H);
    assert_eq!(
        s.app(Channel::Remote, owner, AppCommand::Unlock),
        Err(AppError::RemoteUnlockDisabled)
    );
    s.set_wall(WALL0 + 3 * H);
    assert!(!opens(&mut s, ADMIN_CODE), "Privacy: nothing from outside");
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::Unlock),
        Err(AppError::PrivacyMode)
    );
    // Nor can an app end it by clearing the holiday.
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::ClearSchedules {
                kind: ScheduleKind::Holiday,
                holder: None,
                index: None
            }
        ),
        Err(AppError::PrivacyMode)
    );
    s.set_wall(WALL0 + 4 * H);
    assert!(opens(&mut s, ADMIN_CODE));
    assert_eq!(
        s.app(Channel::Remote, owner, AppCommand::Unlock),
        Ok(AppOk::Done)
    );
}

#[test]
fn schedules_limits_and_holders_are_checked() {
    let (mut s, owner, u) = household();
    for i in 1..=7 {
        set(
            &mut s,
            owner,
            week_day(Holder::User(u), i, TUE, (8, 0), (9, 0)),
        )
        .unwrap();
    }
    for (sch, why) in [
        (
            week_day(Holder::User(u), 8, TUE, (8, 0), (9, 0)),
            ScheduleError::BadIndex,
        ),
        (
            week_day(Holder::User(u), 0, TUE, (8, 0), (9, 0)),
            ScheduleError::BadIndex,
        ),
        (
            week_day(Holder::User(u), 1, 0, (8, 0), (9, 0)),
            ScheduleError::BadDays,
        ),
        (
            Schedule::YearDay {
                holder: Holder::User(u),
                index: 5,
                period: Period { start: 1, end: 2 },
            },
            ScheduleError::BadIndex,
        ),
        (
            Schedule::Holiday {
                index: 9,
                period: Period { start: 1, end: 2 },
                mode: OperatingMode::Vacation,
            },
            ScheduleError::BadIndex,
        ),
        (
            week_day(Holder::User(n(77)), 1, TUE, (8, 0), (9, 0)),
            ScheduleError::NoHolder,
        ),
        (
            week_day(Holder::GuestKey(AppKeyId(40)), 1, TUE, (8, 0), (9, 0)),
            ScheduleError::NoHolder,
        ),
    ] {
        assert_eq!(
            set(&mut s, owner, sch),
            Err(AppError::Schedule(why)),
            "{sch:?}"
        );
    }
    assert_eq!(s.store.schedules.len(), 7);
    let Ok(AppOk::Schedules(list)) = s.app(
        Channel::Ble,
        owner,
        AppCommand::ListSchedules {
            holder: Some(Holder::User(u)),
        },
    ) else {
        panic!()
    };
    assert_eq!(list.len(), 7);
}

#[test]
fn schedules_go_with_their_user_code_or_key() {
    let (mut s, owner, u) = household();
    set(
        &mut s,
        owner,
        week_day(Holder::User(u), 1, WED, (8, 0), (9, 0)),
    )
    .unwrap();
    assert!(!opens(&mut s, USER_CODE));
    s.app(Channel::Ble, owner, AppCommand::DeleteUser(u))
        .unwrap();
    assert!(s.store.schedules.is_empty());
    assert!(s.engine.schedules().is_empty());
    // The number comes back for someone else, unrestricted.
    let again = s.add_passcode_user("2", USER_CODE);
    assert_eq!(again, u);
    assert!(opens(&mut s, USER_CODE));
    // A factory reset removes the holidays too.
    set(
        &mut s,
        owner,
        Schedule::Holiday {
            index: 1,
            period: Period::new(WALL0, WALL0 + H).unwrap(),
            mode: OperatingMode::Vacation,
        },
    )
    .unwrap();
    assert_eq!(s.store.schedules.len(), 1);
    s.input(Input::PowerUp { set_held: true });
    s.press("✓");
    assert!(s.store.schedules.is_empty());
}

#[test]
fn schedules_for_visitor_codes_and_guest_keys() {
    let (mut s, owner, _) = household();
    let Ok(AppOk::TempPasscodeAdded(code)) = s.app(
        Channel::Ble,
        owner,
        AppCommand::AddTempPasscode {
            digits: "470258".into(),
            validity: a_day(),
            one_time: false,
        },
    ) else {
        panic!()
    };
    set(
        &mut s,
        owner,
        week_day(Holder::TempPasscode(code), 1, TUE, (9, 0), (12, 0)),
    )
    .unwrap();
    assert!(!opens(&mut s, "470258"), "06:00 is before its window");
    s.expect_prompt(Prompt::VerifyFailed);
    s.set_wall(TUE0 + 9 * H);
    assert!(opens(&mut s, "470258"));
    // A guest key with a schedule: refused outside it.
    let window = Validity {
        from: Some(WallTime(WALL0)),
        until: Some(WallTime(WALL0 + 48 * H)),
    };
    let key = s.add_guest_key(owner, window, "cleaner");
    let guest = Principal::Guest {
        key,
        validity: window,
    };
    set(
        &mut s,
        owner,
        week_day(Holder::GuestKey(key), 1, WED, (9, 0), (12, 0)),
    )
    .unwrap();
    assert_eq!(
        s.app(Channel::Ble, guest, AppCommand::Unlock),
        Err(AppError::OutsideValidity)
    );
    s.set_wall(TUE0 + 24 * H + 10 * H);
    assert_eq!(
        s.app(Channel::Ble, guest, AppCommand::Unlock),
        Ok(AppOk::Done)
    );
    // A guest may not set schedules, its own included.
    assert_eq!(
        s.app(
            Channel::Ble,
            guest,
            AppCommand::SetSchedule(week_day(Holder::GuestKey(key), 1, 0x7f, (0, 0), (23, 59)))
        ),
        Err(AppError::Forbidden)
    );
    // Revoking the code and the key takes their schedules.
    s.app(Channel::Ble, owner, AppCommand::RevokeTempPasscode(code))
        .unwrap();
    s.app(Channel::Ble, owner, AppCommand::RevokeAppKey(key))
        .unwrap();
    assert!(s.store.schedules.is_empty());
}
