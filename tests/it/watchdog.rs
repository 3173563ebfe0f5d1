//! The systemd watchdog, against a notify socket this test binds (the same
//! kind of Unix datagram socket systemd passes in `NOTIFY_SOCKET`).
//!
//! `WATCHDOG_USEC=200000` → pings every ~100 ms while the engine answers
//! probes; none while the engine loop is stalled through `StallHook`; and
//! they resume when it turns again. Bounds are counts with wide margins,
//! never tight timings: a loaded CI machine may delay timers, not invent pings.
use std::sync::Arc;
use std::time::Duration;

use latchd::daemon::notify::{
    parse_watchdog, probe_channel, spawn_watchdog, Heartbeat, Notifier, StallHook,
};
use tokio::net::UnixDatagram;

const HANG_GUARD: Duration = Duration::from_secs(20);

/// The systemd end: a bound datagram socket and its path.
struct NotifySocket {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    fn notifier(&self) -> Arc<Notifier> {
        Arc::new(Notifier::connect(self.path.as_os_str()).expect("notifier"))
    }

    async fn recv(&self) -> String {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(HANG_GUARD, self.socket.recv(&mut buf))
            .await
            .expect("a datagram arrives")
            .expect("recv");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Count `WATCHDOG=1` datagrams arriving during `window`.
    async fn count_pings(&self, window: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + window;
        let mut pings = 0;
        let mut buf = [0u8; 512];
        while let Ok(received) = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await
        {
            let n = received.expect("recv");
            assert_eq!(&buf[..n], b"WATCHDOG=1");
            pings += 1;
        }
        pings
    }
}

fn watchdog_period() -> Duration {
    let pid = std::process::id().to_string();
    parse_watchdog(Some("200000"), Some(&pid), std::process::id())
        .expect("valid WATCHDOG_USEC")
        .expect("watchdog enabled for this pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_follow_the_engine_and_stop_when_it_stalls() {
    let systemd = NotifySocket::bind();
    let notifier = systemd.notifier();
    notifier.ready("serving").expect("READY=1");
    assert_eq!(systemd.recv().await, "READY=1\nSTATUS=serving");

    let period = watchdog_period();
    assert_eq!(period, Duration::from_millis(200));

    // A stand-in for the engine task's loop: answer probes between inputs,
    // and pass the stall gate at the top of each turn.
    let (probe, mut responder) = probe_channel();
    let hook = StallHook::new();
    let engine_hook = hook.clone();
    let engine = tokio::spawn(async move {
        loop {
            engine_hook.pass().await;
            match responder.recv().await {
                Some(p) => p.answer(),
                None => return,
            }
        }
    });
    let watchdog = spawn_watchdog(notifier.clone(), period, probe);

    // ~10 pings in one second at period/2 = 100 ms.
    let healthy = systemd.count_pings(Duration::from_secs(1)).await;
    assert!(
        (4..=15).contains(&healthy),
        "{healthy} pings in 1 s, expected about 10"
    );

    // Stall: at most the probe already taken gets answered, plus a ping
    // sent just before the stall but read after it (seen once under a
    // loaded CI-like machine); then silence.
    hook.stall();
    let stalled = systemd.count_pings(Duration::from_secs(1)).await;
    assert!(stalled <= 2, "{stalled} pings while the engine was stalled");
    assert!(
        watchdog.pings_withheld() >= 2,
        "withheld {}",
        watchdog.pings_withheld()
    );

    // Recovery before systemd's deadline: pings resume.
    hook.resume();
    let resumed = systemd.count_pings(Duration::from_secs(1)).await;
    assert!(resumed >= 3, "{resumed} pings after resuming");
    assert!(watchdog.pings_sent() >= (healthy + resumed) as u64);

    watchdog.stop();
    notifier.stopping().expect("STOPPING=1");
    // Drain any ping sent just before stop() took effect.
    loop {
        let msg = systemd.recv().await;
        if msg != "WATCHDOG=1" {
            assert_eq!(msg, "STOPPING=1");
            break;
        }
    }
    engine.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_liveness_stops_pings_when_beats_stop() {
    let systemd = NotifySocket::bind();
    let period = watchdog_period();
    let heartbeat = Heartbeat::new();
    let beating = heartbeat.clone();
    let hook = StallHook::new();
    let engine_hook = hook.clone();
    // An engine loop that turns every 10 ms and beats each turn.
    let engine = tokio::spawn(async move {
        loop {
            engine_hook.pass().await;
            beating.beat();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let watchdog = spawn_watchdog(systemd.notifier(), period, heartbeat.checker());

    let healthy = systemd.count_pings(Duration::from_secs(1)).await;
    assert!(
        (4..=15).contains(&healthy),
        "{healthy} pings in 1 s, expected about 10"
    );

    hook.stall();
    // Let the last beat before the stall be consumed by one check.
    let stalled = systemd.count_pings(Duration::from_secs(1)).await;
    assert!(stalled <= 1, "{stalled} pings while the heartbeat stopped");
    watchdog.stop();
    engine.abort();
}

#[test]
fn a_watchdog_meant_for_another_process_is_ignored() {
    let other = (std::process::id() + 1).to_string();
    assert_eq!(
        parse_watchdog(Some("200000"), Some(&other), std::process::id()).expect("parses"),
        None
    );
}

/// The real daemon under a fake systemd: READY=1 once it serves, pings at
/// about half of WATCHDOG_USEC, STOPPING=1 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latchd_binary_speaks_the_notify_protocol() {
    let systemd = NotifySocket::bind();
    let state = tempfile::tempdir().expect("state dir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_latchd"))
        .arg("--headless")
        .arg("--state-dir")
        .arg(state.path())
        .env("NOTIFY_SOCKET", &systemd.path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn latchd");

    // Pings may start before READY=1; wait for READY, however long start-up takes.
    loop {
        let msg = systemd.recv().await;
        if msg.starts_with("READY=1") {
            break;
        }
        assert_eq!(msg, "WATCHDOG=1", "unexpected notification before READY");
    }
    let pings = systemd.count_pings(Duration::from_secs(1)).await;
    assert!(
        (3..=15).contains(&pings),
        "{pings} pings in 1 s from latchd, expected about 10"
    );

    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    loop {
        let msg = systemd.recv().await;
        if msg != "WATCHDOG=1" {
            assert!(msg.starts_with("STOPPING=1"), "got {msg:?}");
            break;
        }
    }
    let status = tokio::time::timeout(HANG_GUARD, child.wait())
        .await
        .expect("latchd exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "latchd exited with {status}");
}
