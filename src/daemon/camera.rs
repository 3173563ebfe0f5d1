//! The outdoor camera and everything that reads it: one capture, one
//! [`FrameRing`], several consumers (issue 7, B-3.5, B-6.2, B-9.2).
//!
//! ```text
//!  sim: SimCamera (picture of the person SimControl::face put at the door)  ┐
//!  linux: V4L2 (board file [camera])                                        ┴─► FrameRing
//!      ├─► RingCamera ── Board.camera: doorbell/alarm JPEGs, <state>/snapshots/…-ev<N>-….jpg
//!      ├─► FaceService ── Board.face ([face] enabled): recognise + enrol on the real pipeline
//!      │       ▲ templates: watch, refreshed by the engine task after credential changes
//!      │       ▲ [face] liveness = "ir": IR source grabbed per matched face
//!      │         (sim: SimIrCamera, `sim_ir_dir`, follows the sim camera's scene;
//!      │          linux: V4l2IrCamera, `ir_camera`, lights outputs.ir_illuminator)
//!      ├─► MotionDetector ([face] motion_trigger) ── Input::Motion ──► engine ── RecogniseFace
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
use crate::video::{FrameRing, RingCamera, SnapshotSaved, SnapshotStore};

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
    /// Every stored snapshot, for the MQTT camera entity.
    saved: tokio::sync::broadcast::Sender<SnapshotSaved>,
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

/// The liveness check the face service gets (nothing without `face`).
#[cfg(feature = "face")]
type Liveness = crate::board::face_service::LivenessSetup;
/// Without the face feature there is nothing to check.
#[cfg(not(feature = "face"))]
#[derive(Debug, Clone, Copy)]
struct Liveness;

/// `[face] liveness = "ir"` on an enabled face feature.
#[cfg(feature = "face")]
fn wants_ir(config: &Config) -> bool {
    use crate::biometrics::face::LivenessMode;
    config.face.enabled && config.face.liveness == LivenessMode::Ir
}

/// The sim board's IR pictures beside its camera. A bad IR directory
/// stops the start, as a bad people directory does: it is a developer's
/// setup error.
#[cfg(feature = "face")]
fn sim_liveness(
    config: &Config,
    camera: &crate::board::sim::camera::SimCamera,
) -> Result<Liveness, DaemonError> {
    use crate::biometrics::face::IrLiveness;
    use crate::board::face_service::LivenessSetup;
    use std::sync::Arc;
    if !wants_ir(config) {
        return Ok(LivenessSetup::Off);
    }
    // `Config::validate` has checked that the sim board has `sim_ir_dir`;
    // should that change, refusing here keeps it closed.
    let dir = config.face.sim_ir_dir.as_deref().ok_or_else(|| {
        camera_err(&"`face.liveness` = \"ir\" needs `face.sim_ir_dir` on the sim board")
    })?;
    let ir = camera.ir_camera(dir).map_err(|e| camera_err(&e))?;
    Ok(LivenessSetup::Ir {
        source: Arc::new(ir),
        check: Arc::new(IrLiveness::default()),
        name: format!("sim IR pictures in {}", dir.display()),
    })
}

#[cfg(not(feature = "face"))]
fn sim_liveness(
    _config: &Config,
    _camera: &crate::board::sim::camera::SimCamera,
) -> Result<Liveness, DaemonError> {
    Ok(Liveness)
}

/// The V4L2 IR camera and the board's IR illuminator line. One that
/// cannot be opened does not stop the lock: face unlock then refuses every
/// matched face with a fault naming the problem (fail closed) and the
/// other credentials keep working, as with a missing face model.
#[cfg(all(feature = "face", feature = "board-linux"))]
fn linux_liveness(
    config: &Config,
    board_cfg: &crate::board::linux::config::BoardConfig,
) -> Liveness {
    use crate::biometrics::face::IrLiveness;
    use crate::board::face_service::LivenessSetup;
    use crate::board::linux::gpio::GpioOutput;
    use crate::board::linux::ir_camera::V4l2IrCamera;
    use std::sync::Arc;
    if !wants_ir(config) {
        return LivenessSetup::Off;
    }
    let Some(path) = config.face.ir_camera.as_deref() else {
        return LivenessSetup::Unavailable(
            "`face.liveness` = \"ir\" needs `face.ir_camera` on this board".into(),
        );
    };
    let opened = GpioOutput::request_with(
        board_cfg.gpio_provider,
        "outputs.ir_illuminator",
        &board_cfg.outputs.ir_illuminator,
    )
    .map_err(|e| format!("IR illuminator: {e}"))
    .and_then(|led| V4l2IrCamera::open(path, Some(led)).map_err(|e| e.to_string()));
    match opened {
        Ok(ir) => {
            let (w, h, format) = ir.format();
            let name = format!("{} ({w}x{h} {format:?})", path.display());
            LivenessSetup::Ir {
                source: Arc::new(ir),
                check: Arc::new(IrLiveness::default()),
                name,
            }
        }
        // `install_face` logs it with the face feature's start-up line.
        Err(e) => LivenessSetup::Unavailable(e),
    }
}

#[cfg(all(not(feature = "face"), feature = "board-linux"))]
fn linux_liveness(
    _config: &Config,
    _board_cfg: &crate::board::linux::config::BoardConfig,
) -> Liveness {
    Liveness
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
    let (capture, liveness): (Box<dyn std::any::Any + Send>, Liveness) = match config.board {
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
            let liveness = sim_liveness(config, &camera)?;
            (Box::new(camera), liveness)
        }
        #[cfg(feature = "board-linux")]
        BoardKind::Linux => {
            let path = config.board_file.as_ref().ok_or(DaemonError::NoBoardFile)?;
            let board_cfg =
                crate::board::linux::config::BoardConfig::load(path).map_err(|e| camera_err(&e))?;
            let camera =
                crate::board::linux::camera::V4l2Camera::start(&board_cfg.camera, ring.clone())
                    .map_err(|e| camera_err(&e))?;
            (Box::new(camera), linux_liveness(config, &board_cfg))
        }
        other => return Err(DaemonError::BoardUnavailable(other.name())),
    };

    // Snapshots from the shared ring. The sim board also keeps counting
    // them for its front panel and tests.
    let snapshots = RingCamera::new(
        ring.clone(),
        SnapshotStore::in_state_dir(state_dir, config.video.max_snapshots),
    );
    let saved = snapshots.saved_sender();
    let old = std::mem::replace(&mut board.camera, Box::new(NoCamera));
    board.camera = match config.board {
        BoardKind::Sim => Box::new(Both(old, snapshots)),
        _ => Box::new(snapshots),
    };

    let (credentials_hook, motion_trigger) = if face {
        install_face(config, store, board, &ring, inputs, liveness)?
    } else {
        (None, false)
    };
    Ok(Some(CameraRig {
        ring,
        capture,
        credentials_hook,
        motion_trigger,
        saved,
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
    liveness: Liveness,
) -> Result<(Option<CredentialsHook>, bool), DaemonError> {
    use crate::board::face_service::{
        templates_from_credentials, FaceService, FaceServiceConfig, LivenessSetup,
    };
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
            liveness: liveness.clone(),
        },
        ring.clone(),
        templates_rx,
        crate::board::OrderedSender::spawn(inputs.clone()),
    );
    board.face = Box::new(service);
    let (models, enrolled) = (f.models_dir.display(), templates.borrow().len());
    match &liveness {
        // Issue 13 item 8: only with `allow_without_liveness = true`, and
        // said loudly at every start.
        LivenessSetup::Off => tracing::warn!(
            %models,
            threshold = f.threshold,
            enrolled,
            "FACE UNLOCK WITHOUT LIVENESS: a printed photo or a phone showing an enrolled person may open the door \
             ([face] liveness = \"none\", allow_without_liveness = true)"
        ),
        LivenessSetup::Ir { name, .. } => tracing::info!(
            %models,
            threshold = f.threshold,
            enrolled,
            ir = %name,
            "face recognition on the camera (liveness: ir, a screen or glossy print is refused; a matte print or mask may pass)"
        ),
        LivenessSetup::Unavailable(why) => tracing::error!(
            %models,
            enrolled,
            "face recognition on the camera (liveness: ir, unavailable: {why}; every matched face is refused)"
        ),
    }
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
    _liveness: Liveness,
) -> Result<(Option<CredentialsHook>, bool), DaemonError> {
    Ok((None, false))
}

impl CameraRig {
    /// The hook the engine task calls with the stored credentials after
    /// each change to them (`None` without face recognition).
    pub fn take_credentials_hook(&mut self) -> Option<CredentialsHook> {
        self.credentials_hook.take()
    }

    /// Hears of every snapshot once it is stored.
    pub fn snapshots_saved(&self) -> tokio::sync::broadcast::Receiver<SnapshotSaved> {
        self.saved.subscribe()
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
                        // Someone approached: the engine starts one automatic
                        // recognition (B-6.2), whose failures have their own
                        // budget and never feed the keypad's lockout.
                        if !inputs.try_send(Input::Motion) {
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
