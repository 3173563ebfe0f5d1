//! The UART biometric modules behind the board traits: one adapter task
//! per module, between the engine's [`ModuleCmd`]s and a driver from
//! [`crate::biometrics`] (the R30x fingerprint reader, the LPV/1 palm-vein
//! module), whatever byte stream the driver talks over (a UART opened with
//! `tokio-serial`, a PTY, a `tokio::io::duplex` to a simulator).
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
//! every poll; the next good answer ends the outage (logged). While out,
//! the loop retries every [`AdapterConfig::fault_retry`].
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::DeviceError;
use crate::biometrics::fingerprint::{
    self as fp, EnrollStep, FingerprintError, ModuleCode, Reconciliation,
};
use crate::biometrics::palm::{self, PalmEnrollStep, PalmError, PalmStatus};
use crate::core::input::{EnrolFailure, EnrolStep, ModuleReport};
use crate::core::types::Modality;
use crate::core::{Input, ModuleCmd};
use crate::link::{InputSender, OrderedSender};

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
}

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
}

impl Drop for ModuleAdapter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl super::FingerprintModule for ModuleAdapter {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        ModuleAdapter::command(self, cmd)
    }
}

impl super::PalmModule for ModuleAdapter {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        ModuleAdapter::command(self, cmd)
    }
}

fn device_name(m: Modality) -> &'static str {
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
        | ModuleCmd::Wipe { modality } => Some(*modality),
        ModuleCmd::RecogniseFace => None,
    }
}

/// Start the adapter for a fingerprint driver (already connected).
/// Must run inside tokio.
pub fn spawn_fingerprint(
    module: Box<dyn fp::FingerprintModule>,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    let reader = FingerReader {
        module,
        touches: config.finger_touches,
        settle: config.cancel_settle,
    };
    spawn(reader, config, sink)
}

/// Start the adapter for a palm driver (already connected).
/// Must run inside tokio.
pub fn spawn_palm(
    module: Box<dyn palm::PalmModule>,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    spawn(PalmReader { module }, config, sink)
}

/// A driver still to be connected (the handshake runs in the adapter task,
/// so a module that does not answer never holds up the lock's start).
pub type Connecting<M> = BoxFuture<'static, Result<M, String>>;

/// Like [`spawn_fingerprint`], connecting first in the task. A failed
/// handshake is reported once as `ModuleReport::Fault`; the adapter then
/// stops and its commands are refused as [`DeviceError::Unavailable`].
pub fn spawn_fingerprint_connecting(
    connect: Connecting<Box<dyn fp::FingerprintModule>>,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    let touches = config.finger_touches;
    let settle = config.cancel_settle;
    spawn_connecting(
        Box::pin(async move {
            let module = connect.await?;
            Ok(FingerReader {
                module,
                touches,
                settle,
            })
        }),
        config,
        sink,
    )
}

/// Like [`spawn_palm`], connecting first in the task (see
/// [`spawn_fingerprint_connecting`]).
pub fn spawn_palm_connecting(
    connect: Connecting<Box<dyn palm::PalmModule>>,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    spawn_connecting(
        Box::pin(async move {
            let module = connect.await?;
            Ok(PalmReader { module })
        }),
        config,
        sink,
    )
}

/// The daemon's usual sink: the engine's input queue, in order.
pub fn engine_sink(inputs: InputSender) -> Arc<dyn ReportSink> {
    Arc::new(OrderedSender::spawn(inputs))
}

fn spawn<R: Reader + 'static>(
    reader: R,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    spawn_connecting(Box::pin(async move { Ok(reader) }), config, sink)
}

fn spawn_connecting<R: Reader + 'static>(
    connect: Connecting<R>,
    config: AdapterConfig,
    sink: Arc<dyn ReportSink>,
) -> ModuleAdapter {
    let (tx, rx) = mpsc::unbounded_channel();
    let modality = R::MODALITY;
    let task = tokio::spawn(async move {
        let reader = match connect.await {
            Ok(r) => r,
            Err(detail) => {
                tracing::error!(device = device_name(modality), %detail, "module not connected");
                sink.report(ModuleReport::Fault {
                    modality,
                    detail: format!("no handshake with the module: {detail}"),
                });
                return;
            }
        };
        Adapter {
            reader,
            config,
            sink,
            commands: rx,
            deferred: VecDeque::new(),
            faulted: false,
            present: false,
        }
        .run()
        .await
    });
    ModuleAdapter {
        modality,
        commands: tx,
        task,
    }
}

// ---- one interface over both drivers ----------------------------------------

/// What one recognition attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
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
struct ReadError {
    /// The module is not answering or answers nonsense: an outage.
    link: bool,
    detail: String,
}

type Steps<'a> = &'a mut (dyn FnMut(EnrolStep) + Send);

/// The adapter's view of a driver.
trait Reader: Send {
    const MODALITY: Modality;
    /// Whether "nothing there" can be read without a timeout (fingerprint),
    /// so a resting finger is tracked rather than held off (palm).
    const TRACKS_PRESENCE: bool;
    /// Whether a read may be dropped half-way for a command. Only with
    /// sequence-numbered replies (palm): an R30x reply to a dropped
    /// request would be taken for the next request's answer.
    const INTERRUPTIBLE_READ: bool;
    fn enrol<'a>(
        &'a mut self,
        slot: u16,
        steps: Steps<'a>,
    ) -> BoxFuture<'a, Result<(), EnrolFailure>>;
    fn read(&mut self) -> BoxFuture<'_, Result<Read, ReadError>>;
    fn delete(&mut self, slot: u16) -> BoxFuture<'_, Result<(), String>>;
    fn wipe(&mut self) -> BoxFuture<'_, Result<(), String>>;
    fn slots(&mut self) -> BoxFuture<'_, Result<BTreeSet<u16>, String>>;
    /// Stop whatever the module is doing (after a dropped enrolment).
    fn abort(&mut self) -> BoxFuture<'_, Result<(), String>>;
    fn reconcile<'a>(
        &'a mut self,
        db: &'a BTreeSet<u16>,
    ) -> BoxFuture<'a, Result<Reconciliation, String>>;
}

struct FingerReader {
    module: Box<dyn fp::FingerprintModule>,
    touches: u8,
    settle: Duration,
}

fn finger_link_error(e: &FingerprintError) -> bool {
    matches!(
        e,
        FingerprintError::Timeout { .. }
            | FingerprintError::Io(_)
            | FingerprintError::Closed
            | FingerprintError::Open { .. }
            | FingerprintError::Frame { .. }
            | FingerprintError::Protocol { .. }
            | FingerprintError::ModuleReset
            | FingerprintError::Module {
                code: ModuleCode::PacketError
                    | ModuleCode::HardwareError
                    | ModuleCode::SensorHardware
                    | ModuleCode::WrongPassword
                    | ModuleCode::PasswordRequired
                    | ModuleCode::BadAddress
                    | ModuleCode::PortFailed,
                ..
            }
    )
}

/// Image-quality refusals: the finger was there but could not be used.
fn finger_quality(e: &FingerprintError) -> bool {
    matches!(
        e,
        FingerprintError::Module {
            code: ModuleCode::ImageFailed
                | ModuleCode::ImageMessy
                | ModuleCode::TooFewFeatures
                | ModuleCode::InvalidImage
                | ModuleCode::MergeFailed
                | ModuleCode::NoMatch,
            ..
        }
    )
}

impl Reader for FingerReader {
    const MODALITY: Modality = Modality::Fingerprint;
    const TRACKS_PRESENCE: bool = true;
    const INTERRUPTIBLE_READ: bool = false;

    fn enrol<'a>(
        &'a mut self,
        slot: u16,
        steps: Steps<'a>,
    ) -> BoxFuture<'a, Result<(), EnrolFailure>> {
        Box::pin(async move {
            // The driver says "place touch k" before every touch; the
            // engine is told "again" from the second on (the first prompt
            // came with the enrolment itself) and "remove" between touches.
            let mut progress = |s: EnrollStep| match s {
                EnrollStep::PlaceFinger { touch, of } if touch > 1 => {
                    steps(EnrolStep::PresentAgain { n: touch, of })
                }
                EnrollStep::LiftFinger { .. } => steps(EnrolStep::Remove),
                _ => {}
            };
            match self.module.enroll(slot, self.touches, &mut progress).await {
                Ok(()) => Ok(()),
                Err(FingerprintError::Duplicate { slot }) => Err(EnrolFailure::Duplicate { slot }),
                Err(FingerprintError::FingerTimeout(_) | FingerprintError::LiftTimeout(_)) => {
                    Err(EnrolFailure::Timeout)
                }
                Err(e) if finger_quality(&e) => Err(EnrolFailure::Quality),
                Err(e) => Err(EnrolFailure::Module(e.to_string())),
            }
        })
    }

    fn read(&mut self) -> BoxFuture<'_, Result<Read, ReadError>> {
        Box::pin(async move {
            match self.module.identify().await {
                Ok(Some(m)) => Ok(Read::Match(m.slot)),
                Ok(None) => Ok(Read::NoMatch),
                Err(e) if e.is_no_finger() => Ok(Read::Nothing),
                Err(e) if finger_quality(&e) => Ok(Read::Unreadable),
                Err(e) => Err(ReadError {
                    link: finger_link_error(&e),
                    detail: e.to_string(),
                }),
            }
        })
    }

    fn delete(&mut self, slot: u16) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.module.delete(slot).await.map_err(|e| e.to_string()) })
    }

    fn wipe(&mut self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.module.empty().await.map_err(|e| e.to_string()) })
    }

    fn slots(&mut self) -> BoxFuture<'_, Result<BTreeSet<u16>, String>> {
        Box::pin(async move { self.module.slots().await.map_err(|e| e.to_string()) })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<(), String>> {
        // An R30x runs one instruction at a time and nothing in the
        // background: a dropped enrolment leaves at most a late reply.
        // Let it arrive, so the driver drains it before its next request
        // instead of reading it as that request's answer.
        let settle = self.settle;
        Box::pin(async move {
            tokio::time::sleep(settle).await;
            Ok(())
        })
    }

    fn reconcile<'a>(
        &'a mut self,
        db: &'a BTreeSet<u16>,
    ) -> BoxFuture<'a, Result<Reconciliation, String>> {
        Box::pin(async move {
            fp::reconcile_module(&mut *self.module, db)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

struct PalmReader {
    module: Box<dyn palm::PalmModule>,
}

fn palm_link_error(e: &PalmError) -> bool {
    matches!(
        e,
        PalmError::Timeout { .. }
            | PalmError::Io(_)
            | PalmError::Closed
            | PalmError::Open { .. }
            | PalmError::Frame { .. }
            | PalmError::Protocol { .. }
            | PalmError::ModuleReset
            | PalmError::Status {
                status: PalmStatus::BadFrame | PalmStatus::UnknownCommand | PalmStatus::Busy,
                ..
            }
    )
}

impl Reader for PalmReader {
    const MODALITY: Modality = Modality::Palm;
    const TRACKS_PRESENCE: bool = false;
    const INTERRUPTIBLE_READ: bool = true;

    fn enrol<'a>(
        &'a mut self,
        slot: u16,
        steps: Steps<'a>,
    ) -> BoxFuture<'a, Result<(), EnrolFailure>> {
        Box::pin(async move {
            let mut progress = |s: PalmEnrollStep| match s {
                PalmEnrollStep::PresentPalm { capture, of } if capture > 1 => {
                    steps(EnrolStep::PresentAgain { n: capture, of })
                }
                PalmEnrollStep::WithdrawPalm { .. } => steps(EnrolStep::Remove),
                _ => {}
            };
            match self.module.enroll(slot, &mut progress).await {
                Ok(()) => Ok(()),
                Err(PalmError::Duplicate { id }) => Err(EnrolFailure::Duplicate { slot: id }),
                Err(PalmError::NoPalm(_)) => Err(EnrolFailure::Timeout),
                Err(PalmError::Status {
                    status: PalmStatus::Mismatch | PalmStatus::CaptureFailed,
                    ..
                }) => Err(EnrolFailure::Quality),
                Err(e) => Err(EnrolFailure::Module(e.to_string())),
            }
        })
    }

    fn read(&mut self) -> BoxFuture<'_, Result<Read, ReadError>> {
        Box::pin(async move {
            match self.module.identify().await {
                Ok(Some(m)) => Ok(Read::Match(m.id)),
                Ok(None) => Ok(Read::NoMatch),
                Err(PalmError::NoPalm(_)) => Ok(Read::Nothing),
                Err(PalmError::Status {
                    status: PalmStatus::CaptureFailed,
                    ..
                }) => Ok(Read::Unreadable),
                Err(e) => Err(ReadError {
                    link: palm_link_error(&e),
                    detail: e.to_string(),
                }),
            }
        })
    }

    fn delete(&mut self, slot: u16) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match self.module.delete(slot).await {
                // Already gone is what was wanted.
                Ok(())
                | Err(PalmError::Status {
                    status: PalmStatus::NotFound,
                    ..
                }) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn wipe(&mut self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.module.delete_all().await.map_err(|e| e.to_string()) })
    }

    fn slots(&mut self) -> BoxFuture<'_, Result<BTreeSet<u16>, String>> {
        Box::pin(async move { self.module.ids().await.map_err(|e| e.to_string()) })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<(), String>> {
        // A dropped Enroll keeps running on the module until aborted.
        Box::pin(async move { self.module.abort().await.map_err(|e| e.to_string()) })
    }

    fn reconcile<'a>(
        &'a mut self,
        db: &'a BTreeSet<u16>,
    ) -> BoxFuture<'a, Result<Reconciliation, String>> {
        Box::pin(async move {
            let found = fp::reconcile(db, &self.module.ids().await.map_err(|e| e.to_string())?);
            for &id in &found.unknown_in_module {
                tracing::warn!(id, "clearing palm id unknown to the database");
                self.module.delete(id).await.map_err(|e| e.to_string())?;
            }
            Ok(found)
        })
    }
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
                Err(detail) => self.fault(format!("reconciling slots at start: {detail}")),
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
        self.faulted = true;
        tracing::error!(device = device_name(self.modality()), %detail, "module fault");
        self.report(ModuleReport::Fault {
            modality: self.modality(),
            detail,
        });
    }

    fn answered(&mut self) {
        if std::mem::take(&mut self.faulted) {
            tracing::info!(
                device = device_name(self.modality()),
                "module answers again"
            );
        }
    }

    async fn after_read(&mut self, r: Result<Read, ReadError>) {
        let modality = self.modality();
        let read = match r {
            Ok(read) => {
                self.answered();
                read
            }
            Err(e) if e.link => return self.fault(e.detail),
            Err(e) => {
                // The module answered, but refused: not an outage.
                self.answered();
                tracing::warn!(device = device_name(modality), detail = %e.detail, "read refused");
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

async fn read_once<R: Reader>(reader: &mut R, wait: Option<Duration>) -> Result<Read, ReadError> {
    if let Some(w) = wait {
        tokio::time::sleep(w).await;
    }
    reader.read().await
}

// ---- the Linux board's peripherals ---------------------------------------------

/// A board with no face service: every face command is answered with a
/// `Fault` report, so the engine tells the person and carries on (face
/// recognition simply never succeeds). The real camera pipeline replaces
/// this in [`linux_peripherals`] once it is wired in.
pub struct UnavailableFace {
    sink: Arc<dyn ReportSink>,
}

impl UnavailableFace {
    pub fn new(sink: Arc<dyn ReportSink>) -> Self {
        UnavailableFace { sink }
    }
}

impl super::FaceSource for UnavailableFace {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        tracing::warn!(?cmd, "face command on a board without a face service");
        self.sink.report(ModuleReport::Fault {
            modality: Modality::Face,
            detail: "this board has no face service; face recognition is not available".into(),
        });
        Ok(())
    }
}

/// A board without a snapshot camera service: each snapshot is refused
/// with a clear error (logged by the daemon); nothing else changes.
pub struct UnavailableCamera;

impl super::Camera for UnavailableCamera {
    fn snapshot(
        &mut self,
        _reason: crate::core::action::SnapshotReason,
    ) -> Result<(), DeviceError> {
        Err(DeviceError::Unavailable {
            device: "camera",
            detail: "this board has no snapshot service yet".into(),
        })
    }
}

/// The module slots the database's credentials of `kind` use.
pub fn db_slots(
    persisted: &crate::core::types::Persisted,
    kind: crate::core::types::CredentialKind,
) -> BTreeSet<u16> {
    persisted
        .credentials
        .iter()
        .filter(|c| c.kind == kind)
        .filter_map(|c| match c.secret {
            crate::core::types::CredentialSecret::ModuleSlot(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// The UART modules and the face/camera of a Linux board, from its board
/// file: each UART opened with `tokio-serial` and handed to an adapter
/// (handshake and slot reconciliation against `persisted` run in the
/// adapter task; a module that does not answer is reported as a `Fault`
/// and does not stop the lock from starting).
///
/// Face and camera: [`UnavailableFace`] and [`UnavailableCamera`] until the
/// camera pipeline (`board::face_service`) is wired in here.
#[cfg(feature = "board-linux")]
pub fn linux_peripherals(
    cfg: &super::linux::config::BoardConfig,
    persisted: &crate::core::types::Persisted,
    sink: Arc<dyn ReportSink>,
) -> super::linux::board::Peripherals {
    use crate::core::types::CredentialKind;

    let finger_uart = cfg.fingerprint.clone();
    let fingerprint = spawn_fingerprint_connecting(
        Box::pin(async move {
            let path = finger_uart.path.display().to_string();
            let stream = fp::open_serial(&path, finger_uart.baud).map_err(|e| e.to_string())?;
            let driver = fp::Fingerprint::connect(stream, fp::FingerprintConfig::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(Box::new(driver) as Box<dyn fp::FingerprintModule>)
        }),
        AdapterConfig {
            db_slots: Some(db_slots(persisted, CredentialKind::Fingerprint)),
            ..AdapterConfig::default()
        },
        sink.clone(),
    );
    let palm_uart = cfg.palm.clone();
    let palm = spawn_palm_connecting(
        Box::pin(async move {
            let path = palm_uart.path.display().to_string();
            let stream = palm::open_serial(&path, palm_uart.baud).map_err(|e| e.to_string())?;
            let driver = palm::Palm::connect(stream, palm::PalmConfig::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(Box::new(driver) as Box<dyn palm::PalmModule>)
        }),
        AdapterConfig {
            db_slots: Some(db_slots(persisted, CredentialKind::Palm)),
            ..AdapterConfig::default()
        },
        sink.clone(),
    );
    super::linux::board::Peripherals {
        fingerprint: Box::new(fingerprint),
        palm: Box::new(palm),
        face: Box::new(UnavailableFace::new(sink)),
        camera: Box::new(UnavailableCamera),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::{Camera as _, FaceSource as _};

    fn sink() -> (Arc<dyn ReportSink>, mpsc::UnboundedReceiver<ModuleReport>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(tx), rx)
    }

    #[tokio::test]
    async fn a_failed_handshake_is_one_fault_then_commands_are_refused() {
        let (sink, mut rx) = sink();
        let mut adapter = spawn_fingerprint_connecting(
            Box::pin(async { Err("no answer to VfyPwd".to_string()) }),
            AdapterConfig::default(),
            sink,
        );
        match rx.recv().await {
            Some(ModuleReport::Fault { modality, detail }) => {
                assert_eq!(modality, Modality::Fingerprint);
                assert!(detail.contains("no answer to VfyPwd"), "{detail}");
            }
            other => panic!("expected a fault, got {other:?}"),
        }
        // The task ends right after its report.
        while adapter.is_running() {
            tokio::task::yield_now().await;
        }
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

    #[tokio::test]
    async fn without_a_face_service_face_commands_report_a_fault() {
        let (sink, mut rx) = sink();
        let mut face = UnavailableFace::new(sink);
        face.command(&ModuleCmd::RecogniseFace).expect("answered");
        assert!(matches!(
            rx.try_recv(),
            Ok(ModuleReport::Fault {
                modality: Modality::Face,
                ..
            })
        ));
        let e = UnavailableCamera
            .snapshot(crate::core::action::SnapshotReason::Doorbell)
            .expect_err("no camera");
        assert!(matches!(e, DeviceError::Unavailable { .. }), "{e}");
    }
}
