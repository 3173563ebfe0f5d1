//! Helpers shared by the integration tests. Benches and the VM crate
//! include some of these files by `#[path]`; those keep
//! `#![allow(dead_code)]`, as each includer uses a different part.

pub mod bus;
pub mod crash_batches;
pub mod daemon;
pub mod face_seed;
pub mod pty;
pub mod shared;
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
