//! `latchd-coast`: drive the motor's H-bridge inputs inactive (coast) and
//! exit. The unit runs it as `ExecStopPost=` so the motor stops whenever
//! latchd ends — including the deaths that run no code of latchd's own
//! (SIGKILL, the OOM killer, the watchdog's SIGABRT) and failed starts.
//! See `latchd::board::coast` and `docs/motor-safety.md`.
//!
//! ```text
//!   latchd-coast [--config FILE] [--board-file FILE]
//! ```
//!
//! `--config` reads `board`/`board_file` from latchd.toml; `--board-file`
//! names the board file directly. Exit 0 when the lines were coasted or
//! the config has no motor (simulated board), 1 when they could not be
//! (the message says why), 2 on a bad command line.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, unused_qualifications)]
use std::path::PathBuf;
use std::process::ExitCode;

use latchd::board::coast::{coast_board_file, coast_from_files, Coasted};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (mut config, mut board_file): (Option<PathBuf>, Option<PathBuf>) = (None, None);
    while let Some(a) = args.next() {
        let slot = match a.to_str() {
            Some("--config") => &mut config,
            Some("--board-file") => &mut board_file,
            Some("-h" | "--help") => {
                println!("usage: latchd-coast [--config FILE] [--board-file FILE]");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("latchd-coast: unknown argument {a:?}; see --help");
                return ExitCode::from(2);
            }
        };
        match args.next() {
            Some(v) => *slot = Some(v.into()),
            None => {
                eprintln!("latchd-coast: {a:?} needs a file");
                return ExitCode::from(2);
            }
        }
    }
    let result = match &board_file {
        Some(b) => coast_board_file(b),
        None => coast_from_files(config.as_deref()),
    };
    match result {
        Ok(Coasted::Lines { in1, in2 }) => {
            println!("latchd-coast: motor coasted ({in1}, {in2} inactive)");
            ExitCode::SUCCESS
        }
        Ok(Coasted::NoMotor) => {
            println!("latchd-coast: no motor (simulated board)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("latchd-coast: the motor could not be coasted: {e}");
            ExitCode::from(1)
        }
    }
}
