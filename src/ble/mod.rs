//! BLE services of the lock: the secure app channel (pairing, sessions,
//! commands) and Improv Wi-Fi provisioning. Everything in this module is
//! **sans-IO** — bytes, the monotonic `Instant` and the wall clock come in as
//! arguments; bytes, typed errors and requests for the engine come out. The
//! BlueZ GATT glue (`gatt.rs`, behind `board-linux`) only moves bytes between
//! characteristics and these state machines.
//!
//! ```text
//!   phone app ──BLE GATT──► [gatt.rs: bluer]        (IO, board-linux only)
//!                                │ bytes
//!               ┌────────────────┴─────────────────┐
//!               ▼                                  ▼
//!   protocol::Reassembler → frames          improv::Improv (Wi-Fi setup,
//!      │                                     authorised by pairing mode)
//!      ├─ pairing::LockPairing  (B-5: owner key via the verification code;
//!      │                         guest key via a one-time guest code)
//!      └─ protocol::accept_session → SecureSession
//!              │ open
//!              ▼
//!        commands::open_request → (Principal, Request) → engine (src/core)
//! ```
//!
//! * [`crypto`]: the crypto core (X25519, HKDF-SHA256, ChaCha20-Poly1305,
//!   HMAC) — the only place primitives are called.
//! * [`protocol`]: frames, fragmentation, the session and sealed one-shot
//!   messages for the remote (MQTT) path.
//! * [`pairing`]: owner pairing and guest-code redemption, lock side.
//! * [`commands`]: request/response types, their encoding, the role check.
//! * [`client`]: the app side of pairing and sessions.
//! * [`improv`]: Improv Wi-Fi over BLE.
//!
//! Wire formats, diagrams and the threat table: `docs/ble-protocol.md`.

// The BlueZ glue (`gatt.rs`, `gatt_client.rs`, bluer) is built only with
// `board-linux`; it moves bytes between characteristics and the sans-IO
// state machines, which every build has.
pub mod client;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod dispatch;
#[cfg(feature = "board-linux")]
pub mod gatt;
#[cfg(feature = "board-linux")]
pub mod gatt_client;
pub mod improv;
pub mod pairing;
pub mod protocol;
pub mod service;

/// The engine's clocks, re-exported: monotonic [`Instant`] (ms) for session
/// time-outs, wall-clock [`WallTime`] (UTC seconds) for validity windows.
/// The wall clock may be unknown after a power loss; APIs take
/// `Option<WallTime>` and refuse time-windowed credentials when it is `None`.
pub use crate::core::time::{Instant, Validity, WallTime};
