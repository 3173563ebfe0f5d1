//! The lock's Bluetooth LE surface: the GATT application that carries the
//! app protocol (`src/app`) and Improv Wi-Fi provisioning.
//!
//! ```text
//!   phone app ──BLE GATT──► [gatt.rs: bluer]        (IO, board-linux only)
//!                                │ bytes
//!               ┌────────────────┴─────────────────┐
//!               ▼                                  ▼
//!   app::ChannelConn (pairing, sessions,    improv::Improv (Wi-Fi setup,
//!      requests; sans-IO, src/app)           authorised by pairing mode)
//!               │                                  │
//!               ▼                                  ▼
//!      link::Link (the running lock)        wifi::WifiBackend
//! ```
//!
//! * [`improv`]: Improv Wi-Fi over BLE (sans-IO).
//! * [`guard`], [`slot`]: who may stay connected and who holds the one
//!   channel (issue 14.3, sans-IO).
//! * [`config`]: the `[ble]` table.
//! * `gatt` / `gatt_client` (behind `board-linux`): the BlueZ glue, lock
//!   side and app side. They only move bytes between characteristics and
//!   the sans-IO state machines, which every build has.
//!
//! Wire formats, diagrams and the threat table: `docs/ble-protocol.md`.
pub mod config;
#[cfg(feature = "board-linux")]
pub mod gatt;
#[cfg(feature = "board-linux")]
pub mod gatt_client;
pub mod guard;
pub mod improv;
pub mod slot;
