//! Biometric modules: the fingerprint and palm-vein UART module drivers
//! (with simulators that speak the same wire protocol), the face pipeline
//! (camera frames → detector → embedder → matcher), and what puts them
//! behind the board's traits.
//!
//! ```text
//!  Board.fingerprint / Board.palm ── adapter::ModuleAdapter ──► adapter task
//!        (FingerprintModule / PalmModule)         fingerprint::reader / palm::reader
//!                                                   └─► fingerprint::driver / palm::driver ─► UART
//!  Board.face (FaceSource) ── face::worker::FaceService ◄── board::frames::FrameRing (camera)
//! ```
//!
//! Where the modules come from: `uart` opens the Linux board file's UARTs;
//! `wire` runs the same drivers against the wire-level simulators for the
//! sim board (`[sim] modules = "wire"`). This module may use `board` and
//! `core`; the board never uses it.
pub mod adapter;
#[cfg(feature = "face")]
pub mod face;
pub mod fingerprint;
pub mod palm;
#[cfg(feature = "board-linux")]
pub mod uart;
pub mod wire;
