//! The store's one error type. Every start-up error names the file and
//! says what to do; none of them is ever "handled" by resetting state.
use std::path::PathBuf;

use thiserror::Error;

/// Why the store refused to open, or refused a change.
///
/// Start-up errors (`KeyMissing` … `SchemaTooNew`) leave every file as it
/// was: the store never resets, re-keys or recreates anything to get past
/// them, because a lock that silently forgets its users after a glitch is a
/// lock that opens for whoever enrols first.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The state directory could not be created, read or checked.
    #[error(
        "state directory {path}: {source}; check that it exists and belongs to the daemon's user"
    )]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The database exists but the device key that sealed it does not.
    #[error(
        "device key {key} is missing but database {db} exists: the sealed credentials cannot be \
         read without it. Restore the key file from the device's backup; to start over as a new \
         lock (all users lost), move {db} away and restart"
    )]
    KeyMissing { key: PathBuf, db: PathBuf },

    /// The device key exists but the database does not.
    #[error(
        "database {db} is missing but device key {key} exists: users and credentials are gone. \
         Restore the database from backup; to start over as a new lock, move {key} away and \
         restart"
    )]
    DatabaseMissing { key: PathBuf, db: PathBuf },

    /// The key file is not exactly 32 bytes.
    #[error(
        "device key {path} is {len} bytes, expected {expected}: the file is truncated or is not a \
         latchd key. Restore it from backup; do not edit it"
    )]
    KeyLength {
        path: PathBuf,
        len: u64,
        expected: usize,
    },

    /// The key file is readable or writable by someone other than its owner.
    #[error(
        "device key {path} has mode {mode:04o}: it must be readable by its owner only. Run \
         `chmod 600 {path}` (and find out who widened it: the key may have leaked)"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },

    /// The key file is a symlink, a directory or another non-regular file.
    #[error("device key {path} is not a regular file; replace it with the original key file")]
    KeyNotAFile { path: PathBuf },

    /// Reading or writing the key file failed.
    #[error("device key {path}: {source}")]
    KeyIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The OS random generator failed while making a new key.
    #[error("the OS random generator failed ({0}); the device key cannot be created safely")]
    Random(getrandom::Error),

    /// The database's sealed check value does not open with this key.
    #[error(
        "database {db} was sealed with a different device key than {key}: the two files do not \
         belong together. Put back the key file that came with this database"
    )]
    WrongKey { key: PathBuf, db: PathBuf },

    /// The file is not an SQLite database (garbage, or an encrypted file).
    #[error(
        "{path} is not an SQLite database (the header is unreadable). Restore it from backup; to \
         start over as a new lock, move it and the device key away"
    )]
    NotADatabase { path: PathBuf },

    /// SQLite's own check found damaged pages.
    #[error(
        "database {path} is damaged ({detail}). Restore it from backup; `sqlite3 {path} .recover` \
         may salvage rows into a new file"
    )]
    Corrupt { path: PathBuf, detail: String },

    /// A newer latchd wrote this database.
    #[error(
        "database {path} has schema version {found}, this latchd knows up to {supported}: it was \
         written by a newer latchd that this version cannot read, and {why}. Install the newer \
         version again (the app's update, or `rauc install` of its bundle); until then the \
         mechanical key opens the door"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
        /// Why the pre-update copy was not restored (issue 20).
        why: String,
    },

    /// A sealed value did not open: the row was altered or moved.
    #[error(
        "sealed {what} did not open with the device key: the row was altered outside latchd or \
         the file is damaged. Run the integrity check and restore from backup"
    )]
    Unseal { what: String },

    /// A stored value could not be decoded.
    #[error("stored {what} could not be read ({detail}); the database may come from another latchd version")]
    Decode { what: String, detail: String },

    /// A change in a batch was refused; nothing of the batch was stored.
    #[error("change #{index} ({change}) refused: {reason}; nothing of this batch was stored")]
    Rejected {
        index: usize,
        change: &'static str,
        reason: String,
    },

    /// A caller passed a bad argument (option, name).
    #[error("invalid argument: {0}")]
    Invalid(String),

    /// SQLITE_FULL: the filesystem (or the page limit) is full. The failed
    /// transaction was rolled back and changed nothing.
    #[error("storage is full: {detail}. Nothing of this change was stored; free space on the state partition")]
    Full { detail: String },

    /// SQLITE_IOERR: the storage device failed a read or write. The failed
    /// transaction was rolled back and changed nothing.
    #[error(
        "storage I/O error: {detail}. Nothing of this change was stored; the flash may be failing"
    )]
    Io { detail: String },

    /// The state partition is mounted read-only (ext4 `errors=remount-ro`
    /// after a flash error, or mounted so): nothing can be stored until it
    /// is writable again. The failed transaction changed nothing.
    #[error(
        "the state partition is read-only ({detail}). Nothing of this change was stored; the flash \
         may be failing: check the kernel log, then fsck and remount it read-write"
    )]
    ReadOnly { detail: String },

    /// The store thread has stopped (the daemon is shutting down) or did
    /// not finish a request; nothing of it is known to be stored.
    #[error("the store is not available: {detail}")]
    Stopped { detail: String },

    /// The store thread could not be started.
    #[error("cannot start the store thread: {source}")]
    Thread {
        #[source]
        source: std::io::Error,
    },

    /// The device key could not be had from where `[key] storage` says
    /// it rests (see `store::keystore`).
    #[error(transparent)]
    Keystore(#[from] super::keystore::KeystoreError),

    /// Any other SQLite failure, with what the store was doing.
    #[error("database error while {context}: {source}")]
    Sqlite {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// Classify an SQLite error: full and I/O errors get their own
    /// variants so the daemon can tell "disk full" from "bug".
    pub(crate) fn sql(context: &'static str, source: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        if let rusqlite::Error::SqliteFailure(e, msg) = &source {
            let detail = match msg {
                Some(m) => format!("{m} (while {context})"),
                None => format!("{e} (while {context})"),
            };
            match e.code {
                ErrorCode::DiskFull => return StoreError::Full { detail },
                ErrorCode::SystemIoFailure => return StoreError::Io { detail },
                _ => {}
            }
        }
        StoreError::Sqlite { context, source }
    }
}

/// Shorthand for attaching a context to rusqlite results.
pub(crate) trait SqlContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> SqlContext<T> for Result<T, rusqlite::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::sql(context, e))
    }
}
