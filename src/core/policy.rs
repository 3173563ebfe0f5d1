//! Who may open the door, and when: the lockout counter (B-7) and the
//! rules for app principals (B-5, B-6.6, B-6.7).
//!
//! # Lockout
//!
//! ```text
//!  failure ─► window of the last 5 min ─► 5th failure ─► locked 3 min ─► free
//!             (each failure expires          (alarm)        │   ▲
//!              5 min after it happened)                      └───┴─ app ReleaseLockout
//! ```
//!
//! One failed verification counts once, whatever its kind (face, palm,
//! fingerprint, passcode). Failures are kept as the instant they *leave*
//! the window, and persisted as remaining durations ([`LockoutRecord`]):
//! the monotonic clock restarts with the daemon, and time spent powered off
//! must never shorten a lockout, so a restart resumes exactly what was left.
use core::time::Duration;
use std::collections::VecDeque;

use super::time::Instant;
use super::types::LockoutRecord;

/// B-7.1: the window in which failures are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// B-7.1: failures within the window that start a lockout.
pub const FAILURES_TO_LOCK: usize = 5;
/// B-7.1: how long a lockout lasts.
pub const LOCKOUT: Duration = Duration::from_secs(3 * 60);

/// What a failure did to the lockout state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Counted; not (yet) locked.
    Counted,
    /// This failure started a lockout.
    LockedOut,
    /// Protection is off (B-7.3) or a lockout is already running: nothing
    /// changed.
    Ignored,
}

#[derive(Debug, Clone, Default)]
pub struct Lockout {
    /// When each counted failure leaves the window, oldest first.
    failures_expire: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl Lockout {
    /// Resume a persisted record relative to `now`.
    pub fn resume(record: &LockoutRecord, now: Instant) -> Lockout {
        let mut failures_expire: Vec<Instant> = record
            .failures_expire_in
            .iter()
            // A corrupt record cannot stretch a failure beyond its window.
            .map(|d| now + (*d).min(FAILURE_WINDOW))
            .collect();
        failures_expire.sort();
        Lockout {
            failures_expire: failures_expire.into(),
            locked_until: record.locked_for.map(|d| now + d.min(LOCKOUT)),
        }
    }

    /// The record to persist, as remaining durations from `now`.
    pub fn record(&self, now: Instant) -> LockoutRecord {
        LockoutRecord {
            failures_expire_in: self
                .failures_expire
                .iter()
                .filter(|t| **t > now)
                .map(|t| t.since(now))
                .collect(),
            locked_for: self.locked_until.filter(|t| *t > now).map(|t| t.since(now)),
        }
    }

    pub fn is_locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|t| now < t)
    }

    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.locked_until.filter(|t| now < *t).map(|t| t.since(now))
    }

    /// The instant a running lockout ends (for `next_deadline`).
    pub fn deadline(&self) -> Option<Instant> {
        self.locked_until
    }

    /// Failures currently inside the window.
    pub fn failures(&self, now: Instant) -> usize {
        self.failures_expire.iter().filter(|t| **t > now).count()
    }

    /// Count one failed verification.
    pub fn fail(&mut self, now: Instant, protection: bool) -> FailureOutcome {
        if !protection || self.is_locked(now) {
            return FailureOutcome::Ignored;
        }
        while self.failures_expire.front().is_some_and(|t| *t <= now) {
            self.failures_expire.pop_front();
        }
        self.failures_expire.push_back(now + FAILURE_WINDOW);
        if self.failures_expire.len() >= FAILURES_TO_LOCK {
            self.failures_expire.clear();
            self.locked_until = Some(now + LOCKOUT);
            FailureOutcome::LockedOut
        } else {
            FailureOutcome::Counted
        }
    }

    /// If the lockout ran out by `now`, clear it and say so.
    pub fn expire(&mut self, now: Instant) -> bool {
        if self.locked_until.is_some_and(|t| now >= t) {
            self.locked_until = None;
            return true;
        }
        false
    }

    /// B-7.2: end a running lockout early (the app). Returns whether one
    /// was running. The failure count is cleared too: the owner vouched.
    pub fn release(&mut self, now: Instant) -> bool {
        let was = self.is_locked(now);
        self.locked_until = None;
        self.failures_expire.clear();
        was
    }

    /// Forget everything (factory reset).
    pub fn reset(&mut self) {
        *self = Lockout::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    #[test]
    fn five_in_five_minutes_lock_for_three() {
        let mut l = Lockout::default();
        for i in 0..4 {
            assert_eq!(l.fail(Instant(i * MIN), true), FailureOutcome::Counted);
        }
        assert_eq!(
            l.fail(Instant(4 * MIN + 59_000), true),
            FailureOutcome::LockedOut
        );
        let t = Instant(4 * MIN + 59_000);
        assert!(l.is_locked(t));
        assert!(l.is_locked(t.after(LOCKOUT - Duration::from_millis(1))));
        assert!(!l.is_locked(t.after(LOCKOUT)));
    }

    #[test]
    fn spread_over_six_minutes_does_not_lock() {
        let mut l = Lockout::default();
        for i in 0..5u64 {
            assert_eq!(l.fail(Instant(i * 90_000), true), FailureOutcome::Counted);
        }
        assert!(!l.is_locked(Instant(6 * MIN)));
    }

    #[test]
    fn record_round_trips_across_a_restart() {
        let mut l = Lockout::default();
        for i in 0..5u64 {
            l.fail(Instant(1000 + i), true);
        }
        let rec = l.record(Instant(61_004));
        let resumed = Lockout::resume(&rec, Instant(5));
        assert_eq!(resumed.remaining(Instant(5)), l.remaining(Instant(61_004)));
    }

    #[test]
    fn protection_off_counts_nothing() {
        let mut l = Lockout::default();
        for i in 0..10u64 {
            assert_eq!(l.fail(Instant(i), false), FailureOutcome::Ignored);
        }
        assert_eq!(l.failures(Instant(10)), 0);
    }
}
