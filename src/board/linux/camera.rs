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
//!     │ ENODEV (unplugged), MAX_CONSECUTIVE_ERRORS failures or STALL_TIMEOUTS
//!     ▼ empty waits in a row
//!  lost: close every handle, link = Lost ─► reopen + renegotiate every REOPEN_INTERVAL
//!        ─► link = Streaming, capture again (issue 15 item 5)
//! ```
//!
//! The capture thread is a plain OS thread because `VIDIOC_DQBUF` blocks;
//! it waits at most [`DQBUF_TIMEOUT`] at a time so it notices a stop.
//! A camera that goes away (a USB camera unplugged, a driver reset) is
//! closed completely — a UVC device, like vivid's emulated disconnect,
//! comes back only once every handle to the old one is closed — and
//! reopened as it returns, without a restart; [`V4l2Camera::link`] says
//! which of the two it is. Consumers never wait on it: they read the
//! ring.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

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
/// Failed dequeues in a row after which the camera counts as lost.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 10;
/// Empty waits ([`DQBUF_TIMEOUT`] each) in a row after which a camera that
/// stays open but sends nothing counts as lost (a wedged driver).
pub const STALL_TIMEOUTS: u32 = 15;
/// How often a lost camera is looked for again.
pub const REOPEN_INTERVAL: Duration = Duration::from_secs(1);
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

/// Whether the camera is delivering frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraLink {
    Streaming,
    /// Lost, and why; being looked for again.
    Lost(String),
}

/// A streaming camera; dropping it stops the capture thread.
#[derive(Debug)]
pub struct V4l2Camera {
    negotiated: Negotiated,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    link: watch::Receiver<CameraLink>,
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
        let session = Session::open(cfg)?;
        // Create the stream here so a refusal (busy device, no memory) is
        // an error of `start`, not a log line from the thread.
        session.stream()?;
        let negotiated = Negotiated {
            path: session.path.clone(),
            card: session.card.clone(),
            width: session.width,
            height: session.height,
            format: session.format,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let (link_tx, link) = watch::channel(CameraLink::Streaming);
        let cfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("latchd-camera".into())
            .spawn(move || run(&cfg, session, &ring, &thread_stop, &link_tx))
            .map_err(|source| CameraError::Open {
                path: negotiated.path.clone(),
                source,
            })?;
        Ok(V4l2Camera {
            negotiated,
            stop,
            thread: Some(thread),
            link,
        })
    }

    /// What was agreed when the camera was first opened.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Follows the camera going away and coming back.
    pub fn link(&self) -> watch::Receiver<CameraLink> {
        self.link.clone()
    }
}

/// One opening of the device, with the format agreed.
struct Session {
    dev: Device,
    path: PathBuf,
    card: String,
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: u32,
}

impl Session {
    fn open(cfg: &config::Camera) -> Result<Self, CameraError> {
        let (dev, path, card) = open_device(cfg)?;
        let (format, width, height, stride) = negotiate(&dev, &path, cfg.width, cfg.height)?;
        Ok(Session {
            dev,
            path,
            card,
            format,
            width,
            height,
            stride,
        })
    }

    fn stream(&self) -> Result<MmapStream<'_>, CameraError> {
        let mut stream =
            MmapStream::with_buffers(&self.dev, Type::VideoCapture, BUFFERS).map_err(|source| {
                CameraError::Ioctl {
                    path: self.path.clone(),
                    what: "VIDIOC_REQBUFS/mmap",
                    source,
                }
            })?;
        stream.set_timeout(DQBUF_TIMEOUT);
        Ok(stream)
    }

    /// Capture into `ring` until `stop` (`None`) or the camera is lost
    /// (why).
    fn capture(&self, ring: &FrameRing, stop: &AtomicBool) -> Option<String> {
        let mut stream = match self.stream() {
            Ok(s) => s,
            Err(e) => return Some(e.to_string()),
        };
        let row = self.width as usize * 2;
        let (mut errors, mut empty) = (0u32, 0u32);
        while !stop.load(Ordering::SeqCst) {
            let (buf, meta) = match CaptureStream::next(&mut stream) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    empty += 1;
                    if empty >= STALL_TIMEOUTS {
                        return Some(format!("no frame in {:?}", DQBUF_TIMEOUT * STALL_TIMEOUTS));
                    }
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                    return Some(format!("the device went away ({e})"));
                }
                Err(e) => {
                    errors += 1;
                    tracing::warn!(path = %self.path.display(), errors, "camera dequeue failed: {e}");
                    if errors >= MAX_CONSECUTIVE_ERRORS {
                        return Some(format!("{errors} failed dequeues in a row, the last: {e}"));
                    }
                    continue;
                }
            };
            (errors, empty) = (0, 0);
            let used = (meta.bytesused as usize).min(buf.len());
            let data = &buf[..used];
            let bytes = match self.format {
                PixelFormat::Yuyv if self.stride as usize > row => {
                    // Drop the per-row padding so the ring holds tight rows.
                    data.chunks(self.stride as usize)
                        .take(self.height as usize)
                        .flat_map(|r| &r[..row.min(r.len())])
                        .copied()
                        .collect()
                }
                _ => data.to_vec(),
            };
            ring.publish(self.width, self.height, self.format, bytes);
        }
        None
    }
}

/// The capture thread: capture, and when the camera is lost, close it and
/// look for it again until it is back or `stop`.
fn run(
    cfg: &config::Camera,
    mut session: Session,
    ring: &FrameRing,
    stop: &AtomicBool,
    link: &watch::Sender<CameraLink>,
) {
    loop {
        let Some(why) = session.capture(ring, stop) else {
            return;
        };
        let path = session.path.clone();
        // Every handle closed: the device can come back.
        drop(session);
        tracing::error!(path = %path.display(), "camera lost: {why}; looking for it every {REOPEN_INTERVAL:?}");
        link.send_replace(CameraLink::Lost(why));
        let mut last_error = String::new();
        session = loop {
            if sleep_unless_stopped(REOPEN_INTERVAL, stop) {
                return;
            }
            match Session::open(cfg) {
                Ok(s) => break s,
                Err(e) => {
                    let e = e.to_string();
                    if e != last_error {
                        tracing::warn!("camera not back yet: {e}");
                        last_error = e;
                    }
                }
            }
        };
        tracing::info!(
            path = %session.path.display(),
            size = %format!("{}x{}", session.width, session.height),
            "camera back"
        );
        link.send_replace(CameraLink::Streaming);
    }
}

/// Sleep `d` in short steps; true when `stop` was set meanwhile.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let step = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        let nap = left.min(step);
        std::thread::sleep(nap);
        left -= nap;
    }
    stop.load(Ordering::SeqCst)
}
