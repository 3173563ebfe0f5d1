//! [`LockPort`] over the [`Link`], the one handle every channel uses: the
//! node reaches the lock exactly as BLE and MQTT do.
//!
//! ```text
//!  submit ─► Link::submit(Channel::Matter) ─► engine ─► AppResult
//!  status ◄─ Link::published() (a forwarding task keeps watch<Status>)
//!  events ◄─ Link::events() cue ─► Link::events_after(last) ─► broadcast<Event>
//!  directory, blobs ─► Link::*_blocking ─► the store's writer thread (sealed)
//! ```
//!
//! The directory and the blobs are synchronous calls made on the node's
//! own thread (rs-matter's persistence and the Door Lock handlers are not
//! async); they wait on the store's writer thread, never on the daemon's
//! runtime.
use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{BlobError, BlobScope, LockPort, PortFuture};
use crate::app::lock_link::LockLink;
use crate::core::types::Persisted;
use crate::core::{AppCommand, AppResult, Channel, Event, Principal, Status};
use crate::link::{EventId, Link, MatterHealth, MatterScope};

/// Events kept for a slow node before it is told it lagged.
const EVENT_QUEUE: usize = 256;

/// The lock as the node sees it, over a [`Link`].
#[derive(Debug)]
pub struct LinkPort {
    link: Link,
    status: watch::Receiver<Status>,
    events: broadcast::Sender<Event>,
}

impl LinkPort {
    /// The port, and its two forwarding tasks on the caller's runtime
    /// (they end with `shutdown`).
    pub fn start(link: Link, shutdown: CancellationToken) -> Arc<LinkPort> {
        let mut published = link.published();
        let (status_tx, status) = watch::channel(published.borrow().engine.clone());
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
        tokio::spawn(forward_events(link.clone(), events.clone(), shutdown));
        Arc::new(LinkPort {
            link,
            status,
            events,
        })
    }
}

/// The link's event broadcast carries technicians' records; the node wants
/// the engine's events, so each record is the cue to read the new ones
/// from the log (read-only connection).
async fn forward_events(link: Link, out: broadcast::Sender<Event>, shutdown: CancellationToken) {
    let mut records = link.events();
    let mut seen: Option<EventId> = match link.recent_events(1).await {
        Ok(v) => v.first().map(|e| e.id),
        Err(e) => {
            tracing::error!("Matter: cannot read the event log: {e}");
            None
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = records.recv() => match r {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
        let fresh = match seen {
            Some(id) => link.events_after(id, EVENT_QUEUE).await,
            None => link.recent_events(EVENT_QUEUE).await.map(|mut v| {
                v.reverse();
                v
            }),
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

impl LockPort for LinkPort {
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
        self.link.persisted_blocking().map_err(|e| e.to_string())
    }

    fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn identify(&self) {
        self.link.identify();
    }

    fn blob_load(&self, scope: BlobScope, key: u16) -> Result<Option<Vec<u8>>, BlobError> {
        self.link
            .matter_blob_blocking(blob_scope(scope), key)
            .map_err(|e| BlobError(e.to_string()))
    }

    fn blob_store(&self, scope: BlobScope, key: u16, value: &[u8]) -> Result<(), BlobError> {
        self.link
            .put_matter_blob_blocking(blob_scope(scope), key, value.to_vec())
            .map_err(|e| BlobError(e.to_string()))
    }

    fn blob_remove(&self, scope: BlobScope, key: u16) -> Result<(), BlobError> {
        self.link
            .delete_matter_blob_blocking(blob_scope(scope), key)
            .map_err(|e| BlobError(e.to_string()))
    }

    fn report(&self, health: MatterHealth) {
        self.link.health().set_matter(health);
    }
}
