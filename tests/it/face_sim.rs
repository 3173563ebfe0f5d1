//! Face enrolment and recognition end to end on the sim camera: shared
//! photos played into the frame ring, the real YuNet + MobileFaceNet
//! pipeline in the face service, reports read from the engine's input
//! queue exactly as the daemon would receive them.
//!
//! Poses: front is `kit_harington/1.jpg`; right is `kit_harington/2.jpg`
//! (a real ≈ 20° turn) and left the same photo mirrored. No photo shows a
//! raised or lowered head, so for those two poses the test's pipeline
//! replaces the real frontal observation's landmarks with a model face
//! pitched by ±15° (as `tests/it/face_enrol.rs` does); everything else
//! (detection, embedding, quality gates, enrolment state machine,
//! matching, reports) is the real code.
//!
//! Run: `cargo test --test it face_sim:: -- --nocapture`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::{imageops, RgbImage};
use latchd::biometrics::face::worker::{
    decode_templates, FacePipeline, FaceService, FaceServiceConfig, FaceTemplates,
};
use latchd::biometrics::face::{
    estimate_pose, synthetic_landmarks, FaceError, FaceObservation, FaceRecognizer, Point,
    DEFAULT_MATCH_THRESHOLD,
};
use latchd::board::frames::FrameRing;
use latchd::board::sim::camera::{SimCamera, SimCameraConfig};
use latchd::board::FaceSource;
use latchd::core::input::{EnrolStep, FacePose, ModuleReport};
use latchd::core::types::Modality;
use latchd::core::{Input, ModuleCmd};
use latchd::link::{InputSender, OrderedSender};
use tokio::sync::{mpsc, watch};

use crate::common::shared::{photo, shared_dir};

/// The real recognizer; when `pitch` is set, each face's landmarks are
/// replaced by a model face pitched by that many degrees.
struct PitchablePipeline {
    rec: FaceRecognizer,
    pitch: Mutex<Option<f32>>,
}

impl FacePipeline for PitchablePipeline {
    fn observe(&self, frame: &RgbImage) -> Result<Vec<FaceObservation>, FaceError> {
        let mut faces = self.rec.observe(frame)?;
        let pitch = *self.pitch.lock().expect("pitch lock");
        if let Some(pitch) = pitch {
            for f in &mut faces {
                let lm = &f.landmarks;
                let eye_c = Point::new((lm[0].x + lm[1].x) / 2.0, (lm[0].y + lm[1].y) / 2.0);
                let iod = (lm[1].x - lm[0].x).hypot(lm[1].y - lm[0].y);
                let synth = synthetic_landmarks(0.0, pitch, eye_c, iod);
                if let Some(pose) = estimate_pose(&synth) {
                    f.landmarks = synth;
                    f.pose = pose;
                }
            }
        }
        Ok(faces)
    }
    fn threshold(&self) -> f32 {
        self.rec.threshold()
    }
}

struct Rig {
    camera: SimCamera,
    pipeline: Arc<PitchablePipeline>,
    service: FaceService,
    templates: watch::Sender<FaceTemplates>,
    inputs: mpsc::Receiver<Input>,
}

impl Rig {
    /// The next module report, within a generous bound (this only guards
    /// against a hang; nothing asserts on time).
    async fn report(&mut self) -> ModuleReport {
        match tokio::time::timeout(Duration::from_secs(120), self.inputs.recv()).await {
            Ok(Some(Input::Module(r))) => r,
            other => panic!("expected a module report, got {other:?}"),
        }
    }

    /// Skip fix prompts until a report that is not one.
    async fn next_non_fix(&mut self) -> ModuleReport {
        loop {
            match self.report().await {
                ModuleReport::EnrolProgress {
                    step: EnrolStep::FaceFix(fix),
                    ..
                } => println!("  prompt: fix {fix:?}"),
                r => return r,
            }
        }
    }

    /// Put person `n` (or nobody) in front of the camera and wait until it
    /// has taken a frame of them: an attempt may start on the frame
    /// already in the ring (`RECENT_FRAME`), and "in view" means the
    /// camera has seen them.
    async fn show_person(&self, person: Option<u32>) {
        self.camera.show_person(person).expect("a known person");
        let shown = self.camera.ring().published();
        while self.camera.ring().published() <= shown {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn set_pitch(&self, pitch: Option<f32>) {
        *self.pipeline.pitch.lock().expect("pitch lock") = pitch;
    }

    fn send(&mut self, cmd: ModuleCmd) {
        self.service.command(&cmd).expect("queued");
    }
}

fn rig() -> Rig {
    let models = shared_dir().join("models");
    let rec = FaceRecognizer::load(&models, DEFAULT_MATCH_THRESHOLD)
        .unwrap_or_else(|e| panic!("loading models from {}: {e}", models.display()));
    let pipeline = Arc::new(PitchablePipeline {
        rec,
        pitch: Mutex::new(None),
    });
    let faces = shared_dir().join("faces");
    let mut cfg = SimCameraConfig::new(640, 480);
    cfg.people.insert(1, faces.join("kit_harington/1.jpg"));
    cfg.people.insert(2, faces.join("rose_leslie/1.jpg"));
    let ring = FrameRing::new();
    let camera = SimCamera::start(&cfg, ring.clone()).expect("sim camera");
    let (tx, inputs) = mpsc::channel(256);
    let reports = OrderedSender::spawn(InputSender::new(tx));
    let (templates, templates_rx) = watch::channel(FaceTemplates::default());
    let mut scfg = FaceServiceConfig::new(models);
    // Long enough for several frames on a loaded 2-core machine.
    scfg.attempt_budget = Duration::from_secs(8);
    let service = FaceService::with_pipeline(scfg, pipeline.clone(), ring, templates_rx, reports);
    Rig {
        camera,
        pipeline,
        service,
        templates,
        inputs,
    }
}

fn expect_pose(r: ModuleReport, pose: FacePose) {
    assert_eq!(
        r,
        ModuleReport::EnrolProgress {
            modality: Modality::Face,
            step: EnrolStep::FacePose(pose)
        }
    );
    println!("  prompt: pose {pose:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_then_recognise_on_the_sim_camera() {
    let mut rig = rig();
    let right = imageops::resize(
        &photo("kit_harington/2.jpg"),
        480,
        (photo("kit_harington/2.jpg").height() * 480 / photo("kit_harington/2.jpg").width()).max(1),
        imageops::FilterType::Triangle,
    );
    let left = imageops::flip_horizontal(&right);

    // B-4.5: five poses.
    rig.show_person(Some(1)).await;
    rig.send(ModuleCmd::Enrol {
        modality: Modality::Face,
        slot: 7,
    });
    expect_pose(rig.next_non_fix().await, FacePose::Up);
    rig.set_pitch(Some(15.0));
    expect_pose(rig.next_non_fix().await, FacePose::Down);
    rig.set_pitch(Some(-15.0));
    expect_pose(rig.next_non_fix().await, FacePose::Left);
    rig.set_pitch(None);
    rig.camera.show_image(&left);
    expect_pose(rig.next_non_fix().await, FacePose::Right);
    rig.camera.show_image(&right);
    let template = match rig.next_non_fix().await {
        ModuleReport::Enrolled {
            modality: Modality::Face,
            slot: 7,
            template: Some(t),
        } => t,
        other => panic!("expected Enrolled in slot 7, got {other:?}"),
    };

    // The daemon hands the stored template to the service.
    rig.templates
        .send_replace(decode_templates([(7u16, template.as_slice())]));

    // The same person: recognised.
    rig.show_person(Some(1)).await;
    let t0 = Instant::now();
    rig.send(ModuleCmd::RecogniseFace);
    assert_eq!(
        rig.report().await,
        ModuleReport::Recognised {
            modality: Modality::Face,
            slot: 7
        }
    );
    println!(
        "face in view -> Recognised: {:.0} ms (debug build)",
        t0.elapsed().as_secs_f64() * 1e3
    );

    // Someone else: one NotRecognised for the whole attempt.
    rig.show_person(Some(2)).await;
    rig.send(ModuleCmd::RecogniseFace);
    assert_eq!(
        rig.report().await,
        ModuleReport::NotRecognised {
            modality: Modality::Face
        }
    );
    // The worker handles commands in order, so had the attempt reported
    // per frame, those reports would come before this attempt's answer.
    rig.show_person(Some(1)).await;
    rig.send(ModuleCmd::RecogniseFace);
    assert_eq!(
        rig.report().await,
        ModuleReport::Recognised {
            modality: Modality::Face,
            slot: 7
        }
    );
}

/// A cancelled enrolment hands the daemon no template: the service's next
/// report after the cancel is the answer to the next command, never an
/// `Enrolled`. (The name said "stores nothing"; the store is the
/// daemon's, and that nothing reaches it is checked there:
/// `daemon_face::five_pose_enrolment_through_the_menu_unlocks_and_a_cancelled_one_stores_nothing`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_enrolment_reports_no_template() {
    let mut rig = rig();
    rig.show_person(Some(2)).await;
    rig.send(ModuleCmd::Enrol {
        modality: Modality::Face,
        slot: 3,
    });
    expect_pose(rig.next_non_fix().await, FacePose::Up);
    rig.send(ModuleCmd::CancelEnrol {
        modality: Modality::Face,
    });
    // No template store was told anything; the next command's answer is
    // the next report (nothing from the cancelled enrolment in between).
    rig.send(ModuleCmd::RecogniseFace);
    assert_eq!(
        rig.next_non_fix().await,
        ModuleReport::NotRecognised {
            modality: Modality::Face
        }
    );
}
