//! JPEG snapshots kept with doorbell and alarm events (B-1.5, B-3.5).
//!
//! ```text
//!   engine ── Log(event), Snapshot(reason) ──► engine task: event appended first (id N)
//!                                               └─► Camera::snapshot_for_event(reason, Some(N))
//!                                                                 │ newest frame of the ring
//!                                                                 ▼ (blocking pool: encode + write)
//!                         <state>/snapshots/<unix-ms>-ev<N>-<reason>.jpg   (with an event)
//!                         <state>/snapshots/<unix-ms>-<seq>-<reason>.jpg   (without)
//!                         oldest files removed beyond `max_files`
//! ```
//!
//! The time comes first so that name order is age order (pruning relies
//! on it); [`SnapshotStore::for_event`] finds the picture of event N.
//!
//! Files are written to a temporary name and renamed, so a reader never
//! sees half a JPEG. The directory is created `0700`: snapshots are
//! pictures of people at the door.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::board::{Camera, DeviceError};
use crate::core::action::SnapshotReason;
use crate::core::AlarmKind;

use crate::board::frames::{Frame, FrameError, FrameRing};

/// Snapshots kept by default before the oldest are removed.
pub const DEFAULT_MAX_SNAPSHOTS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the camera has not delivered a frame yet; check that it is connected and streaming")]
    NoFrame,
    #[error("snapshot frame: {0}")]
    Frame(#[from] FrameError),
    #[error("writing snapshot {path}: {source}; check that the state directory is writable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A directory of at most `max_files` snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    max_files: usize,
}

/// The short name of a reason used in file names.
pub fn reason_tag(reason: SnapshotReason) -> &'static str {
    match reason {
        SnapshotReason::Doorbell => "doorbell",
        SnapshotReason::Alarm(AlarmKind::Tamper) => "alarm-tamper",
        SnapshotReason::Alarm(AlarmKind::Lockout) => "alarm-lockout",
        SnapshotReason::Alarm(AlarmKind::Duress) => "alarm-duress",
        SnapshotReason::Alarm(AlarmKind::LowBattery) => "alarm-low-battery",
        SnapshotReason::Alarm(AlarmKind::Jam) => "alarm-jam",
        SnapshotReason::Alarm(AlarmKind::ModuleSwap) => "alarm-module-swap",
    }
}

impl SnapshotStore {
    /// Snapshots under `<state_dir>/snapshots`.
    pub fn in_state_dir(state_dir: &Path, max_files: usize) -> Self {
        SnapshotStore {
            dir: state_dir.join("snapshots"),
            max_files: max_files.max(1),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write `frame` as a JPEG named after the time, the event it belongs
    /// to (else the frame's sequence number) and the reason, then prune
    /// the oldest files beyond the limit.
    pub fn save(
        &self,
        frame: &Frame,
        reason: SnapshotReason,
        event: Option<u64>,
    ) -> Result<PathBuf, SnapshotError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SnapshotError::Io { path, source }
        };
        create_private_dir(&self.dir).map_err(io(&self.dir))?;
        let jpeg = frame.jpeg()?;
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        // Zero-padded so lexical order is time order (pruning relies on it).
        let name = match event {
            Some(id) => format!("{ms:015}-ev{id:012}-{}.jpg", reason_tag(reason)),
            None => format!("{ms:015}-{:010}-{}.jpg", frame.seq, reason_tag(reason)),
        };
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, &jpeg).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.prune().map_err(io(&self.dir))?;
        Ok(path)
    }

    /// The snapshot files, oldest first.
    pub fn list(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(e) => return Err(e),
        };
        for entry in rd {
            let p = entry?.path();
            let is_snapshot = p.extension().is_some_and(|e| e == "jpg")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'));
            if is_snapshot {
                files.push(p);
            }
        }
        files.sort();
        Ok(files)
    }

    /// The snapshot stored with event `id`, if it is still kept.
    pub fn for_event(&self, id: u64) -> std::io::Result<Option<PathBuf>> {
        let tag = format!("-ev{id:012}-");
        Ok(self.list()?.into_iter().find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(&tag))
        }))
    }

    fn prune(&self) -> std::io::Result<()> {
        let files = self.list()?;
        let excess = files.len().saturating_sub(self.max_files);
        for old in &files[..excess] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A snapshot that is on disk now (for whoever publishes them, e.g. the
/// MQTT camera entity).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSaved {
    pub reason: SnapshotReason,
    pub event: Option<u64>,
    pub path: PathBuf,
}

/// The board's [`Camera`] over a frame ring: takes the newest frame and
/// stores it on the blocking pool, so `snapshot` returns at once. One
/// snapshot is written at a time; one asked for while another is being
/// written is skipped (and logged), bounding the work a burst of doorbell
/// presses can cause.
pub struct RingCamera {
    ring: FrameRing,
    store: SnapshotStore,
    runtime: tokio::runtime::Handle,
    busy: Arc<AtomicBool>,
    saved: tokio::sync::broadcast::Sender<SnapshotSaved>,
}

impl std::fmt::Debug for RingCamera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingCamera").finish_non_exhaustive()
    }
}

impl RingCamera {
    /// Must be called inside a tokio runtime (the daemon's).
    pub fn new(ring: FrameRing, store: SnapshotStore) -> Self {
        RingCamera {
            ring,
            store,
            runtime: tokio::runtime::Handle::current(),
            busy: Arc::new(AtomicBool::new(false)),
            // Subscribers want the newest picture; a slow one skips some.
            saved: tokio::sync::broadcast::channel(4).0,
        }
    }

    /// Hears of every snapshot once it is stored.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<SnapshotSaved> {
        self.saved.subscribe()
    }

    /// The sender behind [`Self::subscribe`], for owners that outlive the
    /// camera's move into the board.
    pub fn saved_sender(&self) -> tokio::sync::broadcast::Sender<SnapshotSaved> {
        self.saved.clone()
    }
}

impl Camera for RingCamera {
    fn snapshot(&mut self, reason: SnapshotReason) -> Result<(), DeviceError> {
        self.snapshot_for_event(reason, None)
    }

    fn snapshot_for_event(
        &mut self,
        reason: SnapshotReason,
        event: Option<u64>,
    ) -> Result<(), DeviceError> {
        let frame = self.ring.latest().ok_or_else(|| DeviceError::Unavailable {
            device: "camera",
            detail: SnapshotError::NoFrame.to_string(),
        })?;
        if self.busy.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                ?reason,
                "snapshot skipped: the previous one is still being written"
            );
            return Ok(());
        }
        let store = self.store.clone();
        let busy = self.busy.clone();
        let saved = self.saved.clone();
        self.runtime.spawn_blocking(move || {
            match store.save(&frame, reason, event) {
                Ok(path) => {
                    tracing::info!(path = %path.display(), ?reason, ?event, "snapshot stored");
                    // No subscriber is fine: nobody publishes snapshots.
                    let _ = saved.send(SnapshotSaved {
                        reason,
                        event,
                        path,
                    });
                }
                Err(e) => tracing::error!(?reason, "snapshot not stored: {e}"),
            }
            busy.store(false, Ordering::SeqCst);
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::frames::PixelFormat;

    #[test]
    fn store_writes_jpegs_and_keeps_at_most_max() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SnapshotStore::in_state_dir(dir.path(), 3);
        let ring = FrameRing::new();
        for _ in 0..5 {
            ring.publish(4, 2, PixelFormat::Rgb, vec![90; 4 * 2 * 3]);
            let f = ring.latest().expect("frame");
            let p = store
                .save(&f, SnapshotReason::Doorbell, None)
                .expect("saved");
            let bytes = std::fs::read(&p).expect("read");
            assert_eq!(&bytes[..2], &[0xFF, 0xD8], "a JPEG");
        }
        let files = store.list().expect("list");
        assert_eq!(files.len(), 3);
        // The newest three frames (seq 3, 4, 5) are the ones kept.
        let last = files[2].file_name().and_then(|n| n.to_str()).expect("name");
        assert!(last.contains("-0000000005-doorbell"), "{last}");
    }

    #[test]
    fn snapshot_carries_its_event_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SnapshotStore::in_state_dir(dir.path(), 10);
        let ring = FrameRing::new();
        ring.publish(4, 2, PixelFormat::Rgb, vec![90; 4 * 2 * 3]);
        let f = ring.latest().expect("frame");
        let p = store
            .save(&f, SnapshotReason::Alarm(AlarmKind::Tamper), Some(42))
            .expect("saved");
        let name = p.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(name.ends_with("-ev000000000042-alarm-tamper.jpg"), "{name}");
        assert_eq!(store.for_event(42).expect("list"), Some(p));
        assert_eq!(store.for_event(4).expect("list"), None);
    }
}
