//! Issue 17 item 5 against a real RTC: QEMU's MC146818 CMOS clock behind
//! the kernel's `rtc_cmos` driver (`/dev/rtc0`, `/sys/class/rtc/rtc0`),
//! set and read by util-linux's `hwclock` (the `RTC_SET_TIME` /
//! `RTC_RD_TIME` ioctls), read by latchd through sysfs.
//!
//! The guest plays a reboot of a lock without NTP: its system clock is
//! stepped back to 2001 (a board with no RTC driver to set it from, or a
//! build date), and the owner's time sync is stored as if from another
//! boot. The real `latchd` then
//! * takes the trusted RTC's time with `trust_system_clock` (not 2001);
//! * takes back the owner's sync the RTC carried across the "reboot",
//!   which the same store without `lock.rtc` cannot;
//! * believes nothing once the RTC was set back behind its reading at the
//!   sync.
use crate::rig as vm;

#[test]
fn rtc_carries_the_time_across_a_reboot_in_vm() {
    if !vm::enabled_or_skip("rtc_carries_the_time_across_a_reboot_in_vm") {
        return;
    }
    let opts = vm::VmOptions {
        timeout: Some(std::time::Duration::from_secs(240)),
        ..Default::default()
    };
    let out = vm::run_test_in_guest(&opts, module_path!(), "guest_rtc").unwrap();
    eprintln!("{}", out.stdout);
}

#[test]
fn guest_rtc() {
    if !vm::in_guest_or_skip("guest_rtc") {
        return;
    }
    guest::run();
}

mod guest {
    use std::path::Path;
    use std::process::Command;

    use latchd::core::WallTime;
    use latchd::daemon::clock_sync;
    use latchd::link::{rtc, Clock};
    use latchd::store::{Store, StoreHandle, StoreOptions};
    use serde_json::Value;

    use crate::daemon_common::{first_start, Daemon};

    /// 2030-03-17 17:46:40 UTC: what the RTC is set to.
    const RTC_SET: i64 = 1_900_000_000;
    /// What the owner's app says the time is at the sync.
    const OWNER: i64 = 1_950_000_000;

    fn sh(cmd: &str) -> String {
        let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The RTC as util-linux reads it (the ioctl of /dev/rtc0).
    fn hwclock_seconds() -> i64 {
        let shown = sh("hwclock --show --utc --noadjfile");
        sh(&format!("date -u -d '{}' +%s", shown.trim()))
            .trim()
            .parse()
            .unwrap()
    }

    fn set_rtc(unix: i64) {
        let when = sh(&format!("date -u -d @{unix} '+%F %T'"));
        sh(&format!(
            "hwclock --set --utc --noadjfile --date '{}'",
            when.trim()
        ));
    }

    fn config(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("[lock]\ntimedate_bus = \"off\"\n{text}")).unwrap();
        path
    }

    /// The wall time the engine believes, after a key press (the status
    /// shows the reading of the engine's last input).
    fn wall_time(state: &Path, cfg: &Path) -> (Value, String) {
        let d = Daemon::start_with(state, &["--config", cfg.to_str().unwrap()]);
        if d.step() == "choose_direction" {
            first_start(&d);
        }
        d.press("1");
        let wall = d.status()["engine"]["wall_time"].clone();
        let log = d.log_text();
        assert!(d.sigterm().success());
        (wall, log)
    }

    fn near(wall: &Value, expected: i64, slack: i64, log: &str) {
        let w = wall
            .as_i64()
            .unwrap_or_else(|| panic!("no wall time\n{log}"));
        assert!(
            (expected..=expected + slack).contains(&w),
            "wall {w}, expected {expected} (+{slack})\n{log}"
        );
    }

    pub fn run() {
        // 1. latchd's sysfs reading is the RTC util-linux reads.
        let ours = rtc::read("rtc0").unwrap();
        let theirs = hwclock_seconds();
        assert!((ours - theirs).abs() <= 2, "sysfs {ours}, hwclock {theirs}");
        set_rtc(RTC_SET);
        let ours = rtc::read("rtc0").unwrap();
        assert!((RTC_SET..RTC_SET + 3).contains(&ours), "{ours}");
        println!("the RTC reads {ours} through sysfs after hwclock --set");

        // 2. "Reboot": the system clock restarts from 2001.
        sh("date -u -s @1000000000");
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let trusted = config(
            dir.path(),
            "trusted.toml",
            "trust_system_clock = true\nrtc = \"rtc0\"\n",
        );
        let (wall, log) = wall_time(&state, &trusted);
        near(&wall, RTC_SET, 60, &log);
        println!("trust_system_clock + rtc0, system clock at 2001: wall time {wall}");

        // 3. An owner's sync, stored by the daemon's own code with the real
        //    RTC, then "a reboot" (another boot id).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (store, _key) = Store::open(&state, StoreOptions::default()).unwrap();
            let (handle, thread) = StoreHandle::spawn(store).unwrap();
            let clock = Clock::new(false).with_rtc("rtc0");
            clock.set(WallTime(OWNER));
            clock_sync::remember(&handle, &clock).await;
            drop(handle);
            thread.stop();
        });
        let db = rusqlite::Connection::open(state.join("latchd.db")).unwrap();
        let stored: Vec<u8> = db
            .query_row(
                "SELECT value FROM service_meta WHERE name = 'clock.owner_sync'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let mut record: Value = serde_json::from_slice(&stored).unwrap();
        let anchor = record["rtc"]["reading"]
            .as_i64()
            .expect("the RTC at the sync");
        assert!((RTC_SET..RTC_SET + 120).contains(&anchor), "{record}");
        record["boot_id"] = Value::from("a-boot-before-the-power-cut");
        db.execute(
            "UPDATE service_meta SET value = ?1 WHERE name = 'clock.owner_sync'",
            [serde_json::to_vec(&record).unwrap()],
        )
        .unwrap();
        drop(db);
        let synced_at = rtc::read("rtc0").unwrap();

        let untrusted = config(dir.path(), "rtc.toml", "rtc = \"rtc0\"\n");
        let (wall, log) = wall_time(&state, &untrusted);
        let elapsed = rtc::read("rtc0").unwrap() - synced_at;
        near(&wall, OWNER, elapsed + 60, &log);
        println!("the owner's sync carried by the RTC across the reboot: wall time {wall}");

        let no_rtc = config(dir.path(), "plain.toml", "");
        let (wall, log) = wall_time(&state, &no_rtc);
        assert_eq!(wall, Value::Null, "without the RTC the sync is lost\n{log}");

        // 4. The RTC set back behind its reading at the sync: nothing.
        set_rtc(anchor - 86_400);
        let (wall, log) = wall_time(&state, &untrusted);
        assert_eq!(wall, Value::Null, "an RTC set back is not believed\n{log}");
        assert!(log.contains("reset or set back"), "{log}");
    }
}
