//! A real Wi-Fi network for the guest halves: `mac80211_hwsim` radios, the
//! host's `hostapd` on them (optionally inside a network namespace) and
//! the host's `wpa_supplicant` with its D-Bus interface. Shared by
//! `vm_wifi` (latchd's wpa_supplicant backend), `vm_wifi_nm`
//! (NetworkManager) and whatever else needs a station on the air.
//!
//! ```text
//!  modprobe_hwsim()   wlan0 wlan1 wlan2 (one phy each, one simulated air)
//!  ap_netns()         wlan0's phy → netns AP_NETNS, AP_ADDR/24 on it
//!  Ap::start(…)       hostapd on an interface (WPA2-PSK or open), in a netns or not
//!  wpa_supplicant()   `wpa_supplicant -u` on the system bus (the rig's `--ble` starts one)
//!  STATION            wlan2: the lock's side
//! ```
//!
//! Guest-side only: every item needs the guest's root and kernel. The
//! host half of a test checks the programs exist with [`require_tools`].
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The programs the guest runs from the host's root (Debian packages
/// `hostapd`, `wpasupplicant`, `iw`; `tests/vm/run-vm-tests.sh` installs them).
pub(crate) const HOSTAPD: &str = "/usr/sbin/hostapd";
pub(crate) const WPA_SUPPLICANT: &str = "/usr/sbin/wpa_supplicant";
pub(crate) const IW: &str = "/usr/sbin/iw";

/// The WPA2-PSK network ([`PSK`]) and the open one.
pub(crate) const WPA2_SSID: &str = "hwsim-wpa2";
pub(crate) const OPEN_SSID: &str = "hwsim-open";
pub(crate) const PSK: &str = "correct horse battery";
/// The station the lock uses (wlan0 and wlan1 are the access points).
pub(crate) const STATION: &str = "wlan2";

/// The WPA2 access point's radio (wlan0's phy) lives in this network
/// namespace after [`ap_netns`]. Without it the AP's and the station's
/// addresses would both be local to one kernel, which routes packets
/// between its own interfaces over loopback: traffic would never cross
/// the hwsim air and stopping hostapd would not touch it. Across
/// namespaces the only path is wlan2 ─ air ─ wlan0.
pub(crate) const AP_NETNS: &str = "apns";
/// Static addresses (no DHCP server or client: the lock's IP
/// configuration is the OS's business, not latchd's): the AP side in
/// [`AP_NETNS`], set by [`ap_netns`], and the station's, set by the test.
pub(crate) const AP_ADDR: &str = "10.77.0.1";
pub(crate) const LOCK_ADDR: &str = "10.77.0.2";

/// Host half: panic unless every program in `tools` exists, naming the
/// Debian `packages` to install.
pub(crate) fn require_tools(tools: &[&str], packages: &str) {
    for tool in tools {
        assert!(
            Path::new(tool).exists(),
            "{tool} missing: apt-get install {packages} (tests/vm/run-vm-tests.sh does)"
        );
    }
}

/// Load `mac80211_hwsim radios=3` from the rig's module tree and wait for
/// [`STATION`] (wlan0, wlan1, wlan2: one phy each).
pub(crate) fn modprobe_hwsim() {
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Path::new(&format!("/sys/class/net/{STATION}")).exists() {
        assert!(Instant::now() < deadline, "no {STATION} after modprobe");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Move wlan0's radio into [`AP_NETNS`] and give the AP side [`AP_ADDR`]
/// there (hostapd brings the interface up). Start its hostapd with
/// `Some(AP_NETNS)`.
pub(crate) fn ap_netns() {
    let phy = std::fs::read_to_string("/sys/class/net/wlan0/phy80211/name").expect("wlan0's phy");
    let phy = phy.trim();
    must(Command::new("ip").args(["netns", "add", AP_NETNS]));
    must(Command::new(IW).args(["phy", phy, "set", "netns", "name", AP_NETNS]));
    assert!(
        !Path::new("/sys/class/net/wlan0").exists(),
        "wlan0 is still in the initial namespace"
    );
    must(Command::new("ip").args(["-n", AP_NETNS, "link", "set", "lo", "up"]));
    must(Command::new("ip").args([
        "-n",
        AP_NETNS,
        "addr",
        "add",
        &format!("{AP_ADDR}/24"),
        "dev",
        "wlan0",
    ]));
}

/// `program`, inside `netns` if given. `ip netns exec` enters the
/// namespace and execs the program (no fork): the child's pid is the
/// program's, so a signal to it reaches the program.
pub(crate) fn in_netns(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// Run a setup command; panic with its output if it fails.
pub(crate) fn must(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The last `n` lines of a log file (empty if it is missing), for
/// failure messages.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A child process, killed (SIGKILL) and reaped when dropped.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real `wpa_supplicant`, D-Bus only (`-u -dd`, log in `log`), once it
/// owns `fi.w1.wpa_supplicant1` on the system bus (the rig's `--ble`
/// starts that bus). It manages no interface until asked over D-Bus
/// (latchd's backend or NetworkManager creates the station's).
pub(crate) async fn wpa_supplicant(log: &Path) -> Killed {
    let child = Command::new(WPA_SUPPLICANT)
        .args(["-u", "-dd"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wpa_supplicant");
    let supplicant = Killed(child);
    wait_bus_name("fi.w1.wpa_supplicant1", Duration::from_secs(30), &|| {
        tail(log, 40)
    })
    .await;
    supplicant
}

/// Wait until `name` has an owner on the system bus; panic with `logs()`
/// after `limit`.
pub(crate) async fn wait_bus_name(name: &str, limit: Duration, logs: &dyn Fn() -> String) {
    let bus = zbus::Connection::system().await.unwrap();
    let dbus = zbus::fdo::DBusProxy::new(&bus).await.unwrap();
    let deadline = Instant::now() + limit;
    while !dbus.name_has_owner(name.try_into().unwrap()).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "{name} never on the bus\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One hostapd on one interface, killed when dropped. Its log is
/// `<dir>/hostapd-<iface>.log` ([`Ap::log`]), started afresh by each
/// (re)start.
pub(crate) struct Ap {
    /// `None` once stopped: the child has been waited for, so its pid may
    /// belong to another process and must never be signalled again.
    child: Option<Child>,
    conf: PathBuf,
    log: PathBuf,
    netns: Option<&'static str>,
}

impl Ap {
    /// hostapd on `iface` (inside `netns` if given: where the radio is),
    /// WPA2-PSK with `psk` or open without, on 2.4 GHz `channel`; returns
    /// once it logged `AP-ENABLED`.
    pub(crate) fn start(
        dir: &Path,
        netns: Option<&'static str>,
        iface: &str,
        ssid: &str,
        psk: Option<&str>,
        channel: u8,
    ) -> Ap {
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
        let mut ap = Ap {
            child: None,
            conf,
            log,
            netns,
        };
        ap.spawn();
        ap
    }

    /// Its log file (hostapd's stdout and stderr).
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "hostapd is already running");
        // Truncated: wait_enabled looks for this run's AP-ENABLED.
        let out = std::fs::File::create(&self.log).unwrap();
        let err = out.try_clone().unwrap();
        let child = in_netns(self.netns, HOSTAPD)
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start hostapd");
        self.child = Some(child);
        self.wait_enabled();
    }

    /// Wait (up to 60 s) until this run of hostapd logged `AP-ENABLED`.
    pub(crate) fn wait_enabled(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains("AP-ENABLED") {
                return;
            }
            assert!(Instant::now() < deadline, "hostapd did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM (hostapd deauthenticates its stations and exits), then
    /// reap it. Idempotent: a second call does nothing.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Not yet waited for, so the pid is still this child's (a
            // zombie at worst): the signal cannot reach another process.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// Stop (if running) and start again with the same configuration;
    /// returns once it is enabled.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Ap {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
