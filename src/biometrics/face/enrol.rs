//! Face enrolment (B-4.5): a pure state machine fed with the faces seen in
//! each camera frame. It never touches the camera, the clock or storage:
//! the caller prompts, captures, offers, and persists the final template
//! (cancelling is just dropping the machine — nothing was stored).
//!
//! ```text
//!        ┌─ Retry(fix) ◀── frame refused: NoFace, TwoFaces, Covered,
//!        │                 TooFar, TooClose, Blurry, WrongPose, Moving,
//!        ▼                 NotSamePerson (hold count restarts)
//!  Front ─▶ Up ─▶ Down ─▶ Left ─▶ Right ─▶ Done(FaceTemplate)
//!    each pose: `hold_frames` consecutive good frames in that pose,
//!    face centre moving < `max_move` × face width between them
//!    (Hold(pose) after each good frame but the last, NextPose(next) after it)
//! ```
//!
//! The template keeps all five pose embeddings (front first) rather than
//! their mean: the mean of embeddings taken at different angles sits
//! between them and scores lower against each pose, while the maximum over
//! the five lets a face seen slightly from the side match the embedding
//! taken at that side. The cost is 2.5 KB per face and five dot products
//! per match, and a slightly higher false-accept chance (five tries instead
//! of one), which the threshold's margin absorbs.
//!
//! Every later pose must also match the frontal embedding (cosine ≥
//! `same_person_threshold`), so a second person cannot finish someone
//! else's enrolment.

use super::align::Point;
use super::quality::HeadPose;
use super::template::{Embedding, FaceTemplate};
use super::{FaceObservation, DEFAULT_MATCH_THRESHOLD};

/// Enrolment poses, in prompt order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pose {
    /// Look straight at the lock.
    Front,
    /// Raise the head slightly.
    Up,
    /// Lower the head slightly.
    Down,
    /// Turn slightly to your left.
    Left,
    /// Turn slightly to your right.
    Right,
}

/// The order the prompts ask for.
pub const ENROL_POSES: [Pose; 5] = [Pose::Front, Pose::Up, Pose::Down, Pose::Left, Pose::Right];

/// What the user must change before the frame can count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fix {
    /// No face in the frame.
    NoFace,
    /// More than one face: only the person enrolling may be in view.
    TwoFaces,
    /// The face is too small: come closer (about an arm's length).
    TooFar,
    /// The face is too large: step back.
    TooClose,
    /// The crop is blurred (movement or focus): hold still.
    Blurry,
    /// The detector is unsure it is a face: uncover it (mask, hand, hair).
    Covered,
    /// The face moved between the frames of one pose.
    Moving,
    /// The head is not in the pose asked for. `got` is the pose it is in,
    /// `None` between poses or beyond them.
    WrongPose { want: Pose, got: Option<Pose> },
    /// The face does not match the one enrolled in the frontal pose.
    NotSamePerson,
}

/// Result of offering one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum EnrolStep {
    /// Good frame; keep holding this pose.
    Hold(Pose),
    /// The previous pose is done; prompt this one.
    NextPose(Pose),
    /// The frame was refused; prompt the fix.
    Retry(Fix),
    /// All poses done; persist this template.
    Done(FaceTemplate),
}

/// Angle windows for each pose class, in degrees (see `quality` for the
/// sign conventions). "Slightly" is taken as 10–35° of yaw and 8–30° of
/// pitch; the frontal window is kept tight because the frontal embedding is
/// the reference the other poses must match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoseLimits {
    pub front_max_yaw: f32,
    pub front_max_pitch: f32,
    pub turn_min_yaw: f32,
    pub turn_max_yaw: f32,
    pub tilt_min_pitch: f32,
    pub tilt_max_pitch: f32,
    /// How far off-axis a turn may drift in pitch, and a tilt in yaw.
    pub off_axis_max: f32,
}

impl Default for PoseLimits {
    fn default() -> Self {
        Self {
            front_max_yaw: 8.0,
            front_max_pitch: 8.0,
            turn_min_yaw: 10.0,
            turn_max_yaw: 35.0,
            tilt_min_pitch: 8.0,
            tilt_max_pitch: 30.0,
            off_axis_max: 12.0,
        }
    }
}

impl PoseLimits {
    /// The pose class of a head pose, `None` if it is in no window.
    pub fn classify(&self, p: &HeadPose) -> Option<Pose> {
        let (ay, ap) = (p.yaw.abs(), p.pitch.abs());
        if ay <= self.front_max_yaw && ap <= self.front_max_pitch {
            return Some(Pose::Front);
        }
        if (self.turn_min_yaw..=self.turn_max_yaw).contains(&ay) && ap <= self.off_axis_max {
            return Some(if p.yaw > 0.0 { Pose::Left } else { Pose::Right });
        }
        if (self.tilt_min_pitch..=self.tilt_max_pitch).contains(&ap) && ay <= self.off_axis_max {
            return Some(if p.pitch > 0.0 { Pose::Up } else { Pose::Down });
        }
        None
    }
}

/// Enrolment thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnrolConfig {
    pub poses: PoseLimits,
    /// Below this detector score the face counts as covered.
    pub min_score: f32,
    /// Minimum eye-band and mouth-band contrast (luma standard deviation of
    /// the aligned crop); below it the face counts as covered. The shared
    /// photos gave 16–52; a flat block over nose and mouth gives ≈ 0.
    pub min_region_contrast: f32,
    /// Face fraction of the frame (see `face_fraction`) below which the
    /// person is too far. With a ~70° lens, a face at an arm's length
    /// (~60 cm) fills about a fifth of the frame; 0.12 is about 1 m.
    pub min_face_fraction: f32,
    /// Above this the person is too close (~25 cm).
    pub max_face_fraction: f32,
    /// Minimum variance of the Laplacian of the aligned crop. Because the
    /// crop is a fixed 112×112, this measures blur relative to face size:
    /// on the shared photos a Gaussian blur of σ ≈ 3.5 % of the interocular
    /// distance gave 20–35, σ ≈ 7 % gave 2–5, and sharp faces gave 90–1700
    /// (27 for a face only 14 px between the eyes, which is itself blurred
    /// once upsampled and is refused as too far anyway).
    pub min_sharpness: f32,
    /// Consecutive good frames required per pose.
    pub hold_frames: u8,
    /// Largest move of the face centre between held frames, as a fraction
    /// of the face width.
    pub max_move: f32,
    /// Cosine every pose must reach against the frontal embedding.
    pub same_person_threshold: f32,
}

impl Default for EnrolConfig {
    fn default() -> Self {
        Self {
            poses: PoseLimits::default(),
            min_score: 0.8,
            min_region_contrast: 10.0,
            min_face_fraction: 0.12,
            max_face_fraction: 0.8,
            min_sharpness: 15.0,
            hold_frames: 2,
            max_move: 0.1,
            same_person_threshold: DEFAULT_MATCH_THRESHOLD,
        }
    }
}

/// `v >= min`, false when either is NaN: a measure that could not be taken
/// never passes a quality gate.
fn at_least(v: f32, min: f32) -> bool {
    v >= min
}

/// The enrolment in progress. See the module docs for the flow.
#[derive(Debug, Clone)]
pub struct FaceEnrolment {
    cfg: EnrolConfig,
    /// Index into [`ENROL_POSES`] of the pose being captured.
    step: usize,
    /// Good frames so far in this pose.
    held: u8,
    /// Face centre of the last held frame (for the movement check).
    last_center: Option<Point>,
    /// One embedding per completed pose, in [`ENROL_POSES`] order.
    done: Vec<Embedding>,
}

impl Default for FaceEnrolment {
    fn default() -> Self {
        Self::new()
    }
}

impl FaceEnrolment {
    /// A new enrolment with default thresholds, expecting [`Pose::Front`].
    pub fn new() -> Self {
        Self::with_config(EnrolConfig::default())
    }

    pub fn with_config(cfg: EnrolConfig) -> Self {
        Self {
            cfg,
            step: 0,
            held: 0,
            last_center: None,
            done: Vec::with_capacity(ENROL_POSES.len()),
        }
    }

    /// The pose to prompt now (`None` once finished).
    pub fn current(&self) -> Option<Pose> {
        ENROL_POSES.get(self.step).copied()
    }

    /// Offers the faces seen in one frame (all of them: more than one is
    /// itself a refusal). Once finished, every further offer returns the
    /// same `Done` template again.
    pub fn offer(&mut self, faces: &[FaceObservation]) -> EnrolStep {
        let Some(want) = self.current() else {
            return self.finish();
        };
        match self.check(want, faces) {
            Err(fix) => {
                self.held = 0;
                self.last_center = None;
                EnrolStep::Retry(fix)
            }
            Ok(face) => self.accept(want, face),
        }
    }

    fn check<'a>(
        &self,
        want: Pose,
        faces: &'a [FaceObservation],
    ) -> Result<&'a FaceObservation, Fix> {
        let face = match faces {
            [] => return Err(Fix::NoFace),
            [one] => one,
            _ => return Err(Fix::TwoFaces),
        };
        let c = &self.cfg;
        let frac = face.face_fraction();
        if !at_least(frac, c.min_face_fraction) {
            return Err(Fix::TooFar);
        }
        if frac > c.max_face_fraction {
            return Err(Fix::TooClose);
        }
        // After the size checks: a distant face also scores low, and
        // "come closer" is then the useful prompt.
        if !(at_least(face.score, c.min_score)
            && at_least(face.region_contrast, c.min_region_contrast))
        {
            return Err(Fix::Covered);
        }
        if !at_least(face.sharpness, c.min_sharpness) {
            return Err(Fix::Blurry);
        }
        let got = c.poses.classify(&face.pose);
        if got != Some(want) {
            return Err(Fix::WrongPose { want, got });
        }
        if let Some(front) = self.done.first() {
            if !at_least(front.cosine(&face.embedding), c.same_person_threshold) {
                return Err(Fix::NotSamePerson);
            }
        }
        if let Some(last) = self.last_center {
            let now = face.bbox.center();
            let moved = (now.x - last.x).hypot(now.y - last.y);
            if moved > c.max_move * face.bbox.w.max(1.0) {
                return Err(Fix::Moving);
            }
        }
        Ok(face)
    }

    fn accept(&mut self, want: Pose, face: &FaceObservation) -> EnrolStep {
        self.held = self.held.saturating_add(1);
        self.last_center = Some(face.bbox.center());
        if self.held < self.cfg.hold_frames.max(1) {
            return EnrolStep::Hold(want);
        }
        self.done.push(face.embedding.clone());
        self.step += 1;
        self.held = 0;
        self.last_center = None;
        match self.current() {
            Some(next) => EnrolStep::NextPose(next),
            None => self.finish(),
        }
    }

    fn finish(&self) -> EnrolStep {
        match FaceTemplate::new(self.done.clone()) {
            Ok(t) => EnrolStep::Done(t),
            // Unreachable with 5 poses (1..=8 embeddings); refuse rather
            // than panic if the pose list ever outgrows the format.
            Err(_) => EnrolStep::Retry(Fix::NoFace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::biometrics::face::quality::{estimate_pose, synthetic_landmarks};
    use crate::biometrics::face::FaceBox;

    fn emb(seed: f32) -> Embedding {
        let raw: Vec<f32> = (0..128).map(|i| ((i as f32 + 1.0) * seed).sin()).collect();
        Embedding::from_raw(&raw).expect("non-zero")
    }

    /// A 320×240 frame with a 80-pixel face in `pose` (synthetic landmarks).
    fn obs(yaw: f32, pitch: f32, e: &Embedding) -> FaceObservation {
        let lm = synthetic_landmarks(yaw, pitch, Point::new(160.0, 110.0), 32.0);
        FaceObservation {
            bbox: FaceBox {
                x: 120.0,
                y: 70.0,
                w: 80.0,
                h: 100.0,
            },
            score: 0.92,
            landmarks: lm,
            frame_size: (320, 240),
            pose: estimate_pose(&lm).expect("pose"),
            sharpness: 300.0,
            region_contrast: 30.0,
            embedding: e.clone(),
        }
    }

    fn pose_angles(p: Pose) -> (f32, f32) {
        match p {
            Pose::Front => (0.0, 0.0),
            Pose::Up => (0.0, 15.0),
            Pose::Down => (0.0, -15.0),
            Pose::Left => (20.0, 0.0),
            Pose::Right => (-20.0, 0.0),
        }
    }

    #[test]
    fn full_enrolment_yields_five_embeddings() {
        let e = emb(0.37);
        let mut en = FaceEnrolment::new();
        let mut last = None;
        for (i, pose) in ENROL_POSES.iter().enumerate() {
            let (y, p) = pose_angles(*pose);
            assert_eq!(en.offer(&[obs(y, p, &e)]), EnrolStep::Hold(*pose));
            last = Some(en.offer(&[obs(y, p, &e)]));
            if let Some(next) = ENROL_POSES.get(i + 1) {
                assert_eq!(last, Some(EnrolStep::NextPose(*next)));
            }
        }
        match last {
            Some(EnrolStep::Done(t)) => assert_eq!(t.embeddings().len(), 5),
            other => panic!("expected Done, got {other:?}"),
        }
    }

    #[test]
    fn wrong_pose_names_want_and_got() {
        let e = emb(0.37);
        let mut en = FaceEnrolment::new();
        assert_eq!(
            en.offer(&[obs(20.0, 0.0, &e)]),
            EnrolStep::Retry(Fix::WrongPose {
                want: Pose::Front,
                got: Some(Pose::Left)
            })
        );
    }

    #[test]
    fn movement_between_held_frames_restarts_the_pose() {
        let e = emb(0.37);
        let mut en = FaceEnrolment::new();
        assert_eq!(en.offer(&[obs(0.0, 0.0, &e)]), EnrolStep::Hold(Pose::Front));
        let mut moved = obs(0.0, 0.0, &e);
        moved.bbox.x += 30.0;
        assert_eq!(en.offer(&[moved]), EnrolStep::Retry(Fix::Moving));
        assert_eq!(en.offer(&[obs(0.0, 0.0, &e)]), EnrolStep::Hold(Pose::Front));
    }

    #[test]
    fn another_person_cannot_continue() {
        let (a, b) = (emb(0.37), emb(1.91));
        assert!(a.cosine(&b) < DEFAULT_MATCH_THRESHOLD);
        let mut en = FaceEnrolment::new();
        en.offer(&[obs(0.0, 0.0, &a)]);
        assert_eq!(
            en.offer(&[obs(0.0, 0.0, &a)]),
            EnrolStep::NextPose(Pose::Up)
        );
        assert_eq!(
            en.offer(&[obs(0.0, 15.0, &b)]),
            EnrolStep::Retry(Fix::NotSamePerson)
        );
    }

    #[test]
    fn quality_refusals() {
        let e = emb(0.37);
        let mut en = FaceEnrolment::new();
        let mut covered = obs(0.0, 0.0, &e);
        covered.score = 0.65;
        assert_eq!(en.offer(&[covered]), EnrolStep::Retry(Fix::Covered));
        let mut blurry = obs(0.0, 0.0, &e);
        blurry.sharpness = 5.0;
        assert_eq!(en.offer(&[blurry]), EnrolStep::Retry(Fix::Blurry));
        let mut close = obs(0.0, 0.0, &e);
        close.bbox.h = 230.0;
        assert_eq!(en.offer(&[close]), EnrolStep::Retry(Fix::TooClose));
        assert_eq!(en.offer(&[]), EnrolStep::Retry(Fix::NoFace));
        assert_eq!(en.current(), Some(Pose::Front));
    }

    #[test]
    fn pose_classes() {
        let l = PoseLimits::default();
        let hp = |yaw, pitch| HeadPose {
            yaw,
            pitch,
            roll: 0.0,
        };
        assert_eq!(l.classify(&hp(0.0, 0.0)), Some(Pose::Front));
        assert_eq!(l.classify(&hp(20.0, 3.0)), Some(Pose::Left));
        assert_eq!(l.classify(&hp(-20.0, -3.0)), Some(Pose::Right));
        assert_eq!(l.classify(&hp(2.0, 15.0)), Some(Pose::Up));
        assert_eq!(l.classify(&hp(2.0, -15.0)), Some(Pose::Down));
        assert_eq!(l.classify(&hp(60.0, 0.0)), None);
        assert_eq!(l.classify(&hp(20.0, 20.0)), None);
    }
}
