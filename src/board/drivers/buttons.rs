//! Button timing: what a press *means*, from when it went down and up.
//!
//! * SET: released before 3 s = short press (menu, B-4.1); still held at
//!   3 s = long press (pairing mode, B-5.1), reported once, at the 3 s mark
//!   so the prompt comes while the finger is still on the button.
//! * SET held while the battery goes in (B-10.6): held for the whole 5 s
//!   after power-up = factory reset request.
//! * A keypad key held for `hold` = a held key (B-3.4, one-time mute).
//!
//! Pure and clock-free like the engine; the board passes `now` in and asks
//! for the next deadline.
use core::time::Duration;

use crate::core::input::SetPress;
use crate::core::time::Instant;

pub const SET_LONG_PRESS: Duration = Duration::from_secs(3);
pub const FACTORY_RESET_HOLD: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Clone)]
pub struct SetButton {
    pressed_at: Option<Instant>,
    long_reported: bool,
}

impl SetButton {
    /// An edge of the SET line.
    pub fn edge(&mut self, now: Instant, asserted: bool) -> Option<SetPress> {
        if asserted {
            if self.pressed_at.is_none() {
                self.pressed_at = Some(now);
                self.long_reported = false;
            }
            return None;
        }
        let pressed = self.pressed_at.take()?;
        if self.long_reported {
            return None;
        }
        // A release past 3 s whose deadline was missed is still long.
        Some(if now.since(pressed) >= SET_LONG_PRESS {
            SetPress::Long
        } else {
            SetPress::Short
        })
    }

    /// When [`SetButton::tick`] should be called next.
    pub fn deadline(&self) -> Option<Instant> {
        match self.pressed_at {
            Some(t) if !self.long_reported => Some(t + SET_LONG_PRESS),
            _ => None,
        }
    }

    pub fn tick(&mut self, now: Instant) -> Option<SetPress> {
        let t = self.pressed_at?;
        if !self.long_reported && now.since(t) >= SET_LONG_PRESS {
            self.long_reported = true;
            return Some(SetPress::Long);
        }
        None
    }
}

/// Decides the factory-reset request at power-up from SET's level samples
/// (the only place the board samples a level: there is no edge to wait for
/// when the button is already down at boot).
pub fn factory_reset_requested(held_at_boot: bool, released_after: Option<Duration>) -> bool {
    held_at_boot && released_after.is_none_or(|d| d >= FACTORY_RESET_HOLD)
}

/// Turns key down/up into "held" for one key at a time.
#[derive(Debug, Clone)]
pub struct HoldDetector<K> {
    hold: Duration,
    down: Option<(K, Instant, bool)>,
}

impl<K: Copy + PartialEq> HoldDetector<K> {
    pub fn new(hold: Duration) -> Self {
        HoldDetector { hold, down: None }
    }

    pub fn down(&mut self, key: K, now: Instant) {
        self.down = Some((key, now, false));
    }

    pub fn up(&mut self, key: K) {
        if matches!(self.down, Some((k, _, _)) if k == key) {
            self.down = None;
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.down {
            Some((_, t, false)) => Some(t + self.hold),
            _ => None,
        }
    }

    /// The key that has now been held long enough (reported once).
    pub fn tick(&mut self, now: Instant) -> Option<K> {
        match &mut self.down {
            Some((k, t, reported)) if !*reported && now.since(*t) >= self.hold => {
                *reported = true;
                Some(*k)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant(n)
    }

    #[test]
    fn short_press_is_reported_on_release() {
        let mut b = SetButton::default();
        assert_eq!(b.edge(ms(0), true), None);
        assert_eq!(b.deadline(), Some(ms(3000)));
        assert_eq!(b.edge(ms(800), false), Some(SetPress::Short));
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn long_press_is_reported_once_at_three_seconds() {
        let mut b = SetButton::default();
        b.edge(ms(0), true);
        assert_eq!(b.tick(ms(2999)), None);
        assert_eq!(b.tick(ms(3000)), Some(SetPress::Long));
        assert_eq!(b.tick(ms(3500)), None);
        assert_eq!(b.edge(ms(4000), false), None);
    }

    #[test]
    fn a_late_release_past_the_deadline_is_still_long() {
        let mut b = SetButton::default();
        b.edge(ms(0), true);
        assert_eq!(b.edge(ms(3200), false), Some(SetPress::Long));
    }

    #[test]
    fn factory_reset_needs_the_full_hold() {
        assert!(factory_reset_requested(true, None));
        assert!(factory_reset_requested(true, Some(Duration::from_secs(5))));
        assert!(!factory_reset_requested(true, Some(Duration::from_secs(2))));
        assert!(!factory_reset_requested(false, None));
    }

    #[test]
    fn hold_detector_reports_a_held_key_once() {
        let mut h = HoldDetector::new(Duration::from_millis(1500));
        h.down('0', ms(100));
        assert_eq!(h.deadline(), Some(ms(1600)));
        assert_eq!(h.tick(ms(1000)), None);
        assert_eq!(h.tick(ms(1600)), Some('0'));
        assert_eq!(h.tick(ms(2000)), None);
        h.up('0');
        assert_eq!(h.deadline(), None);
    }
}
