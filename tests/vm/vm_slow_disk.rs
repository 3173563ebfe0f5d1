//! Issue 15 item 5, a flash that turns slow: the state partition on ext4
//! over device-mapper's `delay` target (every write and flush held
//! [`WRITE_DELAY_MS`]), the real `latchd` on it.
//!
//! ```text
//!  host disk.img ─► guest /dev/vda ─► dm "slow" ─► ext4 ─► state dir
//!                                      linear; after the first start reloaded as
//!                                      delay (writes +0.4 s) under the running lock
//! ```
//!
//! Every verification commits its attempt before the answer (the IP-Box
//! rule), so a slow flash must slow the answer — and nothing else: the
//! store has its own thread (issue 15 item 2), so while a commit waits on
//! the device the daemon's other tasks answer at once (here the control
//! socket's status, read from what the engine published; on a lock also
//! BLE, MQTT, Matter, D-Bus and the watchdog probes). Checked by asking
//! for the status while a wrong code's commit is held: it must answer in
//! well under one write delay. The right code then opens, after its own
//! commit (the figure is printed).
use crate::rig as vm;

use std::path::Path;
use std::time::{Duration, Instant};

/// What dm-delay holds each write (and flush) for.
const WRITE_DELAY_MS: u64 = 400;
const DISK_MIB: u64 = 64;

#[test]
fn a_slow_flash_slows_only_the_answer_in_vm() {
    if !vm::enabled_or_skip("a_slow_flash_slows_only_the_answer_in_vm") {
        return;
    }
    let (_dir, disk) = vm::scratch_disk(DISK_MIB);
    let opts = vm::VmOptions {
        disk: Some(disk),
        timeout: Some(Duration::from_secs(420)),
        ..Default::default()
    };
    let out = vm::run_test_in_guest(&opts, module_path!(), "guest_slow_flash").unwrap();
    eprintln!("{}", out.stdout);
}

#[test]
fn guest_slow_flash() {
    if !vm::in_guest_or_skip("guest_slow_flash") {
        return;
    }
    guest::run();
}

mod guest {
    use super::*;
    use crate::daemon_common::{first_start, Daemon, ADMIN_CODE};
    use serde_json::json;

    /// `/dev/mapper/slow`: /dev/vda through device-mapper, at full speed
    /// until [`turn_slow`].
    fn mapped_device() -> &'static str {
        vm::attach_disk(&["ext4", "dm_delay"]);
        // No udev in the guest: dmsetup makes the /dev/mapper node itself.
        vm::run_ok(
            "dmsetup",
            &[
                "create",
                "--noudevsync",
                "--verifyudev",
                "slow",
                "--table",
                &format!("0 {} linear /dev/vda 0", sectors()),
            ],
        );
        vm::run_ok("dmsetup", &["mknodes", "slow"]);
        "/dev/mapper/slow"
    }

    fn sectors() -> String {
        vm::run_ok("blockdev", &["--getsz", "/dev/vda"])
            .trim()
            .to_owned()
    }

    /// The flash turns slow under the running lock: the same mapping,
    /// reloaded with the `delay` target (reads at once; every write and
    /// flush held [`WRITE_DELAY_MS`]).
    fn turn_slow() {
        let table = format!(
            "0 {} delay /dev/vda 0 0 /dev/vda 0 {WRITE_DELAY_MS}",
            sectors()
        );
        vm::run_ok("dmsetup", &["suspend", "--noudevsync", "slow"]);
        vm::run_ok("dmsetup", &["reload", "slow", "--table", &table]);
        vm::run_ok("dmsetup", &["resume", "--noudevsync", "slow"]);
    }

    pub fn run() {
        let dev = mapped_device();
        vm::run_ok("mkfs.ext4", &["-q", "-F", dev]);
        let mnt = Path::new("/tmp/slow");
        std::fs::create_dir_all(mnt).unwrap();
        vm::run_ok("mount", &[dev, "/tmp/slow"]);
        std::fs::set_permissions(mnt, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let d = Daemon::start(mnt);
        first_start(&d);
        turn_slow();

        // A wrong code: its commit is held by the device. Meanwhile the
        // status answers from what the engine published.
        let guess = std::thread::scope(|s| {
            let guessing = s.spawn(|| {
                let t = Instant::now();
                d.press("975318✓");
                t.elapsed()
            });
            std::thread::sleep(Duration::from_millis(300));
            let t = Instant::now();
            let status = d.status();
            let answered = t.elapsed();
            assert_eq!(status["engine"]["lock"], json!("locked"));
            let took = guessing.join().expect("the guess");
            println!(
                "status while the guess was being committed: {answered:?}; the guess took {took:?}"
            );
            assert!(
                answered < Duration::from_millis(WRITE_DELAY_MS / 2),
                "the status waited for the flash: {answered:?}"
            );
            took
        });
        assert!(
            guess >= Duration::from_millis(WRITE_DELAY_MS),
            "the guess was answered before its commit: {guess:?}"
        );
        d.settle();
        assert_eq!(d.status()["engine"]["strikes"], json!(1));

        let t = Instant::now();
        d.press(&format!("{ADMIN_CODE}✓"));
        d.settle();
        assert_eq!(d.status()["engine"]["lock"], json!("unlocked"));
        println!("the right code opened after {:?}", t.elapsed());
        assert!(d.sigterm().success());
    }
}
