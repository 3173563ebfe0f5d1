//! The bounded event log (B-9.6).
//!
//! ```text
//!   id:  1  2  3 … 4 998  4 999  5 000 ◄─ append (one transaction per batch)
//!        └─ pruned ─┘ └───── newest max_events kept ─────┘
//! ```
//!
//! Two retention classes (`EventKind::retention`, issue 14 item 4) are
//! pruned apart: the newest `max_events` *records* (unlocks, failures,
//! lockouts, alarms, key and setting changes…) and, on top, the newest
//! `max_events / 5` *noise* entries (doorbell presses, refused app frames,
//! the door swinging…). Noise can only evict older noise.
//!
//! Ids come from an `AUTOINCREMENT` key, so they only ever grow — across
//! restarts, pruning and factory resets — and a broker or app that has
//! seen id N can ask for everything after N. Each row keeps the event
//! kind as JSON plus indexed columns for the id, the wall time and the
//! kind's name, so the app can filter without parsing every row.
use rusqlite::{params, Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::core::event::{Event, EventKind, NOISE_KIND_NAMES};
use crate::core::time::WallTime;

use super::error::{SqlContext, StoreError};

/// An event's position in the log. Strictly increasing, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId(pub u64);

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: EventId,
    pub event: Event,
}

/// How many noise entries ([`crate::core::event::Retention::Noise`]) the log keeps on top of
/// its `max_events` records: a fifth as many (at least one).
pub(crate) fn noise_budget(max_events: usize) -> usize {
    (max_events / 5).max(1)
}

/// `'doorbell', 'app_refused', …`: the noise kinds as an SQL list. Built
/// from a constant of the code, never from input.
fn noise_names_sql() -> String {
    NOISE_KIND_NAMES
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Append `events` in one transaction and prune the oldest beyond
/// `max_events` records and [`noise_budget`] noise entries.
pub(crate) fn append(
    conn: &mut Connection,
    events: &[Event],
    max_events: usize,
) -> Result<Vec<EventId>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("starting an event append")?;
    let mut ids = Vec::with_capacity(events.len());
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO events (wall, mono_ms, kind_name, kind_json) VALUES (?1, ?2, ?3, ?4)",
            )
            .ctx("preparing an event append")?;
        for e in events {
            let json = serde_json::to_value(&e.kind).map_err(|err| StoreError::Decode {
                what: "event".into(),
                detail: err.to_string(),
            })?;
            let name = kind_name(&json);
            // mono_ms is stored bit-for-bit in SQLite's signed 64-bit
            // integer and cast back on read.
            insert
                .execute(params![
                    e.at.map(|w| w.0),
                    e.mono_ms as i64,
                    name,
                    json.to_string()
                ])
                .ctx("appending an event")?;
            ids.push(EventId(tx.last_insert_rowid() as u64));
        }
    }
    // Keep the newest `max_events` records and the newest
    // `noise_budget(max_events)` noise entries (two classes, so no flood
    // of noise pushes a record out; issue 14 item 4). Each statement finds
    // the id of the n-th newest row of its class and deletes that class's
    // older rows (walks the primary key or the `events_by_kind` index; no
    // full scan). With fewer rows the subquery is NULL and nothing goes.
    let noise = noise_names_sql();
    for (class, keep) in [
        (format!("kind_name NOT IN ({noise})"), max_events),
        (format!("kind_name IN ({noise})"), noise_budget(max_events)),
    ] {
        tx.execute(
            &format!(
                "DELETE FROM events WHERE {class} AND id < \
                 (SELECT id FROM events WHERE {class} ORDER BY id DESC LIMIT 1 OFFSET ?1)"
            ),
            [keep as i64 - 1],
        )
        .ctx("pruning old events")?;
    }
    tx.commit().ctx("committing an event append")?;
    Ok(ids)
}

/// The name of an event kind: the serde tag (`{"type": "unlocked", ..}`).
fn kind_name(json: &serde_json::Value) -> String {
    match json {
        serde_json::Value::Object(map) => match map.get("type") {
            Some(serde_json::Value::String(s)) => s.clone(),
            // An externally tagged variant: `{"variant": {...}}`.
            _ if map.len() == 1 => map.keys().next().cloned().unwrap_or_default(),
            _ => "unknown".into(),
        },
        serde_json::Value::String(s) => s.clone(),
        _ => "unknown".into(),
    }
}

const SELECT: &str = "SELECT id, wall, mono_ms, kind_json FROM events";

fn query(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).ctx("reading events")?;
    let rows = stmt
        .query_map(args, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .ctx("reading events")?;
    let mut out = Vec::new();
    for row in rows {
        let (id, wall, mono, json) = row.ctx("reading events")?;
        let kind: EventKind = serde_json::from_str(&json).map_err(|e| StoreError::Decode {
            what: format!("event {id}"),
            detail: e.to_string(),
        })?;
        out.push(StoredEvent {
            id: EventId(id as u64),
            event: Event {
                at: wall.map(WallTime),
                mono_ms: mono as u64,
                kind,
            },
        });
    }
    Ok(out)
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn id_param(id: EventId) -> i64 {
    i64::try_from(id.0).unwrap_or(i64::MAX)
}

pub(crate) fn recent(conn: &Connection, n: usize) -> Result<Vec<StoredEvent>, StoreError> {
    query(
        conn,
        &format!("{SELECT} ORDER BY id DESC LIMIT ?1"),
        [limit(n)],
    )
}

pub(crate) fn before(
    conn: &Connection,
    cursor: Option<EventId>,
    n: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    match cursor {
        None => recent(conn, n),
        Some(c) => query(
            conn,
            &format!("{SELECT} WHERE id < ?1 ORDER BY id DESC LIMIT ?2"),
            [id_param(c), limit(n)],
        ),
    }
}

pub(crate) fn after(
    conn: &Connection,
    id: EventId,
    n: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    query(
        conn,
        &format!("{SELECT} WHERE id > ?1 ORDER BY id ASC LIMIT ?2"),
        [id_param(id), limit(n)],
    )
}

/// Oldest and newest id still in the log.
pub(crate) fn bounds(conn: &Connection) -> Result<Option<(EventId, EventId)>, StoreError> {
    conn.query_row("SELECT MIN(id), MAX(id) FROM events", [], |r| {
        Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
    })
    .ctx("reading the event log bounds")
    .map(|(lo, hi)| match (lo, hi) {
        (Some(lo), Some(hi)) => Some((EventId(lo as u64), EventId(hi as u64))),
        _ => None,
    })
}

pub(crate) fn count(conn: &Connection) -> Result<u64, StoreError> {
    conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
        .ctx("counting events")
        .map(|n| n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::LockHow;

    #[test]
    fn kind_names_are_the_serde_tag() {
        let v = serde_json::to_value(EventKind::Locked { how: LockHow::Auto }).unwrap();
        assert_eq!(kind_name(&v), "locked");
        let v = serde_json::to_value(EventKind::Doorbell).unwrap();
        assert_eq!(kind_name(&v), "doorbell");
    }
}
