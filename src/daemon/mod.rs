//! The runtime: builds the lock from its parts, runs it, and shuts it down.
//!
//! ```text
//!                 SIGTERM/SIGINT, front-panel "q" ──► shutdown: CancellationToken
//!                                                            │ (every task selects on it)
//!   board (sim/linux) ── device tasks ──┐                    ▼
//!   front-ends (panel, control socket) ─┼─► mpsc<Input> ─► engine task ─► store thread (SQLite)
//!   channels (BLE, MQTT, D-Bus) ─ Link ─┘   (InputSender)   │  owns Engine + Board
//!                                                           ├─► watch<Published>, watch<AppAccess>
//!                                                           ├─► watch<Diagnostics> → D-Bus service
//!                                                           ├─► broadcast<EventRecord> → D-Bus, MQTT, panel
//!                                                           └─► broadcast<(id, AppResult)>, <OwnerNotice>
//!   watchdog task ── probe ─► engine task (answers between inputs) ─► WATCHDOG=1
//! ```
//!
//! [`start`] is a builder read top to bottom, one step per module:
//!
//! 1. [`state`]: open the store (creating the device key on first start),
//!    load it once, derive the lock's identity, resolve `[remote]`;
//! 2. [`hardware`]: build the board complete — devices, modules, camera, face
//!    recognition with its liveness check — before the engine sees it
//!    (nothing is swapped into it afterwards);
//! 3. spawn the engine task ([`engine_task`]) with the store on its own
//!    thread, and make the one [`Link`](crate::link::Link) every channel uses ([`channels`]);
//! 4. [`front`]: attach the front-ends (front panel, control socket);
//! 5. [`services`]: attach D-Bus, Wi-Fi and BLE, MQTT, the video stream,
//!    the NTP-synchronisation watcher ([`timedate`]);
//!
//! then `READY=1` and serve until shutdown. `shutdown` is one function,
//! read top to bottom.
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::board::sim::{self, SimControl};
use crate::config::Config;
use crate::core::users::AppAccess;
use crate::core::Engine;
use crate::dbus::BusChoice;
use crate::link::{Clock, InputSender, Link, Published};
use crate::store::{StoreError, StoreHandle, StoreReads, StoreThread};

pub mod camera;
pub mod channels;
pub mod clock_sync;
pub mod control;
pub mod engine_task;
pub mod front;
pub mod hardware;
pub mod matter_port;
pub mod notify;
pub mod pairing_code;
pub mod panel;
pub mod services;
pub mod state;
pub mod status;
pub mod timedate;

pub use channels::{Channels, INPUT_QUEUE};
pub use engine_task::EngineTask;
pub use state::create_state_dir;

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
    #[error("config `lock.time_zone`: {0}")]
    TimeZone(#[from] crate::zone::ZoneError),
    #[error("board `{0}` is not in this build: rebuild latchd with --features board-{0}, or use board = \"sim\"")]
    BoardUnavailable(&'static str),
    #[error("simulated board: {0}")]
    Sim(#[from] sim::SimError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("the engine task failed: {0}")]
    EngineTask(#[source] tokio::task::JoinError),
    #[error("opening the lock's state failed: {0}")]
    StartTask(#[source] tokio::task::JoinError),
    #[error("board = \"linux\" needs `board_file` in the config: the board file that says how the hardware is wired (see config/board-example.toml)")]
    NoBoardFile,
    #[cfg(feature = "board-linux")]
    #[error("board file: {0}")]
    BoardFile(#[from] crate::board::linux::config::BoardConfigError),
    #[cfg(feature = "board-linux")]
    #[error("Linux board: {0}")]
    LinuxBoard(#[from] crate::board::linux::board::LinuxBoardError),
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error("video stream: camera: {0}")]
    SimCamera(#[from] sim::camera::SimCameraError),
    #[cfg(feature = "board-linux")]
    #[error("video stream: camera: {0}")]
    Camera(#[from] crate::board::linux::camera::CameraError),
    #[error(
        "video stream: camera: `face.liveness` = \"ir\" needs `face.sim_ir_dir` on the sim board"
    )]
    NoSimIrDir,
    #[error("video stream: {0}")]
    Video(#[from] crate::video::VideoError),
    /// A factory reset retired the device key; the daemon stopped so that
    /// it starts again under a new one (exit status 75).
    #[error(
        "factory reset: the device key was retired; start latchd again to run under a new one"
    )]
    KeyRotation,
}

impl DaemonError {
    /// The process exit status for this error: 75 (restart for a new
    /// key, `store::keystore::EXIT_ROTATE`) or 1.
    pub fn exit_status(&self) -> u8 {
        use crate::store::keystore::{KeystoreError, EXIT_ROTATE};
        match self {
            DaemonError::KeyRotation
            | DaemonError::Store(StoreError::Keystore(KeystoreError::RestartToRotate)) => {
                EXIT_ROTATE
            }
            _ => 1,
        }
    }
}

/// A started daemon: what tests and the front end may look at, and the
/// parts `shutdown` stops, in the order it stops them.
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
    /// MQTT counters (tests, diagnostics), when `[remote]` is on.
    pub remote_stats: Option<Arc<crate::remote::RemoteStats>>,
    /// Where the radio services report themselves (tests play a service).
    pub health: crate::link::HealthBoard,
    /// The daemon's clock (tests play timedate's NTP flag).
    pub clock: Clock,
    /// The link every channel gets: tests drive the app protocol's
    /// dispatcher through it as BLE does, without a radio.
    pub link: Link,
    /// The engine task; returns itself after finishing the motor move and
    /// draining what the devices reported.
    engine: JoinHandle<EngineTask>,
    /// The thread that owns the writer connection; stopped last.
    store: StoreThread,
    /// The front panel and the control socket.
    front: front::FrontEnds,
    /// D-Bus, Wi-Fi, BLE, MQTT, video.
    services: services::Services,
    /// The systemd notifier and watchdog pinger.
    systemd: notify::Systemd,
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
    let state_dir = opts.state_dir.clone();
    let config = opts.config.clone();
    let running = start(opts, token.clone()).await?;
    token.cancelled().await;
    shutdown(running).await?;
    if crate::store::keystore::rotation_requested(&state_dir) {
        // A factory reset: the Wi-Fi profiles the lock made go with the
        // household (issue 13 item 5), before the restart under a new key.
        services::forget_wifi(&config).await;
        // And any bundle an owner streamed: it was theirs.
        services::forget_streamed_bundles(&config, &state_dir);
        return Err(DaemonError::KeyRotation);
    }
    Ok(())
}

/// Build every part and start serving; `shutdown` stops it all.
pub async fn start(opts: Options, shutdown: CancellationToken) -> Result<Running, DaemonError> {
    // 1. State, read once; the engine from what the store holds.
    let (state, storage) = state::State::open_off_runtime(&opts).await?;
    // The board's RTC first (issue 17 item 5): a board that vouches for
    // its RTC but whose RTC lost power has no time to trust, whatever the
    // system clock says.
    let rtc = clock_sync::read_rtc(opts.config.lock.rtc());
    let trust_rtc = opts.config.lock.trust_system_clock;
    let mut clock = Clock::new(trust_rtc && !matches!(rtc, Some(Err(_))));
    if let Some(device) = opts.config.lock.rtc() {
        clock = clock.with_rtc(device);
    }
    clock_sync::restore(state.owner_time_sync.as_ref(), &rtc, trust_rtc, &clock);
    let engine = Engine::new(
        state.engine_config.clone(),
        state.persisted.clone(),
        clock.now(),
    );
    let mut channels = Channels::new(engine.status(), AppAccess::from_persisted(&state.persisted));
    let update_rx = channels.update_rx.take();
    channels
        .health
        .set_ble(services::ble_at_start(&opts.config));

    // 2. The board, complete, feeding the one input queue.
    let hardware::BuiltBoard {
        board,
        sim,
        set_held: held_on_board,
        mut camera,
    } = hardware::build_board(
        &opts.config,
        &opts.state_dir,
        &state.persisted,
        state.fingerprint_link,
        &channels.inputs,
    )
    .await?;
    let set_held = opts.set_held || held_on_board; // B-10.6: `--set-held` or SET held

    // 3. The store on its thread, the link every channel gets, the engine.
    let (store, store_thread) = StoreHandle::spawn(storage.writer)?;
    let link = channels.link(
        &clock,
        store.clone(),
        StoreReads::new(storage.reader),
        opts.config.prompts.language,
        services::bundle_stream(&opts.config, &opts.state_dir),
    );
    let diagnostics = channels.diagnostics.subscribe();
    let mut systemd = notify::Systemd::from_env();
    let start = engine_task::EngineStart {
        static_diag: status::StaticDiag::at_start(&state, board.name)
            .with_wifi(opts.config.wifi.backend),
        engine,
        engine_config: state.engine_config.clone(),
        board,
        set_held,
        clock,
        credentials_changed: camera.as_mut().and_then(|c| c.take_credentials_hook()),
        pairing_generation_changed: Some(state.pairing_codes.follow(state.current_code.clone())),
        probes: systemd.take_probes(),
    };
    let engine = engine_task::spawn(start, channels, store, shutdown.clone()).await;

    // 4. Front-ends; 5. services.
    let front = front::attach(&opts, sim.as_ref(), &link, &shutdown)?;
    let dbus = services::dbus(opts.dbus.clone(), &link, diagnostics).await;
    let (wifi, ble, provisioning) = services::radios(&opts.config, &state, &link, &shutdown).await;
    let (remote, remote_stats) = services::remote(&state, &link, camera.as_ref(), &shutdown);
    let video = services::video(&opts.config, camera, &link, &shutdown).await?;
    let timedate = services::timedate(&opts.config, link.clock(), &shutdown);
    let matter = services::matter(&opts.config, &state, &link, provisioning, &shutdown);
    let update = services::update(&opts.config, &opts.state_dir, &link, update_rx, &shutdown);

    systemd.ready();
    tracing::info!(
        board = opts.config.board.name(),
        state_dir = %opts.state_dir.display(),
        "latchd is running"
    );
    Ok(Running {
        shutdown,
        sim,
        published: link.published(),
        inputs: link.inputs().clone(),
        remote_stats: remote_stats.clone(),
        health: link.health().clone(),
        clock: link.clock().clone(),
        link: link.clone(),
        engine,
        store: store_thread,
        front,
        services: services::Services {
            wifi,
            ble,
            remote,
            remote_stats,
            video,
            dbus,
            timedate,
            update,
        },
        systemd,
        matter,
    })
}

/// Stop everything, top to bottom. The token has been cancelled.
async fn shutdown(mut r: Running) -> Result<(), DaemonError> {
    tracing::info!("shutting down");
    // 1. Tell systemd we are stopping (it will not treat slowness as a hang).
    r.systemd.stopping();
    // 2. The engine task saw the same token: it finishes the motor move in
    //    progress, hands the engine what the devices reported (so the last
    //    transaction commits), saves the lockout, and returns. Until it
    //    does, inputs still flow.
    let task = r.engine.await.map_err(DaemonError::EngineTask);
    // 3. The edges: they also saw the token; wait so the control socket file
    //    is removed and the terminal restored before we return.
    let front = [r.front.control, r.front.panel];
    let s = r.services;
    for t in front
        .into_iter()
        .chain([s.wifi, s.ble, s.remote, s.video, s.timedate, s.update])
        .flatten()
    {
        let _ = t.await;
    }
    r.matter.join().await;
    if let Some(d) = s.dbus {
        if let Err(e) = d.shutdown().await {
            tracing::warn!("{e}");
        }
    }
    // 4. No more pings: we are exiting on purpose.
    r.systemd.stop_watchdog();
    // 5. Dropping the task drops the board (motor coasted); then the store
    //    thread runs what is queued and closes the database (SQLite
    //    checkpoints the WAL). Nothing writes after this.
    let task = task?;
    tracing::info!(
        wakeups = task.counters.wakeups,
        inputs = task.counters.processed,
        "stopped cleanly"
    );
    drop(task);
    let store = r.store;
    if tokio::task::spawn_blocking(move || store.stop())
        .await
        .is_err()
    {
        tracing::error!("the store thread did not stop cleanly");
    }
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
