//! Issue 15, motor fail-safe on any death, against the real daemon on the
//! real Linux board backends: gpio-sim lines for the switches and the
//! H-bridge inputs, `latchd-adc-sim` behind spidev for the motor current
//! and battery, a uinput keypad, snd-dummy for the voice.
//!
//! gpio-sim is loaded with `keep_value_on_free=1`: a released output keeps
//! the level it was last driven to, as the GPIO blocks of most SoCs do.
//! So a latchd killed with SIGKILL mid-move leaves a bridge input high —
//! the test checks that first (the hazard is real here), then that
//!
//! 1. `latchd-coast` (what the unit's `ExecStopPost=` runs after any end
//!    of the daemon) drives it inactive, and
//! 2. a latchd started on a corrupt database — which refuses to start —
//!    still coasts the motor first (`board::coast`, before the config,
//!    the store and the board are loaded).
//!
//! Stated bound (docs/motor-safety.md): the lines are inactive within
//! 2 s of the command starting in this rig (QEMU TCG, a debug binary read
//! over 9p); the figures printed are the measured times.
//!
//! Run: `LATCHD_VM_TESTS=1 tests/vm/run-vm-tests.sh vm_motor_failsafe::`.

use crate::daemon_common::{first_start, Daemon};
use crate::linux_lock::{
    board_file, energised, healthy_adc, keypad, lines, out_file, press_button, rest_inputs,
    sigkill, start_latchd, value, BoardDevices, BOLT_RET, LOCK_BTN,
};
use crate::rig as vm;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The stated bound: from the coasting command's start to both lines low.
const COAST_BOUND: Duration = Duration::from_secs(2);

#[test]
fn motor_coasts_after_sigkill_and_on_a_corrupt_database() {
    if !vm::enabled_or_skip("motor_coasts_after_sigkill_and_on_a_corrupt_database") {
        return;
    }
    let opts = vm::VmOptions {
        gpio_lines: lines(),
        adc: true,
        sound: true,
        timeout: Some(Duration::from_secs(420)),
        ..Default::default()
    };
    let out = vm::run_test_in_guest(&opts, module_path!(), "guest_motor_failsafe").unwrap();
    for f in ["sigkill-coast-ms", "corrupt-db-coast-ms"] {
        if let Some(v) = out.files.get(f) {
            eprintln!("{f}: {}", String::from_utf8_lossy(v).trim());
        }
    }
}

/// Poll until both bridge inputs read low; the time it took, or `None`
/// after `limit` (a limit on waiting, the assertion is on the bound).
fn until_coasted(t0: Instant, limit: Duration) -> Option<Duration> {
    loop {
        if !energised() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Press the back-panel lock button (active-low) and wait for the bridge
/// to be driven.
fn lock_button_starts_the_motor(state: &Path) {
    press_button(LOCK_BTN, Duration::from_millis(100));
    let t0 = Instant::now();
    while !energised() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the lock button did not start the motor: {}",
            std::fs::read_to_string(state.with_extension("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn guest_motor_failsafe() {
    if !vm::in_guest_or_skip("guest_motor_failsafe") {
        return;
    }
    // A released line keeps its level, as on an SoC.
    std::fs::write("/sys/module/gpio_sim/parameters/keep_value_on_free", "1")
        .expect("the rig's gpio-sim has keep_value_on_free");
    healthy_adc();
    // Bolt retracted, door closed, panel in place, nothing pressed.
    rest_inputs(false);
    assert!(!value(BOLT_RET));

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // A set-up lock (door direction, first administrator), made on the
    // simulated board through its control socket.
    {
        let d = Daemon::start(&state);
        first_start(&d);
        assert!(d.sigterm().success());
    }
    let (_keypad, node) = keypad("latchd-failsafe-keypad");
    // No modules on this rig: they report a fault and the lock runs on. A
    // long move, so that it is surely under way when it is killed.
    let board = board_file(
        dir.path(),
        &BoardDevices {
            keypad: &node,
            fingerprint: "/dev/null",
            palm: "/dev/zero",
            max_travel_ms: 10_000,
        },
    );
    let config = dir.path().join("latchd.toml");
    std::fs::write(
        &config,
        format!(
            "board = \"linux\"\nboard_file = {:?}\n",
            board.display().to_string()
        ),
    )
    .unwrap();

    // 1. SIGKILL mid-move; the unit's ExecStopPost= runs latchd-coast.
    let mut latchd = start_latchd(&config, &state);
    assert!(!energised(), "coasted at start");
    lock_button_starts_the_motor(&state);
    sigkill(&mut latchd);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        energised(),
        "the rig must show the hazard: a killed latchd leaves the bridge driven"
    );
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_latchd-coast"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let took = until_coasted(t0, Duration::from_secs(30)).expect("latchd-coast coasted");
    assert!(took <= COAST_BOUND, "latchd-coast took {took:?}");
    out_file("sigkill-coast-ms", &took.as_millis().to_string());

    // 2. Killed mid-move again, then the database is corrupt at the next
    // start: latchd refuses to start, and coasts the motor before that.
    let mut latchd = start_latchd(&config, &state);
    lock_button_starts_the_motor(&state);
    sigkill(&mut latchd);
    std::thread::sleep(Duration::from_millis(300));
    assert!(energised(), "left driven by the killed daemon");
    let db = state.join("latchd.db");
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    std::fs::write(&db, vec![0xA5u8; 8192]).unwrap();
    let log = state.with_extension("corrupt.log");
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchd"))
        .arg("--config")
        .arg(&config)
        .arg("--headless")
        .arg("--state-dir")
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let took = until_coasted(t0, Duration::from_secs(30));
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let took = took.unwrap_or_else(|| panic!("not coasted; latchd said: {text}"));
    assert!(
        !status.success(),
        "latchd started on a corrupt database: {text}"
    );
    assert!(
        text.contains("latchd.db") || text.to_lowercase().contains("database"),
        "the refusal names the database: {text}"
    );
    assert!(took <= COAST_BOUND, "coasting at start took {took:?}");
    out_file("corrupt-db-coast-ms", &took.as_millis().to_string());
}
