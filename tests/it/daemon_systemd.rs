//! Under systemd (`Type=notify`, `WatchdogSec=`): latchd says READY=1 once
//! it serves, pings WATCHDOG=1 while its engine answers probes, and says
//! STOPPING=1 on SIGTERM before exiting 0. systemd is played by a Unix
//! datagram socket in NOTIFY_SOCKET.
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

fn next_message(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock
        .recv(&mut buf)
        .expect("a notification before the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn wait_for(sock: &UnixDatagram, what: &str) {
    // Bounded so a missing message fails instead of hanging; not a timing
    // assertion (pings come every 100 ms here).
    for _ in 0..200 {
        if next_message(sock).lines().any(|l| l == what) {
            return;
        }
    }
    panic!("no {what}");
}

#[test]
fn ready_watchdog_and_stopping_reach_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_latchd"))
        .arg("--headless")
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000")
        .env("JOURNAL_STREAM", "8:12345")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&sock, "READY=1");
    wait_for(&sock, "WATCHDOG=1");
    wait_for(&sock, "WATCHDOG=1");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for(&sock, "STOPPING=1");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", out.status);
    // Under the journal: no colour codes, no timestamps of our own.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("latchd is running"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "ANSI colours in journal output: {log:?}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("20")),
        "timestamps in journal output: {log}"
    );
}
