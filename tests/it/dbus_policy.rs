//! `config/dbus/org.latchd.conf` enforced by a real `dbus-daemon` set up
//! like the system bus (default deny for method calls and name ownership,
//! our file `<include>`d), with callers of different identities made by
//! `setpriv`.
//!
//! Must run as root: it starts callers as `nobody`, and it creates the
//! system group `latchd-tech` and system user `latchd` when missing — the
//! same accounts `systemd/latchd.sysusers` creates on the device.
//! Needs the Debian packages `dbus-daemon`, `dbus-bin` (dbus-send),
//! `systemd` (busctl) and `util-linux` (setpriv).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use latchd::dbus::{
    serve, BackendFuture, BusChoice, DeviceCheck, Diagnostics, DiagnosticsBackend, EventRecord,
    BUS_NAME, INTERFACE, OBJECT_PATH,
};
use tokio::sync::{broadcast, watch};

use crate::common::{bus, wpa_double};

const HANG_GUARD: Duration = Duration::from_secs(20);
const TECH_GROUP: &str = "latchd-tech";
const SERVICE_USER: &str = "latchd";

/// A dbus-daemon configured like Debian's system bus, killed on drop.
struct SystemLikeBus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl SystemLikeBus {
    fn start() -> SystemLikeBus {
        SystemLikeBus::start_with("")
    }

    /// [`SystemLikeBus::start`] with more policy read before ours (another
    /// package's file in `system.d`).
    fn start_with(more_policy: &str) -> SystemLikeBus {
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dbus/org.latchd.conf");
        assert!(policy.is_file(), "{} is missing", policy.display());
        let dir = tempfile::tempdir().expect("tempdir");
        // Callers run as nobody: they must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let socket = dir.path().join("system_bus_socket");
        let config = dir.path().join("system.conf");
        // The default policy of /usr/share/dbus-1/system.conf, minus the
        // parts that need a real system (setuid helper, pid file, user switch).
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <!-- wpa_supplicant's own policy file, as upstream ships it
       (wpa_supplicant/dbus/dbus-wpa_supplicant.conf). -->
  <policy user="root">
    <allow own="fi.w1.wpa_supplicant1"/>
    <allow send_destination="fi.w1.wpa_supplicant1"/>
    <allow receive_sender="fi.w1.wpa_supplicant1" receive_type="signal"/>
  </policy>
  <policy context="default">
    <deny own="fi.w1.wpa_supplicant1"/>
    <deny send_destination="fi.w1.wpa_supplicant1"/>
    <deny receive_sender="fi.w1.wpa_supplicant1" receive_type="signal"/>
  </policy>
  {more_policy}
  <include>{policy}</include>
</busconfig>
"#,
                socket = socket.display(),
                policy = policy.display()
            ),
        )
        .expect("write bus config");
        let (child, address) = bus::spawn_dbus_daemon(&config);
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
            .expect("chmod socket");
        SystemLikeBus {
            child,
            address,
            _dir: dir,
        }
    }
}

impl SystemLikeBus {
    /// A system bus that lets everyone own any name and call anything: our
    /// policy file missing and the bus left open (issue 14 item 7: the
    /// daemon must still refuse callers on its own).
    fn open_without_policy() -> SystemLikeBus {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let socket = dir.path().join("system_bus_socket");
        let config = dir.path().join("system.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"#,
                socket = socket.display(),
            ),
        )
        .expect("write bus config");
        let (child, address) = bus::spawn_dbus_daemon(&config);
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
            .expect("chmod socket");
        SystemLikeBus {
            child,
            address,
            _dir: dir,
        }
    }
}

impl Drop for SystemLikeBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ensure_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "tests/it/dbus_policy.rs must run as root: it calls the bus as other users"
    );
}

fn run_ok(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

fn getent(db: &str, name: &str) -> Option<String> {
    let out = Command::new("getent")
        .args([db, name])
        .output()
        .expect("getent");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The accounts the policy names, as `systemd/latchd.sysusers` creates
/// them. Must exist before dbus-daemon reads the policy. Created once per
/// test process (the tests run in parallel threads and /etc/group is locked
/// while groupadd writes it). Returns the gid of `latchd-tech`.
fn ensure_accounts() -> u32 {
    static TECH_GID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *TECH_GID.get_or_init(|| {
        if getent("group", TECH_GROUP).is_none() {
            run_ok("groupadd", &["-f", "--system", TECH_GROUP]);
        }
        if getent("passwd", SERVICE_USER).is_none() {
            run_ok(
                "useradd",
                &[
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--user-group",
                    SERVICE_USER,
                ],
            );
        }
        let group = getent("group", TECH_GROUP).expect("tech group exists");
        group
            .split(':')
            .nth(2)
            .and_then(|g| g.trim().parse().ok())
            .expect("numeric gid")
    })
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Run `program` as `user` with exactly the supplementary `groups`.
async fn run_as(user: &str, groups: &[u32], program: &str, args: &[&str]) -> Output {
    let entry = getent("passwd", user).unwrap_or_else(|| panic!("no user {user}"));
    let fields: Vec<&str> = entry.trim().split(':').collect();
    let (uid, gid) = (fields[2], fields[3]);
    let mut cmd = tokio::process::Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.arg(program).args(args);
    let out = tokio::time::timeout(HANG_GUARD, cmd.output())
        .await
        .expect("command hung")
        .expect("setpriv (util-linux) must be installed");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `RequestName(org.latchd, DO_NOT_QUEUE)` as `user`, by dbus-send.
async fn request_name_as(bus: &SystemLikeBus, user: &str) -> Output {
    let address = format!("--bus={}", bus.address);
    run_as(
        user,
        &[],
        "dbus-send",
        &[
            &address,
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.RequestName",
            &format!("string:{BUS_NAME}"),
            "uint32:4",
        ],
    )
    .await
}

struct NoBackend;

impl DiagnosticsBackend for NoBackend {
    fn self_test(&self) -> BackendFuture<'_, Vec<DeviceCheck>> {
        Box::pin(async { Ok(vec![]) })
    }
    fn recent_events(&self, _limit: u32) -> BackendFuture<'_, Vec<EventRecord>> {
        Box::pin(async { Ok(vec![]) })
    }
    fn events_before(&self, _: Option<u64>, _: u32) -> BackendFuture<'_, Vec<EventRecord>> {
        Box::pin(async { Ok(vec![]) })
    }
    fn export(&self) -> BackendFuture<'_, String> {
        Box::pin(async { Ok("{}".to_string()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_root_and_the_service_user_may_own_the_name() {
    ensure_root();
    ensure_accounts();
    let bus = SystemLikeBus::start();

    let out = request_name_as(&bus, "nobody").await;
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("AccessDenied"),
        "nobody could own it: {}",
        out.stderr
    );

    // Reply 1 = DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER.
    let out = request_name_as(&bus, SERVICE_USER).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("uint32 1"), "{}", out.stdout);

    // Root (this test) may own it too.
    let (_tx, rx) = watch::channel(Diagnostics::default());
    let (_etx, erx) = broadcast::channel(1);
    let handle = serve(
        BusChoice::Address(bus.address.clone()),
        rx,
        Arc::new(NoBackend),
        erx,
    )
    .await
    .expect("root owns org.latchd");
    handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_root_and_technicians_may_call() {
    ensure_root();
    let tech_gid = ensure_accounts();
    let bus = SystemLikeBus::start();
    let (_tx, rx) = watch::channel(Diagnostics::default());
    let (_etx, erx) = broadcast::channel(1);
    let _handle = serve(
        BusChoice::Address(bus.address.clone()),
        rx,
        Arc::new(NoBackend),
        erx,
    )
    .await
    .expect("serve as root");
    let latchctl = env!("CARGO_BIN_EXE_latchctl");

    // Outside the group: denied, with latchctl's documented code 4.
    let out = run_as("nobody", &[], latchctl, &["--bus", &bus.address, "status"]).await;
    assert_eq!(
        out.code,
        Some(4),
        "stdout: {} stderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stderr.contains("access denied"), "{}", out.stderr);
    let address = format!("--address={}", bus.address);
    for method in ["SelfTest", "ExportDiagnostics"] {
        let out = run_as(
            "nobody",
            &[],
            "busctl",
            &[&address, "call", BUS_NAME, OBJECT_PATH, INTERFACE, method],
        )
        .await;
        assert_ne!(out.code, Some(0), "nobody called {method}");
        assert!(
            out.stderr.contains("denied") || out.stderr.contains("Access"),
            "{method}: {}",
            out.stderr
        );
    }

    // The same user in latchd-tech may.
    let out = run_as(
        "nobody",
        &[tech_gid],
        latchctl,
        &["--bus", &bus.address, "status"],
    )
    .await;
    assert_eq!(out.code, Some(0), "technician denied: {}", out.stderr);
    assert!(out.stdout.contains("Firmware"), "{}", out.stdout);
    let out = run_as(
        "nobody",
        &[tech_gid],
        latchctl,
        &["--bus", &bus.address, "self-test"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    // Root may.
    let out = run_as(
        "root",
        &[],
        latchctl,
        &["--bus", &bus.address, "--json", "export"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "{}");
}

/// The service user may talk to wpa_supplicant (Wi-Fi provisioning), which
/// wpa_supplicant's own policy denies to everyone but root; others still
/// may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_user_may_call_wpa_supplicant_and_nobody_else() {
    ensure_root();
    ensure_accounts();
    let bus = SystemLikeBus::start();
    let (_wpa, _log) = wpa_double::serve_wpa_on(
        zbus::connection::Builder::address(bus.address.as_str()).expect("address"),
    )
    .await;
    let call = |user: &'static str| {
        let address = format!("--bus={}", bus.address);
        async move {
            run_as(
                user,
                &[],
                "dbus-send",
                &[
                    &address,
                    "--print-reply",
                    "--dest=fi.w1.wpa_supplicant1",
                    "/fi/w1/wpa_supplicant1",
                    "fi.w1.wpa_supplicant1.GetInterface",
                    "string:wlan0",
                ],
            )
            .await
        }
    };
    // The call reaches the service: the double answers that it does not
    // manage wlan0 yet (the backend would then create it).
    let out = call(SERVICE_USER).await;
    assert!(
        out.stderr
            .contains("fi.w1.wpa_supplicant1.InterfaceUnknown"),
        "{}",
        out.stderr
    );
    let out = call("nobody").await;
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("AccessDenied"), "{}", out.stderr);
}

/// Issue 14 item 7: with no policy file on an open bus, the daemon itself
/// refuses an unprivileged caller — methods, `Get` and `GetAll` alike —
/// and still serves a technician (`latchd-tech` in the caller's groups)
/// and root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_policy_file_the_daemon_refuses_unprivileged_callers() {
    ensure_root();
    let tech_gid = ensure_accounts();
    let bus = SystemLikeBus::open_without_policy();
    let (_tx, rx) = watch::channel(Diagnostics::default());
    let (_etx, erx) = broadcast::channel(1);
    let _handle = serve(
        BusChoice::Address(bus.address.clone()),
        rx,
        Arc::new(NoBackend),
        erx,
    )
    .await
    .expect("serve as root");
    let latchctl = env!("CARGO_BIN_EXE_latchctl");

    let out = run_as("nobody", &[], latchctl, &["--bus", &bus.address, "status"]).await;
    assert_eq!(
        out.code,
        Some(4),
        "stdout: {} stderr: {}",
        out.stdout,
        out.stderr
    );
    // dbus-send prints the error's name and message: the message is the
    // daemon's own, so the bus did not refuse these (it lets all through).
    let bus_arg = format!("--bus={}", bus.address);
    let dest = format!("--dest={BUS_NAME}");
    let method = |m: &str| format!("{INTERFACE}.{m}");
    let iface_arg = format!("string:{INTERFACE}");
    for args in [
        vec![method("SelfTest")],
        vec![method("ExportDiagnostics")],
        vec![method("RecentEvents"), "uint32:5".into()],
        vec![method("EventsBefore"), "uint64:0".into(), "uint32:5".into()],
        vec![
            "org.freedesktop.DBus.Properties.Get".into(),
            iface_arg.clone(),
            "string:SerialNumber".into(),
        ],
    ] {
        let mut full: Vec<&str> = vec![&bus_arg, "--print-reply", &dest, OBJECT_PATH];
        full.extend(args.iter().map(String::as_str));
        let out = run_as("nobody", &[], "dbus-send", &full).await;
        assert_ne!(out.code, Some(0), "nobody ran {args:?}: {}", out.stdout);
        assert!(
            out.stderr.contains("AccessDenied") && out.stderr.contains("latchd-tech"),
            "{args:?} was not refused by the daemon: {}",
            out.stderr
        );
    }
    // GetAll leaves every refused property out: an empty dictionary.
    let out = run_as(
        "nobody",
        &[],
        "dbus-send",
        &[
            &bus_arg,
            "--print-reply",
            &dest,
            OBJECT_PATH,
            "org.freedesktop.DBus.Properties.GetAll",
            &iface_arg,
        ],
    )
    .await;
    assert!(!out.stdout.contains("SerialNumber"), "{}", out.stdout);

    let out = run_as(
        "nobody",
        &[tech_gid],
        latchctl,
        &["--bus", &bus.address, "status"],
    )
    .await;
    assert_eq!(out.code, Some(0), "technician denied: {}", out.stderr);
    let out = run_as("root", &[], latchctl, &["--bus", &bus.address, "self-test"]).await;
    assert_eq!(out.code, Some(0), "root denied: {}", out.stderr);
}

/// Issue 20 (c): RAUC's own policy file lets anyone call the installer; the
/// image's `latchd-rauc.conf` (read after it, as `system.d` sorts them)
/// leaves it to root and the service user. The real `rauc service` owns
/// its name on the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_root_and_the_service_user_may_call_rauc() {
    ensure_root();
    ensure_accounts();
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dbus/latchd-rauc.conf");
    assert!(ours.is_file(), "{} is missing", ours.display());
    let bus = SystemLikeBus::start_with(&format!(
        r#"<!-- RAUC's policy file, as upstream ships it (data/de.pengutronix.rauc.conf). -->
  <policy context="default">
    <allow send_destination="de.pengutronix.rauc"/>
  </policy>
  <policy user="root">
    <allow own="de.pengutronix.rauc"/>
  </policy>
  <include>{}</include>"#,
        ours.display()
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let slot = dir.path().join("slot0.img");
    std::fs::write(&slot, vec![0u8; 4096]).expect("slot");
    let conf = dir.path().join("system.conf");
    std::fs::write(
        &conf,
        format!(
            "[system]\ncompatible=latchd-test\nbootloader=noop\nmountprefix={d}\n\n\
             [keyring]\npath=/dev/null\n\n[slot.rootfs.0]\ndevice={slot}\ntype=raw\nbootname=A\n",
            d = dir.path().display(),
            slot = slot.display()
        ),
    )
    .expect("system.conf");
    let log = std::fs::File::create(dir.path().join("rauc.log")).expect("log");
    let mut rauc = std::process::Command::new("rauc")
        .arg(format!("--conf={}", conf.display()))
        .arg("--override-boot-slot=A")
        .arg("service")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("rauc (Debian package rauc) must be installed");
    let call = |user: &'static str, method: &'static [&'static str]| {
        let address = format!("--bus={}", bus.address);
        async move {
            let mut args = vec![
                address.as_str(),
                "--print-reply",
                "--dest=de.pengutronix.rauc",
                "/",
            ];
            args.extend_from_slice(method);
            run_as(user, &[], "dbus-send", &args).await
        }
    };
    const SLOTS: &[&str] = &["de.pengutronix.rauc.Installer.GetSlotStatus"];
    const OPERATION: &[&str] = &[
        "org.freedesktop.DBus.Properties.Get",
        "string:de.pengutronix.rauc.Installer",
        "string:Operation",
    ];
    // Waiting for the service to own its name is not a timed assertion:
    // the bound only turns a hang into a failure with RAUC's log.
    let deadline = std::time::Instant::now() + HANG_GUARD;
    let mut out = call(SERVICE_USER, SLOTS).await;
    while out.code != Some(0) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        out = call(SERVICE_USER, SLOTS).await;
    }
    let rauc_log = || std::fs::read_to_string(dir.path().join("rauc.log")).unwrap_or_default();
    assert_eq!(out.code, Some(0), "{} / rauc: {}", out.stderr, rauc_log());
    assert!(out.stdout.contains("rootfs.0"), "{}", out.stdout);
    let out = call(SERVICE_USER, OPERATION).await;
    assert!(out.stdout.contains("idle"), "{} {}", out.stdout, out.stderr);
    for method in [SLOTS, OPERATION] {
        let out = call("nobody", method).await;
        assert_ne!(out.code, Some(0), "{}", out.stdout);
        assert!(out.stderr.contains("AccessDenied"), "{}", out.stderr);
    }
    let out = call("root", SLOTS).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let _ = rauc.kill();
    let _ = rauc.wait();
}
