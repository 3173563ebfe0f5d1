//! Software updates through RAUC (issue 20).
//!
//! The engine (`core::update`) decides who may start an update, whether
//! the bundle's version is acceptable and when it is safe to install and
//! restart; this module does what it asks, over RAUC's D-Bus API
//! (`de.pengutronix.rauc.Installer`), and reports back as
//! [`crate::core::Input::Update`]. latchd never opens a bundle itself:
//! RAUC checks the signature against the image's keyring, the
//! compatible string and the slots.
//!
//! ```text
//!   engine ── Action::Update(Inspect | Install | Restart | Abandon) ──► flow.rs
//!     ▲                                                                   │ rauc.rs (zbus proxy)
//!     └──────── Input::Update(Inspected | Progress | Installed | Failed) ◄┘
//!   start-up: boot.rs — booted from a slot RAUC has not marked good? run the
//!   self-test (bounded), then Mark("good", "booted"); otherwise leave it to
//!   the boot counter
//! ```
mod boot;
mod config;
mod flow;
pub mod rauc;
pub mod stream;

pub use config::UpdateConfig;
pub use flow::spawn;
