//! The VM tests, one crate: each module boots QEMU guests with kernel
//! virtual devices through the rig (`rig.rs`, `run-in-vm.sh`) and runs
//! latchd's real Linux backends there. They run only with
//! `LATCHD_VM_TESTS=1` (otherwise every test prints "skipped" and passes),
//! each test booting its own VM (the script runs two at a time):
//!
//! ```text
//! tests/vm/run-vm-tests.sh                 # all of them (installs what is missing)
//! tests/vm/run-vm-tests.sh vm_camera::     # one module
//! LATCHD_VM_TESTS=1 cargo test --all-features --test vm vm_smoke:: -- --test-threads=1
//! ```
//!
//! The host half of a test runs the guest half, a test of this same binary
//! named by its full path, inside the guest (`rig::run_test_in_guest`).
//! The modules keep their former file names (`tests/vm_<name>.rs`), so
//! `vm_ble::` selects what `--test vm vm_ble::` did. Helpers of the integration
//! tests come in by `#[path]` from `tests/it/common/` and the spec
//! harness from `tests/spec/`.

mod rig;

// The Linux-board lock the guest halves start (board file, devices).
#[cfg(feature = "board-linux")]
mod linux_lock;
// A PTY pair for the UART module simulators, and the shared test material.
#[cfg(feature = "board-linux")]
#[path = "../it/common/pty.rs"]
mod pty;
#[cfg(feature = "board-linux")]
#[path = "../it/common/shared.rs"]
mod shared;

// The integration tests' daemon driver, shared by the modules that start
// the real `latchd` (included once: a file may be one module only).
#[path = "../it/common/daemon.rs"]
mod daemon_common;
// Home Assistant's Matter controller, for the Matter node over BLE.
#[cfg(all(feature = "board-linux", feature = "matter"))]
#[path = "../it/common/matter.rs"]
mod matter_common;

mod vm_ble;
#[cfg(feature = "board-linux")]
mod vm_board_e2e;
#[cfg(feature = "board-linux")]
mod vm_board_linux;
#[cfg(feature = "board-linux")]
mod vm_camera;
#[cfg(feature = "board-linux")]
mod vm_ir_camera;
mod vm_matter_ble;
#[cfg(feature = "board-linux")]
mod vm_motor_failsafe;
mod vm_power_cut;
mod vm_power_cut_attempts;
mod vm_rtc;
mod vm_slow_disk;
mod vm_smoke;
mod vm_tpm;
#[cfg(feature = "board-linux")]
mod vm_wifi;
#[cfg(feature = "board-linux")]
mod vm_wifi_nm;
// The hwsim radios, hostapd and wpa_supplicant the Wi-Fi modules share.
#[cfg(feature = "board-linux")]
mod wifi_rig;
