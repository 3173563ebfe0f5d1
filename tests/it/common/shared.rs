//! The shared test material (`../shared`: ONNX models, face photos), found
//! through `LATCHD_SHARED` or beside the repository. Benches include it
//! with `#[path = "../tests/it/common/shared.rs"] mod shared;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::RgbImage;

pub fn shared_dir() -> PathBuf {
    std::env::var_os("LATCHD_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

pub fn models_dir() -> PathBuf {
    shared_dir().join("models")
}

/// A photo under `faces/`, e.g. `obama/1.jpg`.
pub fn photo(rel: &str) -> RgbImage {
    let p = shared_dir().join("faces").join(rel);
    image::open(&p)
        .unwrap_or_else(|e| panic!("decoding {}: {e}", p.display()))
        .to_rgb8()
}

/// Resident set size in KiB, or 0 where /proc is unavailable.
pub fn vm_rss_kib() -> u64 {
    status_kib("/proc/self/status", "VmRSS:")
}

/// VmRSS of process `pid` in KiB, or 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// VmRSS of process `pid` split as the kernel counts it: (RssAnon: heap,
/// stacks and other private memory; RssFile: pages of mapped files, the
/// binary's code among them), KiB; zeros once it is gone.
pub fn rss_split_kib(pid: u32) -> (u64, u64) {
    let status = format!("/proc/{pid}/status");
    (
        status_kib(&status, "RssAnon:"),
        status_kib(&status, "RssFile:"),
    )
}

fn status_kib(status: &str, field: &str) -> u64 {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The benchmark frame: 320×240, the centre 4:3 part of
/// `faces/kit_harington/1.jpg` scaled down (one face, as a door camera
/// would see it). `benches/face.rs` and `benches/peers.rs` time it; the
/// peer scripts read the PNG `benches/peers.rs frame` writes.
pub fn bench_frame() -> RgbImage {
    let img = photo("kit_harington/1.jpg");
    let (w, h) = img.dimensions();
    let cw = (h * 4 / 3).min(w);
    let ch = cw * 3 / 4;
    let crop = image::imageops::crop_imm(&img, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image();
    image::imageops::resize(&crop, 320, 240, image::imageops::FilterType::Triangle)
}
