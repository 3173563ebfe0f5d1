//! Run commands inside a QEMU guest that has real kernel drivers for the
//! hardware latchd talks to: a V4L2 camera (`vivid`), an ALSA card
//! (`snd-dummy`), two BLE controllers on one virtual radio (`hci_vhci` via
//! `btvirt -l2`, with D-Bus and bluetoothd running) and a GPIO chip with
//! named lines (`gpio-sim`, built out of tree). The host has none of these.
//!
//! ```text
//!  cargo test (host)                         QEMU guest (TCG, Debian 6.1 kernel)
//!  ------------------                        ----------------------------------
//!  vm::run(&opts, "cmd") ──> tests/vm/run-in-vm.sh ──> busybox /init: modules, 9p
//!                                                      chroot into the host's / (ro)
//!                                                      guest-setup.sh: daemons, gpio
//!                                                      cmd > run dir (9p, writable)
//!  VmOutput { status, stdout, stderr, files } <─────── run dir read back, VM gone
//! ```
//!
//! The guest sees the host's root read-only at `/`, so absolute host paths
//! (test binaries, `env!("CARGO_BIN_EXE_latchd")`, fixtures in the repo)
//! work unchanged. `/tmp`, `/run`, `/var/tmp` and `/var/lib/bluetooth` are
//! empty guest tmpfs: nothing a guest command needs may live there on the
//! host. Files the command writes to `$LATCHD_VM_OUT_DIR` come back in
//! [`VmOutput::files`].
//!
//! VM tests run only when `LATCHD_VM_TESTS=1`; otherwise they print a
//! visible "skipped" line (past libtest's capture) and pass, so the default
//! `cargo test` needs no QEMU. `LATCHD_VM_REQUIRED=1` (set by
//! `tests/vm/run-vm-tests.sh`, hence by CI's `scripts/test-vm.sh`) turns
//! such a skip into a failure: the slow suite cannot go green by running
//! nothing. A guest half prints [`GUEST_RAN`] when it really ran, and
//! [`run_test_in_guest`] requires that line, so a guest half that skipped
//! inside the guest (its "1 passed" alone) fails the host half too.
//! The usual shape runs one test of the same binary inside the guest:
//!
//! ```ignore
//! use crate::rig as vm;
//!
//! #[test]
//! fn camera_streams_in_vm() {
//!     if !vm::enabled_or_skip("camera_streams_in_vm") {
//!         return;
//!     }
//!     let opts = vm::VmOptions { video: true, ..Default::default() };
//!     vm::run_test_in_guest(&opts, module_path!(), "guest_camera_streams").unwrap();
//! }
//!
//! #[test]
//! fn guest_camera_streams() {
//!     if !vm::in_guest_or_skip("guest_camera_streams") {
//!         return;
//!     }
//!     // real V4L2 code against /dev/video0 here
//! }
//! ```
//!
//! Each VM test module uses a different subset of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Set to `1` to run the VM tests.
pub const ENABLE_VAR: &str = "LATCHD_VM_TESTS";
/// Set (to `1`) by the rig inside the guest.
pub const GUEST_VAR: &str = "LATCHD_VM_GUEST";
/// Set to `1` when the VM tests were asked to run: a host-side VM test
/// that would skip fails instead (issue 23 item 2).
pub const REQUIRE_VAR: &str = "LATCHD_VM_REQUIRED";
/// Printed by [`in_guest_or_skip`] (followed by the test's name) when a
/// guest half runs; [`run_test_in_guest`] requires it.
pub const GUEST_RAN: &str = "vm-guest-half-ran: ";
/// Set to `1` to keep every run dir (console log, daemon logs) for debugging.
pub const KEEP_VAR: &str = "LATCHD_VM_KEEP";

/// Exit status of `run-in-vm.sh` when the rig (not the command) failed.
const RIG_FAILED: i32 = 125;
/// Exit status of `run-in-vm.sh` when the VM hit its hard time limit.
const TIMED_OUT: i32 = 124;
/// Names accepted for gpio-sim lines (they become configfs file contents).
const MAX_GPIO_LINES: usize = 64;

/// What the guest gets besides the host root.
#[derive(Debug, Clone, Default)]
pub struct VmOptions {
    /// `vivid`: `/dev/video0` (capture) .. `/dev/video3`, test patterns.
    pub video: bool,
    /// `snd-dummy`: ALSA card 0, `hw:0,0` / `/dev/snd/pcmC0D0p`.
    pub sound: bool,
    /// `btvirt -l2` (hci0 + hci1, BR/EDR + LE, same virtual air), a system
    /// D-Bus and `bluetoothd`, both controllers registered before the command.
    pub ble: bool,
    /// With `ble`: this many controllers (`btvirt -lN`, 2..=4: hci0 …);
    /// `None` is two.
    pub ble_controllers: Option<u8>,
    /// Named lines of a `gpio-sim` chip labelled `latchd-sim` (empty: no
    /// chip). In the guest `LATCHD_VM_GPIO_CHIP` is its `/dev/gpiochipN` and
    /// `LATCHD_VM_GPIO_SIM` the sysfs dir with `sim_gpioN/{pull,value}`.
    pub gpio_lines: Vec<String>,
    /// `latchd-adc-sim`: a virtual SPI controller with an MCP3008-class ADC
    /// bound to spidev. In the guest `LATCHD_VM_SPIDEV` is its
    /// `/dev/spidevB.0` and `LATCHD_VM_ADC_COUNTS` the writable sysfs file
    /// of the eight channels' readings (`"c0,c1,...,c7"`, 0-1023).
    pub adc: bool,
    /// Extra environment for the command.
    pub env: Vec<(String, String)>,
    /// Extra `bluetoothd` arguments, e.g. `-E` for experimental interfaces.
    pub bluetoothd_args: Option<String>,
    /// Hard limit on the whole VM run; default 300 s.
    pub timeout: Option<Duration>,
    /// Guest memory in MiB; default 1024.
    pub mem_mib: Option<u32>,
    /// QEMU CPU model; default `max` (or `$LATCHD_VM_CPU`). TCG emulates
    /// AVX2/FMA slowly: tract's face models run ~10x faster on a model
    /// without them (`Nehalem`, SSE4.2), where tract picks SSE kernels.
    pub cpu: Option<&'static str>,
    /// A raw image file on the host as the guest's `/dev/vda` (virtio-blk;
    /// load `virtio_blk` in the guest). Not under `/tmp` (the guest hides it).
    pub disk: Option<PathBuf>,
    /// A TPM 2.0: QEMU's tpm-tis backed by a fresh `swtpm` (`/dev/tpmrm0`).
    pub tpm: bool,
    /// systemd as PID 1, the command a oneshot unit under it (`systemctl`
    /// works; units go in `/run/systemd/system`).
    pub systemd: bool,
}

/// What a finished guest command left behind.
#[derive(Debug, Clone)]
pub struct VmOutput {
    /// Exit status of the command inside the guest (128 + N for signal N).
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    /// Files the command wrote under `$LATCHD_VM_OUT_DIR`, by relative path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Wall-clock time of the whole run, boot included.
    pub wall: Duration,
    /// Guest uptime when the command started (boot + device setup).
    pub guest_setup: Option<Duration>,
}

impl VmOutput {
    /// Panics with everything the guest printed unless the command exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert_eq!(
            self.status, 0,
            "guest command failed with status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        );
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot start {script}: {source} (is bash installed?)")]
    Spawn {
        script: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid VM option: {0}")]
    BadOption(String),
    #[error(
        "the VM rig failed before the command ran:\n{stderr}\n(run files kept in {run_dir}; \
         see tests/vm/README.md)"
    )]
    Rig { run_dir: PathBuf, stderr: String },
    #[error("the VM did not finish within {secs} s and was killed:\n{stderr}")]
    Timeout { secs: u64, stderr: String },
    #[error("cannot read the guest's {what} in {run_dir}: {source}")]
    ReadBack {
        what: &'static str,
        run_dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "test `{name}` did not run in the guest (no \"1 passed\" in its output; \
         is it spelled right and not #[ignore]d?):\n{stdout}"
    )]
    TestNotRun { name: String, stdout: String },
    #[error(
        "test `{name}` passed in the guest without running its body (no \"{GUEST_RAN}{test}\" \
         line: it skipped; is {GUEST_VAR}=1 set inside the guest?):\n{stdout}"
    )]
    GuestSkipped {
        name: String,
        test: String,
        stdout: String,
    },
    #[error("test `{name}` failed in the guest (status {status}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")]
    TestFailed {
        name: String,
        status: i32,
        stdout: String,
        stderr: String,
    },
}

/// True when VM tests are switched on (`LATCHD_VM_TESTS=1`).
pub fn enabled() -> bool {
    std::env::var(ENABLE_VAR).is_ok_and(|v| v == "1")
}

/// True when the VM tests were asked to run (`LATCHD_VM_REQUIRED=1`).
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// What the host half of a VM test does.
#[derive(Debug, PartialEq, Eq)]
enum HostRun {
    Run,
    /// Pass without running, with a line saying why.
    Skip(String),
    /// Fail: it was asked to run and would have skipped.
    Refuse(String),
}

fn host_run(test: &str, in_guest: bool, enabled: bool, required: bool) -> HostRun {
    let why = if in_guest {
        // Inside the guest the host-side test must not start a nested VM.
        format!("{test} runs on the host, not inside the VM")
    } else if !enabled {
        format!("{test} needs the QEMU rig; set {ENABLE_VAR}=1 (see tests/vm/README.md)")
    } else {
        return HostRun::Run;
    };
    if required {
        HostRun::Refuse(format!("{REQUIRE_VAR}=1 asked for the VM tests, but {why}"))
    } else {
        HostRun::Skip(why)
    }
}

/// For the host half of a VM test: true when it should run; otherwise prints
/// why it is skipped and returns false (the caller returns, the test passes),
/// or, under `LATCHD_VM_REQUIRED=1`, panics: a skip is then a failure.
pub fn enabled_or_skip(test: &str) -> bool {
    match host_run(test, in_guest(), enabled(), required()) {
        HostRun::Run => true,
        HostRun::Skip(why) => {
            visible_line(&format!("skipped: {why}"));
            false
        }
        HostRun::Refuse(why) => panic!("{why}"),
    }
}

/// Writes `line` to stderr directly: libtest captures `println!` and
/// `eprintln!` of a passing test, and a skip must show in the suite's
/// output, not read as an `ok` like any other.
fn visible_line(line: &str) {
    use std::io::Write;
    // Best effort: a closed stderr must not fail the test.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// True inside the rig's guest.
pub fn in_guest() -> bool {
    std::env::var(GUEST_VAR).is_ok_and(|v| v == "1")
}

/// For the guest half of a VM test: true inside the guest; on the host
/// prints a "skipped" line and returns false.
pub fn in_guest_or_skip(test: &str) -> bool {
    if in_guest() {
        println!("{GUEST_RAN}{test}");
        return true;
    }
    println!("skipped: {test} runs only inside the VM (started by its host-side test)");
    false
}

/// `tests/vm/run-in-vm.sh` in this checkout.
pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/run-in-vm.sh")
}

/// Runs `command` (a bash command line) as root in a fresh guest.
pub fn run(opts: &VmOptions, command: &str) -> Result<VmOutput, VmError> {
    run_argv(opts, &[command])
}

/// Runs an argv in a fresh guest; a single element is a bash command line,
/// several are executed as given (no shell).
pub fn run_argv<S: AsRef<str>>(opts: &VmOptions, argv: &[S]) -> Result<VmOutput, VmError> {
    if argv.is_empty() {
        return Err(VmError::BadOption("empty command".into()));
    }
    let mut args = option_args(opts)?;
    let run_dir = new_run_dir();
    args.push("--run-dir".into());
    args.push(run_dir.clone().into());
    args.push("--keep".into());
    args.push("--".into());
    args.extend(argv.iter().map(|a| OsString::from(a.as_ref())));

    let script = script_path();
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .args(&args)
        .output()
        .map_err(|source| VmError::Spawn {
            script: script.clone(),
            source,
        })?;
    let wall = started.elapsed();
    let rig_stderr = String::from_utf8_lossy(&out.stderr).into_owned();

    // The status file is the only proof the command ran: exit codes 124/125
    // could also be the command's own.
    let status_path = run_dir.join("status");
    if !status_path.exists() {
        return match out.status.code() {
            Some(TIMED_OUT) => {
                // The console tail is in the message; the files are no use.
                if !keep_run_dirs() {
                    let _ = std::fs::remove_dir_all(&run_dir);
                }
                Err(VmError::Timeout {
                    secs: opts.timeout.map_or(300, |t| t.as_secs()),
                    stderr: rig_stderr,
                })
            }
            _ => Err(VmError::Rig {
                run_dir,
                stderr: rig_stderr,
            }),
        };
    }
    let read = |what: &'static str| {
        std::fs::read(run_dir.join(what)).map_err(|source| VmError::ReadBack {
            what,
            run_dir: run_dir.clone(),
            source,
        })
    };
    let status_text = String::from_utf8_lossy(&read("status")?).trim().to_owned();
    let status = status_text.parse::<i32>().map_err(|_| VmError::Rig {
        run_dir: run_dir.clone(),
        stderr: format!("malformed status file: {status_text:?}"),
    })?;
    let stdout = String::from_utf8_lossy(&read("stdout")?).into_owned();
    let stderr = String::from_utf8_lossy(&read("stderr")?).into_owned();
    let mut files = BTreeMap::new();
    collect_files(&run_dir.join("out"), "", &mut files).map_err(|source| VmError::ReadBack {
        what: "out dir",
        run_dir: run_dir.clone(),
        source,
    })?;
    let guest_setup = std::fs::read_to_string(run_dir.join("guest-timing"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("uptime_at_command="))
                .and_then(|s| s.trim().parse::<f64>().ok())
        })
        .map(Duration::from_secs_f64);

    if keep_run_dirs() {
        eprintln!("vm: run files kept in {}", run_dir.display());
    } else {
        // Best effort: a leftover run dir only costs disk space in target/.
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    Ok(VmOutput {
        status,
        stdout,
        stderr,
        files,
        wall,
        guest_setup,
    })
}

/// A sparse raw disk image of `mib` MiB for [`VmOptions::disk`], in a
/// temporary directory under the target dir (not under /tmp: the guest has
/// its own /tmp). The directory goes with the returned guard.
pub fn scratch_disk(mib: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a directory for the disk");
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(mib << 20))
        .expect("make the disk image");
    (dir, disk)
}

/// In the guest: load virtio-blk and `modules` from the rig's module tree
/// and wait for the `--disk` image to appear as `/dev/vda`.
pub fn attach_disk(modules: &[&str]) -> PathBuf {
    let root = std::env::var("LATCHD_VM_MODPROBE_ROOT").expect("the rig's module tree");
    for m in std::iter::once(&"virtio_blk").chain(modules) {
        run_ok("modprobe", &["-d", &root, m]);
    }
    let dev = PathBuf::from("/dev/vda");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dev.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no /dev/vda after loading virtio_blk"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    dev
}

/// Run a program (in the guest, usually); its standard output, or a panic
/// with both outputs unless it succeeds.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The name libtest knows `test` of the module `module_path` (the
/// caller's `module_path!()`) by: its path without the crate's name, e.g.
/// `vm_power_cut::guest_power_cut_round`. What `--exact` needs.
pub fn test_name(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_crate, path)) => format!("{path}::{test}"),
        None => test.to_owned(),
    }
}

/// Runs the test `test` of the module `module_path` (the caller's
/// `module_path!()`) of the current test binary inside the guest
/// (`<this exe> --exact <module>::<test> --nocapture`) and fails unless
/// exactly that test ran and passed. The guest half should start with
/// [`in_guest_or_skip`].
pub fn run_test_in_guest(
    opts: &VmOptions,
    module_path: &str,
    test: &str,
) -> Result<VmOutput, VmError> {
    let name = test_name(module_path, test);
    let name = name.as_str();
    let exe = std::env::current_exe().map_err(|source| VmError::Spawn {
        script: PathBuf::from("<current test binary>"),
        source,
    })?;
    let exe = exe.to_string_lossy().into_owned();
    let mut opts = opts.clone();
    opts.env.push(("RUST_BACKTRACE".into(), "1".into()));
    let out = run_argv(
        &opts,
        &[
            exe.as_str(),
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ],
    )?;
    if out.status != 0 {
        return Err(VmError::TestFailed {
            name: name.to_owned(),
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        });
    }
    if !out.stdout.contains("test result: ok. 1 passed") {
        return Err(VmError::TestNotRun {
            name: name.to_owned(),
            stdout: out.stdout,
        });
    }
    guest_half_ran(name, test, &out.stdout)?;
    Ok(out)
}

/// Fails unless the guest half's output has its [`GUEST_RAN`] line.
fn guest_half_ran(name: &str, test: &str, stdout: &str) -> Result<(), VmError> {
    let marker = format!("{GUEST_RAN}{test}");
    // With --nocapture on one thread libtest prints "test <name> ... "
    // before the body runs, so the marker may end that line.
    if stdout.lines().any(|l| l.trim_end().ends_with(&marker)) {
        return Ok(());
    }
    Err(VmError::GuestSkipped {
        name: name.to_owned(),
        test: test.to_owned(),
        stdout: stdout.to_owned(),
    })
}

/// Quotes `s` for a bash command line given to [`run`].
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn keep_run_dirs() -> bool {
    std::env::var(KEEP_VAR).is_ok_and(|v| v == "1")
}

/// The `run-in-vm.sh` flags for `opts`; refuses values the rig cannot carry.
pub fn option_args(opts: &VmOptions) -> Result<Vec<OsString>, VmError> {
    let mut a: Vec<OsString> = Vec::new();
    if opts.video {
        a.push("--video".into());
    }
    if opts.sound {
        a.push("--sound".into());
    }
    if opts.ble {
        a.push("--ble".into());
        if let Some(n) = opts.ble_controllers {
            if !(2..=4).contains(&n) {
                return Err(VmError::BadOption(format!(
                    "{n} BLE controllers requested; the rig makes 2 to 4"
                )));
            }
            a.push("--ble-controllers".into());
            a.push(n.to_string().into());
        }
    }
    if opts.adc {
        a.push("--adc".into());
    }
    if !opts.gpio_lines.is_empty() {
        if opts.gpio_lines.len() > MAX_GPIO_LINES {
            return Err(VmError::BadOption(format!(
                "{} gpio lines requested, gpio-sim banks here hold at most {MAX_GPIO_LINES}",
                opts.gpio_lines.len()
            )));
        }
        for name in &opts.gpio_lines {
            let ok = !name.is_empty()
                && name.len() <= 31
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(VmError::BadOption(format!(
                    "gpio line name {name:?} must be 1-31 chars of [A-Za-z0-9_.-]"
                )));
            }
        }
        a.push("--gpio".into());
        a.push(opts.gpio_lines.join(",").into());
    }
    if opts.tpm {
        a.push("--tpm".into());
    }
    if opts.systemd {
        a.push("--systemd".into());
    }
    if let Some(disk) = &opts.disk {
        a.push("--disk".into());
        a.push(disk.clone().into());
    }
    for (k, v) in &opts.env {
        let valid_name = k
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if k.is_empty() || !valid_name {
            return Err(VmError::BadOption(format!(
                "environment variable name {k:?} is not a shell identifier"
            )));
        }
        a.push("--env".into());
        a.push(format!("{k}={v}").into());
    }
    if let Some(args) = &opts.bluetoothd_args {
        a.push("--bluetoothd-args".into());
        a.push(args.into());
    }
    if let Some(t) = opts.timeout {
        let secs = t.as_secs().max(1);
        a.push("--timeout".into());
        a.push(secs.to_string().into());
    }
    if let Some(m) = opts.mem_mib {
        a.push("--mem".into());
        a.push(m.to_string().into());
    }
    if let Some(cpu) = opts.cpu {
        a.push("--cpu".into());
        a.push(cpu.into());
    }
    Ok(a)
}

/// Where the rig keeps its cache; mirrors the default in run-in-vm.sh.
fn cache_dir() -> PathBuf {
    if let Some(c) = std::env::var_os("LATCHD_VM_CACHE") {
        return PathBuf::from(c);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    target.join("vm")
}

/// A fresh, not yet existing run dir, unique across threads and processes.
fn new_run_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    cache_dir()
        .join("runs")
        .join(format!("rs-{}-{n}-{nanos:09}", std::process::id()))
}

fn collect_files(
    dir: &Path,
    prefix: &str,
    into: &mut BTreeMap<String, Vec<u8>>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            collect_files(&entry.path(), &format!("{name}/"), into)?;
        } else if ty.is_file() {
            into.insert(name, std::fs::read(entry.path())?);
        }
    }
    Ok(())
}

/// The rig's own rules, checked without a VM (so in the default suite).
#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 23 item 2: asked to run (`LATCHD_VM_REQUIRED=1`), a host half
    /// that would skip fails; not asked, it skips with a reason.
    #[test]
    fn a_vm_test_asked_to_run_fails_instead_of_skipping() {
        assert_eq!(host_run("t", false, true, true), HostRun::Run);
        assert_eq!(host_run("t", false, true, false), HostRun::Run);
        match host_run("t", false, false, true) {
            HostRun::Refuse(why) => {
                assert!(
                    why.contains(REQUIRE_VAR) && why.contains(ENABLE_VAR),
                    "{why}"
                )
            }
            other => panic!("a required VM test without the rig must fail, got {other:?}"),
        }
        assert!(matches!(
            host_run("t", true, true, true),
            HostRun::Refuse(_)
        ));
        match host_run("t", false, false, false) {
            HostRun::Skip(why) => assert!(why.contains(ENABLE_VAR), "{why}"),
            other => panic!("without the rig a VM test skips, got {other:?}"),
        }
        assert!(matches!(
            host_run("t", true, false, false),
            HostRun::Skip(_)
        ));
    }

    /// A guest half that skipped inside the guest still says "1 passed";
    /// only its marker line proves it ran.
    #[test]
    fn a_guest_half_that_skipped_in_the_guest_fails_the_host_half() {
        let skipped = "running 1 test\nskipped: guest_x runs only inside the VM\n\
                       test m::guest_x ... ok\n\ntest result: ok. 1 passed; 0 failed\n";
        let r = guest_half_ran("m::guest_x", "guest_x", skipped);
        assert!(matches!(r, Err(VmError::GuestSkipped { .. })), "{r:?}");
        let ran = format!(
            "running 1 test\n{GUEST_RAN}guest_x\ntest m::guest_x ... ok\n\ntest result: ok. 1 passed\n"
        );
        guest_half_ran("m::guest_x", "guest_x", &ran).unwrap();
        let same_line = format!("test m::guest_x ... {GUEST_RAN}guest_x\nok\n");
        guest_half_ran("m::guest_x", "guest_x", &same_line).unwrap();
        // Another half's marker is not this one's.
        let other = format!("{GUEST_RAN}guest_xy\ntest result: ok. 1 passed\n");
        assert!(guest_half_ran("m::guest_x", "guest_x", &other).is_err());
    }
}
