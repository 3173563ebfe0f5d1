//! Shared by the Matter test and bench: a network namespace of the test's
//! own, and Home Assistant's controller (python-matter-server + the CHIP
//! wheel) driven through `tests/matter/controller.py`.
//!
//! ```text
//!  test process (outside)            user+net namespace "holder" (sleep)
//!    ├─ nsenter ─► latchd  ──────────►  mt0  fd4c:6174::1  ┐ veth
//!    └─ nsenter ─► unshare -m ─► private /data ─► controller.py ─► matter-server ─► mt1 ┘
//!        (stdin/stdout JSON lines)
//! ```
//!
//! Controllers ignore loopback for mDNS, so the lock and the controller
//! talk over a veth pair inside a namespace nobody else sees; no address
//! outside it is ever used. Unix sockets (the daemon's control socket)
//! cross the namespace boundary, so the test drives the lock as usual.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// The lock's side of the veth pair.
pub const LOCK_IF: &str = "mt0";
/// The controller's side.
pub const CONTROLLER_IF: &str = "mt1";

/// Repository root (tests run with the package as working directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv `scripts/matter-env.sh` makes.
pub fn venv_python() -> PathBuf {
    let p = repo().join("target/matter-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/matter-env.sh (scripts/test.sh does) to install Home Assistant's Matter controller",
        p.display()
    );
    p
}

/// A user and network namespace with a veth pair, held open by a sleeping
/// process; removed when dropped.
pub struct NetNs {
    holder: Child,
}

const SETUP: &str = r#"
set -e
ip link set lo up
# Addresses usable at once: no duplicate address detection in a private net.
sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
ip link add mt0 type veth peer name mt1
ip addr add fd4c:6174::1/64 dev mt0 nodad
ip addr add fd4c:6174::2/64 dev mt1 nodad
ip link set mt0 up
ip link set mt1 up
echo ready
exec sleep infinity
"#;

impl NetNs {
    pub fn new() -> NetNs {
        let mut holder = Command::new("unshare")
            .args([
                "--user",
                "--map-root-user",
                "--net",
                "--",
                "sh",
                "-c",
                SETUP,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare (util-linux) runs");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the test's network namespace could not be set up (needs user namespaces, iproute2)"
        );
        NetNs { holder }
    }

    /// The command prefix that runs a program inside the namespace.
    pub fn enter(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            "--target".into(),
            self.holder.id().to_string(),
            "--user".into(),
            "--net".into(),
            "--preserve-credentials".into(),
            "--".into(),
        ]
    }
}

impl NetNs {
    /// Run a shell script inside the namespace (its root may change the
    /// interfaces there); panics when it fails.
    pub fn sh(&self, script: &str) {
        let enter = self.enter();
        let out = Command::new(&enter[0])
            .args(&enter[1..])
            .args(["sh", "-c", script])
            .output()
            .expect("nsenter runs");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Home Assistant's controller, one JSON command per line.
pub struct Controller {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: u64,
    pub storage: PathBuf,
}

impl Controller {
    /// Start the controller (and its matter-server) in `ns`, storing its
    /// fabric and node data in `storage` (kept across restarts of the lock).
    pub fn start(ns: &NetNs, storage: &Path) -> Controller {
        Self::spawn(
            &ns.enter(),
            storage,
            &["--primary-interface", CONTROLLER_IF],
        )
    }

    /// Start the controller through `prefix` (e.g. `ip netns exec <ns>`:
    /// the controller on that network, its BLE side reaching BlueZ over the
    /// system bus) on `interface`, with its BLE side on
    /// `hci<bluetooth_adapter>`.
    pub fn start_in(
        prefix: &[&str],
        storage: &Path,
        interface: &str,
        bluetooth_adapter: u8,
    ) -> Controller {
        let adapter = bluetooth_adapter.to_string();
        let prefix: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        Self::spawn(
            &prefix,
            storage,
            &[
                "--primary-interface",
                interface,
                "--bluetooth-adapter",
                adapter.as_str(),
                // In a VM guest under QEMU's TCG the Python server takes
                // tens of seconds to import the Matter SDK and listen; on a
                // loaded host (s43) more than the default 60 s.
                "--start-timeout",
                "180",
            ],
        )
    }

    /// `prefix` (a namespace entry, or nothing) + a private /data +
    /// `controller.py` with `args`.
    fn spawn(prefix: &[String], storage: &Path, args: &[&str]) -> Controller {
        let scratch = storage.join("private-root");
        let (program, prefix_args) = match prefix.split_first() {
            Some((p, rest)) => (p.as_str(), rest),
            None => ("unshare", &[][..]),
        };
        let mut cmd = Command::new(program);
        cmd.args(prefix_args);
        if !prefix.is_empty() {
            cmd.arg("unshare");
        }
        cmd.args(["--mount", "--propagation", "private", "--"])
            .arg(repo().join("tests/matter/private-root.sh"))
            .arg(&scratch)
            .arg(venv_python())
            .arg(repo().join("tests/matter/controller.py"))
            .arg("--storage")
            .arg(storage)
            .arg("--paa")
            .arg(repo().join("tests/matter/Chip-Test-PAA-FFF1-Cert.der"))
            .args(args)
            .arg("--sdk-log")
            .arg("progress")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("the controller starts");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "controller did not start ({e}): {line:?}; see {}/matter-server.log",
                storage.display()
            )
        });
        assert_eq!(ready["ready"], json!(true), "{ready}");
        Controller {
            child,
            stdin,
            stdout,
            next: 1,
            storage: storage.to_owned(),
        }
    }

    /// One command; the reply's `ok` value, or its `error` as `Err`.
    pub fn call(&mut self, cmd: &str, args: Value) -> Result<Value, String> {
        let id = self.next;
        self.next += 1;
        let mut req = args;
        req["id"] = json!(id);
        req["cmd"] = json!(cmd);
        writeln!(self.stdin, "{req}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let reply: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "controller reply {line:?} ({e}); see {}/matter-server.log",
                self.storage.display()
            )
        });
        assert_eq!(reply["id"], json!(id), "{reply}");
        match reply.get("error") {
            Some(e) => Err(e.as_str().unwrap_or_default().to_owned()),
            None => Ok(reply["ok"].clone()),
        }
    }

    /// A command that must succeed.
    pub fn ok(&mut self, cmd: &str, args: Value) -> Value {
        let what = args.to_string();
        self.call(cmd, args)
            .unwrap_or_else(|e| panic!("controller {cmd} {what}: {e}"))
    }

    /// A Door Lock command on endpoint 1 (timed, as Home Assistant sends
    /// the lock commands).
    pub fn lock_cmd(&mut self, node: u64, command: &str, args: Value) -> Result<Value, String> {
        self.call(
            "invoke",
            json!({"node": node, "endpoint": 1, "command": command, "args": args, "timed_ms": 10000}),
        )
    }

    /// A command of another cluster (by its name in the CHIP wheel).
    pub fn invoke(
        &mut self,
        node: u64,
        endpoint: u16,
        cluster: &str,
        command: &str,
        args: Value,
    ) -> Result<Value, String> {
        self.call(
            "invoke",
            json!({"node": node, "endpoint": endpoint, "cluster": cluster, "command": command, "args": args}),
        )
    }

    /// Wait until the subscription reports `path` with `value`.
    pub fn wait_attribute(&mut self, node: u64, path: &str, value: Value) {
        self.ok(
            "wait_attribute",
            json!({"node": node, "path": path, "value": value}),
        );
    }

    pub fn read(&mut self, node: u64, path: &str) -> Value {
        self.ok("read", json!({"node": node, "path": path}))
    }

    /// Wait for a Door Lock event (0 alarm, 1 door state, 2 lock operation,
    /// 3 operation error, 4 user change) whose data has `matching` fields.
    pub fn event(&mut self, node: u64, event: u32, matching: Value) -> Value {
        self.ok(
            "wait_event",
            json!({"node": node, "cluster": 257, "event": event, "timeout": 60, "match": matching}),
        )
    }

    pub fn stop(mut self) {
        let _ = self.call("stop", json!({}));
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file for a lock in the namespace.
pub fn lock_config(dir: &Path) -> PathBuf {
    let path = dir.join("latchd.toml");
    std::fs::write(
        &path,
        format!("[matter]\ninterface = \"{LOCK_IF}\"\n[sim]\nmotor_travel_ms = 100\n"),
    )
    .unwrap();
    path
}

/// The lock's onboarding code, as `latchctl matter label` prints it.
pub fn manual_code(state: &Path, config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_latchctl"))
        .args(["--json", "matter", "label", "--state-dir"])
        .arg(state)
        .arg("--config")
        .arg(config)
        .output()
        .expect("latchctl runs");
    assert!(
        out.status.success(),
        "latchctl matter label: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["manual_code"].as_str().unwrap().to_owned()
}

/// Poll the lock's status until `f` holds (a wait, not a timed assertion:
/// the limit turns a hang into a failure).
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited 30 s for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a technician reads of the node (issue 22): `MatterState` and
/// `MatterFabrics` with busctl, waited for (the node reports changes as
/// they happen, from its own thread).
pub fn wait_for_diagnostics(bus_address: &str, state: &str, fabrics: u8) {
    let read = |name: &str| {
        let out = std::process::Command::new("busctl")
            .arg(format!("--address={bus_address}"))
            .args(["--no-pager", "get-property", "org.latchd"])
            .args(["/org/latchd/Lock", "org.latchd.Diagnostics1", name])
            .output()
            .expect("busctl (Debian package systemd)");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let want = (format!("s \"{state}\""), format!("y {fabrics}"));
    // Only hit when something is broken; never a timing assertion.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = (read("MatterState"), read("MatterFabrics"));
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited 30 s for {want:?}; D-Bus still reads {got:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
