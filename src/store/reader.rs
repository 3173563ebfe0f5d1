//! Reads for the channels: a second, read-only connection to the same
//! database, used off the async workers.
//!
//! ```text
//!   channel task ── StoreReads::events_before(..).await
//!                       │ spawn_blocking
//!                       ▼
//!                   lock(Mutex<StoreReader>) → SELECT … (WAL snapshot) → unlock
//!                       │ result
//!                       ▼
//!                   back on the async worker; no lock is held across an await
//! ```
//!
//! In WAL mode a reader never blocks the writer and the writer never
//! blocks a reader: an event page for an app or a D-Bus export runs while
//! the engine task commits. Each query sees the last committed state. The
//! connection is opened read-only (`SQLITE_OPEN_READ_ONLY`, `query_only`),
//! so a bug here cannot write.
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use super::error::{SqlContext, StoreError};
use super::events::{self, EventId, StoredEvent};
use super::key::Sealer;
use super::state;
use crate::core::types::Persisted;

/// A read-only connection to the store's database.
pub struct StoreReader {
    pub(super) conn: Connection,
    sealer: Sealer,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader").finish_non_exhaustive()
    }
}

impl StoreReader {
    /// Open `db_path` read-only; `sealer` opens the sealed columns; its
    /// page cache holds `cache_kib` KiB at most.
    pub(crate) fn open(db_path: &Path, sealer: Sealer, cache_kib: u32) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            db_path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ctx("opening the database for reading")?;
        conn.execute_batch("PRAGMA query_only=ON; PRAGMA trusted_schema=OFF;")
            .ctx("setting the reader's pragmas")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .ctx("setting the reader's busy timeout")?;
        super::schema::set_cache(&conn, cache_kib)?;
        Ok(StoreReader { conn, sealer })
    }

    /// Everything the store holds for the engine (users, credentials,
    /// keys, invites, settings). Opens every sealed value: not for a
    /// per-frame path.
    pub fn load(&self) -> Result<Persisted, StoreError> {
        state::load(&self.conn, &self.sealer)
    }

    /// The newest `limit` events, newest first.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        events::recent(&self.conn, limit)
    }

    /// A page of events older than `cursor` (or the newest), newest first.
    pub fn events_before(
        &self,
        cursor: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        events::before(&self.conn, cursor, limit)
    }

    /// Events newer than `id`, oldest first.
    pub fn events_after(&self, id: EventId, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        events::after(&self.conn, id, limit)
    }
}

/// The reader for async code: every read runs on the blocking pool, the
/// connection's lock taken and released there.
#[derive(Clone, Debug)]
pub struct StoreReads {
    reader: Arc<Mutex<StoreReader>>,
}

impl StoreReads {
    pub fn new(reader: StoreReader) -> Self {
        StoreReads {
            reader: Arc::new(Mutex::new(reader)),
        }
    }

    /// Run `f` on the reader, off the async workers.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&StoreReader) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            // A panic in an earlier read leaves the connection usable (no
            // transaction is held between reads).
            let reader = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&reader)
        })
        .await
        .map_err(|e| StoreError::Stopped {
            detail: format!("a store read did not finish: {e}"),
        })?
    }

    /// See [`StoreReader::load`].
    pub async fn load(&self) -> Result<Persisted, StoreError> {
        self.read(|r| r.load()).await
    }

    /// See [`StoreReader::recent_events`].
    pub async fn recent_events(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |r| r.recent_events(limit)).await
    }

    /// See [`StoreReader::events_before`].
    pub async fn events_before(
        &self,
        cursor: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |r| r.events_before(cursor, limit)).await
    }

    /// See [`StoreReader::events_after`].
    pub async fn events_after(
        &self,
        id: EventId,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(move |r| r.events_after(id, limit)).await
    }
}
