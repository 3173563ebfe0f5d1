//! Rate limit on refused command frames: a token bucket charged by every
//! refusal, checked before a frame costs anything (no store read, no AEAD,
//! no engine input). Pure: the caller passes the monotonic time.
//!
//! ```text
//!  frame ─► before(now) ── bucket has a token ──► Check ─► gate ─► refused? ─► refused(now): take a token
//!              │                                                                 log it unless in a burst
//!              └─ bucket empty ─► Drop { first_of_burst }  (unanswered, counted; the first drop of a
//!                                  burst logs one RateLimited, the rest log nothing)
//!  burst ends when the bucket is full again (the flood stopped for CAPACITY / RATE seconds)
//! ```
//!
//! Figures ([`CAPACITY`], [`RATE_PER_S`]): 10 refusals/s sustained, burst 20.
//! An honest app produces a refusal now and then (a reinstalled app with a
//! stale counter, a revoked key retrying, a guest outside its window) —
//! far below 20 in a row. A flood from someone with write access to the
//! command topic is held to 10 checks/s (each at most one counter read
//! and one X25519; the key lookup is the published snapshot, no store
//! read), and to at most 20 individual `app_refused` entries plus one
//! `rate_limited` per burst in the event log, however long it lasts, so it
//! cannot push real history out of the log. While a burst lasts the bucket
//! still admits 10 frames/s, so a genuine command sent during a flood gets
//! through after a few tries instead of never. The MQTT service asks the
//! bucket before it checks a frame; the BLE link
//! ([`Link::with_refusal_limit`](super::Link::with_refusal_limit)) asks it
//! before a refusal reaches the event log.
use crate::core::time::Instant;

/// Refusals allowed in a row before frames are dropped.
pub const CAPACITY: u32 = 20;
/// Refusals allowed per second once the burst is used up.
pub const RATE_PER_S: u32 = 10;

/// A token bucket in milli-tokens (integer arithmetic, no drift).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity_milli: u64,
    rate_per_s: u64,
    milli: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens refilled at `rate_per_s`.
    pub fn new(capacity: u32, rate_per_s: u32, now: Instant) -> Self {
        let capacity_milli = u64::from(capacity.max(1)) * 1000;
        TokenBucket {
            capacity_milli,
            rate_per_s: u64::from(rate_per_s.max(1)),
            milli: capacity_milli,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // A clock that went backwards refills nothing (and moves no mark).
        let elapsed_ms = now.as_millis().saturating_sub(self.last.as_millis());
        if elapsed_ms == 0 {
            return;
        }
        // rate tokens/s = rate milli-tokens/ms.
        let gained = elapsed_ms.saturating_mul(self.rate_per_s);
        self.milli = self.milli.saturating_add(gained).min(self.capacity_milli);
        self.last = now;
    }

    /// Is at least one token there at `now`?
    pub fn has_token(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.milli >= 1000
    }

    /// Take one token (none left: stays empty).
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.milli = self.milli.saturating_sub(1000);
    }

    /// Is the bucket full at `now`?
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.milli == self.capacity_milli
    }
}

/// What to do with an incoming frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Check it. `ended_burst` is the number of frames dropped in the burst
    /// that just ended, if one did (for the log line).
    Check { ended_burst: Option<u64> },
    /// Drop it unanswered. `first_of_burst`: log one `RateLimited`.
    Drop { first_of_burst: bool },
}

/// The bucket plus the burst state (one `RateLimited` per burst).
#[derive(Debug, Clone)]
pub struct RefusalLimiter {
    bucket: TokenBucket,
    /// `Some(dropped so far)` while a burst lasts.
    burst: Option<u64>,
}

impl RefusalLimiter {
    /// [`CAPACITY`] and [`RATE_PER_S`], full at `now`.
    pub fn new(now: Instant) -> Self {
        Self::with(CAPACITY, RATE_PER_S, now)
    }

    pub fn with(capacity: u32, rate_per_s: u32, now: Instant) -> Self {
        RefusalLimiter {
            bucket: TokenBucket::new(capacity, rate_per_s, now),
            burst: None,
        }
    }

    /// Before looking at a frame.
    pub fn before(&mut self, now: Instant) -> Decision {
        let mut ended_burst = None;
        if self.burst.is_some() && self.bucket.is_full(now) {
            ended_burst = self.burst.take();
        }
        if self.bucket.has_token(now) {
            return Decision::Check { ended_burst };
        }
        match &mut self.burst {
            Some(dropped) => {
                *dropped += 1;
                Decision::Drop {
                    first_of_burst: false,
                }
            }
            None => {
                self.burst = Some(1);
                Decision::Drop {
                    first_of_burst: true,
                }
            }
        }
    }

    /// A checked frame was refused: charge it. `true` when this refusal is
    /// to be logged on its own (not inside a burst, whose `RateLimited`
    /// entry stands for everything refused or dropped while it lasts).
    pub fn refused(&mut self, now: Instant) -> bool {
        self.bucket.take(now);
        self.burst.is_none()
    }

    /// Is a burst going on?
    pub fn in_burst(&self) -> bool {
        self.burst.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn bucket_refills_at_its_rate_up_to_capacity() {
        let mut b = TokenBucket::new(3, 10, t(0));
        for _ in 0..3 {
            assert!(b.has_token(t(0)));
            b.take(t(0));
        }
        assert!(!b.has_token(t(0)));
        assert!(!b.has_token(t(99)), "10/s: one token per 100 ms");
        assert!(b.has_token(t(100)));
        b.take(t(100));
        assert!(!b.has_token(t(100)));
        // A long pause refills to capacity, not beyond.
        assert!(b.is_full(t(1_000_000)));
        for _ in 0..3 {
            b.take(t(1_000_000));
        }
        assert!(!b.has_token(t(1_000_000)));
        // Time going backwards gives nothing.
        assert!(!b.has_token(t(5)));
    }

    #[test]
    fn honest_refusals_pass_and_are_logged_individually() {
        let mut l = RefusalLimiter::new(t(0));
        for i in 0..CAPACITY {
            assert_eq!(
                l.before(t(u64::from(i))),
                Decision::Check { ended_burst: None }
            );
            assert!(l.refused(t(u64::from(i))), "refusal {i} logged");
        }
        assert!(!l.in_burst());
    }

    #[test]
    fn a_flood_is_dropped_with_one_rate_limited_per_burst() {
        let mut l = RefusalLimiter::new(t(0));
        let mut logged = 0;
        let mut rate_limited = 0;
        let mut dropped = 0;
        let mut checked = 0;
        // 1000 junk frames a second for 10 s, every one refused if checked.
        for ms in 0..10_000u64 {
            match l.before(t(ms)) {
                Decision::Check { ended_burst } => {
                    assert_eq!(ended_burst, None, "the flood never pauses");
                    checked += 1;
                    if l.refused(t(ms)) {
                        logged += 1;
                    }
                }
                Decision::Drop { first_of_burst } => {
                    dropped += 1;
                    if first_of_burst {
                        rate_limited += 1;
                    }
                }
            }
        }
        assert_eq!(logged, CAPACITY, "only the first burst is logged per frame");
        assert_eq!(rate_limited, 1, "one RateLimited for the whole flood");
        // 20 at once, then 10 per second for the remaining ~10 s.
        assert!(
            (CAPACITY + 99..=CAPACITY + 100).contains(&checked),
            "{checked}"
        );
        assert_eq!(checked + dropped, 10_000);

        // Quiet for CAPACITY / RATE seconds: the burst ends, and reports
        // how many frames it dropped.
        let quiet = 10_000 + u64::from(CAPACITY / RATE_PER_S) * 1000;
        assert_eq!(
            l.before(t(quiet)),
            Decision::Check {
                ended_burst: Some(u64::from(dropped))
            }
        );
        assert!(l.refused(t(quiet)), "logged again after the burst");
        assert!(!l.in_burst());
    }

    #[test]
    fn a_second_flood_is_a_second_burst() {
        let mut l = RefusalLimiter::with(2, 1, t(0));
        let mut firsts = 0;
        for round in [0u64, 100_000] {
            for ms in round..round + 10 {
                match l.before(t(ms)) {
                    Decision::Check { .. } => {
                        l.refused(t(ms));
                    }
                    Decision::Drop { first_of_burst } => firsts += u32::from(first_of_burst),
                }
            }
        }
        assert_eq!(firsts, 2);
    }
}
