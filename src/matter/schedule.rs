//! Week-day, year-day and holiday schedules (the cluster's WDSCH, YDSCH
//! and HDSCH features), mapped against a small interface the engine will
//! implement when it gets schedules (issue 17).
//!
//! Issue 17 item 2 gave the engine its schedules (`core::schedule`, the
//! same model: `AppCommand::SetSchedule`/`ClearSchedules`/`ListSchedules`,
//! index, days mask, hours and minutes, local epoch periods, a holiday's
//! operating mode). Wiring the cluster's Set/Get/Clear*Schedule commands
//! to those commands — and turning the feature bits on — is the separate
//! Matter issue; the only conversion left is Matter's epoch (2000-01-01)
//! to the engine's local seconds since 1970 (+946 684 800).
//!
//! Until then [`NoSchedules`] answers every call with
//! [`ScheduleError::Unsupported`], the three feature bits stay off in the
//! cluster's FeatureMap, and the schedule commands are left out of its
//! command list, so a controller never offers them (`docs/matter.md`).
use crate::core::types::UserNumber;

/// A weekly window: on `days` (bit 0 Sunday … bit 6 Saturday), from
/// `start` to `end`, in minutes after local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekDay {
    pub days: u8,
    pub start_minute: u16,
    pub end_minute: u16,
}

impl WeekDay {
    /// From the cluster's fields, checked as the spec asks.
    pub fn new(days: u8, start: (u8, u8), end: (u8, u8)) -> Result<WeekDay, ScheduleError> {
        let minute = |(h, m): (u8, u8)| {
            (h < 24 && m < 60)
                .then(|| u16::from(h) * 60 + u16::from(m))
                .ok_or(ScheduleError::Invalid)
        };
        let (start_minute, end_minute) = (minute(start)?, minute(end)?);
        if days == 0 || days & 0x80 != 0 || end_minute <= start_minute {
            return Err(ScheduleError::Invalid);
        }
        Ok(WeekDay {
            days,
            start_minute,
            end_minute,
        })
    }
}

/// An absolute window in Matter epoch seconds (local time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: u32,
    pub end: u32,
}

impl Period {
    pub fn new(start: u32, end: u32) -> Result<Period, ScheduleError> {
        if end <= start {
            return Err(ScheduleError::Invalid);
        }
        Ok(Period { start, end })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("this lock has no schedules yet")]
    Unsupported,
    #[error("the schedule's fields are out of range")]
    Invalid,
    #[error("no such schedule")]
    NotFound,
    #[error("no such user")]
    NoSuchUser,
}

/// What the cluster's schedule commands need of the lock.
pub trait ScheduleRules {
    fn set_week_day(&self, user: UserNumber, index: u8, w: WeekDay) -> Result<(), ScheduleError>;
    fn week_day(&self, user: UserNumber, index: u8) -> Result<WeekDay, ScheduleError>;
    fn clear_week_day(&self, user: UserNumber, index: Option<u8>) -> Result<(), ScheduleError>;
    fn set_year_day(&self, user: UserNumber, index: u8, p: Period) -> Result<(), ScheduleError>;
    fn year_day(&self, user: UserNumber, index: u8) -> Result<Period, ScheduleError>;
    fn clear_year_day(&self, user: UserNumber, index: Option<u8>) -> Result<(), ScheduleError>;
    fn set_holiday(&self, index: u8, p: Period) -> Result<(), ScheduleError>;
    fn holiday(&self, index: u8) -> Result<Period, ScheduleError>;
    fn clear_holiday(&self, index: Option<u8>) -> Result<(), ScheduleError>;
}

/// Today's engine: no schedules.
#[derive(Debug)]
pub struct NoSchedules;

impl ScheduleRules for NoSchedules {
    fn set_week_day(&self, _: UserNumber, _: u8, _: WeekDay) -> Result<(), ScheduleError> {
        Err(ScheduleError::Unsupported)
    }
    fn week_day(&self, _: UserNumber, _: u8) -> Result<WeekDay, ScheduleError> {
        Err(ScheduleError::Unsupported)
    }
    fn clear_week_day(&self, _: UserNumber, _: Option<u8>) -> Result<(), ScheduleError> {
        Err(ScheduleError::Unsupported)
    }
    fn set_year_day(&self, _: UserNumber, _: u8, _: Period) -> Result<(), ScheduleError> {
        Err(ScheduleError::Unsupported)
    }
    fn year_day(&self, _: UserNumber, _: u8) -> Result<Period, ScheduleError> {
        Err(ScheduleError::Unsupported)
    }
    fn clear_year_day(&self, _: UserNumber, _: Option<u8>) -> Result<(), ScheduleError> {
        Err(ScheduleError::Unsupported)
    }
    fn set_holiday(&self, _: u8, _: Period) -> Result<(), ScheduleError> {
        Err(ScheduleError::Unsupported)
    }
    fn holiday(&self, _: u8) -> Result<Period, ScheduleError> {
        Err(ScheduleError::Unsupported)
    }
    fn clear_holiday(&self, _: Option<u8>) -> Result<(), ScheduleError> {
        Err(ScheduleError::Unsupported)
    }
}

/// The IM status for a schedule refusal.
pub fn status(e: ScheduleError) -> rs_matter::error::ErrorCode {
    use rs_matter::error::ErrorCode;
    match e {
        ScheduleError::Unsupported => ErrorCode::CommandNotFound,
        ScheduleError::Invalid => ErrorCode::ConstraintError,
        ScheduleError::NotFound | ScheduleError::NoSuchUser => ErrorCode::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn week_day_fields_are_checked() {
        let w = WeekDay::new(0b0011_1110, (8, 30), (17, 0)).unwrap();
        assert_eq!((w.start_minute, w.end_minute), (510, 1020));
        assert_eq!(WeekDay::new(0, (8, 0), (9, 0)), Err(ScheduleError::Invalid));
        assert_eq!(
            WeekDay::new(1, (24, 0), (9, 0)),
            Err(ScheduleError::Invalid)
        );
        assert_eq!(WeekDay::new(1, (9, 0), (9, 0)), Err(ScheduleError::Invalid));
        assert_eq!(Period::new(10, 5), Err(ScheduleError::Invalid));
    }

    #[test]
    fn todays_engine_has_none() {
        let u = UserNumber::new(1).unwrap();
        let w = WeekDay::new(1, (8, 0), (9, 0)).unwrap();
        assert_eq!(
            NoSchedules.set_week_day(u, 1, w),
            Err(ScheduleError::Unsupported)
        );
        assert_eq!(
            status(ScheduleError::Unsupported),
            rs_matter::error::ErrorCode::CommandNotFound
        );
    }
}
