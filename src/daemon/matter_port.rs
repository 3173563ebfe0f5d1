//! [`LockPort`] over today's daemon pieces: the engine's input queue and
//! reply broadcast, the published status, the event broadcast and the
//! store. The one file to rebind when `link/` lands.
//!
//! ```text
//!  submit ─► DaemonLink::submit(Channel::Matter) ─► engine ─► Reply
//!  status ◄─ watch<Published>  (a forwarding task keeps watch<Status>)
//!  events ◄─ broadcast<EventRecord> ─► store.events_after(last) ─► broadcast<Event>
//!  blobs  ─► store.{matter_blob, put_matter_blob, delete_matter_blob} (sealed)
//! ```
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{Clock, Published};
use crate::board::InputSender;
use crate::config::Config;
use crate::core::AppResult;
use crate::dbus::EventRecord;
use crate::store::Store;

#[cfg(feature = "matter")]
pub use bound::DaemonMatterPort;

/// What the port is built from.
pub struct PortParts {
    pub inputs: InputSender,
    pub replies: broadcast::Sender<(u64, AppResult)>,
    pub published: watch::Receiver<Published>,
    pub records: broadcast::Receiver<EventRecord>,
    pub store: Arc<Mutex<Store>>,
    pub clock: Clock,
    pub serial: String,
}

/// The Matter manual code for system information (B-4.10), made with the
/// onboarding secret at the first start of a lock with a Matter node. An
/// unreadable secret is logged (the node then refuses to start) and not
/// spoken.
pub fn label_code(config: &Config, store: &mut Store) -> Option<String> {
    if !config.matter.enabled {
        return None;
    }
    #[cfg(feature = "matter")]
    {
        use crate::matter::onboarding::{Onboarding, ONBOARDING_KEY};
        use crate::matter::BlobError;
        use crate::store::MatterScope;
        let loaded = store
            .matter_blob(MatterScope::Label, ONBOARDING_KEY)
            .map_err(|e| BlobError(e.to_string()));
        let made = Onboarding::load_or_create_with(
            move || loaded,
            |b| {
                store
                    .put_matter_blob(MatterScope::Label, ONBOARDING_KEY, b)
                    .map_err(|e| BlobError(e.to_string()))
            },
            &mut rand_core::OsRng,
        );
        match made {
            Ok(o) => Some(o.manual_code()),
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        }
    }
    #[cfg(not(feature = "matter"))]
    {
        let _ = store;
        None
    }
}

/// The running Matter node, if this build and the config have one.
#[derive(Default)]
pub struct MatterNode {
    #[cfg(feature = "matter")]
    handle: Option<crate::matter::MatterHandle>,
}

impl MatterNode {
    /// Start the node as `[matter]` says. A node that cannot start is
    /// logged; the lock runs on without it.
    pub fn start(
        config: &Config,
        parts: PortParts,
        radios: crate::matter::Radios,
        shutdown: CancellationToken,
    ) -> MatterNode {
        if !config.matter.enabled {
            return MatterNode::default();
        }
        #[cfg(feature = "matter")]
        {
            let identity = crate::matter::Identity {
                serial: parts.serial.clone(),
                firmware: env!("CARGO_PKG_VERSION").into(),
            };
            let port = DaemonMatterPort::start(parts, shutdown.clone());
            match crate::matter::spawn(config.matter.clone(), identity, radios, port, shutdown) {
                Ok(handle) => MatterNode {
                    handle: Some(handle),
                },
                Err(e) => {
                    tracing::error!("Matter: cannot start the node's thread: {e}");
                    MatterNode::default()
                }
            }
        }
        #[cfg(not(feature = "matter"))]
        {
            let _ = (parts, radios, shutdown);
            tracing::warn!(
                "Matter: this build has no Matter node (built without the `matter` feature); [matter] is ignored"
            );
            MatterNode::default()
        }
    }

    /// Wait for the node to stop (the shutdown token was cancelled).
    pub async fn join(self) {
        #[cfg(feature = "matter")]
        if let Some(h) = self.handle {
            h.join().await;
        }
    }
}

#[cfg(feature = "matter")]
mod bound {
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};

    use tokio::sync::{broadcast, watch};
    use tokio_util::sync::CancellationToken;

    use super::PortParts;
    use crate::ble::service::{DaemonLink, LockLink};
    use crate::core::types::Persisted;
    use crate::core::{AppCommand, AppResult, Channel, Event, Input, Principal, Status};
    use crate::dbus::EventRecord;
    use crate::matter::{BlobError, BlobScope, LockPort, PortFuture};
    use crate::store::{EventId, MatterScope, Store};

    /// First request id of the Matter channel (BLE uses 1 << 48, the broker
    /// its own range): replies are never taken by another channel's waiter.
    pub const MATTER_ID_BASE: u64 = 3 << 48;

    /// Events kept for a slow node before it is told it lagged.
    const EVENT_QUEUE: usize = 256;

    pub struct DaemonMatterPort {
        link: DaemonLink,
        status: watch::Receiver<Status>,
        events: broadcast::Sender<Event>,
        store: Arc<Mutex<Store>>,
    }

    impl DaemonMatterPort {
        /// The port, and its two forwarding tasks (they end with `shutdown`).
        pub fn start(parts: PortParts, shutdown: CancellationToken) -> Arc<DaemonMatterPort> {
            let (status_tx, status) = watch::channel(parts.published.borrow().engine.clone());
            let mut published = parts.published.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        changed = published.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            let s = published.borrow_and_update().engine.clone();
                            status_tx.send_if_modified(|old| {
                                let changed = *old != s;
                                *old = s;
                                changed
                            });
                        }
                    }
                }
            });
            let (events, _) = broadcast::channel(EVENT_QUEUE);
            tokio::spawn(forward_events(
                parts.records,
                parts.store.clone(),
                events.clone(),
                shutdown,
            ));
            Arc::new(DaemonMatterPort {
                link: DaemonLink {
                    inputs: parts.inputs,
                    replies: parts.replies,
                    published: parts.published,
                    store: parts.store.clone(),
                    clock: parts.clock,
                    id_base: MATTER_ID_BASE,
                    next_id: AtomicU64::new(0),
                    // Matter frames are authenticated by CASE before they get
                    // here; nothing unauthenticated is logged as refused.
                    refusal_log_limit: None,
                },
                status,
                events,
                store: parts.store,
            })
        }

        fn store(&self) -> std::sync::MutexGuard<'_, Store> {
            self.store.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    /// The event broadcast carries D-Bus records; the node wants the engine's
    /// events, so each record is the cue to read the new ones from the log.
    async fn forward_events(
        mut records: broadcast::Receiver<EventRecord>,
        store: Arc<Mutex<Store>>,
        out: broadcast::Sender<Event>,
        shutdown: CancellationToken,
    ) {
        let last = |s: &Store| s.event_bounds().ok().flatten().map(|(_, hi)| hi);
        let mut seen: Option<EventId> = last(&store.lock().unwrap_or_else(|p| p.into_inner()));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = records.recv() => match r {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
            let fresh = {
                let s = store.lock().unwrap_or_else(|p| p.into_inner());
                match seen {
                    Some(id) => s.events_after(id, EVENT_QUEUE),
                    None => s.recent_events(EVENT_QUEUE).map(|mut v| {
                        v.reverse();
                        v
                    }),
                }
            };
            match fresh {
                Ok(events) => {
                    for e in events {
                        seen = Some(e.id);
                        let _ = out.send(e.event);
                    }
                }
                Err(e) => tracing::error!("Matter: cannot read new events from the log: {e}"),
            }
        }
    }

    fn blob_scope(s: BlobScope) -> MatterScope {
        match s {
            BlobScope::Node => MatterScope::Node,
            BlobScope::Label => MatterScope::Label,
        }
    }

    impl LockPort for DaemonMatterPort {
        fn submit(
            &self,
            principal: Principal,
            command: AppCommand,
        ) -> PortFuture<'_, Option<AppResult>> {
            self.link.submit(Channel::Matter, principal, command)
        }

        fn status(&self) -> watch::Receiver<Status> {
            self.status.clone()
        }

        fn directory(&self) -> Result<Persisted, String> {
            self.store().load().map_err(|e| e.to_string())
        }

        fn events(&self) -> broadcast::Receiver<Event> {
            self.events.subscribe()
        }

        fn identify(&self) {
            if !self.link.inputs.try_send(Input::Identify) {
                tracing::warn!("Matter identify not passed on: engine queue full");
            }
        }

        fn blob_load(&self, scope: BlobScope, key: u16) -> Result<Option<Vec<u8>>, BlobError> {
            self.store()
                .matter_blob(blob_scope(scope), key)
                .map_err(|e| BlobError(e.to_string()))
        }

        fn blob_store(&self, scope: BlobScope, key: u16, value: &[u8]) -> Result<(), BlobError> {
            self.store()
                .put_matter_blob(blob_scope(scope), key, value)
                .map_err(|e| BlobError(e.to_string()))
        }

        fn blob_remove(&self, scope: BlobScope, key: u16) -> Result<(), BlobError> {
            self.store()
                .delete_matter_blob(blob_scope(scope), key)
                .map_err(|e| BlobError(e.to_string()))
        }
    }
}
