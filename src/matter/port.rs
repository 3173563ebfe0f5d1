//! What the Matter node needs of the running lock, and nothing more.
//!
//! The node talks to the lock only through [`LockPort`]: it submits a
//! command as a Matter principal and awaits the engine's answer, reads the
//! published status and the user table, follows the event log, asks the
//! lock to identify itself, and keeps its own sealed blobs (fabrics, ACLs,
//! session resumption, onboarding). `link_port.rs` binds it to the
//! [`Link`](crate::link::Link); tests may bind it to anything else.
use std::future::Future;
use std::pin::Pin;

use tokio::sync::{broadcast, watch};

use crate::core::types::Persisted;
use crate::core::{AppCommand, AppResult, Event, Principal, Status};
use crate::link::MatterHealth;

/// Boxed future for [`LockPort`].
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a sealed blob could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("Matter storage: {0}")]
pub struct BlobError(pub String);

/// The lock as the Matter node sees it.
pub trait LockPort: Send + Sync + 'static {
    /// Run a Door Lock command for `principal` (always a
    /// [`Principal::Matter`]); `None` if the engine has stopped.
    fn submit(
        &self,
        principal: Principal,
        command: AppCommand,
    ) -> PortFuture<'_, Option<AppResult>>;

    /// The engine's status, as last published, and its changes.
    fn status(&self) -> watch::Receiver<Status>;

    /// Users and credentials as stored (GetUser, GetCredentialStatus). An
    /// error answers the command with a failure; nothing is guessed.
    fn directory(&self) -> Result<Persisted, String>;

    /// Every event the engine logs, in order, from now on.
    fn events(&self) -> broadcast::Receiver<Event>;

    /// Matter's Identify: the lock says so and flashes "0" (the engine
    /// rate-limits it like Improv's).
    fn identify(&self);

    /// The node's own persistent blobs, sealed with the device key.
    fn blob_load(&self, scope: BlobScope, key: u16) -> Result<Option<Vec<u8>>, BlobError>;
    fn blob_store(&self, scope: BlobScope, key: u16, value: &[u8]) -> Result<(), BlobError>;
    fn blob_remove(&self, scope: BlobScope, key: u16) -> Result<(), BlobError>;

    /// The node's own state for the technician (D-Bus `MatterState`,
    /// `MatterFabrics`): reported when it changes, never polled.
    fn report(&self, health: MatterHealth);
}

/// Which of the node's blobs a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobScope {
    /// rs-matter's state under its 16-bit keys: fabrics, ACLs, session
    /// resumption, event counters. A factory reset erases it.
    Node,
    /// The onboarding secret printed on the lock's label. A factory reset
    /// rotates the device key (issue 16), which no longer opens it: the
    /// lock then makes a new one (its serial changes too).
    Label,
}
