//! Biometric modules: the fingerprint and palm-vein UART module drivers
//! (with simulators that speak the same wire protocol) and the face
//! pipeline (camera frames → detector → embedder → matcher).
#[cfg(feature = "face")]
pub mod face;
pub mod fingerprint;
pub mod palm;
