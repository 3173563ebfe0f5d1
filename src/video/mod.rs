//! Video: what reads the outdoor camera's frames besides face
//! recognition — the live stream, event snapshots and the motion trigger.
//!
//! ```text
//!  V4L2 camera (board/linux/camera.rs) ─┐
//!  sim camera  (board/sim/camera.rs)   ─┴─► board::frames::FrameRing ─┬─► biometrics::face::worker (recognise, enrol)
//!                                                                     ├─► http::VideoServer (MJPEG, /snapshot.jpg)
//!                                                                     ├─► snapshot::RingCamera (doorbell/alarm JPEGs)
//!                                                                     └─► motion::MotionDetector (automatic face attempt)
//! ```
//!
//! The ring belongs to the cameras (`board::frames`): video reads the
//! board, the board never reads video.
//!
//! The daemon wires them together in `daemon/camera.rs`.
//!
//! See `docs/video.md` for the protocol choice and the operator's view.
pub mod admission;
pub mod config;
pub mod http;
pub mod limit;
pub mod motion;
pub mod snapshot;
pub mod tls;

pub use admission::Caps;
pub use config::{battery_bridge, VideoConfig};
pub use http::{StreamConfig, VideoError, VideoServer};
pub use limit::FailureLimits;
pub use snapshot::{RingCamera, SnapshotError, SnapshotSaved, SnapshotStore};
