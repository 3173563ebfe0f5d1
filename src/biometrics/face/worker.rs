//! The face worker: face recognition and enrolment on the real pipeline,
//! over the camera's frame ring ([`crate::board::frames`]) — the
//! [`FaceSource`] of a board with a camera.
//!
//! Owns one worker task, the loaded models and the liveness source.
//! Driven by the engine's face commands ([`FaceService::command`] is a
//! queue push), and by the frames the camera publishes while a command
//! runs; reports go to the engine through an [`OrderedSender`].
//!
//! ```text
//!  engine ── ModuleCmd ──► FaceService::command (queue push, never blocks)
//!                               │
//!                               ▼ worker task (one command at a time)
//!   RecogniseFace:  frames from the ring ──► spawn_blocking(observe + match)
//!                   until a match or the time budget ends (the detector is
//!                   skipped on a frame where nothing moved: face::SceneMemo)
//!                   a match, with [face] liveness = "ir": IrSource::grab ──► IrLiveness
//!                   └─► exactly one report per attempt:
//!                       Recognised{slot} (liveness off, or the IR check said Live)
//!                       | NotRecognised (a face was seen, none matched)
//!                       | SpoofRefused{slot, reason} (it matched, the IR check
//!                         refused it: one failed verification, logged with
//!                         the matched user and the reason)
//!                       | Fault (liveness on but no IR frame: fail closed)
//!                       nothing when no face was seen at all (nobody there: no
//!                       failed verification counts towards a lockout, as on the sim board)
//!   Enrol{slot}:    frames ──► observe ──► FaceEnrolment::offer
//!                   NextPose ──► EnrolProgress(FacePose)   Retry(fix) ──► EnrolProgress(FaceFix)
//!                   (a fix is reported when it changes, not per frame)
//!                   Done ──► Enrolled{slot, template: Some(bytes)}
//!                   CancelEnrol ──► stop, nothing stored; timeout ──► EnrolFailed(Timeout)
//!  templates: watch::Receiver<FaceTemplates> the daemon updates after it
//!             loads or persists the store's face credentials
//! ```
//!
//! A model that cannot be loaded leaves the service running but answering
//! every recognise/enrol with `ModuleReport::Fault` naming the file, so the
//! lock keeps working with its other credentials. Likewise an IR camera
//! that cannot be opened or read: a face that matches is then answered
//! with a fault naming the IR camera, never let in unchecked.
//!
//! The IR frame is grabbed once per attempt, after the RGB frame matched
//! (a few hundred milliseconds later on a board: the time to run the
//! models), so a spoof swapped in within that window is judged on the IR
//! frame, not on the RGB picture. A spoof ends the attempt: it is not
//! retried on the next frame, so one presentation counts once (B-7.1). Templates are kept by
//! the store (sealed), not here, so `Delete`/`Wipe` need no work.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use image::{GrayImage, RgbImage};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::biometrics::face::{
    self, register_box, EnrolStep as FaceStep, FaceBox, FaceEnrolment, FaceError, FaceObservation,
    FaceRecognizer, FaceTemplate, Fix, LivenessCheck, LivenessFrame, LivenessVerdict, Pose,
    SceneMemo, SpoofReason,
};
use crate::board::frames::{Frame, FrameRing};
use crate::board::{CameraLight, DeviceError, FaceSource};
use crate::core::input::{EnrolFailure, EnrolStep, FaceFix, FacePose, ModuleReport};
use crate::core::types::Modality;
use crate::core::{Input, ModuleCmd};
use crate::link::OrderedSender;

/// An attempt starts on the frame already in the ring when the camera took
/// it at most this long ago, instead of waiting up to a frame period (67 ms
/// at 15 frames/s) for the next one. The motion trigger's attempt comes a
/// few milliseconds after the frame that showed the motion, so that frame
/// is the one looked at first. Short on purpose: nobody leaves the camera's
/// view and someone else steps in within 50 ms, so the frame shows who is
/// at the door when the attempt begins (a longer window would let a frame
/// of the owner, taken just before a stranger's touch, answer for it).
pub const RECENT_FRAME: Duration = Duration::from_millis(50);

/// The templates recognition matches against: `(slot, template)`.
pub type FaceTemplates = Arc<Vec<(u16, FaceTemplate)>>;

/// Decode the store's face credentials (`CredentialSecret::FaceTemplate`
/// slot and bytes). A template that does not decode is left out and
/// logged: it cannot match anyone, and one bad record must not disable
/// face unlock for everybody.
pub fn decode_templates<'a>(creds: impl IntoIterator<Item = (u16, &'a [u8])>) -> FaceTemplates {
    let mut out = Vec::new();
    for (slot, bytes) in creds {
        match FaceTemplate::from_bytes(bytes) {
            Ok(t) => out.push((slot, t)),
            Err(e) => tracing::error!(slot, "face template not usable: {e}"),
        }
    }
    Arc::new(out)
}

/// The face templates among the engine's credentials (what the daemon
/// sends on the templates `watch` after it loads or persists the store).
pub fn templates_from_credentials<'a>(
    creds: impl IntoIterator<Item = &'a crate::core::types::Credential>,
) -> FaceTemplates {
    decode_templates(creds.into_iter().filter_map(|c| match &c.secret {
        crate::core::types::CredentialSecret::FaceTemplate { slot, template } => {
            Some((*slot, template.as_slice()))
        }
        _ => None,
    }))
}

/// What the service needs from the face pipeline. [`FaceRecognizer`] is
/// the real one; a test may wrap it (e.g. to pose a head it has no photo of).
pub trait FacePipeline: Send + Sync + 'static {
    fn observe(&self, frame: &RgbImage) -> Result<Vec<FaceObservation>, FaceError>;
    /// `observe` on the next frame of a stream; may reuse the detections
    /// of an earlier frame when nothing moved (see `face::SceneMemo`). By
    /// default it does not.
    fn observe_still(
        &self,
        frame: &RgbImage,
        _memo: &mut SceneMemo,
    ) -> Result<Vec<FaceObservation>, FaceError> {
        self.observe(frame)
    }
    /// Cosine similarity a probe must reach to match.
    fn threshold(&self) -> f32;
}

impl FacePipeline for FaceRecognizer {
    fn observe(&self, frame: &RgbImage) -> Result<Vec<FaceObservation>, FaceError> {
        FaceRecognizer::observe(self, frame)
    }
    fn observe_still(
        &self,
        frame: &RgbImage,
        memo: &mut SceneMemo,
    ) -> Result<Vec<FaceObservation>, FaceError> {
        FaceRecognizer::observe_still(self, frame, memo)
    }
    fn threshold(&self) -> f32 {
        FaceRecognizer::threshold(self)
    }
}

/// Why an IR source gave no frame: the source's own error.
#[derive(Debug, thiserror::Error)]
#[error("no IR frame: {0}")]
pub struct IrFrameError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// A camera that sees the door in near-IR, beside the RGB camera with the
/// same field of view (`biometrics::face::liveness` has the physics and the
/// registration rule). `grab` blocks: it is called on the blocking pool,
/// once per attempt whose face matched.
pub trait IrSource: Send + Sync + 'static {
    /// One IR frame showing the scene now, as luma.
    fn grab(&self) -> Result<Arc<GrayImage>, IrFrameError>;
}

impl IrSource for crate::board::sim::camera::SimIrCamera {
    fn grab(&self) -> Result<Arc<GrayImage>, IrFrameError> {
        crate::board::sim::camera::SimIrCamera::grab(self).map_err(|e| IrFrameError(Box::new(e)))
    }
}

#[cfg(feature = "board-linux")]
impl IrSource for crate::board::linux::ir_camera::V4l2IrCamera {
    fn grab(&self) -> Result<Arc<GrayImage>, IrFrameError> {
        crate::board::linux::ir_camera::V4l2IrCamera::grab(self)
            .map(Arc::new)
            .map_err(|e| IrFrameError(Box::new(e)))
    }
}

/// The liveness check a match must pass (`[face] liveness`).
#[derive(Clone, Default)]
pub enum LivenessSetup {
    /// No check: **a photo of an enrolled face may unlock.**
    #[default]
    Off,
    /// Every match is checked on a frame from `source`.
    Ir {
        source: Arc<dyn IrSource>,
        check: Arc<dyn LivenessCheck>,
        /// Where the frames come from, for the log.
        name: String,
    },
    /// Liveness was asked for but its source could not be opened (the
    /// reason): every match is answered with a fault, never let in.
    Unavailable(String),
}

impl std::fmt::Debug for LivenessSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LivenessSetup::Off => f.write_str("Off"),
            LivenessSetup::Ir { name, .. } => f.debug_struct("Ir").field("name", name).finish(),
            LivenessSetup::Unavailable(why) => f.debug_tuple("Unavailable").field(why).finish(),
        }
    }
}

/// What the liveness check made of a match.
#[derive(Debug, Clone, PartialEq)]
enum Liveness {
    /// Live, or no check configured.
    Pass,
    /// A spoof: one failed verification.
    Spoof(SpoofReason),
    /// No IR frame to judge: fail closed with a fault.
    NoFrame(String),
}

/// Face service settings.
#[derive(Clone)]
pub struct FaceServiceConfig {
    /// Where the ONNX models are (see `biometrics::face`).
    pub models_dir: PathBuf,
    pub threshold: f32,
    /// How long one recognition attempt looks at frames (B-6.2).
    pub attempt_budget: Duration,
    /// How long an enrolment may go without finishing.
    pub enrol_timeout: Duration,
    /// The check a matched face must pass before it counts as recognised.
    pub liveness: LivenessSetup,
    /// Lit while a recognition or an enrolment looks at frames (issue 17
    /// item 6: a touch on a dark porch); `None` on a board without one.
    pub light: Option<Arc<dyn CameraLight>>,
}

impl std::fmt::Debug for FaceServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceServiceConfig")
            .field("models_dir", &self.models_dir)
            .field("threshold", &self.threshold)
            .field("attempt_budget", &self.attempt_budget)
            .field("enrol_timeout", &self.enrol_timeout)
            .field("liveness", &self.liveness)
            .field("light", &self.light.is_some())
            .finish()
    }
}

impl FaceServiceConfig {
    pub fn new(models_dir: PathBuf) -> Self {
        FaceServiceConfig {
            models_dir,
            threshold: face::DEFAULT_MATCH_THRESHOLD,
            attempt_budget: Duration::from_secs(3),
            enrol_timeout: Duration::from_secs(60),
            liveness: LivenessSetup::Off,
            light: None,
        }
    }
}

/// The running service; dropping it stops the worker.
pub struct FaceService {
    cmds: mpsc::UnboundedSender<ModuleCmd>,
    task: JoinHandle<()>,
}

impl Drop for FaceService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for FaceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceService").finish_non_exhaustive()
    }
}

impl FaceService {
    /// Load the models (on the blocking pool) and start the worker. A
    /// load failure is logged and turned into `Fault` reports.
    pub fn spawn(
        cfg: FaceServiceConfig,
        ring: FrameRing,
        templates: watch::Receiver<FaceTemplates>,
        reports: OrderedSender,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let dir = cfg.models_dir.clone();
            let threshold = cfg.threshold;
            let started = std::time::Instant::now();
            let loaded = tokio::task::spawn_blocking(move || FaceRecognizer::load(&dir, threshold))
                .await
                .map_err(|e| format!("face model loader panicked: {e}"))
                .and_then(|r| {
                    r.map(|rec| Arc::new(rec) as Arc<dyn FacePipeline>)
                        .map_err(|e| format!("face recognition unavailable: {e}"))
                });
            match &loaded {
                // READY=1 does not wait for the models; this line says
                // when face unlock could first answer (benches/startup.rs).
                Ok(_) => tracing::info!(
                    ms = started.elapsed().as_millis() as u64,
                    "face models loaded"
                ),
                Err(e) => tracing::error!("{e}; the lock works without face unlock"),
            }
            Worker::new(cfg, loaded, ring, templates, reports, rx)
                .run()
                .await;
        });
        FaceService { cmds: tx, task }
    }

    /// Start with a pipeline already built (tests, benches).
    pub fn with_pipeline(
        cfg: FaceServiceConfig,
        pipeline: Arc<dyn FacePipeline>,
        ring: FrameRing,
        templates: watch::Receiver<FaceTemplates>,
        reports: OrderedSender,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            Worker::new(cfg, Ok(pipeline), ring, templates, reports, rx)
                .run()
                .await;
        });
        FaceService { cmds: tx, task }
    }
}

impl FaceSource for FaceService {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        self.cmds.send(*cmd).map_err(|_| DeviceError::Unavailable {
            device: "face service",
            detail: "its worker has stopped".into(),
        })
    }
}

struct Worker {
    cfg: FaceServiceConfig,
    pipeline: Result<Arc<dyn FacePipeline>, String>,
    ring: FrameRing,
    templates: watch::Receiver<FaceTemplates>,
    reports: OrderedSender,
    rx: mpsc::UnboundedReceiver<ModuleCmd>,
}

/// How an enrolment ended.
enum EnrolEnd {
    Finished,
    /// A new command arrived that replaces the enrolment.
    Interrupted(ModuleCmd),
}

impl Worker {
    fn new(
        cfg: FaceServiceConfig,
        pipeline: Result<Arc<dyn FacePipeline>, String>,
        ring: FrameRing,
        templates: watch::Receiver<FaceTemplates>,
        reports: OrderedSender,
        rx: mpsc::UnboundedReceiver<ModuleCmd>,
    ) -> Self {
        Worker {
            cfg,
            pipeline,
            ring,
            templates,
            reports,
            rx,
        }
    }

    fn report(&self, r: ModuleReport) {
        if !self.reports.push(Input::Module(r)) {
            tracing::debug!("face report dropped: the engine has stopped");
        }
    }

    async fn run(mut self) {
        let mut pending = None;
        loop {
            let cmd = match pending.take() {
                Some(c) => c,
                None => match self.rx.recv().await {
                    Some(c) => c,
                    None => return,
                },
            };
            pending = self.handle(cmd).await;
        }
    }

    /// Handle one command; returns a command that interrupted it.
    async fn handle(&mut self, cmd: ModuleCmd) -> Option<ModuleCmd> {
        let wants_pipeline = matches!(cmd, ModuleCmd::RecogniseFace | ModuleCmd::Enrol { .. });
        if !wants_pipeline {
            // Cancel with nothing running, Delete, Wipe: templates live in
            // the store, nothing to do here.
            return None;
        }
        let pipeline = match &self.pipeline {
            Ok(p) => p.clone(),
            Err(detail) => {
                self.report(ModuleReport::Fault {
                    modality: Modality::Face,
                    detail: detail.clone(),
                });
                return None;
            }
        };
        match cmd {
            ModuleCmd::RecogniseFace => {
                self.recognise(pipeline).await;
                None
            }
            ModuleCmd::Enrol { slot, .. } => match self.enrol(pipeline, slot).await {
                EnrolEnd::Finished => None,
                EnrolEnd::Interrupted(c) => Some(c),
            },
            _ => None,
        }
    }

    async fn recognise(&mut self, pipeline: Arc<dyn FacePipeline>) {
        let _lit = self.cfg.light.as_ref().map(|l| l.light());
        let deadline = Instant::now() + self.cfg.attempt_budget;
        let mut frames = self.ring.subscribe_recent(RECENT_FRAME);
        // Frames looked at, and those with a face: one attempt reads many
        // frames but ends in one report (B-7.1 counts attempts).
        let (mut frames_seen, mut frames_with_face) = (0u32, 0u32);
        // Detections carried from frame to frame while nothing moves.
        let mut memo = SceneMemo::default();
        loop {
            let frame = match tokio::time::timeout_at(deadline, frames.next()).await {
                Ok(Some(f)) => f,
                Ok(None) | Err(_) => break,
            };
            frames_seen += 1;
            let templates = self.templates.borrow().clone();
            let (looked, kept) = look(pipeline.clone(), frame, templates, memo).await;
            memo = kept;
            match looked {
                Ok(Look {
                    faces,
                    matched: Some(m),
                }) => {
                    let slot = m.slot;
                    let report = match self.liveness(m).await {
                        Liveness::Pass => {
                            tracing::info!(slot, faces, frames = frames_seen, "face recognised");
                            ModuleReport::Recognised {
                                modality: Modality::Face,
                                slot,
                            }
                        }
                        Liveness::Spoof(reason) => {
                            tracing::warn!(
                                slot,
                                frames = frames_seen,
                                %reason,
                                "face attempt ended: the face matched but the IR liveness check refused it as a spoof (one failed verification)"
                            );
                            ModuleReport::SpoofRefused {
                                modality: Modality::Face,
                                slot,
                                reason: reason.to_string(),
                            }
                        }
                        Liveness::NoFrame(detail) => {
                            tracing::error!(
                                slot,
                                "face matched but liveness cannot be checked ({detail}); refused"
                            );
                            ModuleReport::Fault {
                                modality: Modality::Face,
                                detail: format!(
                                    "IR liveness: {detail}; face unlock refuses every face until the IR camera works"
                                ),
                            }
                        }
                    };
                    self.report(report);
                    return;
                }
                Ok(Look {
                    faces,
                    matched: None,
                }) => frames_with_face += u32::from(faces > 0),
                Err(e) => tracing::warn!("face frame skipped: {e}"),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        if frames_with_face > 0 {
            tracing::info!(
                frames = frames_seen,
                frames_with_face,
                "face attempt ended: a face was seen, none matched (one failed verification)"
            );
            self.report(ModuleReport::NotRecognised {
                modality: Modality::Face,
            });
        } else if frames_seen == 0 {
            self.report(ModuleReport::Fault {
                modality: Modality::Face,
                detail: format!(
                    "the camera delivered no frame in {:?}; check that it is connected",
                    self.cfg.attempt_budget
                ),
            });
        } else {
            tracing::debug!("no face in view during the attempt: nothing counted");
        }
    }

    /// The liveness check on the face that matched: one IR frame, the box
    /// carried across to it, the configured check.
    async fn liveness(&self, m: Matched) -> Liveness {
        let (source, check) = match &self.cfg.liveness {
            LivenessSetup::Off => return Liveness::Pass,
            LivenessSetup::Unavailable(why) => return Liveness::NoFrame(why.clone()),
            LivenessSetup::Ir { source, check, .. } => (source.clone(), check.clone()),
        };
        let judged = tokio::task::spawn_blocking(move || {
            let ir = source.grab()?;
            let face = register_box(&m.face, m.frame_size, ir.dimensions());
            Ok::<_, IrFrameError>(check.check(&face, LivenessFrame::Ir(&ir)))
        })
        .await;
        match judged {
            Ok(Ok(LivenessVerdict::Live)) => Liveness::Pass,
            Ok(Ok(LivenessVerdict::Rejected(reason))) => Liveness::Spoof(reason),
            Ok(Err(e)) => Liveness::NoFrame(e.to_string()),
            Err(e) => Liveness::NoFrame(format!("IR worker failed: {e}")),
        }
    }

    async fn enrol(&mut self, pipeline: Arc<dyn FacePipeline>, slot: u16) -> EnrolEnd {
        let _lit = self.cfg.light.as_ref().map(|l| l.light());
        let deadline = Instant::now() + self.cfg.enrol_timeout;
        let mut frames = self.ring.subscribe();
        let mut enrolment = FaceEnrolment::new();
        let mut last_fix: Option<FaceFix> = None;
        loop {
            let frame = tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(ModuleCmd::CancelEnrol { .. }) => {
                        tracing::info!(slot, "face enrolment cancelled; nothing stored");
                        return EnrolEnd::Finished;
                    }
                    Some(c @ ModuleCmd::Enrol { .. }) => return EnrolEnd::Interrupted(c),
                    Some(other) => {
                        tracing::warn!(?other, "ignored during a face enrolment");
                        continue;
                    }
                    None => return EnrolEnd::Finished,
                },
                f = tokio::time::timeout_at(deadline, frames.next()) => match f {
                    Ok(Some(f)) => f,
                    Ok(None) | Err(_) => {
                        self.report(ModuleReport::EnrolFailed {
                            modality: Modality::Face,
                            reason: EnrolFailure::Timeout,
                        });
                        return EnrolEnd::Finished;
                    }
                },
            };
            let p = pipeline.clone();
            let observed = tokio::task::spawn_blocking(move || -> Result<_, FrameLookError> {
                let rgb = frame.to_rgb()?;
                Ok(p.observe(&rgb)?)
            })
            .await
            .map_err(FrameLookError::Worker)
            .and_then(|r| r);
            let faces = match observed {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!("face frame skipped: {e}");
                    continue;
                }
            };
            // A frame is nearly always waiting when looking at one takes
            // longer than the camera's frame interval (a slow SoC, a loaded
            // lock): the wait above then never reaches its deadline, so the
            // time limit is checked here too.
            if Instant::now() >= deadline {
                self.report(ModuleReport::EnrolFailed {
                    modality: Modality::Face,
                    reason: EnrolFailure::Timeout,
                });
                return EnrolEnd::Finished;
            }
            match enrolment.offer(&faces) {
                FaceStep::Hold(_) => {}
                FaceStep::NextPose(pose) => {
                    last_fix = None;
                    self.report(ModuleReport::EnrolProgress {
                        modality: Modality::Face,
                        step: EnrolStep::FacePose(map_pose(pose)),
                    });
                }
                FaceStep::Retry(fix) => {
                    let fix = map_fix(fix);
                    if last_fix != Some(fix) {
                        last_fix = Some(fix);
                        self.report(ModuleReport::EnrolProgress {
                            modality: Modality::Face,
                            step: EnrolStep::FaceFix(fix),
                        });
                    }
                }
                FaceStep::Done(template) => {
                    tracing::info!(slot, "face enrolled");
                    self.report(ModuleReport::Enrolled {
                        modality: Modality::Face,
                        slot,
                        template: Some(template.to_bytes()),
                    });
                    return EnrolEnd::Finished;
                }
            }
        }
    }
}

struct Look {
    faces: usize,
    matched: Option<Matched>,
}

/// Why one camera frame gave no observation (the frame is skipped).
#[derive(Debug, thiserror::Error)]
enum FrameLookError {
    #[error("{0}")]
    Frame(#[from] crate::board::frames::FrameError),
    #[error("{0}")]
    Face(#[from] FaceError),
    #[error("face worker failed: {0}")]
    Worker(#[source] tokio::task::JoinError),
}

/// The face that matched, where it is, in a frame of which size.
#[derive(Debug, Clone, Copy)]
struct Matched {
    slot: u16,
    face: FaceBox,
    frame_size: (u32, u32),
}

/// Observe one frame of the attempt and match every face in it (blocking
/// pool). `memo` goes in and comes back out (a fresh one if the worker
/// panicked).
async fn look(
    pipeline: Arc<dyn FacePipeline>,
    frame: Arc<Frame>,
    templates: FaceTemplates,
    mut memo: SceneMemo,
) -> (Result<Look, FrameLookError>, SceneMemo) {
    let joined = tokio::task::spawn_blocking(move || {
        let looked = (|| {
            let rgb = frame.to_rgb()?;
            let faces = pipeline.observe_still(&rgb, &mut memo)?;
            let threshold = pipeline.threshold();
            let matched = best_match_face(&faces, &templates, threshold).map(|(slot, i)| Matched {
                slot,
                face: faces[i].bbox,
                frame_size: rgb.dimensions(),
            });
            Ok(Look {
                faces: faces.len(),
                matched,
            })
        })();
        (looked, memo)
    })
    .await;
    match joined {
        Ok(r) => r,
        // The memo went down with the task: start the next frame afresh.
        Err(e) => (Err(FrameLookError::Worker(e)), SceneMemo::default()),
    }
}

/// The slot whose template scores highest at or above `threshold` against
/// any face seen.
pub fn best_match(
    faces: &[FaceObservation],
    templates: &[(u16, FaceTemplate)],
    threshold: f32,
) -> Option<u16> {
    best_match_face(faces, templates, threshold).map(|(slot, _)| slot)
}

/// [`best_match`], with the index in `faces` of the face that matched
/// (the one whose liveness is then checked).
pub fn best_match_face(
    faces: &[FaceObservation],
    templates: &[(u16, FaceTemplate)],
    threshold: f32,
) -> Option<(u16, usize)> {
    let mut best: Option<(u16, usize, f32)> = None;
    for (i, f) in faces.iter().enumerate() {
        for (slot, t) in templates {
            let s = t.score(&f.embedding);
            if s >= threshold && best.is_none_or(|(_, _, b)| s > b) {
                best = Some((*slot, i, s));
            }
        }
    }
    best.map(|(slot, i, _)| (slot, i))
}

/// The pipeline's pose names to the engine's prompts.
pub fn map_pose(p: Pose) -> FacePose {
    match p {
        Pose::Front => FacePose::Straight,
        Pose::Up => FacePose::Up,
        Pose::Down => FacePose::Down,
        Pose::Left => FacePose::Left,
        Pose::Right => FacePose::Right,
    }
}

/// The pipeline's fixes to the engine's prompts.
pub fn map_fix(f: Fix) -> FaceFix {
    match f {
        Fix::NoFace => FaceFix::NoFace,
        Fix::TwoFaces => FaceFix::SeveralFaces,
        Fix::TooFar => FaceFix::TooFar,
        Fix::TooClose => FaceFix::TooClose,
        // Both are cured by holding still.
        Fix::Blurry | Fix::Moving => FaceFix::Blurry,
        Fix::Covered => FaceFix::Covered,
        Fix::WrongPose { .. } => FaceFix::WrongPose,
        // A different face took over mid-enrolment: the prompt closest in
        // meaning is "only the person enrolling in view".
        Fix::NotSamePerson => FaceFix::SeveralFaces,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_template_bytes_are_left_out() {
        let t = decode_templates([(1u16, &b"garbage"[..])]);
        assert!(t.is_empty());
    }

    #[test]
    fn every_pose_and_fix_maps() {
        assert_eq!(map_pose(Pose::Front), FacePose::Straight);
        assert_eq!(map_fix(Fix::TwoFaces), FaceFix::SeveralFaces);
        assert_eq!(
            map_fix(Fix::WrongPose {
                want: Pose::Up,
                got: None
            }),
            FaceFix::WrongPose
        );
    }

    /// Sees no face, and takes longer per frame than frames arrive.
    struct SlowEmptyPipeline;

    impl FacePipeline for SlowEmptyPipeline {
        fn observe(&self, _frame: &RgbImage) -> Result<Vec<FaceObservation>, FaceError> {
            std::thread::sleep(Duration::from_millis(40));
            Ok(Vec::new())
        }
        fn threshold(&self) -> f32 {
            0.35
        }
    }

    /// A service on [`SlowEmptyPipeline`], its reports, and a camera
    /// publishing a frame every 5 ms (abort it at the end).
    fn slow_service(
        cfg: FaceServiceConfig,
    ) -> (FaceService, mpsc::Receiver<Input>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(64);
        let reports = OrderedSender::spawn(crate::link::InputSender::new(tx));
        let (_t, templates) = watch::channel(FaceTemplates::default());
        let ring = FrameRing::new();
        let svc = FaceService::with_pipeline(
            cfg,
            Arc::new(SlowEmptyPipeline),
            ring.clone(),
            templates,
            reports,
        );
        let camera = tokio::spawn(async move {
            loop {
                ring.publish(4, 4, crate::board::frames::PixelFormat::Rgb, vec![0; 48]);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        (svc, rx, camera)
    }

    /// Found in the VM rig's Linux-board scenario: under TCG every frame
    /// took longer than the next one's arrival and a face enrolment never
    /// ended. It ends at its time limit however slow the frames are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_enrolment_ends_at_its_time_limit_while_frames_keep_coming() {
        let mut cfg = FaceServiceConfig::new(PathBuf::from("/unused"));
        cfg.enrol_timeout = Duration::from_millis(300);
        let (mut svc, mut rx, camera) = slow_service(cfg);
        svc.command(&ModuleCmd::Enrol {
            modality: Modality::Face,
            slot: 3,
        })
        .expect("queued");
        let mut fixes = 0;
        let end = loop {
            // A guard against a hang, not a timing assertion.
            match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
                Ok(Some(Input::Module(ModuleReport::EnrolProgress {
                    step: EnrolStep::FaceFix(FaceFix::NoFace),
                    ..
                }))) => fixes += 1,
                Ok(Some(Input::Module(r))) => break r,
                other => panic!("the enrolment did not end: {other:?}"),
            }
        };
        camera.abort();
        assert_eq!(fixes, 1, "'no face' is said once, not per frame");
        assert_eq!(
            end,
            ModuleReport::EnrolFailed {
                modality: Modality::Face,
                reason: EnrolFailure::Timeout
            }
        );
    }

    /// Records the first byte of every frame it is shown (the test's
    /// marker); sees no face.
    #[derive(Default)]
    struct RecordingPipeline(std::sync::Mutex<Vec<u8>>);

    impl FacePipeline for RecordingPipeline {
        fn observe(&self, frame: &RgbImage) -> Result<Vec<FaceObservation>, FaceError> {
            self.0.lock().unwrap().push(frame.as_raw()[0]);
            Ok(Vec::new())
        }
        fn threshold(&self) -> f32 {
            0.35
        }
    }

    /// Issue 19: an attempt the motion trigger started looks first at the
    /// frame that showed the motion (it is in the ring already) instead of
    /// waiting up to a frame period for the next one; a frame older than
    /// [`RECENT_FRAME`] is never looked at.
    #[tokio::test(start_paused = true)]
    async fn an_attempt_starts_on_the_frame_the_camera_just_took() {
        let seen = Arc::new(RecordingPipeline::default());
        let (tx, _rx) = mpsc::channel(64);
        let reports = OrderedSender::spawn(crate::link::InputSender::new(tx));
        let (_t, templates) = watch::channel(FaceTemplates::default());
        let ring = FrameRing::new();
        let mut cfg = FaceServiceConfig::new(PathBuf::from("/unused"));
        cfg.attempt_budget = Duration::from_millis(500);
        let mut svc =
            FaceService::with_pipeline(cfg, seen.clone(), ring.clone(), templates, reports);
        let publish = |marker: u8| {
            ring.publish(
                4,
                4,
                crate::board::frames::PixelFormat::Rgb,
                vec![marker; 48],
            );
        };

        publish(1);
        tokio::time::advance(RECENT_FRAME + Duration::from_millis(1)).await;
        svc.command(&ModuleCmd::RecogniseFace).expect("queued");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            seen.0.lock().unwrap().is_empty(),
            "a stale frame was looked at"
        );

        publish(2);
        tokio::time::advance(RECENT_FRAME).await;
        svc.command(&ModuleCmd::RecogniseFace).expect("queued");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            *seen.0.lock().unwrap(),
            [2],
            "the frame in the ring, without a new one"
        );
    }

    /// Counts the lights held now and the most ever held.
    #[derive(Default)]
    struct CountingLight {
        lit: std::sync::Mutex<(u32, u32)>,
    }

    struct Lit(Arc<CountingLight>);

    impl Drop for Lit {
        fn drop(&mut self) {
            self.0.lit.lock().unwrap().0 -= 1;
        }
    }

    impl CameraLight for Arc<CountingLight> {
        fn light(&self) -> Box<dyn Send> {
            let mut l = self.lit.lock().unwrap();
            l.0 += 1;
            l.1 = l.1.max(l.0);
            Box::new(Lit(self.clone()))
        }
    }

    /// Issue 17 item 6: the board's light is on while a recognition (a
    /// touch on a dark porch) or an enrolment looks, and off after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attempts_and_enrolments_light_the_camera_light() {
        let light = Arc::new(CountingLight::default());
        let mut cfg = FaceServiceConfig::new(PathBuf::from("/unused"));
        cfg.enrol_timeout = Duration::from_millis(200);
        cfg.attempt_budget = Duration::from_millis(200);
        cfg.light = Some(Arc::new(light.clone()));
        let (mut svc, mut rx, camera) = slow_service(cfg);
        for cmd in [
            ModuleCmd::RecogniseFace,
            ModuleCmd::Enrol {
                modality: Modality::Face,
                slot: 1,
            },
        ] {
            svc.command(&cmd).expect("queued");
            // Lit once, then dark again at the end (the recognition sees
            // no face and reports nothing; the enrolment times out). The
            // limit guards against a hang; it asserts no timing.
            let t0 = std::time::Instant::now();
            while *light.lit.lock().unwrap() != (0, 1) {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "{cmd:?}: lights held now and at most: {:?}",
                    light.lit.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            while let Ok(r) = rx.try_recv() {
                assert!(matches!(r, Input::Module(_)), "{r:?}");
            }
            light.lit.lock().unwrap().1 = 0;
        }
        camera.abort();
    }

    #[tokio::test]
    async fn missing_models_answer_with_a_fault() {
        let (tx, mut rx) = mpsc::channel(8);
        let reports = OrderedSender::spawn(crate::link::InputSender::new(tx));
        let (_t, templates) = watch::channel(FaceTemplates::default());
        let mut svc = FaceService::spawn(
            FaceServiceConfig::new(PathBuf::from("/nonexistent/models")),
            FrameRing::new(),
            templates,
            reports,
        );
        svc.command(&ModuleCmd::RecogniseFace).expect("queued");
        match rx.recv().await {
            Some(Input::Module(ModuleReport::Fault { modality, detail })) => {
                assert_eq!(modality, Modality::Face);
                assert!(detail.contains("yunet"), "{detail}");
            }
            other => panic!("expected a fault, got {other:?}"),
        }
    }
}
