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
/// FilterType::Triangle)`.
pub fn resize_triangle(frame: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (fw, fh) = frame.dimensions();
    if fw == 0 || fh == 0 || width == 0 || height == 0 {
        return RgbImage::new(width, height);
    }
    if (fw, fh) == (width, height) {
        return frame.clone();
    }
    let src = frame.as_raw();
    let row_len = fw as usize * 3;

    // Rows: each output row a weighted sum of whole input rows.
    let mut rows = vec![0.0f32; row_len * height as usize];
    let input_row = |i: usize| &src[i * row_len..][..row_len];
    for (out, taps) in rows.chunks_exact_mut(row_len).zip(taps(fh, height)) {
        if let [w0, w1, w2, w3] = taps.weights[..] {
            // Four taps (every inner row when halving): one pass, the sum
            // kept in a register, the same additions in the same order.
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
            continue;
        }
        for (i, &w) in taps.weights.iter().enumerate() {
            for (t, &v) in out.iter_mut().zip(input_row(taps.first + i)) {
                *t += f32::from(v) * w;
            }
        }
    }

    // Columns: each output pixel a weighted sum along its row.
    let columns = taps(fw, width);
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    // One output row's sums, rounded in a second loop the compiler can
    // vectorise.
    let mut sums = vec![0.0f32; width as usize * 3];
    for row in rows.chunks_exact(row_len) {
        for (taps, t) in columns.iter().zip(sums.chunks_exact_mut(3)) {
            t.fill(0.0);
            let span = &row[taps.first * 3..][..taps.weights.len() * 3];
            for (px, &w) in span.chunks_exact(3).zip(&taps.weights) {
                t[0] += px[0] * w;
                t[1] += px[1] * w;
                t[2] += px[2] * w;
            }
        }
        out.extend(sums.iter().map(|&v| round_to_byte(v)));
    }
    RgbImage::from_raw(width, height, out).expect("the buffer holds width × height pixels")
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
        .enumerate()
        {
            let img = frame(w, h, 0x9e37_79b9 ^ i as u32);
            let theirs = imageops::resize(&img, nw, nh, FilterType::Triangle);
            let mine = resize_triangle(&img, nw, nh);
            assert_eq!(
                mine.dimensions(),
                theirs.dimensions(),
                "{w}×{h} → {nw}×{nh}"
            );
            let differing = mine
                .as_raw()
                .iter()
                .zip(theirs.as_raw())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(differing, 0, "{w}×{h} → {nw}×{nh}: bytes differ");
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
