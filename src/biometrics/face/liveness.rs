//! Liveness ("is this a live face, not a picture of one?") from a second
//! sensor frame. Off by default ([`LivenessMode::Off`]): **without it a
//! printed photo or a phone showing an enrolled user's face can unlock.**
//!
//! ```text
//!   RGB frame ──▶ detector + embedder ──▶ a template matches (slot, face box)
//!                                              │ only then:
//!   IR source grabs one frame ◄────────────────┘  (biometrics::face::worker::IrSource:
//!        │                                          V4L2 `[face] ir_camera`, or the
//!        │                                          sim's `[face] sim_ir_dir` picture)
//!        ▼ register_box: face box scaled from RGB to IR pixels
//!   IrLiveness::check: centre of the box: mean, spread, saturation
//!        ├─ Live ──────────────▶ Recognised (the door may open)
//!        ├─ Rejected(reason) ──▶ NotRecognised: one failed verification (B-7.1)
//!        └─ no IR frame ───────▶ module fault: fail closed, never a pass
//! ```
//!
//! The basic IR check relies on two physical facts: skin under active
//! near-IR light reflects strongly with visible texture (eyes, brows,
//! nostrils and hair are darker than cheeks and forehead), while a phone or
//! tablet screen emits nothing in near-IR and shows up dark and flat, and a
//! glossy screen or photo under the flash shows a saturated glare patch.
//!
//! Registration: the IR frame is assumed to show the same field of view as
//! the RGB frame (sensors side by side, same lens angle), so a face box
//! maps across by scaling each axis by the ratio of the frame sizes
//! ([`register_box`]); the parallax between two sensors a few centimetres
//! apart is small against the 60 % centre of a face the check reads. A
//! board whose IR lens sees a different angle needs a calibrated mapping
//! instead.
//!
//! IR illumination: on a real board the board file's
//! `outputs.ir_illuminator` line is lit for the grab only
//! (`board::linux::ir_camera`); a UVC IR module lights its own LED while it
//! streams. Without illumination every face reads as too dark and is
//! refused (fail closed).
//!
//! Limits, plainly: a matte paper print reflects IR much as skin does and
//! can pass this check; so can a mask. It stops screen replays and glossy
//! prints, not a determined attacker. The thresholds of
//! [`IrLiveness::default`] are set on synthetic frames and must be tuned
//! on the product's IR camera. A depth frame (structured light / ToF)
//! check — a real face is a ~3–5 cm relief, a print is flat — is the
//! stronger check; the [`LivenessCheck`] trait takes a depth frame for
//! such an implementation, and [`IrLiveness`] refuses one it cannot judge.

use image::{GrayImage, ImageBuffer, Luma};
use serde::Deserialize;

use super::detect::FaceBox;

/// Configured liveness mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LivenessMode {
    /// No check: a photo may pass. Accepted in the config only with
    /// `allow_without_liveness = true` (the config's default is `Ir`,
    /// `FaceConfig::default`). Written `"none"` in the config (`"off"` is
    /// accepted too).
    #[default]
    #[serde(rename = "none", alias = "off")]
    Off,
    /// [`IrLiveness`] on an IR frame captured with the IR LED on.
    Ir,
}

impl LivenessMode {
    /// The name written in the config.
    pub fn name(self) -> &'static str {
        match self {
            LivenessMode::Off => "none",
            LivenessMode::Ir => "ir",
        }
    }
}

/// A frame from the liveness sensor, registered to the RGB frame: the face
/// box given with it is in this frame's pixels (see [`register_box`] for
/// sensors of different resolutions).
#[derive(Debug, Clone, Copy)]
pub enum LivenessFrame<'a> {
    /// 8-bit near-IR intensity.
    Ir(&'a GrayImage),
    /// Depth in millimetres (0 = no reading).
    Depth(&'a ImageBuffer<Luma<u16>, Vec<u16>>),
}

/// Why a face was judged not live.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpoofReason {
    /// The face region is dark under IR (a screen emits no near-IR).
    TooDark { mean: f32 },
    /// The face region is uniform (no facial relief or texture).
    Flat { std_dev: f32 },
    /// Much of the face region is saturated (glare off glass or gloss).
    Glare { saturated_fraction: f32 },
    /// The face box does not lie within the liveness frame.
    OutOfFrame,
    /// This check cannot judge this kind of frame.
    UnsupportedFrame,
}

impl std::fmt::Display for SpoofReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoofReason::TooDark { mean } => write!(
                f,
                "too dark under IR (mean {mean:.0}): a screen or no IR light"
            ),
            SpoofReason::Flat { std_dev } => {
                write!(f, "flat under IR (spread {std_dev:.1}): no facial relief")
            }
            SpoofReason::Glare { saturated_fraction } => write!(
                f,
                "IR glare on {:.0} % of the face: glass or a glossy print",
                saturated_fraction * 100.0
            ),
            SpoofReason::OutOfFrame => f.write_str("the face is not inside the IR frame"),
            SpoofReason::UnsupportedFrame => f.write_str("this check cannot judge that frame"),
        }
    }
}

/// The face box of an RGB frame of size `rgb` in the pixels of a liveness
/// frame of size `ir` that sees the same field of view (see the module
/// docs). A zero-sized RGB frame gives a non-finite box, which the check
/// refuses as out of frame.
pub fn register_box(face: &FaceBox, rgb: (u32, u32), ir: (u32, u32)) -> FaceBox {
    let sx = ir.0 as f32 / rgb.0 as f32;
    let sy = ir.1 as f32 / rgb.1 as f32;
    FaceBox {
        x: face.x * sx,
        y: face.y * sy,
        w: face.w * sx,
        h: face.h * sy,
    }
}

/// Verdict of a liveness check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LivenessVerdict {
    Live,
    Rejected(SpoofReason),
}

/// A liveness check. Implementations must fail closed: a frame they cannot
/// judge is `Rejected`.
pub trait LivenessCheck: Send + Sync {
    fn check(&self, face: &FaceBox, frame: LivenessFrame<'_>) -> LivenessVerdict;
}

/// The basic IR-reflectance check (see the module docs for what it does
/// and does not stop).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IrLiveness {
    /// Minimum mean IR intensity of the face centre (0–255).
    pub min_mean: f32,
    /// Minimum standard deviation of the face centre.
    pub min_std_dev: f32,
    /// Maximum fraction of face-centre pixels at ≥ 250.
    pub max_saturated: f32,
}

impl Default for IrLiveness {
    fn default() -> Self {
        Self {
            min_mean: 50.0,
            min_std_dev: 8.0,
            max_saturated: 0.2,
        }
    }
}

impl LivenessCheck for IrLiveness {
    fn check(&self, face: &FaceBox, frame: LivenessFrame<'_>) -> LivenessVerdict {
        let LivenessFrame::Ir(ir) = frame else {
            return LivenessVerdict::Rejected(SpoofReason::UnsupportedFrame);
        };
        if ![face.x, face.y, face.w, face.h]
            .iter()
            .all(|v| v.is_finite())
        {
            return LivenessVerdict::Rejected(SpoofReason::OutOfFrame);
        }
        // The central 60 % of the box: skin and features, little background.
        let (fw, fh) = (ir.width() as f32, ir.height() as f32);
        let x0 = (face.x + 0.2 * face.w).max(0.0);
        let y0 = (face.y + 0.2 * face.h).max(0.0);
        let x1 = (face.x + 0.8 * face.w).min(fw);
        let y1 = (face.y + 0.8 * face.h).min(fh);
        if !(x1 - x0 >= 4.0 && y1 - y0 >= 4.0) {
            return LivenessVerdict::Rejected(SpoofReason::OutOfFrame);
        }
        let (mut n, mut sum, mut sum2, mut sat) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for y in y0 as u32..y1 as u32 {
            for x in x0 as u32..x1 as u32 {
                let v = f64::from(ir.get_pixel(x, y).0[0]);
                n += 1.0;
                sum += v;
                sum2 += v * v;
                if v >= 250.0 {
                    sat += 1.0;
                }
            }
        }
        let mean = (sum / n) as f32;
        let std_dev = ((sum2 / n - (sum / n).powi(2)).max(0.0)).sqrt() as f32;
        let saturated_fraction = (sat / n) as f32;
        if mean < self.min_mean {
            LivenessVerdict::Rejected(SpoofReason::TooDark { mean })
        } else if saturated_fraction > self.max_saturated {
            LivenessVerdict::Rejected(SpoofReason::Glare { saturated_fraction })
        } else if std_dev < self.min_std_dev {
            LivenessVerdict::Rejected(SpoofReason::Flat { std_dev })
        } else {
            LivenessVerdict::Live
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Synthetic IR frames: these test the arithmetic and the decisions, not
    // the physics; the thresholds need tuning on the real IR camera.
    const FACE: FaceBox = FaceBox {
        x: 100.0,
        y: 60.0,
        w: 100.0,
        h: 120.0,
    };

    fn frame(f: impl Fn(u32, u32) -> u8) -> GrayImage {
        GrayImage::from_fn(320, 240, |x, y| Luma([f(x, y)]))
    }

    #[test]
    fn textured_bright_face_is_live() {
        // Bright skin with darker eye/brow bands.
        let ir = frame(|x, y| {
            if (y / 12) % 3 == 0 {
                80
            } else {
                150 + (x % 7) as u8
            }
        });
        assert_eq!(
            IrLiveness::default().check(&FACE, LivenessFrame::Ir(&ir)),
            LivenessVerdict::Live
        );
    }

    #[test]
    fn screen_replay_is_dark() {
        let ir = frame(|x, _| 10 + (x % 5) as u8);
        assert!(matches!(
            IrLiveness::default().check(&FACE, LivenessFrame::Ir(&ir)),
            LivenessVerdict::Rejected(SpoofReason::TooDark { .. })
        ));
    }

    #[test]
    fn flat_and_glaring_frames_are_rejected() {
        let flat = frame(|_, _| 140);
        assert!(matches!(
            IrLiveness::default().check(&FACE, LivenessFrame::Ir(&flat)),
            LivenessVerdict::Rejected(SpoofReason::Flat { .. })
        ));
        let glare = frame(|x, _| if x < 170 { 255 } else { 120 });
        assert!(matches!(
            IrLiveness::default().check(&FACE, LivenessFrame::Ir(&glare)),
            LivenessVerdict::Rejected(SpoofReason::Glare { .. })
        ));
    }

    #[test]
    fn unjudgeable_input_fails_closed() {
        let depth = ImageBuffer::<Luma<u16>, Vec<u16>>::new(320, 240);
        let c = IrLiveness::default();
        assert_eq!(
            c.check(&FACE, LivenessFrame::Depth(&depth)),
            LivenessVerdict::Rejected(SpoofReason::UnsupportedFrame)
        );
        let ir = frame(|_, _| 150);
        for bad in [
            FaceBox { x: 400.0, ..FACE },
            FaceBox {
                w: f32::NAN,
                ..FACE
            },
        ] {
            assert_eq!(
                c.check(&bad, LivenessFrame::Ir(&ir)),
                LivenessVerdict::Rejected(SpoofReason::OutOfFrame)
            );
        }
    }

    #[test]
    fn a_box_maps_to_an_ir_frame_of_another_size() {
        // A 640×480 RGB frame and a 320×240 IR frame of the same view.
        let ir = register_box(&FACE, (640, 480), (320, 240));
        assert_eq!(
            ir,
            FaceBox {
                x: 50.0,
                y: 30.0,
                w: 50.0,
                h: 60.0
            }
        );
        assert_eq!(register_box(&FACE, (320, 240), (320, 240)), FACE);
        // A degenerate RGB size cannot be mapped, and the check refuses it.
        let bad = register_box(&FACE, (0, 0), (320, 240));
        let lit = frame(|x, _| 120 + (x % 40) as u8);
        assert_eq!(
            IrLiveness::default().check(&bad, LivenessFrame::Ir(&lit)),
            LivenessVerdict::Rejected(SpoofReason::OutOfFrame)
        );
        // The mapped box reads the face, not the background: a bright
        // textured face in the IR frame's corner where the box lands.
        let small = GrayImage::from_fn(320, 240, |x, y| {
            let inside = (50..100).contains(&x) && (30..90).contains(&y);
            Luma([if inside { 120 + (x % 9) as u8 * 6 } else { 5 }])
        });
        assert_eq!(
            IrLiveness::default().check(&ir, LivenessFrame::Ir(&small)),
            LivenessVerdict::Live
        );
        assert!(matches!(
            IrLiveness::default().check(&FACE, LivenessFrame::Ir(&small)),
            LivenessVerdict::Rejected(_)
        ));
    }

    #[test]
    fn reasons_read_as_sentences() {
        let r = SpoofReason::TooDark { mean: 12.4 }.to_string();
        assert!(r.contains("too dark") && r.contains("12"), "{r}");
        let r = SpoofReason::Glare {
            saturated_fraction: 0.42,
        }
        .to_string();
        assert!(r.contains("42 %"), "{r}");
    }

    #[test]
    fn mode_parses_and_defaults_off() {
        assert_eq!(LivenessMode::default(), LivenessMode::Off);
        #[derive(Deserialize)]
        struct W {
            m: LivenessMode,
        }
        let w: W = toml::from_str("m = \"ir\"").expect("valid");
        assert_eq!(w.m, LivenessMode::Ir);
    }
}
