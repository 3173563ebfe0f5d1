//! GPIO through the Linux GPIO character device (`/dev/gpiochipN`, uAPI v2).
//!
//! We use the `gpiocdev` crate rather than `gpio-cdev`: it speaks uAPI v2,
//! which gives per-line kernel debounce and bias (v1 has neither, so
//! `gpio-cdev` would need software debounce timers for every switch), it
//! finds lines by their device-tree name across all chips (the board file
//! names lines, never numbers), and it has native tokio edge-event streams.
//!
//! ```text
//!  board file line names ──find_named_line──► (chip, offset)
//!  inputs:  one request per chip, both edges, kernel debounce, active-low
//!           └─► edge task per chip ──(Signal, asserted)──► mpsc ──► board
//!  outputs: one request per line, driven through embedded-hal OutputPin
//! ```
//!
//! Nothing here polls: edge tasks sleep in the kernel until a line moves.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gpiocdev::line::{EdgeDetection, EdgeKind, Value};
use gpiocdev::request::Request;
use tokio::sync::mpsc;

use super::config::{GpioProvider, Inputs, Line};

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

const CONSUMER: &str = "latchd";

fn find(key: &str, line: &Line) -> Result<gpiocdev::FoundLine, GpioError> {
    gpiocdev::find_named_line(&line.name).ok_or_else(|| GpioError::NotFound {
        key: key.to_string(),
        line: line.name.clone(),
    })
}

/// One output line, usable wherever an `embedded_hal` `OutputPin` is.
pub struct GpioOutput {
    name: String,
    line: OutputLine,
}

enum OutputLine {
    Cdev {
        req: Request,
        offset: u32,
    },
    #[cfg(feature = "board-rpi")]
    Rpi(crate::board::rpi::RpiOutput),
}

impl GpioOutput {
    /// Request `line` as an output, initially inactive (a motor input, an
    /// LED or a buzzer starts off), from the board file's GPIO provider.
    pub fn request_with(provider: GpioProvider, key: &str, line: &Line) -> Result<Self, GpioError> {
        match provider {
            GpioProvider::Cdev => Self::request(key, line),
            #[cfg(feature = "board-rpi")]
            GpioProvider::Rppal => Ok(GpioOutput {
                name: line.name.clone(),
                line: OutputLine::Rpi(crate::board::rpi::RpiOutput::request(key, line)?),
            }),
            #[cfg(not(feature = "board-rpi"))]
            GpioProvider::Rppal => Err(GpioError::ProviderNotBuilt),
        }
    }

    /// Request `line` as an output on the GPIO character device.
    pub fn request(key: &str, line: &Line) -> Result<Self, GpioError> {
        let found = find(key, line)?;
        let mut b = Request::builder();
        b.on_chip(&found.chip)
            .with_consumer(CONSUMER)
            .with_line(found.info.offset);
        if line.active_low {
            b.as_active_low();
        }
        b.as_output(Value::Inactive);
        let req = b.request().map_err(|source| GpioError::Request {
            line: line.name.clone(),
            chip: found.chip.clone(),
            source,
        })?;
        Ok(GpioOutput {
            name: line.name.clone(),
            line: OutputLine::Cdev {
                req,
                offset: found.info.offset,
            },
        })
    }

    pub fn set(&mut self, on: bool) -> Result<(), GpioError> {
        match &mut self.line {
            OutputLine::Cdev { req, offset } => {
                let v = if on { Value::Active } else { Value::Inactive };
                req.set_value(*offset, v)
                    .map(|_| ())
                    .map_err(|source| GpioError::Io {
                        line: self.name.clone(),
                        source,
                    })
            }
            #[cfg(feature = "board-rpi")]
            OutputLine::Rpi(pin) => {
                pin.set(on);
                Ok(())
            }
        }
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

/// All input lines, with one edge task per chip feeding one channel.
pub struct GpioInputs {
    /// (signal, asserted) in the order the kernel reported them.
    pub events: mpsc::Receiver<(Signal, bool)>,
    /// Levels at request time, for start-up state.
    pub initial: BTreeMap<Signal, bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Provider objects that must live as long as the events flow (rppal
    /// pins with their interrupt threads).
    _keep: Vec<Box<dyn std::any::Any + Send>>,
}

impl Drop for GpioInputs {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(crate) fn signals(i: &Inputs) -> [(Signal, &'static str, &Line); 10] {
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
    /// Inputs from another provider: its event channel, start levels, and
    /// whatever must stay alive for events to keep flowing.
    pub fn from_parts(
        events: mpsc::Receiver<(Signal, bool)>,
        initial: BTreeMap<Signal, bool>,
        keep: Vec<Box<dyn std::any::Any + Send>>,
    ) -> Self {
        GpioInputs {
            events,
            initial,
            tasks: Vec::new(),
            _keep: keep,
        }
    }

    /// Request every input line from the board file's GPIO provider.
    pub fn request_with(provider: GpioProvider, inputs: &Inputs) -> Result<Self, GpioError> {
        match provider {
            GpioProvider::Cdev => Self::request(inputs),
            #[cfg(feature = "board-rpi")]
            GpioProvider::Rppal => crate::board::rpi::request_inputs(inputs),
            #[cfg(not(feature = "board-rpi"))]
            GpioProvider::Rppal => Err(GpioError::ProviderNotBuilt),
        }
    }

    /// Request every input line of the board file and start watching edges.
    /// Must be called inside a tokio runtime.
    pub fn request(inputs: &Inputs) -> Result<Self, GpioError> {
        // Group lines by chip: one request (one fd, one task) per chip.
        let mut by_chip: BTreeMap<PathBuf, Vec<(Signal, u32, &Line)>> = BTreeMap::new();
        for (sig, key, line) in signals(inputs) {
            let found = find(key, line)?;
            by_chip
                .entry(found.chip)
                .or_default()
                .push((sig, found.info.offset, line));
        }
        let (tx, events) = mpsc::channel(64);
        let mut initial = BTreeMap::new();
        let mut tasks = Vec::new();
        for (chip, lines) in by_chip {
            let mut b = Request::builder();
            b.on_chip(&chip).with_consumer(CONSUMER);
            for (_, offset, line) in &lines {
                b.with_line(*offset)
                    .as_input()
                    .with_edge_detection(EdgeDetection::BothEdges);
                if line.active_low {
                    b.as_active_low();
                }
                if line.debounce_ms > 0 {
                    b.with_debounce_period(Duration::from_millis(line.debounce_ms.into()));
                }
            }
            let name = lines
                .iter()
                .map(|(_, _, l)| l.name.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let req = b.request().map_err(|source| GpioError::Request {
                line: name.clone(),
                chip: chip.clone(),
                source,
            })?;
            for (sig, offset, line) in &lines {
                let v = req.value(*offset).map_err(|source| GpioError::Io {
                    line: line.name.clone(),
                    source,
                })?;
                initial.insert(*sig, v == Value::Active);
            }
            let map: BTreeMap<u32, Signal> = lines.iter().map(|(s, o, _)| (*o, *s)).collect();
            let areq = gpiocdev::tokio::AsyncRequest::new(req);
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    match areq.read_edge_event().await {
                        Ok(ev) => {
                            let Some(sig) = map.get(&ev.offset) else {
                                continue;
                            };
                            let asserted = ev.kind == EdgeKind::Rising;
                            if tx.send((*sig, asserted)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::error!(lines = %name, error = %e, "gpio edge events stopped");
                            return;
                        }
                    }
                }
            }));
        }
        Ok(GpioInputs {
            events,
            initial,
            tasks,
            _keep: Vec::new(),
        })
    }
}
