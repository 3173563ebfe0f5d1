//! `latchctl` — command line for a running latchd over D-Bus. Everything
//! lives in `latchd::cli` so that it can be unit-tested and extended with
//! new command groups there.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, unused_qualifications)]
fn main() -> std::process::ExitCode {
    latchd::cli::main()
}
