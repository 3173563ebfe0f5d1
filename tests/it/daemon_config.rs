//! A bad configuration file stops latchd with an error naming the key,
//! and a non-zero exit, before anything is created.
use std::process::Command;

fn run_with(config: &str) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchd.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latchd"))
        .arg("--headless")
        .arg("--config")
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    (out, dir)
}

#[test]
fn out_of_range_value_names_the_key() {
    let (out, dir) = run_with("[sim]\nmotor_travel_ms = 0\n");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sim.motor_travel_ms"), "{err}");
    assert!(!dir.path().join("state").exists(), "nothing may be created");
}

/// Issue 17 item 5: the RTC is named as the kernel names it; a device
/// path (or anything that could climb out of /sys/class/rtc) is refused.
#[test]
fn an_rtc_that_is_not_a_kernel_rtc_name_is_refused() {
    for bad in ["/dev/rtc0", "rtc0/../../x", "clock"] {
        let (out, dir) = run_with(&format!("[lock]\nrtc = \"{bad}\"\n"));
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("lock.rtc") && err.contains("rtc0"),
            "{bad}: {err}"
        );
        assert!(!dir.path().join("state").exists(), "nothing may be created");
    }
}

#[test]
fn unknown_key_is_named() {
    let (out, _dir) = run_with("[lock]\nserail = \"X\"\n");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("serail"), "{err}");
}

#[test]
fn wrong_type_is_named() {
    let (out, _dir) = run_with("[lock]\nlow_battery_percent = \"low\"\n");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("low_battery_percent"), "{err}");
}

#[test]
fn help_lists_every_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_latchd"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--state-dir",
        "--headless",
        "--control-socket",
        "--dbus",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
