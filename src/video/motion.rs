//! Frame-motion trigger: someone walking up to the door starts a face
//! recognition attempt without a keypad touch (B-6.2, "automatic trigger").
//!
//! ```text
//!  FrameRing ──(every frame, or the newest while one is analysed)──► thumbnail: 32×24 grey, block means
//!                                                 │ compare with the previous thumbnail
//!                                                 ▼
//!            changed cells (|Δ| ≥ cell_delta) / all cells ≥ min_fraction ?
//!                 armed ──yes──► TRIGGER, disarm ──► Input::Touch to the engine
//!                 disarmed: re-armed after `rearm_quiet` quiet samples in a row
//! ```
//!
//! Why a heavily downscaled grey difference: it is cheap enough for a
//! small SoC at the camera's frame rate, and block means wash out sensor
//! noise and JPEG artefacts. Raw frames (YUYV, RGB) are read in place, a
//! quarter of the pixels, no copy (`benches/motion.rs`: ≈ 0.15 ms a
//! 640×480 frame here); MJPEG frames are decoded first (≈ 2 ms).
//! Every frame is looked at because the trigger's delay is the face
//! unlock's: sampling at 5 frames/s cost 100 ms on average before the
//! attempt began. A slower analysis never queues: the ring hands the
//! newest frame only. The debounce (one trigger, then silence
//! until the scene has been still for a while) keeps a person moving in
//! front of the camera from firing attempt after attempt: each attempt
//! that sees a face and no match counts towards the lockout (B-7.1).
//!
//! Limits: a global light change (a cloud, a car's headlights) also looks
//! like motion; the attempt it starts sees no face and counts nothing,
//! but it wakes the keypad. A PIR or radar input is the better trigger
//! where the board has one.
use std::collections::VecDeque;
use std::time::Duration;

use image::RgbImage;
use tokio::time::Instant;

use crate::board::frames::{Frame, FrameError, FrameRing, PixelFormat};

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionConfig {
    /// Thumbnail size in cells.
    pub grid: (u32, u32),
    /// A cell whose mean grey level moved by at least this much changed.
    pub cell_delta: u8,
    /// Fraction of cells that must change for motion.
    pub min_fraction: f32,
    /// Each frame is compared with the newest one at least this much
    /// older, so what counts is the change a person makes in this time
    /// whatever the frame rate: a slow walker changes little between two
    /// frames 33 ms apart.
    pub span: Duration,
    /// Time without motion before the detector can fire again.
    pub rearm_quiet: Duration,
}

impl Default for MotionConfig {
    fn default() -> Self {
        MotionConfig {
            grid: (32, 24),
            cell_delta: 24,
            min_fraction: 0.05,
            span: Duration::from_millis(200),
            rearm_quiet: Duration::from_secs(1),
        }
    }
}

/// Grey block means of `frame` on a `w`×`h` grid (cells cover the frame
/// evenly; a frame smaller than the grid repeats pixels).
pub fn thumbnail(frame: &RgbImage, w: u32, h: u32) -> Vec<u8> {
    let (fw, fh) = frame.dimensions();
    grey_cells(fw, fh, w, h, |x, y| rgb_luma(frame.as_raw(), fw, x, y))
}

/// [`thumbnail`] of a camera frame, read in place for raw formats (no
/// RGB copy); an MJPEG frame is decoded first. A frame whose bytes do not
/// match its stated size is an error, never a panic.
pub fn frame_thumbnail(frame: &Frame, w: u32, h: u32) -> Result<Vec<u8>, FrameError> {
    let (fw, fh) = (frame.width, frame.height);
    let pixels = fw as usize * fh as usize;
    match frame.format {
        PixelFormat::Rgb => {
            frame.check_len(pixels * 3)?;
            Ok(grey_cells(fw, fh, w, h, |x, y| {
                rgb_luma(&frame.bytes, fw, x, y)
            }))
        }
        PixelFormat::Yuyv => {
            frame.check_len(pixels * 2)?;
            // Y0 U Y1 V: pixel x's luma is byte 2x of its row. Limited
            // range (16–235) stretched to full, as `yuyv_to_rgb` does, so
            // `cell_delta` means the same for every format.
            Ok(grey_cells(fw, fh, w, h, |x, y| {
                let yv = frame.bytes[(y as usize * fw as usize + x as usize) * 2];
                (u32::from(yv.saturating_sub(16)) * 255 / 219).min(255) as u8
            }))
        }
        PixelFormat::Mjpeg => frame.to_rgb().map(|rgb| thumbnail(&rgb, w, h)),
    }
}

/// ITU-R BT.601 luma of pixel (x, y) of packed RGB rows `fw` wide, with
/// integer weights summing to 256.
fn rgb_luma(bytes: &[u8], fw: u32, x: u32, y: u32) -> u8 {
    let i = (y as usize * fw as usize + x as usize) * 3;
    let (r, g, b) = (
        u32::from(bytes[i]),
        u32::from(bytes[i + 1]),
        u32::from(bytes[i + 2]),
    );
    ((77 * r + 150 * g + 29 * b) >> 8) as u8
}

/// Block means of `luma` over an `fw`×`fh` picture on a `w`×`h` grid.
fn grey_cells(fw: u32, fh: u32, w: u32, h: u32, luma: impl Fn(u32, u32) -> u8) -> Vec<u8> {
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
                    sum += u64::from(luma(x, y));
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
    /// Thumbnails of the last `span` and the one before it, oldest first,
    /// with when their frames came.
    history: VecDeque<(Instant, Vec<u8>)>,
    armed: bool,
    last_motion: Option<Instant>,
}

impl MotionDetector {
    pub fn new(cfg: MotionConfig) -> Self {
        MotionDetector {
            cfg,
            history: VecDeque::new(),
            armed: true,
            last_motion: None,
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

    /// The thumbnail of a frame that came at `at`; `true` when it should
    /// start an attempt.
    pub fn offer(&mut self, at: Instant, thumb: Vec<u8>) -> bool {
        // The reference is the newest thumbnail at least `span` old (the
        // oldest while none is: the detector's first frames).
        while self
            .history
            .get(1)
            .is_some_and(|(t, _)| at.saturating_duration_since(*t) >= self.cfg.span)
        {
            self.history.pop_front();
        }
        let moved = self.history.front().is_some_and(|(_, reference)| {
            self.changed_fraction(reference, &thumb) >= self.cfg.min_fraction
        });
        self.history.push_back((at, thumb));
        if moved {
            self.last_motion = Some(at);
            if self.armed {
                self.armed = false;
                return true;
            }
        } else if !self.armed
            && self
                .last_motion
                .is_none_or(|m| at.saturating_duration_since(m) >= self.cfg.rearm_quiet)
        {
            self.armed = true;
        }
        false
    }

    /// Analyse frames from `ring` until it closes, calling `trigger` on
    /// motion: every frame, or the newest one whenever an analysis took
    /// longer than a frame period. Thumbnails are made on the blocking
    /// pool.
    pub async fn run(mut self, ring: FrameRing, mut trigger: impl FnMut() + Send) {
        let mut frames = ring.subscribe();
        let (w, h) = self.cfg.grid;
        while let Some(frame) = frames.next().await {
            let at = frame.captured;
            let thumb = tokio::task::spawn_blocking(move || frame_thumbnail(&frame, w, h)).await;
            match thumb {
                Ok(Ok(t)) => {
                    if self.offer(at, t) {
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

    /// Feeds a detector frames `period` apart.
    struct Feed {
        d: MotionDetector,
        at: Instant,
        period: Duration,
    }

    impl Feed {
        fn new(period: Duration) -> Self {
            Feed {
                d: MotionDetector::new(MotionConfig::default()),
                at: Instant::now(),
                period,
            }
        }

        /// Five frames a second, the pace the detector used to sample at.
        fn slow() -> Self {
            Self::new(Duration::from_millis(200))
        }

        fn offer(&mut self, img: &RgbImage) -> bool {
            self.at += self.period;
            self.d.offer(self.at, thumb(img))
        }
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
    fn a_frame_is_read_in_place_as_its_rgb_picture_would_be() {
        let img = with_square(10, 10, 30);
        let rgb = Frame::new(64, 48, PixelFormat::Rgb, img.as_raw().clone());
        assert_eq!(frame_thumbnail(&rgb, 32, 24).expect("rgb"), thumb(&img));

        // YUYV: luma read from the Y bytes, stretched to full range like
        // the RGB conversion, so the same scene gives the same cells.
        let mut yuyv = Vec::new();
        for y in 0..48 {
            for x in 0..64 {
                let dark = (10..40).contains(&x) && (10..40).contains(&y);
                yuyv.push(if dark { 33 } else { 171 }); // Y of grey 20 / 180
                yuyv.push(128);
            }
        }
        let yuyv = Frame::new(64, 48, PixelFormat::Yuyv, yuyv);
        let from_y = frame_thumbnail(&yuyv, 32, 24).expect("yuyv");
        let from_rgb = thumb(&yuyv.to_rgb().expect("converts"));
        assert!(
            from_y
                .iter()
                .zip(&from_rgb)
                .all(|(a, b)| a.abs_diff(*b) <= 2),
            "{from_y:?} vs {from_rgb:?}"
        );

        let jpeg = crate::board::frames::encode_jpeg(&img).expect("jpeg");
        let decoded = frame_thumbnail(&Frame::new(64, 48, PixelFormat::Mjpeg, jpeg), 32, 24);
        let d = MotionDetector::new(MotionConfig::default());
        let lost = d.changed_fraction(&decoded.expect("mjpeg"), &thumb(&img));
        assert!(lost < 0.01, "JPEG's losses are not motion: {lost}");
    }

    #[test]
    fn a_short_frame_is_an_error_not_a_panic() {
        for (format, len) in [
            (PixelFormat::Rgb, 64 * 48 * 3 - 1),
            (PixelFormat::Yuyv, 64 * 48 * 2 - 1),
        ] {
            let f = Frame::new(64, 48, format, vec![0; len]);
            assert!(matches!(
                frame_thumbnail(&f, 32, 24),
                Err(FrameError::BadLength { .. })
            ));
        }
        let f = Frame::new(64, 48, PixelFormat::Mjpeg, vec![0xff, 0xd8, 0]);
        assert!(frame_thumbnail(&f, 32, 24).is_err());
    }

    #[test]
    fn still_scene_never_triggers() {
        let mut f = Feed::slow();
        for _ in 0..50 {
            assert!(!f.offer(&flat(120)));
        }
    }

    #[test]
    fn noise_below_the_cell_delta_is_not_motion() {
        let mut f = Feed::new(Duration::from_millis(33));
        for i in 0..60u8 {
            assert!(!f.offer(&flat(120 + (i % 2) * 10)));
        }
    }

    #[test]
    fn someone_appearing_triggers_once_then_rearms_after_quiet() {
        let mut f = Feed::slow();
        assert!(!f.offer(&flat(180)));
        // A large dark shape appears: one trigger.
        assert!(f.offer(&with_square(10, 10, 30)));
        // They keep moving: no trigger, however long.
        // (Four pixels a frame: two cells, 8 % of them.)
        for x in (14..30).step_by(4) {
            assert!(!f.offer(&with_square(x, 10, 30)));
        }
        // They stop; 0.8 s later they move again: too soon, no trigger
        // (and the quiet time starts over).
        for _ in 0..3 {
            assert!(!f.offer(&with_square(26, 10, 30)));
        }
        assert!(
            !f.offer(&with_square(2, 2, 30)),
            "0.8 s after the last motion: not re-armed yet"
        );
        // Still for a second: the next motion fires again.
        for _ in 0..5 {
            assert!(!f.offer(&with_square(2, 2, 30)));
        }
        assert!(f.offer(&flat(180)));
    }

    #[test]
    fn an_arrival_fires_on_its_first_frame_at_the_cameras_rate() {
        let mut f = Feed::new(Duration::from_millis(33));
        for _ in 0..10 {
            assert!(!f.offer(&flat(180)));
        }
        assert!(
            f.offer(&with_square(10, 10, 30)),
            "the first frame that shows them"
        );
    }

    /// A slow walker moves one cell a frame at 30 frames/s: between two
    /// frames fewer than 5 % of the cells change, over 200 ms far more.
    /// Comparing neighbouring frames would never fire.
    #[test]
    fn a_slow_walker_is_seen_over_the_span_not_frame_to_frame() {
        // 40×30 pixels: 20×15 cells; a one-cell step changes 2×15 of 768.
        let walker = |x: u32| {
            let mut img = flat(180);
            for yy in 8..38 {
                for xx in x..(x + 40).min(64) {
                    img.put_pixel(xx, yy, Rgb([20, 20, 20]));
                }
            }
            img
        };
        let d = MotionDetector::new(MotionConfig::default());
        let step = d.changed_fraction(&thumb(&walker(0)), &thumb(&walker(2)));
        assert!(
            step > 0.0 && step < MotionConfig::default().min_fraction,
            "one frame's step: {step}"
        );

        let mut f = Feed::new(Duration::from_millis(33));
        for _ in 0..10 {
            assert!(!f.offer(&walker(0)), "standing still");
        }
        let fired = (1..12).find(|k| f.offer(&walker(2 * k)));
        assert_eq!(fired, Some(2), "fired once two steps were in view");
    }

    #[test]
    fn a_small_change_is_below_the_fraction() {
        let mut f = Feed::slow();
        assert!(!f.offer(&flat(180)));
        // 4×4 pixels = 2×2 cells of 768: far below 5 %.
        assert!(!f.offer(&with_square(30, 30, 4)));
    }

    #[test]
    fn size_change_is_not_motion() {
        let mut d = MotionDetector::new(MotionConfig::default());
        let at = Instant::now();
        assert!(!d.offer(at, thumbnail(&flat(0), 32, 24)));
        assert!(!d.offer(at + Duration::from_secs(1), thumbnail(&flat(255), 16, 12)));
    }

    /// Every frame is analysed: a shape that arrives fires before the
    /// camera's next frame (paused time, 15 frames/s).
    #[tokio::test(start_paused = true)]
    async fn run_fires_within_the_frame_that_shows_the_change() {
        let ring = FrameRing::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let det = MotionDetector::new(MotionConfig::default());
        let task = tokio::spawn(det.run(ring.clone(), move || {
            let _ = tx.send(Instant::now());
        }));
        let period = Duration::from_millis(67);
        let publish = |img: &RgbImage| {
            ring.publish(
                img.width(),
                img.height(),
                PixelFormat::Rgb,
                img.as_raw().clone(),
            );
        };
        for _ in 0..5 {
            publish(&flat(180));
            tokio::time::sleep(period).await;
        }
        assert!(rx.try_recv().is_err(), "a still scene fired");
        let arrived = Instant::now();
        publish(&with_square(5, 5, 40));
        // The thumbnail is made on the blocking pool (real time): wait
        // for it without letting the paused clock reach the next frame.
        let fired = tokio::time::timeout(period / 2, rx.recv()).await;
        task.abort();
        let at = fired
            .expect("fired before the next frame was due")
            .expect("trigger");
        assert!(at.duration_since(arrived) < period);
    }
}
