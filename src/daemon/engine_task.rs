//! The engine task: the only owner of the [`Engine`] and the [`Board`],
//! and the only writer of lock state.
//!
//! ```text
//!            ┌──────────── select! ────────────┐
//!  inputs ──►│ next Input                       │
//!  deadline ►│ sleep_until(next_deadline) → Tick│──► engine.handle(now, input)
//!  watchdog ►│ probe → answer (no engine call)  │          │ Vec<Action>, in order:
//!  selftest ►│ read every sensor                │          ▼
//!  health ──►│ radio, time source → publish     │
//!  shutdown ►│ cancelled → return               │   Persist ─► store thread: apply (one txn),
//!            └──────────────────────────────────┘     │        awaited: committed before the next action
//!                                                     │ ok ────► app keys changed? publish the snapshot
//!                                                     │ fails ─► drop the rest of the batch,
//!                                                     │          say Failure, rebuild engine
//!                                                     │          from store.load()
//!                                                     ├ Log ───► store thread: append_events + broadcast
//!                                                     ├ Reply/Notify ─► broadcast to services
//!                                                     └ the rest ─► Board::perform
//! ```
//!
//! The store lives on its own thread (`store/thread.rs`): the task awaits
//! each write there, so the order of actions is unchanged (a `Persist` is
//! on disk before anything after it happens) while an fsync never blocks
//! an async worker.
//!
//! No polling: with no input and no deadline the task sleeps in `select!`
//! until something arrives; every wake-up is counted
//! ([`DaemonCounters::wakeups`]) so tests and the bench can prove it.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant as TokioInstant;
use tokio_util::sync::CancellationToken;

use super::channels::Channels;
use super::notify::ProbeResponder;
use super::status;
use crate::board::{Board, DeviceError};
use crate::core::action::{Trace, UpdateCmd};
use crate::core::input::MotorReport;
use crate::core::types::{Change, Persisted};
use crate::core::users::AppAccess;
use crate::core::{Action, AppResult, Engine, EngineConfig, Event, Input, Prompt};
use crate::dbus::Diagnostics;
use crate::link::{
    event_record, Clock, DaemonCounters, EventRecord, OwnerNotice, Published, ServiceHealth,
    TaskRequest,
};
use crate::store::{StoreError, StoreHandle};

/// Everything the engine task owns or talks to. Built by `daemon::start`.
pub struct EngineTask {
    pub engine: Engine,
    /// Kept to rebuild the engine after a failed persist.
    pub engine_config: EngineConfig,
    /// The store's writer thread; every write of lock state goes here.
    pub store: StoreHandle,
    pub board: Board,
    pub clock: Clock,
    /// The one queue every device and service task feeds.
    pub inputs: mpsc::Receiver<Input>,
    /// Inputs the task generated itself (a motor command that failed
    /// becomes `MotorReport::Fault`); handled before the next queued one.
    pub internal: VecDeque<Input>,
    /// Status after every input: control socket, front panel.
    pub published: watch::Sender<Published>,
    /// The D-Bus diagnostics snapshot.
    pub diagnostics: watch::Sender<Diagnostics>,
    /// Each logged event, for D-Bus `EventLogged` and other subscribers.
    pub events: broadcast::Sender<EventRecord>,
    /// Answers to app requests, by request id (BLE/remote services).
    pub replies: broadcast::Sender<(u64, AppResult)>,
    /// Answers of the step in progress, sent once it is done and its
    /// status published ([`EngineTask::step`]).
    pub replies_due: Vec<(u64, AppResult)>,
    /// Owner notifications (away unlock, duress, doorbell, alarms).
    pub notices: broadcast::Sender<OwnerNotice>,
    /// The app keys and guest invites, republished after every commit
    /// that changes them (and after a reload): what the app channels
    /// check an unauthenticated frame against.
    pub app_access: watch::Sender<Arc<AppAccess>>,
    /// The watchdog's liveness probes.
    pub probes: Option<ProbeResponder>,
    pub requests: mpsc::Receiver<TaskRequest>,
    pub shutdown: CancellationToken,
    pub counters: DaemonCounters,
    pub static_diag: status::StaticDiag,
    /// The radio services' own reports (BLE, Wi-Fi connecting): a change
    /// republishes the diagnostics, so `BleState` follows the service.
    pub health: watch::Receiver<ServiceHealth>,
    /// The NTP flag: a change of time source republishes too.
    pub ntp: watch::Receiver<bool>,
    /// Told the stored credentials after every committed change to them
    /// (and after a reload): the face service's templates follow the store.
    pub credentials_changed: Option<CredentialsHook>,
    /// Told the pairing generation after a committed owner pairing or
    /// factory reset: the BLE service's verification code follows it.
    pub pairing_generation_changed: Option<PairingGenerationHook>,
    /// Commands for the update task (issue 20, `update::flow`).
    pub update_cmds: mpsc::UnboundedSender<UpdateCmd>,
}

/// See [`EngineTask::pairing_generation_changed`].
pub type PairingGenerationHook = Box<dyn FnMut(u32) + Send>;

/// See [`EngineTask::credentials_changed`].
pub type CredentialsHook = Box<dyn FnMut(&[crate::core::types::Credential]) + Send>;

/// Changes after which the credential list must be handed on again.
fn touches_credentials(c: &Change) -> bool {
    matches!(
        c,
        Change::PutCredential(_)
            | Change::DeleteCredential(_)
            | Change::DeleteUser(_)
            | Change::FactoryReset
    )
}

impl std::fmt::Debug for EngineTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineTask")
            .field("engine", &self.engine)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// What the engine task starts from, besides the daemon's channels.
pub struct EngineStart {
    pub engine: Engine,
    pub engine_config: EngineConfig,
    /// The board, complete.
    pub board: Board,
    /// B-10.6: SET held at power-up.
    pub set_held: bool,
    pub clock: Clock,
    pub static_diag: status::StaticDiag,
    /// See [`EngineTask::credentials_changed`].
    pub credentials_changed: Option<CredentialsHook>,
    /// See [`EngineTask::pairing_generation_changed`].
    pub pairing_generation_changed: Option<PairingGenerationHook>,
    /// The watchdog's probes, when systemd runs one.
    pub probes: Option<ProbeResponder>,
}

impl std::fmt::Debug for EngineStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineStart").finish_non_exhaustive()
    }
}

/// Power the engine up (sensors, then `PowerUp`, so the first status and
/// diagnostics are published before anyone subscribes) and run it on its
/// own task until `shutdown`.
pub async fn spawn(
    start: EngineStart,
    channels: Channels,
    store: StoreHandle,
    shutdown: CancellationToken,
) -> JoinHandle<EngineTask> {
    // The engine task holds the only publishing ends: when it returns,
    // every subscriber sees the channel close.
    let Channels {
        input_rx,
        published,
        diagnostics,
        app_access,
        events,
        replies,
        notices,
        request_rx,
        health,
        update_cmds,
        ..
    } = channels;
    let mut task = EngineTask {
        engine: start.engine,
        engine_config: start.engine_config,
        store,
        board: start.board,
        clock: start.clock.clone(),
        inputs: input_rx,
        internal: VecDeque::new(),
        published,
        diagnostics,
        events,
        replies,
        replies_due: Vec::new(),
        notices,
        app_access,
        probes: start.probes,
        requests: request_rx,
        shutdown,
        counters: DaemonCounters::default(),
        static_diag: start.static_diag,
        health: health.subscribe(),
        ntp: start.clock.ntp_changes(),
        credentials_changed: start.credentials_changed,
        pairing_generation_changed: start.pairing_generation_changed,
        update_cmds,
    };
    task.power_up(start.set_held).await;
    tokio::spawn(task.run())
}

impl EngineTask {
    /// Power-up: tell the engine where the sensors are, then `PowerUp`.
    pub async fn power_up(&mut self, set_held: bool) {
        let (readings, errors) = self.board.initial_inputs();
        for e in errors {
            tracing::error!("cannot read a sensor at start-up: {e}");
        }
        for input in readings {
            self.step(input).await;
        }
        self.step(Input::PowerUp { set_held }).await;
    }

    /// Run until shutdown is requested, then finish the motor move in
    /// progress and everything it reports. Returns the task itself so the
    /// caller can drop the board and store in a known order.
    pub async fn run(mut self) -> Self {
        loop {
            let deadline = self.engine.next_deadline().map(|d| self.clock.to_tokio(d));
            let input = tokio::select! {
                // Shutdown first, so a flood of inputs cannot delay it.
                biased;
                _ = self.shutdown.cancelled() => break,
                input = self.inputs.recv() => match input {
                    Some(input) => input,
                    None => break,
                },
                _ = sleep_until_opt(deadline), if deadline.is_some() => {
                    self.counters.ticks += 1;
                    Input::Tick
                },
                Some(req) = self.requests.recv() => {
                    self.answer(req);
                    continue;
                },
                // A radio or the time source changed on its own: the
                // diagnostics follow (no engine call, not an input).
                Ok(()) = self.health.changed() => {
                    self.publish();
                    continue;
                },
                Ok(()) = self.ntp.changed() => {
                    self.publish();
                    continue;
                },
                Some(probe) = recv_probe(&mut self.probes) => {
                    probe.answer();
                    self.checkpoint().await;
                    continue;
                },
            };
            self.counters.wakeups += 1;
            if !matches!(input, Input::Tick) {
                self.counters.processed += 1;
            }
            self.step(input).await;
        }
        self.finish().await;
        self
    }

    /// Shutdown: a bolt is never left half-thrown and the reports of the
    /// last move reach the engine (and so the store and log).
    async fn finish(&mut self) {
        for _ in 0..3 {
            if tokio::time::timeout(Duration::from_secs(5), self.board.settle())
                .await
                .is_err()
            {
                tracing::error!("the motor did not finish its move within 5 s at shutdown");
            }
            // Take what the devices reported; stop once they are quiet.
            while let Ok(Some(input)) =
                tokio::time::timeout(Duration::from_millis(100), self.inputs.recv()).await
            {
                self.counters.processed += 1;
                self.step(input).await;
            }
            if !self.board.motor.is_moving() {
                break;
            }
        }
        self.save_lockout().await;
    }

    /// The lockout as it stands now (B-7): a restart resumes the time
    /// that was left, not the time left at the last failure; and the
    /// trusted-time floor, if it rose since it was stored.
    async fn save_lockout(&mut self) {
        let changes = self.engine.shutdown_changes(self.clock.now());
        if let Err(e) = self.store.apply(changes).await {
            // The last persisted record stays: it can only be longer.
            tracing::warn!("cannot save the lockout at shutdown: {e}");
        }
    }

    /// At a watchdog ping: store the trusted-time floor if it rose by an
    /// hour while the lock sat idle (issue 13 item 3).
    async fn checkpoint(&mut self) {
        let changes = self.engine.checkpoint(self.clock.now());
        if changes.is_empty() {
            return;
        }
        if let Err(e) = self.store.apply(changes).await {
            tracing::warn!("cannot store the trusted-time floor: {e}");
        }
    }

    /// One input through the engine and its actions through the world.
    pub async fn step(&mut self, input: Input) {
        self.internal.push_back(input);
        while let Some(input) = self.internal.pop_front() {
            let now = self.clock.now();
            let motor_report = matches!(input, Input::Motor(_));
            if let Input::Motor(MotorReport::Jammed { .. }) = input {
                self.static_diag.last_jam = now.wall.map(|w| w.0).unwrap_or(0);
            }
            let actions = self.engine.handle(now, input);
            self.apply(actions).await;
            if motor_report {
                self.save_motor_cycles().await;
            }
        }
        self.publish();
        // Answers go out last: an app that hears "done" and asks again
        // (status, events) finds the batch's events stored and its status
        // published. Sent as soon as they were made, an owner's
        // `ReleaseLockout` answered `Ok` while the status still said
        // "locked out" (found by the soak, issue 15 item 4).
        for reply in self.replies_due.drain(..) {
            // No subscriber = the requester gave up; nothing to do.
            let _ = self.replies.send(reply);
        }
    }

    async fn apply(&mut self, actions: Vec<Action>) {
        let mut events: Vec<Event> = Vec::new();
        let mut persisted = false;
        // The newest event stored in this batch, and whether one was.
        let (mut last_event, mut logged_early) = (None, false);
        for action in actions {
            match action {
                Action::Persist(changes) => {
                    // Events before the change go to the log first, in order.
                    if let Some(id) = self.log_events(std::mem::take(&mut events)).await {
                        (last_event, logged_early) = (Some(id), true);
                    }
                    let result = self.store.apply(changes.clone()).await;
                    persisted = true;
                    match result {
                        Ok(()) => {}
                        Err(StoreError::ReadOnly { detail }) if memory_will_do(&changes) => {
                            self.count_in_memory(&detail);
                            self.refresh_storage().await;
                        }
                        Err(e) => {
                            self.persist_failed(e, &changes).await;
                            return;
                        }
                    }
                    if changes.iter().any(AppAccess::touched_by) {
                        // Before any Reply that follows: a channel that
                        // hears the answer finds the key already there.
                        self.app_access
                            .send_modify(|a| Arc::make_mut(a).apply(&changes));
                    }
                    if changes.iter().any(touches_credentials) {
                        self.hand_on_credentials().await;
                    }
                    if changes.iter().any(|c| matches!(c, Change::FactoryReset)) {
                        // The reset retired the device key (store::keystore):
                        // the lock restarts to run under a new one, with a
                        // new identity and verification code.
                        tracing::info!("factory reset: restarting with a new device key");
                        self.shutdown.cancel();
                    }
                    self.follow_pairing_generation(&changes);
                }
                Action::Log(event) => events.push(event),
                Action::Trace(trace) => trace_line(&trace),
                Action::Reply { id, result } => self.replies_due.push((id, result)),
                Action::SetClock(to) => {
                    tracing::info!(to = to.0, "wall clock set by an owner");
                    self.clock.set(to);
                    super::clock_sync::remember(&self.store, &self.clock).await;
                }
                Action::Notify(notice) => {
                    // The events before it are stored first, so the notice
                    // can point into the log (the owner's app pages from it).
                    if let Some(id) = self.log_events(std::mem::take(&mut events)).await {
                        (last_event, logged_early) = (Some(id), true);
                    }
                    // Not traced: the journal is a surface technicians
                    // read, and a notice may be a duress alarm (issue 14
                    // item 5); the channels that deliver it log delivery.
                    self.keep_notice(&notice, last_event).await;
                    let _ = self.notices.send(OwnerNotice { notice, last_event });
                }
                Action::Update(cmd) => {
                    if let Err(e) = self.update_cmds.send(cmd) {
                        // No update task runs: the engine hears so at once
                        // rather than wait for an answer that cannot come.
                        tracing::warn!(cmd = ?e.0, "no update task runs");
                        self.internal.push_back(Input::Update(
                            crate::core::input::UpdateReport::Failed {
                                error: "the update service is not running".into(),
                            },
                        ));
                    }
                }
                Action::Snapshot(reason) => {
                    // B-3.5: the picture is stored with its event (the
                    // Log just before), so the event gets its id first.
                    if let Some(id) = self.log_events(std::mem::take(&mut events)).await {
                        (last_event, logged_early) = (Some(id), true);
                    }
                    if let Err(e) = self.board.camera.snapshot_for_event(reason, last_event) {
                        self.device_failed(&Action::Snapshot(reason), e);
                    }
                }
                hardware => {
                    if let Err(e) = self.board.perform(&hardware) {
                        self.device_failed(&hardware, e);
                    }
                }
            }
        }
        let logged = logged_early || !events.is_empty();
        self.log_events(events).await;
        if persisted || logged {
            self.refresh_storage().await;
        }
    }

    /// Motor wear survives restarts: one small write per bolt move.
    async fn save_motor_cycles(&mut self) {
        let total = self.static_diag.motor_cycles_before + self.engine.status().motor_cycles;
        if let Err(e) = self.store.put_counter(status::MOTOR_CYCLES, total).await {
            tracing::warn!("cannot store the motor cycle count: {e}");
        }
    }

    fn device_failed(&mut self, action: &Action, e: DeviceError) {
        tracing::error!("{e}");
        if let Action::Motor(_) = action {
            // The engine must know the bolt did not move.
            self.internal.push_back(Input::Motor(MotorReport::Fault {
                detail: e.to_string(),
            }));
        }
    }

    /// Issue 15 item 5: on a read-only state partition an attempt's record
    /// cannot be committed before the answer (the IP-Box rule), and
    /// refusing every attempt would lock the family out of its own door.
    /// The record stays in memory — the engine already holds it, so
    /// strikes and lockouts go on within this boot — and the batch goes on.
    fn count_in_memory(&mut self, detail: &str) {
        if self.counters.memory_only_attempts == 0 {
            tracing::error!(
                "the state partition is read-only ({detail}): attempts are counted in memory only \
                 and every change is refused until it is writable again"
            );
        }
        self.counters.memory_only_attempts += 1;
    }

    /// A Persist failed: nothing after it in the batch happens (nothing
    /// opens), the person hears "failed", and the engine is rebuilt from
    /// what is on disk so memory matches the store (the failed change is
    /// simply not there) — except a verification attempt's record, which
    /// stays counted in memory (issue 13: a failed commit never forgets an
    /// attempt) and reaches the disk with the next lockout write.
    async fn persist_failed(&mut self, e: StoreError, changes: &[Change]) {
        self.counters.persist_failures += 1;
        tracing::error!("cannot store a change, so it was not made: {e}");
        if let Err(e) = self
            .board
            .voice
            .say(&Prompt::Failure, self.engine.language())
        {
            tracing::error!("{e}");
        }
        let attempt = changes.iter().rev().find_map(|c| match c {
            Change::PutAttempt(record) => Some(record.clone()),
            _ => None,
        });
        match self.store.load().await {
            Ok(mut persisted) => {
                if let Some(record) = attempt {
                    tracing::warn!("the failed attempt stays counted in memory");
                    persisted.lockout = record;
                }
                if let Some(hook) = self.credentials_changed.as_mut() {
                    hook(&persisted.credentials);
                }
                if let Some(hook) = self.pairing_generation_changed.as_mut() {
                    hook(persisted.pairing_generation);
                }
                self.republish_app_access(&persisted);
                self.engine = Engine::new(self.engine_config.clone(), persisted, self.clock.now());
                // The new engine knows nothing of the sensors yet; only the
                // readings, not PowerUp, so first-start prompts do not replay.
                let (readings, errors) = self.board.initial_inputs();
                for e in errors {
                    tracing::error!("{e}");
                }
                self.internal.extend(readings);
            }
            Err(e) => tracing::error!(
                "cannot reload the store after a failed write ({e}); keeping the engine as it was"
            ),
        }
        self.refresh_storage().await;
    }

    /// After a reload: the snapshot follows what is on disk.
    fn republish_app_access(&mut self, persisted: &Persisted) {
        self.app_access
            .send_replace(Arc::new(AppAccess::from_persisted(persisted)));
    }

    /// The storage line of the diagnostics, after a write.
    async fn refresh_storage(&mut self) {
        let health = self.store.health().await;
        self.static_diag.set_storage_health(&health);
    }

    /// Tell [`Self::pairing_generation_changed`] of a committed generation.
    fn follow_pairing_generation(&mut self, changes: &[Change]) {
        let Some(hook) = self.pairing_generation_changed.as_mut() else {
            return;
        };
        for c in changes {
            match c {
                Change::SetPairingGeneration(g) => hook(*g),
                Change::FactoryReset => hook(0),
                _ => {}
            }
        }
    }

    /// Hand the stored credentials to [`Self::credentials_changed`].
    async fn hand_on_credentials(&mut self) {
        if self.credentials_changed.is_none() {
            return;
        }
        let loaded = self.store.load().await;
        let Some(hook) = self.credentials_changed.as_mut() else {
            return;
        };
        match loaded {
            Ok(p) => hook(&p.credentials),
            Err(e) => tracing::error!(
                "cannot re-read the credentials after a change ({e}); face templates are stale until the next change"
            ),
        }
    }

    /// Issue 17 item 8: an owner notice is kept (sealed) for the owner
    /// apps not connected now — a BLE-only owner asks for it at its next
    /// session. Kept before it is broadcast, so an app that connects at
    /// once finds it.
    async fn keep_notice(&mut self, notice: &crate::core::action::Notice, last_event: Option<u64>) {
        let now = self.clock.now().wall;
        let Some(entry) = crate::app::wire::notice_entry(notice, last_event.unwrap_or(0), now)
        else {
            return;
        };
        let body = crate::app::Response::Notice(entry).encode();
        match self.store.call(move |s| s.push_notice(&body)).await {
            Ok(Ok(_)) => {}
            // Not traced with its kind: it may be a duress alarm.
            Ok(Err(e)) | Err(e) => tracing::error!("an owner notice was not kept: {e}"),
        }
    }

    /// Append `events`; returns the id of the last one stored (the event
    /// a snapshot that follows belongs to).
    async fn log_events(&mut self, events: Vec<Event>) -> Option<u64> {
        if events.is_empty() {
            return None;
        }
        match self.store.append_events(events.clone()).await {
            Ok(ids) => {
                for (id, event) in ids.iter().zip(&events) {
                    let _ = self.events.send(event_record(id.0, event));
                }
                ids.last().map(|id| id.0)
            }
            Err(e) => {
                tracing::error!("cannot append {} events to the log: {e}", events.len());
                for (i, event) in events.iter().enumerate() {
                    // The technicians' form (no secret, no duress), not Debug.
                    let r = event_record(0, event);
                    tracing::warn!(n = i, kind = %r.kind, detail = %r.detail, time = r.time, "event not stored");
                }
                None
            }
        }
    }

    fn publish(&mut self) {
        let now = self.clock.now();
        self.counters.next_deadline_in_ms = self
            .engine
            .next_deadline()
            .map(|d| d.as_millis().saturating_sub(now.mono.as_millis()));
        let engine = self.engine.status();
        let health = self.health.borrow_and_update().clone();
        self.ntp.borrow_and_update();
        let diag = self
            .static_diag
            .diagnostics(&engine, &health, self.clock.source());
        self.diagnostics.send_if_modified(|old| {
            let changed = *old != diag;
            *old = diag;
            changed
        });
        let counters = self.counters;
        self.published.send_modify(|p| {
            p.engine = engine;
            p.daemon = counters;
        });
    }

    fn answer(&mut self, req: TaskRequest) {
        match req {
            TaskRequest::SelfTest(reply) => {
                let engine = self.engine.status();
                let health = self.health.borrow().clone();
                let _ = reply.send(status::self_test(
                    &mut self.board,
                    &engine,
                    &self.static_diag,
                    &health,
                ));
            }
        }
    }
}

/// A [`Trace`] line into the diagnostics stream (the journal). Prompts
/// are at `debug` under the target `latchd::prompt`, so a doorbell flood
/// does not flood the journal either; follow them with
/// `RUST_LOG=info,latchd::prompt=debug` (or `[log] level`).
fn trace_line(trace: &Trace) {
    match trace {
        Trace::Prompt { text, spoken } => {
            tracing::debug!(target: "latchd::prompt", spoken, "{text}");
        }
    }
}

async fn sleep_until_opt(at: Option<TokioInstant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn recv_probe(probes: &mut Option<ProbeResponder>) -> Option<super::notify::Probe> {
    match probes {
        Some(p) => p.recv().await,
        None => std::future::pending().await,
    }
}

/// Whether a batch may live in memory only when the partition is
/// read-only: attempt and lockout records and the trusted-time floor, which
/// the next write carries whole. Never a revocation (it would come back
/// after a restart: refused, so the administrator hears it failed), a spent
/// one-time code (it would open again: refused, so the visitor's code does
/// not open now) or an addition.
fn memory_will_do(changes: &[Change]) -> bool {
    !changes.is_empty()
        && changes.iter().all(|c| {
            matches!(
                c,
                Change::PutAttempt(_) | Change::PutLockout(_) | Change::PutTimeFloor(_)
            )
        })
}
