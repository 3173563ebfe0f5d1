//! Wi-Fi: joining the network the owner gave the lock (Improv Wi-Fi over
//! BLE, B-5.1), reporting link state for the status report (B-9.1), and
//! switching the radio with the Wi-Fi setting.
//!
//! The lock never drives the radio itself: the SoC image runs either
//! `wpa_supplicant` or NetworkManager, and latchd talks to that over the
//! **system D-Bus**. The board config picks which one:
//!
//! ```toml
//! [wifi]
//! backend = "wpa_supplicant"   # or "networkmanager", or "none" (default)
//! interface = "wlan0"
//! connect_timeout_secs = 30
//! ```
//!
//! ```text
//!  Improv "send Wi-Fi settings" ──► WifiBackend::apply(ssid, psk)
//!                                        │
//!       ┌────────────────────────────────┴──────────────────────────────┐
//!       ▼ wpa_supplicant (fi.w1.wpa_supplicant1)        ▼ NetworkManager (org.freedesktop.NetworkManager)
//!   GetInterface(ifname) / CreateInterface          GetDeviceByIpIface(ifname)
//!   Interface.AddNetwork({ssid, psk, key_mgmt})     AddAndActivateConnection(settings, device, "/")
//!   Interface.SelectNetwork(net)                    watch Connection.Active.State
//!   watch Interface.State until "completed"         until ACTIVATED (2) or DEACTIVATED (4) + reason
//!     4way_handshake → disconnected = wrong key
//!       └──────────────────────────────┬────────────────────────────────┘
//!                                      ▼
//!                   Ok(WifiStatus) │ Err(WifiError::WrongPassword | Timeout | …)
//!
//!  Improv "request scanned networks" ──► WifiBackend::scan()
//!   wpa_supplicant: Interface.Scan({Type: active}), wait ScanDone(success),
//!                   Interface.BSSs → BSS.{SSID, Signal, Privacy, RSN, WPA}
//!   NetworkManager: Device.Wireless.RequestScan({}), wait LastScan to change,
//!                   GetAllAccessPoints → AccessPoint.{Ssid, Strength, Flags, WpaFlags, RsnFlags}
//!   both: a refused scan (one already running, or too soon after the last)
//!         falls back to the service's current list ──► summarise_scan
//! ```
//!
//! Both backends are tested against test doubles that speak the real
//! interface names and signatures on a private `dbus-daemon`
//! (`tests/it/wifi_backends.rs`). Flow and config keys: `docs/wifi.md`.
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

pub mod monitor;
pub mod networkmanager;
pub mod wpa_supplicant;

/// How long `apply` waits for the link by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a scan may take. A 2.4 + 5 GHz active scan takes 3–6 s on
/// common chips; NetworkManager's own `nmcli --rescan` waits 15 s.
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(15);
/// The most networks a scan reports: Improv sends one notification per
/// network, and an installer picks from the strongest few.
pub const MAX_SCAN_RESULTS: usize = 20;

/// A boxed future, so backends can sit behind `dyn WifiBackend`.
pub type WifiFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Link state as the lock reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WifiStatus {
    /// The radio is on (NetworkManager's `WirelessEnabled`; wpa_supplicant:
    /// the interface is not disabled).
    pub enabled: bool,
    /// Associated and, for wpa_supplicant, the key handshake completed.
    pub connected: bool,
    /// Joining a network, not connected yet: wpa_supplicant between
    /// `authenticating` and the group handshake; NetworkManager's device
    /// between `prepare` and `secondaries` (issue 22: `WifiState`
    /// `connecting`).
    pub connecting: bool,
    /// Signal strength, dBm, when connected. NetworkManager reports a
    /// percentage only; it is converted back with NM's own mapping.
    pub rssi_dbm: Option<i16>,
}

/// A network a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedNetwork {
    /// SSID bytes (not necessarily UTF-8).
    pub ssid: Vec<u8>,
    /// Signal strength, dBm.
    pub rssi_dbm: i16,
    /// Joining needs a password (WEP, WPA, WPA2 or WPA3).
    pub secured: bool,
}

/// What a scan reports: one entry per SSID (its strongest access point, a
/// network with several being one choice for the installer), hidden
/// networks (empty SSID) left out, strongest first, at most
/// [`MAX_SCAN_RESULTS`].
pub fn summarise_scan(raw: Vec<ScannedNetwork>) -> Vec<ScannedNetwork> {
    let mut best: Vec<ScannedNetwork> = Vec::new();
    for n in raw {
        if n.ssid.is_empty() || n.ssid.iter().all(|&b| b == 0) {
            continue;
        }
        match best.iter_mut().find(|b| b.ssid == n.ssid) {
            Some(b) if n.rssi_dbm > b.rssi_dbm => *b = n,
            Some(_) => {}
            None => best.push(n),
        }
    }
    best.sort_by(|a, b| {
        b.rssi_dbm
            .cmp(&a.rssi_dbm)
            .then_with(|| a.ssid.cmp(&b.ssid))
    });
    best.truncate(MAX_SCAN_RESULTS);
    best
}

/// Why a Wi-Fi operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WifiError {
    #[error("no Wi-Fi backend is configured (set [wifi] backend = \"wpa_supplicant\" or \"networkmanager\" in the board config)")]
    NotConfigured,
    #[error("Wi-Fi credentials refused before trying them: {0}")]
    BadCredentials(&'static str),
    /// Boxed: zbus errors are large and this travels up every call.
    #[error("cannot reach the system D-Bus for Wi-Fi: {0}")]
    Bus(#[source] Box<zbus::Error>),
    #[error("{service} is not running on the bus; start it (systemctl start {unit}) or change [wifi] backend")]
    ServiceMissing {
        service: &'static str,
        unit: &'static str,
    },
    #[error("Wi-Fi interface `{interface}` does not exist or is not managed by {service}; check [wifi] interface")]
    InterfaceMissing {
        interface: String,
        service: &'static str,
    },
    #[error(
        "the access point refused the password (reason {reason}); check the password and try again"
    )]
    WrongPassword { reason: i32 },
    #[error("the network `{ssid}` could not be joined ({detail})")]
    ConnectFailed { ssid: String, detail: String },
    #[error("no link within {} s; check that the network is in range and on 2.4 GHz", .0.as_secs())]
    Timeout(Duration),
    #[error("the Wi-Fi scan failed: {0}")]
    ScanFailed(&'static str),
    #[error("{service} answered {call} unexpectedly: {source}")]
    Call {
        service: &'static str,
        call: &'static str,
        #[source]
        source: Box<zbus::Error>,
    },
}

/// A way of joining Wi-Fi. Implementations talk to a network service;
/// they hold no credentials after `apply` returns.
pub trait WifiBackend: Send + Sync {
    /// Join `ssid` with `psk` (empty: open network; 8–63 characters: a
    /// passphrase; 64 hex digits: the raw key). Waits for the link or a
    /// definite failure, at most the configured time-out.
    fn apply<'a>(
        &'a self,
        ssid: &'a [u8],
        psk: &'a [u8],
    ) -> WifiFuture<'a, Result<WifiStatus, WifiError>>;
    /// The current link.
    fn status(&self) -> WifiFuture<'_, Result<WifiStatus, WifiError>>;
    /// Switch Wi-Fi on or off (the lock's Wi-Fi setting).
    fn set_enabled(&self, on: bool) -> WifiFuture<'_, Result<(), WifiError>>;
    /// Scan for networks in range, summarised by [`summarise_scan`].
    /// Waits at most [`SCAN_TIMEOUT`] for the radio.
    fn scan(&self) -> WifiFuture<'_, Result<Vec<ScannedNetwork>, WifiError>>;
    /// Remove every network the lock configured (a factory reset: the next
    /// household must not find the previous one's Wi-Fi password on the
    /// lock, nor the lock still joining it). Returns how many went.
    fn forget(&self) -> WifiFuture<'_, Result<usize, WifiError>>;
}

/// What `apply` hands the backend: checked, wiped on drop, and never
/// printed (`Debug` names the kind only: issue 14 item 5).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Open,
    Passphrase(Zeroizing<String>),
    RawKey(Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Open => "Open",
            Secret::Passphrase(_) => "Passphrase(‹redacted›)",
            Secret::RawKey(_) => "RawKey(‹redacted›)",
        })
    }
}

/// Check credentials before anything is sent to the network service, so a
/// bad value changes nothing there.
pub fn check_credentials(ssid: &[u8], psk: &[u8]) -> Result<Secret, WifiError> {
    if ssid.is_empty() || ssid.len() > 32 {
        return Err(WifiError::BadCredentials("the SSID must be 1 to 32 bytes"));
    }
    match psk.len() {
        0 => Ok(Secret::Open),
        8..=63 => {
            // WPA2 passphrases are printable ASCII (IEEE 802.11i H.4.1).
            if !psk.iter().all(|b| (0x20..=0x7e).contains(b)) {
                return Err(WifiError::BadCredentials(
                    "a WPA passphrase must be printable ASCII",
                ));
            }
            let s = String::from_utf8(psk.to_vec())
                .map_err(|_| WifiError::BadCredentials("passphrase is not ASCII"))?;
            Ok(Secret::Passphrase(Zeroizing::new(s)))
        }
        64 => {
            let mut key = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(psk, &mut key[..])
                .map_err(|_| WifiError::BadCredentials("a 64-character key must be hexadecimal"))?;
            Ok(Secret::RawKey(key))
        }
        _ => Err(WifiError::BadCredentials(
            "the password must be empty (open network), 8 to 63 characters, or 64 hex digits",
        )),
    }
}

/// Which service runs Wi-Fi on this board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// No Wi-Fi (the default: a lock without a radio must not pretend).
    #[default]
    None,
    #[serde(rename = "wpa_supplicant")]
    WpaSupplicant,
    #[serde(rename = "networkmanager")]
    NetworkManager,
}

impl BackendKind {
    /// The service's well-known name on the system bus (None: no service).
    pub fn service_name(self) -> Option<&'static str> {
        match self {
            BackendKind::None => None,
            BackendKind::WpaSupplicant => Some(wpa_supplicant::SERVICE),
            BackendKind::NetworkManager => Some(networkmanager::SERVICE),
        }
    }
}

/// The `[wifi]` table of the board config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WifiConfig {
    pub backend: BackendKind,
    /// Network interface name, e.g. `wlan0`.
    pub interface: String,
    /// How long joining may take before it counts as failed.
    pub connect_timeout_secs: u64,
    /// B-10.7: a connected signal below this (dBm) for 5 minutes is
    /// reported weak (event, owner notice, status). -100 to -30.
    pub weak_signal_dbm: i16,
    /// wpa_supplicant only: the configuration file (absolute path, root's,
    /// with `update_config=1`) the interface is created with, where the
    /// joined network is saved to outlast a restart. Empty: memory only.
    pub wpa_supplicant_config: String,
}

impl Default for WifiConfig {
    fn default() -> Self {
        WifiConfig {
            backend: BackendKind::None,
            interface: "wlan0".into(),
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT.as_secs(),
            weak_signal_dbm: crate::core::wifi_signal::DEFAULT_WEAK_DBM,
            wpa_supplicant_config: String::new(),
        }
    }
}

/// The `none` backend: every change is refused with a clear error.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoWifi;

impl WifiBackend for NoWifi {
    fn apply<'a>(
        &'a self,
        _ssid: &'a [u8],
        _psk: &'a [u8],
    ) -> WifiFuture<'a, Result<WifiStatus, WifiError>> {
        Box::pin(async { Err(WifiError::NotConfigured) })
    }
    fn status(&self) -> WifiFuture<'_, Result<WifiStatus, WifiError>> {
        Box::pin(async { Ok(WifiStatus::default()) })
    }
    fn set_enabled(&self, _on: bool) -> WifiFuture<'_, Result<(), WifiError>> {
        Box::pin(async { Err(WifiError::NotConfigured) })
    }
    fn scan(&self) -> WifiFuture<'_, Result<Vec<ScannedNetwork>, WifiError>> {
        Box::pin(async { Err(WifiError::NotConfigured) })
    }
    /// Without a backend the lock configured no network.
    fn forget(&self) -> WifiFuture<'_, Result<usize, WifiError>> {
        Box::pin(async { Ok(0) })
    }
}

/// Build the configured backend on `bus` (the system bus on a board).
pub fn from_config(config: &WifiConfig, bus: zbus::Connection) -> Box<dyn WifiBackend> {
    let timeout = Duration::from_secs(config.connect_timeout_secs.max(1));
    match config.backend {
        BackendKind::None => Box::new(NoWifi),
        BackendKind::WpaSupplicant => {
            let wpa = wpa_supplicant::WpaSupplicant::new(bus, &config.interface, timeout);
            Box::new(match config.wpa_supplicant_config.as_str() {
                "" => wpa,
                file => wpa.with_config_file(file.to_owned()),
            })
        }
        BackendKind::NetworkManager => Box::new(networkmanager::NetworkManager::new(
            bus,
            &config.interface,
            timeout,
        )),
    }
}

/// SSIDs are bytes; show them lossily in messages.
pub(crate) fn ssid_text(ssid: &[u8]) -> String {
    String::from_utf8_lossy(ssid)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// [`WifiError::Bus`] from a zbus error.
/// A proxy on `service` that reads properties afresh on every call: the
/// connection state changes under us and a cached value would be stale.
pub(crate) async fn uncached_proxy(
    bus: &zbus::Connection,
    service: &'static str,
    path: &str,
    iface: &'static str,
) -> Result<zbus::Proxy<'static>, WifiError> {
    zbus::proxy::Builder::new(bus)
        .destination(service)
        .and_then(|b| b.path(path.to_owned()))
        .and_then(|b| b.interface(iface))
        .map(|b| b.cache_properties(zbus::proxy::CacheProperties::No))
        .map_err(bus_err)?
        .build()
        .await
        .map_err(bus_err)
}

/// `org.freedesktop.DBus.Properties` of `path` on `service`, uncached:
/// for watching changes and reading objects that come and go.
pub(crate) async fn properties_proxy(
    bus: &zbus::Connection,
    service: &'static str,
    path: &zbus::zvariant::OwnedObjectPath,
) -> Result<zbus::fdo::PropertiesProxy<'static>, WifiError> {
    zbus::fdo::PropertiesProxy::builder(bus)
        .destination(service)
        .and_then(|b| b.path(path.clone()))
        .map_err(bus_err)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(bus_err)
}

/// Every property of `iface` on each object of `paths` (a scan's BSSs or
/// access points). An object that vanished between the listing and this
/// read is skipped.
pub(crate) async fn properties_of_each(
    bus: &zbus::Connection,
    service: &'static str,
    paths: &[zbus::zvariant::OwnedObjectPath],
    iface: &'static str,
) -> Result<Vec<std::collections::HashMap<String, zbus::zvariant::OwnedValue>>, WifiError> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let props = properties_proxy(bus, service, path).await?;
        let name = zbus::names::InterfaceName::from_static_str_unchecked(iface);
        if let Ok(all) = props.get_all(name).await {
            out.push(all);
        }
    }
    Ok(out)
}

/// The next value of `prop` on `iface` in a PropertiesChanged stream;
/// `gone` when the stream ends (the service left the bus).
pub(crate) async fn next_change(
    changes: &mut (impl futures_util::Stream<Item = zbus::fdo::PropertiesChanged> + Unpin),
    iface: &str,
    prop: &str,
    gone: WifiError,
) -> Result<zbus::zvariant::OwnedValue, WifiError> {
    use futures_util::StreamExt;
    while let Some(signal) = changes.next().await {
        let Ok(args) = signal.args() else { continue };
        if args.interface_name().as_str() != iface {
            continue;
        }
        if let Some(v) = args.changed_properties().get(prop) {
            return v.try_to_owned().map_err(|e| bus_err(e.into()));
        }
    }
    Err(gone)
}

pub(crate) fn bus_err(e: zbus::Error) -> WifiError {
    WifiError::Bus(Box::new(e))
}

/// Is this zbus error "nobody owns that name"?
pub(crate) fn is_service_unknown(e: &zbus::Error) -> bool {
    match e {
        zbus::Error::MethodError(name, _, _) => {
            let n = name.as_str();
            n == "org.freedesktop.DBus.Error.ServiceUnknown"
                || n == "org.freedesktop.DBus.Error.NameHasNoOwner"
        }
        _ => false,
    }
}

/// The D-Bus error name of a method error, if it is one.
pub(crate) fn error_name(e: &zbus::Error) -> Option<&str> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_printed() {
        let pass = check_credentials(b"home", b"correct horse").unwrap();
        assert_eq!(format!("{pass:?}"), "Passphrase(‹redacted›)");
        let raw = check_credentials(b"home", &[b'a'; 64]).unwrap();
        let shown = format!("{raw:?}");
        assert!(!shown.contains("170") && !shown.contains("aa"), "{shown}");
    }

    #[test]
    fn credentials_are_checked_before_use() {
        assert!(matches!(check_credentials(b"home", b""), Ok(Secret::Open)));
        assert!(matches!(
            check_credentials(b"home", b"correct horse"),
            Ok(Secret::Passphrase(_))
        ));
        let hex64 = [b'a'; 64];
        assert!(matches!(
            check_credentials(b"home", &hex64),
            Ok(Secret::RawKey(k)) if k[0] == 0xaa
        ));
        for (ssid, psk) in [
            (&b""[..], &b"password"[..]),
            (&[b'x'; 33][..], &b"password"[..]),
            (&b"home"[..], &b"short"[..]),
            (&b"home"[..], &[b'z'; 64][..]),
            (&b"home"[..], &b"pass\nword"[..]),
            (&b"home"[..], &[b'a'; 65][..]),
        ] {
            assert!(
                matches!(
                    check_credentials(ssid, psk),
                    Err(WifiError::BadCredentials(_))
                ),
                "{ssid:?} {psk:?}"
            );
        }
    }

    fn net(ssid: &[u8], rssi_dbm: i16) -> ScannedNetwork {
        ScannedNetwork {
            ssid: ssid.to_vec(),
            rssi_dbm,
            secured: true,
        }
    }

    #[test]
    fn scan_summary_keeps_the_strongest_of_each_network() {
        let raw = vec![
            net(b"office", -70),
            net(b"", -30),
            net(b"home", -60),
            net(&[0, 0, 0], -35),
            net(b"home", -45),
            net(b"cafe", -80),
            net(b"home", -75),
        ];
        assert_eq!(
            summarise_scan(raw),
            vec![net(b"home", -45), net(b"office", -70), net(b"cafe", -80)]
        );
        let many: Vec<_> = (0..50)
            .map(|i| net(format!("n{i}").as_bytes(), -40 - i))
            .collect();
        let out = summarise_scan(many);
        assert_eq!(out.len(), MAX_SCAN_RESULTS);
        assert_eq!(out[0].ssid, b"n0");
        assert_eq!(
            out[MAX_SCAN_RESULTS - 1].rssi_dbm,
            -40 - (MAX_SCAN_RESULTS as i16 - 1)
        );
    }

    #[test]
    fn config_table_parses() {
        let c: WifiConfig =
            toml::from_str("backend = \"networkmanager\"\ninterface = \"wlp1s0\"").unwrap();
        assert_eq!(c.backend, BackendKind::NetworkManager);
        assert_eq!(c.interface, "wlp1s0");
        assert_eq!(c.connect_timeout_secs, 30);
        let c: WifiConfig = toml::from_str("backend = \"wpa_supplicant\"").unwrap();
        assert_eq!(c.backend, BackendKind::WpaSupplicant);
        assert!(toml::from_str::<WifiConfig>("backend = \"iwd\"").is_err());
        assert!(toml::from_str::<WifiConfig>("bogus = 1").is_err());
        assert_eq!(WifiConfig::default().backend, BackendKind::None);
    }
}
