//! Matter over BLE from the real daemon (issue 18 item 1), on BlueZ in the
//! VM: btvirt controllers, the real `latchd` (board-linux + matter) on hci0
//! with its `[ble]` adapter handed to the Matter node.
//!
//! ```text
//!  hci0: latchd ── own GATT app + Improv advert (always)
//!               └─ rs-matter BTP peripheral: advert 0xFFF6 + GATT C1/C2 (pairing mode only)
//!  hci1: Home Assistant's controller (BLE side)  ─ or ─  latchctl ble pair
//!  hci2: observer (bluer): service data per UUID, the GATT services
//! ```
//!
//! * `matter_ble_advertisement_in_vm`: outside pairing mode the lock
//!   advertises Improv only; SET held puts Matter's service data on the air
//!   (opcode 0, the lock's discriminator and advertisement version 0,
//!   vendor and product: what a controller matches against the QR code)
//!   with the BTP service in the lock's GATT database beside the lock's
//!   own; bluetoothd crashing then (SIGSEGV; the rig starts it again, as
//!   the lock's `bluetooth.service` drop-in has systemd do) leaves the lock
//!   advertising Matter and serving both services again by itself;
//!   pairing the owner's app ends pairing mode, and with it the Matter
//!   advertisement and service, while the lock's own advertisement stays.
//! * `matter_wifi_commissioning_over_ble_in_vm`: Home Assistant's
//!   controller (python-matter-server + the CHIP wheel,
//!   `scripts/matter-env.sh`; its Python ≥ 3.12 comes from the host's
//!   pyenv, which guest-setup.sh keeps visible) hands the lock, on no
//!   network yet, the credentials of a real WPA2 network
//!   (hwsim + hostapd, `wifi_rig.rs`) over BTP; the lock joins through its
//!   own wpa_supplicant backend and the controller, on the access point's
//!   side of the air, finds and operates it there. With no IP path before
//!   the join, PASE and every commissioning step up to it run over BTP.
//!   (An Ethernet-variant test over BLE was dropped: this CHIP controller
//!   treats a device found over BLE as needing network setup and stops
//!   with "Required network information not provided" when it has no Wi-Fi
//!   or Thread; its passing runs had been won by on-network discovery.)
//!
//! The rig's bluetoothd runs with the lock's BlueZ configuration (no EATT:
//! `config/bluetooth/main.conf`, which latchd's package installs with a
//! `bluetooth.service` drop-in), without which BTP fragments arrived out
//! of order.
//!
//! Run: `tests/vm/run-vm-tests.sh vm_matter_ble:: -- --nocapture`.
use crate::rig as vm;

#[test]
fn matter_ble_advertisement_in_vm() {
    if !vm::enabled_or_skip("matter_ble_advertisement_in_vm") {
        return;
    }
    crate::vm_ble::run_daemon_guest(
        module_path!(),
        "guest_matter_ble_advertisement",
        Some(3),
        std::time::Duration::from_secs(480),
        vec![],
    );
}

#[cfg(all(feature = "board-linux", feature = "matter"))]
#[test]
fn guest_matter_ble_advertisement() {
    if !vm::in_guest_or_skip("guest_matter_ble_advertisement") {
        return;
    }
    crate::vm_ble::block_on(guest::run());
}

/// Issue 18: commissioning over BLE *with Wi-Fi network commissioning*:
/// Home Assistant's controller hands the lock the credentials of a real
/// WPA2 network (mac80211_hwsim + hostapd, `wifi_rig.rs`) over BTP; the
/// lock joins it through its own Wi-Fi backend (the real wpa_supplicant)
/// and the controller, on the access point's side of the air, finds and
/// operates it there.
#[cfg(feature = "board-linux")]
#[test]
fn matter_wifi_commissioning_over_ble_in_vm() {
    if !vm::enabled_or_skip("matter_wifi_commissioning_over_ble_in_vm") {
        return;
    }
    crate::wifi_rig::require_tools(
        &[
            crate::wifi_rig::HOSTAPD,
            crate::wifi_rig::WPA_SUPPLICANT,
            crate::wifi_rig::IW,
        ],
        "hostapd wpasupplicant iw",
    );
    crate::vm_ble::run_daemon_guest(
        module_path!(),
        "guest_matter_wifi_commissioning",
        None,
        std::time::Duration::from_secs(600),
        vec![],
    );
}

#[cfg(all(feature = "board-linux", feature = "matter"))]
#[test]
fn guest_matter_wifi_commissioning() {
    if !vm::in_guest_or_skip("guest_matter_wifi_commissioning") {
        return;
    }
    crate::vm_ble::block_on(guest::commission_wifi_over_ble());
}

#[cfg(all(feature = "board-linux", feature = "matter"))]
mod guest {
    use std::collections::HashMap;
    use std::path::Path;
    use std::process::Command;
    use std::time::{Duration, Instant as StdInstant};

    use bluer::{Adapter, Address, Uuid};
    use futures_util::StreamExt;
    use serde_json::{json, Value};

    use crate::daemon_common::Daemon;
    use crate::matter_common::Controller;
    use crate::vm_ble::guest_daemon::{bluetoothd_pid, crash_bluetoothd};

    /// Matter's BLE service (16-bit 0xFFF6) and BTP's two characteristics.
    const MATTER_SERVICE: Uuid = Uuid::from_u128(0x0000fff6_0000_1000_8000_00805f9b34fb);
    const BTP_C1: Uuid = Uuid::from_u128(0x18ee2ef5_263d_4559_959f_4f9c429f9d11);
    const BTP_C2: Uuid = Uuid::from_u128(0x18ee2ef5_263d_4559_959f_4f9c429f9d12);
    /// The Improv service data UUID (0x4677): the lock's own advertisement.
    const IMPROV_DATA: Uuid = Uuid::from_u128(0x00004677_0000_1000_8000_00805f9b34fb);
    /// A scan long enough for several advertising intervals (1.28 s).
    const LOOK: Duration = Duration::from_secs(8);
    /// Only turns a hang into a failure; the figures are printed.
    const HANG: Duration = Duration::from_secs(90);

    fn sh(script: &str) {
        let out = Command::new("/bin/sh")
            .args(["-c", script])
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start_daemon(dir: &Path) -> (Daemon, std::path::PathBuf, std::path::PathBuf, String) {
        start_daemon_with(
            dir,
            "backend = \"none\"\n",
            "[matter]\nenabled = true\ninterface = \"mt0\"\n",
        )
    }

    /// The daemon of the BLE tests (`vm_ble::guest_daemon`: `[ble]` on
    /// hci0, past its first start) with `wifi` as its `[wifi]` table's body
    /// and `tables` after it; its state dir, config file and label code.
    fn start_daemon_with(
        dir: &Path,
        wifi: &str,
        tables: &str,
    ) -> (Daemon, std::path::PathBuf, std::path::PathBuf, String) {
        let (d, code) = crate::vm_ble::guest_daemon::start_daemon_wifi(dir, wifi, tables);
        (
            d,
            dir.join("state"),
            dir.join("latchd.toml"),
            code.display().to_string(),
        )
    }

    fn latchctl(args: &[&str]) -> (bool, String) {
        let exe = std::env::var("LATCHCTL").expect("LATCHCTL");
        let out = Command::new(exe).args(args).output().expect("latchctl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("latchctl {}: {}", args.join(" "), text.trim());
        (out.status.success(), text)
    }

    /// Scan from `observer` for `window`: the lock's service data, per
    /// UUID, as BlueZ heard it in this scan (the device is forgotten first,
    /// so nothing from an earlier scan is left in it).
    async fn service_data(
        observer: &Adapter,
        lock: Address,
        window: Duration,
    ) -> HashMap<Uuid, Vec<u8>> {
        if observer.device_addresses().await.unwrap().contains(&lock) {
            let _ = observer.remove_device(lock).await;
        }
        let mut events = observer.discover_devices().await.unwrap();
        let deadline = tokio::time::sleep(window);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = events.next() => {}
            }
        }
        let data = match observer.device(lock) {
            Ok(dev) => dev.service_data().await.ok().flatten().unwrap_or_default(),
            Err(_) => HashMap::new(),
        };
        drop(events);
        data
    }

    /// Scan until the lock's service data has `uuid`; the time it took.
    async fn until_advertised(
        observer: &Adapter,
        lock: Address,
        uuid: Uuid,
    ) -> (Duration, Vec<u8>) {
        let t = StdInstant::now();
        loop {
            let data = service_data(observer, lock, Duration::from_secs(3)).await;
            if let Some(d) = data.get(&uuid) {
                return (t.elapsed(), d.clone());
            }
            assert!(
                t.elapsed() < HANG,
                "no {uuid} advertised by the lock in {HANG:?}: {data:?}"
            );
        }
    }

    /// The lock's GATT services and their characteristics, as `observer`
    /// discovers them. Once in CI bluetoothd (Debian 12's 5.66) dropped
    /// off the bus in the middle of this discovery ("NoReply: recipient
    /// disconnected"): the rig starts it again as the lock's drop-in has
    /// systemd do, and the lock registers again. So a discovery that fails
    /// *because bluetoothd was replaced* is made once more, after the lock
    /// advertises `uuid` again, as a phone would; any other failure fails.
    async fn gatt_services(
        session: &bluer::Session,
        observer: &Adapter,
        lock: Address,
        uuid: Uuid,
    ) -> Vec<(Uuid, Vec<Uuid>)> {
        let before = bluetoothd_pid();
        let e = match discover(observer, lock).await {
            Ok(all) => return all,
            Err(e) => e,
        };
        // A bluetoothd that just dropped off the bus may not be reaped yet.
        let t = StdInstant::now();
        let mut now = bluetoothd_pid();
        while now == before && t.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            now = bluetoothd_pid();
        }
        assert!(
            before.is_some() && now != before,
            "GATT discovery failed with bluetoothd still running ({before:?}): {e}"
        );
        println!("GATT discovery failed: bluetoothd was replaced ({before:?} → {now:?}): {e}");
        let observer = adapter_back(session, "hci2").await;
        until_advertised(&observer, lock, uuid).await;
        discover(&observer, lock)
            .await
            .unwrap_or_else(|e| panic!("GATT discovery after bluetoothd came back: {e}"))
    }

    async fn discover(observer: &Adapter, lock: Address) -> bluer::Result<Vec<(Uuid, Vec<Uuid>)>> {
        let dev = observer.device(lock)?;
        let mut tries = 0;
        while let Err(e) = dev.connect().await {
            tries += 1;
            if tries >= 3 {
                return Err(e);
            }
        }
        let mut all = Vec::new();
        for s in dev.services().await? {
            let mut chars = Vec::new();
            for c in s.characteristics().await? {
                chars.push(c.uuid().await?);
            }
            all.push((s.uuid().await?, chars));
        }
        let _ = dev.disconnect().await;
        // bluetoothd caches the attribute table: forget it for the next look.
        let _ = observer.remove_device(lock).await;
        Ok(all)
    }

    /// Adapter `name` on `session` once a restarted bluetoothd has it
    /// back, powered (the session's bus connection outlives bluetoothd).
    async fn adapter_back(session: &bluer::Session, name: &str) -> Adapter {
        let t = StdInstant::now();
        loop {
            if let Ok(a) = session.adapter(name) {
                if a.set_powered(true).await.is_ok() {
                    return a;
                }
            }
            assert!(
                t.elapsed() < HANG,
                "{name} did not come back after bluetoothd restarted"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn label(state: &Path, config: &Path) -> Value {
        let (ok, label) = latchctl(&[
            "--json",
            "matter",
            "label",
            "--state-dir",
            state.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ]);
        assert!(ok, "{label}");
        serde_json::from_str(label.trim()).unwrap()
    }

    async fn wait_log(d: &Daemon, line: &str) {
        let deadline = StdInstant::now() + HANG;
        while !d.log_text().contains(line) {
            assert!(
                StdInstant::now() < deadline,
                "never logged {line:?}:\n{}",
                d.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn server_log(storage: &Path) -> String {
        std::fs::read_to_string(storage.join("matter-server.log")).unwrap_or_default()
    }

    /// The lock, off any network, is commissioned over BLE onto the hwsim
    /// WPA2 network; the controller sits in the access point's namespace,
    /// so it reaches the lock only over the air once the lock joined.
    pub async fn commission_wifi_over_ble() {
        use crate::wifi_rig::{self, Ap, AP_NETNS, PSK, STATION, WPA2_SSID};

        sh("ip link set lo up");
        wifi_rig::modprobe_hwsim();
        wifi_rig::ap_netns();
        let dir = tempfile::tempdir().unwrap();
        let ap = Ap::start(dir.path(), Some(AP_NETNS), "wlan0", WPA2_SSID, Some(PSK), 1);
        let wpa_log = dir.path().join("wpa_supplicant.log");
        let _wpa = wifi_rig::wpa_supplicant(&wpa_log).await;
        let (d, state, config, _code) = start_daemon_with(
            dir.path(),
            &format!(
                "backend = \"wpa_supplicant\"\ninterface = \"{STATION}\"\n\
                 connect_timeout_secs = 30\n"
            ),
            &format!("[matter]\nenabled = true\ninterface = \"{STATION}\"\n"),
        );
        wait_log(&d, "Matter node running").await;
        // Off the network: the node runs and says so (the interface has
        // no address before the join).
        assert_eq!(d.status()["engine"]["wifi_connected"], json!(false));
        let manual = label(&state, &config)["manual_code"]
            .as_str()
            .unwrap()
            .to_owned();
        let logs = |storage: &Path| {
            format!(
                "daemon:\n{}\nmatter-server.log:\n{}\nwpa_supplicant (last 60):\n{}\nhostapd:\n{}",
                d.log_text(),
                server_log(storage),
                wifi_rig::tail(&wpa_log, 60),
                wifi_rig::tail(ap.log(), 30)
            )
        };

        d.ok(json!({"cmd": "set", "long": true}));
        wait_log(&d, "Matter: BLE commissioning advertised").await;
        let storage = dir.path().join("controller");
        // The controller's network is the access point's side of the air.
        let mut ctl =
            Controller::start_in(&["ip", "netns", "exec", AP_NETNS], &storage, "wlan0", 1);
        ctl.ok("wifi", json!({"ssid": WPA2_SSID, "password": PSK}));
        let t = StdInstant::now();
        let mut commissioned = ctl.call("commission", json!({"code": manual, "ble": true}));
        // CHIP's Linux central sometimes looks for the Matter service among
        // its BlueZ objects right after connecting and finds none ("CHIP
        // service (…fff6…) not found", "BLE device doesn't seem to support
        // chip"), though the lock had registered and advertised it a minute
        // before (3 of 6 runs on one machine; cause not established, the
        // lock's side looked right); its commissioning then gives up after
        // a 30 s discovery timeout. A person taps "try again": so does the
        // test, at most twice, and says so. Before each try the central
        // forgets the lock (as a phone's Bluetooth settings would): a retry
        // on the stale device object failed in CHIP's own Connect
        // ("UnknownObject"). The lock's pairing mode is still on.
        for attempt in 2..=3 {
            let log = server_log(&storage);
            if commissioned.is_ok()
                || !(log.contains("doesn't seem to support chip")
                    || log.contains("Device connection failed"))
            {
                break;
            }
            println!(
                "commissioning: CHIP's central missed the lock's Matter service ({:?} in); \
                 attempt {attempt}",
                t.elapsed()
            );
            let session = bluer::Session::new().await.unwrap();
            let lock = session.adapter("hci0").unwrap().address().await.unwrap();
            let _ = session.adapter("hci1").unwrap().remove_device(lock).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            commissioned = ctl.call("commission", json!({"code": manual, "ble": true}));
        }
        let commissioned = commissioned.unwrap_or_else(|e| {
            panic!("commissioning over BLE onto Wi-Fi: {e}\n{}", logs(&storage))
        });
        println!(
            "commissioned over BLE onto {WPA2_SSID} in {:?} (the controller's own figure: {} s)",
            t.elapsed(),
            commissioned["seconds"]
        );
        assert_eq!(
            d.status()["engine"]["wifi_connected"],
            json!(true),
            "{}",
            logs(&storage)
        );
        let node = commissioned["node_id"].as_u64().unwrap();
        // Operated over the air, through CASE.
        assert_eq!(ctl.read(node, "1/257/0"), json!(1), "LockState: locked");
        let networks = ctl.read(node, "0/49/1");
        println!("Network Commissioning Networks: {networks}");
        // NetworkInfoStruct by field tag: 0 NetworkID (the SSID, octets,
        // base64 in the controller's JSON: "hwsim-wpa2"), 1 Connected.
        assert_eq!(
            networks,
            json!([{"0": "aHdzaW0td3BhMg==", "1": true}]),
            "the joined network, connected"
        );
        ctl.stop();
        let status = d.sigterm();
        assert!(status.success(), "{status}");
    }

    pub async fn run() {
        // Matter's mDNS needs an interface with IPv6 that is not loopback;
        // a dummy link is enough (nothing commissions over it here).
        sh("modprobe dummy 2>/dev/null; ip link add mt0 type dummy && \
            sysctl -qw net.ipv6.conf.mt0.accept_dad=0 && \
            ip -6 addr add fd4c:6174::1/64 dev mt0 nodad && ip link set mt0 up");
        let dir = tempfile::tempdir().unwrap();
        let (d, state, config, code) = start_daemon(dir.path());
        wait_log(&d, "Matter node running").await;
        assert!(
            d.log_text().contains("ble=hci0") || d.log_text().contains("ble=\"hci0\""),
            "the node was not handed hci0:\n{}",
            d.log_text()
        );
        let label = label(&state, &config);
        let discriminator = label["discriminator"].as_u64().unwrap() as u16;
        let (vendor, product) = (
            label["vendor_id"].as_u64().unwrap() as u16,
            label["product_id"].as_u64().unwrap() as u16,
        );

        let session = bluer::Session::new().await.unwrap();
        let lock = session.adapter("hci0").unwrap().address().await.unwrap();
        let observer = session.adapter("hci2").unwrap();
        observer.set_powered(true).await.unwrap();

        // Outside pairing mode: the lock's own advertisement, no Matter.
        let (took, _) = until_advertised(&observer, lock, IMPROV_DATA).await;
        println!("the lock's own advertisement seen in {took:?}");
        let data = service_data(&observer, lock, LOOK).await;
        assert!(data.contains_key(&IMPROV_DATA), "{data:?}");
        assert!(
            !data.contains_key(&MATTER_SERVICE),
            "Matter advertised outside pairing mode: {data:?}"
        );

        // SET held: Matter's commissionable advertisement, with the label's
        // discriminator, vendor and product.
        let t = StdInstant::now();
        d.ok(json!({"cmd": "set", "long": true}));
        let (took, matter) = until_advertised(&observer, lock, MATTER_SERVICE).await;
        println!(
            "Matter advertised {took:?} after SET held ({:?} after the press): {matter:02x?}",
            t.elapsed()
        );
        assert!(matter.len() >= 7, "{matter:02x?}");
        assert_eq!(matter[0], 0x00, "opcode: commissionable");
        let word = u16::from_le_bytes([matter[1], matter[2]]);
        assert_eq!(word & 0x0fff, discriminator, "{matter:02x?}");
        assert_eq!(word >> 12, 0, "advertisement version");
        assert_eq!(u16::from_le_bytes([matter[3], matter[4]]), vendor);
        assert_eq!(u16::from_le_bytes([matter[5], matter[6]]), product);
        let services = gatt_services(&session, &observer, lock, MATTER_SERVICE).await;
        let btp = services
            .iter()
            .find(|(s, _)| *s == MATTER_SERVICE)
            .unwrap_or_else(|| {
                panic!("no Matter service in the lock's GATT database: {services:?}")
            });
        assert!(
            btp.1.contains(&BTP_C1) && btp.1.contains(&BTP_C2),
            "{btp:?}"
        );
        assert!(
            services
                .iter()
                .any(|(s, _)| *s == latchd::ble::gatt::CHANNEL_SERVICE_UUID),
            "the lock's own service beside it: {services:?}"
        );

        // bluetoothd crashes in pairing mode (SIGSEGV; the rig starts it
        // again two seconds later, as the lock's drop-in has systemd do): the
        // new bluetoothd knows nothing of the lock, which must advertise
        // Matter again by itself while pairing mode lasts, and its own
        // application too.
        let t = StdInstant::now();
        crash_bluetoothd();
        let observer = adapter_back(&session, "hci2").await;
        let (took, again) = until_advertised(&observer, lock, MATTER_SERVICE).await;
        println!(
            "Matter advertised again {took:?} after bluetoothd came back ({:?} after the crash)",
            t.elapsed()
        );
        assert_eq!(again, matter, "the same commissionable advertisement");
        wait_log(
            &d,
            "Matter: bluetoothd restarted or stopped; advertising again",
        )
        .await;
        wait_log(
            &d,
            "BLE: bluetoothd restarted or stopped; registering again",
        )
        .await;
        let services = gatt_services(&session, &observer, lock, MATTER_SERVICE).await;
        for service in [MATTER_SERVICE, latchd::ble::gatt::CHANNEL_SERVICE_UUID] {
            assert!(
                services.iter().any(|(s, _)| *s == service),
                "{service} after bluetoothd came back: {services:?}"
            );
        }

        // The owner pairs the app from hci1: pairing mode ends, and with it
        // Matter's advertisement and service; the lock's own stay. By
        // address: btvirt ends *every* connectable advertising set of the
        // lock when the observer connected (a real controller ends only the
        // set connected through), and the kernel re-enables only that one
        // at the disconnection, so the lock may be on the air with
        // Matter's set alone until its own is registered again (at the end
        // of pairing mode); a scan for "latchd-" would not find it.
        let key = dir.path().join("owner-key.json");
        let addr = lock.to_string();
        let (ok, text) = latchctl(&[
            "ble",
            "--adapter",
            "hci1",
            "--key-file",
            key.to_str().unwrap(),
            "--address",
            addr.as_str(),
            "pair",
            "--code",
            code.as_str(),
        ]);
        assert!(ok, "{text}\n{}", d.log_text());
        let t = StdInstant::now();
        while !d
            .log_text()
            .contains("Matter: BLE commissioning no longer advertised")
        {
            assert!(
                t.elapsed() < HANG,
                "Matter BLE never stopped:\n{}",
                d.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let data = service_data(&observer, lock, LOOK).await;
        println!("after pairing mode: {:?}", data.keys().collect::<Vec<_>>());
        assert!(
            data.contains_key(&IMPROV_DATA),
            "the lock's own advertisement stays: {data:?}"
        );
        assert!(
            !data.contains_key(&MATTER_SERVICE),
            "Matter still advertised after pairing mode: {data:?}"
        );
        let services = gatt_services(&session, &observer, lock, IMPROV_DATA).await;
        assert!(
            !services.iter().any(|(s, _)| *s == MATTER_SERVICE),
            "Matter's GATT service outlived pairing mode: {services:?}"
        );

        let status = d.sigterm();
        assert!(status.success(), "{status}");
    }
}
