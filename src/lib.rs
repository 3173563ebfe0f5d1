//! latchd — the daemon that *is* the smart lock.
//!
//! The crate is laid out the way the lock is built (see README.md and
//! `core/mod.rs`), in layers that only import downwards
//! (`scripts/check-layers.sh` checks it):
//!
//! ```text
//!   daemon ─► channels and services ─► link ─► app ─► core
//!             (ble, remote, dbus,        │              ▲
//!              wifi, video, matter)      └─► store ─────┤
//!   board (hardware) ◄─ biometrics (drivers) ───────────┘
//! ```
//!
//! * [`core`]: the pure, deterministic engine with every rule of the lock.
//! * [`app`]: the transport-free app protocol (pairing, sessions, requests,
//!   codec, role check, dispatch) that BLE and MQTT both carry.
//! * [`link`]: the one handle channels use to reach the running lock.
//! * [`store`]: SQLite state — one writer thread, a read-only connection.
//! * [`board`] hardware and [`biometrics`] modules; [`ble`], [`remote`],
//!   [`dbus`], [`wifi`], [`video`], [`matter`] channels and services;
//!   [`update`] installs RAUC bundles when the engine says it is safe.
//! * [`daemon`]: builds the lock from its parts, runs it, shuts it down.
//! * [`control`]: the control socket's protocol; [`config`]: `latchd.toml`;
//!   [`cli`]: `latchctl`.
//!
//! Conventions: errors are one enum per module with their cause as
//! `#[source]`; a failure that cannot happen is `.expect("why it cannot")`
//! (never a silent fallback, never `unreachable!` in a match).
// Product-code lints (the ones every target obeys are in Cargo.toml).
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, unused_qualifications)]

pub mod app;
pub mod biometrics;
pub mod ble;
pub mod board;
pub mod cli;
pub mod config;
pub mod control;
pub mod core;
pub mod daemon;
pub mod dbus;
pub mod link;
pub mod matter;
pub mod remote;
pub mod store;
pub mod update;
pub mod video;
pub mod wifi;
pub mod zone;
