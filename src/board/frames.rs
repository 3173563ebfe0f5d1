//! The camera's frames: the ring the board's cameras fill (the V4L2
//! camera in `board/linux/camera.rs`, the sim camera in
//! `board/sim/camera.rs`) and everything else reads (the face worker in
//! `biometrics::face::worker`, the live stream, snapshots and the motion
//! trigger in `video`). It lives with the cameras because they own the
//! capture; readers depend on the board, never the other way round.
//!
//! ```text
//!   capture thread/task ──publish()──► watch slot: Option<Arc<Frame>> (seq n)
//!                                         │            │            │
//!                                     FrameStream  FrameStream  latest()
//!                                     (face)       (HTTP client) (snapshot)
//! ```
//!
//! Driven by the capture: each camera calls [`FrameRing::publish`] once per
//! frame from its own thread or task; readers call [`FrameRing::subscribe`]
//! or [`FrameRing::latest`].
//!
//! The slot holds exactly one frame. A consumer that is slower than the
//! camera does not queue frames: [`FrameStream::next`] returns the newest
//! frame and the ones published in between are dropped for that consumer
//! alone (the gap shows in [`Frame::seq`]). Memory is therefore bounded by
//! one frame per consumer still holding an `Arc`, whatever the number of
//! slow clients.
//!
//! A reader that starts work because of what the camera just saw (a face
//! attempt after the motion trigger) takes the frame already in the slot
//! when it is recent ([`FrameRing::subscribe_recent`]) instead of waiting a
//! whole frame period for the next one.
//!
//! Frames keep the camera's own encoding ([`PixelFormat`]); consumers
//! convert on demand: [`Frame::to_rgb`] for the face pipeline,
//! [`Frame::jpeg`] for the stream and snapshots (an MJPEG frame is passed
//! through untouched, others are encoded once and the result cached in the
//! frame, so ten viewers cost one encode).
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageFormat, RgbImage};
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

/// JPEG quality used when a frame has to be encoded (YUYV/RGB sources).
pub const JPEG_QUALITY: u8 = 80;

/// How the bytes of a [`Frame`] are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// One JPEG image per frame (V4L2 `MJPG`).
    Mjpeg,
    /// Packed 4:2:2, `Y0 U Y1 V` per two pixels (V4L2 `YUYV`).
    Yuyv,
    /// Packed 8-bit RGB, row-major (the sim camera).
    Rgb,
}

/// A frame that cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{format:?} frame of {width}x{height} has {got} bytes, expected {expected}; the camera and the negotiated format disagree")]
    BadLength {
        format: PixelFormat,
        width: u32,
        height: u32,
        got: usize,
        expected: usize,
    },
    #[error("YUYV frame width {0} is odd; YUYV packs pixels in pairs")]
    OddWidth(u32),
    #[error("MJPEG frame does not decode: {0}; the camera sent a corrupt or truncated JPEG")]
    Jpeg(#[source] image::ImageError),
    #[error("encoding a JPEG failed: {0}")]
    Encode(#[source] image::ImageError),
    /// The first conversion of this frame failed; every later one gives
    /// the same error (the result is cached per frame).
    #[error("{0}")]
    Cached(#[source] Arc<FrameError>),
}

/// One captured picture. Shared as `Arc<Frame>`; never mutated after
/// publication.
#[derive(Debug)]
pub struct Frame {
    /// Position in the capture sequence, from 1; gaps are dropped frames.
    pub seq: u64,
    /// When the frame was published (tokio's clock: paused in tests).
    pub captured: Instant,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub bytes: Vec<u8>,
    jpeg: OnceLock<Result<Vec<u8>, Arc<FrameError>>>,
}

impl Frame {
    /// A frame not (yet) in a ring, e.g. for a snapshot test; `seq` is 0.
    pub fn new(width: u32, height: u32, format: PixelFormat, bytes: Vec<u8>) -> Self {
        Frame {
            seq: 0,
            captured: Instant::now(),
            width,
            height,
            format,
            bytes,
            jpeg: OnceLock::new(),
        }
    }

    /// The picture as RGB, checked against the frame's stated size.
    pub fn to_rgb(&self) -> Result<RgbImage, FrameError> {
        match self.format {
            PixelFormat::Rgb => {
                let expected = self.width as usize * self.height as usize * 3;
                self.check_len(expected)?;
                RgbImage::from_raw(self.width, self.height, self.bytes.clone())
                    .ok_or_else(|| self.bad_len(expected))
            }
            PixelFormat::Yuyv => yuyv_to_rgb(self.width, self.height, &self.bytes),
            PixelFormat::Mjpeg => {
                let img = image::load_from_memory_with_format(&self.bytes, ImageFormat::Jpeg)
                    .map_err(FrameError::Jpeg)?;
                Ok(img.to_rgb8())
            }
        }
    }

    /// The picture as a JPEG file's bytes. MJPEG frames are returned as
    /// they came from the camera; others are encoded once (cached).
    pub fn jpeg(&self) -> Result<Cow<'_, [u8]>, FrameError> {
        if self.format == PixelFormat::Mjpeg {
            return Ok(Cow::Borrowed(&self.bytes));
        }
        let cached = self.jpeg.get_or_init(|| {
            self.to_rgb()
                .and_then(|rgb| encode_jpeg(&rgb))
                .map_err(Arc::new)
        });
        match cached {
            Ok(bytes) => Ok(Cow::Borrowed(bytes)),
            Err(e) => Err(FrameError::Cached(e.clone())),
        }
    }

    /// The frame's byte count is `expected` (its format at its size).
    pub(crate) fn check_len(&self, expected: usize) -> Result<(), FrameError> {
        if self.bytes.len() != expected {
            return Err(self.bad_len(expected));
        }
        Ok(())
    }

    fn bad_len(&self, expected: usize) -> FrameError {
        FrameError::BadLength {
            format: self.format,
            width: self.width,
            height: self.height,
            got: self.bytes.len(),
            expected,
        }
    }
}

/// Encode an RGB picture as a baseline JPEG at [`JPEG_QUALITY`].
pub fn encode_jpeg(rgb: &RgbImage) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(rgb.as_raw().len() / 8);
    JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode(
            rgb.as_raw(),
            rgb.width(),
            rgb.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(FrameError::Encode)?;
    Ok(out)
}

/// YUYV (4:2:2, BT.601 limited range, what UVC and vivid deliver) to RGB.
pub fn yuyv_to_rgb(width: u32, height: u32, bytes: &[u8]) -> Result<RgbImage, FrameError> {
    if !width.is_multiple_of(2) {
        return Err(FrameError::OddWidth(width));
    }
    let expected = width as usize * height as usize * 2;
    // Some drivers pad the buffer past the image (bytesused rounded up);
    // shorter is corrupt, longer is tolerated and the tail ignored.
    if bytes.len() < expected {
        return Err(FrameError::BadLength {
            format: PixelFormat::Yuyv,
            width,
            height,
            got: bytes.len(),
            expected,
        });
    }
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for px in bytes[..expected].chunks_exact(4) {
        let (y0, u, y1, v) = (px[0], px[1], px[2], px[3]);
        out.extend_from_slice(&yuv_to_rgb(y0, u, v));
        out.extend_from_slice(&yuv_to_rgb(y1, u, v));
    }
    RgbImage::from_raw(width, height, out).ok_or(FrameError::BadLength {
        format: PixelFormat::Yuyv,
        width,
        height,
        got: bytes.len(),
        expected,
    })
}

/// BT.601 limited-range YCbCr to RGB in 16.16 fixed point.
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (i32::from(y) - 16).max(0) * 76284; // 1.164 * 65536
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| ((x + 32768) >> 16).clamp(0, 255) as u8;
    [
        clamp(c + 104595 * e),            // 1.596
        clamp(c - 25625 * d - 53281 * e), // 0.391, 0.813
        clamp(c + 132252 * d),            // 2.018
    ]
}

/// The single-slot ring. Cheap to clone; every clone publishes into and
/// subscribes to the same slot.
#[derive(Debug, Clone)]
pub struct FrameRing {
    inner: Arc<RingInner>,
}

#[derive(Debug)]
struct RingInner {
    slot: watch::Sender<Option<Arc<Frame>>>,
    seq: AtomicU64,
}

impl Default for FrameRing {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameRing {
    pub fn new() -> Self {
        let (slot, _) = watch::channel(None);
        FrameRing {
            inner: Arc::new(RingInner {
                slot,
                seq: AtomicU64::new(0),
            }),
        }
    }

    /// Publish a captured frame, replacing the previous one; returns its
    /// sequence number. Never blocks (callable from the capture thread).
    pub fn publish(&self, width: u32, height: u32, format: PixelFormat, bytes: Vec<u8>) -> u64 {
        let seq = self.inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let frame = Frame {
            seq,
            ..Frame::new(width, height, format, bytes)
        };
        self.inner.slot.send_replace(Some(Arc::new(frame)));
        seq
    }

    /// The newest frame, if any was published.
    pub fn latest(&self) -> Option<Arc<Frame>> {
        self.inner.slot.borrow().clone()
    }

    /// A consumer that sees frames published from now on.
    pub fn subscribe(&self) -> FrameStream {
        let mut rx = self.inner.slot.subscribe();
        rx.mark_unchanged();
        FrameStream { rx }
    }

    /// A consumer whose first frame is the one in the slot if it was
    /// published at most `max_age` ago, else the next one. For work that
    /// a frame just seen started: the scene that triggered it is in the
    /// slot already, and waiting for the next frame costs up to a frame
    /// period.
    pub fn subscribe_recent(&self, max_age: Duration) -> FrameStream {
        let mut stream = self.subscribe();
        let fresh = self
            .latest()
            .is_some_and(|f| f.captured.elapsed() <= max_age);
        if fresh {
            stream.rx.mark_changed();
        }
        stream
    }

    /// How many frames have been published.
    pub fn published(&self) -> u64 {
        self.inner.seq.load(Ordering::SeqCst)
    }
}

/// One consumer's view of the ring.
#[derive(Debug)]
pub struct FrameStream {
    rx: watch::Receiver<Option<Arc<Frame>>>,
}

impl FrameStream {
    /// Wait for a frame newer than the last one returned (frames published
    /// in between are skipped). `None` when every [`FrameRing`] is gone.
    pub async fn next(&mut self) -> Option<Arc<Frame>> {
        loop {
            self.rx.changed().await.ok()?;
            if let Some(f) = self.rx.borrow_and_update().clone() {
                return Some(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_grey_and_primaries() {
        // Two pixels: limited-range black (16) and white (235), neutral chroma.
        let rgb = yuyv_to_rgb(2, 1, &[16, 128, 235, 128]).expect("valid");
        assert_eq!(rgb.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 255, 255]);
        // BT.601 red is Y=81 U=90 V=240.
        let red = yuyv_to_rgb(2, 1, &[81, 90, 81, 240]).expect("valid");
        let [r, g, b] = red.get_pixel(0, 0).0;
        assert!(r > 250 && g < 5 && b < 5, "{r} {g} {b}");
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(matches!(
            yuyv_to_rgb(2, 2, &[0; 7]),
            Err(FrameError::BadLength { .. })
        ));
        assert!(matches!(
            yuyv_to_rgb(3, 1, &[0; 6]),
            Err(FrameError::OddWidth(3))
        ));
        let f = Frame::new(4, 4, PixelFormat::Rgb, vec![0; 10]);
        assert!(f.to_rgb().is_err());
        let j = Frame::new(4, 4, PixelFormat::Mjpeg, b"not a jpeg".to_vec());
        assert!(matches!(j.to_rgb(), Err(FrameError::Jpeg(_))));
    }

    #[test]
    fn jpeg_round_trip_keeps_size() {
        let f = Frame::new(8, 6, PixelFormat::Rgb, vec![200; 8 * 6 * 3]);
        let jpeg = f.jpeg().expect("encodes").into_owned();
        let back = Frame::new(8, 6, PixelFormat::Mjpeg, jpeg);
        let rgb = back.to_rgb().expect("decodes");
        assert_eq!(rgb.dimensions(), (8, 6));
    }

    #[tokio::test]
    async fn slow_consumer_drops_frames_instead_of_queueing() {
        let ring = FrameRing::new();
        let mut s = ring.subscribe();
        for _ in 0..5 {
            ring.publish(2, 1, PixelFormat::Yuyv, vec![16, 128, 16, 128]);
        }
        let f = s.next().await.expect("a frame");
        assert_eq!(f.seq, 5, "only the newest frame is seen");
        ring.publish(2, 1, PixelFormat::Yuyv, vec![16, 128, 16, 128]);
        assert_eq!(s.next().await.expect("a frame").seq, 6);
        assert_eq!(ring.latest().expect("latest").seq, 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_recent_subscription_starts_with_the_frame_in_the_slot_only_while_it_is_fresh() {
        let ring = FrameRing::new();
        let max_age = Duration::from_millis(50);
        // Nothing published yet: the first frame is the next one.
        let mut empty = ring.subscribe_recent(max_age);
        ring.publish(2, 1, PixelFormat::Yuyv, vec![16, 128, 16, 128]);
        assert_eq!(empty.next().await.expect("a frame").seq, 1);

        tokio::time::advance(max_age).await;
        let mut fresh = ring.subscribe_recent(max_age);
        let first = tokio::time::timeout(Duration::from_millis(1), fresh.next()).await;
        assert_eq!(
            first.expect("no wait").expect("a frame").seq,
            1,
            "the frame in the slot, at its age limit"
        );

        tokio::time::advance(Duration::from_millis(1)).await;
        let mut stale = ring.subscribe_recent(max_age);
        let waited = tokio::time::timeout(Duration::from_millis(20), stale.next()).await;
        assert!(
            waited.is_err(),
            "a frame past its age limit is not taken: the stream waits for the next"
        );
        ring.publish(2, 1, PixelFormat::Yuyv, vec![16, 128, 16, 128]);
        assert_eq!(stale.next().await.expect("a frame").seq, 2);
    }

    #[tokio::test]
    async fn stream_ends_when_the_ring_is_gone() {
        let ring = FrameRing::new();
        let mut s = ring.subscribe();
        drop(ring);
        assert!(s.next().await.is_none());
    }
}
