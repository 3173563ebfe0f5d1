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

    // Issue 15 item 5: the answer to a matching search cut mid-frame (the
    // cable, a brown-out) is no match — a timeout — and the half frame
    // left in the driver does not poison the next answers.
    ctl.place(1, 1);
    fp.capture_image().await.expect("image");
    fp.image_to_features(1).await.expect("features");
    ctl.inject(FingerFault::Truncated);
    let e = fp
        .search(1, 0, 200)
        .await
        .expect_err("a cut answer is no match");
    assert!(
        matches!(
            e,
            FingerprintError::Timeout {
                command: fingerprint::Command::Search,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(fp.template_count().await.expect("count after a cut"), 1);
    let m = fp.identify().await.expect("identify after a cut");
    assert_eq!(m.map(|m| m.slot), Some(0), "the same finger, read whole");
    ctl.lift();

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

    // Issue 15 item 5: the answer to a matching identify cut mid-frame is
    // no match, and the next commands and identify work.
    ctl.present(1);
    ctl.inject(PalmFault::Truncated);
    let r = p.identify().await;
    assert!(
        matches!(
            r,
            Err(PalmError::Timeout {
                command: PalmCommand::Identify,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        p.list_ids().await.expect("after a cut"),
        BTreeSet::from([0])
    );
    let m = p.identify().await.expect("identify after a cut");
    assert_eq!(m.map(|m| m.id), Some(0), "the same palm, read whole");
    ctl.withdraw();

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

// ---- the module password (issue 13 item 7) -------------------------------------
//
// The lock's own random module password: set on a factory-fresh module at
// first start, verified at every session, a module that does not know it
// is refused before any identify, and an administrator's re-pair adopts a
// factory-fresh replacement only. Over a real PTY, as the lock opens its UART.

use latchd::biometrics::fingerprint::pairing::{self, Pairing};

const LOCK_PASSWORD: u32 = 0x5EC0_4D17;

/// A PTY with `ctl`'s module serving the master end; the driver end, opened
/// as the lock opens /dev/ttyS*.
fn fp_session(ctl: &fingerprint::sim::SimFingerprintControl) -> tokio_serial::SerialStream {
    let pty = open_pty();
    let driver_end = fingerprint::open_serial(&pty.slave_path, 57_600).expect("open slave");
    ctl.spawn_session(pty.master, SimFingerprintConfig::default());
    driver_end
}

/// A module from elsewhere on a PTY: password `password`, `person`'s
/// finger 1 enrolled in slot 0.
async fn foreign_module(password: u32, person: u32) -> fingerprint::sim::SimFingerprintControl {
    let pty = open_pty();
    let driver_end = fingerprint::open_serial(&pty.slave_path, 57_600).expect("open slave");
    let (ctl, _sim) = fingerprint::sim::spawn(pty.master, SimFingerprintConfig::default());
    let mut fp = Fingerprint::connect(driver_end, fp_config())
        .await
        .expect("factory");
    fp.set_password(password).await.expect("SetPwd");
    let (r, _) = fp_enroll(&mut fp, &ctl, 0, person, 1, None).await;
    r.expect("enrolled elsewhere");
    ctl
}

#[tokio::test]
async fn fingerprint_a_fresh_module_gets_the_lock_password_at_first_start_and_keeps_it() {
    let pty = open_pty();
    let driver_end = fingerprint::open_serial(&pty.slave_path, 57_600).expect("open slave");
    let (ctl, _sim) = fingerprint::sim::spawn(pty.master, SimFingerprintConfig::default());
    assert_eq!(ctl.password(), pairing::FACTORY_PASSWORD);
    let mut fp = pairing::connect(
        driver_end,
        fp_config(),
        LOCK_PASSWORD,
        Pairing::AdoptFactory,
    )
    .await
    .expect("first start pairs the factory module");
    assert_eq!(
        ctl.password(),
        LOCK_PASSWORD,
        "the module holds the lock's password"
    );
    let (r, _) = fp_enroll(&mut fp, &ctl, 3, 1, 1, None).await;
    r.expect("enrol");
    drop(fp);

    // The lock restarts: a new session, verified with the stored password
    // only (no factory adoption any more), and the module works as before.
    let mut fp = pairing::connect(
        fp_session(&ctl),
        fp_config(),
        LOCK_PASSWORD,
        Pairing::Verify,
    )
    .await
    .expect("restart: the module knows the password");
    ctl.place(1, 1);
    assert_eq!(
        fp.identify().await.expect("identify").map(|m| m.slot),
        Some(3)
    );
    ctl.lift();
    // A module restart (power dip) mid-session: it asks for the password
    // again (0x21) and the driver verifies once more.
    ctl.inject(FingerFault::Reset);
    assert_eq!(fp.template_count().await.expect("count after restart"), 1);
    assert_eq!(ctl.restarts(), 1);
    assert_eq!(fp.template_count().await.expect("count"), 1);
}

#[tokio::test]
async fn fingerprint_a_swapped_module_is_refused_before_any_identify() {
    // Someone else's module (their password, their finger in slot 0).
    let ctl = foreign_module(0x0BAD_0BAD, 66).await;
    let before = ctl.commands();
    ctl.place(66, 1);
    let e = pairing::connect(
        fp_session(&ctl),
        fp_config(),
        LOCK_PASSWORD,
        Pairing::Verify,
    )
    .await
    .expect_err("a module without the lock's password");
    assert!(matches!(e, FingerprintError::ForeignModule), "{e:?}");
    assert_eq!(ctl.commands() - before, 1, "one VfyPwd and nothing else");
    // Not even an administrator's re-pair adopts it: it is not factory-fresh.
    let before = ctl.commands();
    let e = pairing::connect(
        fp_session(&ctl),
        fp_config(),
        LOCK_PASSWORD,
        Pairing::AdoptFactory,
    )
    .await
    .expect_err("re-pair adopts factory modules only");
    assert!(matches!(e, FingerprintError::ForeignModule), "{e:?}");
    assert_eq!(
        ctl.commands() - before,
        2,
        "VfyPwd(lock), VfyPwd(0), nothing else"
    );
    assert_eq!(ctl.password(), 0x0BAD_0BAD, "its password is untouched");

    // A swapped module still at the factory password, with a finger the
    // swapper enrolled, is refused as well once the lock is paired.
    let ctl = foreign_module(pairing::FACTORY_PASSWORD, 67).await;
    let before = ctl.commands();
    let e = pairing::connect(
        fp_session(&ctl),
        fp_config(),
        LOCK_PASSWORD,
        Pairing::Verify,
    )
    .await
    .expect_err("a factory module is not the paired one");
    assert!(matches!(e, FingerprintError::ForeignModule), "{e:?}");
    assert_eq!(ctl.commands() - before, 1);
    assert_eq!(ctl.password(), pairing::FACTORY_PASSWORD);
}

#[tokio::test]
async fn fingerprint_admin_re_pair_adopts_a_factory_replacement_which_then_works() {
    let pty = open_pty();
    let driver_end = fingerprint::open_serial(&pty.slave_path, 57_600).expect("open slave");
    let (ctl, _sim) = fingerprint::sim::spawn(pty.master, SimFingerprintConfig::default());
    // The replacement is refused until an administrator re-pairs it.
    let e = pairing::connect(driver_end, fp_config(), LOCK_PASSWORD, Pairing::Verify)
        .await
        .expect_err("not paired yet");
    assert!(matches!(e, FingerprintError::ForeignModule), "{e:?}");
    let mut fp = pairing::connect(
        fp_session(&ctl),
        fp_config(),
        LOCK_PASSWORD,
        Pairing::AdoptFactory,
    )
    .await
    .expect("re-pair");
    assert_eq!(ctl.password(), LOCK_PASSWORD);
    let (r, _) = fp_enroll(&mut fp, &ctl, 0, 2, 4, None).await;
    r.expect("enrol on the new module");
    drop(fp);
    let mut fp = pairing::connect(
        fp_session(&ctl),
        fp_config(),
        LOCK_PASSWORD,
        Pairing::Verify,
    )
    .await
    .expect("paired from now on");
    ctl.place(2, 4);
    assert_eq!(
        fp.identify().await.expect("identify").map(|m| m.slot),
        Some(0)
    );
    // The factory password is never a lock's password.
    let e = pairing::connect(
        fp_session(&ctl),
        fp_config(),
        pairing::FACTORY_PASSWORD,
        Pairing::AdoptFactory,
    )
    .await
    .expect_err("0 refused");
    assert!(matches!(e, FingerprintError::FactoryPassword), "{e:?}");
}

async fn next_report(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<latchd::core::input::ModuleReport>,
) -> latchd::core::input::ModuleReport {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a report in time")
        .expect("the adapter is running")
}

/// Reports of an adapter, for a test to watch.
struct Reports(tokio::sync::mpsc::UnboundedSender<latchd::core::input::ModuleReport>);

impl latchd::biometrics::adapter::ReportSink for Reports {
    fn report(&self, report: latchd::core::input::ModuleReport) {
        let _ = self.0.send(report);
    }
}

/// The whole path the Linux board takes (`biometrics/uart.rs`): the paired
/// adapter over a PTY. A swapped module is reported Untrusted and never
/// read, although a finger rests on it; the administrator's re-pair
/// (`ModuleCmd::Pair`) reopens the UART, adopts the factory-fresh
/// replacement, and recognition runs on it.
#[tokio::test]
async fn fingerprint_adapter_refuses_a_swapped_module_until_an_admin_re_pairs_a_factory_one() {
    use latchd::biometrics::adapter::AdapterConfig;
    use latchd::biometrics::fingerprint::reader::spawn_fingerprint_paired;
    use latchd::core::input::ModuleReport;
    use latchd::core::types::Modality;
    use latchd::core::ModuleCmd;
    use std::sync::{Arc, Mutex};

    // What sits behind the panel: first a swapped-in module, then (after
    // the administrator replaced it) a factory-fresh one.
    let swapped = foreign_module(0x0BAD_0BAD, 66).await;
    let replacement_pty = open_pty();
    let replacement_end =
        fingerprint::open_serial(&replacement_pty.slave_path, 57_600).expect("open slave");
    let (replacement, _sim) =
        fingerprint::sim::spawn(replacement_pty.master, SimFingerprintConfig::default());
    let mut fp = Fingerprint::connect(replacement_end, fp_config())
        .await
        .expect("factory");
    let (r, _) = fp_enroll(&mut fp, &replacement, 4, 2, 1, None).await;
    r.expect("enrolled before it is fitted");
    drop(fp);
    let behind_panel = Arc::new(Mutex::new(vec![
        fp_session(&replacement),
        fp_session(&swapped),
    ]));
    let opened = Arc::new(Mutex::new(Vec::new()));

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (panel, seen) = (behind_panel.clone(), opened.clone());
    let mut adapter = spawn_fingerprint_paired(
        Box::new(move |pairing| {
            seen.lock().unwrap().push(pairing);
            let stream = panel.lock().unwrap().pop().expect("a module to open");
            Box::pin(async move {
                let driver = pairing::connect(stream, fp_config(), LOCK_PASSWORD, pairing).await?;
                Ok(Box::new(driver) as Box<dyn FingerprintModule>)
            })
        }),
        Pairing::Verify,
        AdapterConfig {
            idle_poll: Duration::from_millis(20),
            ..AdapterConfig::default()
        },
        Arc::new(Reports(tx)),
    );
    swapped.place(66, 1);
    let before = swapped.commands();
    match next_report(&mut rx).await {
        ModuleReport::Untrusted { modality, detail } => {
            assert_eq!(modality, Modality::Fingerprint);
            assert!(detail.contains("password"), "{detail}");
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "no read of the swapped module");
    assert_eq!(swapped.commands() - before, 1, "one VfyPwd, no GenImg");
    assert_eq!(*opened.lock().unwrap(), vec![Pairing::Verify]);

    adapter
        .command(&ModuleCmd::Pair {
            modality: Modality::Fingerprint,
        })
        .expect("re-pair");
    replacement.place(2, 1);
    match next_report(&mut rx).await {
        ModuleReport::Recognised { modality, slot } => {
            assert_eq!((modality, slot), (Modality::Fingerprint, 4));
        }
        other => panic!("expected a recognition on the replacement, got {other:?}"),
    }
    assert_eq!(replacement.password(), LOCK_PASSWORD);
    assert_eq!(
        *opened.lock().unwrap(),
        vec![Pairing::Verify, Pairing::AdoptFactory]
    );
}

/// A module swapped while the lock runs announces itself with its
/// power-on byte; the driver verifies the password before the next
/// instruction, and the newcomer (factory password, someone's finger) is
/// refused on every instruction — never identified.
#[tokio::test]
async fn fingerprint_a_module_hot_swapped_at_run_time_is_refused_on_every_instruction() {
    let pty = open_pty();
    let driver_end = fingerprint::open_serial(&pty.slave_path, 57_600).expect("open slave");
    let (ctl, _sim) = fingerprint::sim::spawn(pty.master, SimFingerprintConfig::default());
    let mut fp = pairing::connect(
        driver_end,
        fp_config(),
        LOCK_PASSWORD,
        Pairing::AdoptFactory,
    )
    .await
    .expect("paired");
    assert_eq!(fp.template_count().await.expect("count"), 0);
    // The swap: behind the same UART, a module at the factory password
    // with the swapper's finger in slot 0, which powers up (0x55).
    let swapper = foreign_module(pairing::FACTORY_PASSWORD, 9).await;
    ctl.swap_in(&swapper);
    ctl.place(9, 1);
    for _ in 0..3 {
        let e = fp.identify().await.expect_err("never identified");
        assert!(matches!(e, FingerprintError::ForeignModule), "{e:?}");
    }
    assert_eq!(
        ctl.password(),
        pairing::FACTORY_PASSWORD,
        "nothing set on it"
    );
}

/// A re-pair asked while no module is refused (here: while the start's
/// handshake is still under way) is not kept for later: the module refused
/// after it is not adopted behind the administrator's back.
#[tokio::test]
async fn fingerprint_a_re_pair_asked_before_a_refusal_is_not_kept_for_a_later_module() {
    use latchd::biometrics::adapter::AdapterConfig;
    use latchd::biometrics::fingerprint::reader::spawn_fingerprint_paired;
    use latchd::core::input::ModuleReport;
    use latchd::core::types::Modality;
    use latchd::core::ModuleCmd;
    use std::sync::{Arc, Mutex};

    // A factory-fresh module fitted while the lock was already paired.
    let pty = open_pty();
    let first_end = fingerprint::open_serial(&pty.slave_path, 57_600).expect("open slave");
    let (module, _sim) = fingerprint::sim::spawn(pty.master, SimFingerprintConfig::default());
    let ends = Arc::new(Mutex::new(vec![fp_session(&module), first_end]));
    let gate = Arc::new(tokio::sync::Notify::new());
    let opened = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (panel, seen, go) = (ends.clone(), opened.clone(), gate.clone());
    let mut adapter = spawn_fingerprint_paired(
        Box::new(move |pairing| {
            seen.lock().unwrap().push(pairing);
            let stream = panel.lock().unwrap().pop().expect("a module to open");
            let go = go.clone();
            Box::pin(async move {
                go.notified().await;
                let driver = pairing::connect(stream, fp_config(), LOCK_PASSWORD, pairing).await?;
                Ok(Box::new(driver) as Box<dyn FingerprintModule>)
            })
        }),
        Pairing::Verify,
        AdapterConfig::default(),
        Arc::new(Reports(tx)),
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    adapter
        .command(&ModuleCmd::Pair {
            modality: Modality::Fingerprint,
        })
        .expect("accepted while connecting");
    gate.notify_one();
    match next_report(&mut rx).await {
        ModuleReport::Untrusted { .. } => {}
        other => panic!("expected Untrusted, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        *opened.lock().unwrap(),
        vec![Pairing::Verify],
        "not tried again"
    );
    assert_eq!(module.password(), pairing::FACTORY_PASSWORD, "not adopted");
    assert!(rx.try_recv().is_err());
}

/// The adapter's view of a hot swap: the module behind the UART is
/// replaced while the lock runs (it powers up, 0x55); the next read is
/// refused and reported once as Untrusted (the engine's swap alarm and
/// notice), and the swapper's finger is never recognised.
#[tokio::test]
async fn fingerprint_adapter_reports_a_hot_swapped_module_as_untrusted_and_never_reads_it() {
    use latchd::biometrics::adapter::AdapterConfig;
    use latchd::biometrics::fingerprint::reader::spawn_fingerprint_paired;
    use latchd::core::input::ModuleReport;
    use latchd::core::types::Modality;
    use std::sync::{Arc, Mutex};

    let pty = open_pty();
    let end = fingerprint::open_serial(&pty.slave_path, 57_600).expect("open slave");
    let (module, _sim) = fingerprint::sim::spawn(pty.master, SimFingerprintConfig::default());
    let ends = Arc::new(Mutex::new(vec![end]));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _adapter = spawn_fingerprint_paired(
        Box::new(move |pairing| {
            let stream = ends.lock().unwrap().pop().expect("opened once");
            Box::pin(async move {
                let driver = pairing::connect(stream, fp_config(), LOCK_PASSWORD, pairing).await?;
                Ok(Box::new(driver) as Box<dyn FingerprintModule>)
            })
        }),
        Pairing::AdoptFactory,
        AdapterConfig {
            idle_poll: Duration::from_millis(20),
            fault_retry: Duration::from_millis(20),
            ..AdapterConfig::default()
        },
        Arc::new(Reports(tx)),
    );
    // Paired and polling.
    let polled = module.commands();
    while module.commands() < polled + 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(module.password(), LOCK_PASSWORD);
    let swapper = foreign_module(pairing::FACTORY_PASSWORD, 9).await;
    module.swap_in(&swapper);
    module.place(9, 1);
    match next_report(&mut rx).await {
        ModuleReport::Untrusted { modality, detail } => {
            assert_eq!(modality, Modality::Fingerprint);
            assert!(detail.contains("password"), "{detail}");
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    // It keeps being asked (fault retry) and keeps being refused, silently.
    let after = module.commands();
    while module.commands() < after + 6 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(rx.try_recv().is_err(), "no recognition, no second report");
}
