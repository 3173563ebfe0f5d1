//! Palm-vein reader: driver for modules speaking **LPV/1**, latchd's own
//! framed UART protocol, and a simulator that serves it.
//!
//! No palm-vein vendor publishes its module protocol openly. LPV/1 is
//! modelled on the common Chinese UART palm/face modules (a sync word, a
//! message id, request/reply plus unsolicited notes, a power-on "ready"
//! note, a reset/abort command) with what a lock needs on top: a sequence
//! number so a late reply can never be taken for the current one, and a
//! CRC-16/CCITT instead of an XOR byte. A real module is attached either by
//! firmware that speaks LPV/1 or by a small adapter backend; the wire format
//! is specified in `docs/palm-protocol.md`.
//!
//! # Hardware
//!
//! ```text
//!   SoC                         palm-vein module
//!   5V (switched) ───────────── VCC (5 V; ~150 mA with the NIR LEDs on)
//!   UARTx TX ────────────────── RX        3.3 V TTL
//!   UARTx RX ────────────────── TX
//!   GND ─────────────────────── GND
//! ```
//!
//! UART 115200 baud 8N1, no flow control. After power-up the module sends a
//! Ready note (cmd 0x00, seq 0); seen during an operation, it means the
//! module restarted and the operation was lost ([`PalmError::ModuleReset`]).
//! Quick commands answer within [`PalmConfig::request_timeout`]; enrolment and
//! identification wait up to [`PalmConfig::capture_timeout`] per step for a
//! palm (the module enforces it and replies Timeout; the driver allows a
//! margin on top).
//!
//! # Frame (see [`frame`])
//!
//! ```text
//!   5A A5 | kind | cmd | seq | len(2) | payload | CRC16(2)
//! ```
//!
//! # Enrolment (B-4.6)
//!
//! ```text
//!  host: Enroll(id, N, t) ─►
//!        ◄─ note PresentPalm(1/N) … ◄─ note Captured(1/N) ◄─ note WithdrawPalm(1)
//!        ◄─ note PresentPalm(2/N) … ◄─ note Captured(N/N)
//!        ◄─ reply Ok | Duplicate(existing id) | Mismatch | Timeout | Aborted
//! ```
//!
//! The module refuses a palm already enrolled under any id and stores
//! nothing unless the reply is Ok. A dropped `enroll`/`identify` future
//! leaves the module working; the driver remembers that and sends Abort
//! before its next command ([`Palm::abort`] stops it earlier).

pub mod driver;
pub mod frame;
pub mod reader;
pub mod sim;

use std::collections::BTreeSet;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

pub use driver::{
    Palm, PalmCommand, PalmConfig, PalmEnrollStep, PalmError, PalmInfo, PalmMatch, PalmState,
    PalmStatus,
};

/// What the board holds as "the palm-vein reader". Object safe.
pub trait PalmModule: Send {
    /// Enrols the presented palm as `id`, reporting each step. Stores
    /// nothing on any error; a palm enrolled anywhere is refused.
    fn enroll<'a>(
        &'a mut self,
        id: u16,
        progress: &'a mut (dyn FnMut(PalmEnrollStep) + Send),
    ) -> BoxFuture<'a, Result<(), PalmError>>;

    /// Waits for a palm and matches it; `None` if it matches nothing.
    fn identify(&mut self) -> BoxFuture<'_, Result<Option<PalmMatch>, PalmError>>;

    fn delete(&mut self, id: u16) -> BoxFuture<'_, Result<(), PalmError>>;

    /// Erases every palm (factory reset, B-1.5).
    fn delete_all(&mut self) -> BoxFuture<'_, Result<(), PalmError>>;

    /// Enrolled ids.
    fn ids(&mut self) -> BoxFuture<'_, Result<BTreeSet<u16>, PalmError>>;

    /// Stops an enrolment or identification in progress.
    fn abort(&mut self) -> BoxFuture<'_, Result<(), PalmError>>;
}

impl<S> PalmModule for Palm<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn enroll<'a>(
        &'a mut self,
        id: u16,
        progress: &'a mut (dyn FnMut(PalmEnrollStep) + Send),
    ) -> BoxFuture<'a, Result<(), PalmError>> {
        Box::pin(Palm::enroll(self, id, progress))
    }

    fn identify(&mut self) -> BoxFuture<'_, Result<Option<PalmMatch>, PalmError>> {
        Box::pin(Palm::identify(self))
    }

    fn delete(&mut self, id: u16) -> BoxFuture<'_, Result<(), PalmError>> {
        Box::pin(Palm::delete(self, id))
    }

    fn delete_all(&mut self) -> BoxFuture<'_, Result<(), PalmError>> {
        Box::pin(Palm::delete_all(self))
    }

    fn ids(&mut self) -> BoxFuture<'_, Result<BTreeSet<u16>, PalmError>> {
        Box::pin(Palm::list_ids(self))
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<(), PalmError>> {
        Box::pin(Palm::abort(self))
    }
}

/// Opens the palm UART at `baud` 8N1 without flow control.
pub fn open_serial(path: &str, baud: u32) -> Result<tokio_serial::SerialStream, PalmError> {
    tokio_serial::SerialStream::open(
        &tokio_serial::new(path, baud)
            .data_bits(tokio_serial::DataBits::Eight)
            .parity(tokio_serial::Parity::None)
            .stop_bits(tokio_serial::StopBits::One)
            .flow_control(tokio_serial::FlowControl::None),
    )
    .map_err(|source| PalmError::Open {
        path: path.to_owned(),
        source,
    })
}
