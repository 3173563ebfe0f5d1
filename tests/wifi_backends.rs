//! The Wi-Fi backends (`latchd::wifi`) against wpa_supplicant and
//! NetworkManager test doubles on a private `dbus-daemon`.
//!
//! The doubles are served with zbus in this process under the real bus
//! names, object paths, interface names, method signatures, property types
//! and error names of `fi.w1.wpa_supplicant1` and
//! `org.freedesktop.NetworkManager` — for the calls our backends make. They
//! play the link scripted per password: the right one completes, a wrong
//! one fails the way the real service reports it (wpa_supplicant: drop
//! during the 4-way handshake; NetworkManager: DEACTIVATED with reason
//! NO_SECRETS), a "silent" network never answers (time-out).
//!
//! Needs the Debian package `dbus-daemon`.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchd::wifi::networkmanager::NetworkManager;
use latchd::wifi::wpa_supplicant::WpaSupplicant;
use latchd::wifi::{WifiBackend, WifiError, WifiStatus};
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue};

/// Only hit when something is broken; never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(20);
use wpa_double::{GOOD_PSK, SILENT_SSID};

#[path = "common/bus.rs"]
mod bus;
use bus::TestBus;

impl TestBus {
    async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .expect("address")
            .build()
            .await
            .expect("connect to the test bus")
    }
}

async fn guarded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, f)
        .await
        .expect("the backend hung")
}

#[path = "common/wpa_double.rs"]
mod wpa_double;
use wpa_double::{serve_wpa_on, WpaLog, WPA_IFACE_PATH};

/// The double on the test bus.
async fn serve_wpa(bus: &TestBus) -> (zbus::Connection, Arc<Mutex<WpaLog>>) {
    serve_wpa_on(zbus::connection::Builder::address(bus.address.as_str()).expect("address")).await
}

#[tokio::test]
async fn wpa_supplicant_joins_with_the_right_password() {
    let bus = TestBus::start();
    let (_srv, log) = serve_wpa(&bus).await;
    let wifi = WpaSupplicant::new(bus.connect().await, "wlan0", HANG_GUARD);
    let status = guarded(wifi.apply(b"home", GOOD_PSK.as_bytes()))
        .await
        .expect("join");
    assert_eq!(
        status,
        WifiStatus {
            enabled: true,
            connected: true,
            rssi_dbm: Some(-52)
        }
    );
    {
        let log = log.lock().unwrap();
        assert_eq!(log.removed_all, 1, "old networks are dropped first");
        let net = &log.networks[0];
        assert_eq!(
            Vec::<u8>::try_from(net["ssid"].clone()).unwrap(),
            b"home".to_vec()
        );
        assert_eq!(
            String::try_from(net["key_mgmt"].clone()).unwrap(),
            "WPA-PSK"
        );
        assert_eq!(String::try_from(net["psk"].clone()).unwrap(), GOOD_PSK);
        assert_eq!(log.selected, vec![format!("{WPA_IFACE_PATH}/Networks/0")]);
        assert!(log.removed.is_empty());
    }
    assert!(guarded(wifi.status()).await.expect("status").connected);
}

#[tokio::test]
async fn wpa_supplicant_wrong_password_is_typed_and_cleaned_up() {
    let bus = TestBus::start();
    let (_srv, log) = serve_wpa(&bus).await;
    let wifi = WpaSupplicant::new(bus.connect().await, "wlan0", HANG_GUARD);
    let err = guarded(wifi.apply(b"home", b"wrong password"))
        .await
        .expect_err("must fail");
    assert!(
        matches!(err, WifiError::WrongPassword { reason: -15 }),
        "{err}"
    );
    assert!(err.to_string().contains("check the password"), "{err}");
    let log = log.lock().unwrap();
    assert_eq!(
        log.removed,
        vec![format!("{WPA_IFACE_PATH}/Networks/0")],
        "the failing network is removed so it is not retried"
    );
}

#[tokio::test]
async fn wpa_supplicant_times_out_when_nothing_answers() {
    let bus = TestBus::start();
    let (_srv, log) = serve_wpa(&bus).await;
    let wifi = WpaSupplicant::new(bus.connect().await, "wlan0", Duration::from_millis(300));
    let err = guarded(wifi.apply(SILENT_SSID, GOOD_PSK.as_bytes()))
        .await
        .expect_err("must time out");
    assert!(matches!(err, WifiError::Timeout(_)), "{err}");
    assert_eq!(log.lock().unwrap().removed.len(), 1);
}

#[tokio::test]
async fn wpa_supplicant_missing_interface_and_missing_service() {
    let bus = TestBus::start();
    let (srv, log) = serve_wpa(&bus).await;
    let wifi = WpaSupplicant::new(bus.connect().await, "wlan9", HANG_GUARD);
    let err = guarded(wifi.apply(b"home", GOOD_PSK.as_bytes()))
        .await
        .expect_err("no such interface");
    assert!(
        matches!(&err, WifiError::InterfaceMissing { interface, .. } if interface == "wlan9"),
        "{err}"
    );
    assert!(log.lock().unwrap().networks.is_empty(), "nothing was added");
    // Bad credentials are refused before anything is sent.
    let err = guarded(wifi.apply(b"home", b"short")).await.unwrap_err();
    assert!(matches!(err, WifiError::BadCredentials(_)), "{err}");

    drop(srv);
    let wifi = WpaSupplicant::new(bus.connect().await, "wlan0", HANG_GUARD);
    // The name goes away with the connection; the bus may take a moment.
    let err = guarded(async {
        loop {
            match wifi.status().await {
                Err(e @ WifiError::ServiceMissing { .. }) => break e,
                _ => tokio::task::yield_now().await,
            }
        }
    })
    .await;
    assert!(err.to_string().contains("wpa_supplicant"), "{err}");
}

#[tokio::test]
async fn wpa_supplicant_switch_maps_to_disconnect_and_reconnect() {
    let bus = TestBus::start();
    let (_srv, log) = serve_wpa(&bus).await;
    let wifi = WpaSupplicant::new(bus.connect().await, "wlan0", HANG_GUARD);
    guarded(wifi.set_enabled(false)).await.expect("off");
    guarded(wifi.set_enabled(true)).await.expect("on");
    let log = log.lock().unwrap();
    assert_eq!((log.disconnects, log.reconnects), (1, 1));
}

// ───────────────────────── NetworkManager double ─────────────────────────

const NM_DEVICE: &str = "/org/freedesktop/NetworkManager/Devices/3";
const NM_AP: &str = "/org/freedesktop/NetworkManager/AccessPoint/7";

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.NetworkManager")]
enum NmError {
    #[zbus(error)]
    ZBus(zbus::Error),
    UnknownDevice(String),
    UnknownConnection(String),
}

type Settings = HashMap<String, HashMap<String, OwnedValue>>;

#[derive(Debug, Default)]
struct NmLog {
    added: Vec<Settings>,
    deleted: Vec<String>,
}

struct NmRoot {
    log: Arc<Mutex<NmLog>>,
    wireless_enabled: bool,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl NmRoot {
    async fn get_device_by_ip_iface(&self, iface: String) -> Result<OwnedObjectPath, NmError> {
        if iface == "wlan0" {
            Ok(OwnedObjectPath::try_from(NM_DEVICE).map_err(zbus::Error::from)?)
        } else {
            Err(NmError::UnknownDevice(
                "No device found for the requested iface.".into(),
            ))
        }
    }

    async fn add_and_activate_connection(
        &mut self,
        connection: Settings,
        device: OwnedObjectPath,
        _specific_object: OwnedObjectPath,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(OwnedObjectPath, OwnedObjectPath), NmError> {
        if device.as_str() != NM_DEVICE {
            return Err(NmError::UnknownDevice("no such device".into()));
        }
        let n = {
            let mut log = self.log.lock().expect("log");
            log.added.push(connection.clone());
            log.added.len()
        };
        let profile = format!("/org/freedesktop/NetworkManager/Settings/{n}");
        let active = format!("/org/freedesktop/NetworkManager/ActiveConnection/{n}");
        conn.object_server()
            .at(
                profile.as_str(),
                NmProfile {
                    log: self.log.clone(),
                },
            )
            .await?;
        conn.object_server()
            .at(active.as_str(), NmActive { state: 1 })
            .await?;
        let ssid = connection
            .get("802-11-wireless")
            .and_then(|w| w.get("ssid"))
            .and_then(|v| Vec::<u8>::try_from(v.clone()).ok())
            .unwrap_or_default();
        let psk = connection
            .get("802-11-wireless-security")
            .and_then(|s| s.get("psk"))
            .and_then(|v| String::try_from(v.clone()).ok());
        tokio::spawn(nm_play(conn.clone(), active.clone(), ssid, psk));
        Ok((
            OwnedObjectPath::try_from(profile).map_err(zbus::Error::from)?,
            OwnedObjectPath::try_from(active).map_err(zbus::Error::from)?,
        ))
    }

    #[zbus(property)]
    async fn wireless_enabled(&self) -> bool {
        self.wireless_enabled
    }

    #[zbus(property)]
    async fn set_wireless_enabled(&mut self, on: bool) {
        self.wireless_enabled = on;
    }
}

/// Play the activation, as NetworkManager would: ACTIVATED, or
/// DEACTIVATED with reason NO_SECRETS for a key the AP refused.
async fn nm_play(conn: zbus::Connection, active: String, ssid: Vec<u8>, psk: Option<String>) {
    if ssid == SILENT_SSID {
        return;
    }
    let (state, reason) = if psk.as_deref() == Some(GOOD_PSK) {
        (2u32, 1u32)
    } else {
        (4, 9)
    };
    if state == 2 {
        let dev = conn
            .object_server()
            .interface::<_, NmWireless>(NM_DEVICE)
            .await
            .expect("device");
        dev.get_mut().await.active_access_point = NM_AP.into();
    }
    let a = conn
        .object_server()
        .interface::<_, NmActive>(active.as_str())
        .await
        .expect("active connection");
    a.get_mut().await.state = state;
    NmActive::state_changed_signal(a.signal_emitter(), state, reason)
        .await
        .expect("emit StateChanged");
}

struct NmProfile {
    log: Arc<Mutex<NmLog>>,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Settings.Connection")]
impl NmProfile {
    async fn delete(&self, #[zbus(header)] header: zbus::message::Header<'_>) {
        let path = header.path().map(|p| p.to_string()).unwrap_or_default();
        self.log.lock().expect("log").deleted.push(path);
    }
}

struct NmActive {
    state: u32,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Connection.Active")]
impl NmActive {
    #[zbus(property)]
    async fn state(&self) -> u32 {
        self.state
    }

    #[zbus(signal, name = "StateChanged")]
    async fn state_changed_signal(
        emitter: &SignalEmitter<'_>,
        state: u32,
        reason: u32,
    ) -> zbus::Result<()>;
}

struct NmDevice;

#[zbus::interface(name = "org.freedesktop.NetworkManager.Device")]
impl NmDevice {
    #[zbus(property)]
    async fn device_type(&self) -> u32 {
        2
    }
}

struct NmWireless {
    active_access_point: String,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Device.Wireless")]
impl NmWireless {
    #[zbus(property)]
    async fn active_access_point(&self) -> OwnedObjectPath {
        OwnedObjectPath::try_from(self.active_access_point.as_str())
            .unwrap_or_else(|_| ObjectPath::from_static_str_unchecked("/").into())
    }
}

struct NmAccessPoint;

#[zbus::interface(name = "org.freedesktop.NetworkManager.AccessPoint")]
impl NmAccessPoint {
    #[zbus(property)]
    async fn strength(&self) -> u8 {
        80
    }
}

async fn serve_nm(bus: &TestBus) -> (zbus::Connection, Arc<Mutex<NmLog>>) {
    let log = Arc::new(Mutex::new(NmLog::default()));
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .expect("address")
        .name("org.freedesktop.NetworkManager")
        .expect("name")
        .serve_at(
            "/org/freedesktop/NetworkManager",
            NmRoot {
                log: log.clone(),
                wireless_enabled: true,
            },
        )
        .expect("root")
        .serve_at(NM_DEVICE, NmDevice)
        .expect("device")
        .serve_at(
            NM_DEVICE,
            NmWireless {
                active_access_point: "/".into(),
            },
        )
        .expect("wireless")
        .serve_at(NM_AP, NmAccessPoint)
        .expect("ap")
        .build()
        .await
        .expect("own org.freedesktop.NetworkManager");
    (conn, log)
}

#[tokio::test]
async fn networkmanager_joins_with_the_right_password() {
    let bus = TestBus::start();
    let (_srv, log) = serve_nm(&bus).await;
    let wifi = NetworkManager::new(bus.connect().await, "wlan0", HANG_GUARD);
    assert!(!guarded(wifi.status()).await.expect("status").connected);
    let status = guarded(wifi.apply(b"home", GOOD_PSK.as_bytes()))
        .await
        .expect("join");
    // 80 % maps back to −52 dBm.
    assert_eq!(
        status,
        WifiStatus {
            enabled: true,
            connected: true,
            rssi_dbm: Some(-52)
        }
    );
    let log = log.lock().unwrap();
    let s = &log.added[0];
    let text = |sec: &str, key: &str| String::try_from(s[sec][key].clone()).unwrap();
    assert_eq!(text("connection", "type"), "802-11-wireless");
    assert_eq!(text("802-11-wireless", "mode"), "infrastructure");
    assert_eq!(
        Vec::<u8>::try_from(s["802-11-wireless"]["ssid"].clone()).unwrap(),
        b"home".to_vec()
    );
    assert_eq!(text("802-11-wireless-security", "key-mgmt"), "wpa-psk");
    assert_eq!(text("802-11-wireless-security", "psk"), GOOD_PSK);
    assert!(log.deleted.is_empty());
}

#[tokio::test]
async fn networkmanager_wrong_password_deletes_the_profile() {
    let bus = TestBus::start();
    let (_srv, log) = serve_nm(&bus).await;
    let wifi = NetworkManager::new(bus.connect().await, "wlan0", HANG_GUARD);
    let err = guarded(wifi.apply(b"home", b"not the password"))
        .await
        .expect_err("must fail");
    assert!(
        matches!(err, WifiError::WrongPassword { reason: 9 }),
        "{err}"
    );
    assert_eq!(
        log.lock().unwrap().deleted,
        vec!["/org/freedesktop/NetworkManager/Settings/1".to_owned()]
    );
}

#[tokio::test]
async fn networkmanager_open_network_timeout_and_missing_device() {
    let bus = TestBus::start();
    let (_srv, log) = serve_nm(&bus).await;
    let wifi = NetworkManager::new(bus.connect().await, "wlan0", Duration::from_millis(300));
    let err = guarded(wifi.apply(SILENT_SSID, b""))
        .await
        .expect_err("must time out");
    assert!(matches!(err, WifiError::Timeout(_)), "{err}");
    {
        let log = log.lock().unwrap();
        assert!(
            !log.added[0].contains_key("802-11-wireless-security"),
            "an open network carries no security section"
        );
        assert_eq!(log.deleted.len(), 1);
    }
    let wifi = NetworkManager::new(bus.connect().await, "eth0", HANG_GUARD);
    let err = guarded(wifi.apply(b"home", GOOD_PSK.as_bytes()))
        .await
        .expect_err("no such device");
    assert!(matches!(err, WifiError::InterfaceMissing { .. }), "{err}");
    assert_eq!(log.lock().unwrap().added.len(), 1, "nothing new was added");
}

#[tokio::test]
async fn networkmanager_switch_sets_wireless_enabled() {
    let bus = TestBus::start();
    let (_srv, _log) = serve_nm(&bus).await;
    let wifi = NetworkManager::new(bus.connect().await, "wlan0", HANG_GUARD);
    guarded(wifi.set_enabled(false)).await.expect("off");
    assert!(!guarded(wifi.status()).await.expect("status").enabled);
    guarded(wifi.set_enabled(true)).await.expect("on");
    assert!(guarded(wifi.status()).await.expect("status").enabled);
}

#[tokio::test]
async fn none_backend_refuses_clearly() {
    let wifi = latchd::wifi::NoWifi;
    let err = wifi.apply(b"home", GOOD_PSK.as_bytes()).await.unwrap_err();
    assert!(err.to_string().contains("[wifi] backend"), "{err}");
    assert!(!wifi.status().await.unwrap().enabled);
}
