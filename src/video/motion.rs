//! Frame-motion trigger: someone walking up to the door starts a face
//! recognition attempt without a keypad touch (B-6.2, "automatic trigger").
//!
//! ```text
//!  FrameRing ──(at most every MIN_INTERVAL)──► thumbnail: 32×24 grey, block means
//!                                                 │ compare with the previous thumbnail
//!                                                 ▼
//!            changed cells (|Δ| ≥ cell_delta) / all cells ≥ min_fraction ?
//!                 armed ──yes──► TRIGGER, disarm ──► Input::Touch to the engine
//!                 disarmed: re-armed after `rearm_quiet` quiet samples in a row
//! ```
//!
//! Why a heavily downscaled grey difference: it is cheap enough for a
//! small SoC at a few samples a second, and block means wash out sensor
//! noise and JPEG artefacts. The debounce (one trigger, then silence
//! until the scene has been still for a while) keeps a person moving in
//! front of the camera from firing attempt after attempt: each attempt
//! that sees a face and no match counts towards the lockout (B-7.1).
//!
//! Limits: a global light change (a cloud, a car's headlights) also looks
//! like motion; the attempt it starts sees no face and counts nothing,
//! but it wakes the keypad. A PIR or radar input is the better trigger
//! where the board has one.
use std::time::Duration;

use image::RgbImage;

use crate::board::frames::FrameRing;

/// Frames are analysed no more often than this.
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionConfig {
    /// Thumbnail size in cells.
    pub grid: (u32, u32),
    /// A cell whose mean grey level moved by at least this much changed.
    pub cell_delta: u8,
    /// Fraction of cells that must change for motion.
    pub min_fraction: f32,
    /// Quiet samples in a row before the detector can fire again.
    pub rearm_quiet: u32,
}

impl Default for MotionConfig {
    fn default() -> Self {
        MotionConfig {
            grid: (32, 24),
            cell_delta: 24,
            min_fraction: 0.05,
            rearm_quiet: 5,
        }
    }
}

/// Grey block means of `frame` on a `w`×`h` grid (cells cover the frame
/// evenly; a frame smaller than the grid repeats pixels).
pub fn thumbnail(frame: &RgbImage, w: u32, h: u32) -> Vec<u8> {
    let (fw, fh) = frame.dimensions();
    let mut out = Vec::with_capacity((w * h) as usize);
    if fw == 0 || fh == 0 || w == 0 || h == 0 {
        return out;
    }
    for cy in 0..h {
        let (y0, y1) = span(cy, h, fh);
        for cx in 0..w {
            let (x0, x1) = span(cx, w, fw);
            let (mut sum, mut n) = (0u64, 0u64);
            // Every other pixel in each direction: a quarter of the work,
            // the same mean for anything larger than a pixel.
            for y in (y0..y1).step_by(2) {
                for x in (x0..x1).step_by(2) {
                    let [r, g, b] = frame.get_pixel(x, y).0;
                    // ITU-R BT.601 luma, integer weights summing to 256.
                    sum += (77 * u64::from(r) + 150 * u64::from(g) + 29 * u64::from(b)) >> 8;
                    n += 1;
                }
            }
            out.push((sum / n.max(1)) as u8);
        }
    }
    out
}

/// Pixel range of cell `i` of `cells` over `len` pixels (never empty).
fn span(i: u32, cells: u32, len: u32) -> (u32, u32) {
    let a = (u64::from(i) * u64::from(len) / u64::from(cells)) as u32;
    let b = (u64::from(i + 1) * u64::from(len) / u64::from(cells)) as u32;
    let a = a.min(len - 1);
    (a, b.max(a + 1).min(len))
}

/// The pure detector: feed it thumbnails, it says when to trigger.
#[derive(Debug, Clone)]
pub struct MotionDetector {
    cfg: MotionConfig,
    prev: Option<Vec<u8>>,
    armed: bool,
    quiet: u32,
}

impl MotionDetector {
    pub fn new(cfg: MotionConfig) -> Self {
        MotionDetector {
            cfg,
            prev: None,
            armed: true,
            quiet: 0,
        }
    }

    /// Fraction of cells that changed between two thumbnails (0 when
    /// their sizes differ: a format change is not motion).
    pub fn changed_fraction(&self, a: &[u8], b: &[u8]) -> f32 {
        if a.len() != b.len() || a.is_empty() {
            return 0.0;
        }
        let changed = a
            .iter()
            .zip(b)
            .filter(|(x, y)| x.abs_diff(**y) >= self.cfg.cell_delta)
            .count();
        changed as f32 / a.len() as f32
    }

    /// One thumbnail; `true` when this one should start an attempt.
    pub fn offer(&mut self, thumb: Vec<u8>) -> bool {
        let moved = match &self.prev {
            // The first frame has nothing to compare with.
            None => false,
            Some(prev) => self.changed_fraction(prev, &thumb) >= self.cfg.min_fraction,
        };
        self.prev = Some(thumb);
        if moved {
            self.quiet = 0;
            if self.armed {
                self.armed = false;
                return true;
            }
        } else if !self.armed {
            self.quiet += 1;
            if self.quiet >= self.cfg.rearm_quiet {
                self.armed = true;
                self.quiet = 0;
            }
        }
        false
    }

    /// Analyse frames from `ring` until it closes, calling `trigger` on
    /// motion. Decoding and downscaling run on the blocking pool.
    pub async fn run(mut self, ring: FrameRing, mut trigger: impl FnMut() + Send) {
        let mut frames = ring.subscribe();
        let (w, h) = self.cfg.grid;
        let mut next_at = tokio::time::Instant::now();
        while let Some(frame) = frames.next().await {
            let now = tokio::time::Instant::now();
            if now < next_at {
                continue;
            }
            next_at = now + MIN_INTERVAL;
            let thumb = tokio::task::spawn_blocking(move || {
                frame.to_rgb().map(|rgb| thumbnail(&rgb, w, h))
            })
            .await;
            match thumb {
                Ok(Ok(t)) => {
                    if self.offer(t) {
                        tracing::info!("motion in front of the camera: face attempt");
                        trigger();
                    }
                }
                Ok(Err(e)) => tracing::warn!("motion: frame skipped: {e}"),
                Err(e) => tracing::warn!("motion: worker failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn flat(v: u8) -> RgbImage {
        RgbImage::from_pixel(64, 48, Rgb([v, v, v]))
    }

    /// A grey frame with a dark `size`×`size` square at (x, y).
    fn with_square(x: u32, y: u32, size: u32) -> RgbImage {
        let mut img = flat(180);
        for yy in y..(y + size).min(48) {
            for xx in x..(x + size).min(64) {
                img.put_pixel(xx, yy, Rgb([20, 20, 20]));
            }
        }
        img
    }

    fn thumb(img: &RgbImage) -> Vec<u8> {
        thumbnail(img, 32, 24)
    }

    #[test]
    fn thumbnail_is_block_means() {
        let t = thumb(&flat(100));
        assert_eq!(t.len(), 32 * 24);
        assert!(t.iter().all(|v| v.abs_diff(100) <= 1), "{t:?}");
        let t = thumb(&with_square(0, 0, 2));
        assert!(t[0] < 40 && t[1] > 170, "{:?}", &t[..2]);
        // A frame smaller than the grid still gives a full thumbnail.
        assert_eq!(thumbnail(&flat(9), 4, 3).len(), 12);
        assert_eq!(thumbnail(&RgbImage::new(8, 6), 32, 24).len(), 32 * 24);
    }

    #[test]
    fn still_scene_never_triggers() {
        let mut d = MotionDetector::new(MotionConfig::default());
        for _ in 0..50 {
            assert!(!d.offer(thumb(&flat(120))));
        }
    }

    #[test]
    fn noise_below_the_cell_delta_is_not_motion() {
        let mut d = MotionDetector::new(MotionConfig::default());
        for i in 0..20u8 {
            assert!(!d.offer(thumb(&flat(120 + (i % 2) * 10))));
        }
    }

    #[test]
    fn someone_appearing_triggers_once_then_rearms_after_quiet() {
        let mut d = MotionDetector::new(MotionConfig::default());
        assert!(!d.offer(thumb(&flat(180))));
        // A large dark shape appears: one trigger.
        assert!(d.offer(thumb(&with_square(10, 10, 30))));
        // They keep moving: no trigger, however long.
        for x in 11..30 {
            assert!(!d.offer(thumb(&with_square(x, 10, 30))));
        }
        // Still for `rearm_quiet` samples, then the next motion fires again.
        for _ in 0..MotionConfig::default().rearm_quiet {
            assert!(!d.offer(thumb(&with_square(29, 10, 30))));
        }
        assert!(d.offer(thumb(&flat(180))));
    }

    #[test]
    fn a_small_change_is_below_the_fraction() {
        let mut d = MotionDetector::new(MotionConfig::default());
        assert!(!d.offer(thumb(&flat(180))));
        // 4×4 pixels = 2×2 cells of 768: far below 5 %.
        assert!(!d.offer(thumb(&with_square(30, 30, 4))));
    }

    #[test]
    fn size_change_is_not_motion() {
        let mut d = MotionDetector::new(MotionConfig::default());
        assert!(!d.offer(thumbnail(&flat(0), 32, 24)));
        assert!(!d.offer(thumbnail(&flat(255), 16, 12)));
    }

    #[tokio::test]
    async fn run_fires_on_a_published_change() {
        let ring = FrameRing::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let det = MotionDetector::new(MotionConfig::default());
        let task = tokio::spawn(det.run(ring.clone(), move || {
            let _ = tx.send(());
        }));
        let publish = |img: &RgbImage| {
            ring.publish(
                img.width(),
                img.height(),
                crate::board::frames::PixelFormat::Rgb,
                img.as_raw().clone(),
            )
        };
        // Keep publishing (spaced past MIN_INTERVAL so each is analysed)
        // until the detector has fired: first the empty scene, then a shape.
        let mut fired = false;
        for i in 0..20 {
            let img = if i < 2 {
                flat(180)
            } else {
                with_square(5, 5, 40)
            };
            publish(&img);
            tokio::time::sleep(MIN_INTERVAL + Duration::from_millis(20)).await;
            if rx.try_recv().is_ok() {
                fired = true;
                break;
            }
        }
        task.abort();
        assert!(fired, "motion never fired");
    }
}
