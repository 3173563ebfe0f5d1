//! The near-IR camera face liveness reads (`[face] ir_camera`), through
//! V4L2: a UVC "Windows Hello"-style IR module or an SoC IR sensor beside
//! the RGB camera, with the same field of view.
//!
//! ```text
//!  [face] ir_camera = "/dev/video2"
//!     │ open at start: VIDIOC_QUERYCAP (capture + streaming),
//!     │ VIDIOC_S_FMT GREY at the driver's current size, else YUYV
//!     ▼
//!  grab(), once per matched face (blocking pool):
//!     board file outputs.ir_illuminator on
//!     REQBUFS 2 + STREAMON ── DQBUF × (WARMUP_FRAMES + 1) ── keep the last ── STREAMOFF
//!     outputs.ir_illuminator off
//!     GREY: rows of `stride` bytes, first `width` kept
//!     YUYV: the Y byte of each pixel (an IR sensor's intensity)  ──► GrayImage
//! ```
//!
//! Streaming only while a face is being decided keeps the IR sensor (and an
//! illuminator tied to it) off the rest of the time, which matters on a
//! battery lock. The first frames after STREAMON may still be exposing, so
//! [`WARMUP_FRAMES`] are dropped.
//!
//! IR illumination: the board file's `outputs.ir_illuminator` line (850 nm
//! LED driver) is switched on only for the grab, and off after it, also
//! when the grab failed. The daemon requests that line only when IR
//! liveness is configured; a UVC IR module that lights its own LED while
//! streaming needs nothing more, and the board line then drives nothing.
//! Without light every face reads as too dark and is refused.
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use image::GrayImage;
use v4l::buffer::Type;
use v4l::capability::Flags;
use v4l::io::traits::CaptureStream;
use v4l::prelude::*;
use v4l::video::Capture;
use v4l::FourCC;

use super::gpio::{GpioError, GpioOutput};
use super::illuminator::Illuminator;

/// Frames dropped after STREAMON before the one that is judged.
pub const WARMUP_FRAMES: u32 = 2;
/// Longest wait for one IR frame.
pub const GRAB_TIMEOUT: Duration = Duration::from_secs(2);
/// Buffers queued while grabbing.
const BUFFERS: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum IrCameraError {
    #[error("IR camera {path}: {source}; check `[face] ir_camera` and permissions (group video)")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("IR camera {path} is not a streaming video capture device; check `[face] ir_camera`")]
    NotCapture { path: PathBuf },
    #[error("IR camera {path} offers neither GREY nor YUYV (it offers {offered})")]
    NoUsableFormat { path: PathBuf, offered: String },
    #[error("IR camera {path}: {what}: {source}")]
    Ioctl {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("IR camera {path} no longer takes the agreed format (it gives {now}); restart latchd")]
    FormatChanged { path: PathBuf, now: String },
    #[error("IR illuminator: {0}")]
    Illuminator(#[from] GpioError),
    #[error("IR camera {path}: a {got}-byte frame is too short for {width}x{height} {format:?} (stride {stride})")]
    ShortFrame {
        path: PathBuf,
        got: usize,
        width: u32,
        height: u32,
        stride: u32,
        format: IrFormat,
    },
}

/// The pixel layouts an IR frame is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrFormat {
    /// 8-bit luma (`GREY`).
    Grey,
    /// Packed Y0 U Y1 V (`YUYV`): the Y bytes are the intensity.
    Yuyv,
}

impl IrFormat {
    fn bytes_per_pixel(self) -> usize {
        match self {
            IrFormat::Grey => 1,
            IrFormat::Yuyv => 2,
        }
    }
}

/// An opened IR camera, not streaming between grabs.
pub struct V4l2IrCamera {
    /// Held so grabs from two attempts never race for the device or the
    /// LED.
    inner: Mutex<Inner>,
    path: PathBuf,
    format: IrFormat,
    fourcc: FourCC,
    width: u32,
    height: u32,
    stride: u32,
}

struct Inner {
    dev: Device,
    illuminator: Option<Illuminator<GpioOutput>>,
}

impl std::fmt::Debug for V4l2IrCamera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2IrCamera")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("size", &(self.width, self.height))
            .finish_non_exhaustive()
    }
}

impl V4l2IrCamera {
    /// Open `path` and agree on GREY (else YUYV) at the driver's current
    /// frame size; `illuminator` is lit for each grab.
    pub fn open(
        path: &Path,
        illuminator: Option<Illuminator<GpioOutput>>,
    ) -> Result<Self, IrCameraError> {
        let ioctl = |what| {
            let path = path.to_owned();
            move |source| IrCameraError::Ioctl { path, what, source }
        };
        let dev = Device::with_path(path).map_err(|source| IrCameraError::Open {
            path: path.to_owned(),
            source,
        })?;
        let caps = dev.query_caps().map_err(ioctl("VIDIOC_QUERYCAP"))?;
        if !(caps.capabilities.contains(Flags::VIDEO_CAPTURE)
            && caps.capabilities.contains(Flags::STREAMING))
        {
            return Err(IrCameraError::NotCapture {
                path: path.to_owned(),
            });
        }
        let offered = dev.enum_formats().map_err(ioctl("VIDIOC_ENUM_FMT"))?;
        let (fourcc, format) = super::camera::first_offered(
            &offered,
            &[(*b"GREY", IrFormat::Grey), (*b"YUYV", IrFormat::Yuyv)],
        )
        .map_err(|offered| IrCameraError::NoUsableFormat {
            path: path.to_owned(),
            offered,
        })?;
        let mut fmt = dev.format().map_err(ioctl("VIDIOC_G_FMT"))?;
        fmt.fourcc = fourcc;
        let got = dev.set_format(&fmt).map_err(ioctl("VIDIOC_S_FMT"))?;
        if got.fourcc != fourcc {
            return Err(IrCameraError::NoUsableFormat {
                path: path.to_owned(),
                offered: format!("{} (driver refused {fourcc})", got.fourcc),
            });
        }
        Ok(V4l2IrCamera {
            inner: Mutex::new(Inner { dev, illuminator }),
            path: path.to_owned(),
            format,
            fourcc,
            width: got.width,
            height: got.height,
            stride: got.stride,
        })
    }

    /// Set the agreed format again before streaming: whoever opened the
    /// node in between (`v4l2-ctl`, another program) may have changed it,
    /// and a frame read with the wrong layout would be judged as garbage.
    fn reassert_format(&self, dev: &Device) -> Result<(), IrCameraError> {
        let ioctl = |what| {
            let path = self.path.clone();
            move |source| IrCameraError::Ioctl { path, what, source }
        };
        let mut fmt = dev.format().map_err(ioctl("VIDIOC_G_FMT"))?;
        fmt.fourcc = self.fourcc;
        fmt.width = self.width;
        fmt.height = self.height;
        let got = dev.set_format(&fmt).map_err(ioctl("VIDIOC_S_FMT"))?;
        if (got.fourcc, got.width, got.height, got.stride)
            != (self.fourcc, self.width, self.height, self.stride)
        {
            return Err(IrCameraError::FormatChanged {
                path: self.path.clone(),
                now: format!(
                    "{}x{} {} stride {}",
                    got.width, got.height, got.fourcc, got.stride
                ),
            });
        }
        Ok(())
    }

    /// The agreed frame size and layout.
    pub fn format(&self) -> (u32, u32, IrFormat) {
        (self.width, self.height, self.format)
    }

    /// Light the illuminator, stream just long enough for one settled
    /// frame, and return its luma; the illuminator is off again after.
    pub fn grab(&self) -> Result<GrayImage, IrCameraError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Lit for this frame (already lit when a face attempt holds it);
        // out again when the hold drops, unless the attempt still holds it.
        let lit = inner
            .illuminator
            .as_ref()
            .map(Illuminator::hold)
            .transpose()?;
        let frame = self.capture(&inner.dev);
        drop(lit);
        frame
    }

    fn capture(&self, dev: &Device) -> Result<GrayImage, IrCameraError> {
        self.reassert_format(dev)?;
        let mut stream =
            MmapStream::with_buffers(dev, Type::VideoCapture, BUFFERS).map_err(|source| {
                IrCameraError::Ioctl {
                    path: self.path.clone(),
                    what: "VIDIOC_REQBUFS/mmap",
                    source,
                }
            })?;
        stream.set_timeout(GRAB_TIMEOUT);
        let dqbuf = |source| IrCameraError::Ioctl {
            path: self.path.clone(),
            what: "VIDIOC_DQBUF",
            source,
        };
        for _ in 0..WARMUP_FRAMES {
            CaptureStream::next(&mut stream).map_err(dqbuf)?;
        }
        let (buf, meta) = CaptureStream::next(&mut stream).map_err(dqbuf)?;
        let used = (meta.bytesused as usize).min(buf.len());
        luma(
            &buf[..used],
            self.format,
            self.width,
            self.height,
            self.stride,
        )
        .ok_or_else(|| IrCameraError::ShortFrame {
            path: self.path.clone(),
            got: used,
            width: self.width,
            height: self.height,
            stride: self.stride,
            format: self.format,
        })
    }
}

/// The intensity plane of one frame, or `None` when `data` is too short.
/// A `stride` below the packed row length (0 from some drivers) means
/// rows are packed.
pub fn luma(
    data: &[u8],
    format: IrFormat,
    width: u32,
    height: u32,
    stride: u32,
) -> Option<GrayImage> {
    let bpp = format.bytes_per_pixel();
    let row = width as usize * bpp;
    let stride = (stride as usize).max(row);
    let (w, h) = (width as usize, height as usize);
    if h == 0 || w == 0 || data.len() < stride * (h - 1) + row {
        return None;
    }
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let line = &data[y * stride..y * stride + row];
        match format {
            IrFormat::Grey => out.extend_from_slice(line),
            IrFormat::Yuyv => out.extend(line.iter().step_by(2)),
        }
    }
    GrayImage::from_raw(width, height, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_rows_drop_their_padding() {
        // 3×2 with a 4-byte stride; the padding byte is 99.
        let data = [1, 2, 3, 99, 4, 5, 6];
        let img = luma(&data, IrFormat::Grey, 3, 2, 4).expect("fits");
        assert_eq!(img.as_raw(), &vec![1, 2, 3, 4, 5, 6]);
        // Packed (stride 0).
        let img = luma(&[7, 8, 9, 10], IrFormat::Grey, 2, 2, 0).expect("fits");
        assert_eq!(img.as_raw(), &vec![7, 8, 9, 10]);
    }

    #[test]
    fn yuyv_keeps_the_y_bytes() {
        // 2×2: Y0 U Y1 V per pixel pair, 6-byte stride (2 padding).
        let data = [10, 128, 20, 128, 0, 0, 30, 128, 40, 128];
        let img = luma(&data, IrFormat::Yuyv, 2, 2, 6).expect("fits");
        assert_eq!(img.as_raw(), &vec![10, 20, 30, 40]);
    }

    #[test]
    fn short_or_empty_frames_are_refused() {
        assert!(luma(&[1, 2, 3], IrFormat::Grey, 2, 2, 0).is_none());
        assert!(luma(&[0; 7], IrFormat::Yuyv, 2, 2, 0).is_none());
        assert!(luma(&[], IrFormat::Grey, 0, 0, 0).is_none());
    }
}
