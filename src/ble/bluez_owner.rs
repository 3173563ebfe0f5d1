//! Who owns `org.bluez` on the system bus, and when that changes hands.
//!
//! Everything registered with bluetoothd (a GATT application, an
//! advertisement, an agent) lives in that process: when it restarts (a
//! crash brought back by systemd's `Restart=on-failure`, an upgrade, an
//! operator) the new one knows none of it, and nothing on the old
//! registration's side says so. Whoever registered watches the name's
//! owner and registers again. Shared by the lock's GATT application
//! (`gatt.rs`) and Matter's BLE commissioning (`matter/ble.rs`).
use futures_util::StreamExt;

/// The well-known name bluetoothd takes.
const BLUEZ: &str = "org.bluez";

/// A watch on `org.bluez`'s owner: the current one, and its next change.
pub struct BluezOwner {
    dbus: zbus::fdo::DBusProxy<'static>,
    changes: zbus::fdo::NameOwnerChangedStream,
}

impl BluezOwner {
    /// Start watching on `system` (subscribes before any registration is
    /// made, so no change after it can be missed).
    pub async fn watch(system: &zbus::Connection) -> zbus::Result<Self> {
        let dbus = zbus::fdo::DBusProxy::new(system).await?;
        let changes = dbus
            .receive_name_owner_changed_with_args(&[(0, BLUEZ)])
            .await?;
        Ok(Self { dbus, changes })
    }

    /// The unique name owning `org.bluez` now, if any.
    pub async fn current(&self) -> Option<String> {
        let name = zbus::names::BusName::try_from(BLUEZ).ok()?;
        self.dbus
            .get_name_owner(name)
            .await
            .ok()
            .map(|o| o.to_string())
    }

    /// True while some process owns `org.bluez`.
    pub async fn running(&self) -> bool {
        match zbus::names::BusName::try_from(BLUEZ) {
            Ok(name) => self.dbus.name_has_owner(name).await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// The next change of owner, whatever it is; false once the stream
    /// ended (the bus connection is gone).
    pub async fn next_change(&mut self) -> bool {
        self.changes.next().await.is_some()
    }

    /// The next change of owner that is not the bluetoothd a registration
    /// was made with (`registered_with`, from [`Self::current`] after it)
    /// taking the name. That event is often queued from before the
    /// registration (the old bluetoothd left and the new one came up during
    /// a retry pause); acting on it dropped a working registration and left
    /// a window in which the lock was found but had no services. Returns
    /// when the stream ends too (treated as a restart).
    pub async fn next_restart(&mut self, registered_with: Option<&str>) {
        while let Some(change) = self.changes.next().await {
            let ours = change.args().ok().is_some_and(|a| {
                a.new_owner().as_ref().map(|o| o.as_str()) == registered_with
                    && registered_with.is_some()
            });
            if !ours {
                return;
            }
        }
    }
}

impl std::fmt::Debug for BluezOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BluezOwner").finish_non_exhaustive()
    }
}
