//! Triangle-filter resize of an RGB frame to the detector's scale: the
//! image crate's arithmetic, bit for bit, laid out so it runs fast.
//!
//! Why: a camera frame larger than the detector's 320 pixels (the sim
//! camera's and a typical V4L2 sensor's 640×480) is scaled down before
//! YuNet sees it. `image::imageops::resize` (0.25) does that through four
//! f32 channels per pixel and a column-wise first pass that reads every
//! tap with `get_pixel`: tracing the daemon's face path (issue 19) put a
//! 640×480 frame's whole look at 27–43 ms against ≈ 20 ms for a frame
//! already at 320×240 — the resize was most of the difference.
//!
//! The filter is the same (triangle of support 1, widened by the scale
//! factor when shrinking, weights normalised per output pixel), and so is
//! every float operation in the same order: rows first (`t = 0.0; t +=
//! v·w` over the taps), then columns, then clamp and round. Only the
//! layout differs: three channels instead of four, weights computed once
//! per output row or column, whole rows at a time. The test below holds
//! it to the image crate's output byte for byte, so detections do not
//! move.

use image::RgbImage;

/// The input span and normalised weights of one output row or column.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

fn triangle(x: f32) -> f32 {
    if x.abs() < 1.0 {
        1.0 - x.abs()
    } else {
        0.0
    }
}

/// For each of `dst` output positions along an axis of `src` input
/// pixels, the taps `image::imageops::sample` computes for a triangle
/// filter (the same expressions, for the same floats).
fn taps(src: u32, dst: u32) -> Vec<Taps> {
    let ratio = src as f32 / dst as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    // The triangle's support is 1.0.
    let support = sratio;
    (0..dst)
        .map(|out| {
            let centre = (out as f32 + 0.5) * ratio;
            let left = ((centre - support).floor() as i64).clamp(0, i64::from(src) - 1);
            let right = ((centre + support).ceil() as i64).clamp(left + 1, i64::from(src));
            let centre = centre - 0.5;
            let mut weights: Vec<f32> = (left..right)
                .map(|i| triangle((i as f32 - centre) / sratio))
                .collect();
            let mut sum = 0.0;
            for w in &weights {
                sum += w;
            }
            for w in &mut weights {
                *w /= sum;
            }
            Taps {
                first: left as usize,
                weights,
            }
        })
        .collect()
}

/// `v.clamp(0.0, 255.0).round() as u8` without a call to libm's `roundf`
/// per channel (x86-64's baseline has no rounding instruction; it was a
/// quarter of the time): in [0, 255] the part after the point is exact,
/// and half rounds away from zero as `round` does. (`(v + 0.5) as u8`
/// would not do: 0.49999997 + 0.5 rounds to 1.0 in f32.)
fn round_to_byte(v: f32) -> u8 {
    let v = v.clamp(0.0, 255.0);
    let whole = v as u8;
    if v - f32::from(whole) >= 0.5 {
        whole + 1
    } else {
        whole
    }
}

/// `frame` scaled to `width`×`height` with a triangle filter; the same
/// bytes as `image::imageops::resize(frame, width, height,
/// FilterType::Triangle)`. A caller that scales every frame keeps a
/// [`Resizer`] instead.
pub fn resize_triangle(frame: &RgbImage, width: u32, height: u32) -> RgbImage {
    Resizer::default().resize(frame, width, height)
}

/// The triangle resize with its scratch kept between frames: the taps of
/// the last size pair and one output row's sums, so a frame allocates
/// nothing, and the rows are handed out one at a time (the detector writes
/// them straight into its input tensor).
///
/// Each output row is finished before the next is started: the rows pass
/// for that row (a weighted sum of whole input rows, 7.5 KiB for a
/// 640-pixel frame, held in L1), then the columns pass along it. The
/// floats and their order are those of the image crate, which runs the
/// rows pass for the whole frame first (a 1.8 MB buffer for 640×480 →
/// 320×240): no output value depends on another row's sums, so the order
/// of the rows does not change a byte.
#[derive(Default)]
pub struct Resizer {
    /// (frame width, frame height, width, height) the taps are for.
    sizes: Option<(u32, u32, u32, u32)>,
    rows: Vec<Taps>,
    columns: Vec<Taps>,
    /// The rows pass of the current output row: frame width × 3.
    row: Vec<f32>,
    /// The columns pass of it, before rounding: width × 3.
    sums: Vec<f32>,
    /// The finished output row: width × 3 bytes.
    bytes: Vec<u8>,
}

/// One output row of the rows pass: a weighted sum of whole input rows.
/// (The buffers are separate slices so the compiler knows they do not
/// overlap: with the loops over `Resizer` fields borrowed in place, the
/// scaling ran 5–15 % slower.)
fn rows_pass<'a>(taps: &Taps, input_row: impl Fn(usize) -> &'a [u8], out: &mut [f32]) {
    if let [w0, w1, w2, w3] = taps.weights[..] {
        // Four taps (every inner row when halving): one pass, the sum kept
        // in a register, the same additions in the same order.
        let r = taps.first;
        let (a, b, c, d) = (
            input_row(r),
            input_row(r + 1),
            input_row(r + 2),
            input_row(r + 3),
        );
        for ((((t, &a), &b), &c), &d) in out.iter_mut().zip(a).zip(b).zip(c).zip(d) {
            let mut sum = 0.0f32;
            sum += f32::from(a) * w0;
            sum += f32::from(b) * w1;
            sum += f32::from(c) * w2;
            sum += f32::from(d) * w3;
            *t = sum;
        }
        return;
    }
    out.fill(0.0);
    for (i, &w) in taps.weights.iter().enumerate() {
        for (t, &v) in out.iter_mut().zip(input_row(taps.first + i)) {
            *t += f32::from(v) * w;
        }
    }
}

/// The columns pass along one row: each output pixel a weighted sum of
/// its taps, not yet rounded (rounding is a second loop the compiler can
/// vectorise).
fn columns_pass(columns: &[Taps], row: &[f32], sums: &mut [f32]) {
    for (taps, t) in columns.iter().zip(sums.chunks_exact_mut(3)) {
        let (mut r, mut g, mut b) = (0.0f32, 0.0f32, 0.0f32);
        let span = &row[taps.first * 3..][..taps.weights.len() * 3];
        for (px, &w) in span.chunks_exact(3).zip(&taps.weights) {
            r += px[0] * w;
            g += px[1] * w;
            b += px[2] * w;
        }
        t.copy_from_slice(&[r, g, b]);
    }
}

impl std::fmt::Debug for Resizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resizer")
            .field("sizes", &self.sizes)
            .finish_non_exhaustive()
    }
}

impl Resizer {
    /// `frame` scaled to `width`×`height`: [`resize_triangle`]'s bytes.
    pub fn resize(&mut self, frame: &RgbImage, width: u32, height: u32) -> RgbImage {
        let mut out = Vec::with_capacity(width as usize * height as usize * 3);
        let drawn = self.for_each_row(frame, width, height, |_, row| out.extend_from_slice(row));
        if !drawn {
            return RgbImage::new(width, height);
        }
        RgbImage::from_raw(width, height, out).expect("the buffer holds width × height pixels")
    }

    /// Hands each row of `frame` scaled to `width`×`height` to `emit`,
    /// top to bottom, as `width` RGB pixels. Returns false, having emitted
    /// nothing, when either size is empty.
    pub fn for_each_row(
        &mut self,
        frame: &RgbImage,
        width: u32,
        height: u32,
        mut emit: impl FnMut(usize, &[u8]),
    ) -> bool {
        let (fw, fh) = frame.dimensions();
        if fw == 0 || fh == 0 || width == 0 || height == 0 {
            return false;
        }
        let src = frame.as_raw();
        let row_len = fw as usize * 3;
        if (fw, fh) == (width, height) {
            for (y, row) in src.chunks_exact(row_len).enumerate() {
                emit(y, row);
            }
            return true;
        }
        self.prepare(fw, fh, width, height);
        let input_row = |i: usize| &src[i * row_len..][..row_len];
        for (y, taps) in self.rows.iter().enumerate() {
            rows_pass(taps, input_row, &mut self.row);
            columns_pass(&self.columns, &self.row, &mut self.sums);
            for (b, &v) in self.bytes.iter_mut().zip(&self.sums) {
                *b = round_to_byte(v);
            }
            emit(y, &self.bytes);
        }
        true
    }

    /// Taps and buffers for this size pair (kept when it is the last one).
    fn prepare(&mut self, fw: u32, fh: u32, width: u32, height: u32) {
        let sizes = (fw, fh, width, height);
        if self.sizes == Some(sizes) {
            return;
        }
        // Cleared first: a panic below must not leave stale taps marked
        // as this pair's.
        self.sizes = None;
        self.rows = taps(fh, height);
        self.columns = taps(fw, width);
        self.row = vec![0.0; fw as usize * 3];
        self.sums = vec![0.0; width as usize * 3];
        self.bytes = vec![0; width as usize * 3];
        self.sizes = Some(sizes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::{self, FilterType};

    /// Deterministic pixels with edges, flat areas and noise.
    fn frame(w: u32, h: u32, seed: u32) -> RgbImage {
        let mut words = super::super::xorshift(seed | 1);
        RgbImage::from_fn(w, h, |px, py| {
            let x = words.next().unwrap_or_default();
            let flat = ((px / 7 + py / 5) % 2) as u8 * 200;
            let noise = (x % 256) as u8;
            image::Rgb([noise, flat, flat.wrapping_add(noise / 4)])
        })
    }

    #[test]
    fn the_resize_gives_the_image_crates_bytes() {
        // The cameras' sizes to the detector's, odd ratios both ways, a
        // single row and column, and growing (the filter's other branch).
        // One kept `Resizer` goes through them all twice: taps and buffers
        // left from another size pair must not leak into the next.
        let mut kept = Resizer::default();
        for (i, (w, h, nw, nh)) in [
            (640, 480, 320, 240),
            (1280, 720, 320, 180),
            (1920, 1080, 320, 180),
            (101, 77, 37, 29),
            (333, 250, 320, 240),
            (640, 1, 320, 1),
            (1, 480, 1, 240),
            (10, 8, 21, 17),
            (2, 2, 1, 1),
        ]
        .into_iter()
        .cycle()
        .take(18)
        .enumerate()
        {
            let img = frame(w, h, 0x9e37_79b9 ^ i as u32);
            let theirs = imageops::resize(&img, nw, nh, FilterType::Triangle);
            for (how, mine) in [
                ("resize_triangle", resize_triangle(&img, nw, nh)),
                ("a kept Resizer", kept.resize(&img, nw, nh)),
            ] {
                assert_eq!(
                    mine.dimensions(),
                    theirs.dimensions(),
                    "{how}: {w}×{h} → {nw}×{nh}"
                );
                let differing = mine
                    .as_raw()
                    .iter()
                    .zip(theirs.as_raw())
                    .filter(|(a, b)| a != b)
                    .count();
                assert_eq!(differing, 0, "{how}: {w}×{h} → {nw}×{nh}: bytes differ");
            }
        }
    }

    #[test]
    fn rows_come_top_to_bottom_and_an_empty_size_emits_none() {
        let img = frame(64, 48, 5);
        let mut rows = Vec::new();
        let mut kept = Resizer::default();
        assert!(kept.for_each_row(&img, 20, 15, |y, px| rows.push((y, px.len()))));
        assert_eq!(rows, (0..15).map(|y| (y, 60)).collect::<Vec<_>>());
        for (empty, nw, nh) in [(true, 4, 3), (false, 0, 3), (false, 4, 0)] {
            let src = if empty {
                RgbImage::new(0, 0)
            } else {
                img.clone()
            };
            assert!(!kept.for_each_row(&src, nw, nh, |_, _| panic!("a row of nothing")));
        }
    }

    #[test]
    fn rounding_matches_f32_round_near_every_half() {
        // Every f32 within a few ulps of each x.5 and x.0 in [0, 255],
        // and the ends and beyond.
        let mut values = vec![-1.0, -0.0, 0.0, 254.9, 255.0, 255.4, 255.5, 300.0];
        for i in 0..=255u16 {
            for centre in [f32::from(i), f32::from(i) + 0.5] {
                let mut up = centre;
                let mut down = centre;
                for _ in 0..4 {
                    values.extend([up, down]);
                    up = f32::from_bits(up.to_bits() + 1);
                    down = f32::from_bits(down.to_bits().saturating_sub(1));
                }
            }
        }
        for v in values {
            assert_eq!(round_to_byte(v), v.clamp(0.0, 255.0).round() as u8, "{v:e}");
        }
    }

    #[test]
    fn empty_and_same_size_frames_are_what_the_image_crate_returns() {
        let img = frame(64, 48, 3);
        assert_eq!(resize_triangle(&img, 64, 48), img);
        assert_eq!(
            resize_triangle(&RgbImage::new(0, 0), 4, 3),
            imageops::resize(&RgbImage::new(0, 0), 4, 3, FilterType::Triangle)
        );
    }
}
