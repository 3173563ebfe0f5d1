//! Owner notices kept for the apps that were not connected (issue 17
//! item 8), and, per app key, the newest notice that app acknowledged.
//!
//! ```text
//!  engine Notify ─ wire::notice_entry ─► push (sealed, newest KEPT kept)
//!  owner session ─ PendingNotices ─► after(acked(key)) ─► Notices reply
//!                ─ AckNotices{up_to} ─► ack (moves forward only)
//! ```
//!
//! A notice may be a duress alarm (B-6.9), which no log reader may see, so
//! each body is sealed under the device key, bound to its row, and the
//! table goes with the household at a factory reset
//! (`state::SEALED_TABLES_ERASE`). The acknowledgement is keyed by slot
//! *and* the key's id (a hash of its public key): a slot reissued to
//! another key starts with nothing acknowledged.
use rusqlite::{Connection, OptionalExtension};
use zeroize::Zeroizing;

use super::error::{SqlContext, StoreError};
use super::key::{Binding, Sealer};

/// Notices kept: a flood (the doorbell, a lockout every few minutes)
/// pushes the oldest out instead of growing the table.
pub const KEPT: usize = 64;

fn binding(id: i64) -> Binding<'static> {
    Binding {
        table: "owner_notices",
        id,
        kind: "notice",
        owner: None,
    }
}

/// Keep `body` (the app's encoding of the notice) as the newest notice;
/// returns its id.
pub(crate) fn push(conn: &mut Connection, sealer: &Sealer, body: &[u8]) -> Result<u64, StoreError> {
    let tx = conn.transaction().ctx("starting a notice")?;
    tx.execute("INSERT INTO owner_notices (sealed) VALUES (x'')", [])
        .ctx("storing a notice")?;
    let id = tx.last_insert_rowid();
    let sealed = sealer.seal(&binding(id), body)?;
    tx.execute(
        "UPDATE owner_notices SET sealed = ?2 WHERE id = ?1",
        rusqlite::params![id, sealed],
    )
    .ctx("sealing a notice")?;
    tx.execute(
        "DELETE FROM owner_notices WHERE id <= ?1",
        [id - KEPT as i64],
    )
    .ctx("pruning the notices")?;
    tx.commit().ctx("committing a notice")?;
    Ok(id as u64)
}

/// Up to `limit` notices newer than `after`, oldest first, and how many
/// newer ones did not fit.
#[allow(clippy::type_complexity)]
pub(crate) fn after(
    conn: &Connection,
    sealer: &Sealer,
    after: u64,
    limit: usize,
) -> Result<(Vec<(u64, Zeroizing<Vec<u8>>)>, u64), StoreError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare("SELECT id, sealed FROM owner_notices WHERE id > ?1 ORDER BY id LIMIT ?2")
        .ctx("reading the notices")?;
    let rows = stmt
        .query_map(rusqlite::params![after, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .ctx("reading the notices")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("reading the notices")?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, sealed) in rows {
        out.push((id as u64, sealer.open(&binding(id), &sealed)?));
    }
    let last = out.last().map_or(after, |(id, _)| *id as i64);
    let more: i64 = conn
        .query_row(
            "SELECT count(*) FROM owner_notices WHERE id > ?1",
            [last],
            |r| r.get(0),
        )
        .ctx("counting the notices")?;
    Ok((out, more as u64))
}

/// The newest notice kept when key `slot` was added (it is not shown
/// older ones); 0 for a slot without a key.
pub(crate) fn floor(conn: &Connection, slot: u32) -> Result<u64, StoreError> {
    let from: Option<i64> = conn
        .query_row(
            "SELECT notices_from FROM app_keys WHERE id = ?1",
            [slot],
            |r| r.get(0),
        )
        .optional()
        .ctx("reading where a key's notices start")?;
    Ok(from.unwrap_or(0).max(0) as u64)
}

/// The newest notice key `slot` (public key id `key_id`) acknowledged;
/// 0: none.
pub(crate) fn acked(conn: &Connection, slot: u32, key_id: &[u8]) -> Result<u64, StoreError> {
    let row: Option<(Vec<u8>, i64)> = conn
        .query_row(
            "SELECT key_id, up_to FROM notice_acks WHERE slot = ?1",
            [slot],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ctx("reading a notice acknowledgement")?;
    Ok(match row {
        Some((k, up_to)) if k == key_id => up_to as u64,
        _ => 0,
    })
}

/// Key `slot` acknowledged every notice up to `up_to`: only ever forward,
/// and never past the newest notice (an ack cannot hide future ones).
pub(crate) fn ack(
    conn: &mut Connection,
    slot: u32,
    key_id: &[u8],
    up_to: u64,
) -> Result<(), StoreError> {
    let tx = conn.transaction().ctx("starting an acknowledgement")?;
    let newest: i64 = tx
        .query_row("SELECT coalesce(max(id), 0) FROM owner_notices", [], |r| {
            r.get(0)
        })
        .ctx("reading the newest notice")?;
    let up_to = i64::try_from(up_to).unwrap_or(i64::MAX).min(newest);
    let before = acked(&tx, slot, key_id)? as i64;
    if up_to > before {
        tx.execute(
            "INSERT INTO notice_acks (slot, key_id, up_to) VALUES (?1, ?2, ?3)
             ON CONFLICT(slot) DO UPDATE SET key_id = excluded.key_id, up_to = excluded.up_to",
            rusqlite::params![slot, key_id, up_to],
        )
        .ctx("storing a notice acknowledgement")?;
    }
    tx.commit().ctx("committing an acknowledgement")?;
    Ok(())
}
