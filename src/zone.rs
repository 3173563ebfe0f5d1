//! The lock's time zone (`[lock] time_zone`, issue 17 item 2): an IANA
//! name read from the TZif files the image carries (`/usr/share/zoneinfo`,
//! tzdata), turned into the pure [`LocalZone`] the engine converts with.
//!
//! The engine reads no file: the daemon loads the zone once at start and
//! hands it over in `EngineConfig`. DST rules beyond the file's last
//! transition come from its POSIX footer (`tz-rs` applies it). A name that
//! is not a zone is a configuration error, never a silent UTC.
use std::path::{Path, PathBuf};

use crate::core::schedule::LocalZone;

/// Where the image keeps the TZif files.
pub const ZONEINFO: &str = "/usr/share/zoneinfo";

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("`{0}` is not an IANA time zone name (such as \"Europe/Berlin\" or \"UTC\")")]
    BadName(String),
    #[error("time zone `{name}`: cannot read {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("time zone `{name}`: {path} is not a TZif file: {detail}")]
    Parse {
        name: String,
        path: PathBuf,
        detail: String,
    },
}

/// Whether `name` looks like an IANA zone name: ASCII letters, digits,
/// `_+-`, parts separated by `/`, no `.` or `..` (nothing outside the
/// zoneinfo directory).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b))
        })
}

/// Load `name` from the image's zoneinfo. "UTC" needs no file.
pub fn load(name: &str) -> Result<LocalZone, ZoneError> {
    load_from(Path::new(ZONEINFO), name)
}

/// Load `name` from `dir` (tests use the host's zoneinfo or a copy).
pub fn load_from(dir: &Path, name: &str) -> Result<LocalZone, ZoneError> {
    if !valid_name(name) {
        return Err(ZoneError::BadName(name.into()));
    }
    if name == "UTC" {
        return Ok(LocalZone::utc());
    }
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|source| ZoneError::Read {
        name: name.into(),
        path: path.clone(),
        source,
    })?;
    let tz = tz::TimeZone::from_tz_data(&bytes).map_err(|e| ZoneError::Parse {
        name: name.into(),
        path: path.clone(),
        detail: e.to_string(),
    })?;
    Ok(LocalZone::new(name, move |t| {
        // Outside what the file and its rule describe (years beyond
        // i32 and the like): UTC rather than a panic.
        tz.find_local_time_type(t).map_or(0, |l| l.ut_offset())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::WallTime;

    #[test]
    fn names_are_checked_before_any_file_is_read() {
        for bad in [
            "",
            "../etc/passwd",
            "Europe/../../x",
            "/etc/x",
            "Europe//Berlin",
            "a b",
        ] {
            assert!(matches!(load(bad), Err(ZoneError::BadName(_))), "{bad}");
        }
        assert!(matches!(
            load("Mars/Olympus_Mons"),
            Err(ZoneError::Read { .. })
        ));
        assert_eq!(load("UTC").unwrap().local(WallTime(5)).0, 5);
    }

    #[test]
    fn berlin_follows_dst() {
        // scripts/test.sh installs tzdata: a missing zone fails here.
        let z = load("Europe/Berlin").expect("tzdata's Europe/Berlin");
        // 2026-03-29 00:30 UTC is 01:30 CET; 01:30 UTC is 03:30 CEST.
        assert_eq!(z.local(WallTime(1_774_744_200)).minute_of_day(), 90);
        assert_eq!(z.local(WallTime(1_774_747_800)).minute_of_day(), 210);
    }
}
