//! Quality measures for enrolment: head pose from the 5 landmarks, crop
//! sharpness, face size in the frame.
//!
//! # Head pose from 5 landmarks
//!
//! The landmarks are first rotated about the eye midpoint so the eye line
//! is horizontal (roll removed). With a weak-perspective camera and a face
//! whose eyes and mouth corners lie in one plane and whose nose tip stands
//! `h` in front of it (side view):
//!
//! ```text
//!   eyes ●───────● (interocular d)        eyes ●
//!          ╲ ▲ ╱                                 │╲
//!           nose (depth h)                       │ ● nose, h in front
//!          ╱   ╲                                 │╱
//!   mouth ●─────●                        mouth ●    (eye–mouth D)
//! ```
//!
//! * **yaw**: turning by θ moves the nose sideways by `h·sin θ` while the
//!   eyes close up to `d·cos θ`, so `offset / d' = (h/d)·tan θ` where
//!   `offset` is the nose's distance from the face midline (the midpoint of
//!   eye centre and mouth centre) and `d'` the seen interocular distance.
//! * **pitch**: raising the chin by φ moves the nose up by `h·sin φ` while
//!   eye–mouth shrinks to `D·cos φ`, so the nose's fraction of the way from
//!   eyes to mouth is `r = r₀ − (h/D)·tan φ`.
//!
//! The constants are population averages (`h/d ≈ 0.5`, `h/D ≈ 0.43`)
//! and one calibration (`r₀ = 0.55`, see `NOSE_LEVEL_RATIO`), and the
//! landmarks are a few pixels noisy, so the angles are good to roughly
//! ±5–10°: enough to tell "straight", "slightly up/down/left/right" apart,
//! not a measurement.
//!
//! Sign conventions (for an un-mirrored camera facing the person): yaw > 0
//! is the person turning to **their own left** (nose moves to the image's
//! right); pitch > 0 is the head **raised** (chin up).

use image::RgbImage;

use super::align::Point;
use super::detect::FaceBox;

/// Nose-tip depth in front of the eye/mouth plane over interocular distance.
const NOSE_DEPTH_OVER_IOD: f32 = 0.5;
/// Nose-tip depth over eye-to-mouth distance.
const NOSE_DEPTH_OVER_EYE_MOUTH: f32 = 0.43;
/// Nose position between eyes (0) and mouth (1) in a level face. The
/// ArcFace template says 0.50, but YuNet places the nose-tip landmark lower:
/// on the 11 shared photos of people looking into the camera the ratio came
/// out at 0.53–0.62 (median ≈ 0.56), so 0.55 is taken as level.
const NOSE_LEVEL_RATIO: f32 = 0.55;

/// Head orientation estimated from landmarks, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadPose {
    /// > 0: turned to the person's own left.
    pub yaw: f32,
    /// > 0: head raised.
    pub pitch: f32,
    /// In-plane tilt of the eye line (> 0: clockwise in the image).
    pub roll: f32,
}

/// Estimates the head pose; `None` when the landmarks are degenerate
/// (coincident eyes, mouth at eye level, non-finite values).
pub fn estimate_pose(lm: &[Point; 5]) -> Option<HeadPose> {
    let [el, er, nose, ml, mr] = *lm;
    let eye_c = Point::new((el.x + er.x) / 2.0, (el.y + er.y) / 2.0);
    let roll = (er.y - el.y).atan2(er.x - el.x);
    let (c, s) = (roll.cos(), roll.sin());
    // Rotate by −roll about the eye centre: eye line becomes horizontal.
    let level = |p: Point| {
        let (dx, dy) = (p.x - eye_c.x, p.y - eye_c.y);
        Point::new(c * dx + s * dy, -s * dx + c * dy)
    };
    let (el, er, nose, ml, mr) = (level(el), level(er), level(nose), level(ml), level(mr));
    let iod = er.x - el.x;
    let mouth = Point::new((ml.x + mr.x) / 2.0, (ml.y + mr.y) / 2.0);
    // Eye centre is the origin after levelling.
    let eye_mouth = mouth.y;
    if !(iod.is_finite() && eye_mouth.is_finite()) || iod < 1e-3 || eye_mouth < 1e-3 {
        return None;
    }
    let midline_x = mouth.x / 2.0;
    let yaw = ((nose.x - midline_x) / iod / NOSE_DEPTH_OVER_IOD).atan();
    let ratio = nose.y / eye_mouth;
    let pitch = ((NOSE_LEVEL_RATIO - ratio) / NOSE_DEPTH_OVER_EYE_MOUTH).atan();
    let pose = HeadPose {
        yaw: yaw.to_degrees(),
        pitch: pitch.to_degrees(),
        roll: roll.to_degrees(),
    };
    (pose.yaw.is_finite() && pose.pitch.is_finite()).then_some(pose)
}

/// The 5 landmarks of a model face (ArcFace template geometry, nose depth
/// from the constants above) turned by `yaw`/`pitch` degrees and projected,
/// scaled to interocular `iod` pixels around `center`. The inverse of
/// [`estimate_pose`]; used to build synthetic pose observations.
pub fn synthetic_landmarks(yaw: f32, pitch: f32, center: Point, iod: f32) -> [Point; 5] {
    // Model face in interocular units: eyes at y=0, mouth at y=D, nose at
    // depth h (towards the camera).
    let d_mouth = 40.68 / 35.24;
    let h = NOSE_DEPTH_OVER_IOD;
    let d_nose = NOSE_LEVEL_RATIO * d_mouth;
    let model = [
        (-0.5, 0.0, 0.0),
        (0.5, 0.0, 0.0),
        (0.0, d_nose, h),
        (-0.41, d_mouth, 0.0),
        (0.41, d_mouth, 0.0),
    ];
    let (ty, tp) = (yaw.to_radians(), pitch.to_radians());
    let mut out = [Point::new(0.0, 0.0); 5];
    for (o, &(x, y, z)) in out.iter_mut().zip(&model) {
        // Yaw about the vertical axis: +yaw brings +z towards image +x.
        let (x1, z1) = (x * ty.cos() + z * ty.sin(), -x * ty.sin() + z * ty.cos());
        // Pitch about the horizontal axis: +pitch brings +z towards image −y.
        let y2 = y * tp.cos() - z1 * tp.sin();
        *o = Point::new(center.x + x1 * iod, center.y + y2 * iod);
    }
    out
}

/// Variance of the 4-neighbour Laplacian of the crop's luma, skipping a
/// 16-pixel border (where the warp may have filled black). Sharp faces
/// give hundreds; motion or focus blur gives tens.
pub fn sharpness(crop: &RgbImage) -> f32 {
    const BORDER: u32 = 16;
    let (w, h) = crop.dimensions();
    if w <= 2 * BORDER + 2 || h <= 2 * BORDER + 2 {
        return 0.0;
    }
    let luma = |x: u32, y: u32| {
        let p = crop.get_pixel(x, y).0;
        0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
    };
    let (mut sum, mut sum2, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for y in BORDER..h - BORDER {
        for x in BORDER..w - BORDER {
            let l = luma(x - 1, y) + luma(x + 1, y) + luma(x, y - 1) + luma(x, y + 1)
                - 4.0 * luma(x, y);
            sum += f64::from(l);
            sum2 += f64::from(l) * f64::from(l);
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sum2 / n - mean * mean) as f32
}

/// Regions of the aligned 112×112 crop (x0, y0, x1, y1) that always hold
/// contrast on an uncovered face: the eye band (eyes, brows, lids) and the
/// mouth band (lips against skin). The ArcFace alignment puts the eyes at
/// y ≈ 52 and the mouth at y ≈ 92 for every face, so fixed boxes work.
const EYE_BAND: (u32, u32, u32, u32) = (28, 40, 84, 62);
const MOUTH_BAND: (u32, u32, u32, u32) = (36, 82, 76, 102);

/// Occlusion heuristic: the lower of the luma standard deviations of the
/// eye band and the mouth band of the aligned crop. A hand, a mask or dark
/// glasses over one band make it nearly uniform; an uncovered face keeps
/// features there. (The detector's own score barely drops for a covered
/// mouth: YuNet is trained to find masked faces.)
pub fn region_contrast(crop: &RgbImage) -> f32 {
    let std_dev = |(x0, y0, x1, y1): (u32, u32, u32, u32)| {
        let (mut n, mut sum, mut sum2) = (0.0f64, 0.0f64, 0.0f64);
        for y in y0..y1.min(crop.height()) {
            for x in x0..x1.min(crop.width()) {
                let p = crop.get_pixel(x, y).0;
                let l = 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
                n += 1.0;
                sum += l;
                sum2 += l * l;
            }
        }
        if n == 0.0 {
            return 0.0;
        }
        ((sum2 / n - (sum / n).powi(2)).max(0.0)).sqrt() as f32
    };
    std_dev(EYE_BAND).min(std_dev(MOUTH_BAND))
}

/// Face size relative to the frame: the larger of box width / frame width
/// and box height / frame height.
pub fn face_fraction(bbox: &FaceBox, frame: (u32, u32)) -> f32 {
    let (w, h) = (frame.0.max(1) as f32, frame.1.max(1) as f32);
    (bbox.w / w).max(bbox.h / h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_face_is_straight() {
        // The ArcFace template is symmetric: no yaw, no roll. (Its nose sits
        // higher than YuNet's, so it reads as slightly raised.)
        let p = estimate_pose(&super::super::align::ARCFACE_TEMPLATE).expect("pose");
        assert!(p.yaw.abs() < 2.0 && p.roll.abs() < 1.0, "{p:?}");
        assert!((0.0..10.0).contains(&p.pitch), "{p:?}");
    }

    #[test]
    fn synthetic_poses_are_recovered() {
        for (yaw, pitch) in [
            (0.0, 0.0),
            (20.0, 0.0),
            (-20.0, 0.0),
            (0.0, 15.0),
            (0.0, -15.0),
            (25.0, -10.0),
        ] {
            let lm = synthetic_landmarks(yaw, pitch, Point::new(160.0, 120.0), 40.0);
            let p = estimate_pose(&lm).expect("pose");
            assert!(
                (p.yaw - yaw).abs() < 3.0 && (p.pitch - pitch).abs() < 3.0,
                "want {yaw},{pitch} got {p:?}"
            );
        }
    }

    #[test]
    fn pose_is_roll_invariant() {
        let lm = synthetic_landmarks(20.0, 10.0, Point::new(0.0, 0.0), 40.0);
        let r = 25f32.to_radians();
        let rolled = lm.map(|p| {
            Point::new(
                p.x * r.cos() - p.y * r.sin() + 100.0,
                p.x * r.sin() + p.y * r.cos() + 80.0,
            )
        });
        let p = estimate_pose(&rolled).expect("pose");
        assert!(
            (p.yaw - 20.0).abs() < 3.0 && (p.pitch - 10.0).abs() < 3.0,
            "{p:?}"
        );
        // Roll is the eye line's tilt, which yaw × pitch also tilts a little.
        assert!((p.roll - 25.0).abs() < 5.0, "{p:?}");
    }

    #[test]
    fn mirrored_face_flips_yaw() {
        let lm = synthetic_landmarks(20.0, 0.0, Point::new(0.0, 0.0), 40.0);
        // Mirror x and swap left/right landmarks, as a flipped image would.
        let m = |p: Point| Point::new(-p.x, p.y);
        let mirrored = [m(lm[1]), m(lm[0]), m(lm[2]), m(lm[4]), m(lm[3])];
        let p = estimate_pose(&mirrored).expect("pose");
        assert!((p.yaw + 20.0).abs() < 3.0, "{p:?}");
    }

    #[test]
    fn degenerate_landmarks_have_no_pose() {
        assert!(estimate_pose(&[Point::new(1.0, 1.0); 5]).is_none());
    }

    #[test]
    fn uniform_band_has_no_contrast() {
        let mut img = RgbImage::from_fn(112, 112, |x, y| {
            let v = ((x * 7 + y * 13) % 90 + 80) as u8;
            image::Rgb([v, v, v])
        });
        let open = region_contrast(&img);
        for y in 80..112 {
            for x in 0..112 {
                img.put_pixel(x, y, image::Rgb([120, 120, 120]));
            }
        }
        assert!(open > 10.0 && region_contrast(&img) < 1.0);
    }

    #[test]
    fn blur_lowers_sharpness() {
        let mut img = RgbImage::new(112, 112);
        for (x, y, p) in img.enumerate_pixels_mut() {
            let v = if (x / 4 + y / 4) % 2 == 0 { 220 } else { 30 };
            p.0 = [v, v, v];
        }
        let blurred = image::imageops::blur(&img, 3.0);
        assert!(sharpness(&img) > 10.0 * sharpness(&blurred));
    }
}
