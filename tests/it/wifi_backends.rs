//! The Wi-Fi backends (`latchd::wifi`) against wpa_supplicant and
//! NetworkManager test doubles on a private `dbus-daemon`.
//!
//! The doubles are served with zbus in this process under the real bus
//! names, object paths, interface names, method signatures, property types
//! and error names of `fi.w1.wpa_supplicant1` and
//! `org.freedesktop.NetworkManager` — for the calls our backends make. They
//! play the link scripted per password: the right one completes, a wrong
//! one fails the way the real service reports it (wpa_supplicant: drop
//! during the 4-way handshake; NetworkManager: the device FAILED with
//! reason NO_SECRETS, then the active connection DEACTIVATED with reason
//! DEVICE_DISCONNECTED, as NetworkManager 1.42 does in
//! `tests/vm/vm_wifi_nm.rs`), a "silent" network never answers (time-out).
//!
//! Needs the Debian package `dbus-daemon`.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchd::wifi::networkmanager::NetworkManager;
use latchd::wifi::wpa_supplicant::WpaSupplicant;
use latchd::wifi::{ScannedNetwork, WifiBackend, WifiError, WifiStatus};
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

use crate::common::bus::TestBus;
use crate::common::wpa_double::{
    serve_wpa_on, WpaLog, GOOD_PSK, SILENT_SSID, STALLING_SSID, WPA_IFACE_PATH,
};

/// Only hit when something is broken; never a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(20);

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
            connecting: false,
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

/// Issue 22: while wpa_supplicant is between "not joined" and
/// "completed", the backend reports a join under way (`WifiState`
/// `connecting`), neither connected nor a plain "disconnected".
#[tokio::test]
async fn wpa_supplicant_reports_a_join_under_way_as_connecting() {
    let bus = TestBus::start();
    let (_srv, _log) = serve_wpa(&bus).await;
    let wifi = Arc::new(WpaSupplicant::new(
        bus.connect().await,
        "wlan0",
        Duration::from_secs(3),
    ));
    let idle = guarded(wifi.status()).await.expect("status");
    assert!(!idle.connecting && !idle.connected, "{idle:?}");
    let join = {
        let wifi = wifi.clone();
        tokio::spawn(async move { wifi.apply(STALLING_SSID, GOOD_PSK.as_bytes()).await })
    };
    let seen = guarded(async {
        loop {
            let s = wifi.status().await.expect("status");
            if s.connecting {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(!seen.connected && seen.rssi_dbm.is_none(), "{seen:?}");
    let err = guarded(join)
        .await
        .expect("join task")
        .expect_err("the association never completes");
    assert!(matches!(err, WifiError::Timeout(_)), "{err}");
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

/// An access point NetworkManager's double hears: `(path, ssid,
/// strength %, Flags, WpaFlags, RsnFlags)`.
type NmAp = (&'static str, &'static [u8], u8, u32, u32, u32);

/// What NetworkManager's double hears. NM_AP is the one joined.
const NM_AIRWAVES: &[NmAp] = &[
    (NM_AP, b"home", 80, 0x1, 0, 0x100 | 0x8),
    (
        "/org/freedesktop/NetworkManager/AccessPoint/8",
        b"home",
        40,
        0x1,
        0,
        0x100,
    ),
    (
        "/org/freedesktop/NetworkManager/AccessPoint/9",
        b"cafe",
        50,
        0,
        0,
        0,
    ),
    (
        "/org/freedesktop/NetworkManager/AccessPoint/10",
        b"",
        95,
        0x1,
        0,
        0x100,
    ),
    (
        "/org/freedesktop/NetworkManager/AccessPoint/11",
        b"owe-net",
        60,
        0x1,
        0,
        0x800,
    ),
    (
        "/org/freedesktop/NetworkManager/AccessPoint/12",
        b"attic",
        10,
        0x1,
        0,
        0,
    ),
    (
        "/org/freedesktop/NetworkManager/AccessPoint/13",
        b"office",
        45,
        0x1,
        0x200,
        0x200,
    ),
];

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.NetworkManager.Device")]
enum NmDeviceError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NotAllowed(String),
}

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
    /// Saved profiles now (`Settings.ListConnections`), with their settings.
    profiles: Vec<(String, Settings)>,
    scans: u32,
    /// Refuse RequestScan (NM rate-limits, or is scanning already).
    scan_not_allowed: bool,
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
        self.log
            .lock()
            .expect("log")
            .profiles
            .push((profile.clone(), connection.clone()));
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

/// Play the activation, as NetworkManager would: ACTIVATED, or for a key
/// the AP refused the device's signals as NetworkManager 1.42 sends them
/// (seen with dbus-monitor in the VM): NEED_AUTH (reason
/// SUPPLICANT_DISCONNECT), FAILED (reason NO_SECRETS: no agent has a new
/// key), then the active connection DEACTIVATED with reason
/// DEVICE_DISCONNECTED, then the device DISCONNECTED.
async fn nm_play(conn: zbus::Connection, active: String, ssid: Vec<u8>, psk: Option<String>) {
    if ssid == SILENT_SSID {
        return;
    }
    let (state, reason) = if psk.as_deref() == Some(GOOD_PSK) {
        (2u32, 1u32)
    } else {
        (4, 3)
    };
    let device = conn
        .object_server()
        .interface::<_, NmDevice>(NM_DEVICE)
        .await
        .expect("device");
    if state == 4 {
        for (new, old, why) in [(60u32, 50u32, 8u32), (120, 60, 7)] {
            NmDevice::state_changed_signal(device.signal_emitter(), new, old, why)
                .await
                .expect("emit Device.StateChanged");
        }
    }
    if state == 2 {
        let dev = conn
            .object_server()
            .interface::<_, NmWireless>(NM_DEVICE)
            .await
            .expect("device");
        dev.get_mut().await.active_access_point = NM_AP.into();
        device.get_mut().await.state = 100;
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
    if state == 4 {
        NmDevice::state_changed_signal(device.signal_emitter(), 30, 120, 0)
            .await
            .expect("emit Device.StateChanged");
    }
}

struct NmProfile {
    log: Arc<Mutex<NmLog>>,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Settings.Connection")]
impl NmProfile {
    async fn delete(&self, #[zbus(header)] header: zbus::message::Header<'_>) {
        let path = header.path().map(|p| p.to_string()).unwrap_or_default();
        let mut log = self.log.lock().expect("log");
        log.profiles.retain(|(p, _)| *p != path);
        log.deleted.push(path);
    }

    /// As NetworkManager answers it: the settings without secrets.
    async fn get_settings(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<Settings, NmError> {
        let path = header.path().map(|p| p.to_string()).unwrap_or_default();
        let log = self.log.lock().expect("log");
        let (_, settings) = log
            .profiles
            .iter()
            .find(|(p, _)| *p == path)
            .ok_or_else(|| NmError::UnknownConnection("deleted".into()))?;
        let mut settings = settings.clone();
        if let Some(sec) = settings.get_mut("802-11-wireless-security") {
            sec.remove("psk");
        }
        Ok(settings)
    }
}

/// `/org/freedesktop/NetworkManager/Settings`.
struct NmSettings {
    log: Arc<Mutex<NmLog>>,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Settings")]
impl NmSettings {
    async fn list_connections(&self) -> Vec<OwnedObjectPath> {
        let log = self.log.lock().expect("log");
        log.profiles
            .iter()
            .map(|(p, _)| OwnedObjectPath::try_from(p.as_str()).expect("path"))
            .collect()
    }
}

/// A profile an installer made by hand (not the lock's), at `path`.
const NM_HAND_MADE: &str = "/org/freedesktop/NetworkManager/Settings/100";

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

/// The device: DISCONNECTED (30) until an activation succeeds, then
/// ACTIVATED (100).
struct NmDevice {
    state: u32,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Device")]
impl NmDevice {
    #[zbus(property)]
    async fn device_type(&self) -> u32 {
        2
    }
    #[zbus(property)]
    async fn state(&self) -> u32 {
        self.state
    }

    #[zbus(signal, name = "StateChanged")]
    async fn state_changed_signal(
        emitter: &SignalEmitter<'_>,
        new_state: u32,
        old_state: u32,
        reason: u32,
    ) -> zbus::Result<()>;
}

struct NmWireless {
    active_access_point: String,
    last_scan: i64,
    log: Arc<Mutex<NmLog>>,
}

/// Finish a requested scan after a moment: LastScan moves on.
async fn nm_scan_done(conn: zbus::Connection) {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let w = conn
        .object_server()
        .interface::<_, NmWireless>(NM_DEVICE)
        .await
        .expect("device");
    let mut wireless = w.get_mut().await;
    wireless.last_scan += 1000;
    wireless
        .last_scan_changed(w.signal_emitter())
        .await
        .expect("emit LastScan");
}

#[zbus::interface(name = "org.freedesktop.NetworkManager.Device.Wireless")]
impl NmWireless {
    async fn request_scan(
        &self,
        _options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), NmDeviceError> {
        let refused = {
            let mut log = self.log.lock().expect("log");
            log.scans += 1;
            log.scan_not_allowed
        };
        if refused {
            return Err(NmDeviceError::NotAllowed(
                "Scanning not allowed immediately following previous scan".into(),
            ));
        }
        tokio::spawn(nm_scan_done(conn.clone()));
        Ok(())
    }

    async fn get_all_access_points(&self) -> Vec<OwnedObjectPath> {
        NM_AIRWAVES
            .iter()
            .map(|a| OwnedObjectPath::try_from(a.0).expect("path"))
            .collect()
    }

    #[zbus(property)]
    async fn last_scan(&self) -> i64 {
        self.last_scan
    }

    #[zbus(property)]
    async fn active_access_point(&self) -> OwnedObjectPath {
        OwnedObjectPath::try_from(self.active_access_point.as_str())
            .unwrap_or_else(|_| ObjectPath::from_static_str_unchecked("/").into())
    }
}

struct NmAccessPoint(usize);

#[zbus::interface(name = "org.freedesktop.NetworkManager.AccessPoint")]
impl NmAccessPoint {
    #[zbus(property)]
    async fn ssid(&self) -> Vec<u8> {
        NM_AIRWAVES[self.0].1.to_vec()
    }
    #[zbus(property)]
    async fn strength(&self) -> u8 {
        NM_AIRWAVES[self.0].2
    }
    #[zbus(property)]
    async fn flags(&self) -> u32 {
        NM_AIRWAVES[self.0].3
    }
    #[zbus(property)]
    async fn wpa_flags(&self) -> u32 {
        NM_AIRWAVES[self.0].4
    }
    #[zbus(property)]
    async fn rsn_flags(&self) -> u32 {
        NM_AIRWAVES[self.0].5
    }
}

async fn serve_nm(bus: &TestBus) -> (zbus::Connection, Arc<Mutex<NmLog>>) {
    let log = Arc::new(Mutex::new(NmLog::default()));
    {
        let mut connection: HashMap<String, OwnedValue> = HashMap::new();
        connection.insert(
            "id".into(),
            OwnedValue::try_from(Value::from("office-wifi")).expect("v"),
        );
        let mut hand_made = Settings::new();
        hand_made.insert("connection".into(), connection);
        log.lock()
            .expect("log")
            .profiles
            .push((NM_HAND_MADE.into(), hand_made));
    }
    let mut builder = zbus::connection::Builder::address(bus.address.as_str())
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
        .serve_at(NM_DEVICE, NmDevice { state: 30 })
        .expect("device")
        .serve_at(
            "/org/freedesktop/NetworkManager/Settings",
            NmSettings { log: log.clone() },
        )
        .expect("settings")
        .serve_at(NM_HAND_MADE, NmProfile { log: log.clone() })
        .expect("hand-made profile")
        .serve_at(
            NM_DEVICE,
            NmWireless {
                active_access_point: "/".into(),
                last_scan: 5000,
                log: log.clone(),
            },
        )
        .expect("wireless");
    for (i, ap) in NM_AIRWAVES.iter().enumerate() {
        builder = builder.serve_at(ap.0, NmAccessPoint(i)).expect("ap");
    }
    let conn = builder
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
            connecting: false,
            rssi_dbm: Some(-52)
        }
    );
    let log = log.lock().unwrap();
    let s = &log.added[0];
    let text = |sec: &str, key: &str| String::try_from(s[sec][key].clone()).unwrap();
    assert_eq!(text("connection", "type"), "802-11-wireless");
    // Reconnects forever after an outage (NM's default gives up after 4).
    assert_eq!(
        i32::try_from(s["connection"]["autoconnect-retries"].clone()).unwrap(),
        0
    );
    assert_eq!(text("802-11-wireless", "mode"), "infrastructure");
    assert_eq!(
        Vec::<u8>::try_from(s["802-11-wireless"]["ssid"].clone()).unwrap(),
        b"home".to_vec()
    );
    assert_eq!(text("802-11-wireless-security", "key-mgmt"), "wpa-psk");
    assert_eq!(text("802-11-wireless-security", "psk"), GOOD_PSK);
    assert!(log.deleted.is_empty());
}

/// During an activation the device already has its access point (also for
/// a key the AP will refuse): that is a join under way, not a link. A
/// poll there read "connected", and the engine kept it until the next poll
/// (found by the VM's NetworkManager test once the monitor polled more
/// often).
#[tokio::test]
async fn networkmanager_an_access_point_during_activation_is_not_a_link() {
    let bus = TestBus::start();
    let (srv, _log) = serve_nm(&bus).await;
    let wifi = NetworkManager::new(bus.connect().await, "wlan0", HANG_GUARD);
    let server = srv.object_server();
    server
        .interface::<_, NmWireless>(NM_DEVICE)
        .await
        .expect("wireless")
        .get_mut()
        .await
        .active_access_point = NM_AP.into();
    let device = server
        .interface::<_, NmDevice>(NM_DEVICE)
        .await
        .expect("device");
    device.get_mut().await.state = 50; // CONFIG: associating
    let s = guarded(wifi.status()).await.expect("status");
    assert!(!s.connected && s.connecting, "{s:?}");
    assert_eq!(s.rssi_dbm, None);
    device.get_mut().await.state = 100; // ACTIVATED
    let s = guarded(wifi.status()).await.expect("status");
    assert!(s.connected && !s.connecting, "{s:?}");
    assert!(s.rssi_dbm.is_some());
}

#[tokio::test]
async fn networkmanager_wrong_password_deletes_the_profile() {
    let bus = TestBus::start();
    let (_srv, log) = serve_nm(&bus).await;
    let wifi = NetworkManager::new(bus.connect().await, "wlan0", HANG_GUARD);
    let err = guarded(wifi.apply(b"home", b"not the password"))
        .await
        .expect_err("must fail");
    // The device's NO_SECRETS (7), not the active connection's
    // DEVICE_DISCONNECTED (3), says the key was wrong.
    assert!(
        matches!(err, WifiError::WrongPassword { reason: 7 }),
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
    let err = wifi.scan().await.unwrap_err();
    assert!(matches!(err, WifiError::NotConfigured), "{err}");
}

fn seen(networks: &[ScannedNetwork]) -> Vec<(String, i16, bool)> {
    networks
        .iter()
        .map(|n| {
            (
                String::from_utf8_lossy(&n.ssid).into_owned(),
                n.rssi_dbm,
                n.secured,
            )
        })
        .collect()
}

/// What the wpa_supplicant double's airwaves summarise to: `home` once
/// (its stronger AP), strongest first, no hidden network, OWE open, the
/// WEP-only one secured by its Privacy bit.
fn wpa_expected() -> Vec<(String, i16, bool)> {
    vec![
        ("home".into(), -44, true),
        ("owe-net".into(), -66, false),
        ("cafe".into(), -70, false),
        ("attic".into(), -85, true),
    ]
}

#[tokio::test]
async fn wpa_supplicant_scan_lists_networks_strongest_first() {
    let bus = TestBus::start();
    let (_srv, log) = serve_wpa(&bus).await;
    let wifi = WpaSupplicant::new(bus.connect().await, "wlan0", HANG_GUARD);
    let found = guarded(wifi.scan()).await.expect("scan");
    assert_eq!(seen(&found), wpa_expected());
    assert_eq!(log.lock().unwrap().scans, vec!["active".to_owned()]);
}

#[tokio::test]
async fn wpa_supplicant_busy_scan_uses_the_current_list_and_a_failed_one_is_an_error() {
    let bus = TestBus::start();
    let (_srv, log) = serve_wpa(&bus).await;
    let wifi = WpaSupplicant::new(bus.connect().await, "wlan0", HANG_GUARD);
    log.lock().unwrap().scan_busy = true;
    let found = guarded(wifi.scan())
        .await
        .expect("busy radio: current list");
    assert_eq!(seen(&found), wpa_expected());
    {
        let mut log = log.lock().unwrap();
        log.scan_busy = false;
        log.scan_fails = true;
    }
    let err = guarded(wifi.scan()).await.expect_err("ScanDone(false)");
    assert!(matches!(err, WifiError::ScanFailed(_)), "{err}");
    assert_eq!(log.lock().unwrap().scans.len(), 2);
    let err = guarded(WpaSupplicant::new(bus.connect().await, "wlan9", HANG_GUARD).scan())
        .await
        .expect_err("no such interface");
    assert!(matches!(err, WifiError::InterfaceMissing { .. }), "{err}");
}

#[tokio::test]
async fn networkmanager_scan_lists_networks_strongest_first() {
    let bus = TestBus::start();
    let (_srv, log) = serve_nm(&bus).await;
    let wifi = NetworkManager::new(bus.connect().await, "wlan0", HANG_GUARD);
    let found = guarded(wifi.scan()).await.expect("scan");
    // Strength % back to dBm with NM's mapping (80 % = −52 dBm); 802.1X
    // (office) needs credentials; OWE is open.
    let expected = vec![
        ("home".to_owned(), -52, true),
        ("owe-net".to_owned(), -64, false),
        ("cafe".to_owned(), -70, false),
        ("office".to_owned(), -73, true),
        ("attic".to_owned(), -94, true),
    ];
    assert_eq!(seen(&found), expected);
    assert_eq!(log.lock().unwrap().scans, 1);

    log.lock().unwrap().scan_not_allowed = true;
    let again = guarded(wifi.scan())
        .await
        .expect("rate-limited: current list");
    assert_eq!(seen(&again), expected);
    assert_eq!(log.lock().unwrap().scans, 2);

    guarded(wifi.set_enabled(false)).await.expect("off");
    let err = guarded(wifi.scan()).await.expect_err("radio off");
    assert!(matches!(err, WifiError::ScanFailed(_)), "{err}");
    assert!(err.to_string().contains("switched off"), "{err}");
    assert_eq!(
        log.lock().unwrap().scans,
        2,
        "no scan asked of a radio that is off"
    );
}

/// Issue 13 item 5: a factory reset forgets the lock's network. NetworkManager
/// keeps a saved profile (password included) and rejoins at boot: `forget`
/// deletes the profiles the lock made (`latchd <ssid>`) and only those.
#[tokio::test]
async fn networkmanager_forget_deletes_only_the_locks_profiles() {
    let bus = TestBus::start();
    let (_srv, log) = serve_nm(&bus).await;
    let wifi = NetworkManager::new(bus.connect().await, "wlan0", HANG_GUARD);
    guarded(wifi.apply(b"home", GOOD_PSK.as_bytes()))
        .await
        .expect("join");
    assert_eq!(
        log.lock().unwrap().profiles.len(),
        2,
        "the lock's and the hand-made one"
    );
    assert_eq!(guarded(wifi.forget()).await.expect("forget"), 1);
    {
        let log = log.lock().unwrap();
        assert_eq!(
            log.deleted,
            vec!["/org/freedesktop/NetworkManager/Settings/1".to_owned()]
        );
        let left: Vec<&str> = log.profiles.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(left, vec![NM_HAND_MADE], "an installer's profile stays");
    }
    // Nothing of the lock's left: a second reset deletes nothing.
    assert_eq!(guarded(wifi.forget()).await.expect("forget"), 0);
}

/// wpa_supplicant keeps the lock's one network in memory (and in its
/// config if it saves it): `forget` removes every configured network.
#[tokio::test]
async fn wpa_supplicant_forget_removes_the_network() {
    let bus = TestBus::start();
    let (_srv, log) = serve_wpa(&bus).await;
    let wifi = WpaSupplicant::new(bus.connect().await, "wlan0", HANG_GUARD);
    guarded(wifi.apply(b"home", GOOD_PSK.as_bytes()))
        .await
        .expect("join");
    assert_eq!(log.lock().unwrap().live.len(), 1);
    assert_eq!(guarded(wifi.forget()).await.expect("forget"), 1);
    assert!(log.lock().unwrap().live.is_empty());
    assert_eq!(guarded(wifi.forget()).await.expect("forget"), 0);
}

/// The daemon end to end: a lock that joined "home" through NetworkManager
/// (on a private system bus) is factory reset at its keypad (SET held at
/// power-up, then ✓); it deletes its profile before it exits 75 to
/// restart under a new key, and leaves the installer's profile alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_reset_deletes_the_locks_networkmanager_profile() {
    use crate::common::daemon::Daemon;
    let bus = TestBus::start();
    let (_srv, log) = serve_nm(&bus).await;
    // The lock joined "home" earlier (Improv over BLE, the same backend).
    NetworkManager::new(bus.connect().await, "wlan0", HANG_GUARD)
        .apply(b"home", GOOD_PSK.as_bytes())
        .await
        .expect("join");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("latchd.toml");
    std::fs::write(
        &cfg,
        "[wifi]\nbackend = \"networkmanager\"\ninterface = \"wlan0\"\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let address = bus.address.clone();
    let (status, text) = tokio::task::spawn_blocking(move || {
        let d = Daemon::start_with_env(
            &state,
            &["--config", cfg.to_str().unwrap(), "--set-held"],
            &[("DBUS_SYSTEM_BUS_ADDRESS", address.as_str())],
        );
        // The reset stops the daemon before it answers: write the press
        // and read whatever comes (an answer or the socket closing).
        {
            use std::io::{BufRead, Write};
            let mut s = std::os::unix::net::UnixStream::connect(&d.sock).expect("socket");
            writeln!(s, r#"{{"cmd": "press", "keys": "✓"}}"#).unwrap();
            let mut line = String::new();
            let _ = std::io::BufReader::new(&s).read_line(&mut line);
        }
        let text = d.log.clone();
        (d.wait(), text)
    })
    .await
    .unwrap();
    let text = std::fs::read_to_string(text).unwrap_or_default();
    assert_eq!(status.code(), Some(75), "{text}");
    let log = log.lock().unwrap();
    assert_eq!(
        log.deleted,
        vec!["/org/freedesktop/NetworkManager/Settings/1".to_owned()],
        "{text}"
    );
    let left: Vec<&str> = log.profiles.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(left, vec![NM_HAND_MADE]);
}
