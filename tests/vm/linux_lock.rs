//! The guest half's Linux-board lock: the example board file pointed at the
//! rig's kernel devices (gpio-sim lines, `latchd-adc-sim` behind spidev, a
//! uinput keypad, snd-dummy), and `latchd` started on it. Shared by the
//! tests that run the real daemon with `board = "linux"`.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Line names in gpio-sim offset order: the ten inputs, then the outputs
/// (the names of `config/board-example.toml`).
pub const LINES: [&str; 16] = [
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
pub const BOLT_EXT: usize = 0;
pub const BOLT_RET: usize = 1;
pub const SET_BTN: usize = 4;
pub const LOCK_BTN: usize = 5;
pub const MOTOR_IN1: usize = 10;
pub const MOTOR_IN2: usize = 11;
pub const KP_LIGHT: usize = 12;
pub const IR_LED: usize = 13;

pub fn lines() -> Vec<String> {
    LINES.iter().map(|s| s.to_string()).collect()
}

fn sim_dir() -> PathBuf {
    PathBuf::from(std::env::var("LATCHD_VM_GPIO_SIM").expect("gpio-sim chip"))
}

/// Drive input line `offset` from outside, as the switch would.
pub fn pull(offset: usize, up: bool) {
    let f = sim_dir().join(format!("sim_gpio{offset}/pull"));
    std::fs::write(&f, if up { "pull-up" } else { "pull-down" })
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
}

/// The level latchd drives (outputs) or the line reads (inputs).
pub fn value(offset: usize) -> bool {
    std::fs::read_to_string(sim_dir().join(format!("sim_gpio{offset}/value")))
        .unwrap()
        .trim()
        == "1"
}

/// Either H-bridge input driven.
pub fn energised() -> bool {
    value(MOTOR_IN1) || value(MOTOR_IN2)
}

/// The inputs of a closed door with the panel in place, nothing pressed,
/// no USB power, and the bolt at `extended` or retracted (the example
/// board's switches are active-low: asserted = pulled down).
pub fn rest_inputs(extended: bool) {
    for (i, name) in LINES.iter().enumerate().take(10) {
        let asserted = match *name {
            "BOLT_EXT" => extended,
            "BOLT_RET" => !extended,
            "DOOR" | "TAMPER" => true,
            _ => false,
        };
        let active_low = *name != "USB_PWR";
        pull(i, if active_low { !asserted } else { asserted });
    }
}

/// A press of an active-low button line.
pub fn press_button(offset: usize, hold: Duration) {
    pull(offset, false);
    std::thread::sleep(hold);
    pull(offset, true);
}

/// Battery at about 7.7 V (channel 1, divider 4, 3.3 V reference), no
/// motor current (channel 0).
pub fn healthy_adc() {
    let counts = std::env::var("LATCHD_VM_ADC_COUNTS").expect("the rig's ADC");
    std::fs::write(&counts, "0,597,0,0,0,0,0,0").unwrap();
}

/// The keys of the example board's keymap.
pub const KEYS: [evdev::Key; 14] = [
    evdev::Key::KEY_0,
    evdev::Key::KEY_1,
    evdev::Key::KEY_2,
    evdev::Key::KEY_3,
    evdev::Key::KEY_4,
    evdev::Key::KEY_5,
    evdev::Key::KEY_6,
    evdev::Key::KEY_7,
    evdev::Key::KEY_8,
    evdev::Key::KEY_9,
    evdev::Key::KEY_BACKSPACE,
    evdev::Key::KEY_ENTER,
    evdev::Key::KEY_HOME,
    evdev::Key::KEY_SOUND,
];

/// A uinput keypad with the example keymap's keys and its event node;
/// the device lives as long as the returned value.
pub fn keypad(name: &str) -> (evdev::uinput::VirtualDevice, PathBuf) {
    let root = std::env::var("LATCHD_VM_MODPROBE_ROOT").unwrap_or_default();
    for module in ["uinput", "evdev"] {
        let st = Command::new("modprobe")
            .args(["-d", &root, module])
            .status()
            .unwrap();
        assert!(st.success(), "modprobe {module}");
    }
    let mut keys = evdev::AttributeSet::<evdev::Key>::new();
    for k in KEYS {
        keys.insert(k);
    }
    let dev = evdev::uinput::VirtualDeviceBuilder::new()
        .unwrap()
        .name(name)
        .with_keys(&keys)
        .unwrap()
        .build()
        .unwrap();
    for _ in 0..50 {
        if let Some((p, _)) = evdev::enumerate().find(|(_, d)| d.name() == Some(name)) {
            return (dev, p);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the uinput keypad's event node did not appear");
}

/// Where the board file's devices are, besides the rig's fixed ones.
pub struct BoardDevices<'a> {
    pub keypad: &'a Path,
    pub fingerprint: &'a str,
    pub palm: &'a str,
    pub max_travel_ms: u32,
}

/// The example board file, pointed at the rig's devices.
pub fn board_file(dir: &Path, devices: &BoardDevices<'_>) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let assets = root.join("assets/prompts");
    let spidev = std::env::var("LATCHD_VM_SPIDEV").expect("the rig's spidev node");
    let text = std::fs::read_to_string(root.join("config/board-example.toml"))
        .unwrap()
        .replace("\"/dev/spidev0.0\"", &format!("{spidev:?}"))
        .replace(
            "\"/dev/input/by-path/platform-keypad-event\"",
            &format!("{:?}", devices.keypad.display().to_string()),
        )
        .replace("pcm = \"default\"", "pcm = \"plughw:0,0\"")
        .replace(
            "\"/usr/share/latchd/prompts\"",
            &format!("{:?}", assets.display().to_string()),
        )
        .replace("\"/dev/ttyS1\"", &format!("{:?}", devices.fingerprint))
        .replace("\"/dev/ttyS2\"", &format!("{:?}", devices.palm))
        .replace(
            "max_travel_ms = 1500",
            &format!("max_travel_ms = {}", devices.max_travel_ms),
        );
    let path = dir.join("board.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// latchd on the Linux board, waiting for READY=1 on a private notify
/// socket (a real lock serves no control socket). Its log (with every
/// prompt's text, `latchd::prompt=debug`) goes to `state.log`.
pub fn start_latchd(config: &Path, state: &Path) -> Child {
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchd"))
        .arg("--config")
        .arg(config)
        .arg("--headless")
        .arg("--state-dir")
        .arg(state)
        .env("RUST_LOG", "info,latchd::prompt=debug")
        .env("NOTIFY_SOCKET", &notify)
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(120);
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

pub fn sigkill(child: &mut Child) {
    // Ok when it has exited already.
    let _ = child.kill();
    let _ = child.wait();
}

/// A file the host half reads back (`VmOutput::files`).
pub fn out_file(name: &str, text: &str) {
    let dir = PathBuf::from(std::env::var("LATCHD_VM_OUT_DIR").expect("out dir"));
    std::fs::write(dir.join(name), text).unwrap();
}
