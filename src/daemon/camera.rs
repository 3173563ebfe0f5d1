//! The outdoor camera and everything that reads it: one capture, one
//! [`FrameRing`], several consumers (issue 7, B-3.5, B-6.2, B-9.2).
//!
//! ```text
//!  sim: SimCamera (picture of the person SimControl::face put at the door)  ┐
//!  linux: V4L2 (board file [camera])                                        ┴─► FrameRing
//!      ├─► RingCamera ── Board.camera: doorbell/alarm JPEGs, <state>/snapshots/…-ev<N>-….jpg
//!      ├─► FaceService ── Board.face ([face] enabled): recognise + enrol on the real pipeline
//!      │       ▲ templates: watch, refreshed by the engine task after credential changes
//!      ├─► MotionDetector ([face] motion_trigger) ── Input::Touch ──► engine ── RecogniseFace
//!      └─► VideoServer ([video] enabled): HTTP MJPEG, token, battery floor
//! ```
//!
//! Bring-up is in two steps because the board is handed to the engine task
//! before the stream can be served: [`start`] (right after the board is
//! built) opens the camera and installs the board's camera and face source;
//! [`CameraRig::serve`] (once the engine publishes its status) starts the
//! motion trigger and the video server, and keeps the capture running
//! until shutdown.
//!
//! The camera is only opened when `[video]` or `[face]` asks for it; without
//! either, the board keeps its own camera (the sim board's snapshot counter,
//! or none on Linux) and nothing captures frames.
use std::path::Path;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::engine_task::{CredentialsHook, Published};
use super::DaemonError;
use crate::board::sim::SimControl;
use crate::board::{Board, Camera, DeviceError, InputSender};
use crate::config::{BoardKind, Config};
use crate::core::action::SnapshotReason;
use crate::core::Input;
use crate::store::Store;
use crate::video::{FrameRing, RingCamera, SnapshotStore};

/// Size of the simulated camera's frames (a V4L2 camera's come from the
/// board file).
pub const SIM_FRAME: (u32, u32) = (640, 480);

/// The running camera, between [`start`] and [`CameraRig::serve`].
pub struct CameraRig {
    ring: FrameRing,
    /// The capture source; frames stop when it is dropped.
    capture: Box<dyn std::any::Any + Send>,
    /// Taken by the daemon for the engine task.
    credentials_hook: Option<CredentialsHook>,
    motion_trigger: bool,
}

impl std::fmt::Debug for CameraRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraRig")
            .field("motion_trigger", &self.motion_trigger)
            .finish_non_exhaustive()
    }
}

fn face_enabled(config: &Config) -> bool {
    #[cfg(feature = "face")]
    return config.face.enabled;
    #[cfg(not(feature = "face"))]
    {
        let _ = config;
        false
    }
}

fn camera_err(e: &dyn std::fmt::Display) -> DaemonError {
    DaemonError::Video(format!("camera: {e}"))
}

/// Open the camera when `[video]` or `[face]` needs it and install its
/// consumers in `board`: snapshots always, the face service when `[face]`
/// is enabled. `None` when no camera is wanted. Must run inside the
/// daemon's runtime.
pub fn start(
    config: &Config,
    state_dir: &Path,
    store: &Store,
    board: &mut Board,
    sim: Option<&SimControl>,
    inputs: &InputSender,
) -> Result<Option<CameraRig>, DaemonError> {
    let face = face_enabled(config);
    if !(config.video.enabled || face) {
        return Ok(None);
    }
    let ring = FrameRing::new();
    let capture: Box<dyn std::any::Any + Send> = match config.board {
        BoardKind::Sim => {
            use crate::board::sim::camera::{SimCamera, SimCameraConfig};
            let (w, h) = SIM_FRAME;
            let cfg = match sim_people_dir(config) {
                Some(dir) => SimCameraConfig::from_dir(dir, w, h).map_err(|e| camera_err(&e))?,
                None => SimCameraConfig::new(w, h),
            };
            let camera = SimCamera::start(&cfg, ring.clone()).map_err(|e| camera_err(&e))?;
            if face {
                // With the real pipeline, "person N at the door" is person
                // N's picture in front of the camera, not a simulated module.
                if let Some(sim) = sim {
                    sim.attach_camera(camera.control());
                }
            }
            Box::new(camera)
        }
        #[cfg(feature = "board-linux")]
        BoardKind::Linux => {
            let path = config.board_file.as_ref().ok_or(DaemonError::NoBoardFile)?;
            let board_cfg =
                crate::board::linux::config::BoardConfig::load(path).map_err(|e| camera_err(&e))?;
            Box::new(
                crate::board::linux::camera::V4l2Camera::start(&board_cfg.camera, ring.clone())
                    .map_err(|e| camera_err(&e))?,
            )
        }
        other => return Err(DaemonError::BoardUnavailable(other.name())),
    };

    // Snapshots from the shared ring. The sim board also keeps counting
    // them for its front panel and tests.
    let snapshots = RingCamera::new(
        ring.clone(),
        SnapshotStore::in_state_dir(state_dir, config.video.max_snapshots),
    );
    let old = std::mem::replace(&mut board.camera, Box::new(NoCamera));
    board.camera = match config.board {
        BoardKind::Sim => Box::new(Both(old, snapshots)),
        _ => Box::new(snapshots),
    };

    let (credentials_hook, motion_trigger) = if face {
        install_face(config, store, board, &ring, inputs)?
    } else {
        (None, false)
    };
    Ok(Some(CameraRig {
        ring,
        capture,
        credentials_hook,
        motion_trigger,
    }))
}

#[cfg(feature = "face")]
fn sim_people_dir(config: &Config) -> Option<&Path> {
    config.face.sim_people_dir.as_deref()
}

#[cfg(not(feature = "face"))]
fn sim_people_dir(_config: &Config) -> Option<&Path> {
    None
}

/// The real face pipeline as the board's face source, its templates from
/// the store now and from the engine task after every credential change.
#[cfg(feature = "face")]
fn install_face(
    config: &Config,
    store: &Store,
    board: &mut Board,
    ring: &FrameRing,
    inputs: &InputSender,
) -> Result<(Option<CredentialsHook>, bool), DaemonError> {
    use crate::board::face_service::{templates_from_credentials, FaceService, FaceServiceConfig};
    use std::time::Duration;
    let f = &config.face;
    let persisted = store.load()?;
    let (templates, templates_rx) =
        watch::channel(templates_from_credentials(&persisted.credentials));
    let service = FaceService::spawn(
        FaceServiceConfig {
            models_dir: f.models_dir.clone(),
            threshold: f.threshold,
            attempt_budget: Duration::from_millis(f.attempt_budget_ms),
            enrol_timeout: Duration::from_secs(f.enrol_timeout_s),
        },
        ring.clone(),
        templates_rx,
        crate::board::OrderedSender::spawn(inputs.clone()),
    );
    board.face = Box::new(service);
    tracing::info!(
        models = %f.models_dir.display(),
        threshold = f.threshold,
        enrolled = templates.borrow().len(),
        "face recognition on the camera (liveness: none, a photo may pass)"
    );
    let hook: CredentialsHook = Box::new(move |creds| {
        templates.send_replace(templates_from_credentials(creds));
    });
    Ok((Some(hook), f.motion_trigger))
}

#[cfg(not(feature = "face"))]
fn install_face(
    _config: &Config,
    _store: &Store,
    _board: &mut Board,
    _ring: &FrameRing,
    _inputs: &InputSender,
) -> Result<(Option<CredentialsHook>, bool), DaemonError> {
    Ok((None, false))
}

impl CameraRig {
    /// The hook the engine task calls with the stored credentials after
    /// each change to them (`None` without face recognition).
    pub fn take_credentials_hook(&mut self) -> Option<CredentialsHook> {
        self.credentials_hook.take()
    }

    /// The frames every consumer reads.
    pub fn ring(&self) -> &FrameRing {
        &self.ring
    }

    /// Start the motion trigger and the video stream (when configured)
    /// and keep the capture running until `shutdown`.
    pub async fn serve(
        self,
        config: &Config,
        published: watch::Receiver<Published>,
        inputs: InputSender,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, DaemonError> {
        use crate::video::{battery_bridge, VideoServer};
        let server = if config.video.enabled {
            let video_err = |e: &dyn std::fmt::Display| DaemonError::Video(e.to_string());
            let stream = config.video.stream_config().map_err(|e| video_err(&e))?;
            let battery = battery_bridge(published, |p: &Published| p.engine.battery_percent);
            let server = VideoServer::bind(&stream, self.ring.clone(), battery)
                .await
                .map_err(|e| video_err(&e))?;
            if let Ok(addr) = server.local_addr() {
                tracing::info!(%addr, "video stream serving /stream.mjpg and /snapshot.jpg");
            }
            Some(server)
        } else {
            None
        };
        let motion = self.motion_trigger.then(|| {
            let ring = self.ring.clone();
            tokio::spawn(async move {
                let detector = primed_detector(&ring).await;
                tracing::info!("motion trigger watching the camera");
                detector
                    .run(ring, move || {
                        // The same input as a keypad touch: the engine starts
                        // one recognition when it is idle and someone is
                        // enrolled.
                        if !inputs.try_send(Input::Touch) {
                            tracing::warn!("motion trigger dropped: the engine's queue is full");
                        }
                    })
                    .await
            })
        });
        let capture = self.capture;
        Ok(tokio::spawn(async move {
            // Held until shutdown: dropping it stops the frames.
            let _capture = capture;
            match server {
                Some(server) => tokio::select! {
                    _ = server.run() => {}
                    _ = shutdown.cancelled() => {}
                },
                None => shutdown.cancelled().await,
            }
            if let Some(m) = motion {
                m.abort();
            }
        }))
    }
}

/// A motion detector that has already seen the scene as it is now.
///
/// Why: the detector compares each sample with the previous one, so
/// without a first sample someone who steps in front of the camera before
/// it took one would be its *first* picture and never count as motion.
/// Waiting for one frame here also makes "motion trigger watching the
/// camera" in the log mean what it says.
async fn primed_detector(ring: &FrameRing) -> crate::video::motion::MotionDetector {
    use crate::video::motion::{thumbnail, MotionConfig, MotionDetector};
    let cfg = MotionConfig::default();
    let mut detector = MotionDetector::new(cfg);
    let Some(frame) = ring.subscribe().next().await else {
        return detector;
    };
    let (w, h) = cfg.grid;
    match tokio::task::spawn_blocking(move || frame.to_rgb().map(|rgb| thumbnail(&rgb, w, h))).await
    {
        Ok(Ok(thumb)) => {
            // The first sample never triggers: there is nothing to compare.
            let _ = detector.offer(thumb);
        }
        Ok(Err(e)) => tracing::warn!("motion: first frame skipped: {e}"),
        Err(e) => tracing::warn!("motion: worker failed: {e}"),
    }
    detector
}

/// Placeholder while the board's camera is being swapped.
struct NoCamera;

impl Camera for NoCamera {
    fn snapshot(&mut self, _reason: SnapshotReason) -> Result<(), DeviceError> {
        Err(DeviceError::Unavailable {
            device: "camera",
            detail: "not installed".into(),
        })
    }
}

/// Two cameras told the same thing (the sim's counter and the stored
/// JPEGs); the first failure is returned after both were asked.
struct Both<A, B>(A, B);

impl<A: Camera, B: Camera> Camera for Both<A, B> {
    fn snapshot(&mut self, reason: SnapshotReason) -> Result<(), DeviceError> {
        self.snapshot_for_event(reason, None)
    }

    fn snapshot_for_event(
        &mut self,
        reason: SnapshotReason,
        event: Option<u64>,
    ) -> Result<(), DeviceError> {
        let a = self.0.snapshot_for_event(reason, event);
        let b = self.1.snapshot_for_event(reason, event);
        a.and(b)
    }
}

impl Camera for Box<dyn Camera> {
    fn snapshot(&mut self, reason: SnapshotReason) -> Result<(), DeviceError> {
        (**self).snapshot(reason)
    }

    fn snapshot_for_event(
        &mut self,
        reason: SnapshotReason,
        event: Option<u64>,
    ) -> Result<(), DeviceError> {
        (**self).snapshot_for_event(reason, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count(u32, Option<u64>);
    impl Camera for Count {
        fn snapshot(&mut self, _r: SnapshotReason) -> Result<(), DeviceError> {
            self.0 += 1;
            Ok(())
        }
        fn snapshot_for_event(
            &mut self,
            r: SnapshotReason,
            event: Option<u64>,
        ) -> Result<(), DeviceError> {
            self.1 = event;
            self.snapshot(r)
        }
    }

    #[test]
    fn both_cameras_are_asked_even_when_the_first_fails() {
        let mut both = Both(NoCamera, Count(0, None));
        assert!(both
            .snapshot_for_event(SnapshotReason::Doorbell, Some(7))
            .is_err());
        assert_eq!((both.1 .0, both.1 .1), (1, Some(7)));
    }

    /// The first change after priming is motion; without priming the
    /// same picture would only have been the detector's first sample.
    #[tokio::test]
    async fn primed_detector_sees_the_first_arrival_as_motion() {
        use crate::video::motion::{thumbnail, MotionConfig};
        use crate::video::PixelFormat;
        use image::{Rgb, RgbImage};
        let ring = FrameRing::new();
        let (w, h) = (64u32, 48u32);
        let empty = RgbImage::from_pixel(w, h, Rgb([200, 200, 200]));
        let priming = tokio::spawn({
            let ring = ring.clone();
            async move { primed_detector(&ring).await }
        });
        // Publish until the detector has taken its frame (it subscribes
        // after being spawned, so one publish may come too early).
        let mut detector = loop {
            ring.publish(w, h, PixelFormat::Rgb, empty.as_raw().clone());
            tokio::task::yield_now().await;
            if priming.is_finished() {
                break priming.await.expect("priming task");
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        let mut arrival = empty.clone();
        for y in 8..40 {
            for x in 16..48 {
                arrival.put_pixel(x, y, Rgb([20, 20, 20]));
            }
        }
        let (gw, gh) = MotionConfig::default().grid;
        assert!(detector.offer(thumbnail(&arrival, gw, gh)));
    }

    #[test]
    fn no_camera_is_wanted_by_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (tx, _rx) = tokio::sync::mpsc::channel(8);
            let inputs = InputSender::new(tx);
            let (mut board, _control) =
                crate::board::sim::build(crate::board::sim::SimConfig::default(), inputs.clone())
                    .expect("sim board");
            let (store, _key) = Store::open(dir.path(), Default::default()).expect("store");
            let rig = start(
                &Config::default(),
                dir.path(),
                &store,
                &mut board,
                None,
                &inputs,
            )
            .expect("start");
            assert!(rig.is_none());
        });
    }
}
