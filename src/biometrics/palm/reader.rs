//! The palm-vein reader on the adapter loop: how the LPV/1 driver
//! ([`super::driver`]) enrols, identifies, deletes and reconciles for the
//! adapter task in [`crate::biometrics::adapter`], and which of its errors
//! are an outage, a bad capture or a refusal.
//!
//! Owns no task of its own: [`spawn_palm`] hands a `PalmReader` to the
//! adapter task, which drives it (Identify again and again while idle —
//! the module waits for a palm itself — and an enrolment when the engine
//! asks).
use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{self as palm, PalmEnrollStep, PalmError, PalmStatus};
use crate::biometrics::adapter::{
    spawn, spawn_connecting, AdapterConfig, Connecting, ModuleAdapter, Read, ReadError, Reader,
    ReportSink, Steps,
};
use crate::biometrics::fingerprint::{self as fp, Reconciliation};
use crate::core::input::{EnrolFailure, EnrolStep};
use crate::core::types::Modality;

/// Start the adapter for a palm driver (already connected).
/// Must run inside tokio.
pub fn spawn_palm(
    module: Box<dyn palm::PalmModule>,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    spawn(PalmReader { module }, config, sink)
}

/// Like [`spawn_palm`], connecting first in the task (see
/// [`spawn_fingerprint_connecting`]).
pub fn spawn_palm_connecting(
    connect: Connecting<Box<dyn palm::PalmModule>, PalmError>,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    spawn_connecting(
        Box::pin(async move {
            let module = connect.await?;
            Ok(PalmReader { module })
        }),
        config,
        sink,
    )
}

/// The adapter's view of an LPV/1 driver.
struct PalmReader {
    module: Box<dyn palm::PalmModule>,
}

fn palm_link_error(e: &PalmError) -> bool {
    matches!(
        e,
        PalmError::Timeout { .. }
            | PalmError::Io(_)
            | PalmError::Closed
            | PalmError::Open { .. }
            | PalmError::Frame { .. }
            | PalmError::Protocol { .. }
            | PalmError::ModuleReset
            | PalmError::Status {
                status: PalmStatus::BadFrame | PalmStatus::UnknownCommand | PalmStatus::Busy,
                ..
            }
    )
}

impl Reader for PalmReader {
    const MODALITY: Modality = Modality::Palm;
    const TRACKS_PRESENCE: bool = false;
    const INTERRUPTIBLE_READ: bool = true;
    type Error = PalmError;

    fn enrol<'a>(
        &'a mut self,
        slot: u16,
        steps: Steps<'a>,
    ) -> BoxFuture<'a, Result<(), EnrolFailure>> {
        Box::pin(async move {
            let mut progress = |s: PalmEnrollStep| match s {
                PalmEnrollStep::PresentPalm { capture, of } if capture > 1 => {
                    steps(EnrolStep::PresentAgain { n: capture, of })
                }
                PalmEnrollStep::WithdrawPalm { .. } => steps(EnrolStep::Remove),
                _ => {}
            };
            match self.module.enroll(slot, &mut progress).await {
                Ok(()) => Ok(()),
                Err(PalmError::Duplicate { id }) => Err(EnrolFailure::Duplicate { slot: id }),
                Err(PalmError::NoPalm(_)) => Err(EnrolFailure::Timeout),
                Err(PalmError::Status {
                    status: PalmStatus::Mismatch | PalmStatus::CaptureFailed,
                    ..
                }) => Err(EnrolFailure::Quality),
                Err(e) => Err(EnrolFailure::Module(e.to_string())),
            }
        })
    }

    fn read(&mut self) -> BoxFuture<'_, Result<Read, ReadError<PalmError>>> {
        Box::pin(async move {
            match self.module.identify().await {
                Ok(Some(m)) => Ok(Read::Match(m.id)),
                Ok(None) => Ok(Read::NoMatch),
                Err(PalmError::NoPalm(_)) => Ok(Read::Nothing),
                Err(PalmError::Status {
                    status: PalmStatus::CaptureFailed,
                    ..
                }) => Ok(Read::Unreadable),
                Err(e) => Err(ReadError {
                    link: palm_link_error(&e),
                    error: e,
                }),
            }
        })
    }

    fn delete(&mut self, slot: u16) -> BoxFuture<'_, Result<(), PalmError>> {
        Box::pin(async move {
            match self.module.delete(slot).await {
                // Already gone is what was wanted.
                Ok(())
                | Err(PalmError::Status {
                    status: PalmStatus::NotFound,
                    ..
                }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn wipe(&mut self) -> BoxFuture<'_, Result<(), PalmError>> {
        Box::pin(async move { self.module.delete_all().await })
    }

    fn slots(&mut self) -> BoxFuture<'_, Result<BTreeSet<u16>, PalmError>> {
        Box::pin(async move { self.module.ids().await })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<(), PalmError>> {
        // A dropped Enroll keeps running on the module until aborted.
        Box::pin(async move { self.module.abort().await })
    }

    fn reconcile<'a>(
        &'a mut self,
        db: &'a BTreeSet<u16>,
    ) -> BoxFuture<'a, Result<Reconciliation, PalmError>> {
        Box::pin(async move {
            let found = fp::reconcile(db, &self.module.ids().await?);
            for &id in &found.unknown_in_module {
                tracing::warn!(id, "clearing palm id unknown to the database");
                self.module.delete(id).await?;
            }
            Ok(found)
        })
    }
}
