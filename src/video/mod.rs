//! Video: the outdoor camera's frames shared between the face service, the
//! live stream and event snapshots.
//!
//! ```text
//!  V4L2 camera (board/linux/camera.rs) ─┐
//!  sim camera  (board/sim/camera.rs)   ─┴─► ring::FrameRing ─┬─► board::face_service (recognise, enrol)
//!                                                            ├─► http::VideoServer (MJPEG, /snapshot.jpg)
//!                                                            ├─► snapshot::RingCamera (doorbell/alarm JPEGs)
//!                                                            └─► motion::MotionDetector (automatic face attempt)
//! ```
//!
//! The daemon wires them together in `daemon/camera.rs`.
//!
//! See `docs/video.md` for the protocol choice and the operator's view.
pub mod config;
pub mod http;
pub mod motion;
pub mod ring;
pub mod snapshot;

pub use config::{battery_bridge, VideoConfig};
pub use http::{StreamConfig, VideoError, VideoServer};
pub use ring::{Frame, FrameError, FrameRing, FrameStream, PixelFormat};
pub use snapshot::{RingCamera, SnapshotError, SnapshotSaved, SnapshotStore};
