//! What the radio services say of themselves (issue 22 item 1): the BLE
//! service its registration and whether an app holds its channel, the
//! Wi-Fi backend whether a join is under way. Each service writes its own
//! part; the engine task reads the whole when it builds the diagnostics
//! snapshot, and publishes a new snapshot when it changes (so
//! `PropertiesChanged` follows a radio that changes on its own).
//!
//! ```text
//!  ble::gatt::run ──set_ble──┐
//!  wifi::monitor  ──set_wifi_connecting──┤ watch<ServiceHealth> ─► engine task ─► Diagnostics
//!  daemon::services (no BLE build / [ble] off) ─┤                                (BleState, WifiState,
//!  matter::node (fabrics, window) ──set_matter──┘                                MatterState, MatterFabrics)
//! ```
use std::sync::Arc;

use tokio::sync::watch;

/// The BLE service as it sees itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BleHealth {
    /// `[ble] enabled = false`: the lock has no BLE by configuration.
    Off,
    /// No Bluetooth here: a build without the BlueZ client, no adapter.
    Unavailable(String),
    /// bluetoothd is not on the system bus (yet); the service waits for it.
    WaitingForBluetoothd(String),
    /// The GATT application and the advertisement are registered;
    /// `app_connected`: an app holds the secure channel.
    Registered { app_connected: bool },
    /// bluetoothd is there but the registration failed, or the service
    /// stopped.
    Failed(String),
}

/// The Matter node as it sees itself (issue 22 item 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatterHealth {
    /// `[matter] enabled = false`.
    Off,
    /// This build has no Matter node (built without the `matter` feature).
    Unavailable(String),
    /// The node's thread is loading its fabrics and binding its sockets.
    Starting,
    /// The node answers controllers. `fabrics`: the fabrics it holds now
    /// (each one a home app that commissioned the lock); `window_open`: a
    /// commissioning window is open (pairing mode, B-5.1).
    Running { fabrics: u8, window_open: bool },
    /// The node stopped or could not start; the lock runs on without it.
    Failed(String),
}

/// Every radio's own report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    pub ble: BleHealth,
    /// The Wi-Fi backend is joining a network (associating, key handshake,
    /// getting an address): not connected yet, not failed either.
    pub wifi_connecting: bool,
    /// RAUC's slots as the update task last read them (issue 20), one
    /// line each; empty without RAUC.
    pub update_slots: Vec<String>,
    /// Of those, the slot not booted (for the app's status).
    pub other_slot: Option<crate::app::wire::SlotSummary>,
    pub matter: MatterHealth,
}

impl Default for ServiceHealth {
    fn default() -> Self {
        ServiceHealth {
            ble: BleHealth::Unavailable("the BLE service has not started".into()),
            wifi_connecting: false,
            update_slots: Vec::new(),
            other_slot: None,
            matter: MatterHealth::Off,
        }
    }
}

/// The shared object: every clone writes the same [`ServiceHealth`].
#[derive(Debug, Clone, Default)]
pub struct HealthBoard {
    tx: Arc<watch::Sender<ServiceHealth>>,
}

impl HealthBoard {
    pub fn new() -> Self {
        Self::default()
    }

    /// The BLE service's state now; a repeat of the same is not a change.
    pub fn set_ble(&self, ble: BleHealth) {
        self.tx.send_if_modified(|h| {
            let changed = h.ble != ble;
            h.ble = ble;
            changed
        });
    }

    /// The app holding the BLE channel came or went (only while registered).
    pub fn set_ble_app(&self, connected: bool) {
        self.tx.send_if_modified(|h| match &mut h.ble {
            BleHealth::Registered { app_connected } if *app_connected != connected => {
                *app_connected = connected;
                true
            }
            _ => false,
        });
    }

    /// The Wi-Fi backend is (or is no longer) joining a network.
    pub fn set_wifi_connecting(&self, connecting: bool) {
        self.tx.send_if_modified(|h| {
            let changed = h.wifi_connecting != connecting;
            h.wifi_connecting = connecting;
            changed
        });
    }

    /// The update task read RAUC's slots.
    pub fn set_update_slots(
        &self,
        slots: Vec<String>,
        other: Option<crate::app::wire::SlotSummary>,
    ) {
        self.tx.send_if_modified(|h| {
            let changed = h.update_slots != slots || h.other_slot != other;
            h.update_slots = slots;
            h.other_slot = other;
            changed
        });
    }

    /// The Matter node's state now; a repeat of the same is not a change.
    pub fn set_matter(&self, matter: MatterHealth) {
        self.tx.send_if_modified(|h| {
            let changed = h.matter != matter;
            h.matter = matter;
            changed
        });
    }

    pub fn get(&self) -> ServiceHealth {
        self.tx.borrow().clone()
    }

    /// For the engine task: wakes when any service's report changes.
    pub fn subscribe(&self) -> watch::Receiver<ServiceHealth> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_changes_wake_the_reader() {
        let board = HealthBoard::new();
        let mut rx = board.subscribe();
        rx.borrow_and_update();
        board.set_ble_app(true); // not registered: nothing to say
        assert!(!rx.has_changed().unwrap());
        board.set_ble(BleHealth::Registered {
            app_connected: false,
        });
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        board.set_ble(BleHealth::Registered {
            app_connected: false,
        });
        assert!(!rx.has_changed().unwrap());
        board.set_ble_app(true);
        assert_eq!(
            rx.borrow_and_update().ble,
            BleHealth::Registered {
                app_connected: true
            }
        );
        board.set_wifi_connecting(true);
        assert!(rx.borrow_and_update().wifi_connecting);
        let running = MatterHealth::Running {
            fabrics: 1,
            window_open: false,
        };
        board.set_matter(running.clone());
        assert_eq!(rx.borrow_and_update().matter, running);
        board.set_matter(running);
        assert!(!rx.has_changed().unwrap());
    }
}
