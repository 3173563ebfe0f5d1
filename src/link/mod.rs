//! The one handle every channel uses to reach the running lock.
//!
//! BLE, MQTT, D-Bus (and the coming Matter channel) never import the
//! daemon and never hold the store: the daemon builds one [`Link`] from the
//! engine task's queues and publications and hands each channel a clone.
//!
//! ```text
//!                         ┌──────────────────────────── Link ─────────────────────────────┐
//!   channel ── submit ───►│ InputSender ─► engine task ─► broadcast<(id, AppResult)> ─► reply│
//!           ── status ───►│ watch<Published>          (no wait)                            │
//!           ── app keys ─►│ watch<Arc<AppAccess>>     (no wait; published after each commit)│
//!           ── notices ──►│ broadcast<OwnerNotice>, broadcast<EventRecord>                 │
//!           ── reads ────►│ StoreReads: read-only connection, blocking pool                │
//!           ── counters ─►│ StoreHandle: the one writer thread (channel-private values)    │
//!           ── self-test ►│ mpsc<TaskRequest> ─► engine task (between inputs)              │
//!           ── refused ──►│ RefusalLimiter (per channel) ─► Input::AppRefused (never waits)│
//!                         └────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The engine task stays the only writer of lock state: a channel changes
//! nothing except through `Input::App`, which the engine decides. The
//! channels' own counters (replay counters, the push counter, the event
//! cursor) go through the same single writer thread (`store/thread.rs`).
//!
//! * [`input`]: [`InputSender`] / [`OrderedSender`], the engine's one queue.
//! * [`clock`]: [`Clock`], the daemon's two clocks.
//! * [`published`]: [`Published`], [`DaemonCounters`], [`OwnerNotice`],
//!   [`TaskRequest`].
//! * [`views`]: [`EventRecord`] / [`event_record`], [`DeviceCheck`].
//! * [`limit`]: [`RefusalLimiter`], the rate limit on refused frames.
//! * [`bus_name`]: [`bus_name::NameWatch`], a system service restarting
//!   (bluetoothd, wpa_supplicant) seen on the bus.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::app::crypto::KeyId;
use crate::app::lock_link::{LinkFuture, LockLink, LoggedEvent, StorageError};
use crate::app::response::PendingNotice;
use crate::app::wire::{self, StatusReport};
use crate::app::Response;
use crate::core::event::AppRefusal;
use crate::core::time::{Instant, WallTime};
use crate::core::types::{AppKey, Persisted};
use crate::core::users::AppAccess;
use crate::core::{AppCommand, AppRequest, AppResult, Channel, Input, Principal};
use crate::store::{StoreError, StoreHandle, StoreReads};

pub mod bus_name;
pub mod clock;
pub mod health;
pub mod input;
pub mod limit;
pub mod published;
pub mod rtc;
pub mod views;

/// Which of the Matter node's sealed blobs (fabrics or the label secret).
pub use crate::store::MatterScope;
/// The event log's entries and the storage summary, as channels see them.
pub use crate::store::{EventId, StorageHealth, StoredEvent};
pub use clock::{Clock, TimeSource};
pub use health::{BleHealth, HealthBoard, MatterHealth, ServiceHealth};
pub use input::{InputSender, OrderedSender};
pub use limit::RefusalLimiter;
pub use published::{DaemonCounters, OwnerNotice, Published, TaskRequest};
pub use views::{event_record, DeviceCheck, EventRecord};

/// Why a channel's request through the link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the lock engine has stopped")]
    EngineStopped,
}

/// What the daemon builds a [`Link`] from: the engine task's queues and
/// publications, and the store's writer and reader.
#[derive(Debug)]
pub struct LinkParts {
    /// The engine's input queue (`Input::App`, refusals, BLE presence).
    pub inputs: InputSender,
    /// The engine's answers to `Input::App`, by request id. Receivers
    /// only: the engine task holds the one sender, so its end closes them.
    pub replies: broadcast::Receiver<(u64, AppResult)>,
    /// Engine status and daemon counters, after every input.
    pub published: watch::Receiver<Published>,
    /// App keys and guest invites, after every commit that changes them.
    pub app_access: watch::Receiver<Arc<AppAccess>>,
    /// Owner notices (doorbell, alarms, duress, away unlock).
    pub notices: broadcast::Receiver<OwnerNotice>,
    /// Every logged event, as technicians see it.
    pub events: broadcast::Receiver<EventRecord>,
    /// Requests for the engine task that are not inputs (self-test).
    pub requests: mpsc::Sender<TaskRequest>,
    /// The daemon's clocks.
    pub clock: Clock,
    /// Where the radio services report their own state (issue 22).
    pub health: HealthBoard,
    /// The one writer (channel-private counters).
    pub store: StoreHandle,
    /// The read-only connection (event pages, listings, exports).
    pub reads: StoreReads,
    /// `[prompts] language`: the prompt language while the store holds no
    /// choice (issue 17 item 4).
    pub default_language: crate::core::Language,
    /// Where a bundle streamed over BLE goes (issue 20), on a lock with
    /// RAUC.
    pub bundles: Option<Arc<dyn crate::app::bundle::BundleStore>>,
}

/// The running lock as a channel sees it. Cheap to clone; every clone
/// shares the queues, the store handles and the request-id counter.
#[derive(Clone, Debug)]
pub struct Link {
    shared: Arc<Shared>,
    /// This channel's refusals are rate-limited before they reach the
    /// event log (a radio-range attacker reconnecting and sending junk
    /// must not push real history out of the bounded log). `None` when
    /// the channel limits refusals itself before they get here (the
    /// broker path does).
    refusals: Option<Arc<Mutex<RefusalLimiter>>>,
}

#[derive(Debug)]
struct Shared {
    parts: LinkParts,
    /// Request ids of `Input::App`, one counter for every channel, so a
    /// reply is never taken by the wrong waiter.
    next_id: AtomicU64,
}

impl Link {
    pub fn new(parts: LinkParts) -> Self {
        Link {
            shared: Arc::new(Shared {
                parts,
                next_id: AtomicU64::new(1),
            }),
            refusals: None,
        }
    }

    /// A link for a channel whose refused frames are rate-limited here
    /// (its own bucket, shared by the clones of the returned link).
    pub fn with_refusal_limit(&self) -> Self {
        let now = self.clock().now().mono;
        Link {
            shared: self.shared.clone(),
            refusals: Some(Arc::new(Mutex::new(RefusalLimiter::new(now)))),
        }
    }

    fn p(&self) -> &LinkParts {
        &self.shared.parts
    }

    /// The engine's input queue.
    pub fn inputs(&self) -> &InputSender {
        &self.p().inputs
    }

    /// The daemon's clocks.
    pub fn clock(&self) -> &Clock {
        &self.p().clock
    }

    /// Where the radio services report their own state (issue 22).
    pub fn health(&self) -> &HealthBoard {
        &self.p().health
    }

    /// Engine status and daemon counters, as last published.
    pub fn published(&self) -> watch::Receiver<Published> {
        self.p().published.clone()
    }

    /// App keys and guest invites, told of every commit that changes them
    /// (a channel that acts when an owner key appears waits on it).
    pub fn app_access_watch(&self) -> watch::Receiver<Arc<AppAccess>> {
        self.p().app_access.clone()
    }

    /// Owner notices from now on.
    pub fn notices(&self) -> broadcast::Receiver<OwnerNotice> {
        self.p().notices.resubscribe()
    }

    /// Logged events from now on.
    pub fn events(&self) -> broadcast::Receiver<EventRecord> {
        self.p().events.resubscribe()
    }

    /// The newest `limit` events, newest first (read-only connection).
    pub async fn recent_events(&self, limit: usize) -> Result<Vec<StoredEvent>, LinkError> {
        Ok(self.p().reads.recent_events(limit).await?)
    }

    /// Up to `limit` events older than `before` (the newest if `None`),
    /// newest first (read-only connection).
    pub async fn events_before(
        &self,
        before: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, LinkError> {
        Ok(self.p().reads.events_before(before, limit).await?)
    }

    /// Events newer than `id`, oldest first (read-only connection).
    pub async fn events_after(
        &self,
        id: EventId,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, LinkError> {
        Ok(self.p().reads.events_after(id, limit).await?)
    }

    /// The storage summary for diagnostics.
    pub async fn storage_health(&self) -> StorageHealth {
        self.p().store.health().await
    }

    /// A channel-private counter (through the writer, so it reflects
    /// every write made so far).
    pub async fn counter(&self, name: &str) -> Result<Option<u64>, LinkError> {
        Ok(self.p().store.get_counter(name).await?)
    }

    /// Store a channel-private counter; committed when this returns `Ok`.
    pub async fn put_counter(&self, name: &str, value: u64) -> Result<(), LinkError> {
        Ok(self.p().store.put_counter(name, value).await?)
    }

    /// Advance a channel-private counter by one and return the new value,
    /// committed before it is returned.
    pub async fn next_counter(&self, name: &str) -> Result<u64, LinkError> {
        Ok(self.p().store.next_counter(name).await?)
    }

    /// The Matter node's sealed blob under `key`, opened (on the writer,
    /// so it sees every write). Blocks the calling thread: for the node's
    /// own thread, never for an async task of the daemon.
    pub fn matter_blob_blocking(
        &self,
        scope: MatterScope,
        key: u16,
    ) -> Result<Option<Vec<u8>>, LinkError> {
        Ok(self
            .p()
            .store
            .call_blocking(move |s| s.matter_blob(scope, key))??)
    }

    /// Seal and store a Matter blob; committed when this returns `Ok`.
    /// Blocks like [`Link::matter_blob_blocking`].
    pub fn put_matter_blob_blocking(
        &self,
        scope: MatterScope,
        key: u16,
        value: Vec<u8>,
    ) -> Result<(), LinkError> {
        Ok(self
            .p()
            .store
            .call_blocking(move |s| s.put_matter_blob(scope, key, &value))??)
    }

    /// Remove a Matter blob (absent is not an error). Blocks like
    /// [`Link::matter_blob_blocking`].
    pub fn delete_matter_blob_blocking(
        &self,
        scope: MatterScope,
        key: u16,
    ) -> Result<(), LinkError> {
        Ok(self
            .p()
            .store
            .call_blocking(move |s| s.delete_matter_blob(scope, key))??)
    }

    /// Users and credentials as committed so far (the writer's view, so a
    /// command's change is seen by the next read). Blocks like
    /// [`Link::matter_blob_blocking`].
    pub fn persisted_blocking(&self) -> Result<Persisted, LinkError> {
        Ok(self.p().store.call_blocking(|s| s.load())??)
    }

    /// Read every device once (answered by the engine task between inputs).
    pub async fn self_test(&self) -> Result<Vec<DeviceCheck>, LinkError> {
        let (tx, rx) = oneshot::channel();
        self.p()
            .requests
            .send(TaskRequest::SelfTest(tx))
            .await
            .map_err(|_| LinkError::EngineStopped)?;
        rx.await.map_err(|_| LinkError::EngineStopped)
    }

    /// Decide whether a refused frame is logged, and as what.
    fn refusal_to_log(&self, reason: AppRefusal) -> Option<AppRefusal> {
        use limit::Decision;
        let Some(limit) = &self.refusals else {
            return Some(reason);
        };
        let now = self.clock().now().mono;
        // Held for a few integer operations, never across an await.
        let mut limit = limit.lock().unwrap_or_else(|p| p.into_inner());
        match limit.before(now) {
            // Inside a burst: counted, not logged.
            Decision::Check { .. } => limit.refused(now).then_some(reason),
            Decision::Drop {
                first_of_burst: true,
            } => Some(AppRefusal::RateLimited),
            Decision::Drop {
                first_of_burst: false,
            } => None,
        }
    }
}

fn storage(e: StoreError) -> StorageError {
    StorageError(Box::new(e))
}

impl LockLink for Link {
    fn pairing_mode(&self) -> bool {
        self.p().published.borrow().engine.pairing_mode
    }

    fn status(&self) -> StatusReport {
        let mut report = wire::status_report(&self.p().published.borrow().engine);
        if let Some(u) = report.update.as_mut() {
            u.other_slot = self.health().get().other_slot;
        }
        report
    }

    fn default_language(&self) -> crate::core::Language {
        self.p().default_language
    }

    fn app_access(&self) -> Arc<AppAccess> {
        self.p().app_access.borrow().clone()
    }

    fn persisted(&self) -> LinkFuture<'_, Result<Persisted, StorageError>> {
        Box::pin(async move { self.p().reads.load().await.map_err(storage) })
    }

    fn events_before(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> LinkFuture<'_, Result<Vec<LoggedEvent>, StorageError>> {
        Box::pin(async move {
            let page = self
                .p()
                .reads
                .events_before(before.map(EventId), limit)
                .await
                .map_err(storage)?;
            Ok(page
                .into_iter()
                .map(|s| LoggedEvent {
                    id: s.id.0,
                    event: s.event,
                })
                .collect())
        })
    }

    fn pending_notices(
        &self,
        key: &AppKey,
        limit: usize,
    ) -> LinkFuture<'_, Result<(Vec<PendingNotice>, u64), StorageError>> {
        let slot = key.id.0;
        let key_id = KeyId::of(&key.public_key).0;
        Box::pin(async move {
            let (rows, more) = self
                .p()
                .store
                .call(move |s| s.pending_notices(slot, &key_id, limit))
                .await
                .and_then(|r| r)
                .map_err(storage)?;
            let notices = rows
                .into_iter()
                .filter_map(|(id, body)| match Response::decode(&body) {
                    Ok(Response::Notice(entry)) => Some(PendingNotice { id, entry }),
                    // Written by this code only; a body it cannot read is
                    // skipped (it is acknowledged with the rest).
                    _ => {
                        tracing::warn!(id, "a stored notice does not decode");
                        None
                    }
                })
                .collect();
            Ok((notices, more))
        })
    }

    fn ack_notices(&self, key: &AppKey, up_to: u64) -> LinkFuture<'_, Result<(), StorageError>> {
        let slot = key.id.0;
        let key_id = KeyId::of(&key.public_key).0;
        Box::pin(async move {
            self.p()
                .store
                .call(move |s| s.ack_notices(slot, &key_id, up_to))
                .await
                .and_then(|r| r)
                .map_err(storage)
        })
    }

    fn submit(
        &self,
        via: Channel,
        principal: Principal,
        command: AppCommand,
    ) -> LinkFuture<'_, Option<AppResult>> {
        Box::pin(async move {
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            // Subscribe before sending: the reply cannot overtake us.
            let mut replies = self.p().replies.resubscribe();
            let req = AppRequest {
                id,
                via,
                principal,
                command,
            };
            if !self.p().inputs.send(Input::App(req)).await {
                return None;
            }
            loop {
                match replies.recv().await {
                    Ok((rid, result)) if rid == id => return Some(result),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    fn refused(&self, via: Channel, reason: AppRefusal) {
        let Some(reason) = self.refusal_to_log(reason) else {
            return;
        };
        // Never wait here: a flood of junk frames must not stall the
        // channel on a full engine queue.
        if !self.p().inputs.try_send(Input::AppRefused { via, reason }) {
            tracing::warn!(
                ?via,
                ?reason,
                "refused app frame not logged: engine queue full"
            );
        }
    }

    fn ble_connected(&self, connected: bool) {
        if !self.p().inputs.try_send(Input::BleConnected(connected)) {
            tracing::warn!(
                connected,
                "BLE connection state not reported: engine queue full"
            );
        }
    }

    fn identify(&self) {
        if !self.p().inputs.try_send(Input::Identify) {
            tracing::warn!("Improv identify dropped: engine queue full");
        }
    }

    fn bundles(&self) -> Option<&dyn crate::app::bundle::BundleStore> {
        self.p().bundles.as_deref()
    }

    fn now(&self) -> (Instant, Option<WallTime>) {
        let n = self.clock().now();
        (n.mono, n.wall)
    }
}

/// A [`Link`] over a real store and bare channels, for unit tests of the
/// channels' glue.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::core::{Engine, EngineConfig, Now};
    use crate::store::{Store, StoreOptions, StoreThread};

    /// The other ends of a test link's channels, kept open while it lives.
    pub(crate) struct Ends {
        /// What the link sent the engine.
        pub inputs: mpsc::Receiver<Input>,
        /// The requests that are not inputs (self-test).
        pub requests: mpsc::Receiver<TaskRequest>,
        /// Answers to `Input::App`, as the engine would send them.
        pub replies: broadcast::Sender<(u64, AppResult)>,
        // Held only so the link's receivers stay open.
        _published: watch::Sender<Published>,
        _app_access: watch::Sender<Arc<AppAccess>>,
        _store: StoreThread,
    }

    /// A link over a fresh store in `dir` whose log already holds
    /// `events`, built as the daemon builds one, with a fresh engine's
    /// status published.
    pub(crate) fn link(dir: &std::path::Path, events: &[crate::core::Event]) -> (Link, Ends) {
        let (mut store, _key) = Store::open(dir, StoreOptions::default()).expect("store");
        store.append_events(events).expect("events");
        let engine = Engine::new(
            EngineConfig::for_tests("LD-TEST"),
            Persisted::default(),
            Now::new(0, None),
        );
        let published = watch::Sender::new(Published {
            engine: engine.status(),
            daemon: Default::default(),
        });
        let app_access = watch::Sender::new(Arc::new(AppAccess::default()));
        let replies = broadcast::Sender::new(16);
        let reads = StoreReads::new(store.reader().expect("reader"));
        let (handle, thread) = StoreHandle::spawn(store).expect("store thread");
        let (tx, inputs) = mpsc::channel(1024);
        let (request_tx, requests) = mpsc::channel(4);
        let link = Link::new(LinkParts {
            inputs: InputSender::new(tx),
            replies: replies.subscribe(),
            published: published.subscribe(),
            app_access: app_access.subscribe(),
            notices: broadcast::channel(4).1,
            events: broadcast::channel(4).1,
            requests: request_tx,
            clock: Clock::new(false),
            health: HealthBoard::new(),
            store: handle,
            reads,
            default_language: crate::core::Language::En,
            bundles: None,
        });
        let ends = Ends {
            inputs,
            requests,
            replies,
            _published: published,
            _app_access: app_access,
            _store: thread,
        };
        (link, ends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{AppError, AppOk};
    use crate::link::limit::CAPACITY;

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_refused_ble_frames_logs_one_burst_and_one_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let (link, mut ends) = testing::link(dir.path(), &[]);
        let link = link.with_refusal_limit();
        for _ in 0..500 {
            link.refused(Channel::Ble, AppRefusal::BadSeal);
        }
        let mut logged = Vec::new();
        while let Ok(Input::AppRefused { reason, .. }) = ends.inputs.try_recv() {
            logged.push(reason);
        }
        let bad_seals = logged.iter().filter(|r| **r == AppRefusal::BadSeal).count();
        assert_eq!(bad_seals, CAPACITY as usize);
        assert_eq!(
            logged
                .iter()
                .filter(|r| **r == AppRefusal::RateLimited)
                .count(),
            1
        );
        assert_eq!(logged.len(), CAPACITY as usize + 1);
    }

    /// Request ids come from one counter: two links (two channels) never
    /// take each other's answers.
    #[tokio::test]
    async fn submit_waits_for_its_own_reply() {
        let dir = tempfile::tempdir().unwrap();
        let (link, mut ends) = testing::link(dir.path(), &[]);
        let other = link.with_refusal_limit();
        let replies = ends.replies.clone();
        let engine = tokio::spawn(async move {
            // Answer in reverse order of arrival, each with its own id.
            let mut ids = Vec::new();
            for _ in 0..2 {
                if let Some(Input::App(req)) = ends.inputs.recv().await {
                    ids.push(req.id);
                }
            }
            for id in ids.iter().rev() {
                let result = if *id == ids[0] {
                    Ok(AppOk::Done)
                } else {
                    Err(AppError::Forbidden)
                };
                replies.send((*id, result)).unwrap();
            }
            ends
        });
        let (a, b) = tokio::join!(
            link.submit(Channel::Ble, Principal::Pairing, AppCommand::Unlock),
            async {
                // Second in line.
                tokio::task::yield_now().await;
                other
                    .submit(Channel::Remote, Principal::Pairing, AppCommand::Lock)
                    .await
            }
        );
        let _ends = engine.await.unwrap();
        assert_eq!(a, Some(Ok(AppOk::Done)));
        assert_eq!(b, Some(Err(AppError::Forbidden)));
    }
}
