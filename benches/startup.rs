//! Start-up and memory of the real `latchd` binary (release, sim board,
//! headless), spawned as a process on a store seeded with 50 users and 200
//! credentials (a passcode, a face template, a fingerprint and a palm each:
//! the lock's capacity).
//!
//! * **start → `READY=1`**: from `spawn` to the readiness datagram on a
//!   `NOTIFY_SOCKET` this bench binds (systemd's sd_notify protocol: a Unix
//!   datagram socket), median / min / max over `STARTUP_RUNS` starts
//!   (default 10), without face and with `[face] enabled` (models from
//!   `$LATCHD_SHARED/models`, else `../shared/models`). `READY=1` does not
//!   wait for the face models; with face, start → the daemon's "face models
//!   loaded" log line is reported too (both models loaded: face unlock can
//!   answer).
//! * **VmRSS idle**: 2 s after `READY=1` (and after the models loaded),
//!   without and with face.
//! * **VmRSS after 100,000 inputs** (`STARTUP_INPUTS`) through the control
//!   socket, without face, against the figure after a 2,000-input warm-up:
//!   rounds of one passcode unlock and re-lock (`settle` between) and nine
//!   typed-and-cancelled codes (`123456↩`), counted by the daemon's own
//!   `processed` counter.
//!
//! Binary sizes are not measured here (see the README's figures table:
//! `cargo build --release`, `strip`, `ls -l`).
//!
//! Run: `cargo bench --bench startup`. `STARTUP_LATCHD=<path>` measures
//! another build of the binary instead (e.g. one made with other profile
//! settings, to compare them in one run of this bench).

#[path = "common/lock_seed.rs"]
mod lock_seed;

#[path = "../tests/it/common/shared.rs"]
mod shared;
use shared::rss_kib;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lock_seed::{code_of, seed_lock};

/// The binary measured: this build's, or `STARTUP_LATCHD`'s.
fn latchd_exe() -> PathBuf {
    std::env::var_os("STARTUP_LATCHD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_latchd")))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One bench directory: the seeded state, the config, the sockets.
struct Lock {
    _dir: tempfile::TempDir,
    state: PathBuf,
    config: PathBuf,
    notify: PathBuf,
    control: PathBuf,
}

impl Lock {
    fn new(face: bool) -> Lock {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        seed_lock(&state, 50, true);
        let mut toml = String::from("[sim]\nmotor_travel_ms = 1\n");
        if face {
            let people = dir.path().join("people");
            std::fs::create_dir_all(&people).expect("people dir");
            std::fs::copy(
                shared::shared_dir().join("faces/obama/2.jpg"),
                people.join("1.jpg"),
            )
            .expect("photo");
            toml.push_str(&format!(
                "[face]\nenabled = true\nmodels_dir = \"{}\"\nsim_people_dir = \"{}\"\n\
                 liveness = \"none\"\nallow_without_liveness = true\n",
                shared::models_dir().display(),
                people.display()
            ));
        }
        let config = dir.path().join("latchd.toml");
        std::fs::write(&config, toml).expect("config");
        Lock {
            notify: dir.path().join("notify.sock"),
            control: dir.path().join("control.sock"),
            state,
            config,
            _dir: dir,
        }
    }
}

/// A started daemon: the child, when `READY=1` came, and the stderr lines
/// with the time each was read.
struct Started {
    child: Child,
    ready: Duration,
    lines: mpsc::Receiver<(Instant, String)>,
    t0: Instant,
}

fn start(lock: &Lock) -> Started {
    let _ = std::fs::remove_file(&lock.notify);
    let notify = UnixDatagram::bind(&lock.notify).expect("bind NOTIFY_SOCKET");
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let t0 = Instant::now();
    let mut child = Command::new(latchd_exe())
        .arg("--headless")
        .arg("--config")
        .arg(&lock.config)
        .arg("--state-dir")
        .arg(&lock.state)
        .arg("--control-socket")
        .arg(&lock.control)
        .env("NOTIFY_SOCKET", &lock.notify)
        .env("RUST_LOG", "warn,latchd::biometrics::face::worker=info")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("latchd starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 4096];
    let ready = loop {
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no READY=1 from latchd: {e}"));
        let t = t0.elapsed();
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            break t;
        }
    };
    Started {
        child,
        ready,
        lines,
        t0,
    }
}

impl Started {
    /// Time from spawn to the stderr line containing `needle`.
    fn line_containing(&self, needle: &str) -> Duration {
        loop {
            let (at, line) = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("latchd never logged `{needle}`"));
            if line.contains(needle) {
                return at - self.t0;
            }
        }
    }

    fn stop(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "latchd exited with {status}");
    }
}

struct Control {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Control {
    fn connect(sock: &Path) -> Control {
        let writer = UnixStream::connect(sock).expect("control socket");
        Control {
            reader: BufReader::new(writer.try_clone().expect("clone")),
            writer,
        }
    }

    fn call(&mut self, request: &str) -> serde_json::Value {
        writeln!(self.writer, "{request}").expect("write");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json reply");
        assert_eq!(v["ok"], true, "{request}: {v}");
        v
    }

    fn processed(&mut self) -> u64 {
        self.call(r#"{"cmd":"status"}"#)["daemon"]["processed"]
            .as_u64()
            .expect("processed")
    }

    /// Feed inputs until the daemon has handled `n` more.
    fn feed(&mut self, n: u64) {
        let start = self.processed();
        let wrong = r#"{"cmd":"press","keys":"123456↩"}"#;
        let mut round = 0u16;
        while self.processed() - start < n {
            let code = code_of(2 + round % 49);
            round = round.wrapping_add(1);
            self.call(&format!(r#"{{"cmd":"press","keys":"{code}✓"}}"#));
            self.call(r#"{"cmd":"settle"}"#);
            self.call(r#"{"cmd":"lock_button"}"#);
            self.call(r#"{"cmd":"settle"}"#);
            for _ in 0..9 {
                self.call(wrong);
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let runs = env_usize("STARTUP_RUNS", 10);
    let inputs = env_usize("STARTUP_INPUTS", 100_000) as u64;
    println!("startup: release latchd, sim board, headless, 50 users / 200 credentials");

    for face in [false, true] {
        let lock = Lock::new(face);
        let mut ready = Vec::with_capacity(runs);
        let mut models = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..runs {
            let s = start(&lock);
            ready.push(s.ready);
            if face {
                models.push(s.line_containing("face models loaded"));
            }
            std::thread::sleep(Duration::from_secs(2));
            rss.push(rss_kib(s.child.id()));
            s.stop();
        }
        ready.sort();
        models.sort();
        rss.sort();
        let label = if face { "with face" } else { "without face" };
        println!(
            "  {label}: start -> READY=1 median {:.1} ms (min {:.1}, max {:.1}; {runs} starts)",
            ms(ready[runs / 2]),
            ms(ready[0]),
            ms(ready[runs - 1])
        );
        if face {
            println!(
                "  {label}: start -> both face models loaded median {:.1} ms (min {:.1}, max {:.1})",
                ms(models[runs / 2]),
                ms(models[0]),
                ms(models[runs - 1])
            );
        }
        println!(
            "  {label}: VmRSS idle (2 s after READY=1) median {:.1} MiB (min {:.1}, max {:.1})",
            mib(rss[runs / 2]),
            mib(rss[0]),
            mib(rss[runs - 1])
        );
    }

    let lock = Lock::new(false);
    let s = start(&lock);
    let mut control = Control::connect(&lock.control);
    control.feed(2_000);
    let before = rss_kib(s.child.id());
    let t = Instant::now();
    control.feed(inputs);
    let took = t.elapsed();
    let after = rss_kib(s.child.id());
    println!(
        "  without face: VmRSS {:.2} MiB after a 2,000-input warm-up, {:.2} MiB after {inputs} \
         more inputs over the control socket ({:+} KiB; {:.1} s)",
        mib(before),
        mib(after),
        after as i64 - before as i64,
        took.as_secs_f64()
    );
    drop(control);
    s.stop();
}
