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
use std::sync::{Arc, Mutex};
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
        SnapshotReason::Alarm(AlarmKind::DoorAjar) => "alarm-door-ajar",
        SnapshotReason::Alarm(AlarmKind::DoorForcedOpen) => "alarm-door-forced-open",
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
/// snapshot is written at a time, and at most one more waits behind it
/// (taken from the newest frame once the first is stored), which bounds
/// the work a burst of doorbell presses can cause without losing the
/// picture of an alarm that follows a doorbell press (a tamper alarm's
/// picture used to be dropped while the doorbell's was being written).
/// A waiting alarm picture is never replaced by a doorbell one.
pub struct RingCamera {
    ring: FrameRing,
    store: SnapshotStore,
    runtime: tokio::runtime::Handle,
    writer: Arc<Mutex<Writer>>,
    saved: tokio::sync::broadcast::Sender<SnapshotSaved>,
}

/// Whether a snapshot is being written, and the one asked for meanwhile.
#[derive(Debug, Default)]
struct Writer {
    busy: bool,
    next: Option<(SnapshotReason, Option<u64>)>,
}

impl Writer {
    /// Ask for a snapshot: `true` when the caller is to write it now,
    /// `false` when it waits behind the one being written.
    fn ask(&mut self, reason: SnapshotReason, event: Option<u64>) -> bool {
        if !self.busy {
            self.busy = true;
            return true;
        }
        let keeps_alarm = matches!(self.next, Some((SnapshotReason::Alarm(_), _)))
            && !matches!(reason, SnapshotReason::Alarm(_));
        if !keeps_alarm {
            if let Some((dropped, _)) = self.next.replace((reason, event)) {
                tracing::warn!(?dropped, "snapshot skipped: a newer one was asked for");
            }
        } else {
            tracing::warn!(?reason, "snapshot skipped: an alarm picture is waiting");
        }
        false
    }

    /// One written: the next to write, or none (and the writer is free).
    fn done(&mut self) -> Option<(SnapshotReason, Option<u64>)> {
        let next = self.next.take();
        self.busy = next.is_some();
        next
    }
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
            writer: Arc::new(Mutex::new(Writer::default())),
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
        if !lock(&self.writer).ask(reason, event) {
            return Ok(());
        }
        let store = self.store.clone();
        let ring = self.ring.clone();
        let writer = self.writer.clone();
        let saved = self.saved.clone();
        self.runtime.spawn_blocking(move || {
            let mut job = Some((frame, reason, event));
            while let Some((frame, reason, event)) = job.take() {
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
                // The ring always has a frame once it had one.
                job = lock(&writer)
                    .done()
                    .and_then(|(r, e)| ring.latest().map(|f| (f, r, e)));
            }
        });
        Ok(())
    }
}

fn lock(writer: &Mutex<Writer>) -> std::sync::MutexGuard<'_, Writer> {
    writer.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::frames::PixelFormat;

    /// A picture asked for while another is written waits and is written
    /// next (it used to be dropped: a tamper alarm right after a doorbell
    /// press had no picture); a burst keeps one waiting, an alarm's.
    #[test]
    fn one_picture_waits_behind_the_one_being_written() {
        let tamper = SnapshotReason::Alarm(AlarmKind::Tamper);
        let mut w = Writer::default();
        assert!(w.ask(SnapshotReason::Doorbell, None), "free: write now");
        assert!(!w.ask(tamper, Some(7)), "busy: waits");
        assert!(!w.ask(SnapshotReason::Doorbell, None), "busy");
        assert_eq!(w.done(), Some((tamper, Some(7))), "the alarm is kept");
        assert!(
            !w.ask(SnapshotReason::Doorbell, Some(8)),
            "still busy with it"
        );
        assert!(!w.ask(SnapshotReason::Doorbell, Some(9)), "newest replaces");
        assert_eq!(w.done(), Some((SnapshotReason::Doorbell, Some(9))));
        assert_eq!(w.done(), None);
        assert!(w.ask(SnapshotReason::Doorbell, None), "free again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_alarm_right_after_a_doorbell_gets_its_picture() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SnapshotStore::in_state_dir(dir.path(), 10);
        let ring = FrameRing::new();
        ring.publish(64, 48, PixelFormat::Rgb, vec![90; 64 * 48 * 3]);
        let mut camera = RingCamera::new(ring, store.clone());
        let mut saved = camera.subscribe();
        camera
            .snapshot_for_event(SnapshotReason::Doorbell, Some(1))
            .expect("doorbell");
        camera
            .snapshot_for_event(SnapshotReason::Alarm(AlarmKind::Tamper), Some(2))
            .expect("tamper");
        let mut events = Vec::new();
        for _ in 0..2 {
            events.push(saved.recv().await.expect("a stored picture").event);
        }
        assert_eq!(events, [Some(1), Some(2)]);
        assert!(store.for_event(2).expect("list").is_some());
    }

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
