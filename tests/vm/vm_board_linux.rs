//! latchd's Linux board backends against real kernel devices in the VM rig
//! (tests/vm): GPIO inputs and outputs on gpio-sim lines through the GPIO
//! character device, the keypad through a uinput device read with evdev,
//! and voice prompts on the snd-dummy sound card.
//!
//! Run: `scripts/test-vm.sh` (or `LATCHD_VM_TESTS=1 cargo test
//! --all-features --test vm vm_board_linux:: -- --test-threads=1`).

use crate::linux_lock::pull;
use crate::rig as vm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use latchd::board::linux::config::{Inputs, Line};
use latchd::board::linux::gpio::{GpioInputs, GpioOutput, Signal};

/// The ten inputs and the motor lines of the example board, in gpio-sim
/// offset order.
const LINES: &[&str] = crate::linux_lock::LINES.split_at(12).0;

fn line(name: &str) -> Line {
    Line {
        name: name.into(),
        chip: None,
        // The door switch is wired active-low, like the example board.
        active_low: name == "DOOR",
        debounce_ms: 0,
    }
}

fn inputs() -> Inputs {
    Inputs {
        bolt_extended: line("BOLT_EXT"),
        bolt_retracted: line("BOLT_RET"),
        door_closed: line("DOOR"),
        tamper: line("TAMPER"),
        set_button: line("SET_BTN"),
        lock_button: line("LOCK_BTN"),
        inside_handle: line("HANDLE_IN"),
        mechanical_key: line("KEY_CYL"),
        keypad_wake: line("PROX"),
        external_power: line("USB_PWR"),
    }
}

fn sim_value(offset: usize) -> String {
    if crate::linux_lock::value(offset) {
        "1"
    } else {
        "0"
    }
    .to_string()
}

#[test]
fn gpio_backend_on_gpio_sim() {
    if !vm::enabled_or_skip("gpio_backend_on_gpio_sim") {
        return;
    }
    let opts = vm::VmOptions {
        gpio_lines: LINES.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    vm::run_test_in_guest(&opts, module_path!(), "guest_gpio_backend").unwrap();
}

#[tokio::test]
async fn guest_gpio_backend() {
    if !vm::in_guest_or_skip("guest_gpio_backend") {
        return;
    }
    // Start state: every input low (DOOR low = asserted = door closed).
    for i in 0..10 {
        pull(i, false);
    }
    let mut gpio = GpioInputs::request(&inputs()).expect("request inputs by name");
    assert_eq!(gpio.initial.get(&Signal::DoorClosed), Some(&true));
    assert_eq!(gpio.initial.get(&Signal::BoltExtended), Some(&false));

    async fn next(gpio: &mut GpioInputs) -> (Signal, bool) {
        tokio::time::timeout(Duration::from_secs(5), gpio.events.recv())
            .await
            .expect("an edge event")
            .expect("channel open")
    }
    pull(0, true);
    assert_eq!(next(&mut gpio).await, (Signal::BoltExtended, true));
    pull(2, true); // active-low door line goes high: door open
    assert_eq!(next(&mut gpio).await, (Signal::DoorClosed, false));
    pull(5, true);
    assert_eq!(next(&mut gpio).await, (Signal::LockButton, true));
    pull(5, false);
    assert_eq!(next(&mut gpio).await, (Signal::LockButton, false));

    // Outputs: the motor bridge inputs, driven through embedded-hal.
    use embedded_hal::digital::OutputPin;
    let mut in1 = GpioOutput::request("outputs.motor_in1", &line("MOTOR_IN1")).unwrap();
    assert_eq!(sim_value(10), "0", "requested inactive");
    in1.set_high().unwrap();
    assert_eq!(sim_value(10), "1");
    in1.set_low().unwrap();
    assert_eq!(sim_value(10), "0");

    // A missing line name is a clear error naming the key.
    let err = GpioOutput::request("outputs.buzzer", &line("NO_SUCH_LINE"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("NO_SUCH_LINE") && err.contains("outputs.buzzer"),
        "{err}"
    );
}

#[test]
fn keypad_backend_on_uinput() {
    if !vm::enabled_or_skip("keypad_backend_on_uinput") {
        return;
    }
    let opts = vm::VmOptions {
        timeout: Some(Duration::from_secs(180)),
        ..Default::default()
    };
    vm::run_test_in_guest(&opts, module_path!(), "guest_keypad_backend").unwrap();
}

#[tokio::test]
async fn guest_keypad_backend() {
    if !vm::in_guest_or_skip("guest_keypad_backend") {
        return;
    }
    use latchd::board::linux::keypad::{key_edge, open, KeyEdge, KeyMap};
    use latchd::core::types::Key;
    let root = std::env::var("LATCHD_VM_MODPROBE_ROOT").unwrap_or_default();
    // uinput makes the device; evdev gives it its /dev/input/eventN node.
    for module in ["uinput", "evdev"] {
        let st = std::process::Command::new("modprobe")
            .args(["-d", &root, module])
            .status()
            .unwrap();
        assert!(st.success(), "modprobe {module}");
    }

    // A virtual touch keypad: the kernel makes it an evdev device exactly
    // like a keypad controller's driver would.
    let mut keys = evdev::AttributeSet::<evdev::Key>::new();
    for k in [evdev::Key::KEY_1, evdev::Key::KEY_ENTER] {
        keys.insert(k);
    }
    let mut dev = evdev::uinput::VirtualDeviceBuilder::new()
        .unwrap()
        .name("latchd-test-keypad")
        .with_keys(&keys)
        .unwrap()
        .build()
        .unwrap();
    // Find its evdev node by name, the way a board file's stable link
    // would resolve; udev is not running in the guest, devtmpfs is.
    let mut node: Option<PathBuf> = None;
    for _ in 0..50 {
        node = evdev::enumerate()
            .find(|(_, d)| d.name() == Some("latchd-test-keypad"))
            .map(|(p, _)| p);
        if node.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let node = node.expect("the uinput keypad's /dev/input/event node appears");
    let mut map = std::collections::BTreeMap::new();
    map.insert("KEY_1".to_string(), "1".to_string());
    map.insert("KEY_ENTER".to_string(), "confirm".to_string());
    let map = KeyMap::from_config(&map).unwrap();
    let mut stream = open(Path::new(&node)).unwrap();
    let press = |k: evdev::Key, v: i32| evdev::InputEvent::new(evdev::EventType::KEY, k.code(), v);
    dev.emit(&[press(evdev::Key::KEY_1, 1), press(evdev::Key::KEY_1, 0)])
        .unwrap();
    dev.emit(&[press(evdev::Key::KEY_ENTER, 1)]).unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.next_event())
            .await
            .expect("key events")
            .unwrap();
        if let Some(e) = key_edge(&map, &ev) {
            got.push(e);
        }
    }
    assert_eq!(
        got,
        [
            KeyEdge::Down(Key::Digit(1)),
            KeyEdge::Up(Key::Digit(1)),
            KeyEdge::Down(Key::Confirm)
        ]
    );
}

#[test]
fn voice_on_the_dummy_sound_card() {
    if !vm::enabled_or_skip("voice_on_the_dummy_sound_card") {
        return;
    }
    let opts = vm::VmOptions {
        sound: true,
        ..Default::default()
    };
    vm::run_test_in_guest(&opts, module_path!(), "guest_voice_on_the_dummy_sound_card").unwrap();
}

#[test]
fn guest_voice_on_the_dummy_sound_card() {
    if !vm::in_guest_or_skip("guest_voice_on_the_dummy_sound_card") {
        return;
    }
    use latchd::board::linux::voice::{AlsaVoice, PlaybackEvent};
    use latchd::core::Prompt;
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/prompts");
    let (tx, rx) = std::sync::mpsc::channel();
    // plughw converts the 16 kHz mono assets to what the dummy card takes.
    let voice = AlsaVoice::start("plughw:0,0", assets, 80, Some(tx)).unwrap();
    voice
        .say(&Prompt::Unlocked, latchd::core::Language::En)
        .unwrap();
    let mut started = false;
    loop {
        match rx
            .recv_timeout(Duration::from_secs(20))
            .expect("playback events")
        {
            PlaybackEvent::Started { latency, .. } => {
                eprintln!("snd-dummy prompt latency: {latency:?}");
                started = true;
            }
            PlaybackEvent::Finished { frames } => {
                assert!(started);
                assert!(frames > 1000, "{frames} frames");
                break;
            }
            e => panic!("unexpected {e:?}"),
        }
    }
}
