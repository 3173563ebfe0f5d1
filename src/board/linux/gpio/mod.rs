//! GPIO for the Linux board: the lock's input signals and output lines,
//! from one of two providers the board file chooses with `gpio_provider`.
//!
//! ```text
//!  board file (line names, active_low, debounce_ms, gpio_provider)
//!        │
//!        ├─ "cdev"  ─► cdev.rs: /dev/gpiochipN, uAPI v2, any SoC (default)
//!        └─ "rppal" ─► rpi.rs:  a Raspberry Pi through rppal (feature `board-rpi`)
//!                         │
//!  inputs:  GpioInputs  { events: (Signal, asserted) in kernel order, initial levels }
//!  outputs: GpioOutput  (embedded-hal OutputPin; starts inactive)
//! ```
//!
//! Everything above this module (signals, motor, keypad lights, buzzer,
//! IR illuminator) is the same whichever provider runs; only the line
//! names differ (`GPIO17` on a Pi). The board owns the requests: dropping
//! a [`GpioInputs`] stops its edge watchers, dropping a [`GpioOutput`]
//! releases its line. Nothing here polls: edges come from the kernel.
use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::sync::mpsc;

use super::config::{GpioProvider, Inputs, Line};

mod cdev;
#[cfg(feature = "board-rpi")]
mod rpi;

/// An input signal of the lock, as the board file names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    BoltExtended,
    BoltRetracted,
    DoorClosed,
    /// Asserted while the front panel is in place.
    TamperIntact,
    SetButton,
    LockButton,
    InsideHandle,
    MechanicalKey,
    KeypadWake,
    ExternalPower,
}

#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    #[error("gpio line `{line}` ({key}) not found on any chip")]
    NotFound { key: String, line: String },
    #[error("cannot request gpio line `{line}` on {chip}: {source}")]
    Request {
        line: String,
        chip: PathBuf,
        source: gpiocdev::Error,
    },
    #[error("the board file asks for the rppal GPIO provider, but latchd was built without the `board-rpi` feature")]
    ProviderNotBuilt,
    #[error("gpio line `{line}` ({key}): {detail}")]
    Rpi {
        key: String,
        line: String,
        detail: String,
    },
    #[error("gpio line `{line}`: {source}")]
    Io {
        line: String,
        source: gpiocdev::Error,
    },
}

impl embedded_hal::digital::Error for GpioError {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

/// What a provider's output line does.
trait OutputLine: Send {
    /// Drive the line to its active (`true`) or inactive level; the
    /// provider applies `active_low`.
    fn set(&mut self, on: bool) -> Result<(), GpioError>;
}

/// One output line, usable wherever an `embedded_hal` `OutputPin` is.
pub struct GpioOutput {
    line: Box<dyn OutputLine>,
}

impl std::fmt::Debug for GpioOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpioOutput").finish_non_exhaustive()
    }
}

impl GpioOutput {
    /// Request `line` as an output, initially inactive (a motor input, an
    /// LED or a buzzer starts off), from the board file's GPIO provider.
    pub fn request_with(provider: GpioProvider, key: &str, line: &Line) -> Result<Self, GpioError> {
        let line: Box<dyn OutputLine> = match provider {
            GpioProvider::Cdev => Box::new(cdev::CdevOutput::request(key, line)?),
            #[cfg(feature = "board-rpi")]
            GpioProvider::Rppal => Box::new(rpi::RpiOutput::request(key, line)?),
            #[cfg(not(feature = "board-rpi"))]
            GpioProvider::Rppal => return Err(GpioError::ProviderNotBuilt),
        };
        Ok(GpioOutput { line })
    }

    /// Request `line` as an output on the GPIO character device.
    pub fn request(key: &str, line: &Line) -> Result<Self, GpioError> {
        Self::request_with(GpioProvider::Cdev, key, line)
    }

    pub fn set(&mut self, on: bool) -> Result<(), GpioError> {
        self.line.set(on)
    }
}

impl embedded_hal::digital::ErrorType for GpioOutput {
    type Error = GpioError;
}

impl embedded_hal::digital::OutputPin for GpioOutput {
    fn set_low(&mut self) -> Result<(), GpioError> {
        self.set(false)
    }
    fn set_high(&mut self) -> Result<(), GpioError> {
        self.set(true)
    }
}

/// All input lines, with their edges arriving on one channel.
pub struct GpioInputs {
    /// (signal, asserted) in the order the kernel reported them.
    pub events: mpsc::Receiver<(Signal, bool)>,
    /// Levels at request time, for start-up state.
    pub initial: BTreeMap<Signal, bool>,
    /// What must live as long as the events flow (the character device's
    /// edge tasks, aborted on drop; rppal pins with their interrupt
    /// threads).
    _watchers: Box<dyn Send>,
}

impl std::fmt::Debug for GpioInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpioInputs")
            .field("initial", &self.initial)
            .finish_non_exhaustive()
    }
}

/// Every input signal with the board-file key and line that carry it.
fn signals(i: &Inputs) -> [(Signal, &'static str, &Line); 10] {
    [
        (
            Signal::BoltExtended,
            "inputs.bolt_extended",
            &i.bolt_extended,
        ),
        (
            Signal::BoltRetracted,
            "inputs.bolt_retracted",
            &i.bolt_retracted,
        ),
        (Signal::DoorClosed, "inputs.door_closed", &i.door_closed),
        (Signal::TamperIntact, "inputs.tamper", &i.tamper),
        (Signal::SetButton, "inputs.set_button", &i.set_button),
        (Signal::LockButton, "inputs.lock_button", &i.lock_button),
        (
            Signal::InsideHandle,
            "inputs.inside_handle",
            &i.inside_handle,
        ),
        (
            Signal::MechanicalKey,
            "inputs.mechanical_key",
            &i.mechanical_key,
        ),
        (Signal::KeypadWake, "inputs.keypad_wake", &i.keypad_wake),
        (
            Signal::ExternalPower,
            "inputs.external_power",
            &i.external_power,
        ),
    ]
}

impl GpioInputs {
    /// Request every input line from the board file's GPIO provider and
    /// start watching edges. Must be called inside a tokio runtime.
    pub fn request_with(provider: GpioProvider, inputs: &Inputs) -> Result<Self, GpioError> {
        match provider {
            GpioProvider::Cdev => cdev::request_inputs(inputs),
            #[cfg(feature = "board-rpi")]
            GpioProvider::Rppal => rpi::request_inputs(inputs),
            #[cfg(not(feature = "board-rpi"))]
            GpioProvider::Rppal => Err(GpioError::ProviderNotBuilt),
        }
    }

    /// Request every input line on the GPIO character device.
    pub fn request(inputs: &Inputs) -> Result<Self, GpioError> {
        Self::request_with(GpioProvider::Cdev, inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str) -> Line {
        Line {
            name: name.into(),
            chip: None,
            active_low: false,
            debounce_ms: 0,
        }
    }

    /// The board file's provider setting reaches the provider: on this
    /// machine (no Raspberry Pi, no GPIO chip with these names) each one
    /// refuses with an error naming the key, so a misconfigured board says
    /// what to fix.
    #[tokio::test]
    async fn each_provider_refuses_a_missing_line_naming_the_key() {
        let e = GpioOutput::request_with(GpioProvider::Cdev, "outputs.buzzer", &line("NO_LINE"))
            .expect_err("no such line")
            .to_string();
        assert!(e.contains("outputs.buzzer") && e.contains("NO_LINE"), "{e}");

        let e = GpioOutput::request_with(GpioProvider::Rppal, "outputs.buzzer", &line("GPIO17"))
            .expect_err("not a Pi")
            .to_string();
        #[cfg(feature = "board-rpi")]
        assert!(e.contains("outputs.buzzer") && e.contains("GPIO17"), "{e}");
        #[cfg(not(feature = "board-rpi"))]
        assert!(e.contains("board-rpi"), "{e}");

        let l = line("GPIO5");
        let inputs = Inputs {
            bolt_extended: l.clone(),
            bolt_retracted: l.clone(),
            door_closed: l.clone(),
            tamper: l.clone(),
            set_button: l.clone(),
            lock_button: l.clone(),
            inside_handle: l.clone(),
            mechanical_key: l.clone(),
            keypad_wake: l.clone(),
            external_power: l,
        };
        let e = GpioInputs::request_with(GpioProvider::Rppal, &inputs)
            .expect_err("not a Pi")
            .to_string();
        #[cfg(feature = "board-rpi")]
        assert!(
            e.contains("inputs.bolt_extended") && e.contains("GPIO5"),
            "{e}"
        );
        #[cfg(not(feature = "board-rpi"))]
        assert!(e.contains("board-rpi"), "{e}");
    }
}
