//! Connection settings and the versioned schema.
//!
//! The schema version lives in `PRAGMA user_version`. Each migration is
//! applied in its own transaction together with the version bump, so a
//! crash mid-upgrade leaves the previous version intact and the next start
//! simply runs the step again. Migrations are append-only: a released step
//! is never edited, a change is a new step.
//!
//! # Going back one version (issue 20)
//!
//! A RAUC fall-back boots the previous version of latchd on a database the
//! new version has already migrated. Each step says whether the previous
//! schema's code can still read *and write* its result
//! ([`Migration::additive`]); the oldest schema that can is recorded as
//! `store_meta.min_reader` in the step's own transaction, next to
//! `user_version`. An older daemon opens a newer database when its own
//! schema is at least that floor (it ignores the tables and columns it does
//! not know); otherwise the pre-migration copy of `fallback.rs` is its only
//! way back.
//!
//! A step is additive only if all of these hold: it adds tables or columns
//! with defaults and changes no existing one; the older code's writes leave
//! the new rows consistent; and nothing it adds is sealed or must be erased
//! by a factory reset (the older code's reset does not know the new table).
//! When in doubt, it is not additive: the older daemon then restores the
//! copy or refuses, and never runs on a database it half understands.
//!
//! `store_meta`, `service_counters`, `service_meta`, `events` and the
//! `time_floor`, `pairing_generation` and `lockout` rows of `lock_state`
//! keep their shape in every version: the restore carries them forward
//! from a newer database it cannot otherwise read.
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::error::{SqlContext, StoreError};

/// Name (in `store_meta`) of the oldest schema version whose code can read
/// and write this database. Absent (databases written before issue 20):
/// the database's own version.
pub(crate) const MIN_READER: &str = "min_reader";

/// One schema step: the SQL that takes the database from `version - 1` to
/// `version`.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) sql: &'static str,
    /// The code of schema `version - 1` can still read and write the
    /// result (see the module doc for what that takes).
    pub(crate) additive: bool,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        additive: false,
        sql: r#"
-- Store-internal values (the sealed key check). Never touched by a reset.
CREATE TABLE store_meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- The lock's singleton state as JSON: handing, settings, lockout.
-- A factory reset empties it; missing rows load as defaults.
CREATE TABLE lock_state (
    name  TEXT PRIMARY KEY NOT NULL CHECK (name IN ('handing', 'settings', 'lockout')),
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
    number      INTEGER PRIMARY KEY CHECK (number BETWEEN 1 AND 999),
    role        TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    valid_from  INTEGER,
    valid_until INTEGER
);

-- A module slot is only a number in the fingerprint/palm module, so it is
-- kept plain; face templates and passcode MACs are sealed.
CREATE TABLE credentials (
    id          INTEGER PRIMARY KEY CHECK (id BETWEEN 0 AND 4294967295),
    user        INTEGER NOT NULL REFERENCES users(number) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('face', 'palm', 'fingerprint', 'passcode', 'duress_passcode')),
    secret_kind TEXT NOT NULL CHECK (secret_kind IN ('module_slot', 'face_template', 'passcode')),
    slot        INTEGER CHECK (slot BETWEEN 0 AND 65535),
    sealed      BLOB,
    CHECK ((secret_kind = 'module_slot'   AND slot IS NOT NULL AND sealed IS NULL)
        OR (secret_kind = 'face_template' AND slot IS NOT NULL AND sealed IS NOT NULL)
        OR (secret_kind = 'passcode'      AND slot IS NULL     AND sealed IS NOT NULL))
);
CREATE INDEX credentials_by_user ON credentials(user);

CREATE TABLE temp_passcodes (
    id          INTEGER PRIMARY KEY CHECK (id BETWEEN 0 AND 4294967295),
    sealed_mac  BLOB NOT NULL,
    valid_from  INTEGER,
    valid_until INTEGER,
    one_time    INTEGER NOT NULL CHECK (one_time IN (0, 1))
);

-- An owner key is bound to an administrator and goes with them.
CREATE TABLE app_keys (
    id                INTEGER PRIMARY KEY CHECK (id BETWEEN 0 AND 4294967295),
    role              TEXT NOT NULL CHECK (role IN ('owner', 'guest')),
    admin             INTEGER REFERENCES users(number) ON DELETE CASCADE,
    sealed_public_key BLOB NOT NULL,
    valid_from        INTEGER,
    valid_until       INTEGER,
    label             TEXT NOT NULL,
    CHECK ((role = 'owner') = (admin IS NOT NULL))
);
CREATE INDEX app_keys_by_admin ON app_keys(admin);

-- AUTOINCREMENT: ids are never reused, even after pruning or a reset,
-- because other services de-duplicate events by id.
CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    wall      INTEGER,
    mono_ms   INTEGER NOT NULL,
    kind_name TEXT NOT NULL,
    kind_json TEXT NOT NULL
);
CREATE INDEX events_by_wall ON events(wall);
CREATE INDEX events_by_kind ON events(kind_name, id);

-- Service state that must survive restarts (replay counters, cursors).
CREATE TABLE service_counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE service_meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;
"#,
    },
    Migration {
        version: 2,
        // The invites are sealed: a version-1 reset would not erase them.
        additive: false,
        sql: r#"
-- Guest invites (B-6.6): a slot reserved in the app-key space until the
-- guest's app redeems the one-time code. The code's secret is sealed.
CREATE TABLE guest_invites (
    slot            INTEGER PRIMARY KEY CHECK (slot BETWEEN 0 AND 4294967295),
    code_id         INTEGER NOT NULL UNIQUE CHECK (code_id BETWEEN 0 AND 65535),
    sealed_secret   BLOB NOT NULL,
    valid_from      INTEGER NOT NULL,
    valid_until     INTEGER NOT NULL,
    code_expires_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL CHECK (attempts BETWEEN 0 AND 255)
);
"#,
    },
    Migration {
        version: 3,
        // Rebuilds `lock_state` (a new CHECK).
        additive: false,
        sql: r#"
-- Issue 13: the trusted-time floor and the pairing-code generation join
-- the singleton state. SQLite cannot change a CHECK in place, so the
-- table is rebuilt (in the migration's transaction).
CREATE TABLE lock_state_v3 (
    name  TEXT PRIMARY KEY NOT NULL CHECK (name IN
            ('handing', 'settings', 'lockout', 'time_floor', 'pairing_generation')),
    value TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO lock_state_v3 (name, value) SELECT name, value FROM lock_state;
DROP TABLE lock_state;
ALTER TABLE lock_state_v3 RENAME TO lock_state;
"#,
    },
    Migration {
        version: 4,
        // Sealed and erased by a reset: a version-3 reset would not know it.
        additive: false,
        sql: r#"
-- The Matter node's own state, sealed (issue 18): `node` rows are
-- rs-matter's fabrics, ACLs, CASE resumption and counters, erased by a
-- factory reset; `label` rows are the onboarding secret printed on the
-- lock's label. A factory reset erases both: it rotates the device key
-- (issue 16), and nothing the old key sealed opens again.
CREATE TABLE matter_blobs (
    scope  TEXT NOT NULL CHECK (scope IN ('node', 'label')),
    key    INTEGER NOT NULL CHECK (key BETWEEN 0 AND 65535),
    sealed BLOB NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
"#,
    },
    Migration {
        version: 5,
        // A version-4 reset would leave the holidays (`lock` rows) behind.
        additive: false,
        sql: r#"
-- Issue 17 item 2: week-day and year-day schedules of a user, a visitor
-- code or a guest key, and the lock's holidays, as the engine's JSON
-- (`core::schedule::Schedule`). A holder is one of three tables, so no
-- foreign key: the triggers below take a holder's schedules with it,
-- whatever code deletes the row. Not sealed: like validity windows,
-- they are in clear.
CREATE TABLE schedules (
    kind        TEXT NOT NULL CHECK (kind IN ('week_day', 'year_day', 'holiday')),
    holder_kind TEXT NOT NULL CHECK (holder_kind IN ('user', 'temp_passcode', 'guest_key', 'lock')),
    holder      INTEGER NOT NULL CHECK (holder BETWEEN 0 AND 4294967295),
    idx         INTEGER NOT NULL CHECK (idx BETWEEN 1 AND 255),
    body        TEXT NOT NULL,
    CHECK ((kind = 'holiday') = (holder_kind = 'lock')),
    PRIMARY KEY (kind, holder_kind, holder, idx)
) WITHOUT ROWID;
CREATE TRIGGER schedules_follow_users AFTER DELETE ON users BEGIN
    DELETE FROM schedules WHERE holder_kind = 'user' AND holder = OLD.number;
END;
CREATE TRIGGER schedules_follow_temp_passcodes AFTER DELETE ON temp_passcodes BEGIN
    DELETE FROM schedules WHERE holder_kind = 'temp_passcode' AND holder = OLD.id;
END;
CREATE TRIGGER schedules_follow_app_keys AFTER DELETE ON app_keys BEGIN
    DELETE FROM schedules WHERE holder_kind = 'guest_key' AND holder = OLD.id;
END;
"#,
    },
    Migration {
        version: 6,
        // Sealed rows a version-5 reset would leave behind.
        additive: false,
        sql: r#"
-- Issue 17 item 8: the owner notices (duress, an unlock while away, a
-- lockout, the doorbell, alarms) kept for an owner's app that was not
-- connected, each sealed (a duress notice must not be readable from the
-- log or the files), the newest 64 kept (`store::notices`).
CREATE TABLE owner_notices (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    sealed BLOB NOT NULL
);
-- Per app key slot, the newest notice its app acknowledged; `key_id`
-- (a hash of the public key) tells a reissued slot from the old key.
CREATE TABLE notice_acks (
    slot   INTEGER PRIMARY KEY CHECK (slot BETWEEN 0 AND 4294967295),
    key_id BLOB NOT NULL,
    up_to  INTEGER NOT NULL
);
"#,
    },
    Migration {
        version: 7,
        // A column with a default; a version-6 daemon's new keys get 0
        // (every kept notice, as version 6 gave them).
        additive: true,
        sql: r#"
-- The newest owner notice when the key was added: a phone paired today
-- gets the notices raised from now on, not the household's last 64.
ALTER TABLE app_keys ADD COLUMN notices_from INTEGER NOT NULL DEFAULT 0;
"#,
    },
];

/// This build's schema steps.
pub(crate) const STEPS: &[Migration] = MIGRATIONS;

/// The newest schema version this build knows.
#[cfg(test)]
pub(crate) const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The newest version in `steps`.
pub(crate) fn latest(steps: &[Migration]) -> i64 {
    steps.last().map_or(0, |m| m.version)
}

/// The oldest schema whose code can read and write a database at
/// `version`: each additive step keeps the floor of the step before it.
pub(crate) fn floor(steps: &[Migration], version: i64) -> i64 {
    let mut floor = 0;
    for m in steps.iter().filter(|m| m.version <= version) {
        if !m.additive {
            floor = m.version;
        }
    }
    floor
}

/// The floor a (possibly newer) database declares: `min_reader`, or its
/// own version when it predates the row.
pub(crate) fn declared_floor(conn: &Connection, version: i64) -> Result<i64, StoreError> {
    let row: Option<i64> = conn
        .query_row(
            "SELECT value FROM store_meta WHERE name = ?1",
            [MIN_READER],
            |r| r.get(0),
        )
        .optional()
        .ctx("reading the oldest schema that can read the database")?;
    Ok(row.unwrap_or(version))
}

/// Connection settings, applied on every open.
///
/// * WAL: readers never block the writer, and a commit is one sequential
///   append — kind to flash.
/// * `synchronous=FULL`: in WAL mode `NORMAL` may lose the last commits on
///   a power cut (the WAL is synced only at checkpoints). The engine tells
///   the user "saved" right after a commit (B-4.11), so every commit is
///   synced to storage before `apply` returns.
/// * `foreign_keys=ON`: SQLite's default is off; the cascades from users to
///   credentials and owner app keys depend on it.
/// * `secure_delete=ON`: freed pages are zeroed, so deleted (sealed) rows
///   do not linger in free pages.
/// * `journal_size_limit`: after a checkpoint the WAL is truncated back
///   to 1 MiB instead of keeping its high-water size on the flash.
/// * `busy_timeout`: a diagnostic reader (sqlite3 CLI) briefly holding a
///   lock delays a write instead of failing it.
pub(crate) fn configure(conn: &Connection) -> Result<(), StoreError> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .ctx("switching to WAL journal mode")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Invalid(format!(
            "the database refused WAL journal mode (got `{mode}`); the state directory must be on a \
             local filesystem that supports shared memory"
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         PRAGMA foreign_keys=ON;
         PRAGMA secure_delete=ON;
         PRAGMA trusted_schema=OFF;
         PRAGMA journal_size_limit=1048576;",
    )
    .ctx("setting connection pragmas")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .ctx("setting the busy timeout")?;
    Ok(())
}

/// Bound this connection's page cache to `kib` KiB
/// ([`super::StoreOptions::cache_kib`]).
pub(crate) fn set_cache(conn: &Connection, kib: u32) -> Result<(), StoreError> {
    conn.execute_batch(&format!("PRAGMA cache_size = -{}", kib.max(1)))
        .ctx("setting the page cache size")
}

/// The database's schema version.
pub(crate) fn version(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx("reading the schema version")
}

/// Bring the schema up to [`LATEST`], one transaction per step.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_steps(conn, STEPS, None)
}

/// Bring the schema up to the last of `steps`, one transaction per step.
/// `copy_of`: the version of the pre-migration copy `fallback.rs` just
/// made, recorded (as `fallback_copy`) in the first step's transaction.
pub(crate) fn migrate_steps(
    conn: &mut Connection,
    steps: &[Migration],
    mut copy_of: Option<i64>,
) -> Result<(), StoreError> {
    let current = version(conn)?;
    for m in steps.iter().filter(|m| m.version > current) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a schema migration")?;
        tx.execute_batch(m.sql).ctx("applying a schema migration")?;
        // user_version is part of the database header, so it commits (or
        // rolls back) together with the step, and so does its floor.
        tx.pragma_update(None, "user_version", m.version)
            .ctx("recording the schema version")?;
        tx.execute(
            "INSERT INTO store_meta (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            rusqlite::params![MIN_READER, floor(steps, m.version)],
        )
        .ctx("recording the oldest schema that can read the database")?;
        if let Some(v) = copy_of.take() {
            super::fallback::record_copy(&tx, v)?;
        }
        tx.commit().ctx("committing a schema migration")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_contiguous() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
    }

    /// The schema as a build of that version left it.
    fn at_version(conn: &mut Connection, version: i64) {
        for m in MIGRATIONS.iter().filter(|m| m.version <= version) {
            let tx = conn.transaction().unwrap();
            tx.execute_batch(m.sql).unwrap();
            tx.pragma_update(None, "user_version", m.version).unwrap();
            tx.commit().unwrap();
        }
    }

    /// One line of steps: 1 → 2 → 3 (issue 13's time floor and pairing
    /// generation). The key rotation of issue 16 needs no step of its own:
    /// its mark is a `store_meta` row, a table of step 1.
    #[test]
    fn a_version_2_database_keeps_its_state_through_step_3() {
        let mut conn = Connection::open_in_memory().unwrap();
        at_version(&mut conn, 2);
        conn.execute_batch(
            "INSERT INTO lock_state (name, value) VALUES ('handing', '\"LeftHand\"');
             INSERT INTO lock_state (name, value) VALUES ('lockout', '{}');",
        )
        .unwrap();
        // Version 2 does not know the new rows.
        assert!(conn
            .execute(
                "INSERT INTO lock_state (name, value) VALUES ('time_floor', '1')",
                [],
            )
            .is_err());
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
        let rows: Vec<(String, String)> = conn
            .prepare("SELECT name, value FROM lock_state ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("handing".to_string(), "\"LeftHand\"".to_string()),
                ("lockout".to_string(), "{}".to_string())
            ]
        );
        conn.execute_batch(
            "INSERT INTO lock_state (name, value) VALUES ('time_floor', '1800000000');
             INSERT INTO lock_state (name, value) VALUES ('pairing_generation', '2');
             INSERT INTO store_meta (name, value) VALUES ('key_rotation_pending', x'01');",
        )
        .unwrap();
        assert!(conn
            .execute(
                "INSERT INTO lock_state (name, value) VALUES ('anything', '1')",
                [],
            )
            .is_err());
    }

    /// Steps 1–6 are not additive (each adds sealed rows or rebuilds a
    /// table); step 7 only adds a column with a default, so a version-6
    /// daemon (a RAUC fall-back) still reads and writes the database.
    #[test]
    fn floors_follow_the_additive_steps() {
        assert_eq!(LATEST, 7);
        assert_eq!(floor(STEPS, LATEST), 6);
        let steps = [
            Migration {
                version: 1,
                sql: "",
                additive: false,
            },
            Migration {
                version: 2,
                sql: "",
                additive: true,
            },
            Migration {
                version: 3,
                sql: "",
                additive: true,
            },
            Migration {
                version: 4,
                sql: "",
                additive: false,
            },
        ];
        assert_eq!(floor(&steps, 3), 1);
        assert_eq!(floor(&steps, 4), 4);
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(declared_floor(&conn, LATEST).unwrap(), 6);
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST);
    }
}
