//! The engine task: the only owner of the [`Engine`], the [`Board`] and
//! (for writes) the [`Store`].
//!
//! ```text
//!            ┌──────────── select! ────────────┐
//!  inputs ──►│ next Input                       │
//!  deadline ►│ sleep_until(next_deadline) → Tick│──► engine.handle(now, input)
//!  watchdog ►│ probe → answer (no engine call)  │          │ Vec<Action>, in order:
//!  selftest ►│ read every sensor                │          ▼
//!  shutdown ►│ cancelled → return               │   Persist ─► store.apply (one txn)
//!            └──────────────────────────────────┘     │ fails ─► drop the rest of the batch,
//!                                                     │          say Failure, rebuild engine
//!                                                     │          from store.load()
//!                                                     ├ Log ───► store.append_events + broadcast
//!                                                     ├ Reply/Notify ─► broadcast to services
//!                                                     └ the rest ─► Board::perform
//! ```
//!
//! No polling: with no input and no deadline the task sleeps in `select!`
//! until something arrives; every wake-up is counted
//! ([`DaemonCounters::wakeups`]) so tests and the bench can prove it.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant as TokioInstant;
use tokio_util::sync::CancellationToken;

use super::notify::ProbeResponder;
use super::status;
use crate::board::{Board, DeviceError};
use crate::core::action::Notice;
use crate::core::input::MotorReport;
use crate::core::{
    Action, AppResult, Change, Engine, EngineConfig, Event, Input, Now, Prompt, Status,
};
use crate::dbus::{DeviceCheck, Diagnostics, EventRecord};
use crate::store::Store;

/// The daemon's two clocks, read once per engine call.
///
/// The wall clock is the system's when it comes from a trusted source:
/// `lock.trust_system_clock` (an RTC nobody outside can reach), or systemd
/// reporting it NTP-synchronised (`daemon::timedate`). Otherwise it is
/// unknown until an owner syncs the time from the app (`Action::SetClock`),
/// after which it is kept as an offset from the system clock (and
/// remembered across a daemon restart in the same boot, `clock_sync`).
/// The engine checks every reading against its trusted-time floor. Clones
/// share the offset and the NTP flag.
#[derive(Debug, Clone)]
pub struct Clock {
    /// Monotonic origin (tokio time, so paused tests control it).
    pub origin: TokioInstant,
    /// Whether the system clock is believed (config `lock.trust_system_clock`).
    pub trust_wall: bool,
    /// Seconds to add to the system clock since an owner set the time;
    /// [`CLOCK_NOT_SET`] until then.
    offset: Arc<AtomicI64>,
    /// systemd says the system clock is NTP-synchronised.
    ntp_synchronized: Arc<std::sync::atomic::AtomicBool>,
}

/// Sentinel of [`Clock::offset`]: no owner has set the time.
const CLOCK_NOT_SET: i64 = i64::MIN;

impl Clock {
    pub fn new(trust_wall: bool) -> Self {
        Clock {
            origin: TokioInstant::now(),
            trust_wall,
            offset: Arc::new(AtomicI64::new(CLOCK_NOT_SET)),
            ntp_synchronized: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// What `org.freedesktop.timedate1` says of NTP synchronisation.
    pub fn set_ntp_synchronized(&self, synced: bool) {
        self.ntp_synchronized.store(synced, Ordering::Relaxed);
    }

    /// Seconds an owner's time sync added to the system clock, if any.
    pub fn owner_offset(&self) -> Option<i64> {
        let o = self.offset.load(Ordering::Relaxed);
        (o != CLOCK_NOT_SET).then_some(o)
    }

    /// Take back an offset remembered from earlier in this boot.
    pub fn restore_owner_offset(&self, offset: i64) {
        self.offset
            .store(offset.max(CLOCK_NOT_SET + 1), Ordering::Relaxed);
    }

    pub fn now(&self) -> Now {
        let mono = TokioInstant::now().duration_since(self.origin).as_millis() as u64;
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs() as i64);
        let offset = self.offset.load(Ordering::Relaxed);
        let wall = if offset != CLOCK_NOT_SET {
            system.map(|s| s.saturating_add(offset))
        } else if self.trust_wall || self.ntp_synchronized.load(Ordering::Relaxed) {
            system
        } else {
            None
        };
        Now::new(mono, wall)
    }

    /// An owner set the time: from now on the wall clock reads `to` + the
    /// time elapsed since.
    pub fn set(&self, to: crate::core::WallTime) {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let offset = to.0.saturating_sub(system);
        // The sentinel is reserved; an offset of i64::MIN is nonsense anyway.
        self.offset
            .store(offset.max(CLOCK_NOT_SET + 1), Ordering::Relaxed);
    }

    fn to_tokio(&self, at: crate::core::Instant) -> TokioInstant {
        self.origin + Duration::from_millis(at.as_millis())
    }
}

/// Counters the engine task keeps, published with every status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DaemonCounters {
    /// Times the loop woke for an input or a deadline (not watchdog probes).
    pub wakeups: u64,
    /// Inputs taken from the channel and handled.
    pub processed: u64,
    /// Deadline wake-ups among `wakeups`.
    pub ticks: u64,
    /// Persist batches that failed and made the engine reload from the store.
    pub persist_failures: u64,
    /// Milliseconds until the engine's next deadline, when it has one.
    pub next_deadline_in_ms: Option<u64>,
}

/// What the engine task publishes after every input.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub engine: Status,
    pub daemon: DaemonCounters,
}

/// A request for the engine task that is not an engine input.
#[derive(Debug)]
pub enum TaskRequest {
    /// Read every device once (D-Bus `SelfTest`).
    SelfTest(oneshot::Sender<Vec<DeviceCheck>>),
}

/// A notice for the owner (doorbell, alarms, duress, an unlock while away),
/// with the newest event stored when it was sent (`None`: none this batch).
#[derive(Debug, Clone)]
pub struct OwnerNotice {
    pub notice: Notice,
    pub last_event: Option<u64>,
}

/// Everything the engine task owns or talks to. Built by `daemon::run`.
pub struct EngineTask {
    pub engine: Engine,
    /// Kept to rebuild the engine after a failed persist.
    pub engine_config: EngineConfig,
    /// Shared with the control socket and D-Bus backend, which only read.
    pub store: Arc<Mutex<Store>>,
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
    /// Owner notifications (away unlock, duress, doorbell, alarms).
    pub notices: broadcast::Sender<OwnerNotice>,
    /// The watchdog's liveness probes.
    pub probes: Option<ProbeResponder>,
    pub requests: mpsc::Receiver<TaskRequest>,
    pub shutdown: CancellationToken,
    pub counters: DaemonCounters,
    pub static_diag: status::StaticDiag,
    /// Told the stored credentials after every committed change to them
    /// (and after a reload): the face service's templates follow the store.
    pub credentials_changed: Option<CredentialsHook>,
    /// Told the pairing generation after a committed owner pairing or
    /// factory reset: the BLE service's verification code follows it.
    pub pairing_generation_changed: Option<Box<dyn FnMut(u32) + Send>>,
}

/// See [`EngineTask::credentials_changed`].
pub type CredentialsHook = Box<dyn FnMut(&[crate::core::types::Credential]) + Send>;

/// Changes after which the credential list must be handed on again.
fn touches_credentials(c: &crate::core::types::Change) -> bool {
    use crate::core::types::Change;
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

fn lock_store(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    // A panic elsewhere while holding the store leaves the connection
    // usable (SQLite rolled back the open transaction); keep going.
    store.lock().unwrap_or_else(|p| p.into_inner())
}

impl EngineTask {
    /// Power-up: tell the engine where the sensors are, then `PowerUp`.
    pub fn power_up(&mut self, set_held: bool) {
        let (readings, errors) = self.board.initial_inputs();
        for e in errors {
            tracing::error!("cannot read a sensor at start-up: {e}");
        }
        for input in readings {
            self.step(input);
        }
        self.step(Input::PowerUp { set_held });
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
                Some(probe) = recv_probe(&mut self.probes) => {
                    probe.answer();
                    self.checkpoint();
                    continue;
                },
            };
            self.counters.wakeups += 1;
            if !matches!(input, Input::Tick) {
                self.counters.processed += 1;
            }
            self.step(input);
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
                self.step(input);
            }
            if !self.board.motor.is_moving() {
                break;
            }
        }
        self.save_lockout();
    }

    /// The lockout as it stands now (B-7): a restart resumes the time
    /// that was left, not the time left at the last failure; and the
    /// trusted-time floor, if it rose since it was stored.
    fn save_lockout(&mut self) {
        let changes = self.engine.shutdown_changes(self.clock.now());
        if let Err(e) = lock_store(&self.store).apply(&changes) {
            // The last persisted record stays: it can only be longer.
            tracing::warn!("cannot save the lockout at shutdown: {e}");
        }
    }

    /// At a watchdog ping: store the trusted-time floor if it rose by an
    /// hour while the lock sat idle (issue 13 item 3).
    fn checkpoint(&mut self) {
        let changes = self.engine.checkpoint(self.clock.now());
        if changes.is_empty() {
            return;
        }
        if let Err(e) = lock_store(&self.store).apply(&changes) {
            tracing::warn!("cannot store the trusted-time floor: {e}");
        }
    }

    /// One input through the engine and its actions through the world.
    pub fn step(&mut self, input: Input) {
        self.internal.push_back(input);
        while let Some(input) = self.internal.pop_front() {
            let now = self.clock.now();
            let motor_report = matches!(input, Input::Motor(_));
            if let Input::Motor(MotorReport::Jammed { .. }) = input {
                self.static_diag.last_jam = now.wall.map(|w| w.0).unwrap_or(0);
            }
            let actions = self.engine.handle(now, input);
            self.apply(actions);
            if motor_report {
                self.save_motor_cycles();
            }
        }
        self.publish();
    }

    fn apply(&mut self, actions: Vec<Action>) {
        let mut events: Vec<Event> = Vec::new();
        let mut persisted = false;
        // The newest event stored in this batch, and whether one was.
        let (mut last_event, mut logged_early) = (None, false);
        for action in actions {
            match action {
                Action::Persist(changes) => {
                    // Events before the change go to the log first, in order.
                    if let Some(id) = self.log_events(std::mem::take(&mut events)) {
                        (last_event, logged_early) = (Some(id), true);
                    }
                    let result = lock_store(&self.store).apply(&changes);
                    persisted = true;
                    if let Err(e) = result {
                        self.persist_failed(e, &changes);
                        return;
                    }
                    if changes.iter().any(touches_credentials) {
                        self.hand_on_credentials();
                    }
                    self.follow_pairing_generation(&changes);
                }
                Action::Log(event) => events.push(event),
                Action::Reply { id, result } => {
                    // No subscriber = the requester gave up; nothing to do.
                    let _ = self.replies.send((id, result));
                }
                Action::SetClock(to) => {
                    tracing::info!(to = to.0, "wall clock set by an owner");
                    self.clock.set(to);
                    super::clock_sync::remember(&self.store, &self.clock);
                }
                Action::Notify(notice) => {
                    // The events before it are stored first, so the notice
                    // can point into the log (the owner's app pages from it).
                    if let Some(id) = self.log_events(std::mem::take(&mut events)) {
                        (last_event, logged_early) = (Some(id), true);
                    }
                    tracing::info!(?notice, "owner notification");
                    let _ = self.notices.send(OwnerNotice { notice, last_event });
                }
                Action::Snapshot(reason) => {
                    // B-3.5: the picture is stored with its event (the
                    // Log just before), so the event gets its id first.
                    if let Some(id) = self.log_events(std::mem::take(&mut events)) {
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
        self.log_events(events);
        if persisted || logged {
            self.static_diag.refresh_storage(&lock_store(&self.store));
        }
    }

    /// Motor wear survives restarts: one small write per bolt move.
    fn save_motor_cycles(&mut self) {
        let total = self.static_diag.motor_cycles_before + self.engine.status().motor_cycles;
        if let Err(e) = lock_store(&self.store).put_counter(status::MOTOR_CYCLES, total) {
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

    /// A Persist failed: nothing after it in the batch happens (nothing
    /// opens), the person hears "failed", and the engine is rebuilt from
    /// what is on disk so memory matches the store (the failed change is
    /// simply not there) — except a verification attempt's record, which
    /// stays counted in memory (issue 13: a failed commit never forgets an
    /// attempt) and reaches the disk with the next lockout write.
    fn persist_failed(&mut self, e: crate::store::StoreError, changes: &[Change]) {
        self.counters.persist_failures += 1;
        tracing::error!("cannot store a change, so it was not made: {e}");
        if let Err(e) = self.board.voice.say(&Prompt::Failure) {
            tracing::error!("{e}");
        }
        let loaded = lock_store(&self.store).load();
        let attempt = changes.iter().rev().find_map(|c| match c {
            Change::PutAttempt(record) => Some(record.clone()),
            _ => None,
        });
        match loaded {
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
        self.static_diag.refresh_storage(&lock_store(&self.store));
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
    fn hand_on_credentials(&mut self) {
        let Some(hook) = self.credentials_changed.as_mut() else {
            return;
        };
        match lock_store(&self.store).load() {
            Ok(p) => hook(&p.credentials),
            Err(e) => tracing::error!(
                "cannot re-read the credentials after a change ({e}); face templates are stale until the next change"
            ),
        }
    }

    /// Append `events`; returns the id of the last one stored that is not
    /// a spoken prompt (the event a snapshot that follows belongs to).
    fn log_events(&mut self, events: Vec<Event>) -> Option<u64> {
        if events.is_empty() {
            return None;
        }
        let ids = lock_store(&self.store).append_events(&events);
        match ids {
            Ok(ids) => {
                for (id, event) in ids.iter().zip(&events) {
                    let _ = self.events.send(status::event_record(id.0, event));
                }
                ids.iter()
                    .zip(&events)
                    .rev()
                    .find(|(_, e)| !matches!(e.kind, crate::core::event::EventKind::Prompt { .. }))
                    .map(|(id, _)| id.0)
            }
            Err(e) => {
                tracing::error!("cannot append {} events to the log: {e}", events.len());
                for event in &events {
                    tracing::warn!(?event, "event not stored");
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
        let diag = self.static_diag.diagnostics(&engine);
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
                let _ = reply.send(status::self_test(&self.board));
            }
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
