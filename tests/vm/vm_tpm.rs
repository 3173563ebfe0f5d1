//! The device key under systemd with a TPM 2.0, in the VM (issue 16):
//! QEMU's tpm-tis device backed by swtpm (`/dev/tpmrm0` in the guest),
//! systemd 252 as PID 1, the shipped `latchd-key.service` and
//! `latchd.service` (paths of the binary and the config substituted and
//! `ConfigurationDirectory=` cleared, since /etc is read-only here; the
//! accounts made by `systemd-sysusers` from `systemd/latchd.sysusers`, the
//! state directory by `systemd-tmpfiles` from `systemd/latchd.tmpfiles`).
//! systemd itself runs the key step before every start, restarts the
//! daemon after its exit status 75 and runs the key step again. One part
//! is emulated: in this guest systemd decrypts the credential but the file
//! never appears in the service's `$CREDENTIALS_DIRECTORY` (see the drop-in
//! `vm-credentials.conf` below), so a privileged `ExecStartPre=+` does what
//! `LoadCredentialEncrypted=` does, with the same `systemd-creds decrypt`
//! and the same TPM, into a directory only user `latchd` can read. One
//! boot runs every scenario in order:
//!
//! 1. a lock that ran with a plain key file (`storage = "file"`, the
//!    documented drop-in clearing `LoadCredentialEncrypted=`);
//! 2. migration: `storage = "tpm2"`, the key step seals that key, the file
//!    is gone, the same administrator passcode still unlocks;
//! 3. a restart keeps the key;
//! 4. factory reset (SET held at power-up, ✓): the daemon exits 75,
//!    systemd runs the key step again (a new key), the daemon adopts the
//!    database; the old key is nowhere on the disk and the pre-reset
//!    database does not open with the new one;
//! 5. first boot on an empty state directory provisions a sealed key;
//! 6. the flash dump: the state directory is copied out of the VM, and the
//!    host tries every 32 bytes of every file as the device key against a
//!    known passcode's MAC. It finds nothing; the same search finds the
//!    key in the plain-file lock's directory of step 1 (the control).
use crate::rig as vm;

use crate::daemon_common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use daemon_common::{first_start, Daemon, ADMIN_CODE};
use latchd::core::passcode::{Macer, Passcode};
use latchd::store::DeviceKey;
use serde_json::json;

const STATE: &str = "/var/lib/latchd";
const CONFIG: &str = "/run/latchd-vm/latchd.toml";
const UNITS: &str = "/run/systemd/system";

#[test]
fn tpm_key_scenarios_in_vm() {
    if !vm::enabled_or_skip("tpm_key_scenarios_in_vm") {
        return;
    }
    let opts = vm::VmOptions {
        tpm: true,
        systemd: true,
        timeout: Some(Duration::from_secs(900)),
        ..Default::default()
    };
    let out = vm::run_test_in_guest(&opts, module_path!(), "guest_tpm_key_scenarios")
        .unwrap_or_else(|e| {
            panic!("{e}");
        });
    for line in out.stdout.lines().filter(|l| l.starts_with("guest:")) {
        println!("{line}");
    }
    println!(
        "vm: wall {:.1} s, guest ready for the command after {:.1} s",
        out.wall.as_secs_f64(),
        out.guest_setup.map_or(0.0, |d| d.as_secs_f64())
    );

    // 6. The flash dump, on the host: no TPM here.
    let code = Passcode::parse(ADMIN_CODE).unwrap();
    for (dir, expect_found) in [("flash", false), ("file-era", true)] {
        let reference = hex::decode(
            std::str::from_utf8(&out.files[&format!("{dir}.reference-mac")])
                .unwrap()
                .trim(),
        )
        .unwrap();
        let files: Vec<(&String, &Vec<u8>)> = out
            .files
            .iter()
            .filter(|(name, _)| name.starts_with(&format!("{dir}/")))
            .collect();
        assert!(!files.is_empty(), "no files in {dir}");
        // Every 32-byte window is a candidate, but most windows of a
        // database, its WAL and the space reserve repeat (zero pages):
        // each distinct window is tried once, where it first occurs. The
        // same candidates as trying them all, in a second instead of 40
        // (a MAC per window in a debug build).
        let mut seen = HashSet::new();
        let mut windows = 0usize;
        let mut found = Vec::new();
        for (name, bytes) in &files {
            for (offset, window) in bytes.windows(32).enumerate() {
                windows += 1;
                let k: [u8; 32] = window.try_into().expect("a 32-byte window");
                if !seen.insert(k) {
                    continue;
                }
                let key = DeviceKey::from_bytes(k);
                if Macer::new(&key.passcode_key()).mac(code.digits()).0[..] == reference[..] {
                    found.push(format!("{name} at byte {offset}"));
                }
            }
            println!(
                "flash dump [{dir}] {name}: {} bytes, every 32-byte window tried",
                bytes.len()
            );
        }
        println!(
            "flash dump [{dir}]: {} files, {windows} windows, {} distinct candidate keys, MAC of \
             the administrator's code matched by: {}",
            files.len(),
            seen.len(),
            if found.is_empty() {
                "none".to_string()
            } else {
                found.join(", ")
            }
        );
        assert_eq!(!found.is_empty(), expect_found, "[{dir}] {found:?}");
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "`{cmd}` failed:\n{text}");
    text
}

/// `systemctl VERB latchd.service`; on failure, the units' journals.
fn systemctl(verb: &str) {
    let out = Command::new("systemctl")
        .args([verb, "latchd.service"])
        .output()
        .expect("systemctl");
    assert!(
        out.status.success(),
        "systemctl {verb} latchd.service failed: {}\n--- latchd-key ---\n{}\n--- latchd ---\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        journal("latchd-key"),
        journal("latchd"),
        sh("systemctl status latchd.service latchd-key.service --no-pager || true")
    );
}

fn say(what: &str) {
    println!("guest: {what}");
}

/// The shipped unit with the built binary and the test's config.
fn install_unit(name: &str) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(repo.join("systemd").join(name)).unwrap();
    assert!(text.contains("/usr/bin/latchd ") && text.contains("/etc/latchd/latchd.toml"));
    let text = text
        .replace(
            "/usr/bin/latchd ",
            &format!("{} ", env!("CARGO_BIN_EXE_latchd")),
        )
        .replace("/etc/latchd/latchd.toml", CONFIG);
    std::fs::write(Path::new(UNITS).join(name), text).unwrap();
}

fn set_storage(storage: &str) {
    std::fs::create_dir_all("/run/latchd-vm").unwrap();
    std::fs::write(CONFIG, format!("[key]\nstorage = \"{storage}\"\n")).unwrap();
}

fn drop_in(name: &str, text: Option<&str>) {
    let dir = Path::new(UNITS).join("latchd.service.d");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    match text {
        Some(t) => std::fs::write(&path, t).unwrap(),
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
    sh("systemctl daemon-reload");
}

fn attach() -> Daemon {
    Daemon::attach(Path::new(STATE), &Path::new(STATE).join("control.sock"))
}

/// The key systemd would load: `systemd-creds decrypt` with the TPM.
fn sealed_key() -> Vec<u8> {
    let out = Command::new("systemd-creds")
        .args(["decrypt", "--name=device-key"])
        .arg(Path::new(STATE).join("device-key.cred"))
        .arg("-")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 32);
    out.stdout
}

fn unlock_with_admin_code(d: &Daemon) {
    let before = d.count_events("unlocked.passcode");
    d.press(&format!("{ADMIN_CODE}✓"));
    d.settle();
    assert_eq!(
        d.count_events("unlocked.passcode"),
        before + 1,
        "the passcode did not unlock"
    );
    let events = d.ok(json!({"cmd": "events", "n": 20}));
    assert!(events.to_string().contains("unlocked.passcode"), "{events}");
    // Lock again for the next scenario.
    d.ok(json!({"cmd": "lock_button"}));
    d.settle();
}

fn journal(unit: &str) -> String {
    sh(&format!(
        "journalctl -b -u {unit} --no-pager -o cat || true"
    ))
}

/// A copy of the state directory, and the MAC of the administrator's code
/// under `key`, for the host's flash-dump search.
fn dump_state(name: &str, key: &[u8]) {
    let out = PathBuf::from(std::env::var("LATCHD_VM_OUT_DIR").unwrap());
    let to = out.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(STATE).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    let key = DeviceKey::from_bytes(key.try_into().unwrap());
    let mac = Macer::new(&key.passcode_key()).mac(Passcode::parse(ADMIN_CODE).unwrap().digits());
    std::fs::write(
        out.join(format!("{name}.reference-mac")),
        hex::encode(mac.0),
    )
    .unwrap();
    say(&format!(
        "copied {} out: {}",
        STATE,
        sh(&format!("ls -la {STATE} | tail -n +2")).replace('\n', "; ")
    ));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn guest_tpm_key_scenarios() {
    if !vm::in_guest_or_skip("guest_tpm_key_scenarios") {
        return;
    }
    let t0 = Instant::now();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The guest's root is the host's, read-only: a writable /var/lib, and
    // the accounts of latchd.sysusers in copies bound over /etc.
    sh("mount -t tmpfs -o mode=0755 tmpfs /var/lib");
    sh("mkdir -p /run/vm-etc/etc && cp -a /etc/passwd /etc/group /etc/shadow /etc/gshadow /run/vm-etc/etc/");
    sh(&format!(
        "systemd-sysusers --root=/run/vm-etc {}",
        repo.join("systemd/latchd.sysusers").display()
    ));
    for f in ["passwd", "group", "shadow", "gshadow"] {
        sh(&format!("mount --bind /run/vm-etc/etc/{f} /etc/{f}"));
    }
    sh(&format!(
        "systemd-tmpfiles --create {}",
        repo.join("systemd/latchd.tmpfiles").display()
    ));
    assert!(sh(&format!("stat -c '%U %a' {STATE}")).starts_with("latchd 700"));
    assert!(Path::new("/dev/tpmrm0").exists(), "no TPM in the guest");
    install_unit("latchd-key.service");
    install_unit("latchd.service");
    // /etc is the host's, read-only: the config lives in /run here, so
    // systemd must not try to create /etc/latchd.
    drop_in(
        "vm-paths.conf",
        Some("[Service]\nConfigurationDirectory=\n"),
    );
    // In this guest, systemd 252 accepts and decrypts the credential with
    // the TPM (the unit starts instead of failing with 243/CREDENTIALS),
    // but the file never shows up in the service's $CREDENTIALS_DIRECTORY
    // (empty; a plain `LoadCredential=` unit fails the same way; cause not
    // found, likely the chrooted 9p root's mount propagation). So here the
    // loading is done as LoadCredentialEncrypted= does it, by the same
    // systemd-creds with the same TPM, in a privileged ExecStartPre into a
    // directory only the daemon's user can read. DevicePolicy= also binds
    // `+` commands (it is the cgroup's); systemd adds the same DeviceAllow
    // implicitly for units with LoadCredentialEncrypted=.
    drop_in(
        "vm-credentials.conf",
        Some(
            "[Service]\nLoadCredentialEncrypted=\n\
             DeviceAllow=/dev/tpmrm0 rw\n\
             Environment=CREDENTIALS_DIRECTORY=/run/latchd-vm-credentials\n\
             ExecStartPre=+/bin/sh -c 'rm -rf /run/latchd-vm-credentials; umask 077; \
             mkdir /run/latchd-vm-credentials; [ ! -e /var/lib/latchd/device-key.cred ] || \
             systemd-creds decrypt --name=device-key /var/lib/latchd/device-key.cred \
             /run/latchd-vm-credentials/device-key; chown -R latchd:latchd /run/latchd-vm-credentials'\n\
             ExecStopPost=+/bin/rm -rf /run/latchd-vm-credentials\n",
        ),
    );
    say(&format!(
        "setup done in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));

    // 1. A lock with a plain key file.
    let t = Instant::now();
    set_storage("file");
    drop_in("file.conf", Some("[Service]\nLoadCredentialEncrypted=\n"));
    systemctl("start");
    let d = attach();
    first_start(&d);
    unlock_with_admin_code(&d);
    let plain = std::fs::read(Path::new(STATE).join("device.key")).unwrap();
    systemctl("stop");
    assert!(
        journal("latchd").contains("storage = \"file\""),
        "no warning for the file backend"
    );
    dump_state("file-era", &plain);
    say(&format!(
        "1 plain key file: lock set up, passcode unlocks ({:.1} s)",
        t.elapsed().as_secs_f64()
    ));

    // 2. Migration to the TPM.
    let t = Instant::now();
    set_storage("tpm2");
    drop_in("file.conf", None);
    systemctl("start");
    assert!(
        !Path::new(STATE).join("device.key").exists(),
        "the plain key is still there"
    );
    assert_eq!(sealed_key(), plain, "the credential holds another key");
    assert!(
        journal("latchd-key").contains("Migrated"),
        "{}",
        journal("latchd-key")
    );
    let d = attach();
    assert_eq!(d.step(), "idle", "the migrated lock forgot its setup");
    unlock_with_admin_code(&d);
    let seal = sh(&format!(
        "head -c 24 {STATE}/device-key.cred | base64 -d | head -c 16 | od -An -tx1"
    ));
    say(&format!("2 migrated: device.key sealed (credential id{}), file wiped, same passcode unlocks ({:.1} s)", seal.trim_end(), t.elapsed().as_secs_f64()));

    // 3. A restart keeps it.
    let t = Instant::now();
    systemctl("restart");
    let d = attach();
    assert_eq!(d.step(), "idle");
    unlock_with_admin_code(&d);
    assert_eq!(sealed_key(), plain);
    assert!(journal("latchd").contains("sealed with the tpm2 key"));
    say(&format!(
        "3 restart: same key, passcode unlocks ({:.1} s)",
        t.elapsed().as_secs_f64()
    ));

    // 4. Factory reset: SET held at power-up, then ✓.
    let t = Instant::now();
    let old_key = sealed_key();
    // The database with its write-ahead log (the running daemon has not
    // checkpointed it).
    sh(&format!(
        "mkdir -p /run/pre-reset && cp {STATE}/latchd.db* /run/pre-reset/"
    ));
    let exec = format!(
        "[Service]\nExecStart=\nExecStart={} --config {CONFIG} --headless --dbus system --set-held\n",
        env!("CARGO_BIN_EXE_latchd")
    );
    drop_in("set-held.conf", Some(&exec));
    systemctl("restart");
    // The reset window is 30 s of monotonic time from power-up: confirm
    // at once, then take the drop-in away so the restart after the reset
    // runs the shipped command line.
    let d = attach();
    assert_eq!(d.step(), "factory_reset");
    let restarts_before: u32 = sh("systemctl show -p NRestarts --value latchd.service")
        .trim()
        .parse()
        .unwrap();
    // The daemon stops right after the reset's transaction: the reply may
    // not come.
    let _ = std::panic::catch_unwind(|| d.call(json!({"cmd": "press", "keys": "✓"})));
    drop_in("set-held.conf", None);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let restarts: u32 = sh("systemctl show -p NRestarts --value latchd.service")
            .trim()
            .parse()
            .unwrap();
        let active = Command::new("systemctl")
            .args(["is-active", "--quiet", "latchd.service"])
            .status()
            .unwrap()
            .success();
        if restarts > restarts_before && active && Path::new(STATE).join("control.sock").exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "latchd did not come back after the reset:\n{}",
            journal("latchd")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Had the restart been quicker than the drop-in's removal, SET would
    // read as held again: back out of that window (nothing is erased).
    let d = attach();
    if d.step() == "factory_reset" {
        d.press("↩");
    }
    let new_key = sealed_key();
    assert_ne!(new_key, old_key, "the factory reset did not rotate the key");
    assert!(
        journal("latchd").contains("status=75") || journal("latchd").contains("factory reset"),
        "{}",
        journal("latchd")
    );
    assert!(
        journal("latchd-key").contains("Rotated"),
        "{}",
        journal("latchd-key")
    );
    assert!(!Path::new(STATE).join("rotate-key.request").exists());
    let d = attach();
    assert_eq!(
        d.step(),
        "choose_direction",
        "the reset lock must ask the door direction again"
    );
    // The old key is nowhere on the disk any more.
    for e in std::fs::read_dir(STATE).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            let bytes = std::fs::read(e.path()).unwrap();
            assert!(
                !contains(&bytes, &old_key),
                "{} holds the old key",
                e.path().display()
            );
        }
    }
    // What the old key sealed stays sealed: the pre-reset database opens
    // with the old key (the control) and not with the new one.
    for (key, should_open) in [(&old_key, true), (&new_key, false)] {
        let dir = tempfile::tempdir().unwrap();
        sh(&format!("cp /run/pre-reset/* {}/", dir.path().display()));
        std::fs::write(dir.path().join("device.key"), key).unwrap();
        sh(&format!("chmod 600 {}/device.key", dir.path().display()));
        let r = latchd::store::Store::open(dir.path(), Default::default());
        assert_eq!(r.is_ok(), should_open, "{:?}", r.err());
    }
    first_start(&d);
    unlock_with_admin_code(&d);
    say(&format!("4 factory reset: exit 75, key step rotated, old key on disk: nowhere, pre-reset db with the new key: does not open, new setup unlocks ({:.1} s)", t.elapsed().as_secs_f64()));

    // 5. First boot on an empty state directory.
    let t = Instant::now();
    systemctl("stop");
    sh(&format!("find {STATE} -mindepth 1 -delete"));
    systemctl("start");
    assert!(
        journal("latchd-key").contains("Provisioned"),
        "{}",
        journal("latchd-key")
    );
    assert!(!Path::new(STATE).join("device.key").exists());
    let d = attach();
    first_start(&d);
    unlock_with_admin_code(&d);
    let key = sealed_key();
    systemctl("stop");
    say(&format!(
        "5 first boot: key sealed by the TPM, no key file, passcode unlocks ({:.1} s)",
        t.elapsed().as_secs_f64()
    ));

    // 6. The flash dump (searched on the host).
    dump_state("flash", &key);
    say(&format!(
        "all scenarios in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
}
