//! The cluster's week-day, year-day and holiday schedules (features
//! WDSCH, YDSCH, HDSCH) in the engine's words: the engine keeps the
//! schedules and their rule (`core::schedule`, issue 17), which follows
//! Matter's model one to one, so this file only converts.
//!
//! ```text
//!  SetWeekDaySchedule(index, user, days, start h:m, end h:m) ─► Schedule::WeekDay{User(user)}
//!  SetYearDaySchedule(index, user, localStart, localEnd)     ─► Schedule::YearDay{User(user)}
//!  SetHolidaySchedule(index, localStart, localEnd, mode)     ─► Schedule::Holiday
//!         ─► AppCommand::SetSchedule ─► engine (its checks, persisted, logged)
//!  Clear…Schedule(index | 0xFE = all)  ─► AppCommand::ClearSchedules
//!  Get…Schedule                        ◄── the persisted schedules
//! ```
//!
//! Matter's times are seconds since 2000-01-01 00:00 *local*; the
//! engine's are seconds since 1970-01-01 00:00 local, so the conversion is
//! one constant. A period the owner's app set outside Matter's range is
//! shown clamped to it.
//!
//! Statuses follow the cluster (and the reference implementation of the
//! Matter SDK): an index out of range or a field that breaks a rule is
//! INVALID_COMMAND; a schedule for a user that does not exist is FAILURE;
//! a Get answers with a status of its own (InvalidField, NotFound).
//!
//! Matter addresses users only: the schedules of visitor codes and guest
//! keys stay the owner's app's (`latchctl ble`), as do those keys.
use rs_matter::dm::clusters::decl::door_lock::{DlStatus, OperatingModeEnum};
use rs_matter::error::ErrorCode;

use super::mapping;
use crate::core::schedule::{
    self, Holder, Period, Schedule, ScheduleError, ScheduleKey, ScheduleKind, WeekDay,
};
use crate::core::types::{Persisted, UserNumber};
use crate::core::{AppCommand, AppError};

/// 2000-01-01 00:00 in seconds since 1970-01-01 00:00.
pub const MATTER_EPOCH: i64 = 946_684_800;

/// Matter's "every schedule of this kind" index for the Clear commands.
const ALL: u8 = 0xFE;

/// Local seconds since 1970 from Matter's local `epoch_s`.
pub fn from_matter(t: u32) -> i64 {
    i64::from(t) + MATTER_EPOCH
}

/// Matter's local `epoch_s` for local seconds since 1970, clamped to its
/// range (the owner's app may set periods before 2000 or after 2136).
pub fn to_matter(t: i64) -> u32 {
    u32::try_from((t - MATTER_EPOCH).max(0)).unwrap_or(u32::MAX)
}

/// A user index the cluster may name (1..=999); anything else is an
/// index out of range.
fn user(index: u16) -> Result<UserNumber, ErrorCode> {
    mapping::user_number(index).ok_or(ErrorCode::InvalidCommand)
}

/// How many schedules of a kind there may be (per user, or holidays).
fn limit(kind: ScheduleKind) -> u8 {
    match kind {
        ScheduleKind::WeekDay => schedule::WEEK_DAY_PER_HOLDER,
        ScheduleKind::YearDay => schedule::YEAR_DAY_PER_HOLDER,
        ScheduleKind::Holiday => schedule::HOLIDAYS,
    }
}

fn index(i: u8, limit: u8) -> Result<u8, ErrorCode> {
    if (1..=limit).contains(&i) {
        Ok(i)
    } else {
        Err(ErrorCode::InvalidCommand)
    }
}

/// The index a Clear command names: one schedule, or all (0xFE).
fn clear_index(i: u8, limit: u8) -> Result<Option<u8>, ErrorCode> {
    if i == ALL {
        Ok(None)
    } else {
        index(i, limit).map(Some)
    }
}

fn rule(e: ScheduleError) -> ErrorCode {
    match e {
        ScheduleError::NoHolder => ErrorCode::Failure,
        ScheduleError::BadIndex
        | ScheduleError::BadWindow
        | ScheduleError::BadDays
        | ScheduleError::HolidayMode => ErrorCode::InvalidCommand,
    }
}

/// `SetWeekDaySchedule` as the engine command.
pub fn set_week_day(
    i: u8,
    user_index: u16,
    days: u8,
    start: (u8, u8),
    end: (u8, u8),
) -> Result<AppCommand, ErrorCode> {
    let holder = Holder::User(user(user_index)?);
    let index = index(i, limit(ScheduleKind::WeekDay))?;
    let window = WeekDay::new(days, start, end).map_err(rule)?;
    Ok(AppCommand::SetSchedule(Schedule::WeekDay {
        holder,
        index,
        window,
    }))
}

/// `SetYearDaySchedule` as the engine command.
pub fn set_year_day(i: u8, user_index: u16, start: u32, end: u32) -> Result<AppCommand, ErrorCode> {
    let holder = Holder::User(user(user_index)?);
    let index = index(i, limit(ScheduleKind::YearDay))?;
    let period = Period::new(from_matter(start), from_matter(end)).map_err(rule)?;
    Ok(AppCommand::SetSchedule(Schedule::YearDay {
        holder,
        index,
        period,
    }))
}

/// `SetHolidaySchedule` as the engine command (Passage is refused by the
/// engine's rule: a timetable that holds the door open).
pub fn set_holiday(
    i: u8,
    start: u32,
    end: u32,
    mode: OperatingModeEnum,
) -> Result<AppCommand, ErrorCode> {
    let index = index(i, limit(ScheduleKind::Holiday))?;
    let period = Period::new(from_matter(start), from_matter(end)).map_err(rule)?;
    let s = Schedule::Holiday {
        index,
        period,
        mode: mapping::engine_mode(mode),
    };
    s.check().map_err(rule)?;
    Ok(AppCommand::SetSchedule(s))
}

/// `Clear{WeekDay,YearDay}Schedule` as the engine command.
pub fn clear_for_user(
    kind: ScheduleKind,
    i: u8,
    user_index: u16,
) -> Result<(UserNumber, AppCommand), ErrorCode> {
    if kind == ScheduleKind::Holiday {
        return Err(ErrorCode::InvalidCommand);
    }
    let u = user(user_index)?;
    let index = clear_index(i, limit(kind))?;
    Ok((
        u,
        AppCommand::ClearSchedules {
            kind,
            holder: Some(Holder::User(u)),
            index,
        },
    ))
}

/// `ClearHolidaySchedule` as the engine command.
pub fn clear_holiday(i: u8) -> Result<AppCommand, ErrorCode> {
    Ok(AppCommand::ClearSchedules {
        kind: ScheduleKind::Holiday,
        holder: None,
        index: clear_index(i, limit(ScheduleKind::Holiday))?,
    })
}

/// The IM status for an engine refusal of a schedule command.
pub fn command_error(e: &AppError) -> ErrorCode {
    match e {
        AppError::Schedule(e) => rule(*e),
        other => mapping::command_error(other),
    }
}

/// What a Get command finds: the schedule, or the response's status.
pub fn get(dir: &Persisted, kind: ScheduleKind, i: u8, user_index: Option<u16>) -> Found {
    let holder = match user_index.map(mapping::user_number) {
        None => None,
        Some(None) => return Found::Status(DlStatus::InvalidField),
        Some(Some(u)) => {
            if !dir.users.iter().any(|x| x.number == u) {
                return Found::Status(DlStatus::NotFound);
            }
            Some(Holder::User(u))
        }
    };
    if !(1..=limit(kind)).contains(&i) {
        return Found::Status(DlStatus::InvalidField);
    }
    let key = match (kind, holder) {
        (ScheduleKind::WeekDay, Some(holder)) => ScheduleKey::WeekDay { holder, index: i },
        (ScheduleKind::YearDay, Some(holder)) => ScheduleKey::YearDay { holder, index: i },
        (ScheduleKind::Holiday, None) => ScheduleKey::Holiday { index: i },
        _ => return Found::Status(DlStatus::InvalidField),
    };
    match dir.schedules.iter().find(|s| s.key() == key) {
        Some(s) => Found::Schedule(*s),
        None => Found::Status(DlStatus::NotFound),
    }
}

/// The answer to a Get command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Schedule(Schedule),
    Status(DlStatus),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{OperatingMode, Role, User};

    fn dir_with_user(n: u16) -> Persisted {
        let mut d = Persisted::default();
        d.users.push(User {
            number: UserNumber::new(n).unwrap(),
            role: Role::User,
            validity: Default::default(),
        });
        d
    }

    #[test]
    fn matter_epoch_is_2000_local() {
        // 2026-12-05 00:00 local, counted both ways.
        assert_eq!(from_matter(818_208_000), 1_764_892_800);
        assert_eq!(to_matter(1_764_892_800), 818_208_000);
        assert_eq!(to_matter(0), 0, "before 2000 is clamped");
        assert_eq!(to_matter(i64::MAX), u32::MAX, "after 2136 is clamped");
    }

    #[test]
    fn set_commands_become_the_engines() {
        let u2 = UserNumber::new(2).unwrap();
        let AppCommand::SetSchedule(s) = set_week_day(1, 2, 0b0011_1110, (9, 0), (17, 30)).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            s,
            Schedule::WeekDay {
                holder: Holder::User(u2),
                index: 1,
                window: WeekDay::new(0b0011_1110, (9, 0), (17, 30)).unwrap()
            }
        );
        let AppCommand::SetSchedule(s) = set_year_day(4, 2, 10, 20).unwrap() else {
            panic!()
        };
        assert_eq!(
            s,
            Schedule::YearDay {
                holder: Holder::User(u2),
                index: 4,
                period: Period::new(MATTER_EPOCH + 10, MATTER_EPOCH + 20).unwrap()
            }
        );
        let AppCommand::SetSchedule(s) =
            set_holiday(8, 10, 20, OperatingModeEnum::Vacation).unwrap()
        else {
            panic!()
        };
        assert!(matches!(
            s,
            Schedule::Holiday {
                index: 8,
                mode: OperatingMode::Vacation,
                ..
            }
        ));
    }

    /// The cluster's statuses: indexes and fields out of range are
    /// INVALID_COMMAND, before anything reaches the engine.
    #[test]
    fn out_of_range_is_an_invalid_command() {
        let invalid = Err(ErrorCode::InvalidCommand);
        assert_eq!(set_week_day(0, 2, 1, (9, 0), (10, 0)).map(|_| ()), invalid);
        assert_eq!(set_week_day(8, 2, 1, (9, 0), (10, 0)).map(|_| ()), invalid);
        assert_eq!(set_week_day(1, 0, 1, (9, 0), (10, 0)).map(|_| ()), invalid);
        assert_eq!(
            set_week_day(1, 1000, 1, (9, 0), (10, 0)).map(|_| ()),
            invalid
        );
        assert_eq!(set_week_day(1, 2, 0, (9, 0), (10, 0)).map(|_| ()), invalid);
        assert_eq!(
            set_week_day(1, 2, 0x80, (9, 0), (10, 0)).map(|_| ()),
            invalid
        );
        assert_eq!(set_week_day(1, 2, 1, (22, 0), (6, 0)).map(|_| ()), invalid);
        assert_eq!(set_week_day(1, 2, 1, (9, 60), (10, 0)).map(|_| ()), invalid);
        assert_eq!(set_year_day(5, 2, 10, 20).map(|_| ()), invalid);
        assert_eq!(set_year_day(1, 2, 20, 20).map(|_| ()), invalid);
        assert_eq!(
            set_holiday(9, 10, 20, OperatingModeEnum::Normal).map(|_| ()),
            invalid
        );
        assert_eq!(
            set_holiday(1, 10, 20, OperatingModeEnum::Passage).map(|_| ()),
            invalid,
            "a holiday never holds the door open"
        );
        assert_eq!(clear_holiday(0).map(|_| ()), invalid);
        assert_eq!(
            clear_for_user(ScheduleKind::WeekDay, 8, 2).map(|_| ()),
            invalid
        );
        assert_eq!(
            command_error(&AppError::Schedule(ScheduleError::NoHolder)),
            ErrorCode::Failure,
            "a user that does not exist"
        );
        assert_eq!(
            command_error(&AppError::Busy),
            mapping::command_error(&AppError::Busy)
        );
    }

    #[test]
    fn clear_all_is_0xfe() {
        assert_eq!(
            clear_holiday(0xFE).unwrap(),
            AppCommand::ClearSchedules {
                kind: ScheduleKind::Holiday,
                holder: None,
                index: None
            }
        );
        let (u, cmd) = clear_for_user(ScheduleKind::YearDay, 3, 7).unwrap();
        assert_eq!(u.get(), 7);
        assert_eq!(
            cmd,
            AppCommand::ClearSchedules {
                kind: ScheduleKind::YearDay,
                holder: Some(Holder::User(u)),
                index: Some(3)
            }
        );
    }

    #[test]
    fn get_finds_the_schedule_or_says_why_not() {
        let mut dir = dir_with_user(2);
        let AppCommand::SetSchedule(s) = set_week_day(3, 2, 1, (9, 0), (10, 0)).unwrap() else {
            panic!()
        };
        dir.schedules.push(s);
        assert_eq!(
            get(&dir, ScheduleKind::WeekDay, 3, Some(2)),
            Found::Schedule(s)
        );
        assert_eq!(
            get(&dir, ScheduleKind::WeekDay, 2, Some(2)),
            Found::Status(DlStatus::NotFound)
        );
        assert_eq!(
            get(&dir, ScheduleKind::WeekDay, 3, Some(5)),
            Found::Status(DlStatus::NotFound),
            "no such user"
        );
        assert_eq!(
            get(&dir, ScheduleKind::WeekDay, 8, Some(2)),
            Found::Status(DlStatus::InvalidField)
        );
        assert_eq!(
            get(&dir, ScheduleKind::YearDay, 1, Some(0)),
            Found::Status(DlStatus::InvalidField)
        );
        assert_eq!(
            get(&dir, ScheduleKind::Holiday, 1, None),
            Found::Status(DlStatus::NotFound)
        );
    }
}
