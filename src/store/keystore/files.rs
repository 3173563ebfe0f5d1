//! Crash-safe replacement and destruction of a key file in the state
//! directory, for every backend (the plain `device.key` and the sealed
//! `device-key.cred` alike).
//!
//! ```text
//!   replace(NAME, blob):   NAME.new written + fsynced ──► NAME ─rename─► NAME.wipe
//!                          ──► NAME.new ─rename─► NAME ──► NAME.wipe zeroed, fsynced, unlinked
//!   retire(NAME):          NAME ─rename─► NAME.wipe ──► zeroed, fsynced, unlinked
//!
//!   recover(NAME), at every start, before NAME is read:
//!     NAME.wipe present ─► (NAME missing and NAME.new present: rename NAME.new → NAME)
//!                          then zero and unlink NAME.wipe: it is always garbage
//!     NAME.new alone    ─► unlink it: a write that never got promoted
//! ```
//!
//! Every rename and unlink is followed by an fsync of the directory, so a
//! power cut leaves one of the states above, and at any of them either
//! `NAME` holds a whole key or `NAME.new` does and `recover` promotes it.
//! A `.wipe` file is never read again: it is retired on purpose, and only
//! once its successor is durable.
//!
//! Overwriting with zeros before unlinking keeps the old bytes out of the
//! filesystem's free blocks on a plain block device. On raw NAND behind a
//! flash translation layer (eMMC, SD) the old pages may survive until the
//! controller reuses them: the README says so.
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The points between the steps of [`replace`] and [`retire`]: a test hook
/// may stop there (the process "dies" with the files as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `NAME.new` is written and fsynced.
    Written,
    /// The old `NAME` is renamed to `NAME.wipe`.
    Retired,
    /// `NAME.new` is renamed to `NAME`.
    Promoted,
}

/// Called after each [`Step`]; an error abandons the operation there.
pub type Hook<'a> = &'a mut dyn FnMut(Step) -> std::io::Result<()>;

/// A hook that never interrupts.
pub fn no_hook(_: Step) -> std::io::Result<()> {
    Ok(())
}

pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

pub fn exists(path: &Path) -> std::io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Create `path` (which must not exist) with `bytes`, mode `mode` (set
/// explicitly: the unit's `UMask=0077` must not hide a credential's
/// header from the daemon), and make it durable.
pub fn write_durable(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    sync_parent(path)
}

fn rename_durable(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::rename(from, to)?;
    sync_parent(to)
}

/// Remove `path` durably; a missing file is fine.
pub fn remove_durable(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Overwrite `path` with zeros (same length), fsync, unlink, fsync the
/// directory. A missing file is fine.
pub fn wipe(path: &Path) -> std::io::Result<()> {
    let f = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut left = len;
    let mut w = &f;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        w.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    drop(f);
    remove_durable(path)
}

/// Replace the file at `path` by `blob`, crash-safely (see the module doc).
/// `path` need not exist (first creation goes the same way).
pub fn replace(path: &Path, blob: &[u8], mode: u32, hook: Hook<'_>) -> std::io::Result<()> {
    let new = sibling(path, ".new");
    let old = sibling(path, ".wipe");
    remove_durable(&new)?;
    write_durable(&new, blob, mode)?;
    hook(Step::Written)?;
    if exists(path)? {
        rename_durable(path, &old)?;
        hook(Step::Retired)?;
    }
    rename_durable(&new, path)?;
    hook(Step::Promoted)?;
    wipe(&old)
}

/// Take `path` out of service for good: rename it to `.wipe` (so an
/// interrupted wipe is finished by [`recover`], never undone), then wipe.
pub fn retire(path: &Path, hook: Hook<'_>) -> std::io::Result<()> {
    let old = sibling(path, ".wipe");
    if exists(path)? {
        rename_durable(path, &old)?;
        hook(Step::Retired)?;
    }
    wipe(&old)
}

/// Finish or undo whatever [`replace`] or [`retire`] left half done.
/// Returns true when it changed anything.
pub fn recover(path: &Path) -> std::io::Result<bool> {
    let new = sibling(path, ".new");
    let old = sibling(path, ".wipe");
    if exists(&old)? {
        if !exists(path)? && exists(&new)? {
            rename_durable(&new, path)?;
        }
        wipe(&old)?;
        return Ok(true);
    }
    if exists(&new)? {
        remove_durable(&new)?;
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interrupted_at(stop: Step) -> impl FnMut(Step) -> std::io::Result<()> {
        move |s| {
            if s == stop {
                Err(std::io::Error::other("power cut (test)"))
            } else {
                Ok(())
            }
        }
    }

    /// After an interruption at any step, `recover` leaves exactly one
    /// whole key: the old one before the promotion, the new one after it,
    /// and no `.new` or `.wipe` file.
    #[test]
    fn replace_interrupted_at_every_step_recovers_to_one_whole_key() {
        for (stop, expect_new) in [
            (Step::Written, false),
            (Step::Retired, true),
            (Step::Promoted, true),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let key = dir.path().join("device.key");
            fs::write(&key, [1u8; 32]).unwrap();
            let r = replace(&key, &[2u8; 32], 0o600, &mut interrupted_at(stop));
            assert!(r.is_err(), "{stop:?}");
            recover(&key).unwrap();
            let want = if expect_new { [2u8; 32] } else { [1u8; 32] };
            assert_eq!(fs::read(&key).unwrap(), want, "{stop:?}");
            assert!(!sibling(&key, ".new").exists(), "{stop:?}");
            assert!(!sibling(&key, ".wipe").exists(), "{stop:?}");
            // Recovery is idempotent.
            assert!(!recover(&key).unwrap());
        }
    }

    #[test]
    fn retire_interrupted_is_finished_never_undone() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("device.key");
        fs::write(&key, [7u8; 32]).unwrap();
        assert!(retire(&key, &mut interrupted_at(Step::Retired)).is_err());
        assert!(!key.exists());
        assert!(sibling(&key, ".wipe").exists());
        assert!(recover(&key).unwrap());
        assert!(!key.exists());
        assert!(!sibling(&key, ".wipe").exists());
    }

    #[test]
    fn wipe_zeroes_before_unlinking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        fs::write(&p, [9u8; 40]).unwrap();
        // Keep a second link to watch the inode's bytes after the unlink.
        let watch = dir.path().join("watch");
        fs::hard_link(&p, &watch).unwrap();
        wipe(&p).unwrap();
        assert!(!p.exists());
        assert_eq!(fs::read(&watch).unwrap(), vec![0u8; 40]);
    }
}
