//! Coast the motor from nothing but the two H-bridge lines: the first thing
//! `latchd` does when it starts, and all that `latchd-coast` does when the
//! unit's `ExecStopPost=` runs it after the daemon died (SIGKILL, the OOM
//! killer, the watchdog's SIGABRT, a failed start).
//!
//! ```text
//!   latchd.toml ── `board`, `board_file` ──► board file ── `gpio_provider`,
//!   (read leniently: only these keys)          `outputs.motor_in1`, `motor_in2`
//!                                                 │
//!                   request both lines as outputs, inactive (= coast), release
//! ```
//!
//! Why this exists: a process that dies without unwinding (SIGKILL,
//! SIGABRT) runs none of the driver's coast guards; the kernel releases
//! its GPIO line requests, and on most SoCs a released line keeps the
//! level it was last driven to, so an H-bridge that was turning keeps
//! turning until something drives its inputs low again. The next start
//! used to do that only after the store, the config, the TLS files and the
//! board file had all loaded, so a corrupt database or a bad config left
//! the motor energised until a reboot.
//!
//! So this reads as little as it can, as leniently as it can: only the
//! keys above, from files that may be wrong elsewhere (an unknown key, a
//! bad value the daemon will refuse later). It needs no store, no device
//! key, no runtime. What it cannot fix — a board file that is not TOML,
//! a missing GPIO chip — it reports; the hardware safety a board should
//! add for those cases is in `docs/motor-safety.md`.
//!
//! Releasing the lines after driving them inactive is deliberate: the
//! daemon requests them again when it builds the board, and a released
//! line keeps the inactive level on the same SoCs that made this needed.
use std::path::{Path, PathBuf};

/// What [`coast_from_files`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coasted {
    /// The config selects the simulated board: there is no motor.
    NoMotor,
    /// Both bridge inputs were driven inactive and released.
    Lines { in1: String, in2: String },
}

/// Why the motor could not be coasted.
#[derive(Debug, thiserror::Error)]
pub enum CoastError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not TOML ({message}); the motor lines cannot be found")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: `{key}` {problem}")]
    Key {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
    #[error("board = \"linux\" but latchd was built without the `board-linux` feature: no GPIO to coast")]
    NotBuilt,
    #[cfg(feature = "board-linux")]
    #[error(transparent)]
    Gpio(#[from] crate::board::linux::gpio::GpioError),
}

/// Coast the motor named by the config file at `config` (`None`: the
/// built-in defaults, i.e. the simulated board).
pub fn coast_from_files(config: Option<&Path>) -> Result<Coasted, CoastError> {
    let Some(config) = config else {
        return Ok(Coasted::NoMotor);
    };
    let table = read_table(config)?;
    let board = match table.get("board") {
        None => "sim",
        Some(toml::Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(CoastError::Key {
                path: config.to_owned(),
                key: "board",
                problem: "is not a string".into(),
            })
        }
    };
    if board != "linux" {
        return Ok(Coasted::NoMotor);
    }
    let board_file = match table.get("board_file") {
        Some(toml::Value::String(s)) => PathBuf::from(s),
        _ => {
            return Err(CoastError::Key {
                path: config.to_owned(),
                key: "board_file",
                problem: "is missing or not a path (board = \"linux\" needs it)".into(),
            })
        }
    };
    coast_board_file(&board_file)
}

/// Coast the motor the board file at `path` names.
pub fn coast_board_file(path: &Path) -> Result<Coasted, CoastError> {
    let table = read_table(path)?;
    lines::coast(path, &table)
}

fn read_table(path: &Path) -> Result<toml::Table, CoastError> {
    let text = std::fs::read_to_string(path).map_err(|source| CoastError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|e| CoastError::Syntax {
        path: path.to_owned(),
        message: e.message().to_string(),
    })
}

#[cfg(feature = "board-linux")]
mod lines {
    use std::path::Path;

    use serde::Deserialize;

    use super::{CoastError, Coasted};
    use crate::board::linux::config::{GpioProvider, Line};
    use crate::board::linux::gpio::GpioOutput;

    /// `[outputs] motor_in1`/`motor_in2` and `gpio_provider`, each parsed
    /// on its own so that the rest of the file does not matter.
    pub(super) fn coast(path: &Path, table: &toml::Table) -> Result<Coasted, CoastError> {
        let provider = match table.get("gpio_provider") {
            None => GpioProvider::Cdev,
            Some(v) => GpioProvider::deserialize(v.clone()).map_err(|e| CoastError::Key {
                path: path.to_owned(),
                key: "gpio_provider",
                problem: e.message().to_string(),
            })?,
        };
        let line = |key: &'static str, name: &str| -> Result<Line, CoastError> {
            let v = table
                .get("outputs")
                .and_then(|o| o.get(name))
                .ok_or_else(|| CoastError::Key {
                    path: path.to_owned(),
                    key,
                    problem: "is missing".into(),
                })?;
            Line::deserialize(v.clone()).map_err(|e| CoastError::Key {
                path: path.to_owned(),
                key,
                problem: e.message().to_string(),
            })
        };
        let in1 = line("outputs.motor_in1", "motor_in1")?;
        let in2 = line("outputs.motor_in2", "motor_in2")?;
        // Both are requested before either is released, and the request
        // itself drives the line inactive: each line coasts even if the
        // other one fails.
        let a = GpioOutput::request_with(provider, "outputs.motor_in1", &in1);
        let b = GpioOutput::request_with(provider, "outputs.motor_in2", &in2);
        let (_a, _b) = (a?, b?);
        Ok(Coasted::Lines {
            in1: in1.name,
            in2: in2.name,
        })
    }
}

#[cfg(not(feature = "board-linux"))]
mod lines {
    use std::path::Path;

    use super::{CoastError, Coasted};

    pub(super) fn coast(_path: &Path, _table: &toml::Table) -> Result<Coasted, CoastError> {
        Err(CoastError::NotBuilt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_sim_board_has_no_motor() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(coast_from_files(None).unwrap(), Coasted::NoMotor);
        let c = write(dir.path(), "a.toml", "[lock]\nserial = \"X\"\n");
        assert_eq!(coast_from_files(Some(&c)).unwrap(), Coasted::NoMotor);
        // Keys the daemon would refuse do not matter here.
        let c = write(dir.path(), "b.toml", "board = \"sim\"\nno_such_key = 1\n");
        assert_eq!(coast_from_files(Some(&c)).unwrap(), Coasted::NoMotor);
    }

    #[test]
    fn what_cannot_be_read_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = coast_from_files(Some(&dir.path().join("none.toml"))).unwrap_err();
        assert!(matches!(e, CoastError::Read { .. }), "{e}");
        let c = write(dir.path(), "c.toml", "board = \"linux\"\n");
        let e = coast_from_files(Some(&c)).unwrap_err().to_string();
        assert!(e.contains("board_file"), "{e}");
        let c = write(dir.path(), "d.toml", "board = [\n");
        let e = coast_from_files(Some(&c)).unwrap_err();
        assert!(matches!(e, CoastError::Syntax { .. }), "{e}");
    }

    #[cfg(feature = "board-linux")]
    #[test]
    fn a_lenient_read_still_needs_the_two_lines() {
        let dir = tempfile::tempdir().unwrap();
        let b = write(
            dir.path(),
            "board.toml",
            "model = 3\n[outputs]\nmotor_in1 = { name = \"NO_SUCH_LINE_IN1\" }\n",
        );
        let c = write(
            dir.path(),
            "l.toml",
            &format!("board = \"linux\"\nboard_file = \"{}\"\n", b.display()),
        );
        let e = coast_from_files(Some(&c)).unwrap_err().to_string();
        assert!(
            e.contains("outputs.motor_in2") && e.contains("missing"),
            "{e}"
        );
        // Both lines named (the rest of the file still wrong): the GPIO
        // request is what fails on this machine, naming the line.
        std::fs::write(
            &b,
            "model = 3\n[outputs]\nmotor_in1 = { name = \"NO_SUCH_LINE_IN1\" }\n\
             motor_in2 = { name = \"NO_SUCH_LINE_IN2\" }\n",
        )
        .unwrap();
        let e = coast_from_files(Some(&c)).unwrap_err().to_string();
        assert!(e.contains("NO_SUCH_LINE_IN1"), "{e}");
    }
}
