//! Helpers shared by the integration tests. Benches and the VM crate
//! include some of these files by `#[path]`; those keep
//! `#![allow(dead_code)]`, as each includer uses a different part.

pub mod bus;
pub mod crash_batches;
pub mod daemon;
pub mod face_seed;
#[cfg(feature = "matter")]
pub mod matter;
pub mod mosquitto;
pub mod ports;
pub mod pty;
pub mod shared;
pub mod soak;
pub mod swtpm;
pub mod wpa_double;

/// The name libtest knows a test by, for re-running it alone in a child
/// process (`<exe> --exact <name>`): its module path without the crate's
/// name, e.g. `store_crash::kill_9_…` for `module_path!()` =
/// `it::store_crash`.
pub fn test_name(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_crate, path)) => format!("{path}::{test}"),
        None => test.to_owned(),
    }
}

/// Log through `tracing` to the test's output, filtered by `RUST_LOG` —
/// only when `RUST_LOG` is set. The subscriber is process-wide and every
/// test shares the process, so a normal run installs none (no test changes
/// what another prints); when debugging with `RUST_LOG`, the first test
/// that calls this installs it for all.
pub fn logs_from_env() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
