//! Face enrolment (B-4.5) on real detections of the shared photos, with the
//! refusal cases built from them at run time (nothing derived is committed):
//!
//! * front: `kit_harington/1.jpg` as is (yaw ≈ 0);
//! * turn right / left: `kit_harington/2.jpg` (a real ≈ 20° turn to his
//!   right) and the same photo mirrored (a real image transform: ≈ 20° to
//!   his left);
//! * raise / lower head: no photo shows a pitched head, so these two are
//!   landmark-synthetic observations: the real frontal observation (its
//!   embedding, sharpness, box) with landmarks of a model face pitched by
//!   ±15° (`synthetic_landmarks`);
//! * two faces: two photos side by side; no face: a flat grey frame and a
//!   noise frame; too far: a photo shrunk into a large empty canvas;
//!   blurry: a Gaussian blur; covered: a grey block over nose and mouth;
//!   another person: Rose Leslie offered after Kit Harington's front pose.
//!
//! The shared directory is `$LATCHD_SHARED`, else `../shared`.
//! Run: `cargo test --test it face_enrol:: -- --nocapture`.

use image::{imageops, Rgb, RgbImage};
use latchd::biometrics::face::{
    estimate_pose, synthetic_landmarks, EnrolStep, FaceEnrolment, FaceObservation, FaceRecognizer,
    FaceTemplate, Fix, Point, Pose, DEFAULT_MATCH_THRESHOLD,
};

use crate::common::shared::{photo, shared_dir};

fn recognizer() -> FaceRecognizer {
    let models = shared_dir().join("models");
    FaceRecognizer::load(&models, DEFAULT_MATCH_THRESHOLD)
        .unwrap_or_else(|e| panic!("loading models from {}: {e}", models.display()))
}

/// A photo scaled to `width` pixels (keeps the test fast; a lock camera
/// gives 320–640 pixel frames anyway).
fn scaled(img: &RgbImage, width: u32) -> RgbImage {
    let h = (img.height() as f32 * width as f32 / img.width() as f32).round() as u32;
    imageops::resize(img, width, h.max(1), imageops::FilterType::Triangle)
}

fn observe(rec: &FaceRecognizer, img: &RgbImage) -> Vec<FaceObservation> {
    rec.observe(img).expect("inference")
}

fn one(rec: &FaceRecognizer, img: &RgbImage, what: &str) -> FaceObservation {
    let faces = observe(rec, img);
    assert_eq!(faces.len(), 1, "{what}: expected one face");
    let f = faces[0].clone();
    println!(
        "{what:28} score {:.3} frac {:.2} yaw {:>6.1} pitch {:>6.1} sharp {:>6.0} contrast {:>5.1}",
        f.score,
        f.face_fraction(),
        f.pose.yaw,
        f.pose.pitch,
        f.sharpness,
        f.region_contrast
    );
    f
}

/// The real observation with its landmarks replaced by a model face
/// pitched by `pitch` degrees (same eye centre and interocular distance).
fn pitched(real: &FaceObservation, pitch: f32) -> FaceObservation {
    let lm = &real.landmarks;
    let eye_c = Point::new((lm[0].x + lm[1].x) / 2.0, (lm[0].y + lm[1].y) / 2.0);
    let iod = (lm[1].x - lm[0].x).hypot(lm[1].y - lm[0].y);
    let synth = synthetic_landmarks(0.0, pitch, eye_c, iod);
    let mut o = real.clone();
    o.landmarks = synth;
    o.pose = estimate_pose(&synth).expect("pose");
    o
}

/// Offers a frame until the pose completes (the default holds 2 frames).
fn hold(en: &mut FaceEnrolment, faces: &[FaceObservation], pose: Pose) -> EnrolStep {
    assert_eq!(en.offer(faces), EnrolStep::Hold(pose));
    en.offer(faces)
}

#[test]
fn b_4_5_five_pose_enrolment_completes_and_matches() {
    let rec = recognizer();
    let front_img = scaled(&photo("kit_harington/1.jpg"), 640);
    let right_img = scaled(&photo("kit_harington/2.jpg"), 480);
    let left_img = imageops::flip_horizontal(&right_img);
    let front = one(&rec, &front_img, "front (kit/1)");
    let right = one(&rec, &right_img, "right (kit/2)");
    let left = one(&rec, &left_img, "left (kit/2 mirrored)");
    let up = pitched(&front, 15.0);
    let down = pitched(&front, -15.0);
    println!(
        "up (synthetic)   pitch {:.1}; down (synthetic) pitch {:.1}",
        up.pose.pitch, down.pose.pitch
    );

    let mut en = FaceEnrolment::new();
    assert_eq!(en.current(), Some(Pose::Front));
    // Asking for the front pose while the head is turned names both.
    assert_eq!(
        en.offer(std::slice::from_ref(&right)),
        EnrolStep::Retry(Fix::WrongPose {
            want: Pose::Front,
            got: Some(Pose::Right)
        })
    );
    assert_eq!(
        hold(&mut en, std::slice::from_ref(&front), Pose::Front),
        EnrolStep::NextPose(Pose::Up)
    );
    assert_eq!(
        hold(&mut en, &[up], Pose::Up),
        EnrolStep::NextPose(Pose::Down)
    );
    assert_eq!(
        hold(&mut en, &[down], Pose::Down),
        EnrolStep::NextPose(Pose::Left)
    );
    assert_eq!(
        hold(&mut en, &[left], Pose::Left),
        EnrolStep::NextPose(Pose::Right)
    );
    let template = match hold(&mut en, &[right], Pose::Right) {
        EnrolStep::Done(t) => t,
        other => panic!("expected Done, got {other:?}"),
    };
    assert_eq!(template.embeddings().len(), 5);

    // The template survives the byte format and recognises Kit, not Rose.
    let stored = FaceTemplate::from_bytes(&template.to_bytes()).expect("round trip");
    let templates = [("kit", stored)];
    let kit = one(&rec, &front_img, "probe kit/1");
    assert_eq!(
        rec.match_templates(&kit.embedding, &templates).map(|m| m.0),
        Some("kit")
    );
    let rose = one(
        &rec,
        &scaled(&photo("rose_leslie/1.jpg"), 640),
        "probe rose/1",
    );
    assert_eq!(rec.match_templates(&rose.embedding, &templates), None);
}

#[test]
fn b_4_5_refusals_say_what_to_fix() {
    let rec = recognizer();
    let kit = scaled(&photo("kit_harington/1.jpg"), 640);
    let rose = scaled(&photo("rose_leslie/1.jpg"), 640);
    let mut en = FaceEnrolment::new();

    // No face: flat grey and deterministic noise.
    let grey = RgbImage::from_pixel(320, 240, Rgb([128, 128, 128]));
    let mut seed = 0x2545_f491u32;
    let noise = RgbImage::from_fn(320, 240, |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let b = seed.to_le_bytes();
        Rgb([b[0], b[1], b[2]])
    });
    for img in [&grey, &noise] {
        assert_eq!(en.offer(&observe(&rec, img)), EnrolStep::Retry(Fix::NoFace));
    }

    // Two faces: Kit and Rose side by side.
    let h = 400;
    let (a, b) = (
        imageops::resize(
            &kit,
            kit.width() * h / kit.height(),
            h,
            imageops::FilterType::Triangle,
        ),
        imageops::resize(
            &rose,
            rose.width() * h / rose.height(),
            h,
            imageops::FilterType::Triangle,
        ),
    );
    let mut pair = RgbImage::new(a.width() + b.width(), h);
    imageops::replace(&mut pair, &a, 0, 0);
    imageops::replace(&mut pair, &b, i64::from(a.width()), 0);
    let faces = observe(&rec, &pair);
    println!("two-face frame: {} faces", faces.len());
    assert_eq!(en.offer(&faces), EnrolStep::Retry(Fix::TwoFaces));

    // Too far: Kit shrunk to 200 px wide in a 960×720 canvas.
    let mut far = RgbImage::from_pixel(960, 720, Rgb([90, 90, 90]));
    imageops::replace(&mut far, &scaled(&kit, 200), 380, 260);
    let f = one(&rec, &far, "too far (kit in 960x720)");
    assert!(f.face_fraction() < 0.12);
    assert_eq!(en.offer(&[f]), EnrolStep::Retry(Fix::TooFar));

    // Blurry: a Gaussian blur as motion/focus blur.
    let blurred = imageops::blur(&kit, 4.0);
    let f = one(&rec, &blurred, "blurred (sigma 4)");
    assert_eq!(en.offer(&[f]), EnrolStep::Retry(Fix::Blurry));

    // Covered: a grey block over nose and mouth (a mask or a hand).
    let f = one(&rec, &kit, "kit/1 uncovered");
    let lm = f.landmarks;
    let mut covered = kit.clone();
    let (x0, x1) = (
        f.bbox.x.max(0.0) as u32,
        (f.bbox.x + f.bbox.w).min(kit.width() as f32) as u32,
    );
    let (y0, y1) = (
        ((lm[0].y + lm[2].y) / 2.0) as u32,
        (f.bbox.y + f.bbox.h).min(kit.height() as f32) as u32,
    );
    for y in y0..y1 {
        for x in x0..x1 {
            covered.put_pixel(x, y, Rgb([128, 128, 128]));
        }
    }
    let faces = observe(&rec, &covered);
    println!(
        "covered: {:?}",
        faces
            .iter()
            .map(|f| (f.score, f.region_contrast))
            .collect::<Vec<_>>()
    );
    let step = en.offer(&faces);
    assert!(
        matches!(step, EnrolStep::Retry(Fix::Covered | Fix::NoFace)),
        "a covered face must not count: {step:?}"
    );

    // Nothing above advanced the enrolment.
    assert_eq!(en.current(), Some(Pose::Front));

    // Another person cannot finish Kit's enrolment.
    assert_eq!(
        hold(&mut en, std::slice::from_ref(&f), Pose::Front),
        EnrolStep::NextPose(Pose::Up)
    );
    let rose_up = pitched(&one(&rec, &rose, "rose/1"), 15.0);
    assert_eq!(en.offer(&[rose_up]), EnrolStep::Retry(Fix::NotSamePerson));
    assert_eq!(en.current(), Some(Pose::Up));
}
