//! Issue 15 item 5: the state partition fills up under a running lock, and
//! then has room again. A real file system (a small tmpfs mounted for the
//! test: needs root, as the CI machine has, like `update_rauc`) filled to
//! its last block by another writer, the real `latchd` binary on the
//! simulated board.
//!
//! What a lock sold to homes must do (`store::reserve`): keep opening for
//! the credentials it has — every attempt's record is still committed
//! before its answer (the IP-Box rule), from the room the store kept back
//! — keep counting wrong codes durably, still take access away, refuse
//! additions with a prompt and store nothing of them, and work normally
//! again once there is room, without a restart. (Before the reserve, a
//! full partition stopped every electronic unlock: the attempt's commit
//! failed and nothing opened.)
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::common::daemon::*;

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let parent = tempfile::tempdir().expect("tmp");
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).expect("mount point");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(ok.success(), "mount tmpfs (needs root, as CI has)");
        Tmpfs {
            dir,
            _parent: parent,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fill the file system to the last block; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0xa5u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    path
}

fn users(d: &Daemon) -> serde_json::Value {
    d.status()["engine"]["counts"]["users"].clone()
}

fn unlock_and_relock(d: &Daemon, code: &str) {
    d.press(&format!("{code}✓"));
    d.settle();
    assert_eq!(
        d.status()["engine"]["lock"],
        json!("unlocked"),
        "{code}\n{}",
        d.log_text()
    );
    d.ok(json!({"cmd": "lock_button"}));
    d.settle();
    assert_eq!(d.status()["engine"]["lock"], json!("locked"));
}

/// Add user N with a passcode from the menu; returns the last prompts.
fn add_user_with_code(d: &Daemon, code: &str) -> Vec<String> {
    enter_menu(d);
    d.press("2");
    d.press("4");
    d.press(&format!("{code}✓{code}✓"));
    let prompts = d.last_prompts(6);
    d.press("↩↩↩");
    d.settle();
    prompts
}

#[test]
fn a_full_file_system_keeps_opening_counting_and_revoking_then_recovers() {
    let fs = Tmpfs::mount("16m");
    let state = fs.dir.join("state");
    let d = Daemon::start(&state);
    first_start(&d);
    let prompts = add_user_with_code(&d, USER_CODE);
    assert_eq!(users(&d), json!(2), "{prompts:?}");
    assert!(state.join("reserve").exists(), "the reserve is kept");

    let filler = fill(&fs.dir);
    // The family still gets in: each attempt's record is committed (the
    // reserve's room), so the IP-Box rule holds and the door opens.
    unlock_and_relock(&d, USER_CODE);
    unlock_and_relock(&d, ADMIN_CODE);
    assert!(!state.join("reserve").exists(), "the reserve was spent");
    // A change that adds is refused with a prompt, and nothing of it is
    // stored.
    let prompts = add_user_with_code(&d, "507318");
    assert_eq!(
        prompts.last().map(String::as_str),
        Some("Operation failed.")
    );
    assert_eq!(users(&d), json!(2), "{prompts:?}");
    // A wrong code is counted, durably: a power cut now (kill -9) and a
    // start on the still-full partition keep it.
    d.press("975318✓");
    d.settle();
    assert_eq!(d.status()["engine"]["strikes"], json!(1));
    d.kill9();
    let d = Daemon::start(&state);
    assert_eq!(
        d.status()["engine"]["strikes"],
        json!(1),
        "the guess survived"
    );
    unlock_and_relock(&d, USER_CODE);
    // Taking access away still works on a full partition (B-4.9).
    enter_menu(&d);
    d.press("3002✓");
    d.press("↩↩");
    d.settle();
    assert_eq!(users(&d), json!(1), "{:?}", d.last_prompts(4));

    // Room again: changes are taken without a restart, the reserve is back.
    std::fs::remove_file(filler).expect("free the space");
    let prompts = add_user_with_code(&d, "507318");
    assert_eq!(users(&d), json!(2), "{prompts:?}");
    assert!(
        state.join("reserve").exists(),
        "the reserve was written back"
    );
    unlock_and_relock(&d, "507318");
    assert!(d.sigterm().success());
    assert_eq!(check_db(&state).0, 2);
}

/// An ext4 file system on a loop device, mounted `errors=remount-ro` as a
/// lock's state partition would be, unmounted on drop.
struct Ext4 {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Ext4 {
    fn mount(size_mib: u32) -> Ext4 {
        let parent = tempfile::tempdir().expect("tmp");
        let img = parent.path().join("state.img");
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).expect("mount point");
        let f = std::fs::File::create(&img).expect("image");
        f.set_len(u64::from(size_mib) << 20).expect("size");
        drop(f);
        let run = |cmd: &mut Command| {
            let out = cmd.output().expect("runs");
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
        run(Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&img)
            .arg(&dir));
        Ext4 {
            dir,
            _parent: parent,
        }
    }

    /// What the kernel does when ext4 finds an error on the device: with
    /// `errors=remount-ro` the file system turns read-only under every open
    /// file (ext4's own test hook, `/sys/fs/ext4/<dev>/trigger_fs_error`).
    fn fail(&self) {
        let out = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(&self.dir)
            .output()
            .expect("findmnt");
        let source = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let dev = Path::new(&source)
            .file_name()
            .expect("a device")
            .to_string_lossy()
            .into_owned();
        std::fs::write(format!("/sys/fs/ext4/{dev}/trigger_fs_error"), "1")
            .expect("trigger an ext4 error");
        let probe = std::fs::write(self.dir.join("probe"), b"x");
        assert_eq!(
            probe.map_err(|e| e.raw_os_error()),
            Err(Some(libc::EROFS)),
            "the file system is read-only now"
        );
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Issue 15 item 5: the state partition turns read-only under the running
/// lock (ext4 `errors=remount-ro` after a flash error). The family still
/// gets in with the credentials it has — each attempt counted in memory,
/// the lockout still working, since no record can reach the disk — every
/// change is refused with a prompt, and the lock says what happened.
#[test]
fn a_state_partition_gone_read_only_keeps_opening_and_refuses_changes() {
    let fs = Ext4::mount(32);
    // The state directory is the file system's root, so the daemon's log
    // (next to it, `<state>.log`) stays writable: on a lock the journal
    // is elsewhere too.
    std::fs::set_permissions(&fs.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let state = fs.dir.clone();
    // A private bus, for the diagnostics a technician reads.
    let bus = crate::common::bus::TestBus::start();
    let d = Daemon::start_with_env(
        &state,
        &["--dbus", &bus.address],
        &[("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)],
    );
    first_start(&d);
    let prompts = add_user_with_code(&d, USER_CODE);
    assert_eq!(users(&d), json!(2), "{prompts:?}");

    fs.fail();
    unlock_and_relock(&d, USER_CODE);
    unlock_and_relock(&d, ADMIN_CODE);
    // Wrong codes still count, toward the lockout too (B-7.1).
    d.press("975318✓");
    d.settle();
    assert_eq!(d.status()["engine"]["strikes"], json!(1));
    unlock_and_relock(&d, USER_CODE);
    // A change is refused, and the lock keeps what it had.
    let prompts = add_user_with_code(&d, "507318");
    assert_eq!(
        prompts.last().map(String::as_str),
        Some("Operation failed."),
        "{prompts:?}"
    );
    assert_eq!(users(&d), json!(2), "{prompts:?}");
    unlock_and_relock(&d, USER_CODE);
    let log = d.log_text();
    assert!(log.contains("read-only"), "{log}");
    // The diagnostics say so (issue 22: never a healthy store that is not).
    let out = Command::new("busctl")
        .arg(format!("--address={}", bus.address))
        .args(["--no-pager", "get-property"])
        .args([
            latchd::dbus::BUS_NAME,
            latchd::dbus::OBJECT_PATH,
            latchd::dbus::INTERFACE,
            "StorageHealth",
        ])
        .output()
        .expect("busctl (Debian package systemd)");
    let health = String::from_utf8_lossy(&out.stdout);
    assert!(
        health.contains("degraded: the state partition is read-only"),
        "{health}"
    );
}
