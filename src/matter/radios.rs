//! The lock's radios the Matter node may commission over (parsed in every
//! build, so the daemon hands them over the same way with or without the
//! `matter` feature).
use std::sync::Arc;

use crate::wifi::WifiBackend;

/// The lock's radios the node commissions over.
#[derive(Clone, Default)]
pub struct Radios {
    /// The BlueZ adapter (e.g. `hci0`; empty: BlueZ's default adapter)
    /// that carries BLE commissioning while pairing mode lasts; `None`:
    /// on-network commissioning only.
    pub ble_adapter: Option<String>,
    /// The lock's Wi-Fi backend: Network Commissioning is then Wi-Fi over
    /// it; `None`: the Ethernet variant (the lock's IP link as it is).
    pub wifi: Option<Arc<dyn WifiBackend>>,
}

impl std::fmt::Debug for Radios {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Radios")
            .field("ble_adapter", &self.ble_adapter)
            .field("wifi", &self.wifi.is_some())
            .finish()
    }
}
