//! Remote commands expire: the lock-issued challenge, sans-IO.
//!
//! A broker carries commands and may hold them back — a malicious one on
//! purpose, an honest one after a Wi-Fi outage — so a sealed `Unlock` must
//! not open the door minutes or hours after the owner pressed the button.
//! The app's counter stops a replay but not a delay. Every remote command
//! therefore answers a **challenge**: 16 random bytes the lock publishes
//! (retained, in clear: it is not a secret, only unpredictable) on
//! `<prefix>/<serial>/challenge` and rotates. The app seals the challenge
//! inside the command (`envelope.rs`); the lock accepts a command only
//! while the challenge it answers is still live:
//!
//! ```text
//!  lock's monotonic clock ──────────────────────────────────────────────────────►
//!  connect: reset ── c1 ──(period)── c2 ──(period)── c3 ── …   lost/reconnect: reset ── c7 …
//!  live:          {c1}          {c2, c1}        {c3, c2}                      {c7}
//!  a command answering c accepted  ⇔  c ∈ live  ∧  age(c) ≤ max_age
//! ```
//!
//! * **No wall clock needed.** Age is measured on the lock's monotonic
//!   clock from the moment the lock issued the challenge, so it works with
//!   the wall clock unknown, and neither the app's clock nor NTP can move
//!   it. A command is accepted at most `max_age` after the lock issued the
//!   challenge it answers: the app cannot have sealed it earlier, because
//!   the challenge did not exist before (16 random bytes cannot be guessed).
//! * **Reset at every broker connection and at start.** Challenges live in
//!   memory only; a new session (or a restarted daemon) forgets every
//!   earlier one. So a command published while the lock was away, and
//!   delivered when it is back, is refused whatever the time — this also
//!   covers a monotonic clock that stood still while the board was
//!   suspended.
//! * A refused command gets its own sealed answer (`ErrorCode::Stale`) and
//!   event-log reason (`AppRefusal::Stale`), so the app can tell "read the
//!   new challenge and send again" from a refusal.
//!
//! Why not the wall clock alone (a validity time sealed in the command,
//! checked against the lock's trusted clock): the lock's clock may be
//! unknown (issue 13: untrusted until NTP or an owner's time sync), and
//! clock-only freshness must then fail closed — the owner could not even
//! send the remote time sync that would fix it; it also trusts the phone's
//! clock, and bounds the delay only as well as the two clocks agree. The
//! challenge needs neither.
use std::time::Duration;

use rand_core::CryptoRngCore;

use crate::core::time::Instant;

/// Bytes of a challenge.
pub const CHALLENGE_LEN: usize = 16;
/// Default `[remote] command_max_age_s`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);

/// One challenge: random bytes issued by the lock.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Challenge(pub [u8; CHALLENGE_LEN]);

impl Challenge {
    /// A fresh random challenge.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut b = [0u8; CHALLENGE_LEN];
        rng.fill_bytes(&mut b);
        Challenge(b)
    }

    /// The payload of the challenge topic: lowercase hex, 32 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse a challenge topic payload (surrounding whitespace allowed).
    pub fn from_hex(s: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(s).ok()?.trim();
        let mut b = [0u8; CHALLENGE_LEN];
        hex::decode_to_slice(text, &mut b).ok()?;
        Some(Challenge(b))
    }
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Challenge({})", self.to_hex())
    }
}

/// Why a command is not fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// The command carries no challenge (an app that predates freshness).
    #[error("the command carries no challenge from the lock; update the app")]
    Missing,
    /// Not a live challenge of this connection: held back across a
    /// reconnect or restart, or rotated out (two periods old).
    #[error("command expired: it answers a challenge the lock no longer accepts; send it again")]
    Unknown,
    /// A live challenge, but older than the maximum age (the lock's loop
    /// was late to rotate it).
    #[error("command expired: its challenge is {} s old, over the {} s limit; send it again", .age.as_secs(), .max_age.as_secs())]
    TooOld { age: Duration, max_age: Duration },
}

/// The live challenges of one broker connection.
#[derive(Debug, Clone)]
pub struct Challenges {
    max_age: Duration,
    /// The newest (what the topic shows) and the one before it, with the
    /// instant each was issued.
    current: Option<(Challenge, Instant)>,
    previous: Option<(Challenge, Instant)>,
}

impl Challenges {
    /// Nothing live: every command is stale until [`Challenges::reset`].
    pub fn new(max_age: Duration) -> Self {
        Challenges {
            max_age: max_age.max(Duration::from_secs(1)),
            current: None,
            previous: None,
        }
    }

    /// The longest a command may take from the challenge's issue to the
    /// lock.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Rotation period: half the maximum age, so the challenge an app
    /// reads is at least one period from being refused.
    pub fn period(&self) -> Duration {
        self.max_age / 2
    }

    /// The newest challenge, for the topic.
    pub fn current(&self) -> Option<Challenge> {
        self.current.map(|(c, _)| c)
    }

    /// Forget every challenge and issue a new one (a new broker
    /// connection): commands sealed before are stale from now on.
    pub fn reset(&mut self, now: Instant, rng: &mut impl CryptoRngCore) -> Challenge {
        self.previous = None;
        let c = Challenge::generate(rng);
        self.current = Some((c, now));
        c
    }

    /// Issue a new challenge; the current one stays live one more period.
    pub fn rotate(&mut self, now: Instant, rng: &mut impl CryptoRngCore) -> Challenge {
        self.previous = self.current;
        let c = Challenge::generate(rng);
        self.current = Some((c, now));
        c
    }

    /// When the next rotation is due; `None` before the first challenge.
    pub fn next_rotation(&self) -> Option<Instant> {
        self.current.map(|(_, at)| at + self.period())
    }

    /// Is `answered` (from a verified command) live at `now`?
    pub fn check(&self, answered: &Challenge, now: Instant) -> Result<(), Stale> {
        let issued = [self.current, self.previous]
            .into_iter()
            .flatten()
            .find(|(c, _)| c == answered)
            .map(|(_, at)| at)
            .ok_or(Stale::Unknown)?;
        let age = now.since(issued);
        if age > self.max_age {
            return Err(Stale::TooOld {
                age,
                max_age: self.max_age,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn at(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    #[test]
    fn nothing_is_fresh_before_the_first_challenge() {
        let ch = Challenges::new(DEFAULT_MAX_AGE);
        let c = Challenge::generate(&mut OsRng);
        assert_eq!(ch.check(&c, at(0)), Err(Stale::Unknown));
        assert_eq!(ch.next_rotation(), None);
    }

    /// A command held back by the broker for 10 minutes while the lock
    /// stayed connected: the lock rotated meanwhile, so it is refused; a
    /// fresh one answering the newest challenge works.
    #[test]
    fn a_command_held_back_ten_minutes_is_stale() {
        let mut ch = Challenges::new(DEFAULT_MAX_AGE);
        let first = ch.reset(at(0), &mut OsRng);
        assert_eq!(ch.check(&first, at(1)), Ok(()));
        // The service rotates every period.
        let mut t = 0;
        while t < 600 {
            t += ch.period().as_secs();
            ch.rotate(at(t), &mut OsRng);
        }
        assert_eq!(ch.check(&first, at(600)), Err(Stale::Unknown));
        let fresh = ch.current().expect("issued");
        assert_eq!(ch.check(&fresh, at(601)), Ok(()));
    }

    #[test]
    fn the_previous_challenge_stays_live_one_period_and_never_past_max_age() {
        let mut ch = Challenges::new(Duration::from_secs(60));
        let a = ch.reset(at(0), &mut OsRng);
        let b = ch.rotate(at(30), &mut OsRng);
        // An app that read `a` just before the rotation still gets through.
        assert_eq!(ch.check(&a, at(31)), Ok(()));
        assert_eq!(ch.check(&a, at(60)), Ok(()));
        // The service was late to rotate again: `a` is too old anyway.
        assert!(matches!(ch.check(&a, at(61)), Err(Stale::TooOld { .. })));
        assert_eq!(ch.check(&b, at(61)), Ok(()));
        ch.rotate(at(62), &mut OsRng);
        assert_eq!(ch.check(&a, at(62)), Err(Stale::Unknown));
        assert_eq!(ch.check(&b, at(62)), Ok(()));
        assert_eq!(ch.next_rotation(), Some(at(92)));
    }

    /// A reconnect forgets everything: a command sealed before the lock
    /// went away is refused however quickly the lock comes back.
    #[test]
    fn a_reconnect_forgets_every_earlier_challenge() {
        let mut ch = Challenges::new(DEFAULT_MAX_AGE);
        let a = ch.reset(at(0), &mut OsRng);
        let b = ch.rotate(at(30), &mut OsRng);
        let c = ch.reset(at(31), &mut OsRng);
        assert_eq!(ch.check(&a, at(31)), Err(Stale::Unknown));
        assert_eq!(ch.check(&b, at(31)), Err(Stale::Unknown));
        assert_eq!(ch.check(&c, at(31)), Ok(()));
    }

    #[test]
    fn hex_round_trip() {
        let c = Challenge::generate(&mut OsRng);
        assert_eq!(Challenge::from_hex(c.to_hex().as_bytes()), Some(c));
        assert_eq!(
            Challenge::from_hex(b"  00112233445566778899aabbccddeeff\n").map(|c| c.0[15]),
            Some(0xff)
        );
        assert_eq!(Challenge::from_hex(b"0011"), None);
        assert_eq!(Challenge::from_hex(&[0xff, 0xfe]), None);
    }

    /// Found by mutation testing (docs/mutants.md): the configured maximum
    /// age is what the lock reports, never below one second, and the
    /// rotation period is half of it.
    #[test]
    fn the_maximum_age_is_kept_and_never_below_one_second() {
        let c = Challenges::new(Duration::from_secs(60));
        assert_eq!(c.max_age(), Duration::from_secs(60));
        assert_eq!(c.period(), Duration::from_secs(30));
        assert_eq!(
            Challenges::new(Duration::ZERO).max_age(),
            Duration::from_secs(1)
        );
    }
}
