//! Issue 20: software updates against the real RAUC service (Debian
//! `rauc`), on the host: a private D-Bus daemon stands for the system bus,
//! RAUC runs `rauc service` on it with two file-backed raw slots and the
//! `custom` bootloader backend (a script this test writes, which records
//! every boot selection RAUC makes), bundles are built and signed with
//! `rauc bundle` by a CA this test makes with openssl, and served over
//! HTTP on loopback. latchd runs in-process on the simulated board with
//! `[update] bus` pointing at that bus; the owner's request enters the
//! engine as an authenticated `Input::App` (the BLE and MQTT layers that
//! authenticate it are tested in `ble_protocol` and `remote_mqtt`).
//!
//! RAUC mounts a plain bundle through a loop device, so this needs root
//! (CAP_SYS_ADMIN) and `/dev/loop-control`, as the CI machine has; the
//! scenarios are written to run in the VM rig as well (the guest is root).
//!
//! "Restarting" on this bus cannot reboot the host: there is no logind on
//! it, so the test checks that latchd asked logind (the error names it),
//! then plays the reboot — latchd stops, RAUC is restarted booted from the
//! slot the bootloader script says is primary, latchd starts again.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latchd::config::{BoardKind, Config};
use latchd::core::event::{AppRefusal, EventKind};
use latchd::core::time::Validity;
use latchd::core::types::{AppKey, AppKeyId, AppKeyRole, Change, Handing, Role, User, UserNumber};
use latchd::core::update::{Blocker, Phase, UpdateRefusal};
use latchd::core::{AppCommand, AppRequest, Channel, Input, Principal};
use latchd::daemon::{self, Running};
use latchd::store::{Store, StoreOptions};

use crate::common::bus::TestBus;

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (key + certificate) and a signer it certifies, made with openssl.
fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join(format!("{name}-ca.key"));
    let ca = dir.join(format!("{name}-ca.pem"));
    let key = dir.join(format!("{name}-signer.key"));
    let csr = dir.join(format!("{name}-signer.csr"));
    let cert = dir.join(format!("{name}-signer.pem"));
    let ext = dir.join(format!("{name}-ext.cnf"));
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca)
        .args(["-subj", &format!("/CN={name} update CA")])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(Command::new("openssl")
        .args(["req", "-newkey", "rsa:2048", "-nodes"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", &format!("/CN={name} bundle signer")]));
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n",
    )
    .expect("ext");
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "30", "-CAcreateserial"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-out")
        .arg(&cert)
        .arg("-extfile")
        .arg(&ext));
    (ca, cert, key)
}

/// `rauc bundle` of a 256 KiB raw image with `version`, signed by
/// (`cert`, `key`).
fn make_bundle(dir: &Path, name: &str, version: &str, cert: &Path, key: &Path) -> PathBuf {
    let input = dir.join(format!("{name}-in"));
    std::fs::create_dir_all(&input).expect("bundle dir");
    let image: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(input.join("rootfs.img"), image).expect("image");
    std::fs::write(
        input.join("manifest.raucm"),
        format!(
            "[update]\ncompatible=latchd-test\nversion={version}\n\n[image.rootfs]\nfilename=rootfs.img\n"
        ),
    )
    .expect("manifest");
    let out = dir.join("www").join(format!("{name}.raucb"));
    std::fs::create_dir_all(out.parent().expect("www")).expect("www");
    run(Command::new("rauc")
        .arg("bundle")
        .arg(format!("--cert={}", cert.display()))
        .arg(format!("--key={}", key.display()))
        .arg(&input)
        .arg(&out));
    out
}

/// A tiny HTTP/1.0 file server on loopback (GET only), for RAUC's
/// download of a bundle; one thread per connection.
fn serve_http(root: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    return;
                }
                // Skip the headers.
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let file = root.join(path.trim_start_matches('/'));
                let mut stream = stream;
                match std::fs::read(&file) {
                    Ok(body) if !path.contains("..") => {
                        let _ = write!(
                            stream,
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(&body);
                    }
                    _ => {
                        let _ = stream.write_all(
                            b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                }
            });
        }
    });
    port
}

/// RAUC's side: keyring, slots, boot script, bundles, the bus and the
/// service. Everything is killed and removed on drop.
struct Rig {
    dir: tempfile::TempDir,
    bus: TestBus,
    rauc: Option<Child>,
    port: u16,
}

const BOOT_SCRIPT: &str = r#"#!/bin/sh
# RAUC's custom bootloader backend for the test: primary slot and each
# slot's state in files; every call recorded.
S="$(dirname "$0")/boot"
mkdir -p "$S"
echo "$*" >> "$S/calls"
case "$1" in
  get-primary) cat "$S/primary" 2>/dev/null || echo A ;;
  set-primary) echo "$2" > "$S/primary" ;;
  get-state) cat "$S/state.$2" 2>/dev/null || echo good ;;
  set-state) echo "$3" > "$S/state.$2" ;;
  get-current) cat "$S/current" 2>/dev/null || echo A ;;
  *) exit 1 ;;
esac
"#;

impl Rig {
    fn start() -> Rig {
        assert!(
            Path::new("/usr/bin/rauc").exists() && Path::new("/usr/bin/mksquashfs").exists(),
            "rauc and squashfs-tools must be installed (scripts/test.sh installs them)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (ca, cert, key) = make_ca(d, "vendor");
        let (_, other_cert, other_key) = make_ca(d, "stranger");
        make_bundle(d, "new", "0.2.0", &cert, &key);
        make_bundle(d, "old", "0.0.1", &cert, &key);
        make_bundle(d, "forged", "0.3.0", &other_cert, &other_key);
        for slot in ["slot0.img", "slot1.img"] {
            std::fs::write(d.join(slot), vec![0u8; 1 << 20]).expect("slot");
        }
        let script = d.join("boot.sh");
        std::fs::write(&script, BOOT_SCRIPT).expect("boot script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::create_dir_all(d.join("mnt")).expect("mnt");
        std::fs::write(
            d.join("system.conf"),
            format!(
                "[system]\ncompatible=latchd-test\nbootloader=custom\nmountprefix={d}/mnt\n\
                 statusfile={d}/status.raucs\n\n[handlers]\nbootloader-custom-backend={d}/boot.sh\n\n\
                 [keyring]\npath={ca}\n\n\
                 [slot.rootfs.0]\ndevice={d}/slot0.img\ntype=raw\nbootname=A\n\n\
                 [slot.rootfs.1]\ndevice={d}/slot1.img\ntype=raw\nbootname=B\n",
                d = d.display(),
                ca = ca.display()
            ),
        )
        .expect("system.conf");
        let port = serve_http(d.join("www"));
        let mut rig = Rig {
            dir,
            bus: TestBus::start(),
            rauc: None,
            port,
        };
        rig.boot("A");
        rig
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self, bundle: &str) -> String {
        format!("http://127.0.0.1:{}/{bundle}.raucb", self.port)
    }

    /// (Re)start `rauc service` as if the system had booted `bootname`,
    /// and wait until it owns its name on the bus.
    fn boot(&mut self, bootname: &str) {
        if let Some(mut old) = self.rauc.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        std::fs::create_dir_all(self.path("boot")).expect("boot dir");
        std::fs::write(self.path("boot/current"), format!("{bootname}\n")).expect("current");
        let log = std::fs::File::create(self.path(&format!("rauc-{bootname}.log"))).expect("log");
        let child = Command::new("rauc")
            .arg(format!("--conf={}", self.path("system.conf").display()))
            .arg(format!("--override-boot-slot={bootname}"))
            .arg("service")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus.address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("rauc service starts");
        self.rauc = Some(child);
        // Waiting for a service to come up is not a timed assertion: the
        // limit only turns a hang into a failure with RAUC's log.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("busctl")
                .arg(format!("--address={}", self.bus.address))
                .args(["status", "de.pengutronix.rauc"])
                .output()
                .expect("busctl");
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rauc service did not come up: {}",
                std::fs::read_to_string(self.path(&format!("rauc-{bootname}.log")))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every call RAUC made to the boot script, in order.
    fn boot_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("boot/calls"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn primary(&self) -> String {
        std::fs::read_to_string(self.path("boot/primary"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "A".into())
    }

    /// Whether the other slot now holds the new image.
    fn slot1_written(&self) -> bool {
        std::fs::read(self.path("slot1.img"))
            .map(|b| b.iter().take(1024).any(|&x| x != 0))
            .unwrap_or(false)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut c) = self.rauc.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const OWNER_KEY: AppKeyId = AppKeyId(1);
const GUEST_KEY: AppKeyId = AppKeyId(2);

fn admin() -> UserNumber {
    UserNumber::new(1).expect("user 1")
}

fn owner() -> Principal {
    Principal::Owner {
        key: OWNER_KEY,
        admin: admin(),
    }
}

/// A lock with an administrator, an owner key and a guest key.
fn seed(state: &Path) {
    daemon::create_state_dir(state).expect("state dir");
    let (mut store, _) = Store::open(state, StoreOptions::default()).expect("store");
    let key = |id, role| AppKey {
        id,
        role,
        public_key: [id.0 as u8; 32],
        validity: Validity::ALWAYS,
        label: format!("key {}", id.0),
    };
    store
        .apply(&[
            Change::SetHanding(Handing::RightHand),
            Change::PutUser(User {
                number: admin(),
                role: Role::Admin,
                validity: Validity::ALWAYS,
            }),
            Change::PutAppKey(key(OWNER_KEY, AppKeyRole::Owner { admin: admin() })),
            Change::PutAppKey(key(GUEST_KEY, AppKeyRole::Guest)),
        ])
        .expect("seed");
}

fn config(rig: &Rig) -> Config {
    let mut c = Config {
        board: BoardKind::Sim,
        ..Default::default()
    };
    c.lock.trust_system_clock = true;
    c.lock.timedate_bus = "off".into();
    c.sim.motor_travel_ms = 20;
    c.update.bus = rig.bus.address.clone();
    c.update.health_timeout_s = 5;
    c
}

/// A seeded lock in a fresh state directory (kept alive by the returned
/// `TempDir`), running with `rig`'s RAUC.
async fn fresh_lock(rig: &Rig) -> (tempfile::TempDir, PathBuf, Running) {
    let state_dir = tempfile::tempdir().expect("state");
    let state = state_dir.path().join("lock");
    seed(&state);
    let running = start_lock(&state, config(rig)).await;
    (state_dir, state, running)
}

async fn start_lock(state: &Path, config: Config) -> Running {
    // The diagnostics interface on the same bus as RAUC: what a
    // technician reads there is checked below.
    let dbus = Some(latchd::dbus::BusChoice::Address(config.update.bus.clone()));
    crate::common::daemon::start_in_process(state, config, dbus).await
}

async fn ask(running: &Running, principal: Principal, command: AppCommand) {
    running
        .inputs
        .send(Input::App(AppRequest {
            id: 7,
            via: Channel::Ble,
            principal,
            command,
        }))
        .await;
}

async fn start_update(running: &Running, rig: &Rig, bundle: &str) {
    ask(
        running,
        owner(),
        AppCommand::StartUpdate {
            source: rig.url(bundle),
            allow_older: false,
        },
    )
    .await;
}

/// Wait until the engine's status says `done` (the update ended, or
/// reached a phase). Not a timed assertion: the limit turns a hang into a
/// failure that shows the status.
async fn until(running: &mut Running, what: &str, done: impl Fn(&latchd::core::Status) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        running.barrier().await;
        let status = running.published.borrow().engine.clone();
        if done(&status) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited for {what}; status: {:?}",
            status.update
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log, after the daemon stopped.
fn logged(state: &Path) -> Vec<EventKind> {
    let (store, _) = Store::open(state, StoreOptions::default()).expect("store");
    store
        .recent_events(1000)
        .expect("events")
        .into_iter()
        .rev() // oldest first
        .map(|e| e.event.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_update_installs_with_progress_restarts_and_is_marked_good() {
    let mut rig = Rig::start();
    let (_state_dir, state, mut running) = fresh_lock(&rig).await;
    start_update(&running, &rig, "new").await;
    until(&mut running, "the restart", |s| {
        s.update.is_none()
            || s.update
                .as_ref()
                .is_some_and(|u| u.phase == Phase::Restarting)
    })
    .await;
    // No logind on this bus: the restart request fails there, after the
    // install is complete.
    until(&mut running, "the end of the update", |s| {
        s.update.is_none()
    })
    .await;
    running.stop().await.expect("stops");
    let log = logged(&state);
    let pos = |f: &dyn Fn(&EventKind) -> bool| log.iter().position(f);
    let installing =
        pos(&|k| matches!(k, EventKind::UpdateInstalling { version } if version == "0.2.0"));
    let installed =
        pos(&|k| matches!(k, EventKind::UpdateInstalled { version } if version == "0.2.0"));
    let restarting = pos(&|k| matches!(k, EventKind::UpdateRestarting { .. }));
    assert!(
        installing.is_some() && installing < installed && installed < restarting,
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|k| matches!(k, EventKind::UpdateProgress { .. })),
        "RAUC's progress is logged: {log:?}"
    );
    assert!(
        log.iter().any(|k| matches!(k,
            EventKind::UpdateFailed { phase: Phase::Restarting, error } if error.contains("org.freedesktop.login1"))),
        "the restart was asked of logind: {log:?}"
    );
    // RAUC wrote the other slot and made it primary.
    assert!(rig.slot1_written());
    assert_eq!(rig.primary(), "B");

    // The reboot: the bootloader starts B; latchd starts, passes its
    // self-test and marks B good.
    rig.boot("B");
    let mut running = start_lock(&state, config(&rig)).await;
    until(&mut running, "the verdict on the booted slot", |s| {
        s.last_update.is_some()
    })
    .await;
    assert!(
        rig.boot_calls().iter().any(|c| c == "set-state B good"),
        "{:?}",
        rig.boot_calls()
    );
    running.barrier().await;
    // The app's status section (issue 20): the other slot as RAUC reports
    // it, and how the update ended. Waiting for RAUC's reading is not a
    // timed assertion: the bound only turns a hang into a failure.
    let deadline = Instant::now() + Duration::from_secs(20);
    while running.health.get().other_slot.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let other = running.health.get().other_slot.expect("RAUC's other slot");
    assert_eq!(
        (other.bootname.as_str(), other.good),
        ("A", Some(true)),
        "{other:?}"
    );
    let summary = latchd::app::wire::status_report(&running.published.borrow().engine)
        .update
        .expect("the engine's side of the section");
    assert_eq!(
        summary.last,
        Some(latchd::app::wire::UpdateStep::MarkedGood)
    );
    running.stop().await.expect("stops");
    let log = logged(&state);
    assert!(
        log.iter().any(|k| matches!(k,
            EventKind::UpdateMarkedGood { slot, version } if slot == "rootfs.1" && version == "0.2.0")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_signed_by_another_ca_is_refused_by_rauc_with_its_error() {
    let rig = Rig::start();
    let (_state_dir, state, mut running) = fresh_lock(&rig).await;
    start_update(&running, &rig, "forged").await;
    until(&mut running, "the refusal", |s| s.update.is_none()).await;
    running.stop().await.expect("stops");
    let log = logged(&state);
    let error = log
        .iter()
        .find_map(|k| match k {
            EventKind::UpdateFailed {
                phase: Phase::Inspecting,
                error,
            } => Some(error.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no refusal logged: {log:?}"));
    // RAUC's own words reach the owner. RAUC 1.8's `Info` answers every
    // refusal with "rauc info error" (the cause goes to its journal);
    // newer RAUCs name the signature failure.
    let e = error.to_lowercase();
    assert!(
        e.contains("rauc info error") || e.contains("signature") || e.contains("verif"),
        "{error}"
    );
    assert!(!rig.slot1_written(), "nothing was written");
    assert!(!log
        .iter()
        .any(|k| matches!(k, EventKind::UpdateInstalling { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_signed_bundle_is_refused_as_a_downgrade() {
    let rig = Rig::start();
    let (_state_dir, state, mut running) = fresh_lock(&rig).await;
    start_update(&running, &rig, "old").await;
    until(&mut running, "the refusal", |s| s.update.is_none()).await;
    running.stop().await.expect("stops");
    let log = logged(&state);
    assert!(
        log.contains(&EventKind::UpdateRefused {
            refusal: UpdateRefusal::NotNewer {
                installed: env!("CARGO_PKG_VERSION").into(),
                offered: "0.0.1".into()
            }
        }),
        "{log:?}"
    );
    assert!(!rig.slot1_written(), "nothing was written");
    assert_eq!(rig.primary(), "A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_waits_while_the_door_is_open_and_installs_after_it_is_closed_and_locked() {
    let rig = Rig::start();
    let (_state_dir, state, mut running) = fresh_lock(&rig).await;
    let sim = running.sim.clone().expect("sim board");
    ask(&running, owner(), AppCommand::Unlock).await;
    until(&mut running, "the bolt retracted", |s| {
        s.bolt == latchd::core::input::BoltPosition::Retracted
    })
    .await;
    sim.door(true).expect("door opens");
    start_update(&running, &rig, "new").await;
    until(&mut running, "the wait", |s| {
        s.update
            .as_ref()
            .is_some_and(|u| u.phase == Phase::WaitingToInstall)
    })
    .await;
    let blocked = running
        .published
        .borrow()
        .engine
        .update
        .clone()
        .expect("waiting");
    assert!(
        blocked.blocked_by.contains(&Blocker::DoorOpen),
        "{blocked:?}"
    );
    assert!(
        !rig.slot1_written(),
        "nothing installs while the door is open"
    );
    sim.door(false).expect("door closes");
    sim.lock_button().expect("lock");
    until(&mut running, "the restart", |s| {
        s.update.is_none()
            || s.update
                .as_ref()
                .is_some_and(|u| u.phase == Phase::Restarting)
    })
    .await;
    until(&mut running, "the end", |s| s.update.is_none()).await;
    running.stop().await.expect("stops");
    assert!(rig.slot1_written());
    let log = logged(&state);
    assert!(
        log.iter().any(|k| matches!(k,
            EventKind::UpdateWaiting { phase: Phase::WaitingToInstall, blocked_by } if blocked_by.contains(&Blocker::DoorOpen))),
        "{log:?}"
    );
    assert!(log
        .iter()
        .any(|k| matches!(k, EventKind::UpdateInstalled { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_key_cannot_start_an_update() {
    let rig = Rig::start();
    let (_state_dir, state, mut running) = fresh_lock(&rig).await;
    ask(
        &running,
        Principal::Guest {
            key: GUEST_KEY,
            validity: Validity::ALWAYS,
        },
        AppCommand::StartUpdate {
            source: rig.url("new"),
            allow_older: true,
        },
    )
    .await;
    running.barrier().await;
    assert_eq!(running.published.borrow().engine.update, None);
    running.stop().await.expect("stops");
    let log = logged(&state);
    assert!(
        log.contains(&EventKind::AppRefused {
            via: Channel::Ble,
            reason: AppRefusal::Forbidden
        }),
        "{log:?}"
    );
    assert!(!log
        .iter()
        .any(|k| matches!(k, EventKind::UpdateRequested { .. })));
    assert!(!rig.slot1_written());
    assert!(
        !rig.boot_calls().iter().any(|c| c.starts_with("set-")),
        "RAUC changed nothing: {:?}",
        rig.boot_calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_that_fails_its_health_check_is_not_marked_good() {
    crate::common::logs_from_env();
    let mut rig = Rig::start();
    let (_state_dir, state, mut running) = fresh_lock(&rig).await;
    start_update(&running, &rig, "new").await;
    until(&mut running, "the end of the update", |s| {
        s.update.is_none()
    })
    .await;
    running.stop().await.expect("stops");
    assert_eq!(rig.primary(), "B");
    // The "new version" cannot pass its self-test: it requires a Wi-Fi
    // link, and this simulated board has no Wi-Fi backend (the check
    // fails as a broken module or store would).
    rig.boot("B");
    let mut failing = config(&rig);
    failing.update.health_checks = vec!["store".into(), "wifi".into()];
    failing.update.health_timeout_s = 2;
    let mut running = start_lock(&state, failing).await;
    until(&mut running, "the verdict on the booted slot", |s| {
        matches!(s.last_update, Some(EventKind::UpdateNotMarked { .. }))
    })
    .await;
    running.stop().await.expect("stops");
    let log = logged(&state);
    let reason = log
        .iter()
        .find_map(|k| match k {
            EventKind::UpdateNotMarked { reason } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no verdict logged: {log:?}"));
    assert!(reason.contains("wifi: absent"), "{reason}");
    assert!(
        !rig.boot_calls().iter().any(|c| c == "set-state B good"),
        "B stays unconfirmed; the boot counter falls back: {:?}",
        rig.boot_calls()
    );
}

/// Issue 20 item 1: a bundle streamed in chunks through the app layer —
/// the dispatcher the BLE session hands every authenticated request to —
/// refused over MQTT and for a guest, resumed after a dropped connection,
/// then installed by RAUC from the streamed file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_streamed_in_chunks_through_the_app_layer_is_installed_by_rauc() {
    use latchd::app::client::BundleUpload;
    use latchd::app::dispatch::answer;
    use latchd::app::{Request, Response};

    let rig = Rig::start();
    let (_state_dir, state, mut running) = fresh_lock(&rig).await;
    let link = running.link.clone();
    let key = |id, role| AppKey {
        id,
        role,
        public_key: [id.0 as u8; 32],
        validity: Validity::ALWAYS,
        label: format!("key {}", id.0),
    };
    let owner_key = key(OWNER_KEY, AppKeyRole::Owner { admin: admin() });
    let guest_key = key(GUEST_KEY, AppKeyRole::Guest);
    let bytes = std::fs::read(rig.path("www/new.raucb")).expect("bundle");
    let len = bytes.len() as u64;
    let mut upload = BundleUpload::new(bytes, false);
    let mut rng = rand_core::OsRng;

    // Over the broker, and for a guest: refused, nothing written.
    for (k, via) in [(&owner_key, Channel::Remote), (&guest_key, Channel::Ble)] {
        let r = answer(&link, k, via, &upload.begin(), &mut rng).await;
        assert!(matches!(r, Response::Error { .. }), "{via:?}: {r:?}");
    }
    let partial = state.join("update-stream").join("partial.raucb");
    assert!(!partial.exists());

    // Half the bundle, then the connection drops.
    let mut req = upload.begin();
    let stopped_at = loop {
        let r = answer(&link, &owner_key, Channel::Ble, &req, &mut rng).await;
        match r {
            Response::UpdateOffset { offset } if offset > len / 2 => break offset,
            _ => req = upload.next(&r).expect("accepted").expect("more"),
        }
    };
    // A chunk at another offset writes nothing.
    let wrong = Request::UpdateChunk {
        offset: 0,
        bytes: vec![0; 16],
    };
    let r = answer(&link, &owner_key, Channel::Ble, &wrong, &mut rng).await;
    assert!(
        matches!(&r, Response::Error { detail, .. } if detail.contains(&stopped_at.to_string())),
        "{r:?}"
    );
    assert_eq!(
        std::fs::metadata(&partial).expect("partial").len(),
        stopped_at
    );
    // A new session: the lock answers where it stopped; the rest follows,
    // then the commit (sha256 checked) starts the update.
    let mut r = answer(&link, &owner_key, Channel::Ble, &upload.begin(), &mut rng).await;
    assert_eq!(r, Response::UpdateOffset { offset: stopped_at });
    while let Some(next) = upload.next(&r).expect("accepted") {
        r = answer(&link, &owner_key, Channel::Ble, &next, &mut rng).await;
    }
    until(&mut running, "the end of the update", |s| {
        s.update.is_none()
    })
    .await;
    running.stop().await.expect("stops");
    let log = logged(&state);
    assert!(
        log.iter().any(|k| matches!(k,
            EventKind::UpdateInstalled { version } if version == "0.2.0")),
        "{log:?}"
    );
    // RAUC wrote the other slot from the streamed file, which is gone.
    assert!(rig.slot1_written());
    assert_eq!(rig.primary(), "B");
    let left: Vec<_> = std::fs::read_dir(state.join("update-stream"))
        .expect("stream dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
