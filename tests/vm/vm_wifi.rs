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
//! the right one joins, is saved to wpa_supplicant's file for the station
//! (`[wifi] wpa_supplicant_config`), and the engine's status says
//! connected; hostapd stopped shows as disconnected (within the link
//! monitor's 60 s period); wpa_supplicant restarted meanwhile forgets what
//! it held in memory, the lock reads the link as soon as wpa_supplicant is
//! back on the bus (the station created again with its file), and hostapd
//! started again shows as connected.
//!
//! The lock's MQTT availability follows over the radio link itself: the
//! WPA2 access point's radio sits in a network namespace of its own
//! (`apns`, 10.77.0.1) with a real Mosquitto (TLS, 8883) behind it, the
//! lock's `[remote]` points there, and a `mosquitto_sub` in that namespace
//! sees the retained availability go `online` after the join, the lock's
//! will `offline` when hostapd stops (keep-alive expiry) and `online` again
//! after it restarts.
//!
//! Run: `LATCHD_VM_TESTS=1 cargo test --all-features --test vm vm_wifi:: -- --test-threads=1 --nocapture`
//! (needs the Debian packages `hostapd`, `wpasupplicant`, `iw`,
//! `mosquitto`, `mosquitto-clients` and `openssl` on the host:
//! `tests/vm/run-vm-tests.sh` installs them).
use crate::rig as vm;
use crate::wifi_rig::{HOSTAPD, IW, WPA_SUPPLICANT};

/// The broker's programs, run by the guest from the host's root.
const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_SUB: &str = "/usr/bin/mosquitto_sub";
const MOSQUITTO_PASSWD: &str = "/usr/bin/mosquitto_passwd";
const OPENSSL: &str = "/usr/bin/openssl";

#[test]
fn wifi_join_in_vm() {
    if !vm::enabled_or_skip("wifi_join_in_vm") {
        return;
    }
    crate::wifi_rig::require_tools(
        &[
            HOSTAPD,
            WPA_SUPPLICANT,
            IW,
            MOSQUITTO,
            MOSQUITTO_SUB,
            MOSQUITTO_PASSWD,
            OPENSSL,
        ],
        "hostapd wpasupplicant iw mosquitto mosquitto-clients openssl",
    );
    // The MQTT waits (join, will, reconnect) add about a minute or two to
    // the Wi-Fi ones under TCG.
    crate::vm_ble::run_daemon_guest(
        module_path!(),
        "guest_wifi_join",
        None,
        std::time::Duration::from_secs(900),
        vec![],
    );
}

#[test]
fn guest_wifi_join() {
    if !vm::in_guest_or_skip("guest_wifi_join") {
        return;
    }
    crate::vm_ble::block_on(guest::run());
}

mod guest {
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant as StdInstant};

    use latchd::ble::gatt_client::{GattClientError, LockClient};
    use serde_json::json;
    use zbus::zvariant::OwnedObjectPath;

    use super::{MOSQUITTO, MOSQUITTO_PASSWD, MOSQUITTO_SUB, OPENSSL};
    use crate::daemon_common::Daemon;
    use crate::vm_ble::guest_daemon::{find_lock, start_daemon_wifi};
    use crate::wifi_rig::{
        ap_netns, in_netns, modprobe_hwsim, must, tail, wpa_supplicant, Ap, Killed, AP_ADDR,
        AP_NETNS, LOCK_ADDR, OPEN_SSID, PSK, STATION, WPA2_SSID,
    };

    /// Only turns a hang into a failure with the logs; the link monitor
    /// reads the link every 60 s, so a change shows within about that.
    const LINK_DEADLINE: Duration = Duration::from_secs(150);
    const MQTT_PORT: u16 = 8883;
    /// The lock's serial (`start_daemon`) names its topics.
    const AVAILABILITY: &str = "latchd/LD-00BE/availability";
    /// The lock's MQTT keep-alive here (shipped default 30 s, minimum 5):
    /// Mosquitto drops a silent client after 1.5 × this and publishes its
    /// will, and rumqttc gives up on the session after about 2 × this.
    const KEEP_ALIVE_S: u64 = 10;
    /// The lock's reconnect back-off cap here (shipped default 60 s): the
    /// lock retries the broker from its start, long before the join, so
    /// with the default the figures would mostly measure where the
    /// back-off happened to be.
    const RECONNECT_MAX_MS: u64 = 5_000;
    /// Only turns a hang into a failure with the logs: keep-alive expiry
    /// (1.5 × keep-alive) or reconnect (back-off cap + TLS under TCG),
    /// with a wide margin.
    const MQTT_DEADLINE: Duration = Duration::from_secs(4 * KEEP_ALIVE_S + 60);

    /// A test CA and the broker's certificate for [`AP_ADDR`] (as in
    /// `tests/it/remote_mqtt.rs`, whose helpers this crate cannot reach;
    /// CN too, for mosquitto_sub's host check), the password file.
    fn broker_files(dir: &Path) {
        let p = |n: &str| dir.join(n);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        must(
            Command::new(OPENSSL)
                .args(["req", "-x509"])
                .args(ec)
                .args(["-days", "2", "-subj", "/CN=latchd vm test CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(p("ca.key"))
                .arg("-out")
                .arg(p("ca.pem")),
        );
        must(
            Command::new(OPENSSL)
                .arg("req")
                .args(ec)
                .args(["-subj", &format!("/CN={AP_ADDR}")])
                .arg("-keyout")
                .arg(p("server.key"))
                .arg("-out")
                .arg(p("server.csr")),
        );
        std::fs::write(
            p("ext.cnf"),
            format!(
                "subjectAltName=IP:{AP_ADDR}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        must(
            Command::new(OPENSSL)
                .args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
                .arg(p("server.csr"))
                .arg("-CA")
                .arg(p("ca.pem"))
                .arg("-CAkey")
                .arg(p("ca.key"))
                .arg("-out")
                .arg(p("server.pem"))
                .arg("-extfile")
                .arg(p("ext.cnf")),
        );
        must(
            Command::new(MOSQUITTO_PASSWD)
                .args(["-b", "-c"])
                .arg(p("passwd"))
                .args(["lock", "lock-pw"]),
        );
        must(
            Command::new(MOSQUITTO_PASSWD)
                .arg("-b")
                .arg(p("passwd"))
                .args(["watch", "watch-pw"]),
        );
        std::fs::set_permissions(
            p("passwd"),
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
    }

    /// Mosquitto in [`AP_NETNS`] on [`AP_ADDR`]:[`MQTT_PORT`], TLS, password
    /// logins; returns once it runs.
    fn start_broker(dir: &Path) -> Killed {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\nlistener {MQTT_PORT} {AP_ADDR}\n\
                 cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
                 allow_anonymous false\npassword_file {d}/passwd\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let log = dir.join("mosquitto.log");
        let child = in_netns(Some(AP_NETNS), MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start mosquitto");
        let broker = Killed(child);
        let deadline = StdInstant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(" running") {
                return broker;
            }
            assert!(
                StdInstant::now() < deadline,
                "mosquitto did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `mosquitto_sub -v` on the lock's availability, in [`AP_NETNS`]: each
    /// message with the time it arrived.
    struct Watch {
        _child: Killed,
        rx: std::sync::mpsc::Receiver<(StdInstant, String)>,
    }

    impl Watch {
        fn start(dir: &Path) -> Watch {
            let mut child = in_netns(Some(AP_NETNS), MOSQUITTO_SUB)
                .args(["-h", AP_ADDR, "-p", &MQTT_PORT.to_string(), "--cafile"])
                .arg(dir.join("ca.pem"))
                .args(["-u", "watch", "-P", "watch-pw", "-i", "vm-watch", "-v"])
                .args(["-t", AVAILABILITY])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(dir.join("mosquitto_sub.log")).unwrap())
                .spawn()
                .expect("start mosquitto_sub");
            let out = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((StdInstant::now(), line)).is_err() {
                        break;
                    }
                }
            });
            Watch {
                _child: Killed(child),
                rx,
            }
        }

        /// Wait until the availability reads `value`; returns when that
        /// message arrived. Messages before it are printed and skipped.
        async fn wait(&self, value: &str, logs: &dyn Fn() -> String) -> StdInstant {
            let want = format!("{AVAILABILITY} {value}");
            let deadline = StdInstant::now() + MQTT_DEADLINE;
            loop {
                match self.rx.try_recv() {
                    Ok((at, line)) if line == want => return at,
                    Ok((_, line)) => println!("availability (skipped): {line}"),
                    Err(std::sync::mpsc::TryRecvError::Empty) => {
                        assert!(
                            StdInstant::now() < deadline,
                            "the lock's availability never became {value}\n{}",
                            logs()
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("mosquitto_sub ended: {e}\n{}", logs()),
                }
            }
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
        ap_netns();
        let mut wpa2 = Ap::start(dir.path(), Some(AP_NETNS), "wlan0", WPA2_SSID, Some(PSK), 1);
        let _open = Ap::start(dir.path(), None, "wlan1", OPEN_SSID, None, 6);

        // The broker behind the WPA2 access point, and a subscriber there.
        let mqtt = dir.path().join("mqtt");
        std::fs::create_dir(&mqtt).unwrap();
        broker_files(&mqtt);
        let _broker = start_broker(&mqtt);
        let watch = Watch::start(&mqtt);

        // The real supplicant, D-Bus only (-u): latchd's backend creates
        // the station's interface through it.
        let wpa_log = dir.path().join("wpa_supplicant.log");
        let supplicant = wpa_supplicant(&wpa_log).await;
        let bus = zbus::Connection::system().await.unwrap();

        // The lock's remote access goes to that broker (TLS with the test
        // CA; the inline password is accepted because start_daemon's file
        // is mode 0600). It tries from its start and fails (no route)
        // until the join and the address.
        let remote = format!(
            "[remote]\nenabled = true\nhost = \"{AP_ADDR}\"\nport = {MQTT_PORT}\n\
             ca_file = \"{}\"\nusername = \"lock\"\npassword = \"lock-pw\"\n\
             keep_alive_s = {KEEP_ALIVE_S}\nreconnect_min_ms = 500\nreconnect_max_ms = {RECONNECT_MAX_MS}\n",
            mqtt.join("ca.pem").display()
        );
        // wpa_supplicant's file for the station (the image's template):
        // the joined network is saved there and read back after a restart.
        let wpa_conf = dir.path().join("wpa_supplicant.conf");
        std::fs::write(&wpa_conf, "update_config=1\n").unwrap();
        let saved = || std::fs::read_to_string(&wpa_conf).unwrap();
        let wifi = format!(
            "backend = \"wpa_supplicant\"\ninterface = \"{STATION}\"\nconnect_timeout_secs = 20\n\
             wpa_supplicant_config = \"{}\"\n",
            wpa_conf.display()
        );
        let (d, _code) = start_daemon_wifi(dir.path(), &wifi, &remote);
        let wpa2_log = wpa2.log().to_path_buf();
        let logs = || {
            format!(
                "daemon:\n{}\nwpa_supplicant (last 60 lines):\n{}\nhostapd wlan0:\n{}\n\
                 mosquitto:\n{}\nmosquitto_sub:\n{}",
                d.log_text(),
                tail(&wpa_log, 60),
                tail(&wpa2_log, 60),
                tail(&mqtt.join("mosquitto.log"), 60),
                tail(&mqtt.join("mosquitto_sub.log"), 60)
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
        assert!(!saved().contains("network="), "nothing saved: {}", saved());
        assert_eq!(d.status()["engine"]["wifi_connected"], json!(false));

        // The right one joins; the engine's status follows at once.
        let t = StdInstant::now();
        c.improv_wifi(WPA2_SSID.as_bytes(), PSK.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("join: {e}\n{}", logs()));
        let joined = StdInstant::now();
        println!("joined {WPA2_SSID} in {:?}", t.elapsed());
        assert_eq!(stored_networks(&bus).await.len(), 1);
        assert!(
            saved().contains(&format!("ssid=\"{WPA2_SSID}\"")),
            "the network saved: {}\n{}",
            saved(),
            logs()
        );
        wait_wifi(&d, true, &logs).await;
        c.disconnect().await;

        // The station's address (static: no DHCP in this network), then
        // the lock reaches the broker over the air and says `online`.
        must(Command::new("ip").args(["addr", "add", &format!("{LOCK_ADDR}/24"), "dev", STATION]));
        let online = watch.wait("online", &logs).await;
        let broker_log = || std::fs::read_to_string(mqtt.join("mosquitto.log")).unwrap_or_default();
        assert!(
            broker_log().contains(&format!("New client connected from {LOCK_ADDR}:")),
            "{}",
            logs()
        );
        println!(
            "MQTT online over the radio {:?} after the join (keep-alive {KEEP_ALIVE_S} s, \
             reconnect back-off 500 ms … {RECONNECT_MAX_MS} ms)",
            online.duration_since(joined)
        );

        // The access point goes away: the broker hears nothing more from
        // the lock and publishes its will; the engine sees the link down.
        wpa2.stop();
        let stopped = StdInstant::now();
        let offline = watch.wait("offline", &logs).await;
        // The broker's keep-alive expiry published it, not a goodbye.
        assert!(
            broker_log().contains("Client LD-00BE has exceeded timeout"),
            "{}",
            logs()
        );
        println!(
            "MQTT will `offline` {:?} after hostapd stopped (broker: 1.5 × keep-alive = {} s of silence)",
            offline.duration_since(stopped),
            KEEP_ALIVE_S * 3 / 2
        );
        wait_wifi(&d, false, &logs).await;
        println!("link loss seen by the engine after {:?}", stopped.elapsed());

        // wpa_supplicant restarts meanwhile (a reboot, a crash): what it
        // held in memory is gone, and the interface with it.
        drop(supplicant);
        let supplicant = wpa_supplicant(&wpa_log).await;

        // The lock sees wpa_supplicant take its bus name again and reads
        // the link at once: that poll has the station created again with
        // its file, the saved network in it.
        let t = StdInstant::now();
        while !d.log_text().contains("the Wi-Fi service started") {
            assert!(
                t.elapsed() < LINK_DEADLINE,
                "no poll on wpa_supplicant's restart\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "wpa_supplicant's restart seen by the lock after {:?}",
            t.elapsed()
        );

        // The access point comes back: the saved network is rejoined; the
        // engine (the monitor's follow-up polls) and MQTT follow. (Without
        // the file the lock stayed off its network until set up again.)
        wpa2.restart();
        let restarted = StdInstant::now();
        let online = watch.wait("online", &logs).await;
        assert_eq!(stored_networks(&bus).await.len(), 1, "{}", logs());
        println!(
            "MQTT online again {:?} after hostapd restarted",
            online.duration_since(restarted)
        );
        wait_wifi(&d, true, &logs).await;
        println!("link back in the engine after {:?}", restarted.elapsed());

        // A clean stop says `offline` itself (the will is for a lost link).
        let status = d.sigterm();
        assert!(status.success(), "{status}");
        watch.wait("offline", &broker_log).await;
        drop(supplicant);
    }
}
