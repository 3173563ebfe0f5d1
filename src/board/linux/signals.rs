//! What the board's switches mean to the engine.
//!
//! Pure mapping from GPIO levels/edges to engine inputs, kept apart from
//! the GPIO plumbing so the rules are testable without a kernel.
use crate::board::drivers::buttons::SetButton;
use crate::core::input::{BoltPosition, DoorPosition, SetPress, TamperState};
use crate::core::time::Instant;
use crate::core::Input;

use super::gpio::Signal;

/// Levels of the signals whose meaning depends on more than one edge.
#[derive(Debug, Default, Clone)]
pub struct SignalState {
    pub bolt_extended: bool,
    pub bolt_retracted: bool,
    pub set: SetButton,
}

impl SignalState {
    pub fn bolt(&self) -> BoltPosition {
        match (self.bolt_extended, self.bolt_retracted) {
            (true, false) => BoltPosition::Extended,
            (false, true) => BoltPosition::Retracted,
            // Neither, or both (a broken switch): not at a known end.
            _ => BoltPosition::Between,
        }
    }

    /// The engine inputs one edge produces.
    pub fn edge(&mut self, now: Instant, signal: Signal, asserted: bool) -> Vec<Input> {
        match signal {
            Signal::BoltExtended | Signal::BoltRetracted => {
                let before = self.bolt();
                if signal == Signal::BoltExtended {
                    self.bolt_extended = asserted;
                } else {
                    self.bolt_retracted = asserted;
                }
                let after = self.bolt();
                if after == before {
                    vec![]
                } else {
                    vec![Input::Bolt(after)]
                }
            }
            Signal::DoorClosed => vec![Input::Door(if asserted {
                DoorPosition::Closed
            } else {
                DoorPosition::Open
            })],
            Signal::TamperIntact => vec![Input::Tamper(if asserted {
                TamperState::Intact
            } else {
                TamperState::Opened
            })],
            Signal::SetButton => self
                .set
                .edge(now, asserted)
                .map(|p: SetPress| vec![Input::Set(p)])
                .unwrap_or_default(),
            Signal::LockButton if asserted => vec![Input::LockButton],
            Signal::InsideHandle if asserted => vec![Input::InsideHandle],
            Signal::MechanicalKey if asserted => vec![Input::MechanicalKey],
            Signal::KeypadWake if asserted => vec![Input::Touch],
            // External power changes are folded into a battery reading by
            // the battery task.
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bolt_position_comes_from_both_switches() {
        let mut s = SignalState::default();
        let t = Instant(0);
        assert_eq!(
            s.edge(t, Signal::BoltExtended, true),
            vec![Input::Bolt(BoltPosition::Extended)]
        );
        assert_eq!(
            s.edge(t, Signal::BoltExtended, false),
            vec![Input::Bolt(BoltPosition::Between)]
        );
        assert_eq!(
            s.edge(t, Signal::BoltRetracted, true),
            vec![Input::Bolt(BoltPosition::Retracted)]
        );
        // A second switch closing too means a fault: not a known end.
        assert_eq!(
            s.edge(t, Signal::BoltExtended, true),
            vec![Input::Bolt(BoltPosition::Between)]
        );
    }

    #[test]
    fn buttons_fire_on_press_only() {
        let mut s = SignalState::default();
        let t = Instant(0);
        assert_eq!(s.edge(t, Signal::LockButton, true), vec![Input::LockButton]);
        assert!(s.edge(t, Signal::LockButton, false).is_empty());
        assert_eq!(s.edge(t, Signal::KeypadWake, true), vec![Input::Touch]);
        assert_eq!(
            s.edge(t, Signal::TamperIntact, false),
            vec![Input::Tamper(TamperState::Opened)]
        );
        assert_eq!(
            s.edge(t, Signal::DoorClosed, false),
            vec![Input::Door(DoorPosition::Open)]
        );
    }

    #[test]
    fn set_button_short_press() {
        let mut s = SignalState::default();
        assert!(s.edge(Instant(0), Signal::SetButton, true).is_empty());
        assert_eq!(
            s.edge(Instant(500), Signal::SetButton, false),
            vec![Input::Set(SetPress::Short)]
        );
    }
}
