//! Wall time the lock can trust for validity windows (B-6.8, B-6.10,
//! B-9.4): a high-water mark that only trusted sources raise, and that no
//! later reading may fall below.
//!
//! ```text
//!  runtime: wall reading from a trusted source (NTP-synchronised system
//!           clock, the owner's time sync, a trusted RTC), else None
//!      │
//!      ▼
//!  reading < floor − slack ? ──yes──► unknown (fail closed), "clock behind" logged once
//!      │ no
//!      ▼
//!  use it; floor = max(floor, reading), carried forward by the monotonic
//!  clock while running; persisted when it rose by an hour (and at shutdown)
//! ```
//!
//! The floor is what the lock has known for certain: once a trusted source
//! said it was T at monotonic instant m, at m' it is at least T + (m' − m).
//! A wall clock set back below that (a spoofed NTP answer, an RTC reset, a
//! clock the attacker can reach) cannot reopen an expired guest code or
//! visitor passcode: the lock treats the time as unknown and refuses every
//! time-windowed credential until a trusted source catches up. The floor
//! survives restarts (persisted, at most [`PERSIST_STEP`] behind) and
//! factory resets.
//!
//! What it cannot do: tell a true reading from a forward jump by a trusted
//! source (a spoofed NTP server could move the floor ahead; windows that
//! begin later then open early, and the lock refuses windowed credentials
//! after the real time comes back until it catches up).
use core::time::Duration;

use super::time::{Instant, Now, WallTime};

/// Readings this far below the floor are still accepted: NTP slews and
/// steps by small amounts, and the floor's own second resolution.
pub const ROLLBACK_SLACK: Duration = Duration::from_secs(120);
/// The floor is persisted when it rose this far since the last time.
pub const PERSIST_STEP: Duration = Duration::from_secs(3600);
/// No wall time before this is believed at all (the firmware is newer):
/// 2025-01-01T00:00:00Z.
pub const EARLIEST: WallTime = WallTime(1_735_689_600);
/// Nor after this (2200-01-01T00:00:00Z): a clock this far ahead is broken.
pub const LATEST: WallTime = WallTime(7_258_118_400);
/// An owner's time sync may move the clock at most this far past the
/// floor (a lock stored unpowered for a year, with margin). A phone with a
/// broken clock must not push the floor years ahead, where it would
/// refuse every windowed credential until the real time caught up.
pub const MAX_SYNC_AHEAD: Duration = Duration::from_secs(400 * 86_400);

/// What a check of a reading found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The wall time the engine may use now (`None`: unknown).
    pub wall: Option<WallTime>,
    /// The reading was below the floor, and this is the first such reading
    /// since the clock was last believed: log and tell the owner.
    pub fell_behind: Option<FellBehind>,
    /// The floor rose enough to be persisted.
    pub persist: Option<WallTime>,
}

/// A reading below the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FellBehind {
    pub reading: WallTime,
    pub floor: WallTime,
}

/// Why an owner's time sync was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRefused {
    /// Earlier than the time the lock already trusted.
    BehindFloor { floor: WallTime },
    /// Outside [`EARLIEST`, `LATEST`] or too far past the floor.
    OutOfRange,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedTime {
    /// The floor as last persisted.
    persisted: Option<WallTime>,
    /// The latest trusted reading and the monotonic instant it was made.
    anchor: Option<(WallTime, Instant)>,
    /// Readings are currently below the floor (logged once per episode).
    behind: bool,
}

impl TrustedTime {
    pub fn new(persisted: Option<WallTime>) -> Self {
        TrustedTime {
            persisted,
            anchor: None,
            behind: false,
        }
    }

    /// The latest time known for certain as of `mono`.
    pub fn floor(&self, mono: Instant) -> Option<WallTime> {
        let carried = self
            .anchor
            .map(|(w, at)| WallTime(w.0.saturating_add(mono.since(at).as_secs() as i64)));
        carried.max(self.persisted)
    }

    /// Check the runtime's reading at `now`.
    pub fn check(&mut self, now: Now) -> Checked {
        let Some(reading) = now.wall else {
            return Checked {
                wall: None,
                fell_behind: None,
                persist: None,
            };
        };
        let floor = self.floor(now.mono);
        let slack = ROLLBACK_SLACK.as_secs() as i64;
        if let Some(f) = floor.filter(|f| reading.0 < f.0.saturating_sub(slack)) {
            let newly = !self.behind;
            self.behind = true;
            return Checked {
                wall: None,
                fell_behind: newly.then_some(FellBehind { reading, floor: f }),
                persist: None,
            };
        }
        if !(EARLIEST..=LATEST).contains(&reading) {
            // A clock in 1970 (no RTC, no sync) or far in the future is no
            // reading at all.
            return Checked {
                wall: None,
                fell_behind: None,
                persist: None,
            };
        }
        self.behind = false;
        let best = floor.map_or(reading, |f| f.max(reading));
        self.anchor = Some((best, now.mono));
        Checked {
            wall: Some(reading),
            fell_behind: None,
            persist: self.take_persist(best),
        }
    }

    /// An owner set the clock to `to` (TimeSync): checked against the
    /// bounds, then trusted and persisted at once.
    pub fn owner_sync(&mut self, mono: Instant, to: WallTime) -> Result<WallTime, SyncRefused> {
        if !(EARLIEST..=LATEST).contains(&to) {
            return Err(SyncRefused::OutOfRange);
        }
        if let Some(f) = self.floor(mono) {
            if to.0 < f.0.saturating_sub(ROLLBACK_SLACK.as_secs() as i64) {
                return Err(SyncRefused::BehindFloor { floor: f });
            }
            if to.0 > f.0.saturating_add(MAX_SYNC_AHEAD.as_secs() as i64) {
                return Err(SyncRefused::OutOfRange);
            }
        }
        self.behind = false;
        let best = self.floor(mono).map_or(to, |f| f.max(to));
        self.anchor = Some((best, mono));
        self.persisted = Some(best);
        Ok(best)
    }

    /// While idle, the floor still rises with the monotonic clock: the
    /// runtime asks at each watchdog ping whether it rose enough to store
    /// (so a power cut after a quiet day does not leave it a day behind).
    pub fn checkpoint(&mut self, mono: Instant) -> Option<WallTime> {
        let floor = self.floor(mono)?;
        self.take_persist(floor)
    }

    /// The floor to persist at an orderly shutdown, if it rose at all.
    pub fn shutdown_record(&self, mono: Instant) -> Option<WallTime> {
        self.floor(mono).filter(|f| Some(*f) > self.persisted)
    }

    fn take_persist(&mut self, best: WallTime) -> Option<WallTime> {
        let due = self
            .persisted
            .is_none_or(|p| best.0 >= p.0.saturating_add(PERSIST_STEP.as_secs() as i64));
        if due {
            self.persisted = Some(best);
            Some(best)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_500_000;

    fn at(mono_s: u64, wall: Option<i64>) -> Now {
        Now::new(mono_s * 1000, wall)
    }

    #[test]
    fn a_reading_below_the_floor_is_no_reading() {
        let mut t = TrustedTime::new(None);
        let c = t.check(at(0, Some(T)));
        assert_eq!(c.wall, Some(WallTime(T)));
        assert_eq!(c.persist, Some(WallTime(T)));
        // An hour later the clock says an hour earlier: behind by two.
        let c = t.check(at(3600, Some(T - 3600)));
        assert_eq!(c.wall, None);
        assert_eq!(
            c.fell_behind,
            Some(FellBehind {
                reading: WallTime(T - 3600),
                floor: WallTime(T + 3600)
            })
        );
        // Logged once per episode.
        assert_eq!(t.check(at(3601, Some(T - 3599))).fell_behind, None);
        // Small steps within the slack are fine.
        let c = t.check(at(3602, Some(T + 3602 - 100)));
        assert!(c.wall.is_some());
    }

    #[test]
    fn the_floor_survives_a_restart_and_rises_by_the_hour() {
        let mut t = TrustedTime::new(Some(WallTime(T)));
        assert_eq!(t.check(at(0, Some(T - 3600))).wall, None);
        let mut t = TrustedTime::new(Some(WallTime(T)));
        assert_eq!(t.check(at(0, Some(T + 60))).persist, None);
        assert_eq!(
            t.check(at(3600, Some(T + 3660))).persist,
            Some(WallTime(T + 3660))
        );
        assert_eq!(
            t.shutdown_record(Instant(3600 * 1000 + 30_000)),
            Some(WallTime(T + 3690))
        );
    }

    #[test]
    fn an_owner_sync_is_bounded() {
        let mut t = TrustedTime::new(Some(WallTime(T)));
        assert_eq!(
            t.owner_sync(Instant(0), WallTime(T - 86_400)),
            Err(SyncRefused::BehindFloor { floor: WallTime(T) })
        );
        assert_eq!(
            t.owner_sync(Instant(0), WallTime(T + 10 * 365 * 86_400)),
            Err(SyncRefused::OutOfRange)
        );
        assert_eq!(
            t.owner_sync(Instant(0), WallTime(0)),
            Err(SyncRefused::OutOfRange)
        );
        assert_eq!(
            t.owner_sync(Instant(0), WallTime(T + 30)),
            Ok(WallTime(T + 30))
        );
        // A reading of 1970 (no RTC) is not believed either.
        let mut fresh = TrustedTime::new(None);
        assert_eq!(fresh.check(at(0, Some(86_400))).wall, None);
    }

    /// B-6.8: the rollback slack is a bound, not a tolerance of any size. A
    /// reading exactly `ROLLBACK_SLACK` below the floor is believed (an NTP
    /// step); one second further back is no reading and is reported.
    #[test]
    fn the_rollback_slack_ends_at_its_last_second() {
        let slack = ROLLBACK_SLACK.as_secs() as i64;
        let mut t = TrustedTime::new(Some(WallTime(T)));
        assert_eq!(
            t.check(at(0, Some(T - slack))).wall,
            Some(WallTime(T - slack))
        );
        let mut t = TrustedTime::new(Some(WallTime(T)));
        assert_eq!(
            t.check(at(0, Some(T - slack - 1))),
            Checked {
                wall: None,
                fell_behind: Some(FellBehind {
                    reading: WallTime(T - slack - 1),
                    floor: WallTime(T),
                }),
                persist: None,
            }
        );
    }

    /// An owner's sync moves the floor at most `ROLLBACK_SLACK` back (it
    /// cannot reopen an expired window) and at most `MAX_SYNC_AHEAD` ahead:
    /// a lock stored unpowered for a year is set right in one sync, but a
    /// phone with a broken clock cannot push the floor further, where it
    /// would refuse every windowed credential. Both bounds are inclusive.
    #[test]
    fn an_owner_sync_reaches_exactly_its_bounds() {
        let slack = ROLLBACK_SLACK.as_secs() as i64;
        let ahead = MAX_SYNC_AHEAD.as_secs() as i64;
        let sync =
            |to: i64| TrustedTime::new(Some(WallTime(T))).owner_sync(Instant(0), WallTime(to));
        // Within the slack the floor stays where it was.
        assert_eq!(sync(T - slack), Ok(WallTime(T)));
        assert_eq!(
            sync(T - slack - 1),
            Err(SyncRefused::BehindFloor { floor: WallTime(T) })
        );
        let a_year = 365 * 86_400;
        assert_eq!(sync(T + a_year), Ok(WallTime(T + a_year)));
        assert_eq!(sync(T + ahead), Ok(WallTime(T + ahead)));
        assert_eq!(sync(T + ahead + 1), Err(SyncRefused::OutOfRange));
    }

    /// While idle the floor keeps rising with the monotonic clock and is
    /// stored once per `PERSIST_STEP`, so a power cut after a quiet day
    /// leaves it at most an hour behind; with no floor known nothing is
    /// stored (a made-up floor would refuse every windowed credential or
    /// lower the stored one).
    #[test]
    fn an_idle_floor_is_stored_by_the_hour() {
        let mut t = TrustedTime::new(None);
        assert_eq!(t.checkpoint(Instant(3600 * 1000)), None);
        assert_eq!(t.check(at(0, Some(T))).persist, Some(WallTime(T)));
        assert_eq!(t.checkpoint(Instant(3599 * 1000)), None);
        assert_eq!(t.checkpoint(Instant(3600 * 1000)), Some(WallTime(T + 3600)));
        assert_eq!(t.checkpoint(Instant(3601 * 1000)), None);
        assert_eq!(
            TrustedTime::new(Some(WallTime(T + 3600))).floor(Instant(0)),
            Some(WallTime(T + 3600))
        );
    }

    /// An orderly shutdown stores the floor only if it rose since it was
    /// last stored: a restart right after a restart writes nothing.
    #[test]
    fn a_shutdown_stores_the_floor_only_if_it_rose() {
        let t = TrustedTime::new(Some(WallTime(T)));
        assert_eq!(t.shutdown_record(Instant(3600 * 1000)), None);
        let mut t = TrustedTime::new(Some(WallTime(T)));
        assert_eq!(t.check(at(0, Some(T))).wall, Some(WallTime(T)));
        assert_eq!(t.shutdown_record(Instant(0)), None);
        assert_eq!(t.shutdown_record(Instant(1000)), Some(WallTime(T + 1)));
    }
}
