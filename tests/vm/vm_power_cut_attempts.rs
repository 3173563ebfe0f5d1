//! The IP-Box attack on the whole machine (issue 13 item 2): cut the power
//! right after ✓ of a wrong code, at several moments, and the failure is
//! counted after the reboot whenever its answer had shown.
//!
//! ```text
//!  host (this test)                     guest, boot r (same disk image every boot)
//!  ────────────────                     ─────────────────────────────────────────
//!  disk.img ──────────────────────────► /dev/vda, ext4 (made on boot 1), mounted
//!  EXPECT_MIN..=EXPECT_MAX ───────────► latchd (the host's binary) on the disk;
//!                                       first start on boot 1; strikes within
//!                                       the expected range, else fail
//!                                       wrong code + ✓, then by round:
//!                                         cut as soon as "Verification failed." plays
//!                                         cut 0 / 2 ms after ✓ was sent
//!  ◄── out/: strikes before, answer seen before the cut, power-cut mark
//!  final boot: start latchd, check only
//! ```
//!
//! The guest resets itself with `echo b > /proc/sysrq-trigger` (no sync,
//! no unmount), so whatever the kernel had not written to the virtual disk
//! is lost, as when a lock's batteries are pulled. An answer that played
//! means its attempt had been committed (`synchronous=FULL`) before it:
//! after the reboot the count is one higher. A cut before the answer may
//! leave it counted or not: no answer was given for it either way.
use crate::rig as vm;

use crate::daemon_common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use daemon_common::*;
use serde_json::json;

const MOUNT: &str = "/tmp/disk";
const DISK_MIB: u64 = 64;
const WRONG: &str = "802469";
const FAILED: &str = "Verification failed.";

const ROUND_ENV: &str = "LATCHD_ATTEMPT_CUT_ROUND";
const MODE_ENV: &str = "LATCHD_ATTEMPT_CUT_MODE";
const MIN_ENV: &str = "LATCHD_ATTEMPT_CUT_MIN";
const MAX_ENV: &str = "LATCHD_ATTEMPT_CUT_MAX";
const FINAL_ENV: &str = "LATCHD_ATTEMPT_CUT_FINAL";

/// When the power goes, round by round (four cuts: a fifth failure would
/// start a lockout and count nothing more).
const MODES: [&str; 4] = ["answer", "0ms", "answer", "2ms"];

#[test]
fn power_cut_after_a_wrong_code_keeps_the_failure_in_vm() {
    if !vm::enabled_or_skip("power_cut_after_a_wrong_code_keeps_the_failure_in_vm") {
        return;
    }
    let (_dir, disk) = vm::scratch_disk(DISK_MIB);
    let (mut min, mut max) = (0u64, 0u64);
    let mut answered = 0;
    for round in 1..=MODES.len() + 1 {
        let last = round == MODES.len() + 1;
        let mut env = vec![
            (ROUND_ENV.to_string(), round.to_string()),
            (MIN_ENV.to_string(), min.to_string()),
            (MAX_ENV.to_string(), max.to_string()),
            (
                MODE_ENV.to_string(),
                MODES.get(round - 1).unwrap_or(&"none").to_string(),
            ),
        ];
        if last {
            env.push((FINAL_ENV.to_string(), "1".into()));
        }
        let opts = vm::VmOptions {
            disk: Some(disk.clone()),
            env,
            timeout: Some(Duration::from_secs(240)),
            ..Default::default()
        };
        let exe = std::env::current_exe().unwrap();
        let name = vm::test_name(module_path!(), "guest_attempt_cut_round");
        let out = vm::run_argv(
            &opts,
            &[
                exe.to_str().unwrap(),
                "--exact",
                name.as_str(),
                "--nocapture",
                "--test-threads=1",
            ],
        )
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
        out.assert_success();
        print!("{}", out.stdout);
        if last {
            assert!(
                out.stdout.contains("checked after the last cut"),
                "{}",
                out.stdout
            );
            break;
        }
        assert!(
            out.files.contains_key("power-cut-started"),
            "round {round}: the guest never cut its power\n{}\n{}",
            out.stdout,
            out.stderr
        );
        let read = |name: &str| {
            String::from_utf8_lossy(out.files.get(name).map_or(&[][..], |v| v))
                .trim()
                .to_owned()
        };
        let before: u64 = read("strikes-before").parse().expect("strikes before");
        let seen = read("answer-seen") == "yes";
        answered += usize::from(seen);
        min = before + u64::from(seen);
        max = before + 1;
        println!(
            "round {round} ({}): strikes before {before}, answer {} before the cut",
            MODES[round - 1],
            if seen { "shown" } else { "not shown" }
        );
    }
    assert!(
        answered >= 2,
        "the `answer` rounds must cut after the answer showed"
    );
    println!(
        "{} power cuts after ✓ of a wrong code, none lost a shown failure",
        MODES.len()
    );
}

/// The guest half.
#[test]
fn guest_attempt_cut_round() {
    if !vm::in_guest_or_skip("guest_attempt_cut_round") {
        return;
    }
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let round: u64 = var(ROUND_ENV).parse().unwrap();
    let min: u64 = var(MIN_ENV).parse().unwrap();
    let max: u64 = var(MAX_ENV).parse().unwrap();
    let mode = var(MODE_ENV);
    let out_dir = PathBuf::from(var("LATCHD_VM_OUT_DIR"));
    let run_dir = PathBuf::from(var("LATCHD_VM_RUN_DIR"));
    std::fs::create_dir_all(&out_dir).unwrap();

    let dev = vm::attach_disk(&["ext4"]);
    if round == 1 {
        vm::run_ok("mkfs.ext4", &["-q", "-F", dev.to_str().unwrap()]);
    }
    std::fs::create_dir_all(MOUNT).unwrap();
    vm::run_ok("mount", &["-t", "ext4", dev.to_str().unwrap(), MOUNT]);
    let state = Path::new(MOUNT).join("state");
    let exe = Path::new(env!("CARGO_BIN_EXE_latchd"));
    let d = Daemon::start_exe(exe, &state, &[]);
    if round == 1 {
        first_start(&d);
        d.settle();
    }
    let strikes = d.status()["engine"]["strikes"].as_u64().expect("strikes");
    assert!(
        (min..=max).contains(&strikes),
        "round {round}: {strikes} strikes after the cut, expected {min}..={max}"
    );
    println!("round {round}: {strikes} strikes after the reboot (expected {min}..={max})");
    if std::env::var(FINAL_ENV).is_ok() {
        assert!(d.sigterm().success());
        check_db(&state);
        vm::run_ok("umount", &[MOUNT]);
        println!("round {round}: checked after the last cut");
        return;
    }
    std::fs::write(out_dir.join("strikes-before"), format!("{strikes}\n")).unwrap();

    let mut s = UnixStream::connect(&d.sock).unwrap();
    writeln!(
        s,
        "{}",
        json!({"cmd": "press", "keys": format!("{WRONG}✓")})
    )
    .unwrap();
    let sent = Instant::now();
    let seen = match mode.as_str() {
        "answer" => {
            let deadline = Instant::now() + Duration::from_secs(30);
            while d.last_prompt() != FAILED {
                assert!(Instant::now() < deadline, "no answer: {}", d.log_text());
            }
            true
        }
        fixed => {
            let ms: u64 = fixed.trim_end_matches("ms").parse().expect("a delay");
            std::thread::sleep(Duration::from_millis(ms));
            d.last_prompt() == FAILED
        }
    };
    std::fs::write(
        out_dir.join("answer-seen"),
        if seen { "yes\n" } else { "no\n" },
    )
    .unwrap();
    // Say so first (written through to the host), then cut.
    std::fs::write(run_dir.join("power-cut"), b"sysrq b\n").unwrap();
    std::fs::write(
        out_dir.join("power-cut-started"),
        format!("{:?}\n", sent.elapsed()),
    )
    .unwrap();
    std::fs::write("/proc/sysrq-trigger", b"b").unwrap();
    // The machine is gone; never reached.
    std::thread::sleep(Duration::from_secs(60));
    drop(d);
}
