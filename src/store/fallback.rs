//! Going back one version after a RAUC fall-back (issue 20): the
//! pre-migration copy, and when an older daemon may restore it.
//!
//! ```text
//!  newer daemon, before a step the running version could not read back
//!  (schema::floor > current version), unless a valid copy already exists:
//!    VACUUM INTO latchd.db.schema-<v>.tmp (created 0600) ─ fsync ─► rename
//!    to latchd.db.schema-<v> ─ fsync dir ─► migrate; the first step's
//!    transaction records `fallback_copy = v` in store_meta
//!
//!  every change the copy cannot carry (users, credentials, app keys,
//!  invites, temp passcodes, settings, handing, reset, Matter, module
//!  password) deletes `fallback_copy` in its own transaction; the copy file
//!  is wiped right after (and at the next open if a crash came between)
//!
//!  older daemon, on a database whose min_reader is above its schema:
//!    no `fallback_copy`, copy newer than itself, or copy missing
//!        ─► StoreError::SchemaTooNew (fail closed: the mechanical key works)
//!    else: read what must never go back from the newer database:
//!        service counters (replay windows), service values (cursors), the
//!        trusted-time floor (the higher), the pairing-code generation, the
//!        lockout record, the events logged since the copy and the event-id
//!        sequence
//!      copy ─► latchd.db.restore.tmp, carried rows written in one
//!      transaction (rollback journal, so nothing stays in a -wal) ─ fsync
//!      ─► newer database checkpointed and closed ─► rename over latchd.db
//!      ─ fsync dir ─► copies wiped ─► opened as usual
//! ```
//!
//! Why a copy and not down-migrations: a down step would have to be
//! written, and trusted, in the *older* version, before the newer one
//! exists. The copy needs nothing from the future but the few tables
//! `schema.rs` promises never to reshape.
//!
//! Why the restore is refused after a change: the copy predates it, so a
//! restore would bring back a revoked owner key, a deleted user or a used
//! one-time code. Only what only ever grows (counters, the floor, the
//! pairing generation, event ids) or what must not be forgiven (strikes
//! in the lockout record) is carried forward; anything else refuses.
//!
//! A power cut anywhere leaves a database that opens: before a rename the
//! `.tmp` file is garbage and is removed on the next try; after it the
//! rename's target is whole.
use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::core::event::EventKind;
use crate::core::time::WallTime;
use crate::core::types::{Change, LockoutRecord};

use super::error::{SqlContext, StoreError};
use super::key::sync_dir;
use super::keystore::files;

/// Name (in `store_meta`) of the pre-migration copy's schema version.
/// Present only while no change since the migration has made the copy
/// unsafe to restore.
pub(crate) const COPY_ROW: &str = "fallback_copy";

/// Deletes [`COPY_ROW`]: run in the transaction of every change the copy
/// cannot carry.
pub(crate) const FORGET_COPY: &str = "DELETE FROM store_meta WHERE name = 'fallback_copy'";

const COPY_PREFIX: &str = "latchd.db.schema-";
const RESTORE_TMP: &str = "latchd.db.restore.tmp";

/// Points between the steps of [`make_copy`] and [`restore`] where a test
/// may stop (the process "dies" with the files as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The copy is written and fsynced under its `.tmp` name.
    CopyWritten,
    /// The restored database is written and fsynced under its `.tmp` name.
    RestoreWritten,
    /// The restored database replaced the newer one.
    Restored,
}

/// Called after each [`Step`]; an error abandons the operation there.
pub(crate) type Hook<'a> = &'a mut dyn FnMut(Step) -> std::io::Result<()>;

pub(crate) fn no_hook(_: Step) -> std::io::Result<()> {
    Ok(())
}

/// The pre-migration copy of a schema-`version` database.
pub(crate) fn copy_path(state_dir: &Path, version: i64) -> PathBuf {
    state_dir.join(format!("{COPY_PREFIX}{version}"))
}

/// Whether the copy can bring `change` back unchanged (it carries it
/// forward, see the module doc). Every other change makes the copy unsafe.
pub(crate) fn is_carried(change: &Change) -> bool {
    matches!(
        change,
        Change::PutLockout(_)
            | Change::PutAttempt(_)
            | Change::PutTimeFloor(_)
            | Change::SetPairingGeneration(_)
            // A service_meta row, carried; its `running` version makes the
            // older daemon drop it.
            | Change::PutPendingUpdate(_)
    )
}

/// In the first migration step's transaction: the copy of `version` is the
/// way back.
pub(crate) fn record_copy(tx: &rusqlite::Transaction<'_>, version: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO store_meta (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        params![COPY_ROW, version],
    )
    .ctx("recording the pre-migration copy")?;
    Ok(())
}

/// The copy this database may still go back to, if any.
pub(crate) fn recorded_copy(conn: &Connection) -> Result<Option<i64>, StoreError> {
    conn.query_row(
        "SELECT value FROM store_meta WHERE name = ?1",
        [COPY_ROW],
        |r| r.get(0),
    )
    .optional()
    .ctx("reading the pre-migration copy's version")
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::StateDir {
        path: path.to_path_buf(),
        source,
    }
}

/// Before migrating a schema-`version` database: write its consistent copy
/// next to it (see the module doc), and wipe any other.
pub(crate) fn make_copy(
    conn: &Connection,
    state_dir: &Path,
    version: i64,
    hook: Hook<'_>,
) -> Result<(), StoreError> {
    let path = copy_path(state_dir, version);
    let tmp = files::sibling(&path, ".tmp");
    let err = io_err(&tmp);
    files::wipe(&tmp).map_err(&err)?;
    // VACUUM INTO writes into an empty file; made here so it is 0600 from
    // its first byte (the copy holds every sealed row).
    drop(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(&err)?,
    );
    let target = tmp
        .to_str()
        .ok_or_else(|| StoreError::Invalid(format!("state directory path {tmp:?} is not UTF-8")))?;
    conn.execute("VACUUM INTO ?1", [target])
        .ctx("copying the database before a migration")?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(&err)?;
    hook(Step::CopyWritten).map_err(&err)?;
    fs::rename(&tmp, &path).map_err(&err)?;
    sync_dir(state_dir).map_err(&err)?;
    wipe_copies_except(state_dir, Some(version))?;
    tracing::info!(copy = %path.display(), "copied the database before migrating it");
    Ok(())
}

/// Whether a copy recorded by the database is still on disk (a migration
/// interrupted after its first step keeps that copy).
pub(crate) fn copy_exists(state_dir: &Path, version: i64) -> Result<bool, StoreError> {
    let path = copy_path(state_dir, version);
    files::exists(&path).map_err(io_err(&path))
}

/// Zero and unlink every pre-migration copy (and half-written ones):
/// after a change that made them unsafe, after a restore, and in a factory
/// reset (they hold the previous household's sealed rows).
pub(crate) fn wipe_copies(state_dir: &Path) -> Result<usize, StoreError> {
    wipe_copies_except(state_dir, None)
}

fn wipe_copies_except(state_dir: &Path, keep: Option<i64>) -> Result<usize, StoreError> {
    let err = io_err(state_dir);
    let keep = keep.map(|v| format!("{COPY_PREFIX}{v}"));
    let mut n = 0;
    for entry in fs::read_dir(state_dir).map_err(&err)? {
        let entry = entry.map_err(&err)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with(COPY_PREFIX) || name == RESTORE_TMP;
        if ours && keep.as_deref() != Some(&*name) {
            files::wipe(&entry.path()).map_err(&err)?;
            n += 1;
        }
    }
    Ok(n)
}

/// What [`restore`] did.
pub(crate) enum Restore {
    /// `latchd.db` is now the copy with the carried rows: open it again.
    Done,
    /// Nothing was changed; why the copy cannot be used.
    Refused(String),
}

/// What the restore carries forward from the newer database.
struct Carry {
    counters: Vec<(String, i64)>,
    meta: Vec<(String, Vec<u8>)>,
    /// `lock_state` rows, checked to parse as this version's types.
    state: Vec<(&'static str, String)>,
    time_floor: Option<WallTime>,
    /// id, wall, mono_ms, kind_name, kind_json
    events: Vec<(i64, Option<i64>, i64, String, String)>,
    /// Events logged since the copy in a form this version cannot read.
    events_dropped: usize,
    sequence: Option<i64>,
}

/// On a newer database this build cannot read (`newer`, opened on
/// `db_path`): restore its pre-migration copy if that is safe, else say
/// why not. `newer` is closed either way.
pub(crate) fn restore(
    newer: Connection,
    db_path: &Path,
    latest: i64,
    hook: Hook<'_>,
) -> Result<Restore, StoreError> {
    let state_dir = db_path.parent().unwrap_or(Path::new("."));
    let Some(version) = recorded_copy(&newer)? else {
        return Ok(Restore::Refused(
            "it holds no pre-update copy that is safe to restore: either it predates such \
             copies, or the lock changed after the update (a user, credential, key, setting or \
             Matter fabric), and going back would undo that change"
                .into(),
        ));
    };
    let copy = copy_path(state_dir, version);
    if version > latest {
        return Ok(Restore::Refused(format!(
            "its pre-update copy {} has schema version {version}, newer than this latchd too",
            copy.display()
        )));
    }
    if !copy_exists(state_dir, version)? {
        return Ok(Restore::Refused(format!(
            "its pre-update copy {} is missing",
            copy.display()
        )));
    }
    let tmp = state_dir.join(RESTORE_TMP);
    let err = io_err(&tmp);
    files::wipe(&tmp).map_err(&err)?;
    fs::copy(&copy, &tmp).map_err(&err)?;
    let restored = Connection::open_with_flags(
        &tmp,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ctx("opening the pre-update copy")?;
    // A rollback journal: every committed byte is in the file itself when
    // it is renamed (a -wal would stay behind under the old name).
    let _mode: String = restored
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .ctx("setting the copy's journal mode")?;
    let since: i64 = restored
        .query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))
        .ctx("reading the copy's newest event")?;
    let carry = match read_carry(&newer, since) {
        Ok(c) => c,
        Err(why) => {
            drop(restored);
            files::wipe(&tmp).map_err(&err)?;
            return Ok(Restore::Refused(why));
        }
    };
    write_carry(restored, &carry)?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(&err)?;
    hook(Step::RestoreWritten).map_err(&err)?;
    // Everything of the newer database goes into its main file and its
    // -wal is removed when the last connection closes: a -wal left under
    // the name would be replayed onto the restored file.
    newer
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .ctx("checkpointing the newer database")?;
    newer
        .close()
        .map_err(|(_, e)| e)
        .ctx("closing the newer database")?;
    let wal = files::sibling(db_path, "-wal");
    if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(StoreError::Invalid(format!(
            "{} still holds writes of the newer database; stop every other process using it and \
             start again",
            wal.display()
        )));
    }
    fs::rename(&tmp, db_path).map_err(&err)?;
    sync_dir(state_dir).map_err(&err)?;
    hook(Step::Restored).map_err(&err)?;
    wipe_copies(state_dir)?;
    tracing::warn!(
        db = %db_path.display(),
        schema = version,
        events_dropped = carry.events_dropped,
        "restored the pre-update copy of the database after going back to an older latchd \
         (nothing had changed since the update; counters, time floor, pairing generation, \
         lockout and events carried forward)"
    );
    Ok(Restore::Done)
}

/// Read what [`Carry`] holds; `Err` says what cannot be carried (the
/// restore is then refused: nothing that must not go back is dropped).
fn read_carry(newer: &Connection, since: i64) -> Result<Carry, String> {
    let sql = |e: rusqlite::Error| format!("reading the newer database for the restore: {e}");
    let mut counters = Vec::new();
    let mut stmt = newer
        .prepare("SELECT name, value FROM service_counters")
        .map_err(sql)?;
    for row in stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?
    {
        counters.push(row.map_err(sql)?);
    }
    let mut meta = Vec::new();
    let mut stmt = newer
        .prepare("SELECT name, value FROM service_meta")
        .map_err(sql)?;
    for row in stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?
    {
        meta.push(row.map_err(sql)?);
    }
    let row = |name: &str| -> Result<Option<String>, String> {
        newer
            .query_row(
                "SELECT value FROM lock_state WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
    };
    fn parses<T: serde::de::DeserializeOwned>(name: &str, json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| {
            format!("the newer database's {name} cannot be carried back (this version cannot read it: {e})")
        })
    }
    let mut state = Vec::new();
    let mut time_floor = None;
    if let Some(json) = row("time_floor")? {
        time_floor = Some(parses::<WallTime>("trusted-time floor", &json)?);
    }
    if let Some(json) = row("pairing_generation")? {
        parses::<u32>("pairing-code generation", &json)?;
        state.push(("pairing_generation", json));
    }
    if let Some(json) = row("lockout")? {
        parses::<LockoutRecord>("lockout record", &json)?;
        state.push(("lockout", json));
    }
    let mut events = Vec::new();
    let mut events_dropped = 0;
    let mut stmt = newer
        .prepare(
            "SELECT id, wall, mono_ms, kind_name, kind_json FROM events WHERE id > ?1 ORDER BY id",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([since], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .map_err(sql)?;
    for row in rows {
        let row: (i64, Option<i64>, i64, String, String) = row.map_err(sql)?;
        // A kind this version does not know would make every read of the
        // log fail: left out (the id sequence still moves past it).
        if serde_json::from_str::<EventKind>(&row.4).is_ok() {
            events.push(row);
        } else {
            events_dropped += 1;
        }
    }
    let sequence = newer
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    Ok(Carry {
        counters,
        meta,
        state,
        time_floor,
        events,
        events_dropped,
        sequence,
    })
}

/// Write the carried rows into the restored copy, in one transaction.
fn write_carry(mut restored: Connection, carry: &Carry) -> Result<(), StoreError> {
    let tx = restored
        .transaction()
        .ctx("carrying values into the restored copy")?;
    for (name, value) in &carry.counters {
        tx.execute(
            "INSERT INTO service_counters (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )
        .ctx("carrying a service counter")?;
    }
    for (name, value) in &carry.meta {
        tx.execute(
            "INSERT INTO service_meta (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )
        .ctx("carrying a service value")?;
    }
    let put_state = |name: &str, json: &str| {
        tx.execute(
            "INSERT INTO lock_state (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![name, json],
        )
        .ctx("carrying a lock state value")
    };
    for (name, json) in &carry.state {
        put_state(name, json)?;
    }
    if let Some(floor) = carry.time_floor {
        // The higher of the two: the floor only ever rises.
        let current: Option<String> = tx
            .query_row(
                "SELECT value FROM lock_state WHERE name = 'time_floor'",
                [],
                |r| r.get(0),
            )
            .optional()
            .ctx("reading the copy's time floor")?;
        let current = current.and_then(|j| serde_json::from_str::<WallTime>(&j).ok());
        if current.is_none_or(|c| c < floor) {
            let json = serde_json::to_string(&floor).map_err(|e| StoreError::Decode {
                what: "time floor".into(),
                detail: e.to_string(),
            })?;
            put_state("time_floor", &json)?;
        }
    }
    for (id, wall, mono, name, json) in &carry.events {
        tx.execute(
            "INSERT INTO events (id, wall, mono_ms, kind_name, kind_json) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, wall, mono, name, json],
        )
        .ctx("carrying an event")?;
    }
    if let Some(seq) = carry.sequence {
        // Ids never go back, even past events that were not carried.
        tx.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'events'",
            [seq],
        )
        .ctx("carrying the event id sequence")?;
        tx.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'events', ?1
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events')",
            [seq],
        )
        .ctx("carrying the event id sequence")?;
    }
    tx.commit().ctx("carrying values into the restored copy")?;
    restored
        .close()
        .map_err(|(_, e)| e)
        .ctx("closing the restored copy")
}

/// Issue 20 (a): real SQLite files on disk; a "future" schema step is
/// injected the way a newer build would bring it.
#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::core::event::Event;
    use crate::core::time::Validity;
    use crate::core::types::{AppKey, AppKeyId, AppKeyRole, Role, User, UserNumber};
    use crate::store::keystore::FileSlot;
    use crate::store::schema::{self, Migration};
    use crate::store::{Store, StoreOptions, DB_FILE};

    /// The next version adds a table and a column with a default: this
    /// version can read and write its database.
    const ADDITIVE: &str = "CREATE TABLE door_notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
         ALTER TABLE users ADD COLUMN nickname TEXT NOT NULL DEFAULT '';";
    /// The next version renames a column this version reads.
    const RESHAPING: &str = "ALTER TABLE users RENAME COLUMN role TO kind;";

    fn future(sql: &'static str, additive: bool) -> Vec<Migration> {
        let mut steps: Vec<Migration> = schema::STEPS
            .iter()
            .map(|m| Migration {
                version: m.version,
                sql: m.sql,
                additive: m.additive,
            })
            .collect();
        steps.push(Migration {
            version: schema::LATEST + 1,
            sql,
            additive,
        });
        steps
    }

    fn open_as(dir: &Path, steps: &[Migration], hook: Hook<'_>) -> Result<Store, StoreError> {
        let slot = FileSlot::new(dir);
        Store::open_schema(dir, StoreOptions::default(), &slot, steps, hook).map(|(s, _)| s)
    }

    fn today(dir: &Path) -> Result<Store, StoreError> {
        open_as(dir, schema::STEPS, &mut no_hook)
    }

    fn newer(dir: &Path, steps: &[Migration]) -> Store {
        open_as(dir, steps, &mut no_hook).unwrap()
    }

    fn user(n: u16) -> User {
        User {
            number: UserNumber::new(n).unwrap(),
            role: Role::Admin,
            validity: Validity::ALWAYS,
        }
    }

    fn owner_key() -> Change {
        Change::PutAppKey(AppKey {
            id: AppKeyId(5),
            role: AppKeyRole::Owner {
                admin: UserNumber::new(1).unwrap(),
            },
            public_key: [7; 32],
            validity: Validity::ALWAYS,
            label: "owner phone".into(),
        })
    }

    fn event(mono_ms: u64) -> Event {
        Event {
            at: None,
            mono_ms,
            kind: EventKind::Doorbell,
        }
    }

    fn strikes(n: u32) -> LockoutRecord {
        LockoutRecord {
            strikes: n,
            ..LockoutRecord::default()
        }
    }

    /// A lock as today's version leaves it before the update.
    fn set_up_lock(dir: &Path) {
        let mut store = today(dir).unwrap();
        store
            .apply(&[Change::PutUser(user(1)), owner_key()])
            .unwrap();
        store
            .apply(&[
                Change::PutTimeFloor(WallTime(1_800_000_000)),
                Change::SetPairingGeneration(1),
            ])
            .unwrap();
        store.put_counter("remote.rx.5", 10).unwrap();
        store.append_events(&[event(1), event(2)]).unwrap();
    }

    fn raw_version(dir: &Path) -> i64 {
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        schema::version(&conn).unwrap()
    }

    fn copies(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(COPY_PREFIX) || n == RESTORE_TMP)
            .collect();
        names.sort();
        names
    }

    /// The newer version runs after its update: it logs, counts frames,
    /// raises the time floor, uses a pairing code and counts a strike —
    /// and changes nothing a restore would undo.
    fn run_newer_without_changes(dir: &Path, steps: &[Migration]) -> Vec<u64> {
        let mut store = newer(dir, steps);
        store.put_counter("remote.rx.5", 25).unwrap();
        store
            .apply(&[
                Change::PutTimeFloor(WallTime(1_900_000_000)),
                Change::SetPairingGeneration(3),
            ])
            .unwrap();
        store.apply(&[Change::PutAttempt(strikes(4))]).unwrap();
        let ids = store.append_events(&[event(3), event(4)]).unwrap();
        ids.iter().map(|i| i.0).collect()
    }

    #[test]
    fn an_additive_newer_schema_opens_here_and_writes_survive_the_return() {
        let dir = tempfile::tempdir().unwrap();
        set_up_lock(dir.path());
        let steps = future(ADDITIVE, true);
        {
            let store = newer(dir.path(), &steps);
            store
                .conn
                .execute("UPDATE users SET nickname = 'Ada' WHERE number = 1", [])
                .unwrap();
        }
        assert!(
            copies(dir.path()).is_empty(),
            "no copy for a step readable back"
        );
        // The fall-back: today's version opens the newer database as it is.
        let mut store = today(dir.path()).unwrap();
        assert_eq!(raw_version(dir.path()), schema::LATEST + 1);
        assert_eq!(store.load().unwrap().users, vec![user(1)]);
        store.apply(&[Change::PutUser(user(2))]).unwrap();
        store.put_counter("remote.rx.5", 30).unwrap();
        drop(store);
        // And the update again: what the older version wrote is there.
        let store = newer(dir.path(), &steps);
        let rows: Vec<(u16, String)> = store
            .conn
            .prepare("SELECT number, nickname FROM users ORDER BY number")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [(1, "Ada".to_string()), (2, String::new())]);
        assert_eq!(store.get_counter("remote.rx.5").unwrap(), Some(30));
    }

    #[test]
    fn a_reshaped_newer_schema_with_no_change_since_is_restored_carrying_what_must_not_go_back() {
        let dir = tempfile::tempdir().unwrap();
        set_up_lock(dir.path());
        let steps = future(RESHAPING, false);
        let ids = run_newer_without_changes(dir.path(), &steps);
        let copy = copy_path(dir.path(), schema::LATEST);
        assert_eq!(
            copies(dir.path()),
            [format!("{COPY_PREFIX}{}", schema::LATEST)]
        );
        assert_eq!(
            fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // The fall-back boots today's version on the reshaped database.
        let mut store = today(dir.path()).unwrap();
        assert_eq!(raw_version(dir.path()), schema::LATEST);
        let p = store.load().unwrap();
        assert_eq!(p.users, vec![user(1)]);
        assert_eq!(p.app_keys.len(), 1);
        // Never back: the replay counter (a frame counted 25 stays
        // refused), the time floor, the used pairing code, the strike.
        assert_eq!(store.get_counter("remote.rx.5").unwrap(), Some(25));
        assert_eq!(p.time_floor, Some(WallTime(1_900_000_000)));
        assert_eq!(p.pairing_generation, 3);
        assert_eq!(p.lockout.strikes, 4);
        // The newer version's events are there, and ids keep growing.
        let logged: Vec<u64> = store
            .recent_events(10)
            .unwrap()
            .iter()
            .map(|e| e.id.0)
            .collect();
        assert_eq!(logged[..2], [ids[1], ids[0]]);
        let next = store.append_events(&[event(5)]).unwrap();
        assert!(next[0].0 > ids[1]);
        assert!(copies(dir.path()).is_empty(), "the copy is used up");
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn a_revocation_after_the_update_refuses_the_restore_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        set_up_lock(dir.path());
        let steps = future(RESHAPING, false);
        run_newer_without_changes(dir.path(), &steps);
        {
            let mut store = newer(dir.path(), &steps);
            store.apply(&[Change::DeleteAppKey(AppKeyId(5))]).unwrap();
            // The copy would bring the key back: it is gone at once.
            assert!(copies(dir.path()).is_empty());
        }
        let before = fs::read(dir.path().join(DB_FILE)).unwrap();
        let e = today(dir.path()).unwrap_err();
        assert!(
            matches!(&e, StoreError::SchemaTooNew { why, .. } if why.contains("changed after the update")),
            "{e}"
        );
        assert!(e.to_string().contains("mechanical key"), "{e}");
        assert_eq!(raw_version(dir.path()), schema::LATEST + 1);
        assert_eq!(fs::read(dir.path().join(DB_FILE)).unwrap(), before);
        // The newer version still has the lock without the revoked key.
        let store = newer(dir.path(), &steps);
        let keys: i64 = store
            .conn
            .query_row("SELECT count(*) FROM app_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(keys, 0);
    }

    /// The copy file alone is not the authority: the row, deleted in the
    /// change's own transaction, is. A copy a crash left behind after a
    /// change is never restored.
    #[test]
    fn a_copy_left_behind_after_a_change_is_not_restored() {
        let dir = tempfile::tempdir().unwrap();
        set_up_lock(dir.path());
        let steps = future(RESHAPING, false);
        run_newer_without_changes(dir.path(), &steps);
        let copy = copy_path(dir.path(), schema::LATEST);
        let kept = fs::read(&copy).unwrap();
        {
            let mut store = newer(dir.path(), &steps);
            store
                .apply(&[Change::DeleteUser(UserNumber::new(1).unwrap())])
                .unwrap();
        }
        fs::write(&copy, kept).unwrap();
        let e = today(dir.path()).unwrap_err();
        assert!(matches!(e, StoreError::SchemaTooNew { .. }), "{e}");
        assert_eq!(raw_version(dir.path()), schema::LATEST + 1);
    }

    /// Interrupted at every step of the copy and of the restore, or with a
    /// half-written `.tmp` from a power cut: the next start opens a whole
    /// database and finishes the job.
    #[test]
    fn a_power_cut_during_the_copy_or_the_restore_leaves_a_database_that_opens() {
        let cut = |at: Step| {
            move |s: Step| {
                if s == at {
                    Err(std::io::Error::other("power cut (test)"))
                } else {
                    Ok(())
                }
            }
        };
        let steps = future(RESHAPING, false);
        for at in [Step::CopyWritten, Step::RestoreWritten, Step::Restored] {
            let dir = tempfile::tempdir().unwrap();
            set_up_lock(dir.path());
            if at == Step::CopyWritten {
                // The update's first start dies after writing the copy.
                assert!(open_as(dir.path(), &steps, &mut cut(at)).is_err());
                assert_eq!(raw_version(dir.path()), schema::LATEST);
                // A half-written copy under the final tmp name, too.
                fs::write(
                    files::sibling(&copy_path(dir.path(), schema::LATEST), ".tmp"),
                    b"SQLite format 3\0half",
                )
                .unwrap();
                today(dir.path()).unwrap();
            }
            let ids = run_newer_without_changes(dir.path(), &steps);
            if at != Step::CopyWritten {
                assert!(open_as(dir.path(), schema::STEPS, &mut cut(at)).is_err());
                if at == Step::RestoreWritten {
                    assert_eq!(raw_version(dir.path()), schema::LATEST + 1);
                    fs::write(dir.path().join(RESTORE_TMP), b"half").unwrap();
                }
            }
            let store = today(dir.path()).unwrap();
            let p = store.load().unwrap();
            assert_eq!(p.users, vec![user(1)], "{at:?}");
            assert_eq!(p.pairing_generation, 3, "{at:?}");
            assert_eq!(store.get_counter("remote.rx.5").unwrap(), Some(25));
            assert_eq!(store.recent_events(1).unwrap()[0].id.0, ids[1], "{at:?}");
            assert!(
                copies(dir.path()).is_empty(),
                "{at:?}: {:?}",
                copies(dir.path())
            );
        }
    }

    #[test]
    fn a_factory_reset_erases_the_copies() {
        let dir = tempfile::tempdir().unwrap();
        set_up_lock(dir.path());
        let steps = future(RESHAPING, false);
        let mut store = newer(dir.path(), &steps);
        assert_eq!(copies(dir.path()).len(), 1);
        store.apply(&[Change::FactoryReset]).unwrap();
        assert!(copies(dir.path()).is_empty());
        drop(store);
        // And the restart under the new key leaves none either.
        drop(newer(dir.path(), &steps));
        assert!(copies(dir.path()).is_empty());
    }
}
