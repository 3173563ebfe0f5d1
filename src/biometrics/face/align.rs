//! Alignment: a least-squares similarity transform (Umeyama 1991, in 2-D)
//! from the detector's 5 landmarks to the ArcFace 112×112 template, and the
//! bilinear warp that cuts the aligned crop the embedder reads.
//!
//! ```text
//!  frame landmarks p_i ──fit s,R,t──▶ template q_i   (min Σ‖q_i − (sR p_i + t)‖²)
//!  crop(u,v) = frame( inverse(s,R,t) · (u,v) )       (bilinear, 0 outside)
//! ```
//!
//! In 2-D with no reflection the fit has a closed form: with centred points
//! p̃, q̃, `a = Σ p̃·q̃`, `b = Σ p̃ × q̃`, `n = Σ ‖p̃‖²`, the transform is
//! `x' = A x − B y + tx`, `y' = B x + A y + ty` with `A = a/n`, `B = b/n`
//! (`A = s cos θ`, `B = s sin θ`) and `t = mean(q) − [A −B; B A] mean(p)`.
//! Reflections are excluded on purpose: a mirrored face is not the same face.

use image::RgbImage;

/// A point in image pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
}

/// Side of the aligned crop the embedder reads.
pub const ALIGNED_SIZE: u32 = 112;

/// The ArcFace reference landmarks in the 112×112 crop, in the detector's
/// order: eye on the image's left (the person's right eye), eye on the
/// image's right, nose tip, mouth corner on the image's left, mouth corner
/// on the image's right.
pub const ARCFACE_TEMPLATE: [Point; 5] = [
    Point::new(38.2946, 51.6963),
    Point::new(73.5318, 51.5014),
    Point::new(56.0252, 71.7366),
    Point::new(41.5493, 92.3655),
    Point::new(70.7299, 92.2041),
];

/// A similarity transform `x' = a x − b y + tx`, `y' = b x + a y + ty`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    /// Applies the transform to a point.
    pub fn apply(&self, p: Point) -> Point {
        Point::new(
            self.a * p.x - self.b * p.y + self.tx,
            self.b * p.x + self.a * p.y + self.ty,
        )
    }

    /// Uniform scale factor.
    pub fn scale(&self) -> f32 {
        self.a.hypot(self.b)
    }

    /// The inverse transform, or `None` for a degenerate (zero-scale) one.
    pub fn inverse(&self) -> Option<Similarity> {
        let d = self.a * self.a + self.b * self.b;
        if !(d.is_finite() && d > 1e-12) {
            return None;
        }
        let (ia, ib) = (self.a / d, -self.b / d);
        Some(Similarity {
            a: ia,
            b: ib,
            tx: -(ia * self.tx - ib * self.ty),
            ty: -(ib * self.tx + ia * self.ty),
        })
    }

    /// Least-squares similarity mapping `src` onto `dst`. `None` when the
    /// source points are all (nearly) the same point, or any is non-finite.
    pub fn estimate(src: &[Point], dst: &[Point]) -> Option<Similarity> {
        if src.len() != dst.len() || src.len() < 2 {
            return None;
        }
        if src
            .iter()
            .chain(dst)
            .any(|p| !(p.x.is_finite() && p.y.is_finite()))
        {
            return None;
        }
        let n = src.len() as f32;
        let mean = |ps: &[Point]| {
            let (sx, sy) = ps.iter().fold((0.0, 0.0), |(x, y), p| (x + p.x, y + p.y));
            Point::new(sx / n, sy / n)
        };
        let (ms, md) = (mean(src), mean(dst));
        let (mut dot, mut cross, mut var) = (0.0f32, 0.0f32, 0.0f32);
        for (s, d) in src.iter().zip(dst) {
            let (sx, sy) = (s.x - ms.x, s.y - ms.y);
            let (dx, dy) = (d.x - md.x, d.y - md.y);
            dot += sx * dx + sy * dy;
            cross += sx * dy - sy * dx;
            var += sx * sx + sy * sy;
        }
        if var < 1e-6 {
            return None;
        }
        let (a, b) = (dot / var, cross / var);
        Some(Similarity {
            a,
            b,
            tx: md.x - (a * ms.x - b * ms.y),
            ty: md.y - (b * ms.x + a * ms.y),
        })
    }
}

/// Cuts the 112×112 crop for `landmarks` (frame coordinates) out of
/// `frame`. `None` when the landmarks are degenerate.
pub fn align_face(frame: &RgbImage, landmarks: &[Point; 5]) -> Option<RgbImage> {
    let fwd = Similarity::estimate(landmarks, &ARCFACE_TEMPLATE)?;
    let inv = fwd.inverse()?;
    Some(warp(frame, &inv, ALIGNED_SIZE, ALIGNED_SIZE))
}

/// Fills an `w`×`h` image with `src` sampled at `inv(u, v)` (bilinear;
/// black outside the source).
///
/// Written for speed with the arithmetic of the plain version kept in the
/// tests (`reference_warp`, same bytes): the floor and the rounding by
/// integer conversion (`f32::floor`/`round` are libm calls on x86-64's
/// baseline), the four neighbours read without bounds tests where all are
/// inside, and the pixels walked row by row.
pub fn warp(src: &RgbImage, inv: &Similarity, w: u32, h: u32) -> RgbImage {
    let (sw, sh) = (src.width() as i64, src.height() as i64);
    let raw = src.as_raw();
    let at = |i: usize| -> [f32; 3] {
        [
            f32::from(raw[i]),
            f32::from(raw[i + 1]),
            f32::from(raw[i + 2]),
        ]
    };
    let px = |x: i64, y: i64| -> [f32; 3] {
        if x < 0 || y < 0 || x >= sw || y >= sh {
            return [0.0; 3];
        }
        // In bounds: both coordinates are non-negative and below the size.
        at(((y * sw + x) * 3) as usize)
    };
    let sample = |o: &mut [u8], p: Point| {
        if !(p.x > -1.0 && p.y > -1.0 && p.x < sw as f32 && p.y < sh as f32) {
            return;
        }
        let (x0, y0) = (floor(p.x), floor(p.y));
        let (fx, fy) = (p.x - x0 as f32, p.y - y0 as f32);
        let (c00, c10, c01, c11) = if x0 >= 0 && y0 >= 0 && x0 + 1 < sw && y0 + 1 < sh {
            let i = ((y0 * sw + x0) * 3) as usize;
            let j = i + (sw * 3) as usize;
            (at(i), at(i + 3), at(j), at(j + 3))
        } else {
            (
                px(x0, y0),
                px(x0 + 1, y0),
                px(x0, y0 + 1),
                px(x0 + 1, y0 + 1),
            )
        };
        for (c, o) in o.iter_mut().enumerate() {
            let top = c00[c] * (1.0 - fx) + c10[c] * fx;
            let bottom = c01[c] * (1.0 - fx) + c11[c] * fx;
            *o = round_to_u8(top * (1.0 - fy) + bottom * fy);
        }
    };
    let mut out = RgbImage::new(w, h);
    // Rows, then pixels: the image crate's pixel enumeration divides by the
    // width for every pixel's coordinates.
    for (v, row) in out.chunks_exact_mut(3 * w as usize).enumerate() {
        for (u, o) in (0..w).zip(row.chunks_exact_mut(3)) {
            sample(o, inv.apply(Point::new(u as f32, v as f32)));
        }
    }
    out
}

/// `x.floor()` for `x` in (−1, 2⁶³): truncation, one down when it rounded
/// up (negative `x`).
#[inline]
fn floor(x: f32) -> i64 {
    let t = x as i64;
    if t as f32 > x {
        t - 1
    } else {
        t
    }
}

/// `v.round().clamp(0.0, 255.0) as u8` for a bilinear mix of bytes
/// (`v ≥ 0`): half away from zero, by the exact fractional part.
#[inline]
fn round_to_u8(v: f32) -> u8 {
    let t = v as i32;
    let r = t + i32::from(v - t as f32 >= 0.5);
    r.clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_similarity_is_recovered() {
        let truth = Similarity {
            a: 1.7 * 0.3f32.cos(),
            b: 1.7 * 0.3f32.sin(),
            tx: 12.5,
            ty: -4.0,
        };
        let dst: Vec<Point> = ARCFACE_TEMPLATE.iter().map(|&p| truth.apply(p)).collect();
        let got = Similarity::estimate(&ARCFACE_TEMPLATE, &dst).expect("non-degenerate");
        for (g, t) in [
            (got.a, truth.a),
            (got.b, truth.b),
            (got.tx, truth.tx),
            (got.ty, truth.ty),
        ] {
            assert!((g - t).abs() < 1e-3, "{got:?} vs {truth:?}");
        }
        let inv = got.inverse().expect("invertible");
        let back = inv.apply(truth.apply(Point::new(3.0, 9.0)));
        assert!((back.x - 3.0).abs() < 1e-3 && (back.y - 9.0).abs() < 1e-3);
    }

    #[test]
    fn noisy_points_give_the_least_squares_fit() {
        // Symmetric noise around an identity mapping cancels out.
        let src = [
            Point::new(0.0, 0.0),
            Point::new(10.0, 0.0),
            Point::new(10.0, 10.0),
            Point::new(0.0, 10.0),
        ];
        let dst = [
            Point::new(0.5, 0.0),
            Point::new(9.5, 0.0),
            Point::new(10.5, 10.0),
            Point::new(-0.5, 10.0),
        ];
        let t = Similarity::estimate(&src, &dst).expect("fit");
        assert!((t.scale() - 1.0).abs() < 0.02 && t.b.abs() < 0.06, "{t:?}");
    }

    #[test]
    fn degenerate_points_are_refused() {
        let same = [Point::new(4.0, 4.0); 5];
        assert!(Similarity::estimate(&same, &ARCFACE_TEMPLATE).is_none());
        let mut nan = ARCFACE_TEMPLATE;
        nan[2].x = f32::NAN;
        assert!(Similarity::estimate(&nan, &ARCFACE_TEMPLATE).is_none());
    }

    /// The warp as first written (`floor`, `round`, every neighbour
    /// bounds-tested): what [`warp`] must equal byte for byte.
    fn reference_warp(src: &RgbImage, inv: &Similarity, w: u32, h: u32) -> RgbImage {
        let (sw, sh) = (src.width() as i64, src.height() as i64);
        let raw = src.as_raw();
        let px = |x: i64, y: i64| -> [f32; 3] {
            if x < 0 || y < 0 || x >= sw || y >= sh {
                return [0.0; 3];
            }
            let i = ((y * sw + x) * 3) as usize;
            [
                f32::from(raw[i]),
                f32::from(raw[i + 1]),
                f32::from(raw[i + 2]),
            ]
        };
        let mut out = RgbImage::new(w, h);
        for (u, v, o) in out.enumerate_pixels_mut() {
            let p = inv.apply(Point::new(u as f32, v as f32));
            if !(p.x > -1.0 && p.y > -1.0 && p.x < sw as f32 && p.y < sh as f32) {
                continue;
            }
            let (x0, y0) = (p.x.floor(), p.y.floor());
            let (fx, fy) = (p.x - x0, p.y - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let (c00, c10, c01, c11) = (
                px(x0, y0),
                px(x0 + 1, y0),
                px(x0, y0 + 1),
                px(x0 + 1, y0 + 1),
            );
            for c in 0..3 {
                let top = c00[c] * (1.0 - fx) + c10[c] * fx;
                let bottom = c01[c] * (1.0 - fx) + c11[c] * fx;
                o.0[c] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
            }
        }
        out
    }

    #[test]
    fn the_fast_warp_gives_the_plain_warps_bytes() {
        // A noise image and transforms that scale, rotate and cross every
        // border (the bounds-tested path) and sample inside (the fast one).
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let src = RgbImage::from_fn(97, 61, |_, _| {
            let r = next();
            image::Rgb([r as u8, (r >> 8) as u8, (r >> 16) as u8])
        });
        let mut compared = 0;
        for k in 0..40 {
            let angle = k as f32 * 0.37 - 3.0;
            let scale = 0.3 + (k % 7) as f32 * 0.35;
            let inv = Similarity {
                a: scale * angle.cos(),
                b: scale * angle.sin(),
                tx: (k % 5) as f32 * 23.3 - 30.0,
                ty: (k % 3) as f32 * 19.7 - 12.25,
            };
            let (fast, plain) = (
                warp(&src, &inv, 112, 112),
                reference_warp(&src, &inv, 112, 112),
            );
            assert_eq!(fast, plain, "transform {inv:?}");
            compared += fast.as_raw().iter().filter(|&&b| b != 0).count();
        }
        assert!(
            compared > 100_000,
            "the transforms sampled the image: {compared}"
        );
    }

    #[test]
    fn rounding_and_floor_match_the_float_functions() {
        for v in [
            0.0f32, 0.49999997, 0.5, 1.5, 2.5, 254.49998, 254.5, 255.0, 255.2, 300.0,
        ] {
            assert_eq!(round_to_u8(v), v.round().clamp(0.0, 255.0) as u8, "{v}");
        }
        for x in [
            -0.999_999_9f32,
            -0.5,
            -1e-9,
            -0.0,
            0.0,
            0.3,
            1.0,
            41.999_996,
            1e7,
        ] {
            assert_eq!(floor(x), x.floor() as i64, "{x}");
        }
    }

    #[test]
    fn warp_moves_a_marked_pixel_where_the_transform_says() {
        let mut src = RgbImage::new(50, 50);
        src.put_pixel(20, 10, image::Rgb([255, 0, 0]));
        // Output (u, v) samples source (u + 10, v + 5).
        let inv = Similarity {
            a: 1.0,
            b: 0.0,
            tx: 10.0,
            ty: 5.0,
        };
        let out = warp(&src, &inv, 30, 30);
        assert_eq!(out.get_pixel(10, 5).0, [255, 0, 0]);
        assert_eq!(out.get_pixel(11, 5).0, [0, 0, 0]);
    }
}
