//! Who owns a well-known name on the system bus, and when that changes
//! hands: the system services latchd works through restart (a crash
//! brought back by systemd's `Restart=on-failure`, an upgrade, an
//! operator), and each restart forgets what latchd had set up in the old
//! process.
//!
//! * bluetoothd (`org.bluez`): everything registered with it (the GATT
//!   application, an advertisement, Matter's BTP peripheral) lives in that
//!   process, and nothing on the registration's side says it is gone: the
//!   registrant waits for [`NameWatch::next_restart`] and registers again
//!   (`ble/gatt.rs`, `matter/ble.rs`).
//! * the Wi-Fi service (`fi.w1.wpa_supplicant1`, NetworkManager): a new
//!   wpa_supplicant manages no interface until asked, so the Wi-Fi monitor
//!   polls at once on [`NameWatch::next_arrival`] (`daemon/services.rs`).
use futures_util::StreamExt;

/// bluetoothd's well-known name.
pub const BLUEZ: &str = "org.bluez";

/// A watch on one well-known name's owner: the current one, and its next
/// change.
pub struct NameWatch {
    name: &'static str,
    dbus: zbus::fdo::DBusProxy<'static>,
    changes: zbus::fdo::NameOwnerChangedStream,
}

impl NameWatch {
    /// Start watching `name` on `system` (subscribes before anything is
    /// set up with the owner, so no change after it can be missed).
    pub async fn watch(system: &zbus::Connection, name: &'static str) -> zbus::Result<Self> {
        let dbus = zbus::fdo::DBusProxy::new(system).await?;
        let changes = dbus
            .receive_name_owner_changed_with_args(&[(0, name)])
            .await?;
        Ok(Self {
            name,
            dbus,
            changes,
        })
    }

    /// The unique name owning the name now, if any.
    pub async fn current(&self) -> Option<String> {
        let name = zbus::names::BusName::try_from(self.name).ok()?;
        self.dbus
            .get_name_owner(name)
            .await
            .ok()
            .map(|o| o.to_string())
    }

    /// True while some process owns the name.
    pub async fn running(&self) -> bool {
        match zbus::names::BusName::try_from(self.name) {
            Ok(name) => self.dbus.name_has_owner(name).await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// The next change of owner, whatever it is; false once the stream
    /// ended (the bus connection is gone).
    pub async fn next_change(&mut self) -> bool {
        self.changes.next().await.is_some()
    }

    /// The next time a process takes the name (a start or a restart); false
    /// once the stream ended.
    pub async fn next_arrival(&mut self) -> bool {
        while let Some(change) = self.changes.next().await {
            if change.args().ok().is_some_and(|a| a.new_owner().is_some()) {
                return true;
            }
        }
        false
    }

    /// The next change of owner that is not the process a registration
    /// was made with (`registered_with`, from [`Self::current`] after it)
    /// taking the name. That event is often queued from before the
    /// registration (the old process left and the new one came up during a
    /// retry pause); acting on it dropped a working registration and left
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

impl std::fmt::Debug for NameWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameWatch")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
