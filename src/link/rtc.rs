//! The board's battery-backed real-time clock (issue 17 item 5), read
//! through the kernel's RTC class in sysfs
//! (`/sys/class/rtc/<name>/since_epoch`: each read asks the RTC driver for
//! the time, like the `RTC_RD_TIME` ioctl of `/dev/<name>` does).
//!
//! latchd only reads it, and sysfs needs neither the device node (root's
//! by default) nor `CAP_SYS_TIME`: the unit keeps `ProtectClock=yes`. The
//! RTC need not show the right time to be useful: it keeps counting
//! seconds through reboots and power cuts on its own battery, so an
//! owner's time sync kept as an offset from it survives them
//! (`daemon::clock_sync`). A time the driver calls invalid (the RTC lost
//! power: `EINVAL`) is an error, never a time.
use std::path::{Path, PathBuf};

/// Where the kernel lists its RTCs.
pub const SYSFS_CLASS: &str = "/sys/class/rtc";

#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    #[error("the RTC {name} holds no valid time (it lost power?)")]
    Invalid { name: String },
    #[error("cannot read the RTC {name} ({path}): {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the RTC {name} gave {text:?}, not a count of seconds")]
    Malformed { name: String, text: String },
}

/// Whether `name` names an RTC of the kernel's class (`rtc0`, `rtc1`, …).
pub fn valid_name(name: &str) -> bool {
    name.strip_prefix("rtc")
        .is_some_and(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Seconds since the Unix epoch the RTC `name` counts now (it is kept in
/// UTC, as systemd and `hwclock --utc` keep it).
pub fn read(name: &str) -> Result<i64, RtcError> {
    read_in(Path::new(SYSFS_CLASS), name)
}

/// [`read`] under another sysfs class directory.
pub fn read_in(class: &Path, name: &str) -> Result<i64, RtcError> {
    let path = class.join(name).join("since_epoch");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Err(RtcError::Invalid { name: name.into() })
        }
        Err(source) => {
            return Err(RtcError::Read {
                name: name.into(),
                path,
                source,
            })
        }
    };
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|s| *s >= 0)
        .ok_or_else(|| RtcError::Malformed {
            name: name.into(),
            text: text.trim().chars().take(40).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtc_names_are_the_kernels() {
        for good in ["rtc0", "rtc1", "rtc12"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "rtc",
            "/dev/rtc0",
            "rtc0/../x",
            "rtc-1",
            "hwclock",
            "rtc1234",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    /// The file's format (the real driver behind it is read in the VM
    /// rig, tests/vm/vm_rtc.rs): a decimal count and a newline; anything
    /// else is an error, never a time.
    #[test]
    fn a_reading_is_a_count_of_seconds_or_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rtc0")).unwrap();
        let file = dir.path().join("rtc0/since_epoch");
        std::fs::write(&file, "1796435632\n").unwrap();
        assert_eq!(read_in(dir.path(), "rtc0").unwrap(), 1_796_435_632);
        for bad in ["", "soon\n", "-5\n", "12 34\n"] {
            std::fs::write(&file, bad).unwrap();
            let e = read_in(dir.path(), "rtc0").unwrap_err();
            assert!(matches!(e, RtcError::Malformed { .. }), "{bad:?}: {e}");
        }
        let e = read_in(dir.path(), "rtc1").unwrap_err();
        assert!(matches!(e, RtcError::Read { .. }), "{e}");
        assert!(e.to_string().contains("rtc1"), "{e}");
    }
}
