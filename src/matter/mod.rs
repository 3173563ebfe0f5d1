//! The Matter node: the lock as a Door Lock device (issue 18) for Apple
//! Home, Google Home, Alexa, SmartThings and Home Assistant — a third app
//! channel beside BLE and MQTT, on rs-matter (pure Rust).
//!
//! ```text
//!  controller ──PASE/CASE (UDP 5540)──► rs-matter ── ACL check ──► door_lock.rs
//!  (Home Assistant…)   ▲ mDNS _matterc/_matter        │ AppCommand as Principal::Matter
//!                      └── node.rs (thread "matter")   ▼
//!                                                 LockPort (port.rs) ─► the engine's rules
//!                                                      ▲ status, events, sealed blobs
//! ```
//!
//! * `port.rs`      — the narrow interface to the lock; `link_port.rs` binds it to the [`Link`](crate::link::Link)
//! * `node.rs`      — rs-matter's stack: endpoints, transport, mDNS, the
//!   commissioning window that pairing mode opens, factory reset
//! * `door_lock.rs` — the Door Lock cluster; `mapping.rs` its words for the engine's
//! * `onboarding.rs`— the per-lock setup passcode and discriminator (the label)
//! * `kv.rs`        — rs-matter's persistence on the lock's sealed store
//! * `labels.rs`    — user names controllers set; `schedule.rs` — schedules (not yet)
//! * `attestation.rs` — development or product DAC/PAI/CD; `net.rs` — interface, mDNS socket
//! * `ble.rs`       — BLE commissioning (BTP over BlueZ) while pairing mode lasts
//! * `wifi.rs`      — Wi-Fi network commissioning over the lock's Wi-Fi backend
//! * `power.rs`     — Power Source: battery and USB-C
//!
//! Matter's PASE/CASE and access control lists decide who may send what;
//! the engine then applies its own rules to a Matter administrator as to
//! the owner's app (`core/matter.rs`). `docs/matter.md` has the mapping
//! table and the limits.
// `[matter]` parses in every build, so one config file serves them all.
pub mod config;
pub use config::MatterConfig;
pub mod radios;
pub use radios::Radios;

#[cfg(feature = "matter")]
pub mod attestation;
#[cfg(feature = "matter")]
pub mod ble;
#[cfg(feature = "matter")]
pub mod clock;
#[cfg(feature = "matter")]
pub mod door_lock;
#[cfg(feature = "matter")]
pub mod kv;
#[cfg(feature = "matter")]
pub mod labels;
#[cfg(feature = "matter")]
pub mod link_port;
#[cfg(feature = "matter")]
pub mod mapping;
#[cfg(feature = "matter")]
pub mod net;
#[cfg(feature = "matter")]
pub mod node;
#[cfg(feature = "matter")]
pub mod onboarding;
#[cfg(feature = "matter")]
pub mod port;
#[cfg(feature = "matter")]
pub mod power;
#[cfg(feature = "matter")]
pub mod schedule;
#[cfg(feature = "matter")]
pub mod wifi;

#[cfg(feature = "matter")]
pub use link_port::LinkPort;
#[cfg(feature = "matter")]
pub use node::Identity;
#[cfg(feature = "matter")]
pub use onboarding::Onboarding;
#[cfg(feature = "matter")]
pub use port::{BlobError, BlobScope, LockPort, PortFuture};
#[cfg(feature = "matter")]
pub use running::{spawn, MatterError, MatterHandle};

#[cfg(feature = "matter")]
mod running;
