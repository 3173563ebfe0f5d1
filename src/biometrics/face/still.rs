//! "Nothing moved": when a frame looks like the one the detector last ran
//! on, the faces are where they were, and the detector (the larger half of
//! a frame's cost) need not run again. The faces are still aligned and
//! embedded on the new frame, so what is matched is always this frame's
//! pixels.
//!
//! ```text
//!  frame ──► 32×24 grey block means ──► every cell within STILL_DELTA of
//!                                        the frame the detections came from?
//!                                          yes ─► reuse its detections
//!                                          no  ─► run the detector, remember this frame
//! ```
//!
//! Compared with the frame the detections came from, not with the
//! previous frame, so a slow drift (each step below the limit) cannot add
//! up to a stale box. The limit is far below the motion trigger's
//! (`video::motion`, 24 levels on 5 % of the cells): a face that shifts
//! by a pixel or two changes the cells on its edges by more than this,
//! while sensor noise, averaged over a cell, stays well under it. (This
//! does not reuse `video::motion::thumbnail`: biometrics may not depend on
//! video, see `scripts/check-hardware-layers.sh`.)
use image::RgbImage;

use super::detect::Detection;

/// Thumbnail grid, in cells.
pub const STILL_GRID: (u32, u32) = (32, 24);
/// Largest change of a cell's mean grey level that still counts as "the
/// same scene".
pub const STILL_DELTA: u8 = 3;

/// What the detector found on the last frame it ran on, and what that
/// frame looked like. Start with `SceneMemo::default()` for each stream of
/// frames.
#[derive(Debug, Clone, Default)]
pub struct SceneMemo {
    seen: Option<Seen>,
}

#[derive(Debug, Clone)]
struct Seen {
    size: (u32, u32),
    thumb: Vec<u8>,
    detections: Vec<Detection>,
}

impl SceneMemo {
    /// The detections of the remembered frame when `frame` shows the same
    /// scene; otherwise `None` (and `thumb` is the new frame's thumbnail,
    /// for [`SceneMemo::remember`]).
    pub fn recall(&self, frame: &RgbImage) -> (Option<Vec<Detection>>, Vec<u8>) {
        let thumb = grey_thumbnail(frame);
        let same = self.seen.as_ref().is_some_and(|s| {
            s.size == frame.dimensions()
                && s.thumb.len() == thumb.len()
                && s.thumb
                    .iter()
                    .zip(&thumb)
                    .all(|(a, b)| a.abs_diff(*b) <= STILL_DELTA)
        });
        let dets = if same {
            self.seen.as_ref().map(|s| s.detections.clone())
        } else {
            None
        };
        (dets, thumb)
    }

    /// Remembers the detector's result on a frame of `size` with `thumb`.
    pub fn remember(&mut self, size: (u32, u32), thumb: Vec<u8>, detections: &[Detection]) {
        self.seen = Some(Seen {
            size,
            thumb,
            detections: detections.to_vec(),
        });
    }
}

/// Mean grey level (BT.601 luma) of each cell of a [`STILL_GRID`] over
/// the frame; every other pixel in each direction is read.
pub fn grey_thumbnail(frame: &RgbImage) -> Vec<u8> {
    let (fw, fh) = frame.dimensions();
    let (gw, gh) = STILL_GRID;
    let mut out = Vec::with_capacity((gw * gh) as usize);
    if fw == 0 || fh == 0 {
        return out;
    }
    let raw = frame.as_raw();
    let span = |i: u32, cells: u32, len: u32| {
        let a = (u64::from(i) * u64::from(len) / u64::from(cells)) as u32;
        let b = (u64::from(i + 1) * u64::from(len) / u64::from(cells)) as u32;
        let a = a.min(len - 1);
        (a, b.max(a + 1).min(len))
    };
    for cy in 0..gh {
        let (y0, y1) = span(cy, gh, fh);
        for cx in 0..gw {
            let (x0, x1) = span(cx, gw, fw);
            let (mut sum, mut n) = (0u32, 0u32);
            for y in (y0..y1).step_by(2) {
                for x in (x0..x1).step_by(2) {
                    let i = ((y * fw + x) * 3) as usize;
                    let (r, g, b) = (raw[i], raw[i + 1], raw[i + 2]);
                    // Integer weights summing to 256.
                    sum += (77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b)) >> 8;
                    n += 1;
                }
            }
            out.push((sum / n.max(1)) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::biometrics::face::{FaceBox, Point};

    fn det() -> Detection {
        Detection {
            bbox: FaceBox {
                x: 100.0,
                y: 30.0,
                w: 50.0,
                h: 60.0,
            },
            score: 0.9,
            landmarks: [Point::new(110.0, 50.0); 5],
        }
    }

    /// A frame with a bright square at `x` on grey.
    fn frame(x: u32, noise: u8) -> RgbImage {
        RgbImage::from_fn(320, 240, |px, py| {
            let base = if (x..x + 60).contains(&px) && (60..120).contains(&py) {
                200
            } else {
                90
            };
            // Deterministic "sensor noise" of ±noise.
            let n = ((px * 7 + py * 13) % (2 * u32::from(noise) + 1)) as u8;
            image::Rgb([base + n - noise; 3])
        })
    }

    #[test]
    fn the_same_scene_with_noise_reuses_the_detections() {
        let mut memo = SceneMemo::default();
        let (none, thumb) = memo.recall(&frame(100, 0));
        assert!(none.is_none(), "nothing remembered yet");
        memo.remember((320, 240), thumb, &[det()]);
        let (again, _) = memo.recall(&frame(100, 2));
        assert_eq!(again, Some(vec![det()]));
    }

    #[test]
    fn a_shift_of_two_pixels_runs_the_detector_again() {
        let mut memo = SceneMemo::default();
        let (_, thumb) = memo.recall(&frame(100, 0));
        memo.remember((320, 240), thumb, &[det()]);
        assert_eq!(memo.recall(&frame(102, 0)).0, None);
    }

    #[test]
    fn a_frame_of_another_size_is_another_scene() {
        let mut memo = SceneMemo::default();
        let (_, thumb) = memo.recall(&frame(100, 0));
        memo.remember((320, 240), thumb, &[det()]);
        let small = image::imageops::resize(
            &frame(100, 0),
            160,
            120,
            image::imageops::FilterType::Triangle,
        );
        assert_eq!(memo.recall(&small).0, None);
    }
}
