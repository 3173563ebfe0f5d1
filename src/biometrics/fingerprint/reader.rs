//! The fingerprint reader on the adapter loop: how the R30x driver
//! ([`super::driver`]) enrols, reads, deletes and reconciles for the
//! adapter task in [`crate::biometrics::adapter`], and which of its errors
//! are an outage, a bad image or a refusal.
//!
//! Owns no task of its own: [`spawn_fingerprint`] hands a
//! `FingerReader` to the adapter task, which drives it (GenImg polls
//! while idle, an enrolment when the engine asks).
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::pairing::Pairing;
use super::{self as fp, EnrollStep, FingerprintError, ModuleCode, Reconciliation};
use crate::biometrics::adapter::{
    spawn, spawn_connecting, AdapterConfig, Connecting, ModuleAdapter, Read, ReadError, Reader,
    ReportSink, Steps,
};
use crate::core::input::{EnrolFailure, EnrolStep, ModuleReport};
use crate::core::types::Modality;

/// Start the adapter for a fingerprint driver (already connected).
/// Must run inside tokio.
pub fn spawn_fingerprint(
    module: Box<dyn fp::FingerprintModule>,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    let reader = FingerReader {
        module,
        touches: config.finger_touches,
        settle: config.cancel_settle,
    };
    spawn(reader, config, sink)
}

/// Like [`spawn_fingerprint`], connecting first in the task. A failed
/// handshake is reported once as `ModuleReport::Fault`; the adapter then
/// stops and its commands are refused as
/// [`DeviceError::Unavailable`](crate::board::DeviceError::Unavailable).
pub fn spawn_fingerprint_connecting(
    connect: Connecting<Box<dyn fp::FingerprintModule>, FingerprintError>,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    let touches = config.finger_touches;
    let settle = config.cancel_settle;
    spawn_connecting(
        Box::pin(async move {
            let module = connect.await?;
            Ok(FingerReader {
                module,
                touches,
                settle,
            })
        }),
        config,
        sink,
    )
}

/// Opens one session with the module under a [`Pairing`] (see
/// `fingerprint/pairing.rs`): the board's UART, the sim's link.
pub type PairedOpener =
    Box<dyn FnMut(Pairing) -> Connecting<Box<dyn fp::FingerprintModule>, FingerprintError> + Send>;

/// Like [`spawn_fingerprint_connecting`], with the lock's module password
/// (issue 13 item 7). A module that does not know it is reported once as
/// [`ModuleReport::Untrusted`] (the engine's module fault, swap alarm and
/// owner notice) and is never read or enrolled: the connection waits, and
/// only an administrator's [`ModuleCmd::Pair`](crate::core::ModuleCmd::Pair)
/// tries again, adopting a factory-fresh module and nothing else.
pub fn spawn_fingerprint_paired(
    mut open: PairedOpener,
    first: Pairing,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    let repair = Arc::new(tokio::sync::Notify::new());
    let waiting = repair.clone();
    let report = sink.clone();
    let connect: Connecting<Box<dyn fp::FingerprintModule>, FingerprintError> =
        Box::pin(async move {
            let mut pairing = first;
            loop {
                match open(pairing).await {
                    Err(e @ FingerprintError::ForeignModule) => {
                        // Registered before the report, so a re-pair that
                        // follows it at once is not missed.
                        let woken = waiting.notified();
                        tokio::pin!(woken);
                        woken.as_mut().enable();
                        tracing::error!(error = %e, "fingerprint module refused");
                        report.report(ModuleReport::Untrusted {
                            modality: Modality::Fingerprint,
                            detail: e.to_string(),
                        });
                        woken.await;
                        tracing::info!(
                            "administrator re-pair: trying the fingerprint module again"
                        );
                        pairing = Pairing::AdoptFactory;
                    }
                    other => return other,
                }
            }
        });
    spawn_fingerprint_connecting(connect, config, sink).with_repair(repair)
}

/// The adapter's view of an R30x driver.
struct FingerReader {
    module: Box<dyn fp::FingerprintModule>,
    touches: u8,
    settle: Duration,
}

fn finger_link_error(e: &FingerprintError) -> bool {
    matches!(
        e,
        FingerprintError::Timeout { .. }
            | FingerprintError::Io(_)
            | FingerprintError::Closed
            | FingerprintError::Open { .. }
            | FingerprintError::Frame { .. }
            | FingerprintError::Protocol { .. }
            | FingerprintError::ModuleReset
            | FingerprintError::ForeignModule
            | FingerprintError::Module {
                code: ModuleCode::PacketError
                    | ModuleCode::HardwareError
                    | ModuleCode::SensorHardware
                    | ModuleCode::WrongPassword
                    | ModuleCode::PasswordRequired
                    | ModuleCode::BadAddress
                    | ModuleCode::PortFailed,
                ..
            }
    )
}

/// Image-quality refusals: the finger was there but could not be used.
fn finger_quality(e: &FingerprintError) -> bool {
    matches!(
        e,
        FingerprintError::Module {
            code: ModuleCode::ImageFailed
                | ModuleCode::ImageMessy
                | ModuleCode::TooFewFeatures
                | ModuleCode::InvalidImage
                | ModuleCode::MergeFailed
                | ModuleCode::NoMatch,
            ..
        }
    )
}

impl Reader for FingerReader {
    const MODALITY: Modality = Modality::Fingerprint;
    const TRACKS_PRESENCE: bool = true;
    const INTERRUPTIBLE_READ: bool = false;
    type Error = FingerprintError;

    fn untrusted(e: &FingerprintError) -> bool {
        matches!(e, FingerprintError::ForeignModule)
    }

    fn enrol<'a>(
        &'a mut self,
        slot: u16,
        steps: Steps<'a>,
    ) -> BoxFuture<'a, Result<(), EnrolFailure>> {
        Box::pin(async move {
            // The driver says "place touch k" before every touch; the
            // engine is told "again" from the second on (the first prompt
            // came with the enrolment itself) and "remove" between touches.
            let mut progress = |s: EnrollStep| match s {
                EnrollStep::PlaceFinger { touch, of } if touch > 1 => {
                    steps(EnrolStep::PresentAgain { n: touch, of })
                }
                EnrollStep::LiftFinger { .. } => steps(EnrolStep::Remove),
                _ => {}
            };
            match self.module.enroll(slot, self.touches, &mut progress).await {
                Ok(()) => Ok(()),
                Err(FingerprintError::Duplicate { slot }) => Err(EnrolFailure::Duplicate { slot }),
                Err(FingerprintError::FingerTimeout(_) | FingerprintError::LiftTimeout(_)) => {
                    Err(EnrolFailure::Timeout)
                }
                Err(e) if finger_quality(&e) => Err(EnrolFailure::Quality),
                Err(e) => Err(EnrolFailure::Module(e.to_string())),
            }
        })
    }

    fn read(&mut self) -> BoxFuture<'_, Result<Read, ReadError<FingerprintError>>> {
        Box::pin(async move {
            match self.module.identify().await {
                Ok(Some(m)) => Ok(Read::Match(m.slot)),
                Ok(None) => Ok(Read::NoMatch),
                Err(e) if e.is_no_finger() => Ok(Read::Nothing),
                Err(e) if finger_quality(&e) => Ok(Read::Unreadable),
                Err(e) => Err(ReadError {
                    link: finger_link_error(&e),
                    error: e,
                }),
            }
        })
    }

    fn delete(&mut self, slot: u16) -> BoxFuture<'_, Result<(), FingerprintError>> {
        Box::pin(async move { self.module.delete(slot).await })
    }

    fn wipe(&mut self) -> BoxFuture<'_, Result<(), FingerprintError>> {
        Box::pin(async move { self.module.empty().await })
    }

    fn slots(&mut self) -> BoxFuture<'_, Result<BTreeSet<u16>, FingerprintError>> {
        Box::pin(async move { self.module.slots().await })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<(), FingerprintError>> {
        // An R30x runs one instruction at a time and nothing in the
        // background: a dropped enrolment leaves at most a late reply.
        // Let it arrive, so the driver drains it before its next request
        // instead of reading it as that request's answer.
        let settle = self.settle;
        Box::pin(async move {
            tokio::time::sleep(settle).await;
            Ok(())
        })
    }

    fn reconcile<'a>(
        &'a mut self,
        db: &'a BTreeSet<u16>,
    ) -> BoxFuture<'a, Result<Reconciliation, FingerprintError>> {
        Box::pin(async move { fp::reconcile_module(&mut *self.module, db).await })
    }
}
