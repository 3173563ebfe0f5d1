//! Schedules (issue 17 item 2): when a user, a visitor code or a guest key
//! may open, beyond its one validity window, and lock-wide holidays that
//! change the operating mode for a period — the Matter Door Lock model
//! (cluster 1.3, features WDSCH, YDSCH, HDSCH), so a Matter front end maps
//! onto it one to one.
//!
//! ```text
//!  credential presented ─► validity window admits now? ──no──► refused like a wrong one
//!                              │ yes
//!                              ▼
//!            holder has schedules? ──no──► allowed (Matter: no schedule = unrestricted)
//!                              │ yes
//!                              ▼
//!     wall clock known? ──no──► refused (fail closed)
//!                              │ yes: local time = UTC + the zone's offset then (DST)
//!                              ▼
//!     any week-day or year-day schedule covers the local time? ──no──► refused
//!                              │ yes
//!                              ▼
//!                     the operating mode decides (a holiday's, while one runs)
//! ```
//!
//! Local time comes from [`LocalZone`], a pure function from UTC to the
//! zone's offset that the daemon builds from the configured IANA zone
//! (`[lock] time_zone`, the TZif files in `/usr/share/zoneinfo`): the
//! engine reads no file and no clock.
//!
//! Decisions (README, "Decisions: schedules"):
//! * A week-day window is `[start, end)` in whole minutes of local time
//!   and must end after it starts on the same day: a window across
//!   midnight is refused (`BadWindow`, as Matter asks). A night shift is
//!   two schedules, `22:00–23:59` (an end of 23:59 is read as the end of
//!   the day, so it covers 23:59:59) and `00:00–06:00` on the next day.
//! * On a DST day the window follows the wall clock: 09:00–17:00 is 09:00
//!   to 17:00 of the local time of that instant, so it lasts 8 h of wall
//!   time whatever the offset; a window inside the skipped hour does not
//!   occur that day, one inside the repeated hour occurs twice.
//! * Year-day and holiday periods are local epoch seconds (Matter's
//!   `localStartTime`/`localEndTime`, counted from 1970 here), `[start,
//!   end)`.
//! * A holiday's mode replaces the configured mode while it runs, except
//!   that Privacy set on the lock is never lifted by a holiday (only
//!   someone inside ends it). Passage is refused as a holiday mode: it
//!   holds the bolt open, and a timetable that opens the door is not one
//!   this lock keeps. With the wall clock unknown no holiday runs.
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::time::WallTime;
use super::types::{AppKeyId, OperatingMode, TempPasscodeId, UserNumber};

/// Week-day schedules one holder may have (Matter's
/// `NumberOfWeekDaySchedulesSupportedPerUser`).
pub const WEEK_DAY_PER_HOLDER: u8 = 7;
/// Year-day schedules one holder may have.
pub const YEAR_DAY_PER_HOLDER: u8 = 4;
/// Holiday schedules the lock holds.
pub const HOLIDAYS: u8 = 8;

/// The lock's time zone as a pure value: UTC seconds → offset seconds.
/// Built by the daemon from TZif data; [`LocalZone::utc`] by default.
#[derive(Clone)]
pub struct LocalZone {
    name: Arc<str>,
    offset: Arc<dyn Fn(i64) -> i32 + Send + Sync>,
}

impl LocalZone {
    pub fn utc() -> LocalZone {
        LocalZone::new("UTC", |_| 0)
    }

    /// A zone named `name` whose offset from UTC at UTC second `t` is
    /// `offset(t)` seconds (east positive).
    pub fn new(name: &str, offset: impl Fn(i64) -> i32 + Send + Sync + 'static) -> LocalZone {
        LocalZone {
            name: name.into(),
            offset: Arc::new(offset),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Local time at `t`.
    pub fn local(&self, t: WallTime) -> LocalTime {
        LocalTime(t.0.saturating_add(i64::from((self.offset)(t.0))))
    }
}

impl core::fmt::Debug for LocalZone {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "LocalZone({})", self.name)
    }
}

impl Default for LocalZone {
    fn default() -> Self {
        LocalZone::utc()
    }
}

/// Local wall time as seconds since 1970-01-01 00:00 *local*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalTime(pub i64);

impl LocalTime {
    /// 0 = Sunday … 6 = Saturday (Matter's `DaysMaskMap` bit numbers).
    pub fn weekday(self) -> u8 {
        // 1970-01-01 was a Thursday (4).
        (self.0.div_euclid(86_400) + 4).rem_euclid(7) as u8
    }

    /// Minutes since local midnight, 0..1440.
    pub fn minute_of_day(self) -> u16 {
        (self.0.rem_euclid(86_400) / 60) as u16
    }
}

/// Whose schedule it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Holder {
    User(UserNumber),
    /// A visitor code (B-6.10).
    TempPasscode(TempPasscodeId),
    /// A guest's BLE key (B-6.6), by its slot.
    GuestKey(AppKeyId),
}

/// Why a schedule is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleError {
    #[error("the schedule index is out of range (week-day 1–7, year-day 1–4, holiday 1–8)")]
    BadIndex,
    #[error(
        "the schedule's window is empty, out of range or crosses midnight (use two schedules)"
    )]
    BadWindow,
    #[error("no day of the week is set (or an unknown bit is)")]
    BadDays,
    #[error("a holiday cannot put the lock in passage mode")]
    HolidayMode,
    #[error("no such user, visitor code or guest key")]
    NoHolder,
}

/// A weekly window: on `days` (bit 0 Sunday … bit 6 Saturday), from
/// `start` to `end` minutes after local midnight (`end` 1439, "23:59",
/// reaches the end of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeekDay {
    pub days: u8,
    pub start_minute: u16,
    pub end_minute: u16,
}

impl WeekDay {
    /// From Matter's fields (hours 0–23, minutes 0–59), checked.
    pub fn new(days: u8, start: (u8, u8), end: (u8, u8)) -> Result<WeekDay, ScheduleError> {
        let minute = |(h, m): (u8, u8)| {
            (h < 24 && m < 60)
                .then(|| u16::from(h) * 60 + u16::from(m))
                .ok_or(ScheduleError::BadWindow)
        };
        let w = WeekDay {
            days,
            start_minute: minute(start)?,
            end_minute: minute(end)?,
        };
        w.check()?;
        Ok(w)
    }

    fn check(&self) -> Result<(), ScheduleError> {
        if self.days == 0 || self.days & 0x80 != 0 {
            return Err(ScheduleError::BadDays);
        }
        if self.end_minute <= self.start_minute || self.end_minute >= 1440 {
            return Err(ScheduleError::BadWindow);
        }
        Ok(())
    }

    /// (hour, minute) of the start and the end, as Matter carries them.
    pub fn hm(&self) -> ((u8, u8), (u8, u8)) {
        let hm = |m: u16| ((m / 60) as u8, (m % 60) as u8);
        (hm(self.start_minute), hm(self.end_minute))
    }

    pub fn covers(&self, t: LocalTime) -> bool {
        let m = t.minute_of_day();
        // "23:59" is the end of the day.
        let end = if self.end_minute == 1439 {
            1440
        } else {
            self.end_minute
        };
        self.days & (1 << t.weekday()) != 0 && m >= self.start_minute && m < end
    }
}

/// A period of local time, `[start, end)` in local epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub start: i64,
    pub end: i64,
}

impl Period {
    pub fn new(start: i64, end: i64) -> Result<Period, ScheduleError> {
        if end <= start {
            return Err(ScheduleError::BadWindow);
        }
        Ok(Period { start, end })
    }

    pub fn covers(&self, t: LocalTime) -> bool {
        t.0 >= self.start && t.0 < self.end
    }
}

/// One schedule as it is stored and sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    WeekDay {
        holder: Holder,
        index: u8,
        window: WeekDay,
    },
    YearDay {
        holder: Holder,
        index: u8,
        period: Period,
    },
    Holiday {
        index: u8,
        period: Period,
        mode: OperatingMode,
    },
}

/// What names a stored schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKey {
    WeekDay { holder: Holder, index: u8 },
    YearDay { holder: Holder, index: u8 },
    Holiday { index: u8 },
}

/// The three kinds, for clearing several at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    WeekDay,
    YearDay,
    Holiday,
}

impl ScheduleKey {
    pub fn kind(&self) -> ScheduleKind {
        match self {
            ScheduleKey::WeekDay { .. } => ScheduleKind::WeekDay,
            ScheduleKey::YearDay { .. } => ScheduleKind::YearDay,
            ScheduleKey::Holiday { .. } => ScheduleKind::Holiday,
        }
    }

    pub fn holder(&self) -> Option<Holder> {
        match *self {
            ScheduleKey::WeekDay { holder, .. } | ScheduleKey::YearDay { holder, .. } => {
                Some(holder)
            }
            ScheduleKey::Holiday { .. } => None,
        }
    }
}

impl Schedule {
    pub fn key(&self) -> ScheduleKey {
        match *self {
            Schedule::WeekDay { holder, index, .. } => ScheduleKey::WeekDay { holder, index },
            Schedule::YearDay { holder, index, .. } => ScheduleKey::YearDay { holder, index },
            Schedule::Holiday { index, .. } => ScheduleKey::Holiday { index },
        }
    }

    /// The checks that need nothing but the schedule: index in range,
    /// window well formed, holiday mode allowed.
    pub fn check(&self) -> Result<(), ScheduleError> {
        let (index, limit) = match self {
            Schedule::WeekDay { index, window, .. } => {
                window.check()?;
                (*index, WEEK_DAY_PER_HOLDER)
            }
            Schedule::YearDay { index, period, .. } => {
                Period::new(period.start, period.end)?;
                (*index, YEAR_DAY_PER_HOLDER)
            }
            Schedule::Holiday {
                index,
                period,
                mode,
            } => {
                Period::new(period.start, period.end)?;
                if *mode == OperatingMode::Passage {
                    return Err(ScheduleError::HolidayMode);
                }
                (*index, HOLIDAYS)
            }
        };
        if !(1..=limit).contains(&index) {
            return Err(ScheduleError::BadIndex);
        }
        Ok(())
    }

    /// Whether this holder schedule admits local time `t` (holidays admit
    /// no holder: they are not a holder's schedule).
    pub fn admits(&self, t: LocalTime) -> bool {
        match self {
            Schedule::WeekDay { window, .. } => window.covers(t),
            Schedule::YearDay { period, .. } => period.covers(t),
            Schedule::Holiday { .. } => false,
        }
    }
}

/// Every schedule of the lock, keyed so a holder's are adjacent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedules {
    map: std::collections::BTreeMap<ScheduleKey, Schedule>,
}

impl Schedules {
    pub fn load(list: &[Schedule]) -> Schedules {
        Schedules {
            map: list.iter().map(|s| (s.key(), *s)).collect(),
        }
    }

    pub fn put(&mut self, s: Schedule) {
        self.map.insert(s.key(), s);
    }

    pub fn remove(&mut self, k: &ScheduleKey) {
        self.map.remove(k);
    }

    /// A holder went (a user deleted, a code revoked or spent, a key
    /// revoked): its schedules go with it.
    pub fn remove_holder(&mut self, h: Holder) {
        self.map.retain(|k, _| k.holder() != Some(h));
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn all(&self) -> impl Iterator<Item = &Schedule> {
        self.map.values()
    }

    pub fn get(&self, k: &ScheduleKey) -> Option<&Schedule> {
        self.map.get(k)
    }

    pub fn of(&self, h: Holder) -> impl Iterator<Item = &Schedule> {
        self.map
            .values()
            .filter(move |s| s.key().holder() == Some(h))
    }

    /// Whether `h` may open at wall time `wall` as far as its schedules
    /// say: yes with none; with some, only if the time is known and one of
    /// them covers its local time.
    pub fn admits(&self, h: Holder, wall: Option<WallTime>, zone: &LocalZone) -> bool {
        let mut mine = self.of(h).peekable();
        if mine.peek().is_none() {
            return true;
        }
        let Some(t) = wall else { return false };
        let local = zone.local(t);
        mine.any(|s| s.admits(local))
    }

    /// The operating mode of the holiday running at `wall`, if any (the
    /// lowest index wins where two overlap).
    pub fn holiday(&self, wall: Option<WallTime>, zone: &LocalZone) -> Option<OperatingMode> {
        let local = zone.local(wall?);
        self.map.values().find_map(|s| match s {
            Schedule::Holiday { period, mode, .. } if period.covers(local) => Some(*mode),
            _ => None,
        })
    }
}

/// What the status shows of the schedules (issue 17 item 2): how many of
/// each kind, the holiday running now and the zone local time is read in.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScheduleStatus {
    pub week_day: usize,
    pub year_day: usize,
    pub holidays: usize,
    /// The operating mode of the holiday running now, if any.
    pub holiday_now: Option<OperatingMode>,
    /// The lock's time zone (`[lock] time_zone`).
    pub time_zone: String,
}

impl ScheduleStatus {
    /// One line for the front panel and `latchctl status`.
    pub fn text(&self) -> String {
        format!(
            "{} week-day, {} year-day, {} holiday{}; holiday now: {}; zone {}",
            self.week_day,
            self.year_day,
            self.holidays,
            if self.holidays == 1 { "" } else { "s" },
            self.holiday_now.map_or("none", |m| m.tag()),
            self.time_zone
        )
    }
}

// ----- the engine's side -----

use super::action::{AppError, AppOk, AppResult};
use super::engine::{Engine, Out};
use super::event::EventKind;
use super::types::{AppKeyRole, Change, DoorMode};

impl Engine {
    /// Whether `h`'s schedules let it open now (`Schedules::admits`).
    pub(super) fn schedule_admits(&self, h: Holder) -> bool {
        self.dir
            .schedules
            .admits(h, self.now.wall, &self.config.time_zone)
    }

    /// A user's validity window and schedules both admit now.
    pub(super) fn user_in_time(&self, u: &super::types::User) -> bool {
        u.validity.admits(self.now.wall) && self.schedule_admits(Holder::User(u.number))
    }

    pub(super) fn schedule_status(&self) -> ScheduleStatus {
        let mut st = ScheduleStatus {
            holiday_now: self.holiday_mode(),
            time_zone: self.config.time_zone.name().to_owned(),
            ..ScheduleStatus::default()
        };
        for s in self.dir.schedules.all() {
            match s.key().kind() {
                ScheduleKind::WeekDay => st.week_day += 1,
                ScheduleKind::YearDay => st.year_day += 1,
                ScheduleKind::Holiday => st.holidays += 1,
            }
        }
        st
    }

    /// The mode of the holiday running now, if any.
    pub(super) fn holiday_mode(&self) -> Option<OperatingMode> {
        self.dir
            .schedules
            .holiday(self.now.wall, &self.config.time_zone)
    }

    /// The mode that decides who opens now: the setting's, or a running
    /// holiday's — except that Privacy set on the lock is never lifted by
    /// a holiday (only someone inside ends it).
    pub(super) fn door_mode(&self) -> DoorMode {
        if self.settings.mode == DoorMode::Privacy {
            return DoorMode::Privacy;
        }
        match self.holiday_mode() {
            None => self.settings.mode,
            Some(OperatingMode::Vacation) => DoorMode::Vacation,
            Some(OperatingMode::Privacy) => DoorMode::Privacy,
            // Who opens is the same in Normal and Passage; remote unlock
            // is `remote_unlock_on`.
            Some(OperatingMode::Normal | OperatingMode::NoRemoteLockUnlock) => DoorMode::Normal,
            Some(OperatingMode::Passage) => self.settings.mode,
        }
    }

    /// B-6.7's switch, turned off while a NoRemoteLockUnlock holiday runs.
    /// A holiday never turns remote unlock on.
    pub(super) fn remote_unlock_on(&self) -> bool {
        self.settings.remote_unlock
            && self.holiday_mode() != Some(OperatingMode::NoRemoteLockUnlock)
    }

    fn holder_exists(&self, h: Holder) -> bool {
        match h {
            Holder::User(n) => self.dir.users.contains_key(&n),
            Holder::TempPasscode(id) => self.dir.temp_passcodes.contains_key(&id),
            // Decision: a redeemed guest key only; an invite's slot gets
            // schedules once the guest holds the key.
            Holder::GuestKey(id) => self
                .dir
                .app_keys
                .get(&id)
                .is_some_and(|k| k.role == AppKeyRole::Guest),
        }
    }

    /// While a Privacy holiday runs, no app may change the holidays: it
    /// would end Privacy from outside (`core::modes`).
    fn holidays_editable(&self) -> Result<(), AppError> {
        if self.settings.mode != DoorMode::Privacy
            && self.holiday_mode() == Some(OperatingMode::Privacy)
        {
            return Err(AppError::PrivacyMode);
        }
        Ok(())
    }

    /// Set (insert or replace) one schedule (owner's app, Matter).
    pub(super) fn set_schedule(&mut self, out: &mut Out, s: Schedule) -> AppResult {
        self.not_busy()?;
        s.check().map_err(AppError::Schedule)?;
        match s.key().holder() {
            Some(h) if !self.holder_exists(h) => {
                return Err(AppError::Schedule(ScheduleError::NoHolder))
            }
            Some(_) => {}
            None => self.holidays_editable()?,
        }
        self.persist(out, vec![Change::PutSchedule(s)]);
        self.log(out, EventKind::ScheduleSet { schedule: s });
        Ok(AppOk::Done)
    }

    /// Clear the schedules of `kind` for `holder` (`None` for holidays),
    /// one `index` or all of them. Clearing none is not an error.
    pub(super) fn clear_schedules(
        &mut self,
        out: &mut Out,
        kind: ScheduleKind,
        holder: Option<Holder>,
        index: Option<u8>,
    ) -> AppResult {
        self.not_busy()?;
        if (kind == ScheduleKind::Holiday) != holder.is_none() {
            return Err(AppError::Schedule(ScheduleError::NoHolder));
        }
        if kind == ScheduleKind::Holiday {
            self.holidays_editable()?;
        }
        let gone: Vec<Change> = self
            .dir
            .schedules
            .all()
            .map(Schedule::key)
            .filter(|k| k.kind() == kind && k.holder() == holder)
            .filter(|k| {
                index.is_none_or(|i| match k {
                    ScheduleKey::WeekDay { index, .. }
                    | ScheduleKey::YearDay { index, .. }
                    | ScheduleKey::Holiday { index } => *index == i,
                })
            })
            .map(Change::DeleteSchedule)
            .collect();
        if !gone.is_empty() {
            self.persist(out, gone);
        }
        self.log(
            out,
            EventKind::SchedulesCleared {
                kind,
                holder,
                index,
            },
        );
        Ok(AppOk::Done)
    }

    /// Every schedule, for the owner's app and `latchctl`.
    pub fn schedules(&self) -> Vec<Schedule> {
        self.dir.schedules.all().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekday_and_minute_of_local_time() {
        // 2026-03-29 was a Sunday.
        let t = LocalTime(1_774_742_400 + 9 * 3600 + 30 * 60);
        assert_eq!(t.weekday(), 0);
        assert_eq!(t.minute_of_day(), 9 * 60 + 30);
        assert_eq!(LocalTime(0).weekday(), 4);
        assert_eq!(LocalTime(-1).weekday(), 3);
    }

    #[test]
    fn week_day_fields_are_checked() {
        assert_eq!(
            WeekDay::new(0x7f, (22, 0), (6, 0)),
            Err(ScheduleError::BadWindow)
        );
        assert_eq!(WeekDay::new(0, (8, 0), (9, 0)), Err(ScheduleError::BadDays));
        assert_eq!(
            WeekDay::new(1, (24, 0), (9, 0)),
            Err(ScheduleError::BadWindow)
        );
        let w = WeekDay::new(0b10, (8, 0), (17, 30)).unwrap();
        assert_eq!(w.hm(), ((8, 0), (17, 30)));
    }
}
