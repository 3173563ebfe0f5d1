//! The daemon's side of the D-Bus seam, over the [`Link`]: self-test from
//! the engine task, event history and the export from the store's
//! read-only connection (on the blocking pool, never under a lock held
//! across an await, never blocking the engine's writes).
use tokio::sync::watch;

use super::{BackendError, BackendFuture, DeviceCheck, Diagnostics, DiagnosticsBackend};
use crate::link::{event_record, EventId, EventRecord, Link, LinkError, StoredEvent};

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

    fn events_before(
        &self,
        before: Option<u64>,
        limit: u32,
    ) -> BackendFuture<'_, Vec<EventRecord>> {
        Box::pin(async move {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let stored = self
                .link
                .events_before(before.map(EventId), limit)
                .await
                .map_err(failed)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{Event, EventKind};
    use crate::core::WallTime;
    use crate::link::TaskRequest;

    fn doorbell(at: i64) -> Event {
        Event {
            at: Some(WallTime(at)),
            mono_ms: 0,
            kind: EventKind::Doorbell,
        }
    }

    /// Issue 17 item 7: the audit export pages back through the whole
    /// log (more than one page), each page strictly older, oldest first.
    #[tokio::test]
    async fn events_before_pages_through_the_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        // Records (a door opening), not noise: noise has a smaller budget.
        let events: Vec<Event> = (1..=2_500)
            .map(|t| Event {
                kind: EventKind::DoorOpened,
                ..doorbell(t)
            })
            .collect();
        let (link, _ends) = crate::link::testing::link(dir.path(), &events);
        let (_diag_tx, diag) = watch::channel(Diagnostics::default());
        let backend = LockBackend::new(link, diag);
        let mut before = None;
        let mut seen = Vec::new();
        loop {
            let page = backend.events_before(before, 1000).await.unwrap();
            let Some(first) = page.first() else { break };
            assert!(page.len() <= 1000);
            assert!(page.windows(2).all(|w| w[0].id < w[1].id), "newest last");
            before = Some(first.id);
            seen.splice(0..0, page.iter().map(|r| r.time));
        }
        assert_eq!(seen, (1..=2_500).collect::<Vec<i64>>());
    }

    /// Issue 14.7: history and export come from the read-only connection
    /// while the writer keeps committing; the self-test from the engine.
    #[tokio::test]
    async fn history_export_and_self_test_go_through_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let events = [doorbell(1), doorbell(2), doorbell(3)];
        let (link, mut ends) = crate::link::testing::link(dir.path(), &events);
        let (_diag_tx, diag) = watch::channel(Diagnostics::default());
        let backend = LockBackend::new(link.clone(), diag);

        let recent = backend.recent_events(2).await.unwrap();
        assert_eq!(
            recent.iter().map(|r| r.time).collect::<Vec<_>>(),
            vec![2, 3],
            "newest last"
        );
        // The writer thread serves a channel's counter between the reads.
        link.put_counter("test.cursor", 7).await.unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(&backend.export().await.unwrap()).unwrap();
        assert_eq!(doc["events"].as_array().map(Vec::len), Some(3));
        assert_eq!(doc["storage"]["events"], 3);
        assert_eq!(link.counter("test.cursor").await.unwrap(), Some(7));

        let engine = tokio::spawn(async move {
            if let Some(TaskRequest::SelfTest(reply)) = ends.requests.recv().await {
                let _ = reply.send(vec![DeviceCheck {
                    device: "motor".into(),
                    ok: true,
                    detail: "idle".into(),
                }]);
            }
            ends
        });
        let checks = backend.self_test().await.unwrap();
        assert_eq!(checks.len(), 1);
        let ends = engine.await.unwrap();
        drop(ends.requests);
        assert!(backend.self_test().await.is_err(), "engine gone: an error");
    }
}
