//! The outdoor camera and everything that reads it: one capture, one
//! [`FrameRing`], several consumers (issue 7, B-3.5, B-6.2, B-9.2).
//!
//! ```text
//!  sim: SimCamera (picture of the person SimControl::face put at the door)  ┐
//!  linux: V4L2 (board file [camera])                                        ┴─► FrameRing
//!      ├─► RingCamera ── Board.camera: doorbell/alarm JPEGs, <state>/snapshots/…-ev<N>-….jpg
//!      ├─► FaceService ── Board.face ([face] on, FaceConfig::resolve): recognise + enrol on the real pipeline
//!      │       (biometrics::face::worker)
//!      │       ▲ templates: watch, refreshed by the engine task after credential changes
//!      │       ▲ [face] liveness = "ir": IR source grabbed per matched face
//!      │         (sim: SimIrCamera, `sim_ir_dir`, follows the sim camera's scene;
//!      │          linux: V4l2IrCamera, `ir_camera`, lights outputs.ir_illuminator)
//!      ├─► MotionDetector ([face] motion_trigger) ── Input::Motion ──► engine ── RecogniseFace
//!      └─► VideoServer ([video] enabled): HTTP MJPEG, token, battery floor
//! ```
//!
//! Bring-up is in two steps because the board is handed to the engine task
//! before the stream can be served: [`open_sim`]/`open_linux` (while the
//! board is built, `daemon/hardware.rs`) open the camera and return the
//! board's camera and face source, which go into the board as it is built;
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

use super::engine_task::CredentialsHook;
use super::DaemonError;
use crate::board::frames::FrameRing;
use crate::board::sim::camera::SceneControl;
use crate::board::{Camera, FaceSource};
use crate::config::Config;
use crate::core::types::Persisted;
use crate::core::Input;
use crate::link::{InputSender, Published};
use crate::video::{RingCamera, SnapshotSaved, SnapshotStore};

/// Size of the simulated camera's frames (a V4L2 camera's come from the
/// board file).
pub const SIM_FRAME: (u32, u32) = (640, 480);

/// The running camera, from [`open_sim`]/`open_linux` to [`CameraRig::serve`].
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

/// `[face] enabled` with "auto" resolved for this board
/// (`FaceConfig::resolve`).
#[cfg(feature = "face")]
fn face_decision(config: &Config) -> crate::biometrics::face::FaceDecision {
    config
        .face
        .resolve(config.board == crate::config::BoardKind::Sim)
}

/// Whether face unlock runs ([`face_decision`]).
fn face_enabled(config: &Config) -> bool {
    #[cfg(feature = "face")]
    return face_decision(config) == crate::biometrics::face::FaceDecision::On;
    #[cfg(not(feature = "face"))]
    {
        let _ = config;
        false
    }
}

/// The liveness check the face service gets (nothing without `face`).
#[cfg(feature = "face")]
type Liveness = crate::biometrics::face::worker::LivenessSetup;
/// Without the face feature there is nothing to check.
#[cfg(not(feature = "face"))]
#[derive(Debug, Clone, Copy)]
struct Liveness;

/// The board's light the face service lights while it looks (issue 17
/// item 6); nothing without `face`.
#[cfg(feature = "face")]
type Light = Option<std::sync::Arc<dyn crate::board::CameraLight>>;
#[cfg(not(feature = "face"))]
type Light = ();

/// What the board gives the face service besides frames.
#[cfg_attr(not(feature = "face"), allow(dead_code))] // read by the face worker only
struct FaceBoard {
    liveness: Liveness,
    light: Light,
}

/// `[face] liveness = "ir"` on an enabled face feature.
#[cfg(feature = "face")]
fn wants_ir(config: &Config) -> bool {
    use crate::biometrics::face::LivenessMode;
    face_enabled(config) && config.face.liveness == LivenessMode::Ir
}

/// Says once at start why face unlock is off when "auto" (or `false`)
/// turned it off, so an installer who expected it knows what to add.
fn log_face_decision(config: &Config) {
    #[cfg(feature = "face")]
    if let crate::biometrics::face::FaceDecision::Off(why) = face_decision(config) {
        tracing::info!("face unlock is off: {why}");
    }
    #[cfg(not(feature = "face"))]
    let _ = config;
}

/// The sim board's IR pictures beside its camera. A bad IR directory
/// stops the start, as a bad people directory does: it is a developer's
/// setup error.
#[cfg(feature = "face")]
fn sim_liveness(
    config: &Config,
    camera: &crate::board::sim::camera::SimCamera,
) -> Result<Liveness, DaemonError> {
    use crate::biometrics::face::worker::LivenessSetup;
    use crate::biometrics::face::IrLiveness;
    use std::sync::Arc;
    if !wants_ir(config) {
        return Ok(LivenessSetup::Off);
    }
    // `Config::validate` has checked that the sim board has `sim_ir_dir`;
    // should that change, refusing here keeps it closed.
    let dir = config
        .face
        .sim_ir_dir
        .as_deref()
        .ok_or(DaemonError::NoSimIrDir)?;
    let ir = camera.ir_camera(dir)?;
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

/// The board's IR illuminator (requested once: the face attempts and the
/// IR camera share it, `board::linux::illuminator`) and the V4L2 IR
/// camera. One that cannot be opened does not stop the lock: face unlock
/// then refuses every matched face with a fault naming the problem (fail
/// closed) and the other credentials keep working, as with a missing face
/// model; an illuminator that cannot be had leaves the attempts in the dark.
#[cfg(all(feature = "face", feature = "board-linux"))]
fn linux_face_board(
    config: &Config,
    board_cfg: &crate::board::linux::config::BoardConfig,
) -> FaceBoard {
    use crate::biometrics::face::worker::LivenessSetup;
    use crate::biometrics::face::IrLiveness;
    use crate::board::linux::gpio::GpioOutput;
    use crate::board::linux::illuminator::Illuminator;
    use crate::board::linux::ir_camera::V4l2IrCamera;
    use crate::board::CameraLight;
    use std::sync::Arc;
    if !face_enabled(config) {
        return FaceBoard {
            liveness: LivenessSetup::Off,
            light: None,
        };
    }
    let lamp = GpioOutput::request_with(
        board_cfg.gpio_provider,
        "outputs.ir_illuminator",
        &board_cfg.outputs.ir_illuminator,
    )
    .and_then(Illuminator::new)
    .map_err(|e| format!("IR illuminator: {e}"));
    if let Err(e) = &lamp {
        tracing::error!("{e}; face attempts look in the dark");
    }
    let light = lamp
        .as_ref()
        .ok()
        .map(|l| Arc::new(l.clone()) as Arc<dyn CameraLight>);
    if !wants_ir(config) {
        return FaceBoard {
            liveness: LivenessSetup::Off,
            light,
        };
    }
    let Some(path) = config.face.ir_camera.as_deref() else {
        return FaceBoard {
            liveness: LivenessSetup::Unavailable(
                "`face.liveness` = \"ir\" needs `face.ir_camera` on this board".into(),
            ),
            light,
        };
    };
    let opened =
        lamp.and_then(|led| V4l2IrCamera::open(path, Some(led)).map_err(|e| e.to_string()));
    let liveness = match opened {
        Ok(ir) => {
            let (w, h, format) = ir.format();
            let name = format!("{} ({w}x{h} {format:?})", path.display());
            LivenessSetup::Ir {
                source: Arc::new(ir),
                check: Arc::new(IrLiveness::default()),
                name,
            }
        }
        // `face_worker` logs it with the face feature's start-up line.
        Err(e) => LivenessSetup::Unavailable(e),
    };
    FaceBoard { liveness, light }
}

#[cfg(all(not(feature = "face"), feature = "board-linux"))]
fn linux_face_board(
    _config: &Config,
    _board_cfg: &crate::board::linux::config::BoardConfig,
) -> FaceBoard {
    FaceBoard {
        liveness: Liveness,
        light: (),
    }
}

/// What the camera gives the board as it is built, and the rig that keeps
/// the capture running.
pub struct CameraParts {
    pub rig: CameraRig,
    /// The board's camera: snapshots stored as JPEGs from the ring.
    pub snapshots: Box<dyn Camera>,
    /// The board's face source, when `[face]` is enabled.
    pub face: Option<Box<dyn FaceSource>>,
    /// Sim board with `[face]`: the scene the camera shows, so "person N
    /// at the door" is person N's picture in front of the camera.
    pub scene: Option<SceneControl>,
}

impl std::fmt::Debug for CameraParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraParts")
            .field("rig", &self.rig)
            .field("face", &self.face.is_some())
            .finish_non_exhaustive()
    }
}

/// Whether `[video]` or `[face]` needs the camera.
fn wanted(config: &Config) -> bool {
    config.video.enabled || face_enabled(config)
}

/// The sim board's camera (still pictures of the people directory) and
/// what reads it, when `[video]` or `[face]` wants it; `None` otherwise.
/// Must run inside the daemon's runtime.
pub fn open_sim(
    config: &Config,
    state_dir: &Path,
    persisted: &Persisted,
    inputs: &InputSender,
) -> Result<Option<CameraParts>, DaemonError> {
    use crate::board::sim::camera::{SimCamera, SimCameraConfig};
    log_face_decision(config);
    if !wanted(config) {
        return Ok(None);
    }
    let ring = FrameRing::new();
    let (w, h) = SIM_FRAME;
    let cfg = match sim_people_dir(config) {
        Some(dir) => SimCameraConfig::from_dir(dir, w, h)?,
        None => SimCameraConfig::new(w, h),
    };
    let camera = SimCamera::start(&cfg, ring.clone())?;
    let liveness = sim_liveness(config, &camera)?;
    // With the real pipeline, "person N at the door" is person N's
    // picture in front of the camera, not a simulated module.
    let scene = face_enabled(config).then(|| camera.control());
    let mut parts = with_readers(
        config,
        state_dir,
        persisted,
        inputs,
        ring,
        Box::new(camera),
        FaceBoard {
            liveness,
            // No light on the sim board.
            light: Light::default(),
        },
    );
    parts.scene = scene;
    Ok(Some(parts))
}

/// The Linux board's V4L2 camera (board file `[camera]`) and what reads
/// it, when `[video]` or `[face]` wants it; `None` otherwise. Must run
/// inside the daemon's runtime.
#[cfg(feature = "board-linux")]
pub fn open_linux(
    config: &Config,
    state_dir: &Path,
    board_cfg: &crate::board::linux::config::BoardConfig,
    persisted: &Persisted,
    inputs: &InputSender,
) -> Result<Option<CameraParts>, DaemonError> {
    log_face_decision(config);
    if !wanted(config) {
        return Ok(None);
    }
    let ring = FrameRing::new();
    let camera = crate::board::linux::camera::V4l2Camera::start(&board_cfg.camera, ring.clone())?;
    if face_enabled(config) {
        tokio::spawn(report_camera_link(camera.link(), inputs.clone()));
    }
    let face_board = linux_face_board(config, board_cfg);
    Ok(Some(with_readers(
        config,
        state_dir,
        persisted,
        inputs,
        ring,
        Box::new(camera),
        face_board,
    )))
}

/// Issue 15 item 5: the camera going away is a face-module outage for the
/// engine (logged, said, the owner told within the outage noise budget),
/// its return the outage's end — before anyone at the door finds out.
/// Ends with the camera (its capture thread drops the sender).
#[cfg(feature = "board-linux")]
async fn report_camera_link(
    mut link: watch::Receiver<crate::board::linux::camera::CameraLink>,
    inputs: InputSender,
) {
    use crate::board::linux::camera::CameraLink;
    use crate::core::input::ModuleReport;
    use crate::core::types::Modality;
    while link.changed().await.is_ok() {
        let report = match link.borrow_and_update().clone() {
            CameraLink::Lost(why) => ModuleReport::Fault {
                modality: Modality::Face,
                detail: format!("camera lost: {why}"),
            },
            CameraLink::Streaming => ModuleReport::Recovered {
                modality: Modality::Face,
            },
        };
        if !inputs.send(Input::Module(report)).await {
            return;
        }
    }
}

/// The ring's readers the board holds: snapshots always, the face worker
/// when `[face]` is enabled.
fn with_readers(
    config: &Config,
    state_dir: &Path,
    persisted: &Persisted,
    inputs: &InputSender,
    ring: FrameRing,
    capture: Box<dyn std::any::Any + Send>,
    face_board: FaceBoard,
) -> CameraParts {
    let snapshots = RingCamera::new(
        ring.clone(),
        SnapshotStore::in_state_dir(state_dir, config.video.max_snapshots),
    );
    let saved = snapshots.saved_sender();
    let face = face_enabled(config)
        .then(|| face_worker(config, persisted, &ring, inputs, face_board))
        .flatten();
    let (source, credentials_hook, motion_trigger) = match face {
        Some(f) => (Some(f.source), Some(f.hook), f.motion_trigger),
        None => (None, None, false),
    };
    CameraParts {
        rig: CameraRig {
            ring,
            capture,
            credentials_hook,
            motion_trigger,
            saved,
        },
        snapshots: Box::new(snapshots),
        face: source,
        scene: None,
    }
}

#[cfg(feature = "face")]
fn sim_people_dir(config: &Config) -> Option<&Path> {
    config.face.sim_people_dir.as_deref()
}

#[cfg(not(feature = "face"))]
fn sim_people_dir(_config: &Config) -> Option<&Path> {
    None
}

/// The face worker, its templates hook and whether motion starts an attempt.
#[cfg_attr(not(feature = "face"), allow(dead_code))] // built by the face feature only
struct FacePart {
    source: Box<dyn FaceSource>,
    hook: CredentialsHook,
    motion_trigger: bool,
}

/// The real face pipeline on the ring, its templates from the store's
/// credentials now and from the engine task after every credential change.
#[cfg(feature = "face")]
fn face_worker(
    config: &Config,
    persisted: &Persisted,
    ring: &FrameRing,
    inputs: &InputSender,
    face_board: FaceBoard,
) -> Option<FacePart> {
    let FaceBoard { liveness, light } = face_board;
    use crate::biometrics::face::worker::{
        templates_from_credentials, FaceService, FaceServiceConfig, LivenessSetup,
    };
    use std::time::Duration;
    let f = &config.face;
    let (templates, templates_rx) =
        watch::channel(templates_from_credentials(&persisted.credentials));
    let service = FaceService::spawn(
        FaceServiceConfig {
            models_dir: f.models_dir.clone(),
            threshold: f.threshold,
            attempt_budget: Duration::from_millis(f.attempt_budget_ms),
            enrol_timeout: Duration::from_secs(f.enrol_timeout_s),
            liveness: liveness.clone(),
            light,
        },
        ring.clone(),
        templates_rx,
        crate::link::OrderedSender::spawn(inputs.clone()),
    );
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
    Some(FacePart {
        source: Box::new(service),
        hook,
        motion_trigger: f.motion_trigger,
    })
}

/// Without the face feature there is no face worker.
#[cfg(not(feature = "face"))]
fn face_worker(
    _config: &Config,
    _persisted: &Persisted,
    _ring: &FrameRing,
    _inputs: &InputSender,
    _face_board: FaceBoard,
) -> Option<FacePart> {
    None
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
            let stream = config.video.stream_config()?;
            let battery = battery_bridge(published, |p: &Published| p.engine.battery_percent);
            let server = VideoServer::bind(&stream, self.ring.clone(), battery).await?;
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
    use crate::video::motion::{frame_thumbnail, MotionConfig, MotionDetector};
    let cfg = MotionConfig::default();
    let mut detector = MotionDetector::new(cfg);
    let Some(frame) = ring.subscribe().next().await else {
        return detector;
    };
    let (w, h) = cfg.grid;
    let at = frame.captured;
    match tokio::task::spawn_blocking(move || frame_thumbnail(&frame, w, h)).await {
        Ok(Ok(thumb)) => {
            // The first sample never triggers: there is nothing to compare.
            let _ = detector.offer(at, thumb);
        }
        Ok(Err(e)) => tracing::warn!("motion: first frame skipped: {e}"),
        Err(e) => tracing::warn!("motion: worker failed: {e}"),
    }
    detector
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 item 5: the camera's loss reaches the engine as one
    /// face-module fault naming why, its return as the outage's end, and
    /// the reporter ends with the camera.
    #[cfg(feature = "board-linux")]
    #[tokio::test]
    async fn the_cameras_loss_and_return_are_a_face_outage_and_its_end() {
        use crate::board::linux::camera::CameraLink;
        use crate::core::input::ModuleReport;
        use crate::core::types::Modality;
        let (link, watched) = watch::channel(CameraLink::Streaming);
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let reporter = tokio::spawn(report_camera_link(watched, InputSender::new(tx)));
        link.send_replace(CameraLink::Lost("the device went away".into()));
        match rx.recv().await {
            Some(Input::Module(ModuleReport::Fault { modality, detail })) => {
                assert_eq!(modality, Modality::Face);
                assert!(
                    detail.contains("camera lost: the device went away"),
                    "{detail}"
                );
            }
            other => panic!("{other:?}"),
        }
        link.send_replace(CameraLink::Streaming);
        assert!(matches!(
            rx.recv().await,
            Some(Input::Module(ModuleReport::Recovered {
                modality: Modality::Face
            }))
        ));
        drop(link);
        reporter.await.expect("the reporter ends with the camera");
        assert!(rx.try_recv().is_err(), "nothing more");
    }

    /// The first change after priming is motion; without priming the
    /// same picture would only have been the detector's first sample.
    #[tokio::test]
    async fn primed_detector_sees_the_first_arrival_as_motion() {
        use crate::board::frames::PixelFormat;
        use crate::video::motion::{thumbnail, MotionConfig};
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
        let at = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        assert!(detector.offer(at, thumbnail(&arrival, gw, gh)));
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
            let parts = open_sim(
                &Config::default(),
                dir.path(),
                &Persisted::default(),
                &InputSender::new(tx),
            )
            .expect("open");
            assert!(parts.is_none());
        });
    }
}
