//! The engine's two clocks, as plain values the caller passes in.
//!
//! * [`Instant`] is monotonic milliseconds on the daemon's clock. Timers
//!   (keypad sleep, lockout, pairing window, auto-lock) use only this.
//! * [`WallTime`] is UTC seconds since the Unix epoch, used for validity
//!   windows and event stamps. It may be unknown after a power loss
//!   (`Now::wall == None`); time-windowed credentials are then refused
//!   rather than guessed.
//!
//! The engine never reads a clock: both arrive with every call in [`Now`].
use core::time::Duration;
use serde::{Deserialize, Serialize};

/// Monotonic time in milliseconds since an arbitrary origin (the daemon's
/// start). Only differences are meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating instead of overflowing.
    pub fn after(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.after(d)
    }
}

/// Wall-clock UTC, seconds since the Unix epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct WallTime(pub i64);

/// Both clocks at the moment of a call into the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    /// `None` when the wall clock is not known to be right (no RTC, no NTP,
    /// no owner time sync since power-up).
    pub wall: Option<WallTime>,
}

impl Now {
    pub fn new(mono_ms: u64, wall: Option<i64>) -> Self {
        Now {
            mono: Instant(mono_ms),
            wall: wall.map(WallTime),
        }
    }
}

/// A validity window in wall-clock time: `from` inclusive, `until`
/// exclusive. `None` on either side means unbounded on that side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Validity {
    pub from: Option<WallTime>,
    pub until: Option<WallTime>,
}

impl Validity {
    pub const ALWAYS: Validity = Validity {
        from: None,
        until: None,
    };

    pub fn is_unbounded(&self) -> bool {
        self.from.is_none() && self.until.is_none()
    }

    /// Whether the window admits `wall`. A bounded window with an unknown
    /// wall clock admits nothing: the lock fails closed.
    pub fn admits(&self, wall: Option<WallTime>) -> bool {
        if self.is_unbounded() {
            return true;
        }
        let Some(t) = wall else { return false };
        self.from.is_none_or(|f| t >= f) && self.until.is_none_or(|u| t < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_window_refuses_unknown_wall_clock() {
        let v = Validity {
            from: Some(WallTime(100)),
            until: None,
        };
        assert!(!v.admits(None));
        assert!(Validity::ALWAYS.admits(None));
    }

    #[test]
    fn window_is_from_inclusive_until_exclusive() {
        let v = Validity {
            from: Some(WallTime(100)),
            until: Some(WallTime(200)),
        };
        assert!(!v.admits(Some(WallTime(99))));
        assert!(v.admits(Some(WallTime(100))));
        assert!(v.admits(Some(WallTime(199))));
        assert!(!v.admits(Some(WallTime(200))));
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant(u64::MAX - 1);
        assert_eq!(t.after(Duration::from_secs(5)), Instant(u64::MAX));
        assert_eq!(Instant(5).since(Instant(10)), Duration::ZERO);
    }
}
