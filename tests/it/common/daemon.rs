//! Shared by the `daemon_*` integration tests (and, by `#[path]` in
//! `tests/vm/main.rs`, the VM crate's `vm_ble`, `vm_tpm` and
//! `vm_power_cut_attempts`): start the real `latchd` binary headless on a
//! temporary state directory and drive it through its control socket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const ADMIN_CODE: &str = "135792";
pub const USER_CODE: &str = "246801";
/// Simulated person whose finger user 002 gets.
pub const USER_PERSON: u32 = 2;

/// latchd in this test's process (its channels reached directly), with no
/// front panel and no control socket; `dbus` is the diagnostics bus.
pub async fn start_in_process(
    state: &Path,
    config: latchd::config::Config,
    dbus: Option<latchd::dbus::BusChoice>,
) -> latchd::daemon::Running {
    let opts = latchd::daemon::Options {
        config,
        state_dir: state.to_owned(),
        front_panel: false,
        control_socket: None,
        dbus,
        set_held: false,
    };
    latchd::daemon::start(opts, tokio_util::sync::CancellationToken::new())
        .await
        .expect("daemon starts")
}

pub struct Daemon {
    child: Option<Child>,
    pub state: PathBuf,
    pub sock: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Start latchd on `state` and wait until its control socket answers.
    pub fn start(state: &Path) -> Daemon {
        Self::start_with(state, &[])
    }

    pub fn start_with(state: &Path, extra: &[&str]) -> Daemon {
        Self::start_exe(Path::new(env!("CARGO_BIN_EXE_latchd")), state, extra)
    }

    /// Start latchd through a command prefix (`nsenter … --`: the Matter
    /// test runs the lock in a network namespace of its own).
    pub fn start_wrapped(wrapper: &[String], state: &Path, extra: &[&str]) -> Daemon {
        Self::start_cmd(
            wrapper,
            Path::new(env!("CARGO_BIN_EXE_latchd")),
            state,
            extra,
            &[],
        )
    }

    /// Talk to a latchd someone else started (systemd, in the VM tests)
    /// through its control socket; nothing is killed on drop.
    pub fn attach(state: &Path, sock: &Path) -> Daemon {
        Daemon {
            child: None,
            state: state.to_owned(),
            sock: sock.to_owned(),
            log: state.with_extension("log"),
        }
    }

    /// Start a given latchd binary (a pinned copy, in the VM tests).
    pub fn start_exe(exe: &Path, state: &Path, extra: &[&str]) -> Daemon {
        Self::start_cmd(&[], exe, state, extra, &[])
    }

    /// [`Daemon::start_wrapped`] with extra environment (the soak under a
    /// profiler).
    pub fn start_wrapped_with_env(
        wrapper: &[String],
        state: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        Self::start_cmd(
            wrapper,
            Path::new(env!("CARGO_BIN_EXE_latchd")),
            state,
            extra,
            env,
        )
    }

    /// The latchd process itself: the child, or under a wrapper (a
    /// profiler's launcher) the first descendant running latchd's binary;
    /// 0 once it is gone.
    pub fn latchd_pid(&self) -> u32 {
        let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_latchd")).unwrap_or_default();
        let mut queue = vec![self.pid()];
        while let Some(pid) = queue.pop() {
            if pid == 0 {
                continue;
            }
            if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == exe) {
                return pid;
            }
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten();
            for task in tasks.flatten() {
                let children = std::fs::read_to_string(task.path().join("children"));
                queue.extend(
                    children
                        .unwrap_or_default()
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        0
    }

    /// [`Daemon::start_with`] with extra environment (a private system
    /// bus: `DBUS_SYSTEM_BUS_ADDRESS`).
    pub fn start_with_env(state: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_cmd(
            &[],
            Path::new(env!("CARGO_BIN_EXE_latchd")),
            state,
            extra,
            env,
        )
    }

    fn start_cmd(
        wrapper: &[String],
        exe: &Path,
        state: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let sock = state.with_extension("sock");
        let log = state.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let child = cmd
            .arg("--headless")
            .arg("--state-dir")
            .arg(state)
            .arg("--control-socket")
            .arg(&sock)
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("latchd starts");
        let mut d = Daemon {
            child: Some(child),
            state: state.to_owned(),
            sock,
            log,
        };
        // Waiting for a process to come up is not a timed assertion: the
        // limit only turns a hang into a failure with the daemon's log.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if UnixStream::connect(&d.sock).is_ok() {
                return d;
            }
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("latchd exited early ({status}): {}", d.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "latchd did not open its socket: {}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request, one reply.
    pub fn call(&self, request: Value) -> Value {
        let mut s = UnixStream::connect(&self.sock).expect("control socket");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        writeln!(s, "{request}").unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).expect("a reply");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}"))
    }

    /// A request that must succeed.
    pub fn ok(&self, request: Value) -> Value {
        let r = self.call(request.clone());
        assert_eq!(
            r["ok"],
            json!(true),
            "{request} -> {r}\n{}",
            self.log_text()
        );
        r
    }

    pub fn press(&self, keys: &str) {
        self.ok(json!({"cmd": "press", "keys": keys}));
    }

    pub fn finger(&self, person: u32) {
        self.ok(json!({"cmd": "finger", "person": person}));
    }

    /// The simulated camera shows `person` (`None`: nobody).
    pub fn face(&self, person: Option<u32>) {
        self.ok(json!({"cmd": "face", "person": person}));
    }

    /// Every logged event (up to 1000), oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.ok(json!({"cmd": "events", "n": 1000}))["events"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// The oldest logged event of this dotted kind.
    pub fn first_event(&self, kind: &str) -> Option<Value> {
        self.events().into_iter().find(|e| e["kind"] == json!(kind))
    }

    /// How many logged events have this dotted kind (`unlocked.face`).
    pub fn count_events(&self, kind: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e["kind"] == json!(kind))
            .count()
    }

    pub fn settle(&self) {
        self.ok(json!({"cmd": "settle"}));
    }

    pub fn status(&self) -> Value {
        self.ok(json!({"cmd": "status"}))
    }

    pub fn step(&self) -> String {
        self.status()["engine"]["step"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn last_prompts(&self, n: usize) -> Vec<String> {
        self.ok(json!({"cmd": "prompts", "n": n}))["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["text"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn last_prompt(&self) -> String {
        self.last_prompts(1).pop().unwrap_or_default()
    }

    /// SIGTERM and wait for the exit status.
    pub fn sigterm(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        child.wait().unwrap()
    }

    /// Wait for the daemon to exit on its own (a factory reset exits 75).
    pub fn wait(mut self) -> ExitStatus {
        self.child.take().unwrap().wait().unwrap()
    }

    /// SIGKILL: no chance to clean up, like a power cut for the process.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// B-2.1 + B-2.2: door direction, then the first administrator (001).
pub fn first_start(d: &Daemon) {
    assert_eq!(d.step(), "choose_direction");
    d.press("✓1");
    assert_eq!(
        d.last_prompt(),
        "Please create the administrator. Press confirm to start."
    );
    d.press("✓");
    d.press(&format!("{ADMIN_CODE}✓{ADMIN_CODE}✓"));
    let s = d.status();
    assert_eq!(s["engine"]["counts"]["admins"], json!(1), "{s}");
    // Leave the method menu and the admin menu.
    d.press("↩↩");
    assert_eq!(d.step(), "idle");
}

/// B-4.1: SET, then an administrator's passcode opens the menu.
pub fn enter_menu(d: &Daemon) {
    d.ok(json!({"cmd": "set"}));
    d.press(&format!("{ADMIN_CODE}✓"));
    assert_eq!(d.step(), "menu");
}

/// The DB's integrity and "no user without a credential" (B-4.11).
pub fn check_db(state: &Path) -> (u32, u32) {
    let db = rusqlite::Connection::open_with_flags(
        state.join("latchd.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the database");
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let orphans: u32 = db
        .query_row(
            "SELECT count(*) FROM users WHERE number NOT IN (SELECT user FROM credentials)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "a user was stored without any credential");
    let users: u32 = db
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    let creds: u32 = db
        .query_row("SELECT count(*) FROM credentials", [], |r| r.get(0))
        .unwrap();
    (users, creds)
}
