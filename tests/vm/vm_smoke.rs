//! Smoke test of the QEMU rig itself (tests/vm): the guest runs a command
//! with the host root visible, reports status/stdout/stderr/files back, is
//! killed at its time limit, and every virtual device shows up where the
//! real-hardware tests will look for it.
//!
//! Run: `LATCHD_VM_TESTS=1 cargo test --test vm vm_smoke:: -- --test-threads=1`
//! (without the variable the VM tests print "skipped" and pass).

use crate::rig as vm;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vm::{VmError, VmOptions};

/// The gpio-sim lines the device test asks for, in offset order.
const GPIO_LINES: [&str; 3] = ["lock", "door", "button"];

// ---------------------------------------------------------------- helper API

#[test]
fn options_become_script_flags() {
    let opts = VmOptions {
        video: true,
        ble: true,
        gpio_lines: vec!["lock".into(), "door".into()],
        env: vec![("RUST_LOG".into(), "debug x".into())],
        timeout: Some(Duration::from_secs(90)),
        ..Default::default()
    };
    let args: Vec<String> = vm::option_args(&opts)
        .expect("valid options")
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        args,
        [
            "--video",
            "--ble",
            "--gpio",
            "lock,door",
            "--env",
            "RUST_LOG=debug x",
            "--timeout",
            "90"
        ]
    );
}

#[test]
fn bad_gpio_names_and_env_names_are_refused() {
    let long = "n".repeat(32);
    for bad in ["", "a,b", "x y", "../up", long.as_str()] {
        let opts = VmOptions {
            gpio_lines: vec![bad.to_owned()],
            ..Default::default()
        };
        assert!(
            matches!(vm::option_args(&opts), Err(VmError::BadOption(_))),
            "gpio line {bad:?} accepted"
        );
    }
    for bad in ["", "1X", "A-B", "A=B"] {
        let opts = VmOptions {
            env: vec![(bad.to_owned(), "v".into())],
            ..Default::default()
        };
        assert!(
            matches!(vm::option_args(&opts), Err(VmError::BadOption(_))),
            "env name {bad:?} accepted"
        );
    }
}

#[test]
fn shell_quote_survives_quotes() {
    assert_eq!(vm::shell_quote("it's"), r"'it'\''s'");
}

// ------------------------------------------------------------ rig plumbing

#[test]
fn guest_reports_status_output_and_files() {
    if !vm::enabled_or_skip("guest_reports_status_output_and_files") {
        return;
    }
    // The repo is on the host root, so its files are readable unchanged in
    // the guest; /tmp is the guest's own empty tmpfs.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let cmd = format!(
        "set -e; grep -m1 '^name' {m}; echo to-stderr >&2; ls -A /tmp | wc -l; \
         test \"$LATCHD_VM_GUEST\" = 1; echo $MARK; \
         mkdir -p \"$LATCHD_VM_OUT_DIR/sub\"; printf 'a\\0b' > \"$LATCHD_VM_OUT_DIR/sub/f.bin\"; \
         exit 7",
        m = vm::shell_quote(&manifest.to_string_lossy())
    );
    let opts = VmOptions {
        env: vec![("MARK".into(), "it's here".into())],
        ..Default::default()
    };
    let out = vm::run(&opts, &cmd).expect("rig runs the command");
    assert_eq!(out.status, 7, "{out:?}");
    assert_eq!(out.stdout, "name = \"latchd\"\n0\nit's here\n");
    assert_eq!(out.stderr, "to-stderr\n");
    assert_eq!(
        out.files.get("sub/f.bin").map(Vec::as_slice),
        Some(&b"a\0b"[..])
    );
    println!(
        "rig: wall {:.1} s, guest uptime at command start {:?}",
        out.wall.as_secs_f64(),
        out.guest_setup
    );
}

#[test]
fn hung_guest_is_killed_at_the_timeout() {
    if !vm::enabled_or_skip("hung_guest_is_killed_at_the_timeout") {
        return;
    }
    // The bound is the rig's, not the guest's: whether the guest is still
    // booting or already asleep when it expires, it is killed, so a short
    // one proves as much as a long one and costs the suite less.
    let opts = VmOptions {
        timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let started = Instant::now();
    let err = vm::run(&opts, "sleep 100000").expect_err("a sleeping guest cannot finish");
    assert!(matches!(err, VmError::Timeout { secs: 10, .. }), "{err}");
    // timeout(1) sends KILL 5 s after TERM; leave slack for a loaded host.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

// ------------------------------------------------------------------ devices

#[test]
fn all_devices_appear_in_guest() {
    if !vm::enabled_or_skip("all_devices_appear_in_guest") {
        return;
    }
    let opts = VmOptions {
        video: true,
        sound: true,
        ble: true,
        gpio_lines: GPIO_LINES.iter().map(ToString::to_string).collect(),
        ..Default::default()
    };
    let out = vm::run_test_in_guest(&opts, module_path!(), "guest_devices_present")
        .expect("guest half passes");
    println!("{}", out.stdout);
    println!(
        "rig: wall {:.1} s, guest uptime at command start {:?}",
        out.wall.as_secs_f64(),
        out.guest_setup
    );
}

/// Guest half of [`all_devices_appear_in_guest`].
#[test]
fn guest_devices_present() {
    if !vm::in_guest_or_skip("guest_devices_present") {
        return;
    }
    check_video();
    check_sound();
    check_ble();
    check_gpio();
}

/// Runs a host tool in the guest; panics with its output unless it exits 0.
fn tool(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{argv:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("$ {}\n{stdout}", argv.join(" "));
    stdout
}

fn is_char_device(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

fn check_video() {
    assert!(is_char_device("/dev/video0"), "vivid gave no /dev/video0");
    let list = tool(&["v4l2-ctl", "--list-devices"]);
    assert!(list.contains("vivid"), "vivid not listed:\n{list}");
    let caps = tool(&["v4l2-ctl", "-d", "/dev/video0", "--info"]);
    assert!(
        caps.contains("Video Capture"),
        "video0 cannot capture:\n{caps}"
    );
}

fn check_sound() {
    assert!(
        is_char_device("/dev/snd/pcmC0D0p"),
        "snd-dummy gave no playback PCM"
    );
    let cards = tool(&["aplay", "-l"]);
    assert!(cards.contains("card 0: Dummy"), "aplay -l:\n{cards}");
}

fn check_ble() {
    for hci in ["hci0", "hci1"] {
        assert!(
            Path::new("/sys/class/bluetooth").join(hci).exists(),
            "btvirt gave no {hci}"
        );
    }
    let list = tool(&["bluetoothctl", "list"]);
    let controllers: Vec<&str> = list
        .lines()
        .filter(|l| l.starts_with("Controller "))
        .collect();
    assert_eq!(controllers.len(), 2, "bluetoothd sees:\n{list}");
    let mut addrs = Vec::new();
    for c in controllers {
        let addr = c.split_whitespace().nth(1).unwrap_or_default();
        addrs.push((addr.to_owned(), c.contains("[default]")));
        let show = tool(&["bluetoothctl", "show", addr]);
        // Both roles mean the controller does LE (btvirt -l2 is BR/EDR + LE).
        assert!(
            show.contains("Roles: central") && show.contains("Roles: peripheral"),
            "{addr} is not an LE controller:\n{show}"
        );
    }
    // The default controller (hci0) advertises, the other one scans: both
    // sit on btvirt's one virtual air, so a lock and a phone can meet.
    let peripheral = addrs.iter().find(|(_, d)| *d).map(|(a, _)| a.clone());
    let central = addrs.iter().find(|(_, d)| !*d).map(|(a, _)| a.clone());
    let (Some(peripheral), Some(central)) = (peripheral, central) else {
        panic!("no [default] controller in:\n{list}");
    };
    tool(&["bluetoothctl", "discoverable", "on"]);
    le_scan_finds(&central, &peripheral);
}

/// Scans over LE from `central` (an interactive bluetoothctl: a discovery
/// session lives as long as its D-Bus client) until `peripheral` is seen.
fn le_scan_finds(central: &str, peripheral: &str) {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    let mut ctl = Command::new("bluetoothctl")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn bluetoothctl");
    let mut stdin = ctl.stdin.take().expect("piped stdin");
    let stdout = ctl.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    writeln!(stdin, "select {central}\nscan le").expect("talk to bluetoothctl");
    let wanted = format!("Device {peripheral}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let mut found = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                found = line.contains(&wanted);
                seen.push(line);
                if found {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = writeln!(stdin, "scan off\nquit");
    drop(stdin);
    let _ = ctl.kill();
    let _ = ctl.wait();
    assert!(
        found,
        "{central} never saw {peripheral} advertising; bluetoothctl said:\n{}",
        seen.join("\n")
    );
    println!("LE scan from {central} found {peripheral}");
}

fn check_gpio() {
    let chip_dev = std::env::var("LATCHD_VM_GPIO_CHIP").expect("rig exports LATCHD_VM_GPIO_CHIP");
    let sim = std::env::var("LATCHD_VM_GPIO_SIM").expect("rig exports LATCHD_VM_GPIO_SIM");
    assert!(
        is_char_device(&chip_dev),
        "{chip_dev} is not a GPIO chardev"
    );
    let chip = chip_dev.trim_start_matches("/dev/");
    let info = tool(&["gpioinfo", chip]);
    for (offset, name) in GPIO_LINES.iter().enumerate() {
        let line = format!("line {offset:>3}:");
        assert!(
            info.lines()
                .any(|l| l.contains(&line) && l.contains(&format!("\"{name}\""))),
            "line {offset} is not named {name}:\n{info}"
        );
    }
    // Drive an input from the simulator side and read it as a consumer.
    for (pull, want) in [("pull-up", "1"), ("pull-down", "0")] {
        std::fs::write(format!("{sim}/sim_gpio2/pull"), pull).expect("write sim pull");
        let got = tool(&["gpioget", chip, "2"]);
        assert_eq!(got.trim(), want, "{pull} on the button line");
    }
    // Drive an output as a consumer and read it from the simulator side.
    let mut holder = Command::new("gpioset")
        .args(["--mode=signal", chip, "0=1"])
        .spawn()
        .expect("spawn gpioset");
    let value_path = format!("{sim}/sim_gpio0/value");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut value = String::new();
    while Instant::now() < deadline {
        value = std::fs::read_to_string(&value_path).expect("read sim value");
        if value.trim() == "1" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(value.trim(), "1", "gpioset lock=1 not seen by gpio-sim");
}
