//! The daemon's side of the D-Bus seam, over the [`Link`]: self-test from
//! the engine task, event history and the export from the store's
//! read-only connection (on the blocking pool, never under a lock held
//! across an await, never blocking the engine's writes).
use tokio::sync::watch;

use super::{BackendError, BackendFuture, DeviceCheck, Diagnostics, DiagnosticsBackend};
use crate::link::{event_record, EventRecord, Link, LinkError, StoredEvent};

/// Events the export carries (newest last).
const EXPORT_EVENTS: usize = 200;

/// [`DiagnosticsBackend`] for the running lock.
#[derive(Debug)]
pub struct LockBackend {
    link: Link,
    diagnostics: watch::Receiver<Diagnostics>,
}

impl LockBackend {
    pub fn new(link: Link, diagnostics: watch::Receiver<Diagnostics>) -> Self {
        LockBackend { link, diagnostics }
    }
}

fn failed(e: LinkError) -> BackendError {
    BackendError(e.to_string())
}

/// The store gives newest first; the interface wants newest last.
fn records(stored: &[StoredEvent]) -> Vec<EventRecord> {
    stored
        .iter()
        .rev()
        .map(|s| event_record(s.id.0, &s.event))
        .collect()
}

impl DiagnosticsBackend for LockBackend {
    fn self_test(&self) -> BackendFuture<'_, Vec<DeviceCheck>> {
        Box::pin(async move { self.link.self_test().await.map_err(failed) })
    }

    fn recent_events(&self, limit: u32) -> BackendFuture<'_, Vec<EventRecord>> {
        Box::pin(async move {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let stored = self.link.recent_events(limit).await.map_err(failed)?;
            Ok(records(&stored))
        })
    }

    fn export(&self) -> BackendFuture<'_, String> {
        Box::pin(async move {
            let health = self.link.storage_health().await;
            let stored = self
                .link
                .recent_events(EXPORT_EVENTS)
                .await
                .map_err(failed)?;
            let doc = serde_json::json!({
                "diagnostics": *self.diagnostics.borrow(),
                "storage": health,
                "events": records(&stored),
            });
            Ok(doc.to_string())
        })
    }
}
