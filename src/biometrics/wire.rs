//! `[sim] modules = "wire"`: the simulated lock's fingerprint and palm
//! readers are the *real* drivers and adapter tasks
//! ([`crate::biometrics::adapter`]), talking their UART protocols over
//! `tokio::io::duplex` to the wire-level simulators.
//!
//! ```text
//!  SimControl::finger(p) ──► WireModules (SimHands) ──► SimFingerprintControl::place(p, 0)
//!                                                            │ (sensor state)
//!  adapter task ── R30x frames ──────────────────────► fingerprint::sim ◄┘
//!       │ report (Recognised, NotRecognised, EnrolProgress, Enrolled...)
//!       ▼
//!  Hand ── lift() the finger once the module has read it ──► SimReports ──► engine
//! ```
//!
//! Owns the two simulators, the two adapters and the hand task. Driven by
//! the sim board: [`sim_modules`] is handed to
//! [`board::sim::build_with`](crate::board::sim::build_with), which calls
//! it once with the board's [`SimReports`]; `SimControl::finger`/`palm`
//! then go through [`SimHands`]. The board knows nothing of the drivers.
//!
//! The hand lifts the finger (withdraws the palm) as soon as the adapter
//! reports what the module read, so one `finger(p)` is one touch, as with
//! the in-memory modules. A finger put down again right after a lift waits
//! until the module has been polled three times since the lift (as a
//! person's finger takes a moment to come back): otherwise the adapter
//! would never see the sensor empty and would take the new touch for the
//! old finger still resting there. Unlike them, the reports arrive *after*
//! `finger()` returns (the adapter polls the module), so a caller that
//! needs the engine to have handled the touch must wait for the report.
//! The simulators keep their libraries in memory only: templates enrolled
//! in this mode are gone after a daemon restart.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use crate::biometrics::adapter::{AdapterConfig, ModuleAdapter, ReportSink};
use crate::biometrics::fingerprint::reader::spawn_fingerprint_connecting;
use crate::biometrics::fingerprint::sim::{SimFingerprintConfig, SimFingerprintControl};
use crate::biometrics::fingerprint::{self as fp, Fingerprint, FingerprintConfig};
use crate::biometrics::palm::reader::spawn_palm_connecting;
use crate::biometrics::palm::sim::{SimPalmConfig, SimPalmControl};
use crate::biometrics::palm::{self, Palm, PalmConfig};
use crate::board::sim::{
    BuildModules, ModuleSlots, OutsideModules, SimConfig, SimHands, SimReports,
};
use crate::core::input::{EnrolStep, ModuleReport};
use crate::core::types::Modality;

/// The simulators' control handles: the hands the sim board presents
/// fingers and palms with.
#[derive(Debug, Clone)]
struct WireModules {
    finger: SimFingerprintControl,
    palm: SimPalmControl,
    /// The finger simulator's command count when the finger last left.
    lifted_at: Arc<AtomicU64>,
    /// Fingers to put down, in order (the hand task's queue).
    touches: mpsc::UnboundedSender<u32>,
}

/// Module commands answered after a lift before the next touch goes down.
const POLLS_AFTER_LIFT: u64 = 3;

/// The person's hand: puts each queued finger down once the module has
/// seen the sensor empty since the last lift.
async fn hand_task(
    finger: SimFingerprintControl,
    lifted_at: Arc<AtomicU64>,
    mut touches: mpsc::UnboundedReceiver<u32>,
) {
    while let Some(person) = touches.recv().await {
        // The simulator has no event for "polled"; a person's reaction
        // time is long against this 5 ms look.
        while finger.commands() < lifted_at.load(Ordering::SeqCst) + POLLS_AFTER_LIFT {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        finger.place(person, 0);
    }
}

/// The driver ends of the two links, until the adapters take them.
struct DriverEnds {
    finger: DuplexStream,
    palm: DuplexStream,
    touches: u8,
    captures: u8,
}

/// The sim board's fingerprint and palm readers on the real drivers, for
/// [`SimParts::modules`](crate::board::sim::SimParts::modules). The
/// simulators and adapters start when the board calls it (inside tokio).
pub fn sim_modules(config: &SimConfig) -> BuildModules {
    // The R30x driver takes 2..=char_buffers touches; give the simulated
    // module as many buffers as the configured touches.
    let touches = config.finger_touches.max(2);
    let captures = config.palm_touches.clamp(1, palm::driver::MAX_CAPTURES);
    Box::new(move |reports| {
        let (wire, ends) = start_simulators(touches, captures);
        let (fingerprint, palm) = start_adapters(ends, reports, wire.clone());
        OutsideModules {
            fingerprint: Box::new(fingerprint),
            palm: Box::new(palm),
            hands: Arc::new(wire),
        }
    })
}

/// Start both simulators. Must run inside tokio.
fn start_simulators(touches: u8, captures: u8) -> (WireModules, DriverEnds) {
    let (finger_host, finger_module) = tokio::io::duplex(1024);
    let (palm_host, palm_module) = tokio::io::duplex(1024);
    let (finger, _) = fp::sim::spawn(
        finger_module,
        SimFingerprintConfig {
            char_buffers: touches,
            ..SimFingerprintConfig::default()
        },
    );
    let (palm, _) = palm::sim::spawn(palm_module, SimPalmConfig::default());
    let lifted_at = Arc::new(AtomicU64::new(0));
    let (touch_tx, touch_rx) = mpsc::unbounded_channel();
    tokio::spawn(hand_task(finger.clone(), lifted_at.clone(), touch_rx));
    (
        WireModules {
            finger,
            palm,
            lifted_at,
            touches: touch_tx,
        },
        DriverEnds {
            finger: finger_host,
            palm: palm_host,
            touches,
            captures,
        },
    )
}

/// Start the two adapters; their reports go through the hand to the engine.
fn start_adapters(
    ends: DriverEnds,
    reports: SimReports,
    wire: WireModules,
) -> (ModuleAdapter, ModuleAdapter) {
    let sink: Arc<dyn ReportSink> = Arc::new(Hand { reports, wire });
    let touches = ends.touches;
    let finger_link = ends.finger;
    let finger = spawn_fingerprint_connecting(
        Box::pin(async move {
            let driver = Fingerprint::connect(
                finger_link,
                FingerprintConfig {
                    char_buffers: touches,
                    ..FingerprintConfig::default()
                },
            )
            .await?;
            Ok(Box::new(driver) as Box<dyn fp::FingerprintModule>)
        }),
        AdapterConfig {
            finger_touches: touches,
            ..AdapterConfig::default()
        },
        sink.clone(),
    );
    let captures = ends.captures;
    let palm_link = ends.palm;
    let palm = spawn_palm_connecting(
        Box::pin(async move {
            let driver = Palm::connect(
                palm_link,
                PalmConfig {
                    captures,
                    ..PalmConfig::default()
                },
            )
            .await?;
            Ok(Box::new(driver) as Box<dyn palm::PalmModule>)
        }),
        AdapterConfig::default(),
        sink,
    );
    (finger, palm)
}

impl SimHands for WireModules {
    /// `person` presents a finger or palm; `false` for the face (not a
    /// UART module).
    fn present(&self, modality: Modality, person: u32) -> bool {
        match modality {
            Modality::Fingerprint => {
                // Fails only when the board is being dropped.
                let _ = self.touches.send(person);
            }
            Modality::Palm => self.palm.present(person),
            Modality::Face => return false,
        }
        true
    }

    /// The simulators' libraries as slot → person, for `status`.
    fn slots(&self) -> (ModuleSlots, ModuleSlots) {
        (
            self.finger
                .templates()
                .into_iter()
                .map(|(slot, f)| (slot, f.person))
                .collect(),
            self.palm.templates(),
        )
    }
}

/// Takes the finger off (the palm away) once the module has read it, then
/// hands the report to the engine.
struct Hand {
    reports: SimReports,
    wire: WireModules,
}

impl ReportSink for Hand {
    fn report(&self, report: ModuleReport) {
        let (modality, read) = match &report {
            ModuleReport::Recognised { modality, .. }
            | ModuleReport::NotRecognised { modality }
            | ModuleReport::SpoofRefused { modality, .. }
            | ModuleReport::Enrolled { modality, .. }
            | ModuleReport::EnrolFailed { modality, .. }
            | ModuleReport::EnrolProgress {
                modality,
                step: EnrolStep::Remove,
            } => (*modality, true),
            ModuleReport::EnrolProgress { modality, .. }
            | ModuleReport::Fault { modality, .. }
            | ModuleReport::Recovered { modality }
            | ModuleReport::Untrusted { modality, .. } => (*modality, false),
        };
        if read {
            match modality {
                Modality::Fingerprint => {
                    self.wire.finger.lift();
                    self.wire
                        .lifted_at
                        .store(self.wire.finger.commands(), Ordering::SeqCst);
                }
                Modality::Palm => self.wire.palm.withdraw(),
                Modality::Face => {}
            }
        }
        // Fails only when the engine has stopped (shutdown).
        let _ = self.reports.report(report);
    }
}
