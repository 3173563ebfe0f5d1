//! The V4L2 IR camera of face liveness (`board::linux::ir_camera`) against
//! a real kernel capture driver and a real GPIO line: vivid in the VM rig
//! stands in for the IR sensor (it offers GREY, the IR path), a gpio-sim
//! line named `IR_LED` for the board file's `outputs.ir_illuminator`.
//!
//! What it shows: the format agreed (GREY over YUYV), a grab streams only
//! for its frame and returns the driver's frame as luma at the agreed
//! size, the illuminator is lit during the grab and off after it — also
//! when the grab fails because the node is busy (the RGB camera streaming
//! on it) — a second grab works after the first (stream off/on), and a
//! grab after another user changed the node's format sets its own again.
//!
//! Not shown here: the daemon on the Linux board with an RGB *and* an IR
//! camera; the rig loads one vivid instance, whose single capture node
//! cannot stream to two owners.
//!
//! Run: `tests/vm/run-vm-tests.sh vm_ir_camera::` (or
//! `LATCHD_VM_TESTS=1 cargo test --all-features --test vm vm_ir_camera:: --
//! --test-threads=1`).

use crate::rig as vm;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use latchd::board::frames::FrameRing;
use latchd::board::linux::camera::V4l2Camera;
use latchd::board::linux::config::{Camera, Line};
use latchd::board::linux::gpio::GpioOutput;
use latchd::board::linux::illuminator::Illuminator;
use latchd::board::linux::ir_camera::{IrCameraError, IrFormat, V4l2IrCamera, WARMUP_FRAMES};

const LED: &str = "IR_LED";

#[test]
fn v4l2_ir_camera_on_vivid() {
    if !vm::enabled_or_skip("v4l2_ir_camera_on_vivid") {
        return;
    }
    let opts = vm::VmOptions {
        video: true,
        gpio_lines: vec![LED.into()],
        ..Default::default()
    };
    let out =
        vm::run_test_in_guest(&opts, module_path!(), "guest_v4l2_ir_camera_on_vivid").expect("vm");
    out.assert_success();
    // The guest's figures (format, grab times) for `--nocapture`.
    print!("{}", out.stdout);
}

fn led_value() -> String {
    let dir = PathBuf::from(std::env::var("LATCHD_VM_GPIO_SIM").expect("gpio-sim chip"));
    std::fs::read_to_string(dir.join("sim_gpio0/value"))
        .unwrap()
        .trim()
        .to_string()
}

/// Run `f` while a thread samples the LED line every millisecond; returns
/// `f`'s result, whether the LED was seen lit, and how long `f` took.
fn watching_led<T>(f: impl FnOnce() -> T) -> (T, bool, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut lit = false;
            while !stop.load(Ordering::SeqCst) {
                lit |= led_value() == "1";
                std::thread::sleep(Duration::from_millis(1));
            }
            lit
        }
    });
    let t0 = Instant::now();
    let out = f();
    let took = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    (out, watcher.join().expect("watcher"), took)
}

#[test]
fn guest_v4l2_ir_camera_on_vivid() {
    if !vm::in_guest_or_skip("guest_v4l2_ir_camera_on_vivid") {
        return;
    }
    let led_line = Line {
        name: LED.into(),
        chip: None,
        active_low: false,
        debounce_ms: 0,
    };
    let led = GpioOutput::request("outputs.ir_illuminator", &led_line).expect("IR_LED line");
    let node = Path::new("/dev/video0");
    let lamp = Illuminator::new(led).expect("IR_LED off");
    let ir = V4l2IrCamera::open(node, Some(lamp)).expect("open vivid as the IR camera");
    let (w, h, format) = ir.format();
    println!("IR camera: {w}x{h} {format:?}");
    assert_eq!(format, IrFormat::Grey, "vivid offers GREY");
    assert_eq!(led_value(), "0", "off until a grab");

    for n in 1..=2 {
        let (frame, lit, took) = watching_led(|| ir.grab());
        let frame = frame.unwrap_or_else(|e| panic!("grab {n}: {e}"));
        println!(
            "grab {n}: {:?} in {took:?} ({} warm-up frames)",
            frame.dimensions(),
            WARMUP_FRAMES
        );
        assert_eq!(frame.dimensions(), (w, h));
        // vivid's test pattern (colour bars) in grey: not one flat value.
        let (lo, hi) = frame
            .pixels()
            .fold((255u8, 0u8), |(lo, hi), p| (lo.min(p.0[0]), hi.max(p.0[0])));
        assert!(hi > lo + 50, "grab {n}: a flat frame ({lo}..{hi})");
        assert!(lit, "grab {n}: the illuminator was never lit");
        assert_eq!(led_value(), "0", "grab {n}: the illuminator stays on");
    }

    // The RGB camera streaming on the same node: the grab fails (busy),
    // and the illuminator is off again after the failure.
    let rgb = Camera {
        path: Some(node.to_owned()),
        card: None,
        width: 640,
        height: 480,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ring = FrameRing::new();
    let streaming = rt.block_on(async {
        let mut frames = ring.subscribe();
        let cam = V4l2Camera::start(&rgb, ring.clone()).expect("RGB camera on vivid");
        tokio::time::timeout(Duration::from_secs(10), frames.next())
            .await
            .expect("an RGB frame within 10 s");
        cam
    });
    let (busy, _, _) = watching_led(|| ir.grab());
    let err = busy.expect_err("the node is streaming for the RGB camera");
    println!("grab while busy: {err}");
    assert!(matches!(err, IrCameraError::Ioctl { .. }), "{err}");
    assert_eq!(led_value(), "0", "the illuminator stays on after a failure");
    drop(streaming);
    // The RGB camera left the node in YUYV; the grab sets GREY again.
    let frame = ir.grab().expect("grab after the RGB camera stopped");
    assert_eq!(frame.dimensions(), (w, h));

    // A node that is not there: the error names the config key.
    let err = V4l2IrCamera::open(Path::new("/dev/video99"), None).expect_err("no such node");
    assert!(err.to_string().contains("[face] ir_camera"), "{err}");
}
