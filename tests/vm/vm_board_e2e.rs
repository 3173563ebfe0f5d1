//! Issue 17 item 9: the Linux-board daemon end to end in the VM rig. The
//! real `latchd` with `board = "linux"` and the example board file, every
//! device a kernel or protocol-level one:
//!
//! * switches and the H-bridge on gpio-sim lines, the bolt moved by a
//!   mechanical model of the motor (below) that drives the limit switches;
//! * the keypad a uinput device read with evdev;
//! * prompts played on snd-dummy (their texts read from the daemon's log);
//! * the fingerprint module the R30x simulator behind a PTY;
//! * the camera vivid through V4L2, the face models loaded.
//!
//! Scenario (B-2.1, B-2.2, B-4.1, B-4.4, B-4.5, B-4.7, B-4.8, B-6.3, B-6.4,
//! B-7.1, B-8.2): first start (door direction, first administrator) → SET
//! and the administrator's code → user 002 with a passcode and a
//! fingerprint, and a face enrolment that the camera's test pattern cannot
//! satisfy → unlock by code (anti-peep digits) and by finger, lock by the
//! back-panel button → five wrong codes lock the system out → restart: the
//! lockout holds, the motor never moves.
//!
//! Run: `tests/vm/run-vm-tests.sh vm_board_e2e::` (or `LATCHD_VM_TESTS=1
//! cargo test --all-features --test vm vm_board_e2e:: -- --test-threads=1`).

use crate::daemon_common::{ADMIN_CODE, USER_CODE, USER_PERSON};
use crate::linux_lock::{
    board_file, energised, healthy_adc, keypad, lines, out_file, press_button, pull, rest_inputs,
    sigkill, start_latchd, value, BoardDevices, BOLT_EXT, BOLT_RET, IR_LED, KP_LIGHT, LOCK_BTN,
    MOTOR_IN1, MOTOR_IN2, SET_BTN,
};
use crate::pty::open_pty;
use crate::rig as vm;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use latchd::biometrics::fingerprint::sim::{self, SimFingerprintConfig, SimFingerprintControl};

/// The door direction chosen at first start: "1", a right-hand door, whose
/// bolt extends when the motor turns clockwise (IN1 high).
const RIGHT_HAND: &str = "1";

/// Bolt travel end to end in the model (the board file allows 1.5 s).
const TRAVEL: Duration = Duration::from_millis(300);

/// How long one step of the scenario may take under QEMU's TCG.
const STEP: Duration = Duration::from_secs(60);

/// How long a face step may take under TCG (models loading, frames).
const FACE_STEP: Duration = Duration::from_secs(240);

#[test]
fn linux_board_end_to_end() {
    if !vm::enabled_or_skip("linux_board_end_to_end") {
        return;
    }
    let opts = vm::VmOptions {
        gpio_lines: lines(),
        adc: true,
        sound: true,
        video: true,
        mem_mib: Some(1536),
        // The face models under TCG: ~40 s a frame with AVX2 emulated,
        // a few seconds with SSE kernels.
        cpu: Some("Nehalem"),
        timeout: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    let out =
        vm::run_test_in_guest(&opts, module_path!(), "guest_linux_board_end_to_end").expect("vm");
    if let Some(v) = out.files.get("figures") {
        eprintln!("{}", String::from_utf8_lossy(v).trim());
    }
    out.assert_success();
}

/// The bolt and its gearbox: a position from 0 (retracted) to 1000
/// (extended) that the H-bridge moves at `TRAVEL` end to end, in the
/// direction the door's handing gives, and the two limit switches
/// (active-low) that read its ends. A move in the wrong direction drives
/// the bolt into the wrong end, so a swapped direction fails the scenario.
struct Mechanics {
    position: Arc<AtomicU32>,
    moves: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const EXTENDED: u32 = 1000;

impl Mechanics {
    fn start(extended: bool) -> Self {
        let position = Arc::new(AtomicU32::new(if extended { EXTENDED } else { 0 }));
        let moves = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, m, s) = (position.clone(), moves.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut last = Instant::now();
            let mut was_moving = false;
            let mut pos = p.load(Ordering::SeqCst) as f64;
            while !s.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
                let dt = last.elapsed();
                last = Instant::now();
                // Right-hand door: clockwise (IN1) extends.
                let dir = match (value(MOTOR_IN1), value(MOTOR_IN2)) {
                    (true, false) => 1.0,
                    (false, true) => -1.0,
                    _ => 0.0,
                };
                if dir != 0.0 && !was_moving {
                    m.fetch_add(1, Ordering::SeqCst);
                }
                was_moving = dir != 0.0;
                let step = dir * EXTENDED as f64 * dt.as_secs_f64() / TRAVEL.as_secs_f64();
                let new = (pos + step).clamp(0.0, EXTENDED as f64);
                let at_end = |x: f64| (x >= EXTENDED as f64, x <= 0.0);
                if at_end(new) != at_end(pos) {
                    let (ext, ret) = at_end(new);
                    pull(BOLT_EXT, !ext);
                    pull(BOLT_RET, !ret);
                }
                pos = new;
                p.store(pos as u32, Ordering::SeqCst);
            }
        });
        Mechanics {
            position,
            moves,
            stop,
            thread: Some(thread),
        }
    }

    fn position(&self) -> u32 {
        self.position.load(Ordering::SeqCst)
    }

    fn moves(&self) -> u32 {
        self.moves.load(Ordering::SeqCst)
    }

    /// Waits for the bolt at `extended` with the bridge coasting.
    #[track_caller]
    fn settles_at(&self, extended: bool, lock: &Lock) {
        let want = if extended { EXTENDED } else { 0 };
        let t0 = Instant::now();
        while self.position() != want || energised() {
            assert!(
                t0.elapsed() < STEP,
                "the bolt did not settle {}: at {}/{EXTENDED}, bridge {}\n{}",
                if extended { "extended" } else { "retracted" },
                self.position(),
                if energised() { "driven" } else { "coasting" },
                lock.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Mechanics {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The running daemon and a cursor in its log.
struct Lock {
    child: Option<Child>,
    log: PathBuf,
    seen: usize,
}

impl Lock {
    fn start(config: &Path, state: &Path) -> Self {
        let log = state.with_extension("log");
        let seen = std::fs::read_to_string(&log).map_or(0, |s| s.len());
        let child = start_latchd(config, state);
        Lock {
            child: Some(child),
            log,
            seen,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Prompt lines (`latchd::prompt`) logged since the last `prompt` call.
    fn new_prompts(&self) -> Vec<String> {
        let log = self.log();
        log.get(self.seen..)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("latchd::prompt"))
            .map(str::to_owned)
            .collect()
    }

    /// Waits for a prompt with `text` and moves the cursor past it.
    #[track_caller]
    fn prompt(&mut self, text: &str) {
        self.first_of(&[text]);
    }

    /// Waits for the first prompt with one of `texts`, moves the cursor
    /// past it; which one it was.
    #[track_caller]
    fn first_of(&mut self, texts: &[&str]) -> usize {
        self.first_within(texts, STEP)
    }

    /// [`Lock::first_of`] with its own limit.
    #[track_caller]
    fn first_within(&mut self, texts: &[&str], limit: Duration) -> usize {
        let t0 = Instant::now();
        loop {
            let log = self.log();
            let tail = log.get(self.seen..).unwrap_or_default();
            let mut at = 0;
            for line in tail.split_inclusive('\n') {
                at += line.len();
                if !line.contains("latchd::prompt") {
                    continue;
                }
                if let Some(i) = texts.iter().position(|t| line.contains(t)) {
                    self.seen += at;
                    return i;
                }
            }
            assert!(
                t0.elapsed() < limit,
                "none of {texts:?} within {limit:?}; prompts since: {:#?}\n--- log ---\n{log}",
                self.new_prompts()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, as systemd stops the unit; the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        child.wait().unwrap()
    }
}

/// The uinput keypad.
struct Keypad(evdev::uinput::VirtualDevice);

impl Keypad {
    /// Types on the keypad: digits, `✓` (confirm), `↩` (back).
    fn keys(&mut self, keys: &str) {
        for c in keys.chars() {
            self.press(c);
            std::thread::sleep(Duration::from_millis(40));
            self.release(c);
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    /// The key-down event of `c`.
    fn press(&mut self, c: char) {
        self.emit(c, 1);
    }

    /// The key-up event of `c`.
    fn release(&mut self, c: char) {
        self.emit(c, 0);
    }

    fn emit(&mut self, c: char, value: i32) {
        let key = match c {
            '0'..='9' => crate::linux_lock::KEYS[c as usize - '0' as usize],
            '✓' => evdev::Key::KEY_ENTER,
            '↩' => evdev::Key::KEY_BACKSPACE,
            other => panic!("no key for {other:?}"),
        };
        self.0
            .emit(&[evdev::InputEvent::new(
                evdev::EventType::KEY,
                key.code(),
                value,
            )])
            .unwrap();
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigkill(&mut c);
        }
    }
}

/// Waits until `cond` holds.
#[track_caller]
fn wait_for(what: &str, cond: impl Fn() -> bool, lock: &Lock) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < STEP,
            "{what}: not within {STEP:?}\n{}",
            lock.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A finger on the sensor until `lift`.
fn touch(finger: &SimFingerprintControl, person: u32) {
    finger.place(person, 0);
}

/// A fresh install's devices and files: the R30x fingerprint simulator on
/// a PTY's master (the daemon opens the slave like /dev/ttyS1), the uinput
/// keypad, the board file and `latchd.toml` (the face models on when
/// `face`), in a directory of their own.
struct Install {
    config: PathBuf,
    state: PathBuf,
    finger: SimFingerprintControl,
    /// Kept open so the simulator never sees a hangup while the daemon
    /// reopens the path; the simulator's runtime; the directory.
    _slave: std::os::fd::OwnedFd,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Install {
    fn new(face: bool) -> (Self, Keypad) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let pty = rt.block_on(async { open_pty() });
        let finger = {
            let _guard = rt.enter();
            sim::spawn(pty.master, SimFingerprintConfig::default()).0
        };
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (keypad_dev, node) = keypad("latchd-e2e-keypad");
        let board = board_file(
            dir.path(),
            &BoardDevices {
                keypad: &node,
                fingerprint: &pty.slave_path,
                // No palm module on this board: it is reported once and the
                // lock runs on.
                palm: "/dev/null",
                max_travel_ms: 1500,
            },
        );
        let mut text = format!(
            "board = \"linux\"\nboard_file = {board:?}\n",
            board = board.display().to_string()
        );
        if face {
            let models = crate::shared::models_dir();
            text += &format!(
                "\n[face]\nenabled = true\nmodels_dir = {models:?}\n\
                 enrol_timeout_s = 10\nliveness = \"none\"\nallow_without_liveness = true\n",
                models = models.display().to_string(),
            );
        }
        let config = dir.path().join("latchd.toml");
        std::fs::write(&config, text).unwrap();
        let install = Install {
            config,
            state,
            finger,
            _slave: pty.slave,
            _rt: rt,
            _dir: dir,
        };
        (install, Keypad(keypad_dev))
    }
}

/// B-2.1, B-2.2 at first start: the door direction, then the first
/// administrator — on the keypad, as an installer does.
fn first_start(lock: &mut Lock, kp: &mut Keypad) {
    lock.prompt("Choose the door direction.");
    kp.keys(&format!("✓{RIGHT_HAND}"));
    lock.prompt("Door direction set.");
    lock.prompt("Please create the administrator.");
    kp.keys("✓");
    lock.prompt("Enter a passcode of six to ten digits");
    kp.keys(&format!("{ADMIN_CODE}✓"));
    lock.prompt("Enter the passcode again");
    kp.keys(&format!("{ADMIN_CODE}✓"));
    lock.prompt("Operation successful.");
    kp.keys("↩↩");
}

/// B-4.1, B-4.4, B-4.8, B-4.7: SET + the administrator's code opens the
/// menu; user 002 gets a passcode and a fingerprint. Leaves the menu at
/// user 002's credential choice; returns the fingerprint enrolment's time.
fn add_user_with_code_and_finger(
    lock: &mut Lock,
    kp: &mut Keypad,
    finger: &SimFingerprintControl,
) -> Duration {
    press_button(SET_BTN, Duration::from_millis(100));
    lock.prompt("Please verify an administrator.");
    kp.keys(&format!("{ADMIN_CODE}✓"));
    lock.prompt("Press 1 to add an administrator");
    assert!(value(KP_LIGHT), "the keypad's backlight is lit in the menu");
    kp.keys("2");
    lock.prompt("User number 0 0 2.");
    lock.prompt("Press 1 for face");
    kp.keys("4");
    lock.prompt("Enter a passcode of six to ten digits");
    kp.keys(&format!("{USER_CODE}✓"));
    lock.prompt("Enter the passcode again");
    kp.keys(&format!("{USER_CODE}✓"));
    lock.prompt("Operation successful.");
    kp.keys("3");
    lock.prompt("Place your finger on the reader");
    let t_enrol = Instant::now();
    loop {
        touch(finger, USER_PERSON);
        let next = lock.first_of(&["Remove your hand.", "Operation successful."]);
        finger.lift();
        if next == 1 {
            break;
        }
        lock.prompt("Again, please.");
    }
    let enrolled = t_enrol.elapsed();
    assert_eq!(finger.templates().len(), 1, "one template in the module");
    enrolled
}

#[test]
fn guest_linux_board_end_to_end() {
    if !vm::in_guest_or_skip("guest_linux_board_end_to_end") {
        return;
    }
    let t_start = Instant::now();
    healthy_adc();
    // A fresh install: bolt retracted, door closed, panel in place.
    rest_inputs(false);
    let mech = Mechanics::start(false);

    let (install, mut kp) = Install::new(true);
    let (config, state, finger) = (&install.config, &install.state, &install.finger);

    // B-2.1, B-2.2: first start asks for the door direction, then the
    // first administrator — on the keypad, as an installer does.
    let mut lock = Lock::start(config, state);
    let ready = t_start.elapsed();
    first_start(&mut lock, &mut kp);

    // B-8.2: the back-panel button locks; the motor turns the right way and
    // stops at the limit switch.
    assert_eq!(mech.position(), 0);
    press_button(LOCK_BTN, Duration::from_millis(100));
    mech.settles_at(true, &lock);
    lock.prompt("Locked.");

    // B-4.1, B-4.4, B-4.8, B-4.7: SET + the administrator's code opens the
    // menu; user 002 gets a passcode and a fingerprint.
    let enrol_finger = add_user_with_code_and_finger(&mut lock, &mut kp, finger);

    // B-4.5 on the Linux board: a face enrolment reads vivid's frames
    // through V4L2 and the detector, which finds no face in a test
    // pattern; the enrolment times out and adds nothing.
    lock.prompt("Press 1 for face");
    kp.keys("1");
    lock.prompt("Please look straight at the camera.");
    // Issue 17 item 6: the IR illuminator is lit while the camera looks.
    wait_for(
        "the IR illuminator lit for the enrolment",
        || value(IR_LED),
        &lock,
    );
    // The models load in the background (seconds under TCG) and each
    // frame takes seconds to look at there: a longer limit.
    lock.first_within(&["No face found."], FACE_STEP);
    lock.first_within(&["Operation failed."], FACE_STEP);
    wait_for("the IR illuminator dark again", || !value(IR_LED), &lock);
    kp.keys("↩↩");

    // B-6.4 with anti-peep digits around the code.
    kp.keys(&format!("90{USER_CODE}37✓"));
    mech.settles_at(false, &lock);
    lock.prompt("Unlocked.");
    press_button(LOCK_BTN, Duration::from_millis(100));
    mech.settles_at(true, &lock);
    lock.prompt("Locked.");

    // B-6.3: the user's finger.
    touch(finger, USER_PERSON);
    mech.settles_at(false, &lock);
    lock.prompt("Unlocked.");
    finger.lift();
    press_button(LOCK_BTN, Duration::from_millis(100));
    mech.settles_at(true, &lock);
    lock.prompt("Locked.");

    // B-7.1: five wrong codes lock the system; the right one then fails
    // and the motor does not move.
    let moves = mech.moves();
    for i in 0..4 {
        kp.keys(&format!("97531{i}✓"));
        lock.prompt("Verification failed.");
    }
    kp.keys("975314✓");
    lock.prompt("The system is locked. Please try again later.");
    kp.keys(&format!("{USER_CODE}✓"));
    lock.prompt("The system is locked. Please try again later.");

    // Restart: the lockout holds, for the finger too.
    let status = lock.stop();
    assert!(status.success(), "latchd stopped cleanly: {status:?}");
    assert!(!energised(), "coasting after a stop");
    let mut lock = Lock::start(config, state);
    touch(finger, USER_PERSON);
    lock.prompt("The system is locked. Please try again later.");
    finger.lift();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        mech.moves(),
        moves,
        "the motor never moved while locked out"
    );
    assert_eq!(mech.position(), EXTENDED);

    // The face models were loaded on the board (a log line with the time).
    let log = lock.log();
    assert!(log.contains("face models loaded"), "{log}");
    // Every prompt was played on snd-dummy (ALSA took its frames).
    let prompts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("latchd::prompt"))
        .collect();
    assert!(prompts.len() > 40, "{prompts:#?}");
    assert!(
        prompts.iter().all(|l| l.ends_with("spoken=true")),
        "{prompts:#?}"
    );
    let status = lock.stop();
    assert!(status.success(), "{status:?}");
    drop(install);
    out_file(
        "figures",
        &format!(
            "start to READY=1 (fresh state, face on): {} ms; fingerprint enrolment (3 touches): {} ms; whole scenario: {} s",
            ready.as_millis(),
            enrol_finger.as_millis(),
            t_start.elapsed().as_secs()
        ),
    );
}

/// Issue 19 item 3 on the Linux board: how long from a credential's input
/// reaching the board's devices to the motor being driven, through the
/// real paths — the ✓ key as a uinput event read with evdev, the finger as
/// the R30x simulator's answer on the PTY — through the daemon's attempt
/// commit (SQLite, `synchronous=FULL`; the state is in the guest's tmpfs
/// `/tmp`, so its fsync costs nothing: the sim-board bench has the figure
/// with a disk). The test build of `latchd`. Reports p50 / p99 / max per
/// path; asserts only that every unlock happened, each by one move (a
/// benchmark, not a timing test). Under QEMU's TCG every figure is several
/// times the hardware's.
///
/// `LATCHD_VM_UNLOCKS` (default 10, in CI) unlocks of each kind; the
/// figure for the README: `LATCHD_VM_UNLOCKS=1000
/// tests/vm/run-vm-tests.sh vm_board_e2e::linux_board_unlock_latency`.
#[test]
fn linux_board_unlock_latency() {
    if !vm::enabled_or_skip("linux_board_unlock_latency") {
        return;
    }
    let unlocks = unlocks_wanted();
    let opts = vm::VmOptions {
        gpio_lines: lines(),
        adc: true,
        // The board file's voice PCM: the daemon does not start without it.
        sound: true,
        env: vec![("LATCHD_VM_UNLOCKS".into(), unlocks.to_string())],
        // ~3 s per unlock and re-lock under TCG, both kinds.
        timeout: Some(Duration::from_secs(300 + 8 * unlocks as u64)),
        ..Default::default()
    };
    let out = vm::run_test_in_guest(&opts, module_path!(), "guest_linux_board_unlock_latency")
        .expect("vm");
    if let Some(v) = out.files.get("figures") {
        eprintln!("{}", String::from_utf8_lossy(v).trim());
    }
    out.assert_success();
}

/// `LATCHD_VM_UNLOCKS`, default 10.
fn unlocks_wanted() -> usize {
    std::env::var("LATCHD_VM_UNLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(10)
}

/// Time from `input` (called once) until an H-bridge line is driven,
/// polling the gpio-sim lines without sleeping.
#[track_caller]
fn until_driven(input: impl FnOnce(), lock: &Lock) -> Duration {
    assert!(!energised(), "the bridge coasts before the input");
    input();
    let t0 = Instant::now();
    while !energised() {
        assert!(
            t0.elapsed() < STEP,
            "the motor was not driven within {STEP:?}\n{}",
            lock.log()
        );
    }
    t0.elapsed()
}

/// `p50 / p99 / max` of `samples`, in ms.
fn spread(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} unlocks)",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(1.0)),
        samples.len()
    )
}

#[test]
fn guest_linux_board_unlock_latency() {
    if !vm::in_guest_or_skip("guest_linux_board_unlock_latency") {
        return;
    }
    let unlocks = unlocks_wanted();
    healthy_adc();
    rest_inputs(false);
    let mech = Mechanics::start(false);
    let (install, mut kp) = Install::new(false);
    let finger = &install.finger;
    let mut lock = Lock::start(&install.config, &install.state);
    first_start(&mut lock, &mut kp);
    add_user_with_code_and_finger(&mut lock, &mut kp, finger);
    kp.keys("↩↩");
    press_button(LOCK_BTN, Duration::from_millis(100));
    mech.settles_at(true, &lock);
    lock.prompt("Locked.");

    let (mut by_code, mut by_finger) = (Vec::new(), Vec::new());
    let relock = |lock: &Lock| {
        mech.settles_at(false, lock);
        press_button(LOCK_BTN, Duration::from_millis(100));
        mech.settles_at(true, lock);
    };
    for _ in 0..unlocks {
        // The code's digits, then the ✓ timed from its key-down event.
        kp.keys(USER_CODE);
        by_code.push(until_driven(|| kp.press('✓'), &lock));
        kp.release('✓');
        relock(&lock);
        by_finger.push(until_driven(|| touch(finger, USER_PERSON), &lock));
        finger.lift();
        relock(&lock);
    }
    let status = lock.stop();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        mech.moves() as usize,
        1 + 4 * unlocks,
        "one move per lock and unlock, no other"
    );
    out_file(
        "figures",
        &format!(
            "Linux board in the VM (TCG, test build, state on tmpfs), input -> motor driven: ✓ key (uinput, evdev): {}; finger (R30x simulator on a PTY): {}",
            spread(&mut by_code),
            spread(&mut by_finger)
        ),
    );
}
