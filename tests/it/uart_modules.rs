// UART biometric modules end to end: the fingerprint (R30x/ZFM) and palm-vein
// (LPV/1) drivers against their simulators, over a real PTY pair (the driver
// opens the slave path with tokio-serial exactly as it opens /dev/ttyS*, the
// simulator serves the master) and over `tokio::io::duplex`.
//
// Covers B-1.3 (a finger is enrolled once), B-4.6/B-4.7 (enrolment flows),
// and every injected fault → typed error with module state unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use latchd::biometrics::fingerprint::{
    self,
    sim::{FingerFault, SimFinger, SimFingerprintConfig},
    EnrollStep, Fingerprint, FingerprintConfig, FingerprintError, FingerprintModule, Led, LedColor,
    LedMode, Match, ModuleCode,
};
use latchd::biometrics::palm::{
    self,
    frame::FrameError as PalmFrameError,
    sim::{PalmFault, SimPalmConfig},
    Palm, PalmCommand, PalmConfig, PalmEnrollStep, PalmError, PalmMatch, PalmModule, PalmState,
    PalmStatus,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::common::pty::open_pty;

// ---- a real PTY pair -------------------------------------------------------

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

// ---- fingerprint -------------------------------------------------------------

fn fp_config() -> FingerprintConfig {
    FingerprintConfig {
        // Generous for a loaded CI machine; only the Silence fault waits it out.
        request_timeout: Duration::from_secs(1),
        poll_interval: Duration::from_millis(5),
        ..FingerprintConfig::default()
    }
}

/// Enrols `person`'s `finger`, acting the touches from the progress
/// callback: place on "place", lift on "lift". Returns the steps seen.
async fn fp_enroll<S: Stream>(
    fp: &mut Fingerprint<S>,
    ctl: &fingerprint::sim::SimFingerprintControl,
    slot: u16,
    person: u32,
    finger: u8,
    fault_after_first_touch: Option<FingerFault>,
) -> (Result<(), FingerprintError>, Vec<EnrollStep>) {
    let mut steps = Vec::new();
    let ctl = ctl.clone();
    let mut cb = |step: EnrollStep| {
        steps.push(step);
        match step {
            EnrollStep::PlaceFinger { .. } => ctl.place(person, finger),
            EnrollStep::LiftFinger { .. } => ctl.lift(),
            EnrollStep::Captured { touch: 1, .. } => {
                if let Some(fault) = fault_after_first_touch {
                    ctl.inject(fault);
                }
            }
            _ => {}
        }
    };
    let result = fp.enroll(slot, 2, &mut cb).await;
    ctl.lift();
    (result, steps)
}

fn finger(person: u32, finger: u8) -> SimFinger {
    SimFinger { person, finger }
}

async fn fingerprint_lifecycle(driver_end: impl Stream, module_end: impl Stream) {
    let (ctl, _sim) = fingerprint::sim::spawn(module_end, SimFingerprintConfig::default());
    let mut fp = Fingerprint::connect(driver_end, fp_config())
        .await
        .expect("connect");
    assert_eq!(fp.capacity(), 200);

    // Enrol: two touches, lift in between, then merge and store.
    let (r, steps) = fp_enroll(&mut fp, &ctl, 3, 1, 0, None).await;
    r.expect("first enrolment");
    assert_eq!(
        steps,
        vec![
            EnrollStep::PlaceFinger { touch: 1, of: 2 },
            EnrollStep::Captured { touch: 1, of: 2 },
            EnrollStep::LiftFinger { touch: 1 },
            EnrollStep::PlaceFinger { touch: 2, of: 2 },
            EnrollStep::Captured { touch: 2, of: 2 },
            EnrollStep::Merged,
            EnrollStep::Stored { slot: 3 },
        ]
    );
    assert_eq!(ctl.templates(), BTreeMap::from([(3, finger(1, 0))]));
    assert_eq!(fp.template_count().await.expect("count"), 1);

    // B-1.3: the same finger again, into another slot, is refused; nothing stored.
    let (r, steps) = fp_enroll(&mut fp, &ctl, 4, 1, 0, None).await;
    assert!(
        matches!(r, Err(FingerprintError::Duplicate { slot: 3 })),
        "{r:?}"
    );
    assert!(!steps.iter().any(|s| matches!(s, EnrollStep::Stored { .. })));
    assert_eq!(ctl.templates(), BTreeMap::from([(3, finger(1, 0))]));
    assert_eq!(fp.template_count().await.expect("count"), 1);

    // Bad arguments are refused before anything reaches the library.
    let (r, _) = fp_enroll(&mut fp, &ctl, 3, 5, 0, None).await;
    assert!(matches!(r, Err(FingerprintError::SlotOccupied { slot: 3 })));
    let (r, _) = fp_enroll(&mut fp, &ctl, 200, 5, 0, None).await;
    assert!(matches!(
        r,
        Err(FingerprintError::InvalidSlot {
            slot: 200,
            capacity: 200
        })
    ));
    let mut ignore = |_: EnrollStep| {};
    let r = fp.enroll(5, 3, &mut ignore).await;
    assert!(matches!(
        r,
        Err(FingerprintError::InvalidTouches { touches: 3, max: 2 })
    ));

    // A second person.
    fp_enroll(&mut fp, &ctl, 4, 2, 0, None)
        .await
        .0
        .expect("second enrolment");

    // Identify through the board-facing trait object.
    {
        let module: &mut dyn FingerprintModule = &mut fp;
        ctl.place(2, 0);
        assert_eq!(
            module.identify().await.expect("identify"),
            Some(Match {
                slot: 4,
                score: 180
            })
        );
        ctl.place(9, 9);
        assert_eq!(module.identify().await.expect("identify stranger"), None);
        ctl.lift();
        let err = module.identify().await.expect_err("no finger");
        assert!(err.is_no_finger(), "{err:?}");
        assert_eq!(module.slots().await.expect("slots"), BTreeSet::from([3, 4]));

        let led = Led {
            mode: LedMode::Breathing,
            color: LedColor::Blue,
            speed: 100,
            cycles: 0,
        };
        module.set_led(led).await.expect("led");
        assert_eq!(ctl.led(), Some(led));

        // Reconcile against a database that knows slot 4 and 7 only.
        let db = BTreeSet::from([4, 7]);
        let rec = fingerprint::reconcile_module(module, &db)
            .await
            .expect("reconcile");
        assert_eq!(rec.unknown_in_module, vec![3]);
        assert_eq!(rec.missing_in_module, vec![7]);
        assert_eq!(ctl.templates(), BTreeMap::from([(4, finger(2, 0))]));

        module.delete(4).await.expect("delete");
        assert_eq!(module.template_count().await.expect("count"), 0);
    }

    // Deleting a slot beyond the library is refused by the driver.
    assert!(matches!(
        fp.delete(500).await,
        Err(FingerprintError::InvalidSlot { slot: 500, .. })
    ));

    // Empty wipes everything.
    fp_enroll(&mut fp, &ctl, 0, 3, 1, None)
        .await
        .0
        .expect("enrol");
    fp_enroll(&mut fp, &ctl, 1, 3, 2, None)
        .await
        .0
        .expect("enrol");
    assert_eq!(fp.template_count().await.expect("count"), 2);
    fp.empty().await.expect("empty");
    assert_eq!(fp.template_count().await.expect("count"), 0);
    assert!(ctl.templates().is_empty());
}

/// Recognises the error a fault must produce.
type ErrorCheck = fn(&FingerprintError) -> bool;

async fn fingerprint_faults(driver_end: impl Stream, module_end: impl Stream) {
    let (ctl, _sim) = fingerprint::sim::spawn(module_end, SimFingerprintConfig::default());
    let mut fp = Fingerprint::connect(driver_end, fp_config())
        .await
        .expect("connect");
    fp_enroll(&mut fp, &ctl, 0, 1, 1, None)
        .await
        .0
        .expect("baseline enrolment");
    let before = ctl.templates();

    // Each fault on a plain request.
    ctl.inject(FingerFault::Silence);
    let e = fp.template_count().await.expect_err("silence");
    assert!(
        matches!(
            e,
            FingerprintError::Timeout {
                command: fingerprint::Command::TemplateNum,
                ..
            }
        ),
        "{e:?}"
    );
    ctl.inject(FingerFault::BadChecksum);
    let e = fp.template_count().await.expect_err("bad checksum");
    assert!(
        matches!(
            e,
            FingerprintError::Frame {
                source: fingerprint::frame::FrameError::Checksum { .. },
                ..
            }
        ),
        "{e:?}"
    );
    ctl.inject(FingerFault::Busy);
    ctl.place(1, 1);
    let e = fp.identify().await.expect_err("busy");
    assert!(
        matches!(
            e,
            FingerprintError::Module {
                code: ModuleCode::Busy,
                ..
            }
        ),
        "{e:?}"
    );
    ctl.lift();
    // The link recovers after every one of them.
    assert_eq!(fp.template_count().await.expect("count after faults"), 1);

    // Each fault in the middle of an enrolment: a clear error, nothing stored.
    let expectations: [(FingerFault, ErrorCheck); 4] = [
        (FingerFault::Silence, |e| {
            matches!(e, FingerprintError::Timeout { .. })
        }),
        (FingerFault::BadChecksum, |e| {
            matches!(
                e,
                FingerprintError::Frame {
                    source: fingerprint::frame::FrameError::Checksum { .. },
                    ..
                }
            )
        }),
        (FingerFault::Busy, |e| {
            matches!(
                e,
                FingerprintError::Module {
                    code: ModuleCode::Busy,
                    ..
                }
            )
        }),
        (FingerFault::Reset, |e| {
            matches!(e, FingerprintError::ModuleReset)
        }),
    ];
    for (fault, expected) in expectations {
        let (r, steps) = fp_enroll(&mut fp, &ctl, 5, 2, 0, Some(fault)).await;
        let ok = r.as_ref().err().is_some_and(expected);
        assert!(ok, "{fault:?} during enrolment gave {r:?}");
        assert!(!steps.iter().any(|s| matches!(s, EnrollStep::Stored { .. })));
        assert_eq!(ctl.templates(), before, "{fault:?} changed the library");
    }
    assert_eq!(ctl.restarts(), 1);

    // And a clean enrolment afterwards works.
    fp_enroll(&mut fp, &ctl, 5, 2, 0, None)
        .await
        .0
        .expect("enrolment after faults");
    assert_eq!(
        fp.occupied_slots().await.expect("slots"),
        BTreeSet::from([0, 5])
    );
}

#[tokio::test]
async fn fingerprint_lifecycle_over_a_pty() {
    let pty = open_pty();
    let driver_end = fingerprint::open_serial(&pty.slave_path, 57_600).expect("open slave");
    fingerprint_lifecycle(driver_end, pty.master).await;
}

#[tokio::test]
async fn fingerprint_lifecycle_over_duplex() {
    let (a, b) = tokio::io::duplex(4096);
    fingerprint_lifecycle(a, b).await;
}

#[tokio::test]
async fn fingerprint_faults_over_a_pty() {
    let pty = open_pty();
    let driver_end = fingerprint::open_serial(&pty.slave_path, 57_600).expect("open slave");
    fingerprint_faults(driver_end, pty.master).await;
}

#[tokio::test]
async fn fingerprint_faults_over_duplex() {
    let (a, b) = tokio::io::duplex(4096);
    fingerprint_faults(a, b).await;
}

#[tokio::test]
async fn fingerprint_open_of_a_missing_port_is_a_clear_error() {
    let e =
        fingerprint::open_serial("/dev/does-not-exist-latchd", 57_600).expect_err("no such port");
    assert!(e.to_string().contains("/dev/does-not-exist-latchd"), "{e}");
}

// ---- palm vein -------------------------------------------------------------------

fn palm_config() -> PalmConfig {
    PalmConfig {
        request_timeout: Duration::from_secs(1),
        capture_timeout: Duration::from_secs(10),
        captures: 3,
    }
}

async fn palm_enroll<S: Stream>(
    palm: &mut Palm<S>,
    ctl: &palm::sim::SimPalmControl,
    id: u16,
    person: u32,
    fault_after_first_capture: Option<PalmFault>,
) -> (Result<(), PalmError>, Vec<PalmEnrollStep>) {
    let mut steps = Vec::new();
    let ctl = ctl.clone();
    let mut cb = |step: PalmEnrollStep| {
        steps.push(step);
        match step {
            PalmEnrollStep::PresentPalm { .. } => ctl.present(person),
            PalmEnrollStep::WithdrawPalm { .. } => ctl.withdraw(),
            PalmEnrollStep::Captured { capture: 1, .. } => {
                if let Some(fault) = fault_after_first_capture {
                    ctl.inject(fault);
                }
            }
            _ => {}
        }
    };
    let r = palm.enroll(id, &mut cb).await;
    ctl.withdraw();
    (r, steps)
}

async fn palm_lifecycle(driver_end: impl Stream, module_end: impl Stream) {
    let (ctl, _sim) = palm::sim::spawn(module_end, SimPalmConfig::default());
    let mut p = Palm::connect(driver_end, palm_config())
        .await
        .expect("connect");
    assert_eq!(p.info().capacity, 100);
    assert_eq!(p.info().firmware, "latchd-sim-palm 1.0");

    let (r, steps) = palm_enroll(&mut p, &ctl, 1, 10, None).await;
    r.expect("enrol");
    assert_eq!(
        steps,
        vec![
            PalmEnrollStep::PresentPalm { capture: 1, of: 3 },
            PalmEnrollStep::Captured { capture: 1, of: 3 },
            PalmEnrollStep::WithdrawPalm { capture: 1 },
            PalmEnrollStep::PresentPalm { capture: 2, of: 3 },
            PalmEnrollStep::Captured { capture: 2, of: 3 },
            PalmEnrollStep::WithdrawPalm { capture: 2 },
            PalmEnrollStep::PresentPalm { capture: 3, of: 3 },
            PalmEnrollStep::Captured { capture: 3, of: 3 },
            PalmEnrollStep::Stored { id: 1 },
        ]
    );
    assert_eq!(ctl.templates(), BTreeMap::from([(1, 10)]));

    // The same palm under another id is refused; nothing stored.
    let (r, _) = palm_enroll(&mut p, &ctl, 2, 10, None).await;
    assert!(matches!(r, Err(PalmError::Duplicate { id: 1 })), "{r:?}");
    let (r, _) = palm_enroll(&mut p, &ctl, 1, 11, None).await;
    assert!(matches!(r, Err(PalmError::IdInUse { id: 1 })), "{r:?}");
    let (r, _) = palm_enroll(&mut p, &ctl, 100, 11, None).await;
    assert!(matches!(
        r,
        Err(PalmError::InvalidId {
            id: 100,
            capacity: 100
        })
    ));
    assert_eq!(ctl.templates(), BTreeMap::from([(1, 10)]));

    palm_enroll(&mut p, &ctl, 2, 11, None)
        .await
        .0
        .expect("second palm");

    {
        let module: &mut dyn PalmModule = &mut p;
        ctl.present(11);
        assert_eq!(
            module.identify().await.expect("identify"),
            Some(PalmMatch { id: 2, score: 920 })
        );
        ctl.present(12);
        assert_eq!(module.identify().await.expect("stranger"), None);
        ctl.withdraw();
        assert_eq!(module.ids().await.expect("ids"), BTreeSet::from([1, 2]));
        module.delete(1).await.expect("delete");
        let e = module.delete(1).await.expect_err("already gone");
        assert!(
            matches!(
                e,
                PalmError::Status {
                    status: PalmStatus::NotFound,
                    ..
                }
            ),
            "{e:?}"
        );
        module.delete_all().await.expect("delete all");
        assert!(module.ids().await.expect("ids").is_empty());
    }
    assert_eq!(p.status().await.expect("status"), PalmState::Idle);
    assert!(ctl.templates().is_empty());
}

async fn palm_faults(driver_end: impl Stream, module_end: impl Stream) {
    let (ctl, _sim) = palm::sim::spawn(module_end, SimPalmConfig::default());
    let mut p = Palm::connect(driver_end, palm_config())
        .await
        .expect("connect");
    palm_enroll(&mut p, &ctl, 0, 1, None)
        .await
        .0
        .expect("baseline");
    let before = ctl.templates();

    ctl.inject(PalmFault::Silence);
    let e = p.list_ids().await.expect_err("silence");
    assert!(
        matches!(
            e,
            PalmError::Timeout {
                command: PalmCommand::ListIds,
                ..
            }
        ),
        "{e:?}"
    );
    ctl.inject(PalmFault::BadCrc);
    let e = p.list_ids().await.expect_err("bad crc");
    assert!(
        matches!(
            e,
            PalmError::Frame {
                source: PalmFrameError::Crc { .. },
                ..
            }
        ),
        "{e:?}"
    );
    ctl.inject(PalmFault::Busy);
    let e = p.list_ids().await.expect_err("busy");
    assert!(
        matches!(
            e,
            PalmError::Status {
                status: PalmStatus::Busy,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(p.list_ids().await.expect("recovered"), BTreeSet::from([0]));

    // Faults in the middle of an enrolment: clear error, nothing stored.
    let (r, steps) = palm_enroll(&mut p, &ctl, 5, 2, Some(PalmFault::Reset)).await;
    assert!(matches!(r, Err(PalmError::ModuleReset)), "{r:?}");
    assert!(!steps
        .iter()
        .any(|s| matches!(s, PalmEnrollStep::Stored { .. })));
    assert_eq!(ctl.templates(), before);
    assert_eq!(ctl.restarts(), 1);

    let (r, _) = palm_enroll(&mut p, &ctl, 5, 2, Some(PalmFault::BadCrc)).await;
    assert!(
        matches!(
            r,
            Err(PalmError::Frame {
                source: PalmFrameError::Crc { .. },
                ..
            })
        ),
        "{r:?}"
    );
    // The module is still mid-enrolment (the bad frame was a note); the
    // driver aborts it before its next command. Nothing was stored.
    assert_eq!(p.status().await.expect("status"), PalmState::Enrolling);
    assert_eq!(p.list_ids().await.expect("ids"), BTreeSet::from([0]));
    assert_eq!(p.status().await.expect("status"), PalmState::Idle);
    assert_eq!(ctl.templates(), before);

    // A dropped enrolment keeps the module busy until aborted: another
    // client of the module sees Busy, and the driver itself aborts first.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let mut started_tx = Some(started_tx);
    let mut cb = |step: PalmEnrollStep| {
        if let (PalmEnrollStep::PresentPalm { .. }, Some(tx)) = (step, started_tx.take()) {
            let _ = tx.send(());
        }
    };
    tokio::select! {
        r = p.enroll(6, &mut cb) => panic!("enrolment finished without a palm: {r:?}"),
        _ = started_rx => {}
    }
    assert_eq!(p.status().await.expect("status"), PalmState::Enrolling);
    ctl.present(3);
    let stranger = p.identify().await.expect("identify after auto-abort");
    assert_eq!(stranger, None, "person 3 is not enrolled");
    ctl.withdraw();
    p.abort().await.expect("abort when idle is harmless");
    assert_eq!(p.status().await.expect("status"), PalmState::Idle);
    assert_eq!(ctl.templates(), before);

    // Recovery: a clean enrolment.
    palm_enroll(&mut p, &ctl, 5, 2, None)
        .await
        .0
        .expect("after faults");
    assert_eq!(p.list_ids().await.expect("ids"), BTreeSet::from([0, 5]));
}

#[tokio::test]
async fn palm_lifecycle_over_a_pty() {
    let pty = open_pty();
    let driver_end = palm::open_serial(&pty.slave_path, 115_200).expect("open slave");
    palm_lifecycle(driver_end, pty.master).await;
}

#[tokio::test]
async fn palm_lifecycle_over_duplex() {
    let (a, b) = tokio::io::duplex(4096);
    palm_lifecycle(a, b).await;
}

#[tokio::test]
async fn palm_faults_over_a_pty() {
    let pty = open_pty();
    let driver_end = palm::open_serial(&pty.slave_path, 115_200).expect("open slave");
    palm_faults(driver_end, pty.master).await;
}

#[tokio::test]
async fn palm_faults_over_duplex() {
    let (a, b) = tokio::io::duplex(4096);
    palm_faults(a, b).await;
}
