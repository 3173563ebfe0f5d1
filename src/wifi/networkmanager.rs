//! Wi-Fi through NetworkManager's D-Bus API (`org.freedesktop.NetworkManager`).
//!
//! ```text
//!  /org/freedesktop/NetworkManager   org.freedesktop.NetworkManager
//!     GetDeviceByIpIface("wlan0") ──► <dev>       (UnknownDevice → InterfaceMissing)
//!     AddAndActivateConnection(
//!        {connection: {type: "802-11-wireless", id, autoconnect, autoconnect-retries: 0},
//!         802-11-wireless: {ssid: ay, mode: "infrastructure"},
//!         802-11-wireless-security: {key-mgmt: "wpa-psk", psk}},   (absent: open network)
//!        <dev>, "/") ──► (<settings>, <active>)
//!  <active>  org.freedesktop.NetworkManager.Connection.Active
//!     StateChanged(state, reason): ACTIVATING(1) → ACTIVATED(2) ✔
//!                                               └► DEACTIVATED(4), reason DEVICE_DISCONNECTED(3)
//!  <dev>     org.freedesktop.NetworkManager.Device, just before that:
//!     StateChanged(new, old, reason): NEED_AUTH(60) → FAILED(120), reason NO_SECRETS(7) = wrong key
//!  status: Device.Wireless.ActiveAccessPoint → AccessPoint.Strength (%)
//!  scan:   Device.Wireless.RequestScan({}) … LastScan changes   (Device.NotAllowed: busy → current list)
//!          Device.Wireless.GetAllAccessPoints() ──► [<ap>]
//!          AccessPoint.{Ssid: ay, Strength: y, Flags, WpaFlags, RsnFlags: u}
//! ```
//!
//! A failed activation deletes the connection profile it created, so a bad
//! password is not stored and retried by NetworkManager.
//!
//! A wrong key shows on the device, not on the active connection: the real
//! NetworkManager (1.42, `tests/vm/vm_wifi_nm.rs`) asks its secret agents
//! for a new key when the 4-way handshake fails, has none on a lock, fails
//! the device with NO_SECRETS and only then deactivates the active
//! connection, always with DEVICE_DISCONNECTED. The active connection's
//! own NO_SECRETS/LOGIN_FAILED are VPN reasons; they are taken too.
use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, Value};

use super::{
    bus_err, check_credentials, error_name, is_service_unknown, next_change, properties_of_each,
    properties_proxy, ssid_text, summarise_scan, ScannedNetwork, Secret, WifiBackend, WifiError,
    WifiFuture, WifiStatus, SCAN_TIMEOUT,
};

pub const SERVICE: &str = "org.freedesktop.NetworkManager";
pub const ROOT_PATH: &str = "/org/freedesktop/NetworkManager";
pub const DEVICE_IFACE: &str = "org.freedesktop.NetworkManager.Device";
pub const WIRELESS_IFACE: &str = "org.freedesktop.NetworkManager.Device.Wireless";
pub const ACTIVE_IFACE: &str = "org.freedesktop.NetworkManager.Connection.Active";
pub const AP_IFACE: &str = "org.freedesktop.NetworkManager.AccessPoint";
pub const SETTINGS_CONNECTION_IFACE: &str = "org.freedesktop.NetworkManager.Settings.Connection";
const NAME: &str = "NetworkManager";
pub const SETTINGS_PATH: &str = "/org/freedesktop/NetworkManager/Settings";
pub const SETTINGS_IFACE: &str = "org.freedesktop.NetworkManager.Settings";
/// Every profile the lock creates is named `latchd <ssid>`; a factory
/// reset deletes exactly those (not the ones an installer made by hand).
pub const PROFILE_PREFIX: &str = "latchd ";

/// `NMActiveConnectionState`.
pub mod active_state {
    pub const ACTIVATING: u32 = 1;
    pub const ACTIVATED: u32 = 2;
    pub const DEACTIVATING: u32 = 3;
    pub const DEACTIVATED: u32 = 4;
}
/// `NMActiveConnectionStateReason` values that mean the key was wrong.
/// `NMDeviceState`.
pub mod device_state {
    pub const DISCONNECTED: u32 = 30;
    /// PREPARE (40) to SECONDARIES (90): an activation under way.
    pub const JOINING: std::ops::RangeInclusive<u32> = 40..=90;
    pub const ACTIVATED: u32 = 100;
    pub const FAILED: u32 = 120;
}

pub const REASON_NO_SECRETS: u32 = 9;
pub const REASON_LOGIN_FAILED: u32 = 10;
/// `NMDeviceStateReason`: the secrets (the key) were refused and no agent
/// gave new ones.
pub const DEVICE_REASON_NO_SECRETS: u32 = 7;
/// `NMDeviceType` of a Wi-Fi device.
pub const DEVICE_TYPE_WIFI: u32 = 2;
/// `NM80211ApFlags`: the network is encrypted (WEP or better).
pub const AP_FLAGS_PRIVACY: u32 = 0x1;
/// `NM80211ApSecurityFlags` key managements that need a password or a
/// certificate: PSK, 802.1X, SAE (WPA3), EAP Suite-B 192.
pub const AP_SEC_KEY_MGMT_SECRET: u32 = 0x100 | 0x200 | 0x400 | 0x2000;
/// … and OWE ("enhanced open", transition mode): encrypted, no password.
pub const AP_SEC_KEY_MGMT_OWE: u32 = 0x800 | 0x1000;
/// `RequestScan` refused: a scan is running or the last one was just now.
const NOT_ALLOWED: &str = "org.freedesktop.NetworkManager.Device.NotAllowed";

/// NetworkManager over D-Bus.
#[derive(Debug, Clone)]
pub struct NetworkManager {
    bus: zbus::Connection,
    interface: String,
    timeout: Duration,
}

fn call_err(call: &'static str) -> impl FnOnce(zbus::Error) -> WifiError {
    move |source| {
        if is_service_unknown(&source) {
            WifiError::ServiceMissing {
                service: NAME,
                unit: "NetworkManager",
            }
        } else {
            WifiError::Call {
                service: NAME,
                call,
                source: Box::new(source),
            }
        }
    }
}

/// NetworkManager's percentage back to dBm (inverse of its
/// `nm_wifi_utils_level_to_quality`: −40 dBm = 100 %, −100 dBm = 0 %).
pub fn strength_to_dbm(percent: u8) -> i16 {
    let p = i16::from(percent.min(100));
    -40 - (100 - p) * 60 / 100
}

impl NetworkManager {
    pub fn new(bus: zbus::Connection, interface: &str, timeout: Duration) -> Self {
        NetworkManager {
            bus,
            interface: interface.to_owned(),
            timeout,
        }
    }

    async fn proxy(
        &self,
        path: &str,
        iface: &'static str,
    ) -> Result<zbus::Proxy<'static>, WifiError> {
        super::uncached_proxy(&self.bus, SERVICE, path, iface).await
    }

    /// The Wi-Fi device object for the configured interface.
    async fn device(&self) -> Result<OwnedObjectPath, WifiError> {
        let nm = self.proxy(ROOT_PATH, SERVICE).await?;
        let dev: OwnedObjectPath = nm
            .call("GetDeviceByIpIface", &(self.interface.as_str(),))
            .await
            .map_err(|e| match error_name(&e) {
                Some("org.freedesktop.NetworkManager.UnknownDevice") => {
                    WifiError::InterfaceMissing {
                        interface: self.interface.clone(),
                        service: NAME,
                    }
                }
                _ => call_err("GetDeviceByIpIface")(e),
            })?;
        let kind: u32 = self
            .proxy(dev.as_str(), DEVICE_IFACE)
            .await?
            .get_property("DeviceType")
            .await
            .map_err(call_err("Get(DeviceType)"))?;
        if kind != DEVICE_TYPE_WIFI {
            return Err(WifiError::InterfaceMissing {
                interface: self.interface.clone(),
                service: NAME,
            });
        }
        Ok(dev)
    }

    /// NetworkManager's Wi-Fi switch.
    async fn wireless_enabled(&self) -> Result<bool, WifiError> {
        self.proxy(ROOT_PATH, SERVICE)
            .await?
            .get_property("WirelessEnabled")
            .await
            .map_err(call_err("Get(WirelessEnabled)"))
    }

    /// Joined only once the device is ACTIVATED: during an activation
    /// (a join, also one with a key the AP will refuse) the device already
    /// has its access point, and a poll then read "connected" — the engine
    /// kept it until the next poll.
    async fn link(&self, dev: &OwnedObjectPath) -> Result<WifiStatus, WifiError> {
        let enabled = self.wireless_enabled().await?;
        let ap: OwnedObjectPath = self
            .proxy(dev.as_str(), WIRELESS_IFACE)
            .await?
            .get_property("ActiveAccessPoint")
            .await
            .map_err(call_err("Get(ActiveAccessPoint)"))?;
        let state: u32 = self
            .proxy(dev.as_str(), DEVICE_IFACE)
            .await?
            .get_property("State")
            .await
            .map_err(call_err("Get(State)"))?;
        if ap.as_str() == "/" || state != device_state::ACTIVATED {
            return Ok(WifiStatus {
                enabled,
                connected: false,
                connecting: device_state::JOINING.contains(&state),
                rssi_dbm: None,
            });
        }
        let strength: u8 = self
            .proxy(ap.as_str(), AP_IFACE)
            .await?
            .get_property("Strength")
            .await
            .map_err(call_err("Get(Strength)"))?;
        Ok(WifiStatus {
            enabled,
            connected: true,
            connecting: false,
            rssi_dbm: Some(strength_to_dbm(strength)),
        })
    }

    async fn do_apply(&self, ssid: &[u8], psk: &[u8]) -> Result<WifiStatus, WifiError> {
        let secret = check_credentials(ssid, psk)?;
        let dev = self.device().await?;
        let name = ssid_text(ssid);

        let mut connection: HashMap<&str, Value<'_>> = HashMap::new();
        connection.insert("type", Value::from("802-11-wireless"));
        connection.insert("id", Value::from(format!("{PROFILE_PREFIX}{name}")));
        connection.insert("autoconnect", Value::from(true));
        // Retry forever: NetworkManager's default gives up after 4 failed
        // attempts and blocks the profile for 5 minutes, so a lock whose
        // router was off a while would stay offline that much longer.
        connection.insert("autoconnect-retries", Value::from(0i32));
        let mut wireless: HashMap<&str, Value<'_>> = HashMap::new();
        wireless.insert("ssid", Value::from(ssid));
        wireless.insert("mode", Value::from("infrastructure"));
        let hex_key;
        let mut settings: HashMap<&str, HashMap<&str, Value<'_>>> = HashMap::new();
        match &secret {
            Secret::Open => {}
            Secret::Passphrase(p) => {
                let mut sec: HashMap<&str, Value<'_>> = HashMap::new();
                sec.insert("key-mgmt", Value::from("wpa-psk"));
                sec.insert("psk", Value::from(p.as_str()));
                settings.insert("802-11-wireless-security", sec);
            }
            Secret::RawKey(k) => {
                // NetworkManager takes a raw key as its 64 hex digits.
                hex_key = zeroize::Zeroizing::new(hex::encode(&k[..]));
                let mut sec: HashMap<&str, Value<'_>> = HashMap::new();
                sec.insert("key-mgmt", Value::from("wpa-psk"));
                sec.insert("psk", Value::from(hex_key.as_str()));
                settings.insert("802-11-wireless-security", sec);
            }
        }
        settings.insert("connection", connection);
        settings.insert("802-11-wireless", wireless);

        // Subscribe to every StateChanged (active connections', devices')
        // before the call: the activation may finish before its path is
        // known to us. One stream keeps the bus's order: the device's
        // failure comes before the active connection's end.
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(SERVICE)
            .and_then(|b| b.member("StateChanged"))
            .map_err(bus_err)?
            .build();
        let mut changes = zbus::MessageStream::for_match_rule(rule, &self.bus, Some(64))
            .await
            .map_err(bus_err)?;
        let nm = self.proxy(ROOT_PATH, SERVICE).await?;
        let specific = ObjectPath::from_static_str_unchecked("/");
        let (profile, active): (OwnedObjectPath, OwnedObjectPath) = nm
            .call(
                "AddAndActivateConnection",
                &(settings, dev.as_ref(), specific),
            )
            .await
            .map_err(|e| match error_name(&e) {
                Some(
                    "org.freedesktop.NetworkManager.Settings.Connection.InvalidProperty"
                    | "org.freedesktop.NetworkManager.Settings.Connection.InvalidSetting",
                ) => WifiError::BadCredentials("NetworkManager refused the SSID or password"),
                _ => call_err("AddAndActivateConnection")(e),
            })?;

        let active_proxy = self.proxy(active.as_str(), ACTIVE_IFACE).await?;
        let watch = async {
            // We subscribed before the call, so every StateChanged is in
            // the stream; the property is read once only to catch an
            // activation that completed instantly. A DEACTIVATED read here
            // carries no reason, so that case waits for its signal.
            let mut state: u32 = active_proxy
                .get_property("State")
                .await
                .map_err(call_err("Get(State)"))?;
            if state != active_state::ACTIVATED {
                state = active_state::ACTIVATING;
            }
            let mut reason = 0u32;
            // The reason the device failed with, if it did (FAILED).
            let mut device_failed: Option<u32> = None;
            loop {
                match state {
                    active_state::ACTIVATED => return self.link(&dev).await,
                    active_state::DEACTIVATING | active_state::DEACTIVATED => {
                        return Err(activation_error(&name, reason, device_failed));
                    }
                    _ => {}
                }
                let msg = match changes.next().await {
                    Some(Ok(m)) => m,
                    Some(Err(_)) => continue,
                    None => {
                        return Err(WifiError::ServiceMissing {
                            service: NAME,
                            unit: "NetworkManager",
                        })
                    }
                };
                let header = msg.header();
                let path = header.path().map(|p| p.as_str());
                let iface = header.interface().map(|i| i.as_str());
                if path == Some(active.as_str()) && iface == Some(ACTIVE_IFACE) {
                    if let Ok((s, r)) = msg.body().deserialize::<(u32, u32)>() {
                        state = s;
                        reason = r;
                    }
                } else if path == Some(dev.as_str()) && iface == Some(DEVICE_IFACE) {
                    if let Ok((new, _old, r)) = msg.body().deserialize::<(u32, u32, u32)>() {
                        if new == device_state::FAILED {
                            device_failed = Some(r);
                        }
                    }
                }
            }
        };
        let result = match tokio::time::timeout(self.timeout, watch).await {
            Ok(r) => r,
            Err(_) => Err(WifiError::Timeout(self.timeout)),
        };
        if result.is_err() {
            // Do not keep (and auto-retry) a profile that did not work.
            if let Ok(p) = self
                .proxy(profile.as_str(), SETTINGS_CONNECTION_IFACE)
                .await
            {
                let _ = p.call::<_, _, ()>("Delete", &()).await;
            }
        }
        result
    }
}

/// Why an activation ended before ACTIVATED: the active connection's
/// `reason` and the device's failure reason, if the device failed.
fn activation_error(ssid: &str, reason: u32, device_failed: Option<u32>) -> WifiError {
    match (reason, device_failed) {
        (REASON_NO_SECRETS | REASON_LOGIN_FAILED, _) => WifiError::WrongPassword {
            reason: reason as i32,
        },
        (_, Some(DEVICE_REASON_NO_SECRETS)) => WifiError::WrongPassword {
            reason: DEVICE_REASON_NO_SECRETS as i32,
        },
        (_, Some(d)) => WifiError::ConnectFailed {
            ssid: ssid.to_owned(),
            detail: format!("NetworkManager: the device failed, reason {d}"),
        },
        (_, None) => WifiError::ConnectFailed {
            ssid: ssid.to_owned(),
            detail: format!("NetworkManager deactivated it, reason {reason}"),
        },
    }
}

impl NetworkManager {
    async fn do_scan(&self) -> Result<Vec<ScannedNetwork>, WifiError> {
        if !self.wireless_enabled().await? {
            return Err(WifiError::ScanFailed("Wi-Fi is switched off"));
        }
        let dev = self.device().await?;
        let wireless = self.proxy(dev.as_str(), WIRELESS_IFACE).await?;
        let props = properties_proxy(&self.bus, SERVICE, &dev).await?;
        // Subscribe before asking: the scan may end before the call returns.
        let mut changes = props.receive_properties_changed().await.map_err(bus_err)?;
        let before: i64 = wireless
            .get_property("LastScan")
            .await
            .map_err(call_err("Get(LastScan)"))?;
        let options: HashMap<&str, Value<'_>> = HashMap::new();
        match wireless.call::<_, _, ()>("RequestScan", &(options,)).await {
            Ok(()) => {
                let wait = async {
                    loop {
                        let now: i64 = wireless
                            .get_property("LastScan")
                            .await
                            .map_err(call_err("Get(LastScan)"))?;
                        if now != before {
                            return Ok(());
                        }
                        let gone = WifiError::ServiceMissing {
                            service: NAME,
                            unit: "NetworkManager",
                        };
                        next_change(&mut changes, WIRELESS_IFACE, "LastScan", gone).await?;
                    }
                };
                match tokio::time::timeout(SCAN_TIMEOUT, wait).await {
                    Ok(r) => r?,
                    Err(_) => return Err(WifiError::ScanFailed("no result within 15 s")),
                }
            }
            // NetworkManager scans by itself and rate-limits requests; its
            // list is then as fresh as a new scan would make it.
            Err(e) if error_name(&e) == Some(NOT_ALLOWED) => {
                tracing::debug!("NetworkManager refused a new scan ({e}); using its current list");
            }
            Err(e) => return Err(call_err("RequestScan")(e)),
        }
        let aps: Vec<OwnedObjectPath> = wireless
            .call("GetAllAccessPoints", &())
            .await
            .map_err(call_err("GetAllAccessPoints"))?;
        let raw = properties_of_each(&self.bus, SERVICE, &aps, AP_IFACE)
            .await?
            .iter()
            .filter_map(ap_network)
            .collect();
        Ok(summarise_scan(raw))
    }
}

/// One access point's properties as a scanned network; `None` when the
/// ones we need are missing or mistyped.
fn ap_network(all: &HashMap<String, zbus::zvariant::OwnedValue>) -> Option<ScannedNetwork> {
    let ssid = Vec::<u8>::try_from(all.get("Ssid")?.try_clone().ok()?).ok()?;
    let strength = u8::try_from(all.get("Strength")?).ok()?;
    let flag = |k: &str| all.get(k).and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    let security = flag("WpaFlags") | flag("RsnFlags");
    let secured = if security & AP_SEC_KEY_MGMT_SECRET != 0 {
        true
    } else if security & AP_SEC_KEY_MGMT_OWE != 0 {
        false
    } else {
        flag("Flags") & AP_FLAGS_PRIVACY != 0
    };
    Some(ScannedNetwork {
        ssid,
        rssi_dbm: strength_to_dbm(strength),
        secured,
    })
}

impl WifiBackend for NetworkManager {
    fn apply<'a>(
        &'a self,
        ssid: &'a [u8],
        psk: &'a [u8],
    ) -> WifiFuture<'a, Result<WifiStatus, WifiError>> {
        Box::pin(self.do_apply(ssid, psk))
    }

    fn status(&self) -> WifiFuture<'_, Result<WifiStatus, WifiError>> {
        Box::pin(async move {
            let dev = self.device().await?;
            self.link(&dev).await
        })
    }

    fn set_enabled(&self, on: bool) -> WifiFuture<'_, Result<(), WifiError>> {
        Box::pin(async move {
            self.proxy(ROOT_PATH, SERVICE)
                .await?
                .set_property("WirelessEnabled", on)
                .await
                .map_err(|e| call_err("Set(WirelessEnabled)")(zbus::Error::from(e)))
        })
    }

    fn scan(&self) -> WifiFuture<'_, Result<Vec<ScannedNetwork>, WifiError>> {
        Box::pin(self.do_scan())
    }

    fn forget(&self) -> WifiFuture<'_, Result<usize, WifiError>> {
        Box::pin(self.do_forget())
    }
}

impl NetworkManager {
    /// Delete the saved profiles the lock created (`PROFILE_PREFIX`):
    /// NetworkManager keeps them, password included, in
    /// `/etc/NetworkManager/system-connections` and rejoins at boot.
    async fn do_forget(&self) -> Result<usize, WifiError> {
        let settings = self.proxy(SETTINGS_PATH, SETTINGS_IFACE).await?;
        let profiles: Vec<OwnedObjectPath> = settings
            .call("ListConnections", &())
            .await
            .map_err(call_err("ListConnections"))?;
        let mut deleted = 0;
        for path in profiles {
            let profile = self.proxy(path.as_str(), SETTINGS_CONNECTION_IFACE).await?;
            let all: HashMap<String, HashMap<String, zbus::zvariant::OwnedValue>> = profile
                .call("GetSettings", &())
                .await
                .map_err(call_err("GetSettings"))?;
            let ours = all
                .get("connection")
                .and_then(|c| c.get("id"))
                .and_then(|v| String::try_from(v.clone()).ok())
                .is_some_and(|id| id.starts_with(PROFILE_PREFIX));
            if ours {
                profile
                    .call::<_, _, ()>("Delete", &())
                    .await
                    .map_err(call_err("Delete"))?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::{activation_error, strength_to_dbm, WifiError};

    #[test]
    fn a_device_failed_for_secrets_is_a_wrong_password() {
        // NetworkManager 1.42 on a refused key: device FAILED (NO_SECRETS),
        // active connection DEACTIVATED (DEVICE_DISCONNECTED).
        let e = activation_error("home", 3, Some(7));
        assert!(matches!(e, WifiError::WrongPassword { reason: 7 }), "{e}");
        // Another device failure (e.g. SUPPLICANT_TIMEOUT, 11) is not.
        let e = activation_error("home", 3, Some(11));
        assert!(matches!(e, WifiError::ConnectFailed { .. }), "{e}");
        assert!(e.to_string().contains("reason 11"), "{e}");
        // The active connection's own secrets reasons still count.
        let e = activation_error("home", 10, None);
        assert!(matches!(e, WifiError::WrongPassword { reason: 10 }), "{e}");
        let e = activation_error("home", 3, None);
        assert!(matches!(e, WifiError::ConnectFailed { .. }), "{e}");
    }

    #[test]
    fn strength_maps_back_to_dbm() {
        assert_eq!(strength_to_dbm(100), -40);
        assert_eq!(strength_to_dbm(0), -100);
        assert_eq!(strength_to_dbm(50), -70);
        assert_eq!(strength_to_dbm(255), -40);
    }
}
