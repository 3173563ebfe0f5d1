//! Biometric modules: the fingerprint and palm-vein UART module drivers
//! (with simulators that speak the same wire protocol) and the face
//! pipeline (camera frames → detector → embedder → matcher).
pub mod fingerprint;
pub mod palm;
#[cfg(feature = "face")]
pub mod face;
