//! Factory reset as a real erase (issue 13 item 5, B-10.6, ETSI EN 303 645
//! provision 5.11): what the previous household left must not be readable
//! by the next one, not even from the raw files.
//!
//! ```text
//!   reset transaction (state.rs)      rows gone: users, credentials, keys,
//!                                     settings, the whole event log; key
//!                                     marked for rotation
//!   ── committed ──► scrub(conn)      WAL checkpointed and truncated, VACUUM,
//!                                     truncated again: no old page is left in
//!                                     the -wal file or in the database's free
//!                                     pages (secure_delete zeroes cells, VACUUM
//!                                     rebuilds every page)
//!                    erase_snapshots  <state>/snapshots/* unlinked
//!   engine logs "factory_reset" ─►    the one event the new log starts with
//!   restart, new key (keystore) ─►    adoption re-seals the key check, then
//!                                     scrub(conn) again: the old check's page goes
//! ```
//!
//! What stays: the trusted-time floor, the service counters (replay
//! windows must not reopen) and event ids (they keep growing, so a broker
//! never mistakes a new event for one it has seen).
//!
//! The limit: unlinking a file or rewriting a page does not scrub the
//! flash blocks under the filesystem (wear levelling keeps stale copies).
//! Whoever images the raw flash may still find old *sealed* pages, which
//! the rotated device key can no longer open — the key rotation is what
//! makes those copies useless; snapshots are plain JPEGs and are only
//! unlinked.
use std::path::Path;

use rusqlite::Connection;

use super::error::{SqlContext, StoreError};

/// The snapshot directory inside the state directory (`video::snapshot`
/// writes it; the store erases it, since it owns the state directory).
pub(crate) const SNAPSHOT_DIR: &str = "snapshots";

/// Run in the reset's transaction: the event log goes with the household.
/// `sqlite_sequence` stays, so ids keep growing after the reset.
pub(crate) const EVENTS_ERASE: &str = "DELETE FROM events;";

/// Move every committed page out of the WAL, truncate it, and rebuild the
/// database so neither file keeps a copy of a deleted row.
///
/// A reader holding a snapshot (the read-only connection mid-query) keeps
/// the WAL from being truncated; SQLite then reports "busy" instead of
/// failing. That is not an error here: the daemon restarts right after a
/// reset and the next open scrubs again before any reader exists.
pub(crate) fn scrub(conn: &Connection) -> Result<bool, StoreError> {
    let busy = checkpoint_truncate(conn)?;
    conn.execute_batch("VACUUM;")
        .ctx("rebuilding the database after a factory reset")?;
    let busy_after = checkpoint_truncate(conn)?;
    Ok(!busy && !busy_after)
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`; true when a reader kept it from
/// completing.
fn checkpoint_truncate(conn: &Connection) -> Result<bool, StoreError> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    })
    .ctx("checkpointing the write-ahead log")
    .map(|busy| busy != 0)
}

/// Unlink every stored snapshot (pictures of the previous household's
/// visitors). A missing directory is nothing to erase.
pub(crate) fn erase_snapshots(state_dir: &Path) -> Result<usize, StoreError> {
    let dir = state_dir.join(SNAPSHOT_DIR);
    let io = |source| StoreError::StateDir {
        path: dir.clone(),
        source,
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(e)),
    };
    let mut n = 0;
    for entry in entries {
        let path = entry.map_err(io)?.path();
        // Only files: the snapshot store writes nothing else there.
        if path.is_file() {
            std::fs::remove_file(&path).map_err(io)?;
            n += 1;
        }
    }
    super::key::sync_dir(&dir).map_err(io)?;
    Ok(n)
}
