//! Room kept back on the state partition for the writes a lock cannot do
//! without (issue 15 item 5): counting an attempt, a lockout, spending a
//! one-time code, a revocation.
//!
//! Every verification commits its attempt record before the answer shows
//! (`core::attempt`, the IP-Box rule), so a partition with no free block
//! would stop every electronic unlock — the family locked out by a full
//! disk. A reserve file (zeros, [`DEFAULT_RESERVE_BYTES`]) is kept next to
//! the database; when a protective batch ([`Change::is_protective`]) fails
//! for want of space, the store deletes the reserve and tries once more.
//! While the reserve is spent, only protective batches are taken (an
//! enrolment, a setting or an event would eat the room the next unlock
//! needs) and the write-ahead log is checkpointed after each one, so it
//! wraps over blocks it already has instead of growing. When the
//! partition has twice the reserve free again the reserve is written back
//! and everything is taken as before — no restart.
//!
//! ```text
//!  protective batch ──► commit ── full ──► delete reserve ──► commit again
//!  other batch ──► reserve spent? ── room again ─► write the reserve back ─► commit
//!                                 └─ no room ────► Full ("kept for unlocking")
//! ```
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::core::types::Change;

use super::key::sync_dir;

/// The reserve's file in the state directory.
pub const RESERVE_FILE: &str = "reserve";
/// 1 MiB: a protective commit writes a few pages to the write-ahead log,
/// which wraps after each checkpoint, so this outlasts thousands of them.
pub const DEFAULT_RESERVE_BYTES: u64 = 1 << 20;

/// Whether the reserve is on disk.
#[derive(Debug)]
pub(crate) struct Reserve {
    path: PathBuf,
    bytes: u64,
    held: bool,
}

/// Every change of a batch protects (an empty batch does not need room).
pub(crate) fn is_protective(changes: &[Change]) -> bool {
    !changes.is_empty() && changes.iter().all(Change::is_protective)
}

impl Reserve {
    /// The reserve of `dir`, written now if it is missing or short. A
    /// partition without the room leaves it spent (and says so in the
    /// storage health) rather than refuse to start: the lock still opens.
    pub(crate) fn keep(dir: &Path, bytes: u64) -> Reserve {
        let mut r = Reserve {
            path: dir.join(RESERVE_FILE),
            bytes,
            held: false,
        };
        if bytes == 0 {
            return r;
        }
        match fs::metadata(&r.path) {
            Ok(m) if m.len() >= bytes => r.held = true,
            _ => r.write_back(),
        }
        r
    }

    /// The reserve is spent: only protective batches are taken.
    pub(crate) fn spent(&self) -> bool {
        self.bytes > 0 && !self.held
    }

    /// Free the reserve's blocks for a protective batch that found no
    /// room; `false` if there was nothing left to free, or if the
    /// partition has room (the database's own page cap said "full": the
    /// reserve would not help).
    pub(crate) fn release(&mut self) -> bool {
        if !self.held || free_bytes(&self.path).is_some_and(|f| f >= self.bytes) {
            return false;
        }
        self.held = false;
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!("storage full: cannot delete the reserve: {e}");
                return false;
            }
        }
        if let Some(dir) = self.path.parent() {
            let _ = sync_dir(dir);
        }
        tracing::error!(
            "the state partition is full: its reserve is spent; only unlocking, lockouts and \
             revocations are stored until there is room again"
        );
        true
    }

    /// While spent: write the reserve back if the partition has twice its
    /// size free again. Returns whether the reserve is held now.
    pub(crate) fn restore_if_room(&mut self) -> bool {
        if self.spent() && free_bytes(&self.path).is_some_and(|f| f >= 2 * self.bytes) {
            self.write_back();
            if self.held {
                tracing::info!("the state partition has room again: reserve restored");
            }
        }
        !self.spent()
    }

    /// Write the reserve through a temporary name, so a power cut never
    /// leaves a short one that looks whole.
    fn write_back(&mut self) {
        let tmp = self.path.with_extension("tmp");
        let written = (|| -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let chunk = vec![0u8; 64 * 1024];
            let mut left = self.bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                f.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                sync_dir(dir)?;
            }
            Ok(())
        })();
        match written {
            Ok(()) => self.held = true,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                tracing::warn!(
                    "cannot keep the {} KiB storage reserve ({e}); the partition is full",
                    self.bytes / 1024
                );
            }
        }
    }
}

/// Free bytes for an unprivileged writer on the file system of `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path.parent()?;
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    // u32 or u64 by target (32-bit SoCs): widen either way.
    #[allow(clippy::useless_conversion)]
    let free = u64::from(s.blocks_available()) * u64::from(s.fragment_size());
    Some(free)
}

/// The reserve file's length, if it is there (tests: is it whole?).
#[cfg(test)]
fn len(dir: &Path) -> Option<u64> {
    fs::File::open(dir.join(RESERVE_FILE))
        .and_then(|f| f.metadata())
        .ok()
        .map(|m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{LockoutRecord, UserNumber};

    #[test]
    fn kept_released_and_written_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reserve::keep(dir.path(), 128 * 1024);
        assert!(!r.spent());
        assert_eq!(len(dir.path()), Some(128 * 1024));
        // A partition with room: what said "full" was the database's own
        // page cap, which the reserve's blocks would not help.
        assert!(!r.release());
        assert!(!r.spent());
        // Spent (by a full partition: `it::storage_faults`), then written
        // back once there is room.
        fs::remove_file(dir.path().join(RESERVE_FILE)).unwrap();
        r.held = false;
        assert!(r.spent());
        assert!(r.restore_if_room(), "a tempdir has room");
        assert_eq!(len(dir.path()), Some(128 * 1024));
        // A short reserve (a cut mid-write under an old version) is redone.
        fs::write(dir.path().join(RESERVE_FILE), b"short").unwrap();
        let r = Reserve::keep(dir.path(), 128 * 1024);
        assert!(!r.spent());
        assert_eq!(len(dir.path()), Some(128 * 1024));
    }

    #[test]
    fn only_batches_that_count_or_take_away_are_protective() {
        let attempt = Change::PutAttempt(LockoutRecord::default());
        assert!(is_protective(std::slice::from_ref(&attempt)));
        assert!(is_protective(&[
            attempt.clone(),
            Change::DeleteUser(UserNumber::new(2).unwrap())
        ]));
        assert!(!is_protective(&[]));
        assert!(!is_protective(&[
            attempt,
            Change::SetHanding(crate::core::types::Handing::LeftHand)
        ]));
    }
}
