//! The outdoor camera through V4L2 (UVC webcams, SoC ISPs, vivid in tests).
//!
//! ```text
//!  board.toml [camera] path = "/dev/video0"  or  card = "USB2.0 HD UVC WebCam"
//!     │ (card: scan /dev/video*, VIDIOC_QUERYCAP, first capture node whose card matches)
//!     ▼
//!  VIDIOC_S_FMT  MJPG at width×height, else YUYV (the driver may round the size)
//!     ▼
//!  capture thread: MmapStream (4 buffers), DQBUF ──copy bytesused──► FrameRing::publish
//!                  (YUYV rows with padding are repacked to width×2 bytes)
//! ```
//!
//! The capture thread is a plain OS thread because `VIDIOC_DQBUF` blocks;
//! it waits at most [`DQBUF_TIMEOUT`] at a time so it notices a stop, and
//! gives up (logging why) after [`MAX_CONSECUTIVE_ERRORS`] failed
//! dequeues in a row (camera unplugged). Consumers never wait on it: they
//! read the ring.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use v4l::buffer::Type;
use v4l::capability::Flags;
use v4l::io::traits::CaptureStream;
use v4l::prelude::*;
use v4l::video::Capture;
use v4l::FourCC;

use super::config;
use crate::board::frames::{FrameRing, PixelFormat};

/// Longest single wait for a frame before re-checking the stop flag.
pub const DQBUF_TIMEOUT: Duration = Duration::from_secs(2);
/// Failed dequeues in a row after which the capture thread stops.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 10;
/// Buffers queued to the driver.
const BUFFERS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("camera {path}: {source}; check the device node and permissions (group video)")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no V4L2 capture device has the card name {card:?} (found: {found}); check `v4l2-ctl --list-devices` and camera.card")]
    CardNotFound { card: String, found: String },
    #[error("camera {path} is not a streaming video capture device")]
    NotCapture { path: PathBuf },
    #[error("camera {path} offers neither MJPG nor YUYV (it offers {offered}); latchd cannot decode its frames")]
    NoUsableFormat { path: PathBuf, offered: String },
    #[error("camera {path}: {what}: {source}")]
    Ioctl {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("camera board file: {0}")]
    Config(String),
}

/// What was agreed with the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub path: PathBuf,
    pub card: String,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
}

/// A streaming camera; dropping it stops the capture thread.
#[derive(Debug)]
pub struct V4l2Camera {
    negotiated: Negotiated,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for V4l2Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            // At most one DQBUF_TIMEOUT.
            if t.join().is_err() {
                tracing::error!("camera capture thread panicked");
            }
        }
    }
}

fn is_capture(caps: &v4l::Capabilities) -> bool {
    caps.capabilities.contains(Flags::VIDEO_CAPTURE) && caps.capabilities.contains(Flags::STREAMING)
}

/// The `/dev/video*` capture node whose card name is `card`.
pub fn find_by_card(card: &str) -> Result<PathBuf, CameraError> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map_err(|source| CameraError::Open {
            path: PathBuf::from("/dev"),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("video"))
        })
        .collect();
    nodes.sort();
    let mut found = Vec::new();
    for node in nodes {
        let Ok(dev) = Device::with_path(&node) else {
            continue;
        };
        let Ok(caps) = dev.query_caps() else { continue };
        if !is_capture(&caps) {
            continue;
        }
        if caps.card == card {
            return Ok(node);
        }
        found.push(format!("{} = {:?}", node.display(), caps.card));
    }
    Err(CameraError::CardNotFound {
        card: card.to_owned(),
        found: if found.is_empty() {
            "no capture devices".into()
        } else {
            found.join(", ")
        },
    })
}

/// Open the camera the board file names and negotiate a format, without
/// streaming yet.
fn open_device(cfg: &config::Camera) -> Result<(Device, PathBuf, String), CameraError> {
    let path = match (&cfg.path, &cfg.card) {
        (Some(p), None) => p.clone(),
        (None, Some(card)) => find_by_card(card)?,
        _ => {
            return Err(CameraError::Config(
                "camera needs exactly one of `path` or `card`".into(),
            ))
        }
    };
    let dev = Device::with_path(&path).map_err(|source| CameraError::Open {
        path: path.clone(),
        source,
    })?;
    let caps = dev.query_caps().map_err(|source| CameraError::Ioctl {
        path: path.clone(),
        what: "VIDIOC_QUERYCAP",
        source,
    })?;
    if !is_capture(&caps) {
        return Err(CameraError::NotCapture { path });
    }
    Ok((dev, path, caps.card))
}

/// The first of `wanted` (in order of preference) that the device offers,
/// or the list of what it offers, for the error.
pub(super) fn first_offered<T: Copy>(
    offered: &[v4l::format::Description],
    wanted: &[([u8; 4], T)],
) -> Result<(FourCC, T), String> {
    wanted
        .iter()
        .map(|(cc, t)| (FourCC::new(cc), *t))
        .find(|(cc, _)| offered.iter().any(|d| d.fourcc == *cc))
        .ok_or_else(|| {
            offered
                .iter()
                .map(|d| d.fourcc.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
}

fn negotiate(
    dev: &Device,
    path: &Path,
    width: u32,
    height: u32,
) -> Result<(PixelFormat, u32, u32, u32), CameraError> {
    let ioctl = |what| {
        let path = path.to_owned();
        move |source| CameraError::Ioctl { path, what, source }
    };
    let offered = dev.enum_formats().map_err(ioctl("VIDIOC_ENUM_FMT"))?;
    // MJPEG first: a tenth of the USB bandwidth and passed to viewers as is.
    let (fourcc, format) = first_offered(
        &offered,
        &[
            (*b"MJPG", PixelFormat::Mjpeg),
            (*b"YUYV", PixelFormat::Yuyv),
        ],
    )
    .map_err(|offered| CameraError::NoUsableFormat {
        path: path.to_owned(),
        offered,
    })?;
    let mut fmt = dev.format().map_err(ioctl("VIDIOC_G_FMT"))?;
    fmt.width = width;
    fmt.height = height;
    fmt.fourcc = fourcc;
    let got = dev.set_format(&fmt).map_err(ioctl("VIDIOC_S_FMT"))?;
    if got.fourcc != fourcc {
        return Err(CameraError::NoUsableFormat {
            path: path.to_owned(),
            offered: format!("{} (driver refused {fourcc})", got.fourcc),
        });
    }
    if (got.width, got.height) != (width, height) {
        tracing::warn!(
            asked = %format!("{width}x{height}"),
            got = %format!("{}x{}", got.width, got.height),
            "camera rounded the frame size"
        );
    }
    Ok((format, got.width, got.height, got.stride))
}

impl V4l2Camera {
    /// Open, negotiate, and start streaming into `ring`.
    pub fn start(cfg: &config::Camera, ring: FrameRing) -> Result<Self, CameraError> {
        let (dev, path, card) = open_device(cfg)?;
        let (format, width, height, stride) = negotiate(&dev, &path, cfg.width, cfg.height)?;
        // Create the stream here so a refusal (busy device, no memory) is
        // an error of `start`, not a log line from the thread.
        let mut stream =
            MmapStream::with_buffers(&dev, Type::VideoCapture, BUFFERS).map_err(|source| {
                CameraError::Ioctl {
                    path: path.clone(),
                    what: "VIDIOC_REQBUFS/mmap",
                    source,
                }
            })?;
        stream.set_timeout(DQBUF_TIMEOUT);
        drop(stream);
        let negotiated = Negotiated {
            path: path.clone(),
            card,
            width,
            height,
            format,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("latchd-camera".into())
            .spawn(move || capture(dev, path, format, width, height, stride, ring, thread_stop))
            .map_err(|source| CameraError::Open {
                path: negotiated.path.clone(),
                source,
            })?;
        Ok(V4l2Camera {
            negotiated,
            stop,
            thread: Some(thread),
        })
    }

    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }
}

#[allow(clippy::too_many_arguments)] // one call site, the thread's entry
fn capture(
    dev: Device,
    path: PathBuf,
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: u32,
    ring: FrameRing,
    stop: Arc<AtomicBool>,
) {
    let mut stream = match MmapStream::with_buffers(&dev, Type::VideoCapture, BUFFERS) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(path = %path.display(), "camera stream: {e}");
            return;
        }
    };
    stream.set_timeout(DQBUF_TIMEOUT);
    let row = width as usize * 2;
    let mut errors = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let (buf, meta) = match CaptureStream::next(&mut stream) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => {
                errors += 1;
                tracing::warn!(path = %path.display(), errors, "camera dequeue failed: {e}");
                if errors >= MAX_CONSECUTIVE_ERRORS {
                    tracing::error!(path = %path.display(), "camera stopped after {errors} failures in a row; check the cable");
                    return;
                }
                continue;
            }
        };
        errors = 0;
        let used = (meta.bytesused as usize).min(buf.len());
        let data = &buf[..used];
        let bytes = match format {
            PixelFormat::Yuyv if stride as usize > row => {
                // Drop the per-row padding so the ring holds tight rows.
                data.chunks(stride as usize)
                    .take(height as usize)
                    .flat_map(|r| &r[..row.min(r.len())])
                    .copied()
                    .collect()
            }
            _ => data.to_vec(),
        };
        ring.publish(width, height, format, bytes);
    }
}
