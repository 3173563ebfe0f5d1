//! The GPIO provider for any SoC: the Linux GPIO character device
//! (`/dev/gpiochipN`, uAPI v2), `gpio_provider = "cdev"` (the default).
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
//!  outputs: one request per line
//! ```
//!
//! Driven by the kernel: each edge task sleeps until a line moves.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gpiocdev::line::{EdgeDetection, EdgeKind, Value};
use gpiocdev::request::Request;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{signals, GpioError, GpioInputs, OutputLine, Signal};
use crate::board::linux::config::{Inputs, Line};

const CONSUMER: &str = "latchd";

fn find(key: &str, line: &Line) -> Result<gpiocdev::FoundLine, GpioError> {
    gpiocdev::find_named_line(&line.name).ok_or_else(|| GpioError::NotFound {
        key: key.to_string(),
        line: line.name.clone(),
    })
}

/// One output line on the character device.
pub(super) struct CdevOutput {
    name: String,
    req: Request,
    offset: u32,
}

impl CdevOutput {
    /// Request `line` as an output, initially inactive.
    pub(super) fn request(key: &str, line: &Line) -> Result<Self, GpioError> {
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
        Ok(CdevOutput {
            name: line.name.clone(),
            req,
            offset: found.info.offset,
        })
    }
}

impl OutputLine for CdevOutput {
    fn set(&mut self, on: bool) -> Result<(), GpioError> {
        let v = if on { Value::Active } else { Value::Inactive };
        self.req
            .set_value(self.offset, v)
            .map(|_| ())
            .map_err(|source| GpioError::Io {
                line: self.name.clone(),
                source,
            })
    }
}

/// The edge tasks; aborted when the inputs are dropped.
struct EdgeTasks(Vec<JoinHandle<()>>);

impl Drop for EdgeTasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Request every input line of the board file and start watching edges.
/// Must be called inside a tokio runtime.
pub(super) fn request_inputs(inputs: &Inputs) -> Result<GpioInputs, GpioError> {
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
        _watchers: Box::new(EdgeTasks(tasks)),
    })
}
