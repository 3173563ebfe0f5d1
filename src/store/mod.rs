//! Persistent state: users, credentials, settings, the event log and
//! service counters in one SQLite database, secrets sealed with the device
//! key.
//!
//! # Files
//!
//! ```text
//!   <state_dir>/            created 0700 on first start
//!     device.key            32 random bytes, 0600 — the root secret (see key.rs)
//!     latchd.db (+ -wal, -shm)   0600, SQLite in WAL mode
//!     latchd.db.schema-<v>  0600, the pre-migration copy (fallback.rs), while
//!                           nothing it would undo has changed
//! ```
//!
//! # Start-up
//!
//! ```text
//!   key?  db?
//!    no    no   ─► first start: create key (fsync) → create db, schema,
//!                  sealed key check (one transaction) → ready
//!    yes   yes  ─► check key file (regular, 0600, 32 bytes) → open db →
//!                  schema newer? (a fall-back: open it if its floor allows,
//!                  else restore the pre-update copy or refuse; fallback.rs)
//!                  → copy before a step the running version cannot read
//!                  back → migrate → quick_check → key check opens with
//!                  this key → ready
//!    yes   no   ─► DatabaseMissing     ┐ typed errors naming the files;
//!    no    yes  ─► KeyMissing          ┘ nothing is reset or recreated
//! ```
//!
//! First start writes `first-start.incomplete` before anything else and
//! removes it last, so a power cut half-way through the *first* start is
//! finished on the next one instead of being mistaken for a lost file.
//! Outside that window, a missing, truncated, too-open or foreign key, a
//! garbage or damaged database, or one from a newer latchd stops the
//! daemon with an error that says what to do: a lock that silently starts
//! empty would accept the next person who enrols as its administrator.
//!
//! # Writes
//!
//! The runtime applies an engine `Action::Persist(changes)` with
//! [`Store::apply`] before any action that follows it: one `IMMEDIATE`
//! transaction, committed with `synchronous=FULL`, so a crash or power cut
//! leaves either nothing or the whole batch (B-4.11), and a batch whose
//! `apply` returned is on the disk (proved with real power cuts in
//! `tests/vm/vm_power_cut.rs`; process kills in `tests/it/store_crash.rs`). A refused change, a
//! full disk (`SQLITE_FULL` → [`StoreError::Full`]) or an I/O error rolls
//! the whole batch back. Events are appended the same way, in their own
//! transactions, and pruned to `max_events`.
//!
//! # Who writes, who reads
//!
//! ```text
//!   engine task ──────────────┐ StoreHandle (thread.rs): jobs in order on the
//!   channel-private counters ─┴► one thread that owns the writer `Store`
//!   (MQTT replay counters, push counter, event cursor; motor cycles)
//!
//!   channels (event pages, listings), D-Bus (RecentEvents, Export),
//!   control socket ──────────► StoreReads (reader.rs): a read-only
//!                               connection, on the blocking pool
//! ```
//!
//! There is exactly one writer connection and it lives on its own thread,
//! so a commit's fsync never blocks an async worker and no lock on the
//! store is ever held in async code. Lock state (users, credentials,
//! settings, keys, the event log) is written only by the engine task. The
//! channels' private values — the MQTT replay counter of each app key
//! (`remote.rx.<key id>`), the sealed-notice counter (`remote.push`) and
//! the broker's event cursor (`remote.events.acked`) — are rows of
//! `service_counters`, a table of their own that no engine change touches;
//! they go through the same writer thread, each counter owned by the one
//! service that names it. Reads use a second, read-only connection: in WAL
//! mode they never block the writer. The synchronous API of [`Store`]
//! stays for start-up, tests and tools.
//!
//! # Secrets at rest (B-11.2)
//!
//! Face templates, passcode MACs (user and temporary) and app public keys
//! are sealed with XChaCha20-Poly1305 under a subkey of the device key,
//! bound to their row. Fingerprint and palm credentials are slot numbers
//! in the module, which holds the template itself. What is *not* protected:
//! the non-secret columns (roles, validity windows, labels, settings) can be
//! changed by whoever can write the file; and whoever holds the key file
//! can brute-force a 6-digit passcode from its MAC in seconds — on a
//! product the key belongs in a secure element, TPM or TEE.
mod erase;
mod error;
mod events;
mod fallback;
#[doc(hidden)] // for the fuzzer only (fuzz/fuzz_targets/store_rows.rs)
pub mod fuzzing;
mod key;
pub mod keystore;
mod matter;
mod module_secret;
mod notices;
pub use notices::KEPT as NOTICES_KEPT;
mod reader;
mod reserve;
mod schema;
mod state;
mod thread;

use std::fs::{self, DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::core::event::Event;
use crate::core::types::{Change, Persisted};

pub use error::StoreError;
pub use events::{EventId, StoredEvent};
pub use key::{DeviceKey, DEVICE_KEY_LEN};
pub use matter::MatterScope;
pub use reader::{StoreReader, StoreReads};
pub use thread::{StoreHandle, StoreThread};

use error::SqlContext;
use key::{sync_dir, Binding, Sealer};
use keystore::{FileSlot, KeySlot};

/// File name of the device key inside the state directory.
pub const KEY_FILE: &str = "device.key";
/// File name of the database inside the state directory.
pub const DB_FILE: &str = "latchd.db";
/// Present only while a first start is in progress.
pub(crate) const FIRST_START_MARKER: &str = "first-start.incomplete";

const KEY_CHECK_NAME: &str = "key_check";
/// Set (in `store_meta`) by the factory reset's transaction; cleared by
/// the first open with a new key. See [`keystore`].
const ROTATION_PENDING: &str = "key_rotation_pending";
const KEY_CHECK_PLAINTEXT: &[u8] = b"latchd key check v1";
const MAX_NAME_LEN: usize = 128;

/// Tuning the daemon passes from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The event log keeps this many newest events (at least 1).
    pub max_events: usize,
    /// Cap on the database file's size (SQLite `max_page_count`), so the
    /// store cannot fill a partition it shares with the rest of the
    /// system. A write that would pass it fails with
    /// [`StoreError::Full`] and changes nothing. `None`: the filesystem
    /// is the limit.
    pub max_db_bytes: Option<u64>,
    /// Room kept back on the partition for protective writes (attempts,
    /// lockouts, revocations) when it fills up: `store::reserve`. 0: none.
    pub reserve_bytes: u64,
    /// SQLite's page cache per connection, KiB (`PRAGMA cache_size`). The
    /// caches fill as pages are read and stay full, the writer's and each
    /// reader's, so they are bounded here (the soak: 384 KiB less private
    /// memory than with SQLite's 2000 KiB).
    pub cache_kib: u32,
}

/// [`StoreOptions::cache_kib`]'s default: a quarter of SQLite's 2000 KiB.
/// The lock's database is about 1 MiB with a full event log, read a few
/// rows at a time; the OS page cache holds the file anyway.
pub const DEFAULT_CACHE_KIB: u32 = 512;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_events: 10_000,
            max_db_bytes: None,
            reserve_bytes: reserve::DEFAULT_RESERVE_BYTES,
            cache_kib: DEFAULT_CACHE_KIB,
        }
    }
}

/// What the diagnostics interface shows about storage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StorageHealth {
    /// The last SQLite check (quick_check at open, or a later
    /// integrity_check) said "ok".
    pub ok: bool,
    /// That check's output, or the error that kept it from running.
    pub detail: String,
    /// Database plus write-ahead log, in bytes.
    pub db_bytes: u64,
    /// Events currently in the log.
    pub events: u64,
}

/// The open database. One writer per process: the daemon moves it onto the
/// store thread ([`StoreHandle::spawn`]) and applies batches in order.
pub struct Store {
    conn: Connection,
    sealer: Sealer,
    opts: StoreOptions,
    db_path: PathBuf,
    /// Output of the last quick_check / integrity_check.
    last_check: String,
    /// A pre-migration copy may still be restored by an older version
    /// (`fallback.rs`); the first change it cannot carry wipes it.
    copy_live: bool,
    /// Room kept for protective writes on a full partition.
    reserve: reserve::Reserve,
    /// The last write found the partition read-only (until one succeeds).
    read_only_seen: bool,
}

impl core::fmt::Debug for Store {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Store")
            .field("db_path", &self.db_path)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open (or, on first start, create) the store in `state_dir`, and
    /// return it with the device key the engine derives its passcode key
    /// from. See the module doc for every way this refuses to start.
    pub fn open(state_dir: &Path, opts: StoreOptions) -> Result<(Store, DeviceKey), StoreError> {
        Store::open_with(state_dir, opts, &FileSlot::new(state_dir))
    }

    /// [`Store::open`] with the key from `slot` (a file, or a systemd
    /// credential: see [`keystore`]).
    pub(crate) fn open_with(
        state_dir: &Path,
        opts: StoreOptions,
        slot: &dyn KeySlot,
    ) -> Result<(Store, DeviceKey), StoreError> {
        let mut hook = fallback::no_hook;
        Store::open_schema(state_dir, opts, slot, schema::STEPS, &mut hook)
    }

    /// [`Store::open_with`] with the schema `steps` (a test brings a
    /// future version's) and a hook between the steps of the fall-back
    /// copy and restore (a test stops there).
    pub(crate) fn open_schema(
        state_dir: &Path,
        opts: StoreOptions,
        slot: &dyn KeySlot,
        steps: &[schema::Migration],
        hook: fallback::Hook<'_>,
    ) -> Result<(Store, DeviceKey), StoreError> {
        let schema = Schema { steps, hook };
        if opts.max_events == 0 {
            return Err(StoreError::Invalid(
                "max_events must be at least 1; set [store] max_events in latchd.toml".into(),
            ));
        }
        ensure_state_dir(state_dir)?;
        slot.recover()?;
        let key_path = slot.location().to_path_buf();
        let db_path = state_dir.join(DB_FILE);
        let marker = state_dir.join(FIRST_START_MARKER);
        let dir_err = |source| StoreError::StateDir {
            path: state_dir.to_path_buf(),
            source,
        };
        let key_exists = slot.exists()?;
        let db_exists = exists(&db_path).map_err(dir_err)?;
        let resuming = exists(&marker).map_err(dir_err)?;

        match (key_exists, db_exists, resuming) {
            // First start writes the key before the database, so even an
            // interrupted one never leaves a database without its key.
            (false, true, _) => Err(StoreError::KeyMissing {
                key: key_path,
                db: db_path,
            }),
            (_, _, true) | (false, false, false) => {
                if !key_exists {
                    slot.can_create()?;
                }
                first_start(state_dir, slot, &db_path, &marker, opts, schema)
            }
            (true, false, false) => Err(StoreError::DatabaseMissing {
                key: key_path,
                db: db_path,
            }),
            (true, true, false) => {
                let key = slot.read()?;
                let mut schema = schema;
                match open_db(&db_path, &key_path, &key, opts.clone(), false, &mut schema)? {
                    Opened::Ready(store) => Ok((*store, key)),
                    // A factory reset asked for a new key and this is
                    // still the old one: rotate (or say who must), then
                    // open with the new key, which adopts the database.
                    Opened::OldKey => {
                        drop(key);
                        let key = slot.rotate()?;
                        match open_db(&db_path, &key_path, &key, opts, false, &mut schema)? {
                            Opened::Ready(store) => Ok((*store, key)),
                            Opened::OldKey => Err(StoreError::Invalid(format!(
                                "the key in {} did not change although it was rotated",
                                key_path.display()
                            ))),
                        }
                    }
                }
            }
        }
    }

    /// Everything the engine needs at start-up.
    pub fn load(&self) -> Result<Persisted, StoreError> {
        state::load(&self.conn, &self.sealer)
    }

    /// Only the registered app keys (what a channel checks on every
    /// frame; cheaper than [`Store::load`], which opens every sealed
    /// credential).
    pub fn app_keys(&self) -> Result<Vec<crate::core::types::AppKey>, StoreError> {
        state::load_app_keys(&self.conn, &self.sealer)
    }

    /// Only the outstanding guest invites.
    pub fn guest_invites(&self) -> Result<Vec<crate::core::types::GuestInvite>, StoreError> {
        state::load_guest_invites(&self.conn, &self.sealer)
    }

    /// Apply a batch of changes in one transaction: all or nothing.
    ///
    /// A batch with [`Change::FactoryReset`] also marks the device key for
    /// rotation in the same transaction, then asks for it (the request file
    /// of [`keystore`]): the next open runs with a new key, and nothing
    /// sealed under the old one can be opened again. The daemon restarts
    /// for that right away (see `keystore::rotation_requested`).
    pub fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        self.write(reserve::is_protective(changes), |s| {
            state::apply(&mut s.conn, &s.sealer, changes)
        })?;
        if !changes.iter().all(fallback::is_carried) {
            self.copy_made_unsafe();
        }
        if changes.iter().any(|c| matches!(c, Change::FactoryReset)) {
            if let Some(dir) = self.db_path.parent() {
                keystore::request_rotation(dir)?;
                // The erase (store/erase.rs). The rows are already gone;
                // a failure here leaves old bytes in the files until the
                // next open scrubs again, so it is logged, not returned.
                match erase::scrub(&self.conn) {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        "factory reset: a reader kept the write-ahead log from being truncated; \
                         the restart scrubs it"
                    ),
                    Err(e) => tracing::error!("factory reset: scrubbing the database: {e}"),
                }
                // Likewise the snapshots: the adoption under the new key
                // erases them again, so an error is not the batch's.
                match erase::erase_snapshots(dir) {
                    Ok(snapshots) => tracing::info!(
                        snapshots,
                        "factory reset: event log, snapshots and free pages erased"
                    ),
                    Err(e) => tracing::error!("factory reset: erasing the snapshots: {e}"),
                }
            }
        }
        Ok(())
    }

    /// Append events in one transaction and prune the log to
    /// `max_events`. Returns the new ids, in order.
    pub fn append_events(&mut self, events: &[Event]) -> Result<Vec<EventId>, StoreError> {
        let max = self.opts.max_events;
        self.write(false, |s| events::append(&mut s.conn, events, max))
    }

    /// One write: refused while the reserve is spent unless `protective`;
    /// a protective write that finds the partition full spends the reserve
    /// and is tried once more.
    fn write<T>(
        &mut self,
        protective: bool,
        mut f: impl FnMut(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.room_for(protective)?;
        let done = match f(self) {
            Err(StoreError::Full { .. }) if protective && self.reserve.release() => f(self),
            // SQLite sees a write refused with EROFS as an I/O error; the
            // file system's flags tell the two apart.
            Err(StoreError::Io { detail }) if self.read_only() => {
                self.read_only_seen = true;
                Err(StoreError::ReadOnly { detail })
            }
            r => r,
        }?;
        self.read_only_seen = false;
        self.after_write();
        Ok(done)
    }

    /// The database's file system refuses writes now. Asked only after an
    /// I/O error. The mount flags are not enough: ext4 since Linux 6.x
    /// turns read-only after an error without setting them (findmnt shows
    /// `emergency_ro`), so a file is also tried (and removed at once).
    fn read_only(&self) -> bool {
        let dir = self.db_path.parent().unwrap_or(Path::new("."));
        if nix::sys::statvfs::statvfs(dir)
            .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        {
            return true;
        }
        let probe = dir.join(".write-probe");
        match OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)
        {
            Ok(_) => {
                let _ = fs::remove_file(&probe);
                false
            }
            Err(e) => e.raw_os_error() == Some(libc::EROFS),
        }
    }

    /// While the reserve is spent only protective writes are taken (and
    /// any write once the partition has room again: the reserve is
    /// written back first).
    fn room_for(&mut self, protective: bool) -> Result<(), StoreError> {
        if protective || self.reserve.restore_if_room() {
            return Ok(());
        }
        Err(StoreError::Full {
            detail: "the state partition is full; its reserve is kept for unlocking, \
                     lockouts and revocations"
                .into(),
        })
    }

    /// After a commit on a spent reserve: checkpoint, so the write-ahead
    /// log wraps over its own blocks instead of growing (a busy reader
    /// only delays that to the next commit).
    fn after_write(&mut self) {
        if self.reserve.spent() {
            if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                tracing::warn!("checkpoint on a full partition: {e}");
            }
        }
    }

    /// The newest `limit` events, newest first.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        events::recent(&self.conn, limit)
    }

    /// A page of events older than `cursor` (or the newest, for `None`),
    /// newest first. Pass the last id of a page to get the next one.
    pub fn events_before(
        &self,
        cursor: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        events::before(&self.conn, cursor, limit)
    }

    /// Events newer than `id`, oldest first — for replaying to a broker
    /// after a reconnect. If the first id returned is not `id + 1`, the
    /// events in between were pruned.
    pub fn events_after(&self, id: EventId, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        events::after(&self.conn, id, limit)
    }

    /// Oldest and newest event id in the log, if any.
    pub fn event_bounds(&self) -> Result<Option<(EventId, EventId)>, StoreError> {
        events::bounds(&self.conn)
    }

    /// Keep an owner notice (issue 17 item 8; `body`: the app's encoding
    /// of it) for the apps not connected now; sealed, the newest
    /// [`NOTICES_KEPT`] kept. Returns its id.
    pub fn push_notice(&mut self, body: &[u8]) -> Result<u64, StoreError> {
        self.write(false, |s| notices::push(&mut s.conn, &s.sealer, body))
    }

    /// The notices key `slot` (public key id `key_id`) has not
    /// acknowledged and that were raised after it was added, oldest first,
    /// at most `limit`, and how many more wait.
    #[allow(clippy::type_complexity)]
    pub fn pending_notices(
        &self,
        slot: u32,
        key_id: &[u8],
        limit: usize,
    ) -> Result<(Vec<(u64, zeroize::Zeroizing<Vec<u8>>)>, u64), StoreError> {
        let after =
            notices::acked(&self.conn, slot, key_id)?.max(notices::floor(&self.conn, slot)?);
        notices::after(&self.conn, &self.sealer, after, limit)
    }

    /// Key `slot` acknowledged the notices up to `up_to` (forward only).
    pub fn ack_notices(&mut self, slot: u32, key_id: &[u8], up_to: u64) -> Result<(), StoreError> {
        // Not protective: on a full partition the notices are offered
        // again next time, the safe side of losing one.
        self.write(false, |s| notices::ack(&mut s.conn, slot, key_id, up_to))
    }

    /// Store a service counter (e.g. a BLE or MQTT replay counter). It
    /// survives restarts and factory resets: a counter that went back
    /// would reopen a replay window.
    pub fn put_counter(&mut self, name: &str, value: u64) -> Result<(), StoreError> {
        check_name(name)?;
        // Protective: the channels' replay counters must never go back.
        self.write(true, |s| {
            // Stored bit-for-bit in SQLite's signed 64-bit integer.
            s.conn
                .execute(
                    "INSERT INTO service_counters (name, value) VALUES (?1, ?2)
                     ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    rusqlite::params![name, value as i64],
                )
                .ctx("storing a counter")?;
            Ok(())
        })
    }

    pub fn get_counter(&self, name: &str) -> Result<Option<u64>, StoreError> {
        check_name(name)?;
        self.conn
            .query_row(
                "SELECT value FROM service_counters WHERE name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .ctx("reading a counter")
            .map(|v| v.map(|v| v as u64))
    }

    /// The fingerprint module's password (issue 13 item 7), if the lock
    /// made one; sealed at rest, carried across a factory reset.
    pub fn fingerprint_module_password(&self) -> Result<Option<u32>, StoreError> {
        module_secret::get(&self.conn, &self.sealer)
    }

    /// Stores the fingerprint module's password, sealed; committed when
    /// this returns, so it is on disk before any module is given it.
    pub fn put_fingerprint_module_password(&mut self, password: u32) -> Result<(), StoreError> {
        // The pre-update copy would lose it and strand the module.
        self.forget_copy()?;
        module_secret::put(&self.conn, &self.sealer, password)
    }

    /// Store a small service value (a cursor, a broker session id). Not
    /// for secrets: these bytes are stored as given.
    pub fn put_meta(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        check_name(name)?;
        self.conn
            .execute(
                "INSERT INTO service_meta (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                rusqlite::params![name, value],
            )
            .ctx("storing a service value")?;
        Ok(())
    }

    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_name(name)?;
        self.conn
            .query_row(
                "SELECT value FROM service_meta WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .ctx("reading a service value")
    }

    /// A cheap summary for diagnostics. Never fails: a query error shows
    /// up as `ok: false` with the error as detail.
    pub fn health(&self) -> StorageHealth {
        let sizes = || -> Result<(u64, u64), StoreError> {
            let pages: i64 = self
                .conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .ctx("reading the page count")?;
            let page_size: i64 = self
                .conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .ctx("reading the page size")?;
            let mut wal = self.db_path.clone().into_os_string();
            wal.push("-wal");
            let wal_bytes = fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            let events = events::count(&self.conn)?;
            Ok(((pages * page_size) as u64 + wal_bytes, events))
        };
        match sizes() {
            Ok((db_bytes, events)) if self.read_only_seen => StorageHealth {
                ok: false,
                detail: "the state partition is read-only: nothing is stored, unlocking goes on \
                         with attempts counted in memory; check the flash, fsck and remount"
                    .into(),
                db_bytes,
                events,
            },
            Ok((db_bytes, events)) if self.reserve.spent() => StorageHealth {
                ok: false,
                detail: "the state partition is full: only unlocking, lockouts and revocations \
                         are stored until there is room"
                    .into(),
                db_bytes,
                events,
            },
            Ok((db_bytes, events)) => StorageHealth {
                ok: self.last_check == "ok",
                detail: self.last_check.clone(),
                db_bytes,
                events,
            },
            Err(e) => StorageHealth {
                ok: false,
                detail: e.to_string(),
                db_bytes: 0,
                events: 0,
            },
        }
    }

    /// Run SQLite's full `integrity_check` (reads every page: seconds on a
    /// large database, so call it from a maintenance path, not per
    /// request). Returns its output, "ok" when healthy, and remembers it
    /// for [`Store::health`].
    pub fn integrity_check(&mut self) -> Result<String, StoreError> {
        let out = run_check(&self.conn, "integrity_check")?;
        self.last_check = out.clone();
        Ok(out)
    }

    /// A read-only connection to this database for the channels' reads
    /// (see [`StoreReads`]).
    pub fn reader(&self) -> Result<StoreReader, StoreError> {
        StoreReader::open(&self.db_path, self.sealer.clone(), self.opts.cache_kib)
    }

    /// Path of the database file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// A change the pre-migration copy cannot carry was committed (its
    /// transaction deleted the copy's row): the copy is never restored now,
    /// so its file goes. A failure leaves it for the next open to wipe.
    fn copy_made_unsafe(&mut self) {
        if !std::mem::take(&mut self.copy_live) {
            return;
        }
        if let Some(dir) = self.db_path.parent() {
            match fallback::wipe_copies(dir) {
                Ok(_) => tracing::info!(
                    "the lock changed since the update: its pre-update database copy is erased"
                ),
                Err(e) => tracing::warn!("erasing the pre-update database copy: {e}"),
            }
        }
    }

    /// Run `sql` (one statement that changes a table the copy cannot
    /// carry) after forgetting the copy, each committed on its own: a crash
    /// between the two leaves the copy forgotten, never a change it would
    /// undo.
    fn execute_uncarried(
        &mut self,
        sql: &str,
        args: impl rusqlite::Params,
        what: &'static str,
    ) -> Result<(), StoreError> {
        self.forget_copy()?;
        self.conn.execute(sql, args).ctx(what)?;
        Ok(())
    }

    /// Commit that the pre-update copy may not be restored, and erase it.
    fn forget_copy(&mut self) -> Result<(), StoreError> {
        if self.copy_live {
            self.conn
                .execute(fallback::FORGET_COPY, [])
                .ctx("forgetting the pre-update copy")?;
            self.copy_made_unsafe();
        }
        Ok(())
    }
}

/// The schema steps an open brings the database to, and the test hook of
/// the fall-back copy and restore.
struct Schema<'a, 'h> {
    steps: &'a [schema::Migration],
    hook: fallback::Hook<'h>,
}

fn exists(p: &Path) -> std::io::Result<bool> {
    match fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn ensure_state_dir(dir: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "exists and is not a directory",
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err),
        Err(e) => Err(err(e)),
    }
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::Invalid(format!(
            "service value name {name:?} must be 1..={MAX_NAME_LEN} printable ASCII characters"
        )));
    }
    Ok(())
}

/// First start (or finishing an interrupted one): marker → key → database
/// → remove marker. Each step is fsynced before the next.
fn first_start(
    state_dir: &Path,
    slot: &dyn KeySlot,
    db_path: &Path,
    marker: &Path,
    opts: StoreOptions,
    mut schema: Schema<'_, '_>,
) -> Result<(Store, DeviceKey), StoreError> {
    let key_path = slot.location();
    let dir_err = |source| StoreError::StateDir {
        path: state_dir.to_path_buf(),
        source,
    };
    if !exists(marker).map_err(dir_err)? {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(marker)
            .map_err(dir_err)?;
        f.sync_all().map_err(dir_err)?;
        sync_dir(state_dir).map_err(dir_err)?;
    }
    let key = if slot.exists()? {
        slot.read()?
    } else {
        let key = DeviceKey::generate()?;
        slot.create(&key)?;
        key
    };
    if !exists(db_path).map_err(dir_err)? {
        // Create the file ourselves so it is 0600 from the start; SQLite
        // gives the -wal and -shm files the database file's mode. An empty
        // file is a valid empty database.
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(db_path)
            .map_err(dir_err)?;
        f.sync_all().map_err(dir_err)?;
        sync_dir(state_dir).map_err(dir_err)?;
    }
    let store = match open_db(db_path, key_path, &key, opts, true, &mut schema)? {
        Opened::Ready(store) => *store,
        // A first start has no factory reset behind it.
        Opened::OldKey => {
            return Err(StoreError::Corrupt {
                path: db_path.to_path_buf(),
                detail: "a key rotation is pending in a database that is being created".into(),
            })
        }
    };
    fs::remove_file(marker).map_err(dir_err)?;
    sync_dir(state_dir).map_err(dir_err)?;
    tracing::info!(db = %db_path.display(), "first start: created device key and database");
    Ok((store, key))
}

/// What [`open_db`] found.
enum Opened {
    Ready(Box<Store>),
    /// A factory reset marked the key for rotation and `key` is still the
    /// old one.
    OldKey,
}

/// Open an existing database file and check it belongs to `key`.
fn open_db(
    db_path: &Path,
    key_path: &Path,
    key: &DeviceKey,
    opts: StoreOptions,
    first_start: bool,
    schema: &mut Schema<'_, '_>,
) -> Result<Opened, StoreError> {
    let at_open = |e: StoreError| classify_open_error(db_path, e);
    // No SQLITE_OPEN_CREATE: a database that vanished is an error, never
    // a fresh empty one.
    let mut conn = Connection::open_with_flags(
        db_path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ctx("opening the database")
    .map_err(at_open)?;
    schema::configure(&conn).map_err(at_open)?;
    schema::set_cache(&conn, opts.cache_kib).map_err(at_open)?;
    if let Some(bytes) = opts.max_db_bytes {
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .ctx("reading the page size")
            .map_err(at_open)?;
        // SQLite never sets the cap below the current page count, so an
        // already larger database keeps working but cannot grow.
        let pages = (bytes / page_size.max(1) as u64).max(1);
        let _set: i64 = conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })
            .ctx("setting the database size cap")
            .map_err(at_open)?;
    }
    let version = schema::version(&conn).map_err(at_open)?;
    let latest = schema::latest(schema.steps);
    let state_dir = db_path.parent().unwrap_or(Path::new("."));
    if version > latest {
        // A fall-back to this older version (issue 20; schema.rs, fallback.rs).
        let floor = schema::declared_floor(&conn, version).map_err(at_open)?;
        if floor > latest {
            match fallback::restore(conn, db_path, latest, &mut *schema.hook)? {
                fallback::Restore::Done => {
                    return open_db(db_path, key_path, key, opts, first_start, schema)
                }
                fallback::Restore::Refused(why) => {
                    return Err(StoreError::SchemaTooNew {
                        path: db_path.to_path_buf(),
                        found: version,
                        supported: latest,
                        why,
                    })
                }
            }
        }
        tracing::warn!(
            found = version,
            supported = latest,
            "the database was migrated by a newer latchd whose additions this version ignores"
        );
    }
    if version == 0 && !first_start {
        return Err(StoreError::Corrupt {
            path: db_path.to_path_buf(),
            detail: "the database is empty (no schema) although the lock was set up before".into(),
        });
    }
    // Before a step this version could not read back, keep the way back
    // (unless the copy of an interrupted migration is still valid).
    let mut copy_of = None;
    if version > 0 && version < latest && schema::floor(schema.steps, latest) > version {
        let kept = match fallback::recorded_copy(&conn).map_err(at_open)? {
            Some(v) => fallback::copy_exists(state_dir, v)?,
            None => false,
        };
        if !kept {
            fallback::make_copy(&conn, state_dir, version, &mut *schema.hook)?;
            copy_of = Some(version);
        }
    }
    schema::migrate_steps(&mut conn, schema.steps, copy_of).map_err(at_open)?;
    let copy_live = fallback::recorded_copy(&conn).map_err(at_open)?.is_some();
    if !copy_live && !first_start {
        // A change (or a restore) made the copies useless and a crash came
        // before they were erased.
        fallback::wipe_copies(state_dir)?;
    }
    let check = run_check(&conn, "quick_check").map_err(at_open)?;
    if check != "ok" {
        return Err(StoreError::Corrupt {
            path: db_path.to_path_buf(),
            detail: check,
        });
    }
    let sealer = key.sealer();
    match verify_key(&mut conn, &sealer, db_path, key_path, first_start).map_err(at_open)? {
        KeyCheck::Belongs => {}
        KeyCheck::Retired => return Ok(Opened::OldKey),
    }
    let reserve = reserve::Reserve::keep(
        db_path.parent().unwrap_or(Path::new(".")),
        opts.reserve_bytes,
    );
    Ok(Opened::Ready(Box::new(Store {
        conn,
        sealer,
        opts,
        db_path: db_path.to_path_buf(),
        last_check: check,
        copy_live,
        reserve,
        read_only_seen: false,
    })))
}

enum KeyCheck {
    /// The database belongs to this key.
    Belongs,
    /// It does, but a factory reset retired this key.
    Retired,
}

/// The key check: a constant sealed under the device key when the
/// database was created. If it does not open, this key did not seal this
/// database, and no credential in it would open either.
///
/// After a factory reset ([`ROTATION_PENDING`] set), the check still
/// opening means the key was not rotated yet ([`KeyCheck::Retired`]); not
/// opening means this is the new key: the database is adopted in one
/// transaction (every sealed table emptied again, the check sealed anew,
/// the mark cleared). A power cut before that commit repeats it.
fn verify_key(
    conn: &mut Connection,
    sealer: &Sealer,
    db_path: &Path,
    key_path: &Path,
    first_start: bool,
) -> Result<KeyCheck, StoreError> {
    let bind = Binding {
        table: "store_meta",
        id: 0,
        kind: KEY_CHECK_NAME,
        owner: None,
    };
    let sealed: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM store_meta WHERE name = ?1",
            [KEY_CHECK_NAME],
            |r| r.get(0),
        )
        .optional()
        .ctx("reading the key check")?;
    let pending: bool = conn
        .query_row(
            "SELECT 1 FROM store_meta WHERE name = ?1",
            [ROTATION_PENDING],
            |_| Ok(()),
        )
        .optional()
        .ctx("reading the key rotation mark")?
        .is_some();
    match sealed {
        Some(sealed) => match sealer.open(&bind, &sealed) {
            Ok(p) if &p[..] == KEY_CHECK_PLAINTEXT => Ok(if pending {
                KeyCheck::Retired
            } else {
                KeyCheck::Belongs
            }),
            _ if pending => {
                let sealed = sealer.seal(&bind, KEY_CHECK_PLAINTEXT)?;
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .ctx("adopting the database with the new key")?;
                tx.execute_batch(state::SEALED_TABLES_ERASE)
                    .ctx("erasing what the old key sealed")?;
                module_secret::adopt_carried(&tx, sealer)?;
                tx.execute(
                    "UPDATE store_meta SET value = ?2 WHERE name = ?1",
                    rusqlite::params![KEY_CHECK_NAME, sealed],
                )
                .ctx("sealing the key check with the new key")?;
                tx.execute("DELETE FROM store_meta WHERE name = ?1", [ROTATION_PENDING])
                    .ctx("clearing the key rotation mark")?;
                tx.commit().ctx("adopting the database with the new key")?;
                // The old key check (and anything the reset's own scrub
                // could not reach) must not stay in the files: no reader
                // exists yet, so the truncation completes. A failure (a
                // full disk for VACUUM's copy) leaves only bytes no key
                // opens any more: logged, and the lock still starts.
                if let Err(e) = erase::scrub(conn) {
                    tracing::error!("after the key rotation: scrubbing the database: {e}");
                }
                if let Some(dir) = db_path.parent() {
                    if let Err(e) = erase::erase_snapshots(dir) {
                        tracing::error!("after the key rotation: erasing the snapshots: {e}");
                    }
                    if let Err(e) = fallback::wipe_copies(dir) {
                        tracing::error!("after the key rotation: erasing database copies: {e}");
                    }
                }
                tracing::info!(db = %db_path.display(), "the database now belongs to the new device key");
                Ok(KeyCheck::Belongs)
            }
            _ => Err(StoreError::WrongKey {
                key: key_path.to_path_buf(),
                db: db_path.to_path_buf(),
            }),
        },
        None if first_start => {
            let sealed = sealer.seal(&bind, KEY_CHECK_PLAINTEXT)?;
            conn.execute(
                "INSERT INTO store_meta (name, value) VALUES (?1, ?2)",
                rusqlite::params![KEY_CHECK_NAME, sealed],
            )
            .ctx("storing the key check")?;
            Ok(KeyCheck::Belongs)
        }
        None => Err(StoreError::Corrupt {
            path: db_path.to_path_buf(),
            detail: "the sealed key check row is missing".into(),
        }),
    }
}

/// Run `PRAGMA quick_check` / `integrity_check` and join its rows.
fn run_check(conn: &Connection, pragma: &'static str) -> Result<String, StoreError> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA {pragma}"))
        .ctx("running an integrity check")?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .ctx("running an integrity check")?;
    let mut lines = Vec::new();
    for row in rows {
        lines.push(row.ctx("running an integrity check")?);
    }
    Ok(lines.join("\n"))
}

/// Turn SQLite's "not a database" / "corrupt" codes met while opening
/// into errors that name the file.
fn classify_open_error(path: &Path, e: StoreError) -> StoreError {
    if let StoreError::Sqlite {
        source: rusqlite::Error::SqliteFailure(f, msg),
        ..
    } = &e
    {
        match f.code {
            rusqlite::ErrorCode::NotADatabase => {
                return StoreError::NotADatabase {
                    path: path.to_path_buf(),
                }
            }
            rusqlite::ErrorCode::DatabaseCorrupt => {
                return StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: msg.clone().unwrap_or_else(|| f.to_string()),
                }
            }
            _ => {}
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("ble.counter").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("has space").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    /// Issue 17 item 8: notices are sealed (no body in clear in the file),
    /// the newest 64 kept, acknowledged per key (forward only, never past
    /// the newest), a reissued slot starts over, and a reset erases both.
    #[test]
    fn owner_notices_are_sealed_bounded_acknowledged_per_key_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (a, b) = (b"key-a---", b"key-b---");
        let ids: Vec<u64> = (0..NOTICES_KEPT + 6)
            .map(|i| store.push_notice(format!("notice {i}").as_bytes()).unwrap())
            .collect();
        let raw: Vec<u8> = store
            .conn
            .query_row("SELECT sealed FROM owner_notices LIMIT 1", [], |r| r.get(0))
            .unwrap();
        assert!(!raw.windows(6).any(|w| w == b"notice"), "sealed");
        let (page, more) = store.pending_notices(1, a, 20).unwrap();
        assert_eq!(page.len(), 20);
        assert_eq!(more as usize, NOTICES_KEPT - 20, "the oldest 6 were pruned");
        assert_eq!(page[0].0, ids[6]);
        assert_eq!(&page[0].1[..], b"notice 6");
        store.ack_notices(1, a, page[19].0).unwrap();
        store.ack_notices(1, a, 0).unwrap();
        let (next, _) = store.pending_notices(1, a, 20).unwrap();
        assert_eq!(next[0].0, page[19].0 + 1, "forward only");
        assert_eq!(store.pending_notices(2, a, 1).unwrap().0[0].0, ids[6]);
        assert_eq!(store.pending_notices(1, b, 1).unwrap().0[0].0, ids[6]);
        store.ack_notices(1, a, u64::MAX).unwrap();
        assert!(store.pending_notices(1, a, 20).unwrap().0.is_empty());
        let later = store.push_notice(b"later").unwrap();
        assert_eq!(
            store.pending_notices(1, a, 20).unwrap().0[0].0,
            later,
            "an ack past the newest does not hide the next"
        );
        store.apply(&[Change::FactoryReset]).unwrap();
        assert!(store.pending_notices(2, b, 20).unwrap().0.is_empty());
        let acks: i64 = store
            .conn
            .query_row("SELECT count(*) FROM notice_acks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(acks, 0);
    }

    /// A phone paired today is not handed the household's old notices:
    /// a new app key starts after the newest kept one; editing the key
    /// (its label, its window) keeps where it started; a slot reissued to
    /// a new key starts again from the newest.
    #[test]
    fn a_new_app_key_gets_the_notices_raised_after_it() {
        use crate::core::time::Validity;
        use crate::core::types::{AppKey, AppKeyId, AppKeyRole, Role, User, UserNumber};
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let admin = UserNumber::new(1).unwrap();
        let key = |label: &str| AppKey {
            id: AppKeyId(3),
            role: AppKeyRole::Owner { admin },
            public_key: [7; 32],
            validity: Validity::ALWAYS,
            label: label.into(),
        };
        store
            .apply(&[Change::PutUser(User {
                number: admin,
                role: Role::Admin,
                validity: Validity::ALWAYS,
            })])
            .unwrap();
        for i in 0..5 {
            store.push_notice(format!("old {i}").as_bytes()).unwrap();
        }
        store.apply(&[Change::PutAppKey(key("phone"))]).unwrap();
        assert!(store
            .pending_notices(3, b"key-3---", 20)
            .unwrap()
            .0
            .is_empty());
        let new = store.push_notice(b"new").unwrap();
        store.apply(&[Change::PutAppKey(key("renamed"))]).unwrap();
        let (page, more) = store.pending_notices(3, b"key-3---", 20).unwrap();
        assert_eq!((page.len(), more), (1, 0));
        assert_eq!(page[0].0, new, "an edit keeps the key's start");
        store
            .apply(&[
                Change::DeleteAppKey(AppKeyId(3)),
                Change::PutAppKey(key("next")),
            ])
            .unwrap();
        assert!(store
            .pending_notices(3, b"key-3'--", 20)
            .unwrap()
            .0
            .is_empty());
        // A slot without a key (an app the store does not know) starts at 0.
        assert_eq!(
            store.pending_notices(9, b"key-9---", 20).unwrap().0.len(),
            6
        );
    }

    /// Issue 15 item 4: the writer's and a reader's page caches are
    /// bounded by `cache_kib` (SQLite's own default would be 2000 KiB each).
    #[test]
    fn page_caches_are_bounded_by_the_option() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(
            dir.path(),
            StoreOptions {
                cache_kib: 300,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let cache =
            |c: &Connection| -> i64 { c.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap() };
        assert_eq!(cache(&store.conn), -300);
        assert_eq!(cache(&store.reader().unwrap().conn), -300);
        assert_eq!(StoreOptions::default().cache_kib, DEFAULT_CACHE_KIB);
    }

    #[test]
    fn zero_max_events_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = Store::open(
            dir.path(),
            StoreOptions {
                max_events: 0,
                ..StoreOptions::default()
            },
        );
        assert!(matches!(r, Err(StoreError::Invalid(_))));
        // Nothing was created for a refused option.
        assert!(!dir.path().join(KEY_FILE).exists());
    }

    #[test]
    fn interrupted_first_start_is_finished_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Simulate a power cut after the key was written, before the
        // database: marker + key, no database.
        fs::write(dir.path().join(FIRST_START_MARKER), b"").unwrap();
        let key = DeviceKey::generate().unwrap();
        key.create_file(&dir.path().join(KEY_FILE)).unwrap();
        let (store, k2) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(*k2.passcode_key(), *key.passcode_key());
        assert!(!dir.path().join(FIRST_START_MARKER).exists());
        drop(store);
        Store::open(dir.path(), StoreOptions::default()).unwrap();
    }

    /// Issue 13 and issue 16 together: a factory reset keeps the
    /// trusted-time floor, puts the pairing generation back to the label's
    /// code, and rotates the key (in the same transaction); the next open
    /// runs under the new key with the floor still there.
    #[test]
    fn factory_reset_keeps_the_time_floor_resets_pairing_and_rotates_the_key() {
        use crate::core::time::WallTime;
        let dir = tempfile::tempdir().unwrap();
        let (mut store, old) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store
            .apply(&[
                Change::PutTimeFloor(WallTime(1_800_000_000)),
                Change::SetPairingGeneration(2),
            ])
            .unwrap();
        store.apply(&[Change::FactoryReset]).unwrap();
        drop(store);
        assert!(keystore::rotation_requested(dir.path()));
        let (store, new) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_ne!(*new.passcode_key(), *old.passcode_key());
        let persisted = store.load().unwrap();
        assert_eq!(persisted.time_floor, Some(WallTime(1_800_000_000)));
        assert_eq!(persisted.pairing_generation, 0);
        assert_eq!(schema::version(&store.conn).unwrap(), schema::LATEST);
    }

    /// Issue 17 item 2: schedules are stored, survive a reopen, go with
    /// their holder (the triggers) and with a factory reset.
    #[test]
    fn schedules_persist_follow_their_holder_and_a_reset() {
        use crate::core::schedule::{Holder, Period, Schedule, WeekDay};
        use crate::core::time::Validity;
        use crate::core::types::{
            OperatingMode, PasscodeMac, Role, TempPasscode, TempPasscodeId, User, UserNumber,
        };
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let u = UserNumber::new(2).unwrap();
        let code = TempPasscodeId(3);
        let week = |holder| Schedule::WeekDay {
            holder,
            index: 1,
            window: WeekDay::new(0b10, (8, 0), (17, 0)).unwrap(),
        };
        let holiday = Schedule::Holiday {
            index: 2,
            period: Period::new(10, 20).unwrap(),
            mode: OperatingMode::Vacation,
        };
        // A schedule for a holder that is not there is refused.
        assert!(store
            .apply(&[Change::PutSchedule(week(Holder::User(u)))])
            .is_err());
        store
            .apply(&[
                Change::PutUser(User {
                    number: u,
                    role: Role::User,
                    validity: Validity::ALWAYS,
                }),
                Change::PutTempPasscode(TempPasscode {
                    id: code,
                    mac: PasscodeMac([7; 32]),
                    validity: Validity::ALWAYS,
                    one_time: false,
                }),
                Change::PutSchedule(week(Holder::User(u))),
                Change::PutSchedule(week(Holder::TempPasscode(code))),
                Change::PutSchedule(holiday),
            ])
            .unwrap();
        drop(store);
        let (mut store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(store.load().unwrap().schedules.len(), 3);
        store.apply(&[Change::DeleteUser(u)]).unwrap();
        store.apply(&[Change::DeleteTempPasscode(code)]).unwrap();
        assert_eq!(store.load().unwrap().schedules, vec![holiday]);
        store.apply(&[Change::FactoryReset]).unwrap();
        drop(store);
        let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert!(store.load().unwrap().schedules.is_empty());
    }

    /// Issue 13 item 7: the fingerprint module's password is sealed at
    /// rest and survives the factory reset's key rotation (the module
    /// keeps it in its flash; losing it would strand the module).
    #[test]
    fn the_fingerprint_module_password_is_sealed_and_carried_across_a_factory_reset() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, old) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(store.fingerprint_module_password().unwrap(), None);
        store.put_fingerprint_module_password(0x1234_5678).unwrap();
        let raw: Vec<u8> = store
            .conn
            .query_row(
                "SELECT value FROM store_meta WHERE name = 'fingerprint_module_password'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            !raw.windows(4).any(|w| w == 0x1234_5678u32.to_be_bytes()),
            "stored sealed, not as given"
        );
        store.apply(&[Change::FactoryReset]).unwrap();
        drop(store);
        let (store, new) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_ne!(*new.passcode_key(), *old.passcode_key());
        assert_eq!(
            store.fingerprint_module_password().unwrap(),
            Some(0x1234_5678)
        );
        let carry: i64 = store
            .conn
            .query_row(
                "SELECT count(*) FROM store_meta WHERE name LIKE '%carry'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(carry, 0, "the plain carry row is gone after the adoption");
        drop(store);
        let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(
            store.fingerprint_module_password().unwrap(),
            Some(0x1234_5678)
        );
    }

    #[test]
    fn factory_reset_rotates_the_file_key() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, old) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store.apply(&[Change::FactoryReset]).unwrap();
        drop(store);
        assert!(keystore::rotation_requested(dir.path()));
        let (store, new) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_ne!(*new.passcode_key(), *old.passcode_key());
        assert!(!keystore::rotation_requested(dir.path()));
        drop(store);
        // Opened again: no second rotation.
        let (_store, again) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(*again.passcode_key(), *new.passcode_key());
    }

    /// A power cut after the new key replaced the old one but before the
    /// database adopted it: the next open adopts it; the old key no
    /// longer opens the database.
    #[test]
    fn an_interrupted_file_rotation_is_adopted_and_the_old_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join(KEY_FILE);
        let (mut store, old) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store.apply(&[Change::FactoryReset]).unwrap();
        drop(store);
        let new = DeviceKey::generate().unwrap();
        keystore::files::replace(
            &key_path,
            new.as_bytes(),
            0o600,
            &mut keystore::files::no_hook,
        )
        .unwrap();
        let (store, opened) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(*opened.passcode_key(), *new.passcode_key());
        drop(store);
        keystore::files::replace(
            &key_path,
            old.as_bytes(),
            0o600,
            &mut keystore::files::no_hook,
        )
        .unwrap();
        let r = Store::open(dir.path(), StoreOptions::default());
        assert!(matches!(r, Err(StoreError::WrongKey { .. })), "{r:?}");
    }

    #[test]
    fn a_first_start_marker_never_makes_a_key_for_an_existing_database() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), StoreOptions::default()).unwrap());
        fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        fs::write(dir.path().join(FIRST_START_MARKER), b"").unwrap();
        let r = Store::open(dir.path(), StoreOptions::default());
        assert!(matches!(r, Err(StoreError::KeyMissing { .. })), "{r:?}");
        assert!(!dir.path().join(KEY_FILE).exists());
    }

    /// Issue 23 item 2: the durability promise ("every acknowledged change
    /// survives a power cut") rests on `synchronous=FULL`, and deleted
    /// sealed rows not lingering on `secure_delete`. Only the VM power-cut
    /// test would notice either going missing, so the default suite reads
    /// them back from the store's own connection, on a first start and on a
    /// reopen (two different open paths run `configure`).
    #[test]
    fn the_store_connection_is_durable_and_zeroes_freed_pages() {
        fn pragma(store: &Store, name: &str) -> i64 {
            store
                .conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .unwrap()
        }
        let dir = tempfile::tempdir().unwrap();
        for start in ["first start", "reopen"] {
            let (store, _key) = Store::open(dir.path(), StoreOptions::default()).unwrap();
            // SQLite's numbering: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
            assert_eq!(pragma(&store, "synchronous"), 2, "synchronous on {start}");
            assert_eq!(
                pragma(&store, "secure_delete"),
                1,
                "secure_delete on {start}"
            );
            assert_eq!(pragma(&store, "foreign_keys"), 1, "foreign_keys on {start}");
            let mode: String = store
                .conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal", "journal_mode on {start}");
        }
    }
}
