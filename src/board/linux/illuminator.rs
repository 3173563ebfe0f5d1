//! The board's IR illuminator (`outputs.ir_illuminator`), shared by
//! everything that needs light in front of the door:
//!
//! ```text
//!  face attempt (touch, motion, SET) ─┐ hold for as long as the camera looks
//!  face enrolment                     ├──► Illuminator ──► the LED line
//!  IR camera liveness grab            ┘ hold for one frame
//! ```
//!
//! The line is lit while at least one [`Hold`] lives and switched off when
//! the last is dropped, so the IR camera's short grab in the middle of an
//! attempt does not put the light out under the attempt (issue 17 item 6:
//! a manual face attempt on a dark porch needs the light on from its first
//! frame). An LED left on drains the battery: a failed switch-off is
//! logged as an error.
use std::sync::{Arc, Mutex};

use embedded_hal::digital::OutputPin;

/// A shared light on an output pin; clones light the same pin.
pub struct Illuminator<P> {
    state: Arc<Mutex<State<P>>>,
}

struct State<P> {
    pin: P,
    holds: u32,
}

impl<P> Clone for Illuminator<P> {
    fn clone(&self) -> Self {
        Illuminator {
            state: self.state.clone(),
        }
    }
}

impl<P> std::fmt::Debug for Illuminator<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Illuminator").finish_non_exhaustive()
    }
}

/// The light stays on while this lives.
#[must_use = "the light goes out when the hold is dropped"]
pub struct Hold<P: OutputPin> {
    state: Arc<Mutex<State<P>>>,
}

impl<P: OutputPin> std::fmt::Debug for Hold<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold").finish_non_exhaustive()
    }
}

impl<P: OutputPin> Illuminator<P> {
    /// `pin` is switched off now: a light nobody holds is dark.
    pub fn new(mut pin: P) -> Result<Self, P::Error> {
        pin.set_low()?;
        Ok(Illuminator {
            state: Arc::new(Mutex::new(State { pin, holds: 0 })),
        })
    }

    /// Light it (if it is not lit already) until the hold is dropped.
    pub fn hold(&self) -> Result<Hold<P>, P::Error> {
        let mut s = lock(&self.state);
        if s.holds == 0 {
            s.pin.set_high()?;
        }
        s.holds += 1;
        Ok(Hold {
            state: self.state.clone(),
        })
    }
}

impl<P: OutputPin> Drop for Hold<P> {
    fn drop(&mut self) {
        let mut s = lock(&self.state);
        s.holds = s.holds.saturating_sub(1);
        if s.holds == 0 {
            if let Err(e) = s.pin.set_low() {
                tracing::error!(error = ?e, "IR illuminator did not switch off");
            }
        }
    }
}

fn lock<P>(state: &Mutex<State<P>>) -> std::sync::MutexGuard<'_, State<P>> {
    // Plain data behind the lock: a panic elsewhere leaves it usable.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A face attempt or enrolment lights the illuminator for as long as it
/// looks at frames; a light that cannot be lit is logged and the attempt
/// goes on in the dark.
impl<P: OutputPin + Send + 'static> crate::board::CameraLight for Illuminator<P>
where
    P::Error: Send,
{
    fn light(&self) -> Box<dyn Send> {
        match self.hold() {
            Ok(h) => Box::new(h),
            Err(e) => {
                tracing::error!(error = ?e, "IR illuminator could not be lit for a face attempt");
                Box::new(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pin that records every level driven.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<bool>>>);

    impl embedded_hal::digital::ErrorType for Recorder {
        type Error = core::convert::Infallible;
    }

    impl OutputPin for Recorder {
        fn set_low(&mut self) -> Result<(), Self::Error> {
            self.0.lock().unwrap().push(false);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Self::Error> {
            self.0.lock().unwrap().push(true);
            Ok(())
        }
    }

    #[test]
    fn lit_while_any_hold_lives_and_dark_after_the_last() {
        let rec = Recorder::default();
        let lamp = Illuminator::new(rec.clone()).unwrap();
        let levels = || rec.0.lock().unwrap().clone();
        assert_eq!(levels(), [false], "dark at start");
        let attempt = lamp.hold().unwrap();
        assert_eq!(levels(), [false, true]);
        // The IR camera's grab in the middle of the attempt.
        let grab = lamp.clone().hold().unwrap();
        drop(grab);
        assert_eq!(levels(), [false, true], "the grab's end leaves it lit");
        drop(attempt);
        assert_eq!(levels(), [false, true, false]);
    }
}
