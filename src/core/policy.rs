//! The brute-force budget (B-7): how failed verifications turn into
//! lockouts, escalate, and finally disable the keypad.
//!
//! # The guess budget
//!
//! ```text
//!  failed attempt ─► + weight strikes ─► level = strikes / 5 rose? ─► lockout of that level
//!   keypad: one per 6-digit window       │                              3, 6, 12, 24 min …
//!   (anti-peep padding pays per code)    │                              (cap 60 min)
//!   biometric: 1                         └─ level ≥ 5 ─► keypad disabled (latched) until
//!                                                        the owner's app or an administrator
//!  success ─► forgives this method's failures            (menu, SET inside) releases it
//!             of the last 10 min (≤ 5 strikes)
//!  every 4 h of uptime ─► one strike leaks away
//! ```
//!
//! Anti-peep (B-6.4) lets one input test every 6–10-digit window it
//! contains, so a robot typing overlapping chunks of a de Bruijn sequence
//! tests many codes per ✓. Each failed input therefore costs as many
//! strikes as the 6-digit windows it held (`len − 5`): a 6-digit code
//! costs 1, a 16-digit padded input 11. Five strikes make a level; every
//! level reached starts a lockout twice as long as the one before, and the
//! fifth level disables the keypad until someone who owns the lock
//! releases it. Strikes do not expire after 5 minutes (a patient attacker
//! would spread his guesses): only a success of the same method forgives
//! the few failures just before it (a typo), one strike leaks away every
//! 4 hours the lock runs, and a release clears them all. The benchmark
//! `benches/brute_force.rs` turns these numbers into days.
//!
//! # Persistence
//!
//! Times are persisted as *remaining* durations ([`LockoutRecord`]): the
//! monotonic clock restarts with the daemon, and time spent powered off
//! must never shorten a lockout or hurry the leak, so a restart resumes
//! exactly what was left.
use core::time::Duration;
use std::collections::VecDeque;

use super::time::Instant;
use super::types::{LockoutRecord, Method, RecentFailure};

/// B-7.1: the window in which failures count as "recent" (status, and the
/// failures a success may forgive is [`FORGIVE_WINDOW`]).
pub const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// B-7.1: five failed verifications make one lockout level.
pub const STRIKES_PER_LEVEL: u32 = 5;
/// B-7.1: how long the first lockout lasts; each further level doubles it.
pub const LOCKOUT: Duration = Duration::from_secs(3 * 60);
/// The longest timed lockout.
pub const LOCKOUT_CAP: Duration = Duration::from_secs(60 * 60);
/// The level at which the keypad disables itself until released.
pub const DISABLE_LEVEL: u32 = 5;
/// One strike is forgiven per this much uptime (time powered off does not
/// count: the attacker cannot hurry it by cutting the power).
pub const LEAK_EVERY: Duration = Duration::from_secs(4 * 3600);
/// A success forgives failures of its own method this recent...
pub const FORGIVE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// ...worth at most this many strikes (a person's typos, not a robot's
/// padded inputs).
pub const FORGIVE_MAX: u32 = 5;

/// How long the lockout of `level` (1-based) lasts.
pub fn lockout_for(level: u32) -> Duration {
    let doublings = level.saturating_sub(1).min(16);
    LOCKOUT.saturating_mul(1u32 << doublings).min(LOCKOUT_CAP)
}

/// What a failure did to the lockout state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Counted; no new level reached.
    Counted,
    /// This failure reached a new level.
    LockedOut {
        /// The level reached (1 = the first lockout).
        level: u32,
        /// The timed lockout it started; `None` with protection off
        /// (B-7.3), which turns timed lockouts and their alarm off.
        duration: Option<Duration>,
        /// This failure disabled the keypad.
        keypad_disabled: bool,
    },
    /// A lockout is already running: nothing changed.
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recent {
    /// When it leaves the forgiveness window.
    leaves: Instant,
    /// When it leaves the B-7.1 window (status).
    counts_until: Instant,
    weight: u32,
    method: Option<Method>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockout {
    /// Failures still inside the forgiveness window, oldest first.
    recent: VecDeque<Recent>,
    /// Guesses counted since the last release, less what leaked.
    strikes: u32,
    /// When the next strike leaks away (while there are strikes).
    leak_at: Option<Instant>,
    locked_until: Option<Instant>,
    /// Latched at [`DISABLE_LEVEL`]; only a release clears it.
    keypad_disabled: bool,
}

impl Lockout {
    /// Resume a persisted record relative to `now`. A corrupt record cannot
    /// stretch anything beyond its bound.
    pub fn resume(record: &LockoutRecord, now: Instant) -> Lockout {
        let mut recent: Vec<Recent> = record
            .recent
            .iter()
            .map(|r| {
                let left = r.expires_in.min(FORGIVE_WINDOW);
                Recent {
                    leaves: now + left,
                    counts_until: now + left.saturating_sub(FORGIVE_WINDOW - FAILURE_WINDOW),
                    weight: r.weight.max(1),
                    method: r.method,
                }
            })
            .collect();
        // Records written before weights existed: one strike each, no method.
        recent.extend(record.failures_expire_in.iter().map(|d| Recent {
            leaves: now + (*d).min(FAILURE_WINDOW),
            counts_until: now + (*d).min(FAILURE_WINDOW),
            weight: 1,
            method: None,
        }));
        recent.sort_by_key(|r| r.leaves);
        let recent_strikes: u32 = recent.iter().map(|r| r.weight).sum();
        let strikes = record.strikes.max(recent_strikes);
        Lockout {
            recent: recent.into(),
            strikes,
            leak_at: (strikes > 0)
                .then(|| now + record.leak_in.unwrap_or(LEAK_EVERY).min(LEAK_EVERY)),
            locked_until: record.locked_for.map(|d| now + d.min(LOCKOUT_CAP)),
            keypad_disabled: record.keypad_disabled,
        }
    }

    /// The record to persist, as remaining durations from `now`.
    pub fn record(&self, now: Instant) -> LockoutRecord {
        LockoutRecord {
            failures_expire_in: Vec::new(),
            recent: self
                .recent
                .iter()
                .filter(|r| r.leaves > now)
                .map(|r| RecentFailure {
                    expires_in: r.leaves.since(now),
                    weight: r.weight,
                    method: r.method,
                })
                .collect(),
            locked_for: self.locked_until.filter(|t| *t > now).map(|t| t.since(now)),
            strikes: self.strikes,
            leak_in: self.leak_at.map(|t| t.since(now)),
            keypad_disabled: self.keypad_disabled,
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

    /// The keypad refuses passcodes until a release.
    pub fn keypad_disabled(&self) -> bool {
        self.keypad_disabled
    }

    /// Guesses counted against the budget.
    pub fn strikes(&self) -> u32 {
        self.strikes
    }

    /// Lockout levels reached (0 = none).
    pub fn level(&self) -> u32 {
        self.strikes / STRIKES_PER_LEVEL
    }

    /// Failures inside the B-7.1 window (for status).
    pub fn failures(&self, now: Instant) -> usize {
        self.recent.iter().filter(|r| r.counts_until > now).count()
    }

    /// Apply the leak and drop failures that left the window. Called at
    /// every engine input; the leak needs no wake-up of its own.
    pub fn settle(&mut self, now: Instant) {
        while self.recent.front().is_some_and(|r| r.leaves <= now) {
            self.recent.pop_front();
        }
        while let Some(t) = self.leak_at.filter(|t| *t <= now) {
            self.strikes = self.strikes.saturating_sub(1);
            self.leak_at = (self.strikes > 0).then(|| t + LEAK_EVERY);
        }
    }

    /// Count one failed verification of `weight` guesses.
    pub fn fail(
        &mut self,
        now: Instant,
        weight: u32,
        method: Method,
        protection: bool,
    ) -> FailureOutcome {
        if self.is_locked(now) {
            return FailureOutcome::Ignored;
        }
        self.settle(now);
        let weight = weight.max(1);
        let before = self.level();
        self.strikes = self.strikes.saturating_add(weight);
        if self.leak_at.is_none() {
            self.leak_at = Some(now + LEAK_EVERY);
        }
        self.recent.push_back(Recent {
            leaves: now + FORGIVE_WINDOW,
            counts_until: now + FAILURE_WINDOW,
            weight,
            method: Some(method),
        });
        let level = self.level();
        if level <= before {
            return FailureOutcome::Counted;
        }
        let disables = level >= DISABLE_LEVEL && !self.keypad_disabled;
        if disables {
            self.keypad_disabled = true;
        }
        let duration = protection.then(|| lockout_for(level));
        if let Some(d) = duration {
            self.locked_until = Some(now + d);
        }
        if duration.is_none() && !disables {
            return FailureOutcome::Counted;
        }
        FailureOutcome::LockedOut {
            level,
            duration,
            keypad_disabled: disables,
        }
    }

    /// A verification by `method` succeeded: the failures of the same
    /// method in the last [`FORGIVE_WINDOW`] were the same person's typos;
    /// up to [`FORGIVE_MAX`] strikes of them are forgiven. Returns whether
    /// anything changed.
    pub fn succeeded(&mut self, now: Instant, method: Method) -> bool {
        self.settle(now);
        let mut budget = FORGIVE_MAX;
        let mut forgiven = 0;
        self.recent.retain(|r| {
            if r.method == Some(method) && r.weight <= budget {
                budget -= r.weight;
                forgiven += r.weight;
                false
            } else {
                true
            }
        });
        self.strikes = self.strikes.saturating_sub(forgiven);
        if self.strikes == 0 {
            self.leak_at = None;
        }
        forgiven > 0
    }

    /// If the lockout ran out by `now`, clear it and say so.
    pub fn expire(&mut self, now: Instant) -> bool {
        if self.locked_until.is_some_and(|t| now >= t) {
            self.locked_until = None;
            return true;
        }
        false
    }

    /// B-7.2: the owner (app) or an administrator (menu) releases the lock:
    /// the running lockout ends, the keypad works again and every strike is
    /// cleared. Returns whether anything was in force.
    pub fn release(&mut self, now: Instant) -> bool {
        let was = self.is_locked(now) || self.keypad_disabled || self.strikes > 0;
        *self = Lockout::default();
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
    const P: Method = Method::Passcode;

    /// B-7.1: a failure counts as recent (status, the engine's "recent
    /// failures") for `FAILURE_WINDOW`, five minutes, and after a restart
    /// for what was left of them, never longer. Found by mutants run 3:
    /// nothing read the window's length or its resumption.
    #[test]
    fn a_failure_counts_as_recent_for_five_minutes_across_a_restart() {
        let mut l = Lockout::default();
        l.fail(Instant(0), 1, P, true);
        assert_eq!(l.failures(Instant(5 * MIN - 1)), 1);
        assert_eq!(l.failures(Instant(5 * MIN)), 0);
        // Persisted two minutes in; resumed on another monotonic origin.
        let record = l.record(Instant(2 * MIN));
        let r = Lockout::resume(&record, Instant(100 * MIN));
        assert_eq!(r.failures(Instant(103 * MIN - 1)), 1);
        assert_eq!(r.failures(Instant(103 * MIN)), 0);
    }

    /// The record carries each recent failure with what is left of its
    /// forgiveness window, and drops it once that ended: a restart keeps
    /// a person's typos forgivable for exactly as long as without one.
    #[test]
    fn a_record_keeps_recent_failures_until_they_leave() {
        let mut l = Lockout::default();
        l.fail(Instant(0), 2, P, true);
        let record = l.record(Instant(MIN));
        assert_eq!(
            record.recent,
            vec![RecentFailure {
                expires_in: FORGIVE_WINDOW - Duration::from_millis(MIN),
                weight: 2,
                method: Some(P),
            }]
        );
        let window = FORGIVE_WINDOW.as_millis() as u64;
        assert_eq!(l.record(Instant(window - 1)).recent.len(), 1);
        assert_eq!(l.record(Instant(window)).recent, vec![]);
    }

    /// A lockout's end is exact everywhere it is read: the time left is
    /// none at its last instant's end, the engine's next deadline is that
    /// instant (it wakes to end the lockout), and a record taken then
    /// carries no lockout into a restart.
    #[test]
    fn a_lockout_ends_at_its_deadline_in_every_view() {
        let mut l = Lockout::default();
        for i in 0..5 {
            l.fail(Instant(i), 1, P, true);
        }
        let end = Instant(4).after(LOCKOUT);
        assert_eq!(l.deadline(), Some(end));
        let before = Instant(end.0 - 1);
        assert_eq!(l.remaining(before), Some(Duration::from_millis(1)));
        assert_eq!(l.record(before).locked_for, Some(Duration::from_millis(1)));
        assert_eq!(l.remaining(end), None);
        assert_eq!(l.record(end).locked_for, None);
    }

    /// A record without strikes resumes with no leak pending (there is
    /// nothing to forgive, so no wake-up is due for it).
    #[test]
    fn a_clean_record_resumes_with_no_leak_pending() {
        let r = Lockout::resume(&LockoutRecord::default(), Instant(0));
        assert_eq!(r.strikes(), 0);
        assert_eq!(r.record(Instant(0)).leak_in, None);
    }

    #[test]
    fn five_failures_lock_for_three_minutes() {
        let mut l = Lockout::default();
        for i in 0..4 {
            assert_eq!(
                l.fail(Instant(i * MIN), 1, P, true),
                FailureOutcome::Counted
            );
        }
        let t = Instant(4 * MIN + 59_000);
        assert_eq!(
            l.fail(t, 1, P, true),
            FailureOutcome::LockedOut {
                level: 1,
                duration: Some(LOCKOUT),
                keypad_disabled: false
            }
        );
        assert!(l.is_locked(t.after(LOCKOUT - Duration::from_millis(1))));
        assert!(!l.is_locked(t.after(LOCKOUT)));
    }

    #[test]
    fn lockouts_double_up_to_the_cap_and_the_fifth_level_disables() {
        assert_eq!(lockout_for(1), Duration::from_secs(180));
        assert_eq!(lockout_for(2), Duration::from_secs(360));
        assert_eq!(lockout_for(4), Duration::from_secs(24 * 60));
        assert_eq!(lockout_for(5), Duration::from_secs(48 * 60));
        assert_eq!(lockout_for(6), LOCKOUT_CAP);
        assert_eq!(lockout_for(99), LOCKOUT_CAP);
        let mut l = Lockout::default();
        let mut t = Instant(0);
        let mut disabled_at = None;
        for level in 1..=5 {
            let mut last = FailureOutcome::Ignored;
            for _ in 0..5 {
                last = l.fail(t, 1, P, true);
            }
            assert!(matches!(last, FailureOutcome::LockedOut { level: lv, .. } if lv == level));
            if let FailureOutcome::LockedOut {
                keypad_disabled: true,
                ..
            } = last
            {
                disabled_at = Some(level);
            }
            t = t.after(lockout_for(level));
            l.expire(t);
        }
        assert_eq!(disabled_at, Some(DISABLE_LEVEL));
        assert!(l.keypad_disabled());
        // Latched: the timed lockout ended, the keypad stays off.
        assert!(!l.is_locked(t));
        assert!(l.keypad_disabled());
        assert!(l.release(t));
        assert!(!l.keypad_disabled());
        assert_eq!(l.strikes(), 0);
    }

    /// A release reports whether anything was in force — strikes alone
    /// count (the caller persists the cleared record only then) — and a
    /// clean record has nothing to release.
    #[test]
    fn a_release_of_strikes_alone_is_something_and_of_nothing_is_not() {
        let mut l = Lockout::default();
        assert!(!l.release(Instant(0)));
        l.fail(Instant(0), 2, P, true);
        assert!(!l.is_locked(Instant(1)) && !l.keypad_disabled());
        assert!(l.release(Instant(1)), "two strikes were in force");
        assert_eq!(l.strikes(), 0);
        assert_eq!(l.record(Instant(1)).leak_in, None);
        assert!(!l.release(Instant(2)));

        // The keypad disabled long ago, its strikes since leaked away: the
        // release still has the keypad to give back.
        let mut l = Lockout::default();
        l.fail(Instant(0), STRIKES_PER_LEVEL * DISABLE_LEVEL, P, true);
        assert!(l.keypad_disabled());
        let later = Instant(0).after(LEAK_EVERY * (STRIKES_PER_LEVEL * DISABLE_LEVEL));
        l.settle(later);
        assert_eq!(l.strikes(), 0);
        assert!(!l.is_locked(later) && l.keypad_disabled());
        assert!(l.release(later), "the keypad was disabled");
        assert!(!l.keypad_disabled());
    }

    #[test]
    fn a_padded_input_pays_for_every_window() {
        let mut l = Lockout::default();
        // 16 digits: 11 six-digit windows, two levels at once.
        assert_eq!(
            l.fail(Instant(0), 11, P, true),
            FailureOutcome::LockedOut {
                level: 2,
                duration: Some(lockout_for(2)),
                keypad_disabled: false
            }
        );
        assert_eq!(l.strikes(), 11);
    }

    #[test]
    fn failures_do_not_expire_after_five_minutes_but_leak_slowly() {
        let mut l = Lockout::default();
        for i in 0..4u64 {
            l.fail(Instant(i * 10 * MIN), 1, P, true);
        }
        assert_eq!(l.failures(Instant(40 * MIN)), 0);
        assert_eq!(l.strikes(), 4);
        // The fifth, much later than five minutes: still a lockout.
        assert!(matches!(
            l.fail(Instant(50 * MIN), 1, P, true),
            FailureOutcome::LockedOut { level: 1, .. }
        ));
        // Four hours after the first failure one strike has leaked.
        let mut l = Lockout::default();
        l.fail(Instant(0), 3, P, true);
        l.settle(Instant(4 * 60 * MIN - 1));
        assert_eq!(l.strikes(), 3);
        l.settle(Instant(4 * 60 * MIN));
        assert_eq!(l.strikes(), 2);
        l.settle(Instant(12 * 60 * MIN));
        assert_eq!(l.strikes(), 0);
    }

    /// Once every strike has leaked nothing is pending (no wake-up on an
    /// idle lock), and the next failure leaks a whole period after itself,
    /// not on the old schedule (mutation testing: `strikes > 0` → `>=`
    /// kept the old schedule, so a strike made just before its tick leaked
    /// at once).
    #[test]
    fn a_failure_after_a_full_leak_waits_a_whole_period_of_its_own() {
        let hour = 60 * MIN;
        let mut l = Lockout::default();
        l.fail(Instant(0), 1, P, true);
        l.settle(Instant(4 * hour));
        assert_eq!(l.strikes(), 0);
        assert_eq!(l.record(Instant(4 * hour)).leak_in, None, "nothing pending");
        // 7 h 59 min: just before the old schedule's next tick.
        let t = Instant(8 * hour - MIN);
        l.fail(t, 1, P, true);
        l.settle(Instant(8 * hour));
        assert_eq!(l.strikes(), 1, "the old schedule's tick leaks nothing");
        assert_eq!(l.record(t).leak_in, Some(LEAK_EVERY));
        l.settle(t.after(LEAK_EVERY - Duration::from_millis(1)));
        assert_eq!(l.strikes(), 1);
        l.settle(t.after(LEAK_EVERY));
        assert_eq!(l.strikes(), 0);
    }

    #[test]
    fn a_success_forgives_a_few_recent_failures_of_its_own_method() {
        let mut l = Lockout::default();
        l.fail(Instant(0), 1, Method::Fingerprint, true);
        l.fail(Instant(1), 2, P, true);
        l.fail(Instant(2), 11, P, true);
        // A passcode success forgives the 2-strike typo, not the padded
        // robot input (over the cap) nor the finger.
        assert!(l.succeeded(Instant(3), P));
        assert_eq!(l.strikes(), 12);
        // Failures older than the window are not forgiven.
        let mut l = Lockout::default();
        l.fail(Instant(0), 1, P, true);
        assert!(!l.succeeded(Instant(0).after(FORGIVE_WINDOW), P));
        assert_eq!(l.strikes(), 1);
    }

    /// At most FORGIVE_MAX strikes are forgiven however many small typos
    /// came before; what is left still leaks on its schedule, and a
    /// forgiveness that clears every strike leaves nothing pending.
    #[test]
    fn a_success_forgives_five_strikes_at_most_and_the_rest_still_leak() {
        let mut l = Lockout::default();
        for i in 0..6 {
            // Counted, not locked: the check of the strikes alone.
            l.fail(Instant(i), 1, P, false);
        }
        assert_eq!(l.strikes(), 6);
        assert!(l.succeeded(Instant(10), P));
        assert_eq!(l.strikes(), 6 - FORGIVE_MAX);
        assert_eq!(
            l.record(Instant(10)).leak_in,
            Some(LEAK_EVERY - Duration::from_millis(10))
        );
        l.settle(Instant(0).after(LEAK_EVERY));
        assert_eq!(l.strikes(), 0, "the strike left leaked on time");

        let mut l = Lockout::default();
        l.fail(Instant(0), 2, P, true);
        assert!(l.succeeded(Instant(1), P));
        assert_eq!(l.strikes(), 0);
        assert_eq!(l.record(Instant(1)).leak_in, None, "nothing pending");
    }

    #[test]
    fn record_round_trips_across_a_restart() {
        let mut l = Lockout::default();
        for i in 0..7u64 {
            // The sixth and seventh fall in the lockout: not counted.
            l.fail(Instant(1000 + i), 1, P, true);
        }
        let rec = l.record(Instant(61_004));
        // Across a restart the record goes through the store's encoding.
        let stored: LockoutRecord =
            serde_json::from_str(&serde_json::to_string(&rec).unwrap()).unwrap();
        assert_eq!(stored, rec);
        let mut resumed = Lockout::resume(&stored, Instant(5));
        assert_eq!(resumed.remaining(Instant(5)), l.remaining(Instant(61_004)));
        assert_eq!(resumed.strikes(), 5);
        assert_eq!(resumed.level(), l.level());
        assert_eq!(resumed.keypad_disabled(), l.keypad_disabled());
        assert_eq!(resumed.record(Instant(5)), rec);
        // And it goes on as the original would have: the same instant of
        // release, then the same escalation for the next failures.
        let left = l.remaining(Instant(61_004)).expect("still locked");
        let (orig_end, res_end) = (Instant(61_004) + left, Instant(5) + left);
        assert!(resumed.is_locked(Instant(res_end.0 - 1)));
        assert!(!resumed.is_locked(res_end));
        for k in 0..6u64 {
            let a = l.fail(Instant(orig_end.0 + k), 1, P, true);
            let b = resumed.fail(Instant(res_end.0 + k), 1, P, true);
            assert_eq!(a, b, "failure {k} after the lockout");
        }
        assert_eq!(resumed.level(), l.level());
        assert_eq!(resumed.strikes(), l.strikes());
    }

    #[test]
    fn protection_off_stops_timed_lockouts_but_not_the_budget() {
        let mut l = Lockout::default();
        for i in 0..24u64 {
            assert_eq!(l.fail(Instant(i), 1, P, false), FailureOutcome::Counted);
        }
        assert!(!l.is_locked(Instant(24)));
        assert_eq!(
            l.fail(Instant(25), 1, P, false),
            FailureOutcome::LockedOut {
                level: 5,
                duration: None,
                keypad_disabled: true
            }
        );
        assert!(l.keypad_disabled());
    }
}
