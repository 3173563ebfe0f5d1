//! (module being written)
pub mod notify;
