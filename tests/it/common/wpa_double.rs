//! A `fi.w1.wpa_supplicant1` test double: the real bus name, object
//! paths, interface names, method signatures, property types and error
//! names, for the calls latchd's backend makes. It plays the link per
//! password: [`GOOD_PSK`] completes, another drops during the 4-way
//! handshake, [`SILENT_SSID`] never answers. A scan finds [`AIRWAVES`]
//! (ScanDone after a short delay; [`WpaLog::scan_busy`] refuses it with
//! ScanError, [`WpaLog::scan_fails`] reports ScanDone(false)). The VM
//! crate's `vm_ble` includes it by `#[path]`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

/// The password the double accepts.
pub const GOOD_PSK: &str = "correct horse battery";
/// The double never answers for this SSID.
pub const SILENT_SSID: &[u8] = b"out-of-range";
/// A network whose association never completes: the interface stays
/// `associating` (a join under way) until the client gives up.
pub const STALLING_SSID: &[u8] = b"far-away";
/// RSSI the double reports once connected.
pub const RSSI_DBM: i32 = -52;

pub const WPA_IFACE_PATH: &str = "/fi/w1/wpa_supplicant1/Interfaces/0";

/// One BSS the radio hears.
pub struct Bss {
    pub ssid: &'static [u8],
    pub signal: i16,
    pub privacy: bool,
    /// RSN KeyMgmt (empty: no RSN element).
    pub rsn: &'static [&'static str],
}

/// What the double's radio hears: `home` from two access points, an open
/// café, an OWE ("enhanced open") network, an old WEP one and a hidden one.
pub const AIRWAVES: &[Bss] = &[
    Bss {
        ssid: b"home",
        signal: -61,
        privacy: true,
        rsn: &["wpa-psk"],
    },
    Bss {
        ssid: b"cafe",
        signal: -70,
        privacy: false,
        rsn: &[],
    },
    Bss {
        ssid: b"home",
        signal: -44,
        privacy: true,
        rsn: &["wpa-psk", "sae"],
    },
    Bss {
        ssid: b"",
        signal: -30,
        privacy: true,
        rsn: &["wpa-psk"],
    },
    Bss {
        ssid: b"owe-net",
        signal: -66,
        privacy: true,
        rsn: &["owe"],
    },
    Bss {
        ssid: b"attic",
        signal: -85,
        privacy: true,
        rsn: &[],
    },
];

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "fi.w1.wpa_supplicant1.Interface")]
enum WpaIfaceError {
    #[zbus(error)]
    ZBus(zbus::Error),
    ScanError(String),
}

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "fi.w1.wpa_supplicant1")]
enum WpaError {
    #[zbus(error)]
    ZBus(zbus::Error),
    InterfaceUnknown(String),
    UnknownError(String),
    InvalidArgs(String),
}

/// What the double was told, for the assertions.
#[derive(Debug, Default)]
pub struct WpaLog {
    pub networks: Vec<HashMap<String, OwnedValue>>,
    pub removed_all: u32,
    /// The configured networks now (the `Networks` property).
    pub live: Vec<String>,
    pub removed: Vec<String>,
    pub selected: Vec<String>,
    pub disconnects: u32,
    pub reconnects: u32,
    /// Scan requests, with their `Type`.
    pub scans: Vec<String>,
    /// Refuse scans as busy (a scan of its own is running).
    pub scan_busy: bool,
    /// Finish scans with ScanDone(false).
    pub scan_fails: bool,
}

struct WpaBss(&'static Bss);

#[zbus::interface(name = "fi.w1.wpa_supplicant1.BSS")]
impl WpaBss {
    #[zbus(property, name = "SSID")]
    async fn ssid(&self) -> Vec<u8> {
        self.0.ssid.to_vec()
    }
    #[zbus(property)]
    async fn signal(&self) -> i16 {
        self.0.signal
    }
    #[zbus(property)]
    async fn privacy(&self) -> bool {
        self.0.privacy
    }
    #[zbus(property, name = "RSN")]
    async fn rsn(&self) -> HashMap<String, OwnedValue> {
        let mut m = HashMap::new();
        if !self.0.rsn.is_empty() {
            let km: Vec<String> = self.0.rsn.iter().map(|s| s.to_string()).collect();
            m.insert(
                "KeyMgmt".to_owned(),
                OwnedValue::try_from(zbus::zvariant::Value::from(km)).expect("as"),
            );
        }
        m
    }
    #[zbus(property, name = "WPA")]
    async fn wpa(&self) -> HashMap<String, OwnedValue> {
        HashMap::new()
    }
}

/// Finish a scan after a moment, as the radio would.
async fn wpa_scan_done(conn: zbus::Connection, success: bool) {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let iface = conn
        .object_server()
        .interface::<_, WpaInterface>(WPA_IFACE_PATH)
        .await
        .expect("interface object");
    WpaInterface::scan_done(iface.signal_emitter(), success)
        .await
        .expect("emit ScanDone");
}

struct WpaRoot {
    /// Network devices that exist on the "machine".
    devices: Vec<String>,
    managed: Vec<String>,
}

#[zbus::interface(name = "fi.w1.wpa_supplicant1")]
impl WpaRoot {
    async fn get_interface(&self, ifname: String) -> Result<OwnedObjectPath, WpaError> {
        if self.managed.contains(&ifname) {
            Ok(OwnedObjectPath::try_from(WPA_IFACE_PATH).map_err(zbus::Error::from)?)
        } else {
            Err(WpaError::InterfaceUnknown(
                "wpa_supplicant knows nothing about this interface.".into(),
            ))
        }
    }

    async fn create_interface(
        &mut self,
        args: HashMap<String, OwnedValue>,
    ) -> Result<OwnedObjectPath, WpaError> {
        let name = args
            .get("Ifname")
            .and_then(|v| String::try_from(v.clone()).ok())
            .ok_or_else(|| WpaError::InvalidArgs("Ifname missing".into()))?;
        if !self.devices.contains(&name) {
            return Err(WpaError::UnknownError(
                "wpa_supplicant couldn't grab this interface.".into(),
            ));
        }
        self.managed.push(name);
        Ok(OwnedObjectPath::try_from(WPA_IFACE_PATH).map_err(zbus::Error::from)?)
    }
}

struct WpaInterface {
    log: Arc<Mutex<WpaLog>>,
    state: String,
    disconnect_reason: i32,
}

impl WpaInterface {
    async fn set_state(&mut self, state: &str, emitter: &SignalEmitter<'_>) {
        self.state = state.into();
        self.state_changed(emitter).await.expect("emit State");
    }
}

/// Play the link for the selected network, as wpa_supplicant would.
async fn wpa_play(conn: zbus::Connection, ssid: Vec<u8>, psk: Option<String>) {
    let iface = conn
        .object_server()
        .interface::<_, WpaInterface>(WPA_IFACE_PATH)
        .await
        .expect("interface object");
    let emitter = iface.signal_emitter().clone();
    let mut i = iface.get_mut().await;
    i.set_state("scanning", &emitter).await;
    if ssid == SILENT_SSID {
        return;
    }
    i.set_state("associating", &emitter).await;
    if ssid == STALLING_SSID {
        return;
    }
    i.set_state("associated", &emitter).await;
    i.set_state("4way_handshake", &emitter).await;
    if psk.as_deref() == Some(GOOD_PSK) {
        i.set_state("group_handshake", &emitter).await;
        i.set_state("completed", &emitter).await;
    } else {
        // WLAN_REASON_4WAY_HANDSHAKE_TIMEOUT, locally generated (negative).
        i.disconnect_reason = -15;
        i.disconnect_reason_changed(&emitter)
            .await
            .expect("emit DisconnectReason");
        i.set_state("disconnected", &emitter).await;
    }
}

#[zbus::interface(name = "fi.w1.wpa_supplicant1.Interface")]
impl WpaInterface {
    async fn add_network(
        &mut self,
        args: HashMap<String, OwnedValue>,
    ) -> Result<OwnedObjectPath, WpaError> {
        let mut log = self.log.lock().expect("log");
        if !args.contains_key("ssid") {
            return Err(WpaError::InvalidArgs("ssid missing".into()));
        }
        log.networks.push(args);
        let path = format!("{WPA_IFACE_PATH}/Networks/{}", log.networks.len() - 1);
        log.live.push(path.clone());
        Ok(OwnedObjectPath::try_from(path).map_err(zbus::Error::from)?)
    }

    async fn remove_all_networks(&mut self) {
        let mut log = self.log.lock().expect("log");
        log.removed_all += 1;
        log.live.clear();
    }

    #[zbus(property)]
    async fn networks(&self) -> Vec<OwnedObjectPath> {
        let log = self.log.lock().expect("log");
        log.live
            .iter()
            .map(|p| OwnedObjectPath::try_from(p.as_str()).expect("path"))
            .collect()
    }

    async fn remove_network(&mut self, path: OwnedObjectPath) {
        self.log
            .lock()
            .expect("log")
            .removed
            .push(path.as_str().to_owned());
    }

    async fn select_network(
        &mut self,
        path: OwnedObjectPath,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), WpaError> {
        let (ssid, psk) = {
            let mut log = self.log.lock().expect("log");
            log.selected.push(path.as_str().to_owned());
            let idx: usize = path
                .as_str()
                .rsplit('/')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| WpaError::InvalidArgs("not a network".into()))?;
            let net = log
                .networks
                .get(idx)
                .ok_or_else(|| WpaError::InvalidArgs("unknown network".into()))?;
            let ssid = net
                .get("ssid")
                .and_then(|v| Vec::<u8>::try_from(v.clone()).ok())
                .unwrap_or_default();
            let psk = net
                .get("psk")
                .and_then(|v| String::try_from(v.clone()).ok());
            (ssid, psk)
        };
        tokio::spawn(wpa_play(conn.clone(), ssid, psk));
        Ok(())
    }

    async fn scan(
        &mut self,
        args: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), WpaIfaceError> {
        let kind = args
            .get("Type")
            .and_then(|v| String::try_from(v.clone()).ok())
            .ok_or_else(|| WpaIfaceError::ScanError("Type missing".into()))?;
        let (busy, fails) = {
            let mut log = self.log.lock().expect("log");
            log.scans.push(kind);
            (log.scan_busy, log.scan_fails)
        };
        if busy {
            return Err(WpaIfaceError::ScanError("Scan request rejected".into()));
        }
        tokio::spawn(wpa_scan_done(conn.clone(), !fails));
        Ok(())
    }

    #[zbus(signal)]
    async fn scan_done(emitter: &SignalEmitter<'_>, success: bool) -> zbus::Result<()>;

    #[zbus(property, name = "BSSs")]
    async fn bsss(&self) -> Vec<OwnedObjectPath> {
        (0..AIRWAVES.len())
            .map(|i| OwnedObjectPath::try_from(format!("{WPA_IFACE_PATH}/BSSs/{i}")).expect("path"))
            .collect()
    }

    /// As the real wpa_supplicant 2.10 answers: the `a{sv}` inside a
    /// variant (reply signature `v`; seen in the VM with the real one).
    async fn signal_poll(&self) -> OwnedValue {
        let mut m: HashMap<String, OwnedValue> = HashMap::new();
        m.insert("rssi".to_owned(), OwnedValue::from(RSSI_DBM));
        m.insert("linkspeed".to_owned(), OwnedValue::from(72i32));
        OwnedValue::try_from(zbus::zvariant::Value::from(m)).expect("a dict is a value")
    }

    async fn disconnect(&mut self) {
        self.log.lock().expect("log").disconnects += 1;
    }

    async fn reconnect(&mut self) {
        self.log.lock().expect("log").reconnects += 1;
    }

    #[zbus(property)]
    async fn state(&self) -> String {
        self.state.clone()
    }

    #[zbus(property)]
    async fn disconnect_reason(&self) -> i32 {
        self.disconnect_reason
    }
}

/// Serve the wpa_supplicant double on the bus `builder` connects to:
/// `wlan0` exists on the machine but is not yet managed (so the backend
/// must create it), `wlan9` does not exist.
pub async fn serve_wpa_on(
    builder: zbus::connection::Builder<'_>,
) -> (zbus::Connection, Arc<Mutex<WpaLog>>) {
    let log = Arc::new(Mutex::new(WpaLog::default()));
    let mut builder = builder
        .name("fi.w1.wpa_supplicant1")
        .expect("name")
        .serve_at(
            "/fi/w1/wpa_supplicant1",
            WpaRoot {
                devices: vec!["wlan0".into()],
                managed: vec![],
            },
        )
        .expect("serve root")
        .serve_at(
            WPA_IFACE_PATH,
            WpaInterface {
                log: log.clone(),
                state: "disconnected".into(),
                disconnect_reason: 0,
            },
        )
        .expect("serve interface");
    for (i, bss) in AIRWAVES.iter().enumerate() {
        builder = builder
            .serve_at(format!("{WPA_IFACE_PATH}/BSSs/{i}"), WpaBss(bss))
            .expect("serve BSS");
    }
    let conn = builder.build().await.expect("own fi.w1.wpa_supplicant1");
    (conn, log)
}
