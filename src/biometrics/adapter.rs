//! The adapter loop: the UART biometric modules behind the board's
//! [`FingerprintModule`]/[`PalmModule`] traits. One adapter task per
//! module owns its driver (the R30x fingerprint reader through
//! `fingerprint/reader.rs`, the LPV/1 palm-vein module through
//! `palm/reader.rs`) and sits between the engine's [`ModuleCmd`]s and the
//! module, whatever byte stream the driver talks over (a UART opened with
//! `tokio-serial`, a PTY, a `tokio::io::duplex` to a simulator).
//!
//! Owns: the task, its [`AdapterConfig`], the [`ModuleAdapter`] handle the
//! board holds, and the [`ReportSink`] reports leave by. Driven by
//! commands (`Board::perform` → [`ModuleAdapter::command`], a queue push)
//! and, while idle, by its own recognition loop below. Each modality's
//! reader (`Reader`) says how its driver enrols, reads and deletes.
//!
//! ```text
//!  engine task ── Board::perform ── command() ──► mpsc<ModuleCmd> ──┐ (returns at once)
//!                                                                   ▼
//!                            ┌──────────── adapter task (owns the driver) ───────────┐
//!   start:  reconcile module slots with the DB's credentials (unknown ones cleared)   │
//!   idle:   recognition loop ── read ─► Recognised{slot} | NotRecognised | Fault     │
//!   Enrol:  driver.enroll ── steps ─► EnrolProgress{PresentAgain|Remove}            │
//!           ─► Enrolled{slot} | EnrolFailed{Duplicate|Timeout|Quality|Module}      │
//!           CancelEnrol ─► drop the enrolment future (nothing stored)               │
//!   Delete / Wipe ─► driver.delete / empty                                          │
//!                            └────────────────────────┬──────────────────────────────┘
//!                                                     ▼ ReportSink (OrderedSender → engine)
//! ```
//!
//! # The recognition loop (the one polling loop)
//!
//! An R30x reader does not tell the host that a finger arrived: the host
//! must send GenImg and read "no finger" (0x02) until a finger is there.
//! So while the fingerprint adapter is idle it polls once every
//! [`AdapterConfig::idle_poll`] (150 ms by default: a touch is seen within
//! a fraction of a second, and an idle R503 answers "no finger" in ~10 ms,
//! so the UART is busy ~7 % of the time). It polls only while idle:
//! during an enrolment the driver runs its own GenImg loop, and a command
//! interrupts a poll at once. This is the only polling loop in latchd's
//! device layer; everything else is edge- or reply-driven. A board that
//! wires the R503's touch-out (WAKEUP) line could wait for its edge
//! instead; the board file has no key for that line yet.
//!
//! The LPV/1 palm module does the waiting itself: Identify blocks (up to
//! the capture timeout) until a palm is presented, so the palm adapter
//! simply asks again and again, without a pause.
//!
//! One presentation counts once: a finger resting on the sensor is
//! reported once and again only after "no finger" has been seen; a palm
//! module cannot say "no palm" without a timeout, so after a palm is read
//! the adapter waits [`AdapterConfig::palm_hold_off`] before it asks again.
//!
//! # Faults
//!
//! A module that stops answering (timeout, bad frame, closed link) is
//! reported once as `ModuleReport::Fault` when the outage begins, not on
//! every poll; the next good answer ends the outage (`ModuleReport::Recovered`:
//! logged, in the owner's event list; no restart). While out,
//! the loop retries every [`AdapterConfig::fault_retry`].
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::biometrics::fingerprint::Reconciliation;
use crate::board::{DeviceError, FingerprintModule, ModuleHealth, PalmModule};
use crate::core::input::{EnrolFailure, EnrolStep, ModuleReport};
use crate::core::types::{CredentialKind, CredentialSecret, Modality, Persisted};
use crate::core::{Input, ModuleCmd};
use crate::link::OrderedSender;

/// Where an adapter's reports go. The daemon's is an [`OrderedSender`]
/// (each report becomes `Input::Module`); tests and the sim board's hand
/// can watch them too.
pub trait ReportSink: Send + Sync + 'static {
    /// Hand over one report. Never blocks.
    fn report(&self, report: ModuleReport);
}

impl ReportSink for OrderedSender {
    fn report(&self, report: ModuleReport) {
        // `false` only when the engine has stopped (shutdown): nothing to do.
        let _ = self.push(Input::Module(report));
    }
}

impl ReportSink for mpsc::UnboundedSender<ModuleReport> {
    fn report(&self, report: ModuleReport) {
        let _ = self.send(report);
    }
}

/// How an adapter behaves. The defaults suit real modules.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    /// Fingerprint: pause between two GenImg polls while idle (see the
    /// module docs). Not used by the palm adapter.
    pub idle_poll: Duration,
    /// Pause between retries while the module is not answering.
    pub fault_retry: Duration,
    /// Palm: after a palm was read, wait this long before asking for the
    /// next one (LPV/1 has no "is a palm there" query).
    pub palm_hold_off: Duration,
    /// Fingerprint touches per enrolment (2..= the module's character
    /// buffers). The palm module takes its capture count from its driver
    /// configuration.
    pub finger_touches: u8,
    /// Fingerprint: after an enrolment was cancelled mid-request, wait this
    /// long before the next request. The R30x protocol has no sequence
    /// numbers, so the answer to the dropped request must have arrived (and
    /// be drained) before a new request is sent, or it would be taken for
    /// the new one's answer. The default is the driver's request timeout.
    pub cancel_settle: Duration,
    /// The module slots the database's credentials use; when given, the
    /// adapter reconciles the module against them before anything else:
    /// slots the database does not know are cleared (an unknown finger must
    /// not open the door), slots it expects but the module lacks are logged.
    pub db_slots: Option<BTreeSet<u16>>,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig {
            idle_poll: Duration::from_millis(150),
            fault_retry: Duration::from_secs(1),
            palm_hold_off: Duration::from_millis(1500),
            finger_touches: 2,
            cancel_settle: Duration::from_millis(1500),
            db_slots: None,
        }
    }
}

/// The board's handle on one adapter task: `command` queues and returns.
/// Dropping it stops the task (and with it the driver and its UART).
pub struct ModuleAdapter {
    modality: Modality,
    commands: mpsc::UnboundedSender<ModuleCmd>,
    task: JoinHandle<()>,
    /// Wakes a connection that refused a module not the lock's own
    /// ([`ModuleCmd::Pair`]; fingerprint, `fingerprint/reader.rs`).
    repair: Option<Arc<tokio::sync::Notify>>,
    /// What the task saw last, for the self-test.
    health: SharedHealth,
}

/// The adapter task's last word on its module, read by the self-test.
pub(crate) type SharedHealth = Arc<std::sync::Mutex<ModuleHealth>>;

impl std::fmt::Debug for ModuleAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleAdapter")
            .field("modality", &self.modality)
            .finish_non_exhaustive()
    }
}

impl ModuleAdapter {
    fn device(&self) -> &'static str {
        device_name(self.modality)
    }

    /// Queue one command for the module; returns at once. A command for
    /// another modality is refused ([`DeviceError::Unsupported`]).
    pub fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        if cmd_modality(cmd) != Some(self.modality) {
            return Err(DeviceError::Unsupported {
                device: self.device(),
                what: format!("{cmd:?}"),
            });
        }
        if let (ModuleCmd::Pair { .. }, Some(repair)) = (cmd, &self.repair) {
            // Only a connection waiting now is woken: a re-pair asked while
            // the module is fine leaves nothing behind that would adopt a
            // module swapped in later.
            repair.notify_waiters();
        }
        self.commands
            .send(*cmd)
            .map_err(|_| DeviceError::Unavailable {
                device: self.device(),
                detail: "its adapter task has stopped (see the log for why)".into(),
            })
    }

    /// Whether the adapter task is still running.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// What the module did last: answered, failing since …, not the
    /// lock's own, or the task has stopped.
    pub fn health(&self) -> ModuleHealth {
        let last = self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !self.task.is_finished() {
            return last;
        }
        ModuleHealth::Stopped(match last {
            ModuleHealth::Failing(why) | ModuleHealth::Untrusted(why) => why,
            _ => "see the log for why".into(),
        })
    }
}

impl Drop for ModuleAdapter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FingerprintModule for ModuleAdapter {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        ModuleAdapter::command(self, cmd)
    }
    fn health(&self) -> ModuleHealth {
        ModuleAdapter::health(self)
    }
}

impl PalmModule for ModuleAdapter {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        ModuleAdapter::command(self, cmd)
    }
    fn health(&self) -> ModuleHealth {
        ModuleAdapter::health(self)
    }
}

pub(crate) fn device_name(m: Modality) -> &'static str {
    match m {
        Modality::Fingerprint => "fingerprint module",
        Modality::Palm => "palm-vein module",
        Modality::Face => "face camera",
    }
}

fn cmd_modality(cmd: &ModuleCmd) -> Option<Modality> {
    match cmd {
        ModuleCmd::Enrol { modality, .. }
        | ModuleCmd::CancelEnrol { modality }
        | ModuleCmd::Delete { modality, .. }
        | ModuleCmd::Wipe { modality }
        | ModuleCmd::Pair { modality } => Some(*modality),
        ModuleCmd::RecogniseFace => None,
    }
}

/// A driver still to be connected (the handshake runs in the adapter task,
/// so a module that does not answer never holds up the lock's start); it
/// fails with the driver's own error.
pub type Connecting<M, E> = BoxFuture<'static, Result<M, E>>;

pub(crate) fn spawn<R: Reader + 'static>(
    reader: R,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    spawn_connecting(Box::pin(async move { Ok(reader) }), config, sink)
}

pub(crate) fn spawn_connecting<R: Reader + 'static>(
    connect: Connecting<R, R::Error>,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    let (tx, rx) = mpsc::unbounded_channel();
    let modality = R::MODALITY;
    let health: SharedHealth = Arc::new(std::sync::Mutex::new(ModuleHealth::Starting));
    let task_health = health.clone();
    let task = tokio::spawn(async move {
        let reader = match connect.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(device = device_name(modality), error = %e, "module not connected");
                let detail = format!("no handshake with the module: {e}");
                set_health(&task_health, ModuleHealth::Failing(detail.clone()));
                sink.report(ModuleReport::Fault { modality, detail });
                return;
            }
        };
        set_health(&task_health, ModuleHealth::Answering);
        Adapter {
            reader,
            config,
            sink,
            commands: rx,
            deferred: VecDeque::new(),
            faulted: false,
            present: false,
            health: task_health,
        }
        .run()
        .await
    });
    ModuleAdapter {
        modality,
        commands: tx,
        task,
        repair: None,
        health,
    }
}

impl ModuleAdapter {
    /// Route [`ModuleCmd::Pair`] to `repair` as well.
    pub(crate) fn with_repair(mut self, repair: Arc<tokio::sync::Notify>) -> Self {
        self.repair = Some(repair);
        self
    }
}

// ---- one interface over both drivers ----------------------------------------
// (fingerprint/reader.rs and palm/reader.rs implement it)

/// What one recognition attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Nothing on the sensor (fingerprint) / no palm within the module's
    /// capture timeout (palm).
    Nothing,
    /// Something was read but could not be used (smudged image, too few
    /// features): not an attempt, not a fault.
    Unreadable,
    Match(u16),
    NoMatch,
}

/// A module error, sorted by what the adapter does with it.
#[derive(Debug)]
pub(crate) struct ReadError<E> {
    /// The module is not answering or answers nonsense: an outage.
    pub(crate) link: bool,
    pub(crate) error: E,
}

pub(crate) type Steps<'a> = &'a mut (dyn FnMut(EnrolStep) + Send);

/// The adapter's view of a driver.
pub(crate) trait Reader: Send {
    const MODALITY: Modality;
    /// Whether "nothing there" can be read without a timeout (fingerprint),
    /// so a resting finger is tracked rather than held off (palm).
    const TRACKS_PRESENCE: bool;
    /// Whether a read may be dropped half-way for a command. Only with
    /// sequence-numbered replies (palm): an R30x reply to a dropped
    /// request would be taken for the next request's answer.
    const INTERRUPTIBLE_READ: bool;
    /// The driver's error; the adapter turns it into the `Fault` report's
    /// text only where the report is made.
    type Error: std::error::Error + Send + 'static;
    /// Whether `e` says the module is not the lock's own (issue 13 item
    /// 7): reported as `Untrusted` rather than `Fault`.
    fn untrusted(_e: &Self::Error) -> bool {
        false
    }
    fn enrol<'a>(
        &'a mut self,
        slot: u16,
        steps: Steps<'a>,
    ) -> BoxFuture<'a, Result<(), EnrolFailure>>;
    fn read(&mut self) -> BoxFuture<'_, Result<Read, ReadError<Self::Error>>>;
    fn delete(&mut self, slot: u16) -> BoxFuture<'_, Result<(), Self::Error>>;
    fn wipe(&mut self) -> BoxFuture<'_, Result<(), Self::Error>>;
    fn slots(&mut self) -> BoxFuture<'_, Result<BTreeSet<u16>, Self::Error>>;
    /// Stop whatever the module is doing (after a dropped enrolment).
    fn abort(&mut self) -> BoxFuture<'_, Result<(), Self::Error>>;
    fn reconcile<'a>(
        &'a mut self,
        db: &'a BTreeSet<u16>,
    ) -> BoxFuture<'a, Result<Reconciliation, Self::Error>>;
}

// ---- the task ------------------------------------------------------------------

struct Adapter<R> {
    reader: R,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
    commands: mpsc::UnboundedReceiver<ModuleCmd>,
    /// Commands that arrived during an enrolment, run after it.
    deferred: VecDeque<ModuleCmd>,
    /// A Fault was reported and the module has not answered well since.
    faulted: bool,
    /// The presentation on the sensor has been reported already.
    present: bool,
    /// Shared with the board's handle, for the self-test.
    health: SharedHealth,
}

fn set_health(shared: &SharedHealth, health: ModuleHealth) {
    *shared.lock().unwrap_or_else(|p| p.into_inner()) = health;
}

impl<R: Reader> Adapter<R> {
    fn modality(&self) -> Modality {
        R::MODALITY
    }

    async fn run(mut self) {
        if let Some(db) = self.config.db_slots.take() {
            match self.reader.reconcile(&db).await {
                Ok(r) => {
                    for slot in &r.missing_in_module {
                        tracing::error!(
                            slot,
                            device = device_name(self.modality()),
                            "the database has a credential in this slot but the module does \
                             not: it cannot be recognised; delete and re-enrol it"
                        );
                    }
                }
                Err(e) => self.fault(format!("reconciling slots at start: {e}")),
            }
        }
        loop {
            let cmd = match self.deferred.pop_front() {
                Some(c) => c,
                None => {
                    let wait = if self.faulted {
                        Some(self.config.fault_retry)
                    } else if R::TRACKS_PRESENCE {
                        Some(self.config.idle_poll)
                    } else {
                        None
                    };
                    // A command cuts the pause short, and the read itself
                    // where the protocol allows (palm: the driver aborts it).
                    let attempt = if R::INTERRUPTIBLE_READ {
                        tokio::select! {
                            biased;
                            c = self.commands.recv() => Err(c),
                            r = read_once(&mut self.reader, wait) => Ok(r),
                        }
                    } else {
                        let paused = match wait {
                            Some(w) => tokio::select! {
                                biased;
                                c = self.commands.recv() => Err(c),
                                _ = tokio::time::sleep(w) => Ok(()),
                            },
                            None => Ok(()),
                        };
                        match paused {
                            Ok(()) => Ok(self.reader.read().await),
                            Err(c) => Err(c),
                        }
                    };
                    match attempt {
                        Err(Some(c)) => c,
                        Err(None) => return, // the board was dropped
                        Ok(r) => {
                            self.after_read(r).await;
                            continue;
                        }
                    }
                }
            };
            self.handle(cmd).await;
        }
    }

    fn report(&self, r: ModuleReport) {
        self.sink.report(r);
    }

    fn fault(&mut self, detail: String) {
        if self.faulted {
            tracing::debug!(device = device_name(self.modality()), %detail, "still failing");
            return;
        }
        set_health(&self.health, ModuleHealth::Failing(detail.clone()));
        self.faulted = true;
        tracing::error!(device = device_name(self.modality()), %detail, "module fault");
        self.report(ModuleReport::Fault {
            modality: self.modality(),
            detail,
        });
    }

    /// Like [`Self::fault`], for a module swapped while the lock ran: once
    /// per outage, as `Untrusted` (the engine's swap alarm and notice).
    fn untrusted(&mut self, detail: String) {
        if self.faulted {
            return;
        }
        set_health(&self.health, ModuleHealth::Untrusted(detail.clone()));
        self.faulted = true;
        tracing::error!(device = device_name(self.modality()), %detail, "module not the lock's own");
        self.report(ModuleReport::Untrusted {
            modality: self.modality(),
            detail,
        });
    }

    fn answered(&mut self) {
        if std::mem::take(&mut self.faulted) {
            set_health(&self.health, ModuleHealth::Answering);
            tracing::info!(
                device = device_name(self.modality()),
                "module answers again"
            );
            self.report(ModuleReport::Recovered {
                modality: self.modality(),
            });
        }
    }

    async fn after_read(&mut self, r: Result<Read, ReadError<R::Error>>) {
        let modality = self.modality();
        let read = match r {
            Ok(read) => {
                self.answered();
                read
            }
            Err(e) if e.link && R::untrusted(&e.error) => {
                return self.untrusted(e.error.to_string())
            }
            Err(e) if e.link => return self.fault(e.error.to_string()),
            Err(e) => {
                // The module answered, but refused: not an outage.
                self.answered();
                tracing::warn!(device = device_name(modality), error = %e.error, "read refused");
                return;
            }
        };
        let report = match read {
            Read::Nothing => {
                self.present = false;
                return;
            }
            Read::Unreadable => return,
            Read::Match(slot) => ModuleReport::Recognised { modality, slot },
            Read::NoMatch => ModuleReport::NotRecognised { modality },
        };
        if R::TRACKS_PRESENCE {
            if self.present {
                return; // the same finger, still resting on the sensor
            }
            self.present = true;
            self.report(report);
        } else {
            self.report(report);
            self.hold_off().await;
        }
    }

    /// Palm: let the palm just read leave before asking for the next one.
    /// A command cuts the pause short (it runs next).
    async fn hold_off(&mut self) {
        if R::TRACKS_PRESENCE {
            return;
        }
        tokio::select! {
            biased;
            c = self.commands.recv() => {
                if let Some(c) = c {
                    self.deferred.push_back(c);
                }
            }
            _ = tokio::time::sleep(self.config.palm_hold_off) => {}
        }
    }

    async fn handle(&mut self, cmd: ModuleCmd) {
        let modality = self.modality();
        match cmd {
            ModuleCmd::Enrol { slot, .. } => self.enrol(slot).await,
            // Nothing in progress (an enrolment takes its cancel itself).
            ModuleCmd::CancelEnrol { .. } => {}
            ModuleCmd::Delete { slot, .. } => match self.reader.delete(slot).await {
                Ok(()) => self.answered(),
                Err(e) => self.fault(format!("deleting slot {slot}: {e}")),
            },
            ModuleCmd::Wipe { .. } => match self.reader.wipe().await {
                Ok(()) => self.answered(),
                Err(e) => self.fault(format!("erasing every template: {e}")),
            },
            ModuleCmd::RecogniseFace => {
                tracing::warn!(?modality, "face command sent to a UART module; ignored");
            }
            // Connected means the module passed its handshake: it is the
            // lock's own, nothing to re-pair.
            ModuleCmd::Pair { .. } => {
                tracing::info!(
                    ?modality,
                    "re-pair asked for a module already paired; nothing to do"
                );
            }
        }
    }

    async fn enrol(&mut self, slot: u16) {
        let modality = self.modality();
        let sink = self.sink.clone();
        let mut steps = move |step: EnrolStep| {
            sink.report(ModuleReport::EnrolProgress { modality, step });
        };
        let outcome = {
            let fut = self.reader.enrol(slot, &mut steps);
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    r = &mut fut => break Some(r),
                    c = self.commands.recv() => match c {
                        Some(ModuleCmd::CancelEnrol { .. }) => break None,
                        Some(other) => self.deferred.push_back(other),
                        // The board is gone: stop here, the future is dropped.
                        None => break None,
                    },
                }
            }
        };
        let report = match outcome {
            Some(Ok(())) => ModuleReport::Enrolled {
                modality,
                slot,
                template: None,
            },
            Some(Err(reason)) => ModuleReport::EnrolFailed { modality, reason },
            None => {
                self.cancelled(slot).await;
                return;
            }
        };
        self.present = true; // the last touch is still on the sensor
        self.report(report);
        self.hold_off().await;
    }

    /// An enrolment was dropped mid-way: stop the module, and make sure
    /// nothing was stored (a Store may have been on the wire when the
    /// future was dropped).
    async fn cancelled(&mut self, slot: u16) {
        tracing::info!(
            slot,
            device = device_name(self.modality()),
            "enrolment cancelled"
        );
        if let Err(e) = self.reader.abort().await {
            return self.fault(format!("aborting the cancelled enrolment: {e}"));
        }
        match self.reader.slots().await {
            Ok(s) if s.contains(&slot) => {
                if let Err(e) = self.reader.delete(slot).await {
                    self.fault(format!(
                        "removing the cancelled enrolment's slot {slot}: {e}"
                    ));
                }
            }
            Ok(_) => {}
            Err(e) => self.fault(format!("checking slots after a cancelled enrolment: {e}")),
        }
        self.present = true;
    }
}

async fn read_once<R: Reader>(
    reader: &mut R,
    wait: Option<Duration>,
) -> Result<Read, ReadError<R::Error>> {
    if let Some(w) = wait {
        tokio::time::sleep(w).await;
    }
    reader.read().await
}

/// The module slots the database's credentials of `kind` use (for
/// [`AdapterConfig::db_slots`]).
pub fn db_slots(persisted: &Persisted, kind: CredentialKind) -> BTreeSet<u16> {
    persisted
        .credentials
        .iter()
        .filter(|c| c.kind == kind)
        .filter_map(|c| match c.secret {
            CredentialSecret::ModuleSlot(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::biometrics::fingerprint::reader::spawn_fingerprint_connecting;
    use crate::biometrics::palm::reader::spawn_palm_connecting;

    fn sink() -> (Arc<dyn ReportSink>, mpsc::UnboundedReceiver<ModuleReport>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(tx), rx)
    }

    #[tokio::test]
    async fn a_failed_handshake_is_one_fault_then_commands_are_refused() {
        let (sink, mut rx) = sink();
        let mut adapter = spawn_fingerprint_connecting(
            Box::pin(async { Err(crate::biometrics::fingerprint::FingerprintError::Closed) }),
            AdapterConfig::default(),
            sink,
        );
        match rx.recv().await {
            Some(ModuleReport::Fault { modality, detail }) => {
                assert_eq!(modality, Modality::Fingerprint);
                let closed = crate::biometrics::fingerprint::FingerprintError::Closed.to_string();
                assert!(detail.contains(&closed), "{detail}");
            }
            other => panic!("expected a fault, got {other:?}"),
        }
        // The task ends right after its report; the self-test says why.
        while adapter.is_running() {
            tokio::task::yield_now().await;
        }
        assert!(
            matches!(adapter.health(), ModuleHealth::Stopped(d) if d.contains("no handshake")),
            "{:?}",
            adapter.health()
        );
        let e = adapter
            .command(&ModuleCmd::Wipe {
                modality: Modality::Fingerprint,
            })
            .expect_err("no adapter task");
        assert!(matches!(e, DeviceError::Unavailable { .. }), "{e}");
        assert!(rx.recv().await.is_none(), "no more reports");
    }

    #[tokio::test]
    async fn commands_for_another_modality_are_refused() {
        let (sink, _rx) = sink();
        let mut adapter = spawn_palm_connecting(
            Box::pin(std::future::pending()),
            AdapterConfig::default(),
            sink,
        );
        for cmd in [
            ModuleCmd::RecogniseFace,
            ModuleCmd::Delete {
                modality: Modality::Fingerprint,
                slot: 1,
            },
        ] {
            let e = adapter.command(&cmd).expect_err("wrong module");
            assert!(matches!(e, DeviceError::Unsupported { .. }), "{e}");
        }
        adapter
            .command(&ModuleCmd::CancelEnrol {
                modality: Modality::Palm,
            })
            .expect("queued while connecting");
    }
}
