//! What the app protocol needs from the running lock, as one trait.
//!
//! ```text
//!   ChannelConn (BLE) ─┐                         ┌─ published status, pairing mode   (no wait)
//!   remote gate (MQTT) ┼─► dyn LockLink ─────────┼─ app keys + invites snapshot      (no wait)
//!   dispatch::answer ──┘                         ├─ persisted / events_before        (store read, async)
//!                                                ├─ submit(Input::App) → AppResult   (engine, async)
//!                                                └─ refused, ble_connected, identify (engine, never waits)
//! ```
//!
//! The daemon implements it with `link::Link` (the engine task, its
//! published status and a read-only store connection); tests implement it
//! over a bare engine. Everything that may touch storage is async, so no
//! caller blocks a worker thread on the disk, and what an unauthenticated
//! frame needs (the pairing mode, the app keys) is a published snapshot:
//! a frame from a stranger costs no store read.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::response::PendingNotice;
use super::wire::StatusReport;
use crate::core::event::{AppRefusal, Event};
use crate::core::time::{Instant, WallTime};
use crate::core::types::{AppKey, Persisted};
use crate::core::users::AppAccess;
use crate::core::{AppCommand, AppResult, Channel, Language, Principal};

fn no_notices() -> StorageError {
    StorageError("this lock keeps no owner notices".into())
}

/// Boxed future for [`LockLink`] (object-safe without a proc-macro).
pub type LinkFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The lock could not read its storage. A request that needed it fails
/// closed (no listing, no page); the cause goes to the log, never to the
/// app.
#[derive(Debug, thiserror::Error)]
#[error("the lock cannot read its storage: {0}")]
pub struct StorageError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// One entry of the event log with its log id (the app's cursor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// Log id: newer events have larger ids.
    pub id: u64,
    pub event: Event,
}

/// The engine, its published state and the store, as an app channel sees
/// them (BLE here, the broker in `src/remote`).
pub trait LockLink: Send + Sync + 'static {
    /// Pairing mode, as the engine last published it (B-5.1).
    fn pairing_mode(&self) -> bool;
    /// The status report for the app (B-9.1), from the published status.
    fn status(&self) -> StatusReport;
    /// The config's `[prompts] language` (issue 17 item 4): the prompt
    /// language while the store holds no choice. `GetSettings` shows the
    /// stored choice, else this — both read after the commit that answered
    /// a `SetSetting`, never an older published status.
    fn default_language(&self) -> Language;
    /// The registered app keys and outstanding guest invites, as of the
    /// last commit (sessions are only accepted for these keys).
    fn app_access(&self) -> Arc<AppAccess>;
    /// What the store holds (users, keys, invites, settings). An error
    /// fails closed: no listing.
    fn persisted(&self) -> LinkFuture<'_, Result<Persisted, StorageError>>;
    /// A page of the event log, newest first, older than `before`.
    fn events_before(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> LinkFuture<'_, Result<Vec<LoggedEvent>, StorageError>>;
    /// Issue 17 item 8: the owner notices `key` has not acknowledged,
    /// oldest first, at most `limit`, and how many more wait. The default
    /// (a lock that keeps none) fails closed.
    fn pending_notices(
        &self,
        key: &AppKey,
        limit: usize,
    ) -> LinkFuture<'_, Result<(Vec<PendingNotice>, u64), StorageError>> {
        let _ = (key, limit);
        Box::pin(async { Err(no_notices()) })
    }
    /// Issue 17 item 8: `key`'s app has the notices up to `up_to`.
    fn ack_notices(&self, key: &AppKey, up_to: u64) -> LinkFuture<'_, Result<(), StorageError>> {
        let _ = (key, up_to);
        Box::pin(async { Err(no_notices()) })
    }
    /// Run an authenticated command; `None` if the engine has stopped.
    fn submit(
        &self,
        via: Channel,
        principal: Principal,
        command: AppCommand,
    ) -> LinkFuture<'_, Option<AppResult>>;
    /// A frame refused before it became a command: into the event log.
    /// Never waits (a flood must not stall the channel).
    fn refused(&self, via: Channel, reason: AppRefusal);
    /// An app connected over BLE, or the last one left (B-9.1 status).
    fn ble_connected(&self, connected: bool);
    /// An Improv client asked the lock to identify itself; the engine
    /// decides whether it does (it rate-limits the request).
    fn identify(&self);
    /// Monotonic and wall-clock now, in the engine's terms.
    fn now(&self) -> (Instant, Option<WallTime>);
    /// Where a bundle streamed over BLE goes (issue 20); `None` on a lock
    /// without RAUC, which refuses the stream requests.
    fn bundles(&self) -> Option<&dyn super::bundle::BundleStore> {
        None
    }
}
