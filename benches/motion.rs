//! The motion trigger's cost per camera frame (issue 19): since it looks
//! at every frame (its delay is the face unlock's), this is what it costs
//! a battery lock while the camera runs. 640×480, the 32×24 thumbnail of
//! `video::motion::frame_thumbnail`, for each format a camera delivers:
//!
//! * `rgb` (the sim camera) and `yuyv` (a raw V4L2 camera): read in place;
//! * `mjpeg` (most USB cameras): the JPEG decoded first.
//!
//! Multiply by the frame rate for the share of a core (e.g. 15 frames/s).
//!
//! ```text
//! cargo bench --bench motion
//! ```
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use image::{Rgb, RgbImage};
use latchd::board::frames::{encode_jpeg, Frame, PixelFormat};
use latchd::video::motion::{frame_thumbnail, MotionConfig};

/// A porch-like picture: gradients and a dark shape, so the JPEG is not
/// trivially small.
fn scene() -> RgbImage {
    RgbImage::from_fn(640, 480, |x, y| {
        let shape = (200..360).contains(&x) && (120..420).contains(&y);
        if shape {
            Rgb([40, 35, 30])
        } else {
            Rgb([(x / 3) as u8, (y / 2) as u8, ((x + y) / 5) as u8])
        }
    })
}

fn bench(c: &mut Criterion) {
    let img = scene();
    let (w, h) = MotionConfig::default().grid;
    let rgb = Frame::new(640, 480, PixelFormat::Rgb, img.as_raw().clone());
    let yuyv = Frame::new(640, 480, PixelFormat::Yuyv, vec![128; 640 * 480 * 2]);
    let mjpeg = Frame::new(
        640,
        480,
        PixelFormat::Mjpeg,
        encode_jpeg(&img).expect("jpeg"),
    );
    let mut g = c.benchmark_group("motion_thumbnail_640x480");
    for (name, frame) in [("rgb", &rgb), ("yuyv", &yuyv), ("mjpeg", &mjpeg)] {
        g.bench_function(name, |b| {
            b.iter(|| frame_thumbnail(black_box(frame), w, h).expect("thumbnail"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
