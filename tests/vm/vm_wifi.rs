//! A real Wi-Fi network in the VM (issue 21 item 3): `mac80211_hwsim` with
//! three radios, the real `hostapd` on two of them (WPA2-PSK `hwsim-wpa2`
//! on wlan0, open `hwsim-open` on wlan1), the real `wpa_supplicant` with
//! its D-Bus interface, and the real `latchd` whose wpa_supplicant backend
//! drives it on wlan2, provisioned over Improv from the second BLE
//! controller:
//!
//! ```text
//!  hci1: LockClient (Improv) ─BLE─► hci0: latchd ─D-Bus─► wpa_supplicant ─► wlan2
//!                                                                            ╎ hwsim air
//!                                        hostapd wlan0 (WPA2-PSK) · hostapd wlan1 (open)
//! ```
//!
//! The scan lists both networks with their security; a wrong passphrase is
//! Improv's "unable to connect" and leaves no network in wpa_supplicant;
//! the right one joins and the engine's status says connected; hostapd
//! stopped shows as disconnected (within the link monitor's 60 s period)
//! and started again as connected.
//!
//! Run: `LATCHD_VM_TESTS=1 cargo test --all-features --test vm vm_wifi:: -- --test-threads=1 --nocapture`
//! (needs the Debian packages `hostapd` and `wpasupplicant` on the host:
//! `tests/vm/run-vm-tests.sh` installs them).
use crate::rig as vm;

/// The programs the guest runs from the host's root.
const HOSTAPD: &str = "/usr/sbin/hostapd";
const WPA_SUPPLICANT: &str = "/usr/sbin/wpa_supplicant";

#[test]
fn wifi_join_in_vm() {
    if !vm::enabled_or_skip("wifi_join_in_vm") {
        return;
    }
    for tool in [HOSTAPD, WPA_SUPPLICANT] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} missing: apt-get install hostapd wpasupplicant (tests/vm/run-vm-tests.sh does)"
        );
    }
    let latchd = crate::vm_ble::pinned(env!("CARGO_BIN_EXE_latchd"), "vm-wifi");
    let opts = vm::VmOptions {
        ble: true,
        timeout: Some(std::time::Duration::from_secs(600)),
        env: vec![("LATCHD_BIN".into(), latchd.display().to_string())],
        ..Default::default()
    };
    let result = vm::run_test_in_guest(&opts, module_path!(), "guest_wifi_join");
    let _ = std::fs::remove_file(&latchd);
    eprintln!("{}", result.unwrap().stdout);
}

#[cfg(feature = "board-linux")]
#[test]
fn guest_wifi_join() {
    if !vm::in_guest_or_skip("guest_wifi_join") {
        return;
    }
    crate::vm_ble::block_on(guest::run());
}

#[cfg(feature = "board-linux")]
mod guest {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant as StdInstant};

    use latchd::ble::gatt_client::{GattClientError, LockClient};
    use serde_json::json;
    use zbus::zvariant::OwnedObjectPath;

    use super::{HOSTAPD, WPA_SUPPLICANT};
    use crate::daemon_common::Daemon;
    use crate::vm_ble::guest_daemon::{find_lock, start_daemon};

    const WPA2_SSID: &str = "hwsim-wpa2";
    const OPEN_SSID: &str = "hwsim-open";
    const PSK: &str = "correct horse battery";
    /// The station the lock uses (wlan0 and wlan1 are the access points).
    const STATION: &str = "wlan2";
    /// Only turns a hang into a failure with the logs; the link monitor
    /// reads the link every 60 s, so a change shows within about that.
    const LINK_DEADLINE: Duration = Duration::from_secs(150);

    /// One hostapd, killed when dropped.
    struct Ap {
        child: Child,
        conf: PathBuf,
        log: PathBuf,
    }

    impl Ap {
        fn start(dir: &Path, iface: &str, ssid: &str, psk: Option<&str>, channel: u8) -> Ap {
            let conf = dir.join(format!("hostapd-{iface}.conf"));
            let mut text = format!(
                "interface={iface}\ndriver=nl80211\nssid={ssid}\nhw_mode=g\nchannel={channel}\n"
            );
            if let Some(psk) = psk {
                text.push_str(&format!(
                    "wpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_passphrase={psk}\n"
                ));
            }
            std::fs::write(&conf, text).unwrap();
            let log = dir.join(format!("hostapd-{iface}.log"));
            let child = Self::spawn(&conf, &log);
            let ap = Ap { child, conf, log };
            ap.wait_enabled();
            ap
        }

        fn spawn(conf: &Path, log: &Path) -> Child {
            Command::new(HOSTAPD)
                .arg(conf)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(log).unwrap())
                .stderr(Stdio::from(
                    std::fs::OpenOptions::new().append(true).open(log).unwrap(),
                ))
                .spawn()
                .expect("start hostapd")
        }

        fn wait_enabled(&self) {
            let deadline = StdInstant::now() + Duration::from_secs(60);
            loop {
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                if text.contains("AP-ENABLED") {
                    return;
                }
                assert!(
                    StdInstant::now() < deadline,
                    "hostapd did not start:\n{text}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }

        /// SIGTERM: hostapd deauthenticates its stations and exits.
        fn stop(&mut self) {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = self.child.wait();
        }

        fn restart(&mut self) {
            self.stop();
            self.child = Self::spawn(&self.conf, &self.log);
            self.wait_enabled();
        }
    }

    impl Drop for Ap {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn modprobe_hwsim() {
        let root = std::env::var("LATCHD_VM_MODPROBE_ROOT").expect("in the VM rig");
        let out = Command::new("modprobe")
            .args(["-d", &root, "mac80211_hwsim", "radios=3"])
            .output()
            .expect("run modprobe");
        assert!(
            out.status.success(),
            "modprobe mac80211_hwsim: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = StdInstant::now() + Duration::from_secs(30);
        while !Path::new(&format!("/sys/class/net/{STATION}")).exists() {
            assert!(StdInstant::now() < deadline, "no {STATION} after modprobe");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The networks wpa_supplicant holds for the station.
    async fn stored_networks(bus: &zbus::Connection) -> Vec<OwnedObjectPath> {
        let root = zbus::Proxy::new(
            bus,
            "fi.w1.wpa_supplicant1",
            "/fi/w1/wpa_supplicant1",
            "fi.w1.wpa_supplicant1",
        )
        .await
        .unwrap();
        let path: OwnedObjectPath = root.call("GetInterface", &(STATION,)).await.unwrap();
        let iface = zbus::Proxy::new(
            bus,
            "fi.w1.wpa_supplicant1",
            path,
            "fi.w1.wpa_supplicant1.Interface",
        )
        .await
        .unwrap();
        iface.get_property("Networks").await.unwrap()
    }

    async fn wait_wifi(d: &Daemon, connected: bool, logs: &dyn Fn() -> String) -> Duration {
        let t = StdInstant::now();
        let deadline = t + LINK_DEADLINE;
        while d.status()["engine"]["wifi_connected"] != json!(connected) {
            assert!(
                StdInstant::now() < deadline,
                "wifi_connected never became {connected}\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        t.elapsed()
    }

    pub async fn run() {
        let dir = tempfile::tempdir().unwrap();
        modprobe_hwsim();
        let mut wpa2 = Ap::start(dir.path(), "wlan0", WPA2_SSID, Some(PSK), 1);
        let _open = Ap::start(dir.path(), "wlan1", OPEN_SSID, None, 6);

        // The real supplicant, D-Bus only (-u): latchd's backend creates
        // the station's interface through it.
        let wpa_log = dir.path().join("wpa_supplicant.log");
        let mut supplicant = Command::new(WPA_SUPPLICANT)
            .args(["-u", "-dd"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&wpa_log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wpa_supplicant");
        let bus = zbus::Connection::system().await.unwrap();
        let dbus = zbus::fdo::DBusProxy::new(&bus).await.unwrap();
        let deadline = StdInstant::now() + Duration::from_secs(30);
        while !dbus
            .name_has_owner("fi.w1.wpa_supplicant1".try_into().unwrap())
            .await
            .unwrap()
        {
            assert!(
                StdInstant::now() < deadline,
                "wpa_supplicant never on the bus"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let (d, _code) = start_daemon(dir.path(), STATION);
        let logs = || {
            let tail = |p: &Path| {
                let t = std::fs::read_to_string(p).unwrap_or_default();
                let lines: Vec<&str> = t.lines().collect();
                lines[lines.len().saturating_sub(60)..].join("\n")
            };
            format!(
                "daemon:\n{}\nwpa_supplicant (last 60 lines):\n{}\nhostapd wlan0:\n{}",
                d.log_text(),
                tail(&wpa_log),
                tail(&dir.path().join("hostapd-wlan0.log"))
            )
        };
        assert_eq!(d.status()["engine"]["wifi_connected"], json!(false));

        // The installer holds SET, then sets the lock up over Improv.
        d.ok(json!({"cmd": "set", "long": true}));
        let session = bluer::Session::new().await.unwrap();
        let central = session.adapter("hci1").unwrap();
        let lock_dev = find_lock(&central, &d).await;
        let mut c = LockClient::connect(&central, lock_dev.address)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", logs()));

        // The scan: both hwsim networks, with their security.
        let mut heard = Vec::new();
        for _ in 0..5 {
            heard = c
                .improv_scan()
                .await
                .unwrap_or_else(|e| panic!("scan: {e}\n{}", logs()));
            let has = |s: &str| heard.iter().any(|n| n.ssid == s.as_bytes());
            if has(WPA2_SSID) && has(OPEN_SSID) {
                break;
            }
        }
        println!("scan: {heard:?}");
        let security = |s: &str| {
            heard
                .iter()
                .find(|n| n.ssid == s.as_bytes())
                .map(|n| n.auth_required)
        };
        assert_eq!(security(WPA2_SSID), Some(true), "{heard:?}");
        assert_eq!(security(OPEN_SSID), Some(false), "{heard:?}");

        // A wrong passphrase: "unable to connect", nothing stored.
        let t = StdInstant::now();
        let e = c
            .improv_wifi(WPA2_SSID.as_bytes(), b"not the passphrase")
            .await
            .unwrap_err();
        println!("wrong passphrase refused in {:?}: {e}", t.elapsed());
        assert!(matches!(e, GattClientError::ImprovFailed(0x03)), "{e}");
        assert_eq!(stored_networks(&bus).await, vec![], "{}", logs());
        assert_eq!(d.status()["engine"]["wifi_connected"], json!(false));

        // The right one joins; the engine's status follows at once.
        let t = StdInstant::now();
        c.improv_wifi(WPA2_SSID.as_bytes(), PSK.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("join: {e}\n{}", logs()));
        println!("joined {WPA2_SSID} in {:?}", t.elapsed());
        assert_eq!(stored_networks(&bus).await.len(), 1);
        wait_wifi(&d, true, &logs).await;
        c.disconnect().await;

        // The access point goes away: offline; it comes back: online.
        wpa2.stop();
        let took = wait_wifi(&d, false, &logs).await;
        println!("link loss seen by the engine after {took:?}");
        wpa2.restart();
        let took = wait_wifi(&d, true, &logs).await;
        println!("link back in the engine after {took:?}");

        let status = d.sigterm();
        assert!(status.success(), "{status}");
        let _ = supplicant.kill();
        let _ = supplicant.wait();
    }
}
