//! The terminal front panel on a real PTY: it draws the lock, takes keys,
//! quits on "q" with exit 0, and leaves the terminal as it found it
//! (alternate screen left, cursor shown).
use std::fs::File;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::pty::pty_pair;

fn wait_for(rx: &mpsc::Receiver<Vec<u8>>, seen: &mut Vec<u8>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(seen).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "never saw {needle:?} in {}",
            String::from_utf8_lossy(seen)
        );
        if let Ok(chunk) = rx.recv_timeout(left) {
            seen.extend(chunk);
        }
    }
}

#[test]
fn front_panel_draws_takes_keys_and_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (master, slave, _) = pty_pair(Some(nix::pty::Winsize {
        ws_row: 50,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }));
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchd"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .env("TERM", "xterm-256color")
        .spawn()
        .unwrap();
    let master = File::from(master);
    let mut reader = master.try_clone().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    wait_for(&rx, &mut seen, "FRONT (outside)");
    wait_for(&rx, &mut seen, "choose_direction");
    // "✓" (Enter) then "1": right-hand door; the panel shows the next step.
    let mut w = &master;
    w.write_all(b"\r").unwrap();
    w.write_all(b"1").unwrap();
    wait_for(&rx, &mut seen, "Door direction set.");
    seen.clear();
    w.write_all(b"q").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    // Drain what is left, then check the terminal was restored.
    std::thread::sleep(Duration::from_millis(100));
    while let Ok(chunk) = rx.try_recv() {
        seen.extend(chunk);
    }
    let out = String::from_utf8_lossy(&seen);
    assert!(
        out.contains("\x1b[?1049l"),
        "alternate screen not left: {out:?}"
    );
    assert!(out.contains("\x1b[?25h"), "cursor not shown again: {out:?}");
    let termios = nix::sys::termios::tcgetattr(&master).unwrap();
    assert!(
        termios
            .local_flags
            .contains(nix::sys::termios::LocalFlags::ICANON),
        "terminal left in raw mode"
    );
}
