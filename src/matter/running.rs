//! Starting and stopping the node's thread, and why it may not run.
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::link::MatterHealth;

use super::{attestation, node, onboarding, Identity, LockPort, MatterConfig, Radios};

/// Why the node could not run.
#[derive(Debug, thiserror::Error)]
pub enum MatterError {
    #[error("Matter: cannot start its runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("Matter: {0}")]
    Interface(String),
    #[error("Matter: cannot bind UDP port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Onboarding(#[from] onboarding::OnboardingError),
    #[error("Matter attestation: {0}")]
    Attestation(#[from] attestation::AttestationError),
    #[error("Matter stack: {0:?}")]
    Stack(rs_matter::error::Error),
}

/// The node's thread.
#[derive(Debug)]
pub struct MatterHandle {
    thread: std::thread::JoinHandle<()>,
}

impl MatterHandle {
    /// Wait for the node to stop (after the shutdown token was cancelled).
    pub async fn join(self) {
        let thread = self.thread;
        if tokio::task::spawn_blocking(move || thread.join())
            .await
            .is_err()
        {
            tracing::error!("Matter: the node's thread could not be joined");
        }
    }
}

/// rs-matter keeps its buffers and state on this thread's stack and in a
/// few boxes; 4 MiB is twice what it was seen to need.
const THREAD_STACK: usize = 4 << 20;

/// Start the node on its own thread. It stops when `shutdown` is cancelled;
/// an error stops only the node (logged), never the lock.
pub fn spawn(
    config: MatterConfig,
    identity: Identity,
    radios: Radios,
    port: Arc<dyn LockPort>,
    shutdown: CancellationToken,
) -> std::io::Result<MatterHandle> {
    let thread = std::thread::Builder::new()
        .name("matter".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let reporter = port.clone();
            if let Err(e) = node::run(config, identity, radios, port, shutdown) {
                tracing::error!("{e}; the lock runs on without Matter");
                reporter.report(MatterHealth::Failed(e.to_string()));
            }
        })?;
    Ok(MatterHandle { thread })
}
