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
use crate::rig as vm;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Line names in gpio-sim offset order: the ten inputs, then the outputs.
const LINES: [&str; 16] = [
    "BOLT_EXT",
    "BOLT_RET",
    "DOOR",
    "TAMPER",
    "SET_BTN",
    "LOCK_BTN",
    "HANDLE_IN",
    "KEY_CYL",
    "PROX",
    "USB_PWR",
    "MOTOR_IN1",
    "MOTOR_IN2",
    "KP_LIGHT",
    "IR_LED",
    "BUZZER",
    "LOWBAT_LED",
];
const BOLT_RET: usize = 1;
const LOCK_BTN: usize = 5;
const MOTOR_IN1: usize = 10;
const MOTOR_IN2: usize = 11;

/// The stated bound: from the coasting command's start to both lines low.
const COAST_BOUND: Duration = Duration::from_secs(2);

#[test]
fn motor_coasts_after_sigkill_and_on_a_corrupt_database() {
    if !vm::enabled_or_skip("motor_coasts_after_sigkill_and_on_a_corrupt_database") {
        return;
    }
    let opts = vm::VmOptions {
        gpio_lines: LINES.iter().map(|s| s.to_string()).collect(),
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

fn sim_dir() -> PathBuf {
    PathBuf::from(std::env::var("LATCHD_VM_GPIO_SIM").expect("gpio-sim chip"))
}

fn pull(offset: usize, up: bool) {
    let f = sim_dir().join(format!("sim_gpio{offset}/pull"));
    std::fs::write(&f, if up { "pull-up" } else { "pull-down" })
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
}

fn value(offset: usize) -> bool {
    std::fs::read_to_string(sim_dir().join(format!("sim_gpio{offset}/value")))
        .unwrap()
        .trim()
        == "1"
}

fn energised() -> bool {
    value(MOTOR_IN1) || value(MOTOR_IN2)
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

fn out_file(name: &str, text: &str) {
    let dir = PathBuf::from(std::env::var("LATCHD_VM_OUT_DIR").expect("out dir"));
    std::fs::write(dir.join(name), text).unwrap();
}

/// A uinput keypad (the board wants an evdev node); kept alive by the caller.
fn keypad() -> (evdev::uinput::VirtualDevice, PathBuf) {
    let root = std::env::var("LATCHD_VM_MODPROBE_ROOT").unwrap_or_default();
    for module in ["uinput", "evdev"] {
        let st = Command::new("modprobe")
            .args(["-d", &root, module])
            .status()
            .unwrap();
        assert!(st.success(), "modprobe {module}");
    }
    let mut keys = evdev::AttributeSet::<evdev::Key>::new();
    keys.insert(evdev::Key::KEY_1);
    let dev = evdev::uinput::VirtualDeviceBuilder::new()
        .unwrap()
        .name("latchd-failsafe-keypad")
        .with_keys(&keys)
        .unwrap()
        .build()
        .unwrap();
    for _ in 0..50 {
        if let Some((p, _)) =
            evdev::enumerate().find(|(_, d)| d.name() == Some("latchd-failsafe-keypad"))
        {
            return (dev, p);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the uinput keypad's event node did not appear");
}

/// The example board file, pointed at the rig's devices.
fn board_file(dir: &Path, keypad: &Path) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/board-example.toml");
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/prompts");
    let spidev = std::env::var("LATCHD_VM_SPIDEV").expect("the rig's spidev node");
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("\"/dev/spidev0.0\"", &format!("{spidev:?}"))
        .replace(
            "\"/dev/input/by-path/platform-keypad-event\"",
            &format!("{:?}", keypad.display().to_string()),
        )
        .replace("pcm = \"default\"", "pcm = \"plughw:0,0\"")
        .replace(
            "\"/usr/share/latchd/prompts\"",
            &format!("{:?}", assets.display().to_string()),
        )
        // No modules on this rig: they report a fault and the lock runs on.
        .replace("\"/dev/ttyS1\"", "\"/dev/null\"")
        .replace("\"/dev/ttyS2\"", "\"/dev/zero\"")
        // A long move, so that it is surely under way when it is killed.
        .replace("max_travel_ms = 1500", "max_travel_ms = 10000");
    let path = dir.join("board.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// latchd on the Linux board, waiting for READY=1 on a private notify
/// socket (a real lock serves no control socket).
fn start_linux(config: &Path, state: &Path) -> Child {
    let notify = state.with_extension("notify");
    let _ = std::fs::remove_file(&notify);
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.with_extension("log"))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_latchd"))
        .arg("--config")
        .arg(config)
        .arg("--headless")
        .arg("--state-dir")
        .arg(state)
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &notify)
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut child = child;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(n) = sock.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                return child;
            }
        }
        let exited = child.try_wait().unwrap();
        if exited.is_some() || Instant::now() > deadline {
            sigkill(&mut child);
            panic!(
                "no READY=1 from latchd ({exited:?}): {}",
                std::fs::read_to_string(state.with_extension("log")).unwrap_or_default()
            );
        }
    }
}

/// Press the back-panel lock button (active-low) and wait for the bridge
/// to be driven.
fn lock_button_starts_the_motor(state: &Path) {
    pull(LOCK_BTN, false);
    std::thread::sleep(Duration::from_millis(100));
    pull(LOCK_BTN, true);
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

fn sigkill(child: &mut Child) {
    // Ok when it has exited already.
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn guest_motor_failsafe() {
    if !vm::in_guest_or_skip("guest_motor_failsafe") {
        return;
    }
    // A released line keeps its level, as on an SoC.
    std::fs::write("/sys/module/gpio_sim/parameters/keep_value_on_free", "1")
        .expect("the rig's gpio-sim has keep_value_on_free");
    // Battery at about 7.7 V (channel 1, divider 4, 3.3 V reference), no
    // motor current (channel 0).
    let counts = std::env::var("LATCHD_VM_ADC_COUNTS").expect("the rig's ADC");
    std::fs::write(&counts, "0,597,0,0,0,0,0,0").unwrap();
    // Inputs: bolt retracted, door closed, panel in place, nothing
    // pressed, no USB power.
    for (i, name) in LINES.iter().enumerate().take(10) {
        let asserted_low = !matches!(*name, "USB_PWR");
        let asserted = matches!(*name, "BOLT_RET" | "DOOR" | "TAMPER");
        // active-low: asserted = pulled down.
        pull(i, if asserted_low { !asserted } else { asserted });
    }
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
    let (_keypad, node) = keypad();
    let board = board_file(dir.path(), &node);
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
    let mut latchd = start_linux(&config, &state);
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
    let mut latchd = start_linux(&config, &state);
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
