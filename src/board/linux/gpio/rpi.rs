//! The GPIO provider for a Raspberry Pi: `rppal`, which a board file
//! chooses with `gpio_provider = "rppal"` (build with the `board-rpi`
//! feature). The Pi is otherwise the Linux board like any other: same
//! board file, same devices, same `board = "linux"`.
//!
//! On a Pi the board file names lines `GPIO<BCM number>` (`GPIO17`), the
//! numbering printed on every Pi pin-out; `chip` is ignored. Inputs get
//! rppal's asynchronous interrupts (its own thread, edges from the kernel,
//! optional debounce), which we forward into the same `(Signal, asserted)`
//! channel the character-device provider feeds, so everything above the
//! GPIO layer is the same on a Pi and on any other SoC.
//!
//! Driven by rppal's interrupt thread (one per input pin); outputs are
//! plain register writes.
use std::collections::BTreeMap;
use std::time::Duration;

use rppal::gpio::{Gpio, InputPin, Level, OutputPin, Trigger};
use tokio::sync::mpsc;

use super::{signals, GpioError, GpioInputs, OutputLine};
use crate::board::linux::config::{bcm_number, Inputs, Line};

fn rpi_err(key: &str, line: &Line, detail: impl ToString) -> GpioError {
    GpioError::Rpi {
        key: key.to_string(),
        line: line.name.clone(),
        detail: detail.to_string(),
    }
}

fn pin(key: &str, line: &Line) -> Result<rppal::gpio::Pin, GpioError> {
    let n = bcm_number(&line.name)
        .ok_or_else(|| rpi_err(key, line, "is not a Raspberry Pi line name (GPIO0..GPIO53)"))?;
    Gpio::new()
        .and_then(|g| g.get(n))
        .map_err(|e| rpi_err(key, line, e))
}

/// One output pin; active-low lines are inverted here.
pub(super) struct RpiOutput {
    pin: OutputPin,
    active_low: bool,
}

impl RpiOutput {
    pub(super) fn request(key: &str, line: &Line) -> Result<Self, GpioError> {
        // Inactive from the first instant: low, or high when active-low.
        let pin = if line.active_low {
            pin(key, line)?.into_output_high()
        } else {
            pin(key, line)?.into_output_low()
        };
        Ok(RpiOutput {
            pin,
            active_low: line.active_low,
        })
    }
}

impl OutputLine for RpiOutput {
    fn set(&mut self, on: bool) -> Result<(), GpioError> {
        if on != self.active_low {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        }
        Ok(())
    }
}

/// Whether a level means "asserted" for a line.
fn asserted(level: Level, active_low: bool) -> bool {
    (level == Level::High) != active_low
}

/// Request every input of the board file as rppal input pins with
/// interrupts on both edges.
pub(super) fn request_inputs(inputs: &Inputs) -> Result<GpioInputs, GpioError> {
    let (tx, events) = mpsc::channel(64);
    let mut initial = BTreeMap::new();
    let mut pins: Vec<InputPin> = Vec::new();
    for (signal, key, line) in signals(inputs) {
        let mut p: InputPin = pin(key, line)?.into_input();
        let active_low = line.active_low;
        initial.insert(signal, asserted(p.read(), active_low));
        let debounce =
            (line.debounce_ms > 0).then(|| Duration::from_millis(line.debounce_ms.into()));
        let tx = tx.clone();
        p.set_async_interrupt(Trigger::Both, debounce, move |ev| {
            let level = if ev.trigger == Trigger::RisingEdge {
                Level::High
            } else {
                Level::Low
            };
            // rppal's interrupt thread is not a tokio thread: blocking
            // send is right here and applies back-pressure to it alone.
            let _ = tx.blocking_send((signal, asserted(level, active_low)));
        })
        .map_err(|e| rpi_err(key, line, e))?;
        pins.push(p);
    }
    Ok(GpioInputs {
        events,
        initial,
        // The pins keep their interrupt threads running.
        _watchers: Box::new(pins),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_low_inverts() {
        assert!(asserted(Level::High, false));
        assert!(!asserted(Level::High, true));
        assert!(asserted(Level::Low, true));
    }

    #[test]
    fn requesting_a_pin_off_a_pi_is_a_clear_error() {
        // This machine is no Raspberry Pi: rppal refuses, and we name the key.
        let line = Line {
            name: "GPIO17".into(),
            chip: None,
            active_low: false,
            debounce_ms: 0,
        };
        let err = RpiOutput::request("outputs.buzzer", &line)
            .err()
            .expect("not a Pi")
            .to_string();
        assert!(
            err.contains("outputs.buzzer") && err.contains("GPIO17"),
            "{err}"
        );
    }
}
