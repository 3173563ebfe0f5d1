//! The fuzzer's door into the store's row decoders
//! (`fuzz/fuzz_targets/store_rows.rs`). Not an API: nothing in latchd
//! uses it.
//!
//! Whoever can write the flash can put any bytes in any row, past the
//! schema's `CHECK`s. [`Rows`] is an in-memory database with latchd's
//! schema and check constraints switched off, so the fuzzer can write
//! rows the daemon never would; the decoders are the daemon's own
//! (`state::load`, the event log, the sealed module password, counters).
use rusqlite::Connection;

use super::error::{SqlContext, StoreError};
use super::events::{self, StoredEvent};
use super::key::{Binding, DeviceKey, Sealer};
use super::{module_secret, schema, state};
use crate::core::types::Persisted;

/// An in-memory database with the store's schema.
pub struct Rows {
    conn: Connection,
    sealer: Sealer,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows").finish_non_exhaustive()
    }
}

impl Rows {
    /// A migrated in-memory database whose secrets are sealed under `key`.
    pub fn new(key: &DeviceKey) -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory().ctx("opening an in-memory database")?;
        schema::migrate(&mut conn)?;
        // A file edited by hand (or by an attacker) is not bound by them.
        conn.pragma_update(None, "ignore_check_constraints", true)
            .ctx("switching check constraints off")?;
        Ok(Rows {
            conn,
            sealer: key.sealer(),
        })
    }

    /// The connection, to write rows with.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Seal `plaintext` bound to a row as the store does: table, row id,
    /// kind and owner (see `key.rs`).
    pub fn seal(
        &self,
        table: &str,
        id: i64,
        kind: &str,
        owner: Option<i64>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.sealer.seal(
            &Binding {
                table,
                id,
                kind,
                owner,
            },
            plaintext,
        )
    }

    /// What the engine loads at start.
    pub fn load(&self) -> Result<Persisted, StoreError> {
        state::load(&self.conn, &self.sealer)
    }

    /// The newest `n` events.
    pub fn recent_events(&self, n: usize) -> Result<Vec<StoredEvent>, StoreError> {
        events::recent(&self.conn, n)
    }

    /// The sealed fingerprint module password.
    pub fn module_password(&self) -> Result<Option<u32>, StoreError> {
        module_secret::get(&self.conn, &self.sealer)
    }
}
