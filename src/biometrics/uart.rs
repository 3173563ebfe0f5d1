//! The Linux board's fingerprint and palm-vein modules, from its board
//! file: each `[fingerprint]`/`[palm]` UART opened with `tokio-serial` and
//! handed to an adapter task ([`crate::biometrics::adapter`]).
//!
//! Owns nothing after start: [`open`] returns the two [`ModuleAdapter`]s
//! the board holds. The handshake and the reconciliation of the module's
//! slots against the database run in each adapter task, so a module that
//! does not answer is reported as a `Fault` and never holds up the lock's
//! start.
use std::sync::Arc;

use crate::biometrics::adapter::{db_slots, AdapterConfig, ModuleAdapter, ReportSink};
use crate::biometrics::fingerprint::pairing::{self, ModuleLink};
use crate::biometrics::fingerprint::{self as fp, reader::spawn_fingerprint_paired};
use crate::biometrics::palm::{self, reader::spawn_palm_connecting};
use crate::board::linux::config::BoardConfig;
use crate::core::types::{CredentialKind, Persisted};

/// The two UART modules of a Linux board, behind their adapters.
#[derive(Debug)]
pub struct UartModules {
    pub fingerprint: ModuleAdapter,
    pub palm: ModuleAdapter,
}

/// Start both adapters on the board file's UARTs; `persisted` gives the
/// slots each module should hold, `finger_link` the lock's fingerprint
/// module password (issue 13 item 7). Must run inside tokio.
pub fn open(
    cfg: &BoardConfig,
    persisted: &Persisted,
    finger_link: ModuleLink,
    sink: Arc<dyn ReportSink>,
) -> UartModules {
    let finger_uart = cfg.fingerprint.clone();
    let fingerprint = spawn_fingerprint_paired(
        Box::new(move |pairing| {
            let uart = finger_uart.clone();
            Box::pin(async move {
                let path = uart.path.display().to_string();
                let stream = fp::open_serial(&path, uart.baud)?;
                let driver = pairing::connect(
                    stream,
                    fp::FingerprintConfig::default(),
                    finger_link.password,
                    pairing,
                )
                .await?;
                Ok(Box::new(driver) as Box<dyn fp::FingerprintModule>)
            })
        }),
        finger_link.pairing,
        AdapterConfig {
            db_slots: Some(db_slots(persisted, CredentialKind::Fingerprint)),
            ..AdapterConfig::default()
        },
        sink.clone(),
    );
    let palm_uart = cfg.palm.clone();
    let palm = spawn_palm_connecting(
        Box::pin(async move {
            let path = palm_uart.path.display().to_string();
            let stream = palm::open_serial(&path, palm_uart.baud)?;
            let driver = palm::Palm::connect(stream, palm::PalmConfig::default()).await?;
            Ok(Box::new(driver) as Box<dyn palm::PalmModule>)
        }),
        AdapterConfig {
            db_slots: Some(db_slots(persisted, CredentialKind::Palm)),
            ..AdapterConfig::default()
        },
        sink,
    );
    UartModules { fingerprint, palm }
}
