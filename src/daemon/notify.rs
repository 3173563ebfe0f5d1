//! systemd readiness notification (`sd_notify`) and the watchdog.
//!
//! The unit is `Type=notify` with `WatchdogSec=`: systemd passes the path
//! of a Unix datagram socket in `NOTIFY_SOCKET` (a filesystem path, or an
//! abstract address written `@name`) and the watchdog period in
//! `WATCHDOG_USEC` (for the process in `WATCHDOG_PID`, when set). We send
//! newline-separated `KEY=VALUE` datagrams:
//!
//! ```text
//!   latchd                                   systemd (NOTIFY_SOCKET)
//!     │ READY=1\nSTATUS=serving               │  unit becomes "active"
//!     │──────────────────────────────────────▶│
//!     │ WATCHDOG=1   every WATCHDOG_USEC / 2  │  no ping within WATCHDOG_USEC
//!     │──────────────────────────────────────▶│  → SIGABRT, Restart=on-failure
//!     │ STOPPING=1                            │
//!     │──────────────────────────────────────▶│
//! ```
//!
//! A ping proves more than "the process exists" only if it is withheld when
//! the lock has stopped working. The watchdog task therefore asks a
//! [`Liveness`] check before every ping:
//!
//! ```text
//!  watchdog task ──probe (oneshot)──▶ engine task's select! loop
//!        ▲                                  │ answers between two inputs
//!        └──────────── reply ◀──────────────┘
//!  reply within period/4 → WATCHDOG=1; none → no ping (systemd restarts us)
//! ```
//!
//! [`probe_channel`] is that round trip; it wakes the engine only as often
//! as the watchdog pings, which keeps "an idle lock makes no wake-ups but
//! the watchdog". A [`Heartbeat`] counter is the alternative for loops that
//! turn anyway. [`StallHook`] lets a test (or the simulator) make the engine
//! loop stall on purpose to see the pings stop.
//!
//! The protocol is small enough to implement here rather than link
//! libsystemd: the datagram is sent non-blocking, so a wedged systemd can
//! never wedge the lock.
use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Why a notification could not be set up or sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET=`{0}` is not an absolute path or an @abstract socket name; latchd only supports those (check the unit's NotifyAccess= and the systemd version)")]
    UnsupportedAddress(String),
    #[error("cannot create the sd_notify socket: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot send `{message}` to NOTIFY_SOCKET: {source}")]
    Send {
        message: String,
        #[source]
        source: io::Error,
    },
    #[error("WATCHDOG_USEC=`{0}` is not a number of microseconds")]
    BadWatchdogUsec(String),
    #[error("WATCHDOG_PID=`{0}` is not a process id")]
    BadWatchdogPid(String),
}

/// One `KEY=VALUE` line of the notify protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyState<'a> {
    /// Start-up finished; systemd reports the unit active.
    Ready,
    /// Free text shown by `systemctl status`.
    Status(&'a str),
    /// Shutdown began.
    Stopping,
    /// Keep-alive for `WatchdogSec=`.
    Watchdog,
}

impl NotifyState<'_> {
    fn write_line(&self, out: &mut String) {
        match self {
            NotifyState::Ready => out.push_str("READY=1"),
            NotifyState::Stopping => out.push_str("STOPPING=1"),
            NotifyState::Watchdog => out.push_str("WATCHDOG=1"),
            NotifyState::Status(s) => {
                out.push_str("STATUS=");
                // A newline would start a new KEY=VALUE line: a status text
                // must never be able to say READY=1 or anything else.
                out.extend(s.chars().map(|c| if c.is_control() { ' ' } else { c }));
            }
        }
    }
}

/// Where notifications go: systemd's socket, or nowhere when latchd runs
/// outside systemd (then every call is a successful no-op).
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// Use `NOTIFY_SOCKET` if set; without it notifications are no-ops.
    pub fn from_env() -> Result<Self, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(addr) if !addr.is_empty() => Notifier::connect(&addr),
            _ => Ok(Notifier::disabled()),
        }
    }

    /// Notifications that go nowhere.
    pub fn disabled() -> Self {
        Notifier { target: None }
    }

    /// Send to `addr`: an absolute path, or `@name` for an abstract socket.
    pub fn connect(addr: &OsStr) -> Result<Self, NotifyError> {
        let bytes = addr.as_bytes();
        let sockaddr = match bytes.first() {
            Some(b'/') => SocketAddr::from_pathname(std::path::Path::new(addr)),
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
            _ => {
                return Err(NotifyError::UnsupportedAddress(
                    addr.to_string_lossy().into_owned(),
                ))
            }
        }
        .map_err(|_| NotifyError::UnsupportedAddress(addr.to_string_lossy().into_owned()))?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        socket.set_nonblocking(true).map_err(NotifyError::Socket)?;
        Ok(Notifier {
            target: Some((socket, sockaddr)),
        })
    }

    /// Whether there is a systemd to talk to.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Send the states as one datagram.
    pub fn notify(&self, states: &[NotifyState<'_>]) -> Result<(), NotifyError> {
        let Some((socket, addr)) = &self.target else {
            return Ok(());
        };
        let mut message = String::new();
        for (i, state) in states.iter().enumerate() {
            if i > 0 {
                message.push('\n');
            }
            state.write_line(&mut message);
        }
        socket
            .send_to_addr(message.as_bytes(), addr)
            .map(|_| ())
            .map_err(|source| NotifyError::Send { message, source })
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[NotifyState::Ready, NotifyState::Status(status)])
    }

    /// `STATUS=...`.
    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[NotifyState::Status(status)])
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.notify(&[NotifyState::Stopping])
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.notify(&[NotifyState::Watchdog])
    }
}

/// The watchdog period systemd asked for, from the environment.
pub fn watchdog_interval_from_env() -> Result<Option<Duration>, NotifyError> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    parse_watchdog(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// The watchdog period for process `our_pid`, given `WATCHDOG_USEC` and
/// `WATCHDOG_PID`. `None` when there is no watchdog, it is 0 (disabled), or
/// it is meant for another process (a child that inherited the variables).
pub fn parse_watchdog(
    usec: Option<&str>,
    pid: Option<&str>,
    our_pid: u32,
) -> Result<Option<Duration>, NotifyError> {
    let Some(usec) = usec else { return Ok(None) };
    let usec: u64 = usec
        .trim()
        .parse()
        .map_err(|_| NotifyError::BadWatchdogUsec(usec.to_string()))?;
    if let Some(pid) = pid {
        let pid: u32 = pid
            .trim()
            .parse()
            .map_err(|_| NotifyError::BadWatchdogPid(pid.to_string()))?;
        if pid != our_pid {
            return Ok(None);
        }
    }
    Ok((usec > 0).then(|| Duration::from_micros(usec)))
}

/// Something that says whether the lock engine still turns.
pub trait Liveness: Send + 'static {
    /// `true` if the engine showed progress, waiting at most `within`.
    fn check(&mut self, within: Duration) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
}

/// A counter the engine bumps every turn of its loop; alive = it moved
/// since the last check. Only for loops that turn at least once per
/// watchdog half-period even when idle; otherwise use [`probe_channel`].
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    count: Arc<AtomicU64>,
}

impl Heartbeat {
    pub fn new() -> Self {
        Self::default()
    }

    /// Called by the engine task once per loop.
    pub fn beat(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// A [`Liveness`] check of this heartbeat.
    pub fn checker(&self) -> HeartbeatCheck {
        HeartbeatCheck {
            beat: self.clone(),
            last_seen: self.count.load(Ordering::Relaxed),
        }
    }
}

/// [`Liveness`] of a [`Heartbeat`].
#[derive(Debug)]
pub struct HeartbeatCheck {
    beat: Heartbeat,
    last_seen: u64,
}

impl Liveness for HeartbeatCheck {
    fn check(&mut self, within: Duration) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + within;
            loop {
                let now = self.beat.count.load(Ordering::Relaxed);
                if now != self.last_seen {
                    self.last_seen = now;
                    return true;
                }
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                // Short sleeps only while the engine has not beaten yet.
                tokio::time::sleep(within / 8).await;
            }
        })
    }
}

/// The watchdog's end of a probe round trip.
#[derive(Debug, Clone)]
pub struct EngineProbe {
    tx: mpsc::Sender<Probe>,
}

/// The engine's end: `select!` on [`ProbeResponder::recv`] next to the
/// input channel and answer each probe.
#[derive(Debug)]
pub struct ProbeResponder {
    rx: mpsc::Receiver<Probe>,
}

/// One "are you there?"; answering it proves the engine loop turned.
#[derive(Debug)]
pub struct Probe(oneshot::Sender<()>);

impl Probe {
    pub fn answer(self) {
        // The watchdog may have given up waiting; that is its business.
        let _ = self.0.send(());
    }
}

impl ProbeResponder {
    /// The next probe; `None` once the watchdog is gone.
    pub async fn recv(&mut self) -> Option<Probe> {
        self.rx.recv().await
    }
}

/// A probe round trip between the watchdog task and the engine task.
pub fn probe_channel() -> (EngineProbe, ProbeResponder) {
    // One slot: a probe not yet taken is as good as a new one.
    let (tx, rx) = mpsc::channel(1);
    (EngineProbe { tx }, ProbeResponder { rx })
}

impl Liveness for EngineProbe {
    fn check(&mut self, within: Duration) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            let (reply_tx, reply_rx) = oneshot::channel();
            let round_trip =
                async { self.tx.send(Probe(reply_tx)).await.is_ok() && reply_rx.await.is_ok() };
            tokio::time::timeout(within, round_trip)
                .await
                .unwrap_or(false)
        })
    }
}

/// A switch that makes a loop stop turning, to prove the watchdog notices.
/// The engine loop awaits [`StallHook::pass`] at the top of each turn; it
/// returns at once unless [`StallHook::stall`] was called.
#[derive(Debug, Clone)]
pub struct StallHook {
    stalled: Arc<watch::Sender<bool>>,
}

impl Default for StallHook {
    fn default() -> Self {
        StallHook {
            stalled: Arc::new(watch::channel(false).0),
        }
    }
}

impl StallHook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the next `pass()` block until `resume()`.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }

    /// Wait while stalled.
    pub async fn pass(&self) {
        let mut rx = self.stalled.subscribe();
        // The sender lives in `self`, so the channel cannot close here.
        let _ = rx.wait_for(|stalled| !*stalled).await;
    }
}

/// The running watchdog task.
#[derive(Debug)]
pub struct WatchdogHandle {
    task: JoinHandle<()>,
    pings: Arc<AtomicU64>,
    missed: Arc<AtomicU64>,
}

impl WatchdogHandle {
    /// `WATCHDOG=1` datagrams sent so far.
    pub fn pings_sent(&self) -> u64 {
        self.pings.load(Ordering::Relaxed)
    }

    /// Pings withheld because the liveness check failed.
    pub fn pings_withheld(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// Stop pinging (at shutdown, after `STOPPING=1`).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for WatchdogHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Ping systemd every `period / 2` while `liveness` passes.
///
/// Each check may take up to `period / 4`, so even a slow answer leaves the
/// gap between pings below `period`. A failed check only skips that ping:
/// if the engine recovers before systemd's deadline, pings resume.
pub fn spawn_watchdog<L: Liveness>(
    notifier: Arc<Notifier>,
    period: Duration,
    mut liveness: L,
) -> WatchdogHandle {
    let pings = Arc::new(AtomicU64::new(0));
    let missed = Arc::new(AtomicU64::new(0));
    let (pings_t, missed_t) = (pings.clone(), missed.clone());
    let half = period / 2;
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(half);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if liveness.check(period / 4).await {
                match notifier.watchdog() {
                    Ok(()) => {
                        pings_t.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!("{e}"),
                }
            } else {
                missed_t.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "lock engine did not answer the watchdog probe within {:?}; withholding WATCHDOG=1 so systemd restarts latchd if it stays stuck",
                    period / 4
                );
            }
        }
    });
    WatchdogHandle {
        task,
        pings,
        missed,
    }
}

/// The daemon's systemd integration: the notifier, and — when the unit
/// sets `WatchdogSec=` — the watchdog task with the probe the engine task
/// answers. Neither being available stops the lock; each is logged.
#[derive(Debug)]
pub struct Systemd {
    notifier: Arc<Notifier>,
    watchdog: Option<WatchdogHandle>,
    /// Taken by the engine task, which answers the watchdog's probes.
    probes: Option<ProbeResponder>,
}

impl Systemd {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC`; must run inside the runtime.
    pub fn from_env() -> Self {
        let notifier = Arc::new(Notifier::from_env().unwrap_or_else(|e| {
            tracing::warn!("systemd notification disabled: {e}");
            Notifier::disabled()
        }));
        let (watchdog, probes) = match watchdog_interval_from_env() {
            Ok(Some(period)) => {
                let (probe, responder) = probe_channel();
                (
                    Some(spawn_watchdog(notifier.clone(), period, probe)),
                    Some(responder),
                )
            }
            Ok(None) => (None, None),
            Err(e) => {
                tracing::warn!("watchdog disabled: {e}");
                (None, None)
            }
        };
        Systemd {
            notifier,
            watchdog,
            probes,
        }
    }

    /// The watchdog's probes, for the engine task (once).
    pub fn take_probes(&mut self) -> Option<ProbeResponder> {
        self.probes.take()
    }

    /// `READY=1`: the lock is serving.
    pub fn ready(&self) {
        if let Err(e) = self.notifier.ready("serving") {
            tracing::warn!("{e}");
        }
    }

    /// `STOPPING=1`: slowness from here on is not a hang.
    pub fn stopping(&self) {
        if let Err(e) = self.notifier.stopping() {
            tracing::warn!("{e}");
        }
    }

    /// No more pings: the daemon is exiting on purpose.
    pub fn stop_watchdog(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_env_is_parsed_and_checked() {
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(parse_watchdog(None, None, 7).ok(), Some(None));
        assert_eq!(
            parse_watchdog(Some("30000000"), None, 7).ok(),
            Some(ms(30_000))
        );
        assert_eq!(
            parse_watchdog(Some("200000"), Some("7"), 7).ok(),
            Some(ms(200))
        );
        // Meant for another process: not ours to ping.
        assert_eq!(
            parse_watchdog(Some("200000"), Some("8"), 7).ok(),
            Some(None)
        );
        assert_eq!(parse_watchdog(Some("0"), None, 7).ok(), Some(None));
        assert!(matches!(
            parse_watchdog(Some("30s"), None, 7),
            Err(NotifyError::BadWatchdogUsec(_))
        ));
        assert!(matches!(
            parse_watchdog(Some("1"), Some("x"), 7),
            Err(NotifyError::BadWatchdogPid(_))
        ));
    }

    #[test]
    fn relative_and_empty_addresses_are_refused() {
        assert!(matches!(
            Notifier::connect(OsStr::new("run/notify")),
            Err(NotifyError::UnsupportedAddress(_))
        ));
        assert!(matches!(
            Notifier::connect(OsStr::new("")),
            Err(NotifyError::UnsupportedAddress(_))
        ));
        assert!(!Notifier::disabled().is_enabled());
        assert!(Notifier::disabled().ready("x").is_ok());
    }

    #[test]
    fn sends_datagrams_to_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::connect(path.as_os_str()).expect("path");
        n.ready("serving\nREADY=1").expect("send");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).expect("recv");
        // The embedded newline cannot forge a second line.
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving READY=1");

        let name = format!("latchd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract");
        let rx = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        let n = Notifier::connect(OsStr::new(&format!("@{name}"))).expect("abstract addr");
        n.stopping().expect("send");
        let len = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"STOPPING=1");
    }

    #[tokio::test]
    async fn heartbeat_passes_only_after_a_beat() {
        let hb = Heartbeat::new();
        let mut check = hb.checker();
        assert!(!check.check(Duration::from_millis(5)).await);
        hb.beat();
        assert!(check.check(Duration::from_millis(5)).await);
        assert!(!check.check(Duration::from_millis(5)).await);
    }

    #[tokio::test]
    async fn probe_fails_when_nobody_answers() {
        let (mut probe, mut responder) = probe_channel();
        let engine = tokio::spawn(async move {
            if let Some(p) = responder.recv().await {
                p.answer();
            }
            // Keep the responder alive but never answer again.
            std::future::pending::<()>().await;
        });
        assert!(probe.check(Duration::from_secs(5)).await);
        assert!(!probe.check(Duration::from_millis(20)).await);
        engine.abort();
    }
}
