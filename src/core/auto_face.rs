//! Automatic face recognition's own budget (B-6.2, issue 13 item 8).
//!
//! The camera starts a recognition whenever it sees someone approach. A
//! neighbour, a courier or an attacker's printed photo walking past must
//! not count as failed verifications of the lock (B-7.1): that would let
//! any passer-by start lockouts and sound the lockout alarm. So automatic
//! attempts are accounted here, apart from the keypad's guess budget:
//!
//! ```text
//!  automatic failure ─► 3 within 10 min ─► automatic recognition paused
//!                                          10, 20, 40 … min (cap 2 h)
//!  any success ─► pauses reset             a manual attempt (touch the keypad)
//!                                          still works and counts like any
//!                                          credential (B-7.1)
//! ```
//!
//! Kept in memory only: a restart (which an attacker outside cannot cause
//! while the battery holds) starts it over, and it can only ever pause
//! automatic recognition, never open anything.
use core::time::Duration;
use std::collections::VecDeque;

use super::time::Instant;

/// Automatic failures within [`WINDOW`] that pause automatic recognition.
pub const FAILURES: usize = 3;
pub const WINDOW: Duration = Duration::from_secs(10 * 60);
/// The first pause; each consecutive one doubles, up to [`PAUSE_CAP`].
pub const PAUSE: Duration = Duration::from_secs(10 * 60);
pub const PAUSE_CAP: Duration = Duration::from_secs(2 * 3600);

#[derive(Debug, Clone, Default)]
pub struct AutoFace {
    failures: VecDeque<Instant>,
    paused_until: Option<Instant>,
    /// Pauses since the last success.
    pauses: u32,
}

impl AutoFace {
    /// Whether the camera may start a recognition by itself now.
    pub fn allowed(&self, now: Instant) -> bool {
        self.paused_until.is_none_or(|t| now >= t)
    }

    /// One automatic attempt failed. Returns the pause it started, if any.
    pub fn fail(&mut self, now: Instant) -> Option<Duration> {
        while self.failures.front().is_some_and(|t| *t + WINDOW <= now) {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() < FAILURES {
            return None;
        }
        self.failures.clear();
        let pause = PAUSE
            .saturating_mul(1u32 << self.pauses.min(8))
            .min(PAUSE_CAP);
        self.pauses = self.pauses.saturating_add(1);
        self.paused_until = Some(now + pause);
        Some(pause)
    }

    /// Someone was recognised (or unlocked otherwise): the pauses were not
    /// an attack on this face after all.
    pub fn succeeded(&mut self) {
        *self = AutoFace::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_pause_and_pauses_double() {
        let mut a = AutoFace::default();
        let t = Instant(0);
        assert_eq!(a.fail(t), None);
        assert_eq!(a.fail(t), None);
        assert_eq!(a.fail(t), Some(PAUSE));
        assert!(!a.allowed(t.after(PAUSE - Duration::from_secs(1))));
        let t = t.after(PAUSE);
        assert!(a.allowed(t));
        for _ in 0..2 {
            a.fail(t);
        }
        assert_eq!(a.fail(t), Some(PAUSE * 2));
        a.succeeded();
        assert!(a.allowed(t));
    }

    #[test]
    fn spread_failures_do_not_pause() {
        let mut a = AutoFace::default();
        for i in 0..10u64 {
            assert_eq!(a.fail(Instant(i * 6 * 60_000)), None);
        }
    }
}
