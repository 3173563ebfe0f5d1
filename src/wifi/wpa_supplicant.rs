//! Wi-Fi through wpa_supplicant's D-Bus API (`fi.w1.wpa_supplicant1`,
//! wpa_supplicant started with `-u`).
//!
//! ```text
//!  /fi/w1/wpa_supplicant1  fi.w1.wpa_supplicant1
//!     GetInterface("wlan0") ──► o   (InterfaceUnknown → CreateInterface({Ifname, ConfigFile}))
//!  <iface>  fi.w1.wpa_supplicant1.Interface
//!     RemoveAllNetworks()                 the lock keeps exactly one network
//!     AddNetwork({ssid: ay, psk, key_mgmt}) ──► <net>
//!     SelectNetwork(<net>)
//!     State (PropertiesChanged):  scanning → associating → 4way_handshake → completed ✔
//!                                                          └─► disconnected  = wrong key
//!     SaveConfig()                        after a join and after forgetting (ConfigFile set)
//!     SignalPoll() ──► {rssi: i}
//!     Scan({Type: "active"}) … ScanDone(success: b)   (Interface.ScanError: busy → current list)
//!     BSSs ──► [<bss>]
//!  <bss>  fi.w1.wpa_supplicant1.BSS
//!     SSID: ay, Signal: n (dBm), Privacy: b, RSN/WPA: {KeyMgmt: as}
//! ```
//!
//! The SSID goes as bytes (`ay`: any SSID, no quoting rules) and a 64-digit
//! key as its 32 raw bytes (`ay`, which wpa_supplicant hex-encodes into the
//! raw PSK); a passphrase goes as a string (wpa_supplicant quotes it).
//! wpa_supplicant itself flags a wrong key when the link drops during the
//! 4-way handshake (its `WRONG_KEY` heuristic); we apply the same rule.
//!
//! A network added over D-Bus lives in wpa_supplicant's memory: a lock
//! whose battery was changed, or whose wpa_supplicant restarted, would be
//! off its network until the owner set it up again. With
//! `[wifi] wpa_supplicant_config` the interface is created with that file
//! as its configuration (`update_config=1` in it, root's): the joined
//! network is saved there and read back whenever wpa_supplicant takes the
//! interface again, which latchd's next status poll asks for. Forgetting
//! saves too, so a forgotten network does not come back at the next boot.
use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use super::{
    bus_err, check_credentials, error_name, is_service_unknown, next_change, properties_of_each,
    properties_proxy, ssid_text, summarise_scan, ScannedNetwork, Secret, WifiBackend, WifiError,
    WifiFuture, WifiStatus, SCAN_TIMEOUT,
};

/// Bus name and root object of wpa_supplicant.
pub const SERVICE: &str = "fi.w1.wpa_supplicant1";
pub const ROOT_PATH: &str = "/fi/w1/wpa_supplicant1";
pub const INTERFACE_IFACE: &str = "fi.w1.wpa_supplicant1.Interface";
pub const BSS_IFACE: &str = "fi.w1.wpa_supplicant1.BSS";
/// Scan refused: one is already running, or the radio is busy.
const SCAN_ERROR: &str = "fi.w1.wpa_supplicant1.Interface.ScanError";
const NAME: &str = "wpa_supplicant";
/// The `State` values between "not joined" and "completed": a join under
/// way (wpa_supplicant's `wpa_states`).
const JOINING: [&str; 5] = [
    "authenticating",
    "associating",
    "associated",
    "4way_handshake",
    "group_handshake",
];

/// wpa_supplicant over D-Bus.
#[derive(Debug, Clone)]
pub struct WpaSupplicant {
    bus: zbus::Connection,
    interface: String,
    timeout: Duration,
    /// The interface's configuration file, where joined networks are saved.
    config_file: Option<String>,
}

fn call_err(call: &'static str) -> impl FnOnce(zbus::Error) -> WifiError {
    move |source| {
        if is_service_unknown(&source) {
            WifiError::ServiceMissing {
                service: NAME,
                unit: "wpa_supplicant",
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

impl WpaSupplicant {
    pub fn new(bus: zbus::Connection, interface: &str, timeout: Duration) -> Self {
        WpaSupplicant {
            bus,
            interface: interface.to_owned(),
            timeout,
            config_file: None,
        }
    }

    /// Create the interface with `file` as its configuration and save the
    /// lock's network there (module docs).
    pub fn with_config_file(mut self, file: String) -> Self {
        self.config_file = Some(file);
        self
    }

    /// `SaveConfig`: the interface's networks into its configuration file.
    async fn save(&self, iface: &zbus::Proxy<'_>) -> Result<(), WifiError> {
        iface
            .call::<_, _, ()>("SaveConfig", &())
            .await
            .map_err(call_err("SaveConfig"))
    }

    /// After a join: saved, or a warning that it will not outlast a
    /// restart (the join itself stands either way).
    async fn keep(&self, iface: &zbus::Proxy<'_>, ssid: &[u8]) {
        match &self.config_file {
            None => tracing::warn!(
                ssid = %ssid_text(ssid),
                "wpa_supplicant: the network is held in memory only and is lost when \
                 wpa_supplicant restarts (a reboot, a battery change); set \
                 [wifi] wpa_supplicant_config to keep it"
            ),
            Some(file) => match self.save(iface).await {
                Ok(()) => tracing::info!(
                    ssid = %ssid_text(ssid),
                    file,
                    "wpa_supplicant: network saved"
                ),
                Err(e) => tracing::warn!(
                    ssid = %ssid_text(ssid),
                    file,
                    "wpa_supplicant: the network could not be saved and is lost when \
                     wpa_supplicant restarts ({e}); the file needs update_config=1"
                ),
            },
        }
    }

    async fn proxy(
        &self,
        path: &str,
        iface: &'static str,
    ) -> Result<zbus::Proxy<'static>, WifiError> {
        super::uncached_proxy(&self.bus, SERVICE, path, iface).await
    }

    /// The interface object, created in wpa_supplicant if it does not
    /// manage the device yet.
    async fn interface_path(&self) -> Result<OwnedObjectPath, WifiError> {
        let root = self.proxy(ROOT_PATH, SERVICE).await?;
        match root
            .call::<_, _, OwnedObjectPath>("GetInterface", &(self.interface.as_str(),))
            .await
        {
            Ok(p) => Ok(p),
            Err(e) if error_name(&e) == Some("fi.w1.wpa_supplicant1.InterfaceUnknown") => {
                let mut args: HashMap<&str, Value<'_>> = HashMap::new();
                args.insert("Ifname", Value::from(self.interface.as_str()));
                if let Some(file) = &self.config_file {
                    args.insert("ConfigFile", Value::from(file.as_str()));
                }
                root.call::<_, _, OwnedObjectPath>("CreateInterface", &(args,))
                    .await
                    .map_err(|e| match error_name(&e) {
                        // No such network device, or wpa_supplicant cannot drive it.
                        Some(
                            "fi.w1.wpa_supplicant1.UnknownError"
                            | "fi.w1.wpa_supplicant1.InterfaceUnknown"
                            | "fi.w1.wpa_supplicant1.InvalidArgs",
                        ) => WifiError::InterfaceMissing {
                            interface: self.interface.clone(),
                            service: NAME,
                        },
                        _ => call_err("CreateInterface")(e),
                    })
            }
            Err(e) => Err(call_err("GetInterface")(e)),
        }
    }

    async fn link(&self, iface: &zbus::Proxy<'_>) -> Result<WifiStatus, WifiError> {
        let state: String = iface
            .get_property("State")
            .await
            .map_err(call_err("Get(State)"))?;
        let connected = state == "completed";
        let rssi_dbm = if connected {
            // A joined link stays joined if its signal cannot be read.
            match signal_poll(iface).await {
                Ok(poll) => poll
                    .get("rssi")
                    .and_then(|v| i32::try_from(v).ok())
                    .and_then(|r| i16::try_from(r).ok()),
                Err(e) => {
                    tracing::warn!("wpa_supplicant: no signal reading: {e}");
                    None
                }
            }
        } else {
            None
        };
        Ok(WifiStatus {
            enabled: state != "interface_disabled",
            connected,
            connecting: JOINING.contains(&state.as_str()),
            rssi_dbm,
        })
    }

    async fn do_apply(&self, ssid: &[u8], psk: &[u8]) -> Result<WifiStatus, WifiError> {
        let secret = check_credentials(ssid, psk)?;
        let path = self.interface_path().await?;
        let iface = self.proxy(path.as_str(), INTERFACE_IFACE).await?;
        let props = properties_proxy(&self.bus, SERVICE, &path).await?;
        // Subscribe before selecting, so no state change can slip past.
        let mut changes = props.receive_properties_changed().await.map_err(bus_err)?;

        let mut net: HashMap<&str, Value<'_>> = HashMap::new();
        net.insert("ssid", Value::from(ssid));
        match &secret {
            Secret::Open => {
                net.insert("key_mgmt", Value::from("NONE"));
            }
            Secret::Passphrase(p) => {
                net.insert("key_mgmt", Value::from("WPA-PSK"));
                net.insert("psk", Value::from(p.as_str()));
            }
            Secret::RawKey(k) => {
                net.insert("key_mgmt", Value::from("WPA-PSK"));
                net.insert("psk", Value::from(&k[..]));
            }
        }
        // One network only: an old, failing one must not be roamed back to.
        iface
            .call::<_, _, ()>("RemoveAllNetworks", &())
            .await
            .map_err(call_err("RemoveAllNetworks"))?;
        let network: OwnedObjectPath =
            iface
                .call("AddNetwork", &(net,))
                .await
                .map_err(|e| match error_name(&e) {
                    Some("fi.w1.wpa_supplicant1.InvalidArgs") => {
                        WifiError::BadCredentials("wpa_supplicant refused the SSID or password")
                    }
                    _ => call_err("AddNetwork")(e),
                })?;
        iface
            .call::<_, _, ()>("SelectNetwork", &(&network,))
            .await
            .map_err(call_err("SelectNetwork"))?;

        let watch = async {
            let mut in_handshake = false;
            let mut state: String = iface
                .get_property("State")
                .await
                .map_err(call_err("Get(State)"))?;
            loop {
                match state.as_str() {
                    "completed" => return self.link(&iface).await,
                    "4way_handshake" | "group_handshake" => in_handshake = true,
                    "disconnected" | "inactive" | "scanning" if in_handshake => {
                        let reason: i32 = iface.get_property("DisconnectReason").await.unwrap_or(0);
                        return Err(WifiError::WrongPassword { reason });
                    }
                    "interface_disabled" => {
                        return Err(WifiError::ConnectFailed {
                            ssid: ssid_text(ssid),
                            detail: "the interface is disabled (rfkill?)".into(),
                        })
                    }
                    _ => {}
                }
                // Wait for the next State change.
                state = loop {
                    let gone = WifiError::ServiceMissing {
                        service: NAME,
                        unit: "wpa_supplicant",
                    };
                    let v = next_change(&mut changes, INTERFACE_IFACE, "State", gone).await?;
                    if let Ok(s) = String::try_from(v) {
                        break s;
                    }
                };
            }
        };
        let result = match tokio::time::timeout(self.timeout, watch).await {
            Ok(r) => r,
            Err(_) => Err(WifiError::Timeout(self.timeout)),
        };
        match &result {
            Ok(_) => self.keep(&iface, ssid).await,
            // Leave nothing half-configured behind: a failed network would
            // otherwise keep retrying with the bad key. Not saved: the file
            // keeps the last network that worked.
            Err(_) => {
                let _ = iface.call::<_, _, ()>("RemoveNetwork", &(&network,)).await;
            }
        }
        result
    }
}

/// `Interface.SignalPoll`. The real wpa_supplicant (2.10) answers a
/// variant holding the `a{sv}` (reply signature `v`), not the `a{sv}` its
/// documentation shows; both are read (the join in the VM with the real
/// supplicant failed on exactly this).
async fn signal_poll(iface: &zbus::Proxy<'_>) -> Result<HashMap<String, OwnedValue>, WifiError> {
    let reply = iface
        .call_method("SignalPoll", &())
        .await
        .map_err(call_err("SignalPoll"))?;
    let body = reply.body();
    let parsed = if body.signature().to_string() == "v" {
        body.deserialize::<OwnedValue>()
            .and_then(|v| HashMap::<String, OwnedValue>::try_from(v).map_err(zbus::Error::Variant))
    } else {
        body.deserialize::<HashMap<String, OwnedValue>>()
    };
    parsed.map_err(call_err("SignalPoll"))
}

impl WpaSupplicant {
    async fn do_scan(&self) -> Result<Vec<ScannedNetwork>, WifiError> {
        let path = self.interface_path().await?;
        let iface = self.proxy(path.as_str(), INTERFACE_IFACE).await?;
        // Subscribe before asking: a fast scan's ScanDone must not slip past.
        let mut done = iface.receive_signal("ScanDone").await.map_err(bus_err)?;
        let mut args: HashMap<&str, Value<'_>> = HashMap::new();
        args.insert("Type", Value::from("active"));
        match iface.call::<_, _, ()>("Scan", &(args,)).await {
            Ok(()) => {
                let wait = async {
                    while let Some(msg) = done.next().await {
                        if let Ok(success) = msg.body().deserialize::<bool>() {
                            return Ok(success);
                        }
                    }
                    Err(WifiError::ServiceMissing {
                        service: NAME,
                        unit: "wpa_supplicant",
                    })
                };
                match tokio::time::timeout(SCAN_TIMEOUT, wait).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        return Err(WifiError::ScanFailed("wpa_supplicant reported it failed"))
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(WifiError::ScanFailed("no result within 15 s")),
                }
            }
            // A scan already running (its own periodic one, say) ends in
            // the same list a new one would give.
            Err(e) if error_name(&e) == Some(SCAN_ERROR) => {
                tracing::debug!("wpa_supplicant refused a new scan ({e}); using its current list");
            }
            Err(e) => return Err(call_err("Scan")(e)),
        }
        let bsss: Vec<OwnedObjectPath> = iface
            .get_property("BSSs")
            .await
            .map_err(call_err("Get(BSSs)"))?;
        let raw = properties_of_each(&self.bus, SERVICE, &bsss, BSS_IFACE)
            .await?
            .iter()
            .filter_map(bss_network)
            .collect();
        Ok(summarise_scan(raw))
    }
}

/// One BSS's properties as a scanned network; `None` when the ones we
/// need are missing or mistyped.
fn bss_network(all: &HashMap<String, OwnedValue>) -> Option<ScannedNetwork> {
    let ssid = Vec::<u8>::try_from(all.get("SSID")?.try_clone().ok()?).ok()?;
    let rssi_dbm = i16::try_from(all.get("Signal")?).ok()?;
    let privacy = all.get("Privacy").and_then(|v| bool::try_from(v).ok());
    let key_mgmt: Vec<String> = ["RSN", "WPA"]
        .iter()
        .filter_map(|k| all.get(*k)?.try_clone().ok())
        .filter_map(|v| HashMap::<String, OwnedValue>::try_from(v).ok())
        .filter_map(|d| Vec::<String>::try_from(d.get("KeyMgmt")?.try_clone().ok()?).ok())
        .flatten()
        .collect();
    // WPA/WPA2/WPA3 name their key management; OWE ("enhanced open")
    // encrypts without a password; with neither, Privacy means WEP.
    let secured = if key_mgmt.is_empty() {
        privacy.unwrap_or(true)
    } else {
        key_mgmt.iter().any(|k| k != "owe")
    };
    Some(ScannedNetwork {
        ssid,
        rssi_dbm,
        secured,
    })
}

impl WifiBackend for WpaSupplicant {
    fn apply<'a>(
        &'a self,
        ssid: &'a [u8],
        psk: &'a [u8],
    ) -> WifiFuture<'a, Result<WifiStatus, WifiError>> {
        Box::pin(self.do_apply(ssid, psk))
    }

    fn status(&self) -> WifiFuture<'_, Result<WifiStatus, WifiError>> {
        Box::pin(async move {
            let path = self.interface_path().await?;
            let iface = self.proxy(path.as_str(), INTERFACE_IFACE).await?;
            self.link(&iface).await
        })
    }

    /// wpa_supplicant has no radio switch: off = `Disconnect` (stays off
    /// until told), on = `Reconnect`.
    fn set_enabled(&self, on: bool) -> WifiFuture<'_, Result<(), WifiError>> {
        Box::pin(async move {
            let path = self.interface_path().await?;
            let iface = self.proxy(path.as_str(), INTERFACE_IFACE).await?;
            let (method, call) = if on {
                ("Reconnect", "Reconnect")
            } else {
                ("Disconnect", "Disconnect")
            };
            iface
                .call::<_, _, ()>(method, &())
                .await
                .map_err(call_err(call))
        })
    }

    fn scan(&self) -> WifiFuture<'_, Result<Vec<ScannedNetwork>, WifiError>> {
        Box::pin(self.do_scan())
    }

    /// The lock keeps exactly one network (`apply` removes all others
    /// first), so every configured network is the lock's: `Networks`
    /// counts them, `RemoveAllNetworks` drops them and disconnects, and
    /// with a configuration file the empty list is saved — or the
    /// forgetting fails: the network would come back at the next boot.
    fn forget(&self) -> WifiFuture<'_, Result<usize, WifiError>> {
        Box::pin(async move {
            let path = self.interface_path().await?;
            let iface = self.proxy(path.as_str(), INTERFACE_IFACE).await?;
            let networks: Vec<OwnedObjectPath> = iface
                .get_property("Networks")
                .await
                .map_err(call_err("Get(Networks)"))?;
            iface
                .call::<_, _, ()>("RemoveAllNetworks", &())
                .await
                .map_err(call_err("RemoveAllNetworks"))?;
            if self.config_file.is_some() {
                self.save(&iface).await?;
            }
            Ok(networks.len())
        })
    }
}
