//! The app protocol, transport-free: how a phone app pairs with the lock,
//! opens a secure session, and what it may ask. The BLE GATT channel
//! (`src/ble`) and the MQTT broker channel (`src/remote`) both carry these
//! bytes; neither adds a rule of its own.
//!
//! Everything here is **sans-IO**: bytes, the monotonic `Instant` and the
//! wall clock come in as arguments; bytes, typed errors and requests for
//! the engine come out. The running lock is reached through one trait,
//! [`LockLink`] (implemented by `link::Link` in the daemon, by a bare engine
//! in tests).
//!
//! ```text
//!   BLE GATT (ble/gatt.rs) ── fragments ──► connection::ChannelConn (one per BLE connection)
//!                                             │ protocol::Reassembler → frames
//!                                             ├─ pairing::LockPairing  (B-5: owner key via the
//!                                             │    verification code; guest key via a guest code)
//!                                             └─ protocol::accept_session → SecureSession
//!   MQTT (remote/gate.rs) ── sealed one-shot ───────────┐   │ open
//!                                                       ▼   ▼
//!                              authz::open_request: codec (Request::decode) + authz::authorize
//!                                                       │ (wire::Principal, Request)
//!                                                       ▼
//!                              dispatch::answer ─► dyn LockLink ─► engine (src/core), status, store
//!                                                       │ Response
//!                                                       ▼ codec (Response::encode), sealed back
//! ```
//!
//! * [`crypto`]: the crypto core (X25519, HKDF-SHA256, ChaCha20-Poly1305,
//!   HMAC) — the only place primitives are called — and the lock's static
//!   key both channels use.
//! * [`protocol`]: frames, fragmentation, the session and sealed one-shot
//!   messages for the remote (MQTT) path.
//! * [`pairing`]: owner pairing and guest-code redemption, lock side.
//! * [`request`], [`response`]: what an app may ask and what it is told;
//!   [`codec`]: their binary encoding; [`authz`]: the role check.
//! * [`wire`]: the wire's mirror of core types (`wire::LockState`,
//!   `wire::Principal`, …) and the conversions from core.
//! * [`connection`]: one BLE connection's state machine, lock side.
//! * [`dispatch`]: what an authorised request does.
//! * [`bundle`]: a RAUC bundle streamed in chunks (the store it goes to).
//! * [`lock_link`]: the trait the running lock is reached through.
//! * [`client`]: the app side of pairing and sessions (`latchctl`, tests).
//!
//! Wire formats, diagrams and the threat table: `docs/ble-protocol.md`.
pub mod authz;
pub mod bundle;
pub mod client;
pub mod codec;
pub mod connection;
pub mod crypto;
pub mod dispatch;
pub mod lock_link;
pub mod pairing;
pub mod protocol;
pub mod request;
pub mod response;
pub mod wire;

pub use connection::ChannelConn;
pub use lock_link::{LinkFuture, LockLink, LoggedEvent, StorageError};
pub use request::Request;
pub use response::Response;
