//! The integration tests, one crate: each former `tests/<name>.rs` is the
//! module `<name>` here, so the tests link latchd and its dependencies
//! (tract, zbus, tokio, rustls) once instead of once per file.
//!
//! ```text
//! cargo test --all-features --test it                      # all of them
//! cargo test --all-features --test it daemon_crash::       # one module
//! cargo test --all-features --test it remote_mqtt:: -- --nocapture
//! ```
//!
//! The engine's spec tests are their own crate (`tests/spec`), and so are
//! the VM tests (`tests/vm`, run by `tests/vm/run-vm-tests.sh`).
//!
//! Every test here shares one process with the others and runs on a thread
//! of libtest's pool, in parallel. So no test may change process-wide
//! state: no `std::env::set_var` (give a child its environment with
//! `Command::env`), no `set_current_dir`, no signal handlers, no `umask`,
//! no global `tracing` subscriber (see [`common::logs_from_env`]), no fixed
//! ports or paths (temporary directories; [`common::ports::free_port`]), no
//! inheritable file descriptors (`std` opens everything close-on-exec;
//! [`common::pty::pty_pair`] for PTYs). A test that re-runs itself in a
//! child process names itself with [`common::test_name`].

mod common;

#[cfg(feature = "board-linux")]
mod alsa_voice;
mod ble_notices;
mod ble_protocol;
mod board_modules;
mod bus_name;
mod crash_random;
mod daemon_attempts;
mod daemon_config;
mod daemon_crash;
mod daemon_duress;
#[cfg(feature = "face")]
mod daemon_face;
#[cfg(feature = "face")]
mod daemon_face_liveness;
mod daemon_idle;
mod daemon_panel;
mod daemon_persist;
mod daemon_scenario;
mod daemon_systemd;
mod daemon_time;
mod daemon_video;
mod dbus_diagnostics;
mod dbus_policy;
mod dbus_situations;
mod event_flood;
mod face_accuracy;
mod face_enrol;
#[cfg(feature = "face")]
mod face_sim;
#[cfg(all(feature = "face", target_arch = "x86_64"))]
mod face_vector_state;
mod factory_reset;
mod keystore;
#[cfg(feature = "matter")]
mod matter_controller;
#[cfg(feature = "matter")]
mod matter_dac;
#[cfg(feature = "matter")]
mod matter_late_network;
#[cfg(feature = "matter")]
mod matter_time;
mod packaging;
mod passcode_props;
mod remote_mqtt;
mod soak_short;
mod storage_faults;
mod store;
mod store_crash;
mod uart_modules;
mod update_rauc;
mod video_attack;
mod video_stream;
mod watchdog;
mod wifi_backends;
