// The module adapters (src/biometrics/adapter.rs and the fingerprint/palm
// readers beside their drivers) end to end: the real
// fingerprint (R30x) and palm (LPV/1) drivers, behind the adapter task, talk
// to the wire-level simulators over `tokio::io::duplex` and over a real PTY
// pair (the driver opens the slave with tokio-serial as it opens /dev/ttyS*).
//
// What the engine sees is checked report by report: enrolment steps, then
// Enrolled; a duplicate refused (B-1.3); a known finger/palm recognised, an
// unknown one reported once; module silence reported once, then recovery;
// a cancelled enrolment stores nothing; and reconciliation at start.
//
// No timed assertions: every wait is for a report or for the simulator to
// have answered more commands; the outer limit only turns a hang into a
// failure.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use latchd::biometrics::adapter::{AdapterConfig, ModuleAdapter};
use latchd::biometrics::fingerprint::reader::spawn_fingerprint;
use latchd::biometrics::fingerprint::{
    self,
    sim::{FingerFault, SimFinger, SimFingerprintConfig, SimFingerprintControl},
    Fingerprint, FingerprintConfig,
};
use latchd::biometrics::palm::reader::spawn_palm;
use latchd::biometrics::palm::{
    self,
    sim::{SimPalmConfig, SimPalmControl},
    Palm, PalmConfig,
};
use latchd::board::ModuleHealth;
use latchd::core::input::{EnrolFailure, EnrolStep, ModuleReport};
use latchd::core::types::Modality;
use latchd::core::ModuleCmd;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::common::pty::open_pty;

const FP: Modality = Modality::Fingerprint;
const PALM: Modality = Modality::Palm;

// ---- a real PTY pair (as in tests/it/uart_modules.rs) ------------------------

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

// ---- helpers -------------------------------------------------------------------

/// Next report; a hang becomes a failure naming what was awaited.
async fn next(rx: &mut UnboundedReceiver<ModuleReport>, what: &str) -> ModuleReport {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no report while waiting for {what}"))
        .expect("the adapter stopped")
}

fn adapter_config() -> AdapterConfig {
    AdapterConfig {
        idle_poll: Duration::from_millis(10),
        fault_retry: Duration::from_millis(20),
        palm_hold_off: Duration::from_millis(300),
        finger_touches: 2,
        cancel_settle: Duration::from_secs(1),
        db_slots: None,
    }
}

/// Wait until the fingerprint simulator has answered `n` more commands
/// (so the adapter has seen what the sensor shows now).
async fn fp_polled(ctl: &SimFingerprintControl, n: u64) {
    let target = ctl.commands() + n;
    tokio::time::timeout(Duration::from_secs(30), async {
        while ctl.commands() < target {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the adapter stopped polling");
}

async fn palm_polled(ctl: &SimPalmControl, n: u64) {
    let target = ctl.requests() + n;
    tokio::time::timeout(Duration::from_secs(30), async {
        while ctl.requests() < target {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the adapter stopped asking");
}

// ---- fingerprint -------------------------------------------------------------------

async fn fp_rig(
    driver_end: impl Stream,
    module_end: impl Stream,
    db_slots: Option<BTreeSet<u16>>,
    preload: &[(u32, u16)],
) -> (
    ModuleAdapter,
    SimFingerprintControl,
    UnboundedReceiver<ModuleReport>,
) {
    let (ctl, _sim) = fingerprint::sim::spawn(module_end, SimFingerprintConfig::default());
    let mut driver = Fingerprint::connect(
        driver_end,
        FingerprintConfig {
            request_timeout: Duration::from_millis(300),
            poll_interval: Duration::from_millis(5),
            ..FingerprintConfig::default()
        },
    )
    .await
    .expect("connect");
    // Templates already in the module's flash, enrolled over the wire.
    for &(person, slot) in preload {
        let c = ctl.clone();
        let mut hand = move |s: fingerprint::EnrollStep| match s {
            fingerprint::EnrollStep::PlaceFinger { .. } => c.place(person, 0),
            fingerprint::EnrollStep::LiftFinger { .. } => c.lift(),
            _ => {}
        };
        driver.enroll(slot, 2, &mut hand).await.expect("preload");
        ctl.lift();
    }
    let (tx, rx) = unbounded_channel();
    let adapter = spawn_fingerprint(
        Box::new(driver),
        AdapterConfig {
            db_slots,
            ..adapter_config()
        },
        Arc::new(tx),
    );
    (adapter, ctl, rx)
}

/// Enrol `person` into `slot`, acting the touches from the reports; returns
/// the steps seen and the final report.
async fn fp_enrol(
    adapter: &mut ModuleAdapter,
    ctl: &SimFingerprintControl,
    rx: &mut UnboundedReceiver<ModuleReport>,
    person: u32,
    slot: u16,
) -> (Vec<EnrolStep>, ModuleReport) {
    ctl.place(person, 0);
    adapter
        .command(&ModuleCmd::Enrol { modality: FP, slot })
        .expect("queued");
    let mut steps = Vec::new();
    loop {
        match next(rx, "an enrolment report").await {
            ModuleReport::EnrolProgress { modality, step } => {
                assert_eq!(modality, FP);
                steps.push(step);
                match step {
                    EnrolStep::Remove => ctl.lift(),
                    EnrolStep::PresentAgain { .. } => ctl.place(person, 0),
                    other => panic!("unexpected step {other:?}"),
                }
            }
            done => return (steps, done),
        }
    }
}

/// Lift the finger and wait until the adapter has seen the empty sensor:
/// of any three commands answered after the lift, at most one belongs to
/// the flow before (a cancelled enrolment's slot check), and one is an
/// idle GenImg that read "no finger".
async fn fp_lift(ctl: &SimFingerprintControl) {
    ctl.lift();
    fp_polled(ctl, 3).await;
}

async fn fingerprint_scenario(driver_end: impl Stream, module_end: impl Stream) {
    let (mut adapter, ctl, mut rx) = fp_rig(driver_end, module_end, None, &[]).await;

    // Enrol: "remove", "again 2/2", then Enrolled with no template bytes.
    let (steps, done) = fp_enrol(&mut adapter, &ctl, &mut rx, 1, 3).await;
    assert_eq!(
        steps,
        vec![EnrolStep::Remove, EnrolStep::PresentAgain { n: 2, of: 2 }]
    );
    assert_eq!(
        done,
        ModuleReport::Enrolled {
            modality: FP,
            slot: 3,
            template: None
        }
    );
    assert_eq!(
        ctl.templates().into_iter().collect::<Vec<_>>(),
        vec![(
            3,
            SimFinger {
                person: 1,
                finger: 0
            }
        )]
    );
    fp_lift(&ctl).await;

    // B-1.3: the same finger into another slot is refused; nothing stored.
    let (_, done) = fp_enrol(&mut adapter, &ctl, &mut rx, 1, 4).await;
    assert_eq!(
        done,
        ModuleReport::EnrolFailed {
            modality: FP,
            reason: EnrolFailure::Duplicate { slot: 3 }
        }
    );
    assert_eq!(ctl.templates().keys().copied().collect::<Vec<_>>(), vec![3]);
    fp_lift(&ctl).await;

    // Recognition while idle: person 1 → slot 3, once per touch.
    ctl.place(1, 0);
    assert_eq!(
        next(&mut rx, "recognition").await,
        ModuleReport::Recognised {
            modality: FP,
            slot: 3
        }
    );
    fp_polled(&ctl, 6).await; // the finger rests: polled again, not reported
    fp_lift(&ctl).await;

    // An unknown finger: exactly one NotRecognised while it rests.
    ctl.place(9, 0);
    assert_eq!(
        next(&mut rx, "an unknown finger").await,
        ModuleReport::NotRecognised { modality: FP }
    );
    fp_polled(&ctl, 6).await;
    fp_lift(&ctl).await;
    assert!(rx.try_recv().is_err(), "one report per touch");

    // Silence: one Fault for the outage, however many polls fail; then the
    // module answers again and recognition works.
    for _ in 0..3 {
        ctl.inject(FingerFault::Silence);
    }
    match next(&mut rx, "the fault").await {
        ModuleReport::Fault { modality, detail } => {
            assert_eq!(modality, FP);
            assert!(detail.contains("did not answer"), "{detail}");
        }
        other => panic!("expected a fault, got {other:?}"),
    }
    // The self-test reads the same outage (issue 22 item 3).
    assert!(
        matches!(adapter.health(), ModuleHealth::Failing(d) if d.contains("did not answer")),
        "{:?}",
        adapter.health()
    );
    ctl.place(1, 0);
    // The outage's end is reported once (issue 15 item 5), then the read.
    assert_eq!(
        next(&mut rx, "the module answers again").await,
        ModuleReport::Recovered { modality: FP }
    );
    assert_eq!(
        next(&mut rx, "recognition after the outage").await,
        ModuleReport::Recognised {
            modality: FP,
            slot: 3
        }
    );
    assert_eq!(adapter.health(), ModuleHealth::Answering);
    fp_lift(&ctl).await;

    // Cancel mid-enrolment: after the first touch, nothing is stored.
    ctl.place(2, 0);
    adapter
        .command(&ModuleCmd::Enrol {
            modality: FP,
            slot: 5,
        })
        .expect("queued");
    assert_eq!(
        next(&mut rx, "the first enrolment step").await,
        ModuleReport::EnrolProgress {
            modality: FP,
            step: EnrolStep::Remove
        }
    );
    adapter
        .command(&ModuleCmd::CancelEnrol { modality: FP })
        .expect("queued");
    fp_lift(&ctl).await;
    // Back to recognition: person 2 is unknown, and slot 5 is empty.
    ctl.place(2, 0);
    assert_eq!(
        next(&mut rx, "recognition after the cancel").await,
        ModuleReport::NotRecognised { modality: FP }
    );
    fp_lift(&ctl).await;
    assert_eq!(ctl.templates().keys().copied().collect::<Vec<_>>(), vec![3]);

    // Delete and wipe reach the module.
    adapter
        .command(&ModuleCmd::Delete {
            modality: FP,
            slot: 3,
        })
        .expect("queued");
    ctl.place(1, 0);
    assert_eq!(
        next(&mut rx, "recognition after the delete").await,
        ModuleReport::NotRecognised { modality: FP }
    );
    fp_lift(&ctl).await;
    assert!(ctl.templates().is_empty());

    // A command for another modality is refused, not queued.
    assert!(adapter
        .command(&ModuleCmd::Wipe { modality: PALM })
        .is_err());
}

#[tokio::test]
async fn fingerprint_over_duplex() {
    let (a, b) = tokio::io::duplex(4096);
    fingerprint_scenario(a, b).await;
}

#[tokio::test]
async fn fingerprint_over_a_pty() {
    let pty = open_pty();
    let driver_end = fingerprint::open_serial(&pty.slave_path, 57_600).expect("open slave");
    fingerprint_scenario(driver_end, pty.master).await;
}

#[tokio::test]
async fn fingerprint_reconciles_slots_with_the_database_at_start() {
    let (a, b) = tokio::io::duplex(4096);
    // Module holds 1 (person 1) and 2 (person 2); the DB knows 1 and 7.
    let db: BTreeSet<u16> = [1, 7].into();
    let (_adapter, ctl, mut rx) = fp_rig(a, b, Some(db), &[(1, 1), (2, 2)]).await;
    // Person 2's slot was unknown to the DB: cleared before recognition.
    ctl.place(2, 0);
    assert_eq!(
        next(&mut rx, "recognition").await,
        ModuleReport::NotRecognised { modality: FP }
    );
    assert_eq!(ctl.templates().keys().copied().collect::<Vec<_>>(), vec![1]);
    fp_lift(&ctl).await;
    ctl.place(1, 0);
    assert_eq!(
        next(&mut rx, "recognition").await,
        ModuleReport::Recognised {
            modality: FP,
            slot: 1
        }
    );
}

// ---- palm -------------------------------------------------------------------------

async fn palm_rig(
    driver_end: impl Stream,
    module_end: impl Stream,
) -> (
    ModuleAdapter,
    SimPalmControl,
    UnboundedReceiver<ModuleReport>,
) {
    let (ctl, _sim) = palm::sim::spawn(module_end, SimPalmConfig::default());
    let driver = Palm::connect(
        driver_end,
        PalmConfig {
            request_timeout: Duration::from_millis(500),
            capture_timeout: Duration::from_secs(1),
            captures: 2,
        },
    )
    .await
    .expect("connect");
    let (tx, rx) = unbounded_channel();
    let adapter = spawn_palm(Box::new(driver), adapter_config(), Arc::new(tx));
    (adapter, ctl, rx)
}

async fn palm_enrol(
    adapter: &mut ModuleAdapter,
    ctl: &SimPalmControl,
    rx: &mut UnboundedReceiver<ModuleReport>,
    person: u32,
    slot: u16,
) -> (Vec<EnrolStep>, ModuleReport) {
    adapter
        .command(&ModuleCmd::Enrol {
            modality: PALM,
            slot,
        })
        .expect("queued");
    ctl.present(person);
    let mut steps = Vec::new();
    let done = loop {
        match next(rx, "a palm enrolment report").await {
            ModuleReport::EnrolProgress { modality, step } => {
                assert_eq!(modality, PALM);
                steps.push(step);
                match step {
                    EnrolStep::Remove => ctl.withdraw(),
                    EnrolStep::PresentAgain { .. } => ctl.present(person),
                    other => panic!("unexpected step {other:?}"),
                }
            }
            done => break done,
        }
    };
    ctl.withdraw();
    (steps, done)
}

async fn palm_scenario(driver_end: impl Stream, module_end: impl Stream) {
    let (mut adapter, ctl, mut rx) = palm_rig(driver_end, module_end).await;

    let (steps, done) = palm_enrol(&mut adapter, &ctl, &mut rx, 5, 1).await;
    assert_eq!(
        steps,
        vec![EnrolStep::Remove, EnrolStep::PresentAgain { n: 2, of: 2 }]
    );
    assert_eq!(
        done,
        ModuleReport::Enrolled {
            modality: PALM,
            slot: 1,
            template: None
        }
    );
    assert_eq!(
        ctl.templates().into_iter().collect::<Vec<_>>(),
        vec![(1, 5)]
    );

    let (_, done) = palm_enrol(&mut adapter, &ctl, &mut rx, 5, 2).await;
    assert_eq!(
        done,
        ModuleReport::EnrolFailed {
            modality: PALM,
            reason: EnrolFailure::Duplicate { slot: 1 }
        }
    );
    assert_eq!(ctl.templates().len(), 1);

    // Recognition: the module waits for the palm; one report per palm.
    ctl.present(5);
    assert_eq!(
        next(&mut rx, "palm recognition").await,
        ModuleReport::Recognised {
            modality: PALM,
            slot: 1
        }
    );
    ctl.withdraw();
    ctl.present(6);
    assert_eq!(
        next(&mut rx, "an unknown palm").await,
        ModuleReport::NotRecognised { modality: PALM }
    );
    ctl.withdraw();

    // Cancel mid-enrolment: the module is aborted and stores nothing.
    adapter
        .command(&ModuleCmd::Enrol {
            modality: PALM,
            slot: 3,
        })
        .expect("queued");
    ctl.present(7);
    assert_eq!(
        next(&mut rx, "the first palm step").await,
        ModuleReport::EnrolProgress {
            modality: PALM,
            step: EnrolStep::Remove
        }
    );
    adapter
        .command(&ModuleCmd::CancelEnrol { modality: PALM })
        .expect("queued");
    // The adapter is back to recognition once it asks the module again;
    // the palm is still there and unknown.
    assert_eq!(
        next(&mut rx, "recognition after the cancel").await,
        ModuleReport::NotRecognised { modality: PALM }
    );
    ctl.withdraw();
    assert_eq!(ctl.templates().keys().copied().collect::<Vec<_>>(), vec![1]);
    palm_polled(&ctl, 1).await;

    adapter
        .command(&ModuleCmd::Wipe { modality: PALM })
        .expect("queued");
    ctl.present(5);
    assert_eq!(
        next(&mut rx, "recognition after the wipe").await,
        ModuleReport::NotRecognised { modality: PALM }
    );
    assert!(ctl.templates().is_empty());
}

#[tokio::test]
async fn palm_over_duplex() {
    let (a, b) = tokio::io::duplex(4096);
    palm_scenario(a, b).await;
}

#[tokio::test]
async fn palm_over_a_pty() {
    let pty = open_pty();
    let driver_end = palm::open_serial(&pty.slave_path, 115_200).expect("open slave");
    palm_scenario(driver_end, pty.master).await;
}

// ---- the sim board with `[sim] modules = "wire"` ------------------------------------

/// The next module report the engine would get (other inputs skipped).
async fn next_module(rx: &mut tokio::sync::mpsc::Receiver<latchd::core::Input>) -> ModuleReport {
    loop {
        let input = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("no module report")
            .expect("the board stopped");
        if let latchd::core::Input::Module(r) = input {
            return r;
        }
    }
}

#[tokio::test]
async fn sim_board_with_wire_modules_enrols_and_recognises_through_the_drivers() {
    use latchd::biometrics::wire::sim_modules;
    use latchd::board::sim::{self, SimConfig, SimParts};
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let config = SimConfig {
        finger_touches: 2,
        palm_touches: 2,
        ..SimConfig::default()
    };
    let parts = SimParts {
        modules: Some(sim_modules(&config)),
        ..SimParts::default()
    };
    let (mut board, control) =
        sim::build_with(config, latchd::link::InputSender::new(tx), parts).expect("sim board");
    assert_eq!(board.name, "sim");

    // Fingerprint: each `finger(p)` is one touch; the hand lifts it once
    // the module has read it.
    board
        .fingerprint
        .command(&ModuleCmd::Enrol {
            modality: FP,
            slot: 0,
        })
        .expect("queued");
    control.finger(1).expect("touch");
    assert_eq!(
        next_module(&mut rx).await,
        ModuleReport::EnrolProgress {
            modality: FP,
            step: EnrolStep::Remove
        }
    );
    assert_eq!(
        next_module(&mut rx).await,
        ModuleReport::EnrolProgress {
            modality: FP,
            step: EnrolStep::PresentAgain { n: 2, of: 2 }
        }
    );
    control.finger(1).expect("touch");
    assert_eq!(
        next_module(&mut rx).await,
        ModuleReport::Enrolled {
            modality: FP,
            slot: 0,
            template: None
        }
    );
    control.finger(1).expect("touch");
    assert_eq!(
        next_module(&mut rx).await,
        ModuleReport::Recognised {
            modality: FP,
            slot: 0
        }
    );
    control.finger(2).expect("touch");
    assert_eq!(
        next_module(&mut rx).await,
        ModuleReport::NotRecognised { modality: FP }
    );
    assert_eq!(
        control.snapshot().modules.fingerprint,
        [(0u16, 1u32)].into()
    );

    // Palm, the same way.
    board
        .palm
        .command(&ModuleCmd::Enrol {
            modality: PALM,
            slot: 0,
        })
        .expect("queued");
    control.palm(4).expect("palm");
    assert_eq!(
        next_module(&mut rx).await,
        ModuleReport::EnrolProgress {
            modality: PALM,
            step: EnrolStep::Remove
        }
    );
    assert_eq!(
        next_module(&mut rx).await,
        ModuleReport::EnrolProgress {
            modality: PALM,
            step: EnrolStep::PresentAgain { n: 2, of: 2 }
        }
    );
    control.palm(4).expect("palm");
    assert_eq!(
        next_module(&mut rx).await,
        ModuleReport::Enrolled {
            modality: PALM,
            slot: 0,
            template: None
        }
    );
    control.palm(4).expect("palm");
    assert_eq!(
        next_module(&mut rx).await,
        ModuleReport::Recognised {
            modality: PALM,
            slot: 0
        }
    );
    assert_eq!(control.snapshot().modules.palm, [(0u16, 4u32)].into());
}

// ---- `board = "linux"` in the daemon --------------------------------------------------

/// The daemon refuses to start a Linux board without a usable board file,
/// with an error that says which key to fix (the rest of the Linux board
/// needs real GPIO lines: `tests/vm/vm_board_linux.rs`).
#[cfg(feature = "board-linux")]
#[tokio::test]
async fn linux_board_needs_a_board_file() {
    use latchd::config::{BoardKind, Config};
    use latchd::daemon::{self, DaemonError, Options};
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = |board_file: Option<std::path::PathBuf>| Options {
        config: Config {
            board: BoardKind::Linux,
            board_file,
            ..Config::default()
        },
        state_dir: dir.path().join("state"),
        front_panel: false,
        control_socket: None,
        dbus: None,
        set_held: false,
    };
    let token = tokio_util::sync::CancellationToken::new();
    let e = daemon::start(opts(None), token.clone())
        .await
        .expect_err("no board file");
    assert!(matches!(e, DaemonError::NoBoardFile), "{e}");
    assert!(e.to_string().contains("board_file"), "{e}");
    let missing = dir.path().join("no-such-board.toml");
    let e = daemon::start(opts(Some(missing)), token)
        .await
        .expect_err("missing board file");
    assert!(
        e.to_string().contains("no-such-board.toml"),
        "the error names the file: {e}"
    );
}
