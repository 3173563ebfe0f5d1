//! How often an idle latchd wakes up: the real binary, headless on the sim
//! board, past first start and with its keypad asleep, left alone for 60 s
//! (`LATCHD_IDLE_SECS` to change).
//!
//! Reports the engine loop's own wake-up counter (from `status` on the
//! control socket) and the context switches of every thread of the process
//! (`/proc/<pid>/task/*/status`), before and after.
//!
//! ```text
//! cargo bench --bench idle_wakeups
//! ```
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn call(sock: &Path, request: &str) -> serde_json::Value {
    let mut s = UnixStream::connect(sock).expect("control socket");
    writeln!(s, "{request}").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).expect("json reply")
}

/// Voluntary and involuntary context switches of every thread, by thread
/// id, with the thread's name.
fn per_thread(pid: u32) -> BTreeMap<String, (String, u64, u64)> {
    let mut threads = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let mut counts = (0, 0);
        for line in status.lines() {
            let value = |l: &str| l.split_whitespace().nth(1).and_then(|v| v.parse().ok());
            if line.starts_with("voluntary_ctxt_switches") {
                counts.0 = value(line).unwrap_or(0);
            } else if line.starts_with("nonvoluntary_ctxt_switches") {
                counts.1 = value(line).unwrap_or(0);
            }
        }
        let id = task.file_name().to_string_lossy().into_owned();
        threads.insert(id, (name.trim().to_owned(), counts.0, counts.1));
    }
    threads
}

/// Voluntary and involuntary context switches summed over all threads.
fn ctxt_switches(pid: u32) -> (u64, u64) {
    per_thread(pid)
        .values()
        .fold((0, 0), |(v, n), (_, tv, tn)| (v + tv, n + tn))
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let secs: u64 = std::env::var("LATCHD_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let sock = dir.path().join("control.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchd"))
        .arg("--headless")
        .arg("--state-dir")
        .arg(&state)
        .arg("--control-socket")
        .arg(&sock)
        .env("RUST_LOG", "warn")
        .env_remove("WATCHDOG_USEC")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .spawn()
        .expect("latchd starts");
    let start = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "latchd did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // First start, then wait for the keypad to fall asleep (no deadline left).
    let r = call(&sock, r#"{"cmd":"press","keys":"✓1✓135792✓135792✓↩↩"}"#);
    assert_eq!(r["ok"], true, "{r}");
    loop {
        let s = call(&sock, r#"{"cmd":"status"}"#);
        if s["daemon"]["next_deadline_in_ms"].is_null() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let before = call(&sock, r#"{"cmd":"status"}"#)["daemon"]["wakeups"]
        .as_u64()
        .unwrap_or(0);
    let (v0, n0) = ctxt_switches(child.id());
    let threads0 = per_thread(child.id());
    std::thread::sleep(Duration::from_secs(secs));
    let (v1, n1) = ctxt_switches(child.id());
    let threads1 = per_thread(child.id());
    let after = call(&sock, r#"{"cmd":"status"}"#)["daemon"]["wakeups"]
        .as_u64()
        .unwrap_or(0);
    println!("idle_wakeups: {secs} s idle, no watchdog");
    println!("  engine loop wake-ups: {}", after - before);
    println!(
        "  process context switches (all threads): {} voluntary, {} involuntary",
        v1 - v0,
        n1 - n0
    );
    // By thread name: which part of the daemon wakes (a Matter build shows
    // rs-matter's own timers here).
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    for (id, (name, v, _)) in &threads1 {
        let before = threads0.get(id).map_or(0, |t| t.1);
        *by_name.entry(name.clone()).or_default() += v.saturating_sub(before);
    }
    for (name, v) in by_name {
        println!("    {name}: {v} voluntary");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "latchd exited with {status}");
}
