//! latchd — the daemon that *is* the smart lock.
//!
//! The crate is laid out the way the lock is built (see README.md and
//! `core/mod.rs`): a pure, deterministic engine in [`core`] with every rule
//! of the lock, and IO at the edges — [`board`] hardware, [`biometrics`]
//! modules, [`ble`], [`matter`], [`wifi`], [`dbus`], [`video`] services — wired together
//! by the [`daemon`] runtime, with state kept by [`store`].
pub mod biometrics;
pub mod ble;
pub mod board;
pub mod cli;
pub mod config;
pub mod core;
pub mod daemon;
pub mod dbus;
pub mod matter;
pub mod remote;
pub mod store;
pub mod video;
pub mod wifi;
