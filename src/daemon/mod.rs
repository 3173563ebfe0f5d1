//! The runtime: builds the lock from its parts, runs it, and shuts it down.
//!
//! ```text
//!                 SIGTERM/SIGINT, front-panel "q" ──► shutdown: CancellationToken
//!                                                            │ (every task selects on it)
//!   board (sim/linux) ── device tasks ──┐                    ▼
//!   control socket ──── SimControl ─────┼─► mpsc<Input> ─► engine task ─► Store (SQLite)
//!   BLE / remote services ──────────────┘   (InputSender)   │  owns Engine + Board
//!                                                           ├─► watch<Published>  → control socket, front panel
//!                                                           ├─► watch<Diagnostics> → D-Bus service
//!                                                           ├─► broadcast<EventRecord> → D-Bus EventLogged
//!                                                           └─► broadcast<(id, AppResult)>, <Notice> → services
//!   watchdog task ── probe ─► engine task (answers between inputs) ─► WATCHDOG=1
//! ```
//!
//! Start-up ([`run`]): open the store (creating the device key on first
//! start) → build the board → build the engine from `store.load()` → feed
//! it the sensors and `PowerUp` → `READY=1` → serve. Shutdown
//! ([`shutdown`]) is one function, read top to bottom.
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant as StdInstant;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::board::sim::{self, SimConfig, SimControl};
use crate::board::InputSender;
use crate::config::{BoardKind, Config};
use crate::core::{Engine, EngineConfig};
use crate::dbus::{
    BackendError, BackendFuture, BusChoice, DbusHandle, DeviceCheck, Diagnostics,
    DiagnosticsBackend, EventRecord,
};
use crate::store::{Store, StoreError, StoreOptions};

pub mod camera;
pub mod control;
pub mod engine_task;
pub mod matter_port;
pub mod notify;
pub mod panel;
pub mod status;
pub mod wireless;

pub use engine_task::{Clock, DaemonCounters, EngineTask, Published, TaskRequest};

/// Capacity of the engine's input queue. Device tasks wait when it is
/// full (back pressure) rather than drop a key press.
pub const INPUT_QUEUE: usize = 256;

/// How the daemon was asked to run: the config file resolved against the
/// command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    pub state_dir: PathBuf,
    /// Draw the terminal front panel (stdout is a TTY and not `--headless`).
    pub front_panel: bool,
    /// Serve the control socket here (sim board only).
    pub control_socket: Option<PathBuf>,
    /// Serve D-Bus diagnostics on this bus.
    pub dbus: Option<BusChoice>,
    /// B-10.6: SET held while the battery goes in (sim: `--set-held`).
    pub set_held: bool,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("board `{0}` is not available in this build: its backend is not wired in yet; use board = \"sim\"")]
    BoardUnavailable(&'static str),
    #[error("simulated board: {0}")]
    Sim(#[from] sim::SimError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("the engine task failed: {0}")]
    EngineTask(String),
    #[error("board = \"linux\" needs `board_file` in the config: the board file that says how the hardware is wired (see config/board-example.toml)")]
    NoBoardFile,
    #[error("Linux board: {0}")]
    LinuxBoard(String),
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error("video stream: {0}")]
    Video(String),
}

/// The Linux board from its board file: UART modules through their
/// adapters (reconciled against the database's credentials), then
/// `board::linux::board::build`. Returns whether SET was held at power-up.
#[cfg(feature = "board-linux")]
async fn linux_board(
    config: &Config,
    store: &Store,
    inputs: InputSender,
) -> Result<(crate::board::Board, bool), DaemonError> {
    use crate::board::linux::{board, config::BoardConfig};
    use crate::board::modules;
    let path = config.board_file.as_ref().ok_or(DaemonError::NoBoardFile)?;
    let cfg = BoardConfig::load(path).map_err(|e| DaemonError::LinuxBoard(e.to_string()))?;
    let persisted = store.load()?;
    // Hook for the face pipeline: `linux_peripherals` answers face commands
    // with a Fault until the camera's face service is wired in there.
    let peripherals =
        modules::linux_peripherals(&cfg, &persisted, modules::engine_sink(inputs.clone()));
    board::build(&cfg, inputs, peripherals)
        .await
        .map_err(|e| DaemonError::LinuxBoard(e.to_string()))
}

/// Create the state directory (0700: it holds the device key).
pub fn create_state_dir(path: &Path) -> Result<(), DaemonError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| DaemonError::StateDir {
            path: path.to_owned(),
            source,
        })
}

/// Serial and verification code: from the config, or derived from the
/// device key so every lock has its own and they survive restarts. The
/// code is the one owner pairing is authenticated with (B-5.1), printed in
/// the QR label and spoken by system information (B-4.10) — one code, 120
/// bits, so a man in the middle cannot guess it during a pairing window.
fn identity(
    config: &Config,
    passcode_key: &[u8; 32],
) -> (String, crate::ble::pairing::VerificationCode) {
    use crate::ble::pairing::{VerificationCode, CODE_BYTES};
    let derive = |label: &[u8]| -> [u8; 32] {
        // HMAC accepts any key length; this cannot fail for 32 bytes.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(passcode_key) {
            Ok(m) => m,
            Err(_) => return [0; 32],
        };
        // Labels contain letters, so they never equal a digits-only
        // passcode MACed under the same key.
        mac.update(label);
        mac.finalize().into_bytes().into()
    };
    let serial = if config.lock.serial.is_empty() {
        format!(
            "LD-{}",
            hex::encode_upper(&derive(b"latchd/serial/v1")[..5])
        )
    } else {
        config.lock.serial.clone()
    };
    let derived = || {
        let d = derive(b"latchd/verification-code/v2");
        let mut b = [0u8; CODE_BYTES];
        b.copy_from_slice(&d[..CODE_BYTES]);
        VerificationCode::from_bytes(b)
    };
    // The config was validated at load; a code that still does not parse
    // falls back to the derived one rather than to no code at all.
    let code = if config.lock.verification_code.is_empty() {
        derived()
    } else {
        VerificationCode::parse(&config.lock.verification_code).unwrap_or_else(|_| derived())
    };
    (serial, code)
}

/// What the D-Bus service asks the daemon.
struct Backend {
    store: Arc<Mutex<Store>>,
    requests: mpsc::Sender<TaskRequest>,
    diagnostics: watch::Receiver<Diagnostics>,
}

impl DiagnosticsBackend for Backend {
    fn self_test(&self) -> BackendFuture<'_, Vec<DeviceCheck>> {
        Box::pin(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.requests
                .send(TaskRequest::SelfTest(tx))
                .await
                .map_err(|_| BackendError("the lock engine has stopped".into()))?;
            rx.await
                .map_err(|_| BackendError("the lock engine has stopped".into()))
        })
    }

    fn recent_events(&self, limit: u32) -> BackendFuture<'_, Vec<EventRecord>> {
        Box::pin(async move {
            let stored = self
                .store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .recent_events(limit as usize)
                .map_err(|e| BackendError(e.to_string()))?;
            // The store gives newest first; the interface wants newest last.
            Ok(stored
                .iter()
                .rev()
                .map(|s| status::event_record(s.id.0, &s.event))
                .collect())
        })
    }

    fn export(&self) -> BackendFuture<'_, String> {
        Box::pin(async move {
            let (health, events) = {
                let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
                let events = store
                    .recent_events(200)
                    .map_err(|e| BackendError(e.to_string()))?;
                (store.health(), events)
            };
            let events: Vec<_> = events
                .iter()
                .rev()
                .map(|s| status::event_record(s.id.0, &s.event))
                .collect();
            let doc = serde_json::json!({
                "diagnostics": *self.diagnostics.borrow(),
                "storage": health,
                "events": events,
            });
            Ok(doc.to_string())
        })
    }
}

/// A started daemon: what tests and the front end may look at, and the
/// parts [`shutdown`] stops, in the order it stops them.
pub struct Running {
    /// Cancelled once: by a signal, the front panel's quit key, or
    /// [`Running::stop`]. Every task selects on it.
    pub shutdown: CancellationToken,
    /// The simulated board's buttons (sim board only).
    pub sim: Option<SimControl>,
    /// Engine status and counters, published after every input.
    pub published: watch::Receiver<Published>,
    /// The engine's input queue (its `sent` count is the barrier target).
    pub inputs: InputSender,
    /// The engine task; returns itself after finishing the motor move and
    /// draining what the devices reported.
    engine: JoinHandle<EngineTask>,
    /// The control socket's accept loop (removes the socket file on exit).
    control: Option<JoinHandle<()>>,
    /// The terminal front panel (restores the terminal on exit).
    panel: Option<JoinHandle<()>>,
    /// The D-Bus diagnostics service.
    dbus: Option<DbusHandle>,
    /// The systemd notifier and watchdog pinger.
    notifier: Arc<notify::Notifier>,
    watchdog: Option<notify::WatchdogHandle>,
    /// MQTT remote access (when `[remote]` names a broker).
    remote: Option<JoinHandle<()>>,
    /// Its counters (tests, diagnostics).
    pub remote_stats: Option<Arc<crate::remote::RemoteStats>>,
    /// The camera, its live stream and motion trigger (daemon/camera.rs;
    /// when `[video]` or `[face]` is enabled).
    video: Option<JoinHandle<()>>,
    /// The Wi-Fi monitor and the BLE service.
    wireless: wireless::Wireless,
    /// The Matter node's thread (issue 18; `[matter]`, feature `matter`).
    matter: matter_port::MatterNode,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

impl Running {
    /// Wait until the engine has handled every input sent so far.
    pub async fn barrier(&mut self) {
        let target = self.inputs.sent();
        while self.published.borrow_and_update().daemon.processed < target {
            if self.published.changed().await.is_err() {
                return;
            }
        }
    }

    /// Shut down now (as SIGTERM would) and wait until everything stopped.
    pub async fn stop(self) -> Result<(), DaemonError> {
        self.shutdown.cancel();
        shutdown(self).await
    }
}

/// Start the lock and run it until SIGTERM/SIGINT (or the front panel's
/// quit key); then shut down cleanly.
pub async fn run(opts: Options) -> Result<(), DaemonError> {
    let token = CancellationToken::new();
    spawn_signal_listener(token.clone());
    let running = start(opts, token.clone()).await?;
    token.cancelled().await;
    shutdown(running).await
}

/// Build every part and start serving; `shutdown` stops it all.
pub async fn start(opts: Options, shutdown: CancellationToken) -> Result<Running, DaemonError> {
    // 1. State: the store and the device key (created on first start).
    create_state_dir(&opts.state_dir)?;
    let (mut store, key) = Store::open(
        &opts.state_dir,
        StoreOptions {
            max_events: opts.config.store.max_events,
            max_db_bytes: (opts.config.store.max_db_bytes != 0)
                .then_some(opts.config.store.max_db_bytes),
        },
    )?;
    let passcode_key: [u8; 32] = *key.passcode_key();
    drop(key);
    let (serial, verification_code) = identity(&opts.config, &passcode_key);
    // Checked before anything runs: a bad [remote] table fails the start.
    let remote_settings = opts.config.remote.resolve()?;
    let remote_tls = match remote_settings.as_ref().and_then(|s| s.tls.as_ref()) {
        Some(m) => Some(crate::remote::tls_config(m)?),
        None => None,
    };
    let remote_serial = serial.clone();
    let matter_serial = serial.clone();
    let engine_config = EngineConfig {
        passcode_key,
        serial: serial.clone(),
        firmware: env!("CARGO_PKG_VERSION").into(),
        verification_code: verification_code.display().to_string(),
        low_battery_percent: opts.config.lock.low_battery_percent,
        matter_code: matter_port::label_code(&opts.config, &mut store),
    };

    // 2. The board, feeding the one input queue.
    let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
    let inputs = InputSender::new(input_tx);
    // B-10.6: the command line's `--set-held`, or SET held on the board.
    #[allow(unused_mut)] // only the Linux board sets it
    let mut set_held = opts.set_held;
    let (mut board, sim_control): (_, Option<SimControl>) = match opts.config.board {
        BoardKind::Sim => {
            let s = &opts.config.sim;
            let (board, control) = sim::build(
                SimConfig {
                    motor_travel: std::time::Duration::from_millis(s.motor_travel_ms),
                    finger_touches: s.finger_touches,
                    palm_touches: s.palm_touches,
                    battery_percent: s.battery_percent,
                    modules_file: Some(opts.state_dir.join("sim-modules.json")),
                    prompt_log_len: 200,
                    modules: s.modules,
                },
                inputs.clone(),
            )?;
            (board, Some(control))
        }
        #[cfg(feature = "board-linux")]
        BoardKind::Linux => {
            let (board, held) = linux_board(&opts.config, &store, inputs.clone()).await?;
            set_held |= held;
            (board, None)
        }
        other => return Err(DaemonError::BoardUnavailable(other.name())),
    };
    // The outdoor camera (when [video] or [face] wants it): its frames
    // become the board's snapshots and, with [face], its face source.
    let mut camera_rig = camera::start(
        &opts.config,
        &opts.state_dir,
        &store,
        &mut board,
        sim_control.as_ref(),
        &inputs,
    )?;

    // 3. The engine, from what the store holds.
    let persisted = store.load()?;
    let clock = Clock::new(opts.config.lock.trust_system_clock);
    let engine = Engine::new(engine_config.clone(), persisted, clock.now());
    let mut static_diag = status::StaticDiag {
        firmware: engine_config.firmware.clone(),
        serial,
        board: board.name.into(),
        started: StdInstant::now(),
        storage_health: String::new(),
        last_jam: 0,
        motor_cycles_before: store.get_counter(status::MOTOR_CYCLES)?.unwrap_or(0),
    };
    static_diag.refresh_storage(&store);
    let store = Arc::new(Mutex::new(store));

    // 4. Publication channels.
    let (published_tx, published_rx) = watch::channel(Published {
        engine: engine.status(),
        daemon: DaemonCounters::default(),
    });
    let (diag_tx, diag_rx) = watch::channel(static_diag.diagnostics(&engine.status()));
    let (events_tx, _) = broadcast::channel::<EventRecord>(256);
    let (replies_tx, _) = broadcast::channel(64);
    let (notices_tx, _) = broadcast::channel(64);
    let (requests_tx, requests_rx) = mpsc::channel(4);

    // 5. systemd: notifier and watchdog (probing the engine task).
    let notifier = Arc::new(notify::Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!("systemd notification disabled: {e}");
        notify::Notifier::disabled()
    }));
    let (watchdog, probes) = match notify::watchdog_interval_from_env() {
        Ok(Some(period)) => {
            let (probe, responder) = notify::probe_channel();
            (
                Some(notify::spawn_watchdog(notifier.clone(), period, probe)),
                Some(responder),
            )
        }
        Ok(None) => (None, None),
        Err(e) => {
            tracing::warn!("watchdog disabled: {e}");
            (None, None)
        }
    };

    // 6. The engine task: power up, then serve.
    let mut task = EngineTask {
        engine,
        engine_config,
        store: store.clone(),
        board,
        clock: clock.clone(),
        inputs: input_rx,
        internal: Default::default(),
        published: published_tx,
        diagnostics: diag_tx,
        events: events_tx.clone(),
        replies: replies_tx.clone(),
        notices: notices_tx.clone(),
        probes,
        requests: requests_rx,
        shutdown: shutdown.clone(),
        counters: DaemonCounters::default(),
        static_diag,
        credentials_changed: camera_rig.as_mut().and_then(|r| r.take_credentials_hook()),
    };
    task.power_up(set_held);
    let engine = tokio::spawn(task.run());

    // 7. Edges: control socket, front panel, D-Bus.
    let control = match (&sim_control, &opts.control_socket) {
        (Some(sim), Some(path)) => {
            let listener = control::bind(path)?;
            tracing::info!("control socket at {}", path.display());
            let ctx = control::ControlContext {
                sim: sim.clone(),
                published: published_rx.clone(),
                inputs: inputs.clone(),
                store: store.clone(),
            };
            Some(tokio::spawn(control::serve(
                listener,
                path.clone(),
                ctx,
                shutdown.clone(),
            )))
        }
        _ => None,
    };
    let panel = match (&sim_control, opts.front_panel) {
        (Some(sim), true) => Some(tokio::spawn(panel::run(
            sim.clone(),
            published_rx.clone(),
            Some(events_tx.subscribe()),
            shutdown.clone(),
        ))),
        _ => None,
    };
    let dbus = match opts.dbus.clone() {
        Some(bus) => {
            let backend = Arc::new(Backend {
                store: store.clone(),
                requests: requests_tx,
                diagnostics: diag_rx.clone(),
            });
            match crate::dbus::serve(bus, diag_rx, backend, events_tx.subscribe()).await {
                Ok(h) => Some(h),
                Err(e) => {
                    // Diagnostics are for technicians; a lock that refuses
                    // to run without them would be worse.
                    tracing::error!("D-Bus diagnostics not available: {e}");
                    None
                }
            }
        }
        None => None,
    };

    // One long-term key for the lock on both app channels: an app paired
    // over BLE talks to the same key through the broker.
    let lock_key = Arc::new(crate::remote::lock_keypair(&passcode_key));
    let wireless = wireless::start(
        &opts.config,
        wireless::WirelessContext {
            serial: remote_serial.clone(),
            lock_key: lock_key.clone(),
            code: Arc::new(verification_code),
            inputs: inputs.clone(),
            replies: replies_tx.clone(),
            published: published_rx.clone(),
            store: store.clone(),
            clock: clock.clone(),
        },
        shutdown.clone(),
    )
    .await;

    let matter_replies = replies_tx.clone();
    let matter_clock = clock.clone();
    let remote_stats = remote_settings
        .as_ref()
        .map(|_| Arc::new(crate::remote::RemoteStats::default()));
    let remote_snapshots = match (&remote_settings, &camera_rig) {
        (Some(s), Some(rig)) if s.snapshots => Some(rig.snapshots_saved()),
        (Some(s), None) if s.snapshots => {
            tracing::warn!(
                "[remote] publish_snapshots is on but no camera runs ([video] or [face]): nothing to publish"
            );
            None
        }
        _ => None,
    };
    let remote = match (remote_settings, &remote_stats) {
        (Some(settings), Some(stats)) => Some(crate::remote::spawn(
            crate::remote::RemoteContext {
                settings,
                tls: remote_tls,
                serial: remote_serial,
                firmware: env!("CARGO_PKG_VERSION").into(),
                lock_key,
                store: store.clone(),
                inputs: inputs.clone(),
                clock,
                published: published_rx.clone(),
                replies: replies_tx,
                events: events_tx.subscribe(),
                notices: notices_tx.subscribe(),
                snapshots: remote_snapshots,
                stats: stats.clone(),
            },
            shutdown.clone(),
        )),
        _ => None,
    };

    // The Matter node: a third app channel, through its own narrow port.
    let matter = matter_port::MatterNode::start(
        &opts.config,
        matter_port::PortParts {
            inputs: inputs.clone(),
            replies: matter_replies,
            published: published_rx.clone(),
            records: events_tx.subscribe(),
            store: store.clone(),
            clock: matter_clock,
            serial: matter_serial,
        },
        crate::matter::Radios::default(),
        shutdown.clone(),
    );

    // The camera's live stream (B-9.2) and motion trigger, when configured.
    let video = match camera_rig {
        Some(rig) => Some(
            rig.serve(
                &opts.config,
                published_rx.clone(),
                inputs.clone(),
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };

    if let Err(e) = notifier.ready("serving") {
        tracing::warn!("{e}");
    }
    tracing::info!(
        board = opts.config.board.name(),
        state_dir = %opts.state_dir.display(),
        "latchd is running"
    );

    Ok(Running {
        shutdown,
        sim: sim_control,
        published: published_rx,
        inputs,
        engine,
        control,
        panel,
        dbus,
        notifier,
        watchdog,
        remote,
        remote_stats,
        video,
        wireless,
        matter,
    })
}

/// Stop everything, top to bottom. The token has been cancelled.
async fn shutdown(r: Running) -> Result<(), DaemonError> {
    tracing::info!("shutting down");
    // 1. Tell systemd we are stopping (it will not treat slowness as a hang).
    if let Err(e) = r.notifier.stopping() {
        tracing::warn!("{e}");
    }
    // 2. The engine task saw the same token: it finishes the motor move in
    //    progress, hands the engine what the devices reported (so the last
    //    transaction commits), and returns. Until it does, inputs still flow.
    let task = r
        .engine
        .await
        .map_err(|e| DaemonError::EngineTask(e.to_string()));
    // 3. The edges: they also saw the token; wait so the control socket file
    //    is removed and the terminal restored before we return.
    if let Some(c) = r.control {
        let _ = c.await;
    }
    if let Some(p) = r.panel {
        let _ = p.await;
    }
    r.wireless.join().await;
    r.matter.join().await;
    if let Some(m) = r.remote {
        let _ = m.await;
    }
    if let Some(v) = r.video {
        let _ = v.await;
    }
    if let Some(d) = r.dbus {
        if let Err(e) = d.shutdown().await {
            tracing::warn!("{e}");
        }
    }
    // 4. No more pings: we are exiting on purpose.
    if let Some(w) = r.watchdog {
        w.stop();
    }
    // 5. Dropping the task drops the board and then the last handle on the
    //    store, which closes the database (WAL checkpointed by SQLite).
    let task = task?;
    tracing::info!(
        wakeups = task.counters.wakeups,
        inputs = task.counters.processed,
        "stopped cleanly"
    );
    drop(task);
    Ok(())
}

/// SIGTERM (systemd stop) and SIGINT (Ctrl-C) both mean "shut down cleanly".
fn spawn_signal_listener(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot listen for SIGTERM/SIGINT: {e}");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
            _ = shutdown.cancelled() => return,
        }
        shutdown.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_identity_is_stable_and_well_formed() {
        let config = Config::default();
        let (s1, c1) = identity(&config, &[7; 32]);
        let (s2, c2) = identity(&config, &[7; 32]);
        assert_eq!(s1, s2);
        assert_eq!(*c1.display(), *c2.display());
        assert!(s1.starts_with("LD-") && s1.len() == 13, "{s1}");
        // 24 base32 characters in six groups of four.
        let shown = c1.display();
        assert_eq!(shown.len(), 29, "{}", *shown);
        assert!(shown
            .chars()
            .all(|c| c == '-' || c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
        let (s3, c3) = identity(&config, &[8; 32]);
        assert_ne!(s3, s1);
        assert_ne!(*c3.display(), *shown);
    }
}
