//! The file side of a streamed bundle ([`crate::app::bundle`]): one
//! partial file, mode 0600, in `[update] stream_dir`, written only at the
//! offset it has reached; kept for RAUC under its sha256 once whole and
//! checked, removed on any failure or abort.
//!
//! ```text
//!  begin(size, sha) ── size ≤ max, size + reserve ≤ free ──► partial.raucb (0600, empty)
//!        └─ same size and sha as the open stream ─► its offset (resume after a reconnect)
//!  chunk(offset, bytes) ── offset == written, written + len ≤ size ──► append, hash
//!  commit ── written == size, sha256 == announced ──► bundle-<sha>.raucb (fsync'd)
//!                        └─ otherwise ─► partial removed
//! ```
//!
//! Room: a bundle never eats the store's reserve (`store::reserve`): the
//! partition must hold the whole announced size *and* the reserve before
//! the first byte is written. A daemon restart forgets the open stream
//! and removes its file (the hash state is in memory): the app begins
//! again from 0.
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::app::bundle::{stream_source, BundleStore, StreamError, STREAM_SOURCE_PREFIX};

const PARTIAL: &str = "partial.raucb";

/// The open stream.
struct Open {
    file: File,
    size: u64,
    sha256: [u8; 32],
    written: u64,
    hasher: Sha256,
}

/// Streamed bundles in one directory.
pub struct BundleStream {
    dir: PathBuf,
    max_bytes: u64,
    /// The store's reserve, kept free beside the bundle.
    reserve_bytes: u64,
    open: Mutex<Option<Open>>,
}

impl std::fmt::Debug for BundleStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleStream")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl BundleStream {
    /// The stream directory (created 0700 if missing), emptied of what an earlier
    /// run left: a partial file cannot be resumed without its hash state,
    /// and a kept bundle is only kept for the update that asked for it
    /// (a waiting one after a restart inspects it again: see
    /// [`BundleStream::keep_only`]).
    pub fn open(dir: &Path, max_bytes: u64, reserve_bytes: u64) -> std::io::Result<BundleStream> {
        // Made 0700 when latchd makes it; an existing one (a shared
        // `stream_dir`) keeps its mode: the files are 0600 either way.
        if !dir.is_dir() {
            std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
                .create(dir)?;
        }
        let _ = fs::remove_file(dir.join(PARTIAL));
        Ok(BundleStream {
            dir: dir.to_path_buf(),
            max_bytes,
            reserve_bytes,
            open: Mutex::new(None),
        })
    }

    /// The file a `stream:<sha256>` source names, if the source is one.
    pub fn resolve(dir: &Path, source: &str) -> Option<PathBuf> {
        let hex = source.strip_prefix(STREAM_SOURCE_PREFIX)?;
        let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| dir.join(format!("bundle-{hex}.raucb")))
    }

    /// Remove every streamed file of this stream.
    pub fn clear(&self) {
        *self.lock() = None;
        BundleStream::remove_files(&self.dir);
    }

    /// Remove the streamed files in `dir` (factory reset): the partial
    /// file and kept bundles only — a `stream_dir` set to a shared
    /// directory loses nothing else.
    pub fn remove_files(dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if is_ours(&e.file_name().to_string_lossy()) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        // A panic mid-write leaves a stream the next begin replaces.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn partial(&self) -> PathBuf {
        self.dir.join(PARTIAL)
    }

    fn fail(&self, open: &mut Option<Open>, e: StreamError) -> StreamError {
        *open = None;
        let _ = fs::remove_file(self.partial());
        e
    }
}

/// A file this module writes: the partial one or a kept bundle.
fn is_ours(name: &str) -> bool {
    name == PARTIAL || (name.starts_with("bundle-") && name.ends_with(".raucb"))
}

fn io(e: std::io::Error) -> StreamError {
    StreamError::Io(e.to_string())
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(clippy::useless_conversion)]
    let free = u64::from(s.blocks_available()) * u64::from(s.fragment_size());
    Some(free)
}

impl BundleStore for BundleStream {
    fn begin(&self, size: u64, sha256: [u8; 32]) -> Result<u64, StreamError> {
        let mut open = self.lock();
        if let Some(o) = open.as_ref() {
            if o.size == size && o.sha256 == sha256 {
                return Ok(o.written);
            }
            return Err(StreamError::Busy);
        }
        if size == 0 {
            return Err(StreamError::Empty);
        }
        if size > self.max_bytes {
            return Err(StreamError::TooBig {
                size,
                max: self.max_bytes,
            });
        }
        // Unknown free space fails closed.
        let free = free_bytes(&self.dir).unwrap_or(0);
        if size.saturating_add(self.reserve_bytes) > free {
            return Err(StreamError::NoRoom {
                size,
                free,
                reserve: self.reserve_bytes,
            });
        }
        let _ = fs::remove_file(self.partial());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.partial())
            .map_err(io)?;
        *open = Some(Open {
            file,
            size,
            sha256,
            written: 0,
            hasher: Sha256::new(),
        });
        Ok(0)
    }

    fn chunk(&self, offset: u64, bytes: &[u8]) -> Result<u64, StreamError> {
        let mut open = self.lock();
        let Some(o) = open.as_mut() else {
            return Err(StreamError::NotStarted);
        };
        if offset != o.written {
            // Nothing written; the app resends from where the lock is.
            return Err(StreamError::WrongOffset {
                expected: o.written,
                got: offset,
            });
        }
        let len = bytes.len() as u64;
        if o.written.saturating_add(len) > o.size {
            return Err(StreamError::PastEnd { size: o.size });
        }
        if let Err(e) = o.file.write_all(bytes) {
            // A short write leaves the file longer than `written`: start
            // over rather than resume on a file that is not what was hashed.
            return Err(self.fail(&mut open, io(e)));
        }
        o.hasher.update(bytes);
        o.written += len;
        Ok(o.written)
    }

    fn commit(&self) -> Result<String, StreamError> {
        let mut open = self.lock();
        let Some(o) = open.as_mut() else {
            return Err(StreamError::NotStarted);
        };
        if o.written != o.size {
            return Err(StreamError::Incomplete {
                have: o.written,
                size: o.size,
            });
        }
        let digest: [u8; 32] = o.hasher.clone().finalize().into();
        if digest != o.sha256 {
            return Err(self.fail(&mut open, StreamError::BadHash));
        }
        if let Err(e) = o.file.sync_all() {
            return Err(self.fail(&mut open, io(e)));
        }
        let source = stream_source(&digest);
        let Some(path) = BundleStream::resolve(&self.dir, &source) else {
            return Err(self.fail(&mut open, StreamError::BadHash));
        };
        // One kept bundle at a time: an older one nobody installed goes.
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name != PARTIAL && is_ours(&name) && e.path() != path {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        if let Err(e) = fs::rename(self.partial(), &path) {
            return Err(self.fail(&mut open, io(e)));
        }
        *open = None;
        Ok(source)
    }

    fn abort(&self) {
        let mut open = self.lock();
        *open = None;
        let _ = fs::remove_file(self.partial());
    }

    fn forget(&self, source: &str) {
        if let Some(path) = BundleStream::resolve(&self.dir, source) {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sha(b: &[u8]) -> [u8; 32] {
        Sha256::digest(b).into()
    }

    fn stream(max: u64) -> (tempfile::TempDir, BundleStream) {
        let t = tempfile::tempdir().unwrap();
        let s = BundleStream::open(&t.path().join("stream"), max, 1 << 20).unwrap();
        (t, s)
    }

    const BUNDLE: &[u8] = b"not a real bundle: latchd never reads it";

    #[test]
    fn a_bundle_streamed_in_order_is_kept_under_its_hash_with_mode_0600() {
        let (_t, s) = stream(1 << 20);
        assert_eq!(s.begin(BUNDLE.len() as u64, sha(BUNDLE)), Ok(0));
        let mode = fs::metadata(s.partial()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&s.dir).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(s.chunk(0, &BUNDLE[..10]), Ok(10));
        assert_eq!(s.chunk(10, &BUNDLE[10..]), Ok(BUNDLE.len() as u64));
        let source = s.commit().unwrap();
        assert_eq!(source, stream_source(&sha(BUNDLE)));
        let path = BundleStream::resolve(&s.dir, &source).unwrap();
        assert_eq!(fs::read(&path).unwrap(), BUNDLE);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!s.partial().exists());
    }

    #[test]
    fn a_chunk_at_another_offset_writes_nothing_and_says_the_expected_one() {
        let (_t, s) = stream(1 << 20);
        s.begin(BUNDLE.len() as u64, sha(BUNDLE)).unwrap();
        s.chunk(0, &BUNDLE[..8]).unwrap();
        for got in [0, 4, 9, 100] {
            assert_eq!(
                s.chunk(got, &BUNDLE[8..12]),
                Err(StreamError::WrongOffset { expected: 8, got })
            );
        }
        assert_eq!(fs::metadata(s.partial()).unwrap().len(), 8);
        assert_eq!(s.chunk(8, &BUNDLE[8..]), Ok(BUNDLE.len() as u64));
        assert!(s.commit().is_ok());
    }

    #[test]
    fn a_reconnect_resumes_where_the_same_bundle_stopped_and_another_is_refused() {
        let (_t, s) = stream(1 << 20);
        let (size, h) = (BUNDLE.len() as u64, sha(BUNDLE));
        s.begin(size, h).unwrap();
        s.chunk(0, &BUNDLE[..16]).unwrap();
        // The connection drops; the app begins again with the same bundle.
        assert_eq!(s.begin(size, h), Ok(16));
        // One stream at a time: another bundle waits for an abort.
        assert_eq!(s.begin(size, sha(b"other")), Err(StreamError::Busy));
        assert_eq!(s.begin(size + 1, h), Err(StreamError::Busy));
        s.chunk(16, &BUNDLE[16..]).unwrap();
        assert!(s.commit().is_ok());
        s.abort();
        assert_eq!(s.begin(5, sha(b"other")), Ok(0));
    }

    #[test]
    fn a_bundle_over_the_cap_or_past_the_room_is_refused_before_a_byte_is_written() {
        let (_t, s) = stream(64);
        assert_eq!(
            s.begin(65, sha(b"x")),
            Err(StreamError::TooBig { size: 65, max: 64 })
        );
        assert_eq!(s.begin(0, sha(b"")), Err(StreamError::Empty));
        assert!(!s.partial().exists());
        // Room: the partition's free space less the store's reserve.
        let free = free_bytes(&s.dir).unwrap();
        let (_t2, big) = stream(u64::MAX);
        let reserve = big.reserve_bytes;
        let size = free - reserve + 1;
        assert!(matches!(
            big.begin(size, sha(b"x")),
            Err(StreamError::NoRoom { .. })
        ));
        assert!(!big.partial().exists());
        // A chunk past the announced size is refused too.
        assert_eq!(s.begin(4, sha(b"abcd")), Ok(0));
        assert_eq!(s.chunk(0, b"abcde"), Err(StreamError::PastEnd { size: 4 }));
    }

    #[test]
    fn a_bad_hash_or_an_abort_removes_the_partial_file() {
        let (_t, s) = stream(1 << 20);
        s.begin(BUNDLE.len() as u64, sha(b"something else"))
            .unwrap();
        s.chunk(0, BUNDLE).unwrap();
        assert_eq!(s.commit(), Err(StreamError::BadHash));
        assert!(!s.partial().exists());
        assert_eq!(s.chunk(0, BUNDLE), Err(StreamError::NotStarted));
        // Incomplete: refused, kept (the rest may still come).
        s.begin(BUNDLE.len() as u64, sha(BUNDLE)).unwrap();
        s.chunk(0, &BUNDLE[..3]).unwrap();
        assert_eq!(
            s.commit(),
            Err(StreamError::Incomplete {
                have: 3,
                size: BUNDLE.len() as u64
            })
        );
        assert!(s.partial().exists());
        s.abort();
        assert!(!s.partial().exists());
        assert_eq!(s.commit(), Err(StreamError::NotStarted));
    }

    #[test]
    fn a_restart_or_a_clear_leaves_no_streamed_file() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("stream");
        let s = BundleStream::open(&dir, 1 << 20, 0).unwrap();
        s.begin(4, sha(b"abcd")).unwrap();
        s.chunk(0, b"ab").unwrap();
        drop(s);
        let s = BundleStream::open(&dir, 1 << 20, 0).unwrap();
        assert!(!s.partial().exists());
        assert_eq!(s.begin(4, sha(b"abcd")), Ok(0));
        s.chunk(0, b"abcd").unwrap();
        let source = s.commit().unwrap();
        fs::write(dir.join("not-ours"), b"kept").unwrap();
        s.clear();
        assert!(!BundleStream::resolve(&dir, &source).unwrap().exists());
        // Only the stream's own files go.
        assert!(dir.join("not-ours").exists());
    }

    #[test]
    fn only_a_stream_source_of_a_sha256_names_a_file() {
        let d = Path::new("/x");
        assert!(BundleStream::resolve(d, &stream_source(&[7; 32])).is_some());
        for bad in [
            "https://a/b",
            "stream:",
            "stream:../../etc/passwd",
            "stream:abc",
        ] {
            assert!(BundleStream::resolve(d, bad).is_none(), "{bad}");
        }
    }
}
