//! Face pipeline cost per camera frame, one thread: detection (YuNet) +
//! alignment + embedding (MobileFaceNet) on a 320×240 frame with one face,
//! and the detector alone; the same on the frame at 640×480 (a camera's
//! size: scaled down to the detector's first), and that scaling alone by
//! the image crate and by latchd's `resize_triangle` (the same bytes).
//! Before the timings it prints the process's
//! resident memory (VmRSS from /proc/self/status) before loading the
//! models, after loading, and after the first inference (tract allocates
//! its scratch buffers then).
//!
//! Run: `cargo bench --bench face` (needs the shared models and photos:
//! `$LATCHD_SHARED`, else `../shared`).

#[path = "../tests/it/common/shared.rs"]
mod shared;
use shared::{bench_frame, shared_dir, vm_rss_kib};

use std::hint::black_box;

use criterion::Criterion;
use image::imageops::{self, FilterType};
use latchd::biometrics::face::{resize_triangle, FaceRecognizer, Resizer, DEFAULT_MATCH_THRESHOLD};

/// CPU time (user + system) this thread has used, in clock ticks
/// (/proc/thread-self/stat fields 14 and 15), or 0 where unavailable.
fn thread_cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name (which may hold spaces).
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // `rest` starts at field 3, so fields 14 and 15 are at 11 and 12.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn main() {
    let frame = bench_frame();
    let before = vm_rss_kib();
    let rec = FaceRecognizer::load(&shared_dir().join("models"), DEFAULT_MATCH_THRESHOLD)
        .unwrap_or_else(|e| panic!("{e}"));
    let loaded = vm_rss_kib();
    let faces = rec.observe(&frame).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(faces.len(), 1, "the bench frame must show one face");
    let warmed = vm_rss_kib();
    println!(
        "VmRSS: {before} KiB before loading, {loaded} KiB with both models loaded (+{} KiB), \
         {warmed} KiB after the first frame (+{} KiB total)",
        loaded.saturating_sub(before),
        warmed.saturating_sub(before)
    );

    // Wall-clock timings below suffer when other processes share the
    // cores; CPU time of this thread does much less.
    const FRAMES: u64 = 30;
    let t0 = thread_cpu_ticks();
    for _ in 0..FRAMES {
        black_box(rec.observe(black_box(&frame)).ok());
    }
    let ticks = thread_cpu_ticks().saturating_sub(t0);
    // Linux reports these in USER_HZ, which is 100 on every supported ABI.
    println!(
        "CPU time per frame (detect+align+embed, this thread): {:.1} ms over {FRAMES} frames",
        ticks as f64 * 10.0 / FRAMES as f64
    );

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("face/observe 320x240 (detect+align+embed)", |b| {
        b.iter(|| rec.observe(black_box(&frame)))
    });
    c.bench_function("face/detect 320x240", |b| {
        b.iter(|| rec.detector().detect(black_box(&frame)))
    });
    let large = imageops::resize(&frame, 640, 480, FilterType::Triangle);
    c.bench_function("face/observe 640x480 (scale+detect+align+embed)", |b| {
        b.iter(|| rec.observe(black_box(&large)))
    });
    c.bench_function("face/scale 640x480 to 320x240, image crate", |b| {
        b.iter(|| imageops::resize(black_box(&large), 320, 240, FilterType::Triangle))
    });
    c.bench_function("face/scale 640x480 to 320x240, latchd", |b| {
        b.iter(|| resize_triangle(black_box(&large), 320, 240))
    });
    // What the detector does each frame: a kept resizer, rows handed out
    // (here summed, there written into the input tensor).
    let mut kept = Resizer::default();
    c.bench_function(
        "face/scale 640x480 to 320x240, latchd, kept Resizer rows",
        |b| {
            b.iter(|| {
                let mut sum = 0u32;
                kept.for_each_row(black_box(&large), 320, 240, |_, row| {
                    sum = sum.wrapping_add(u32::from(row[0]))
                });
                sum
            })
        },
    );
    c.final_summary();
}
