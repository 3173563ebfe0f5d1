//! Fingerprint reader: driver for the R30x/ZFM module family (R307, R503,
//! AS608 and compatibles) and a simulator that speaks the same wire protocol.
//!
//! # Hardware
//!
//! ```text
//!   SoC                               module (R503 pinout)
//!   3V3 ───────────────────────────── VCC (3.3 V; ~20 mA idle, ~65 mA imaging)
//!   UARTx TX ──────────────────────── RX
//!   UARTx RX ──────────────────────── TX   (3.3 V TTL, no level shifter)
//!   GPIO (input, pull-up) ◄────────── WAKEUP / touch (low while touched)
//!   3V3 ───────────────────────────── 3V3 touch-sensor supply
//!   GND ───────────────────────────── GND
//! ```
//!
//! UART 57600 baud 8N1, no flow control (factory default; the module's
//! baud is N × 9600). After power-up the module needs ~200 ms and then sends
//! one byte 0x55; a 0x55 in the middle of a session therefore means it
//! restarted and lost its RAM buffers, which the driver turns into
//! [`FingerprintError::ModuleReset`] during enrolment. GenImg takes up to
//! about one second, a 1:N Search a few hundred ms; the driver gives every
//! request [`FingerprintConfig::request_timeout`].
//!
//! # Packet (see [`frame`] and `docs/fingerprint-protocol.md`)
//!
//! ```text
//!   EF 01 | address(4) | PID(1) | length(2) = n+2 | payload(n) | sum(2)
//!   PID 0x01 command, 0x02 data, 0x07 ack, 0x08 end of data
//!   ack payload = confirmation code (0x00 ok) + results
//! ```
//!
//! # Enrolment (B-4.7, B-1.3)
//!
//! ```text
//!  for touch 1..=N:  GenImg (poll until a finger) → Img2Tz(buffer = touch)
//!                    GenImg (poll until "no finger") between touches
//!  RegModel ─► Search(buffer 1, whole library) ─┬─ hit  → Duplicate{slot}, nothing stored
//!                                               └─ none → Store(buffer 1, slot)
//! ```
//!
//! The slot must be empty before enrolment starts, so an enrolment never
//! overwrites someone else's template.
//!
//! # Reconciliation
//!
//! The module's library and latchd's database can drift (power cut between
//! Store and the database commit, module replaced). [`reconcile`] compares
//! the two sets; [`reconcile_module`] clears slots the database does not know
//! and returns the slots the database expects but the module lacks, so the
//! engine can flag those credentials.

pub mod driver;
pub mod frame;
pub mod pairing;
pub mod reader;
pub mod sim;

use std::collections::BTreeSet;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

pub use driver::{
    Command, EnrollStep, Fingerprint, FingerprintConfig, FingerprintError, Led, LedColor, LedMode,
    Match, ModuleCode, SystemParameters,
};

/// What the board holds as "the fingerprint reader". Object safe, so the
/// board can keep a `Box<dyn FingerprintModule>` whatever the backend.
pub trait FingerprintModule: Send {
    /// Enrols the finger on the sensor into `slot` in `touches` touches,
    /// reporting each step. Refuses a finger already enrolled anywhere
    /// ([`FingerprintError::Duplicate`]) and stores nothing on any error.
    fn enroll<'a>(
        &'a mut self,
        slot: u16,
        touches: u8,
        progress: &'a mut (dyn FnMut(EnrollStep) + Send),
    ) -> BoxFuture<'a, Result<(), FingerprintError>>;

    /// Matches the finger on the sensor now; `None` if it matches nothing.
    fn identify(&mut self) -> BoxFuture<'_, Result<Option<Match>, FingerprintError>>;

    /// Removes the template in `slot`.
    fn delete(&mut self, slot: u16) -> BoxFuture<'_, Result<(), FingerprintError>>;

    /// Erases every template (factory reset, B-1.5).
    fn empty(&mut self) -> BoxFuture<'_, Result<(), FingerprintError>>;

    /// The occupied slots.
    fn slots(&mut self) -> BoxFuture<'_, Result<BTreeSet<u16>, FingerprintError>>;

    /// Number of stored templates.
    fn template_count(&mut self) -> BoxFuture<'_, Result<u16, FingerprintError>>;

    /// Sets the LED ring.
    fn set_led(&mut self, led: Led) -> BoxFuture<'_, Result<(), FingerprintError>>;
}

impl<S> FingerprintModule for Fingerprint<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn enroll<'a>(
        &'a mut self,
        slot: u16,
        touches: u8,
        progress: &'a mut (dyn FnMut(EnrollStep) + Send),
    ) -> BoxFuture<'a, Result<(), FingerprintError>> {
        Box::pin(Fingerprint::enroll(self, slot, touches, progress))
    }

    fn identify(&mut self) -> BoxFuture<'_, Result<Option<Match>, FingerprintError>> {
        Box::pin(Fingerprint::identify(self))
    }

    fn delete(&mut self, slot: u16) -> BoxFuture<'_, Result<(), FingerprintError>> {
        Box::pin(Fingerprint::delete(self, slot))
    }

    fn empty(&mut self) -> BoxFuture<'_, Result<(), FingerprintError>> {
        Box::pin(Fingerprint::empty(self))
    }

    fn slots(&mut self) -> BoxFuture<'_, Result<BTreeSet<u16>, FingerprintError>> {
        Box::pin(Fingerprint::occupied_slots(self))
    }

    fn template_count(&mut self) -> BoxFuture<'_, Result<u16, FingerprintError>> {
        Box::pin(Fingerprint::template_count(self))
    }

    fn set_led(&mut self, led: Led) -> BoxFuture<'_, Result<(), FingerprintError>> {
        Box::pin(Fingerprint::set_led(self, led))
    }
}

/// Opens the fingerprint UART at `baud` 8N1 without flow control.
pub fn open_serial(path: &str, baud: u32) -> Result<tokio_serial::SerialStream, FingerprintError> {
    tokio_serial::SerialStream::open(
        &tokio_serial::new(path, baud)
            .data_bits(tokio_serial::DataBits::Eight)
            .parity(tokio_serial::Parity::None)
            .stop_bits(tokio_serial::StopBits::One)
            .flow_control(tokio_serial::FlowControl::None),
    )
    .map_err(|source| FingerprintError::Open {
        path: path.to_owned(),
        source,
    })
}

/// How the module's library and the database disagree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Occupied in the module, unknown to the database: to be cleared, or
    /// an unknown finger would open the door.
    pub unknown_in_module: Vec<u16>,
    /// Expected by the database, empty in the module: the credential is
    /// dead and must be flagged for re-enrolment.
    pub missing_in_module: Vec<u16>,
}

impl Reconciliation {
    pub fn is_consistent(&self) -> bool {
        self.unknown_in_module.is_empty() && self.missing_in_module.is_empty()
    }
}

/// Compares the slots the database knows with those the module holds.
pub fn reconcile(db_slots: &BTreeSet<u16>, module_slots: &BTreeSet<u16>) -> Reconciliation {
    Reconciliation {
        unknown_in_module: module_slots.difference(db_slots).copied().collect(),
        missing_in_module: db_slots.difference(module_slots).copied().collect(),
    }
}

/// Reads the module's slots, deletes the ones the database does not know,
/// and returns what was found (the `missing_in_module` slots are for the
/// caller to flag). Stops at the first failed delete.
pub async fn reconcile_module<M>(
    module: &mut M,
    db_slots: &BTreeSet<u16>,
) -> Result<Reconciliation, FingerprintError>
where
    M: FingerprintModule + ?Sized,
{
    let found = reconcile(db_slots, &module.slots().await?);
    for &slot in &found.unknown_in_module {
        tracing::warn!(slot, "clearing fingerprint slot unknown to the database");
        module.delete(slot).await?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_splits_the_differences() {
        let db: BTreeSet<u16> = [1, 2, 3, 7].into();
        let module: BTreeSet<u16> = [2, 3, 4, 9].into();
        let r = reconcile(&db, &module);
        assert_eq!(r.unknown_in_module, vec![4, 9]);
        assert_eq!(r.missing_in_module, vec![1, 7]);
        assert!(!r.is_consistent());
        assert!(reconcile(&db, &db).is_consistent());
    }
}
