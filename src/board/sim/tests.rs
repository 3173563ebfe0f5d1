use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::board::Board;
use crate::core::input::{EnrolFailure, EnrolStep, ModuleReport, MotorReport};
use crate::core::types::MotorDirection;
use crate::core::ModuleCmd;

fn sim(config: SimConfig) -> (Board, SimControl, mpsc::Receiver<Input>) {
    let (tx, rx) = mpsc::channel(64);
    let (board, control) = build(config, InputSender::new(tx)).expect("sim board builds");
    (board, control, rx)
}

async fn next(rx: &mut mpsc::Receiver<Input>) -> Input {
    rx.recv().await.expect("an input")
}

#[tokio::test(start_paused = true)]
async fn motor_travels_for_its_travel_time_and_reports_done() {
    let (mut board, control, mut rx) = sim(SimConfig::default());
    let start = tokio::time::Instant::now();
    board
        .motor
        .drive(BoltPosition::Retracted, MotorDirection::Clockwise)
        .unwrap();
    assert!(board.motor.is_moving());
    assert_eq!(next(&mut rx).await, Input::Bolt(BoltPosition::Between));
    assert_eq!(next(&mut rx).await, Input::Bolt(BoltPosition::Retracted));
    assert_eq!(start.elapsed(), Duration::from_millis(600));
    assert_eq!(
        next(&mut rx).await,
        Input::Motor(MotorReport::Done(BoltPosition::Retracted))
    );
    let snap = control.snapshot();
    assert_eq!(snap.bolt, BoltPosition::Retracted);
    assert_eq!(snap.motor, MotorState::Idle);
    assert_eq!(snap.motor_cycles, 1);
}

#[tokio::test(start_paused = true)]
async fn a_scripted_jam_leaves_the_bolt_between_switches() {
    let (mut board, control, mut rx) = sim(SimConfig::default());
    control.jam(1);
    board
        .motor
        .drive(BoltPosition::Retracted, MotorDirection::CounterClockwise)
        .unwrap();
    board.settle().await;
    assert_eq!(next(&mut rx).await, Input::Bolt(BoltPosition::Between));
    assert_eq!(
        next(&mut rx).await,
        Input::Motor(MotorReport::Jammed {
            at: BoltPosition::Between
        })
    );
    let snap = control.snapshot();
    assert_eq!(snap.bolt, BoltPosition::Between);
    assert_eq!((snap.jams, snap.jams_pending), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn first_key_on_a_sleeping_keypad_also_touches_it_once() {
    let (_board, control, mut rx) = sim(SimConfig::default());
    control.press(&parse_keys("12").unwrap()).unwrap();
    control.press(&parse_keys("3✓").unwrap()).unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(next(&mut rx).await);
    }
    assert_eq!(
        got,
        vec![
            Input::Touch,
            Input::Key(Key::Digit(1)),
            Input::Key(Key::Digit(2)),
            Input::Key(Key::Digit(3)),
            Input::Key(Key::Confirm),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn fingerprint_enrols_in_three_touches_and_refuses_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sim-modules.json");
    let config = SimConfig {
        modules_file: Some(file.clone()),
        ..SimConfig::default()
    };
    let (mut board, control, mut rx) = sim(config.clone());
    let enrol = |slot| ModuleCmd::Enrol {
        modality: Modality::Fingerprint,
        slot,
    };
    board.fingerprint.command(&enrol(4)).unwrap();
    for _ in 0..3 {
        control.finger(7).unwrap();
    }
    let fp = Modality::Fingerprint;
    assert_eq!(
        next(&mut rx).await,
        Input::Module(ModuleReport::EnrolProgress {
            modality: fp,
            step: EnrolStep::PresentAgain { n: 2, of: 3 }
        })
    );
    next(&mut rx).await;
    assert_eq!(
        next(&mut rx).await,
        Input::Module(ModuleReport::Enrolled {
            modality: fp,
            slot: 4,
            template: None
        })
    );
    // B-1.3: the same finger again, into another slot.
    board.fingerprint.command(&enrol(5)).unwrap();
    for _ in 0..3 {
        control.finger(7).unwrap();
    }
    next(&mut rx).await;
    next(&mut rx).await;
    assert_eq!(
        next(&mut rx).await,
        Input::Module(ModuleReport::EnrolFailed {
            modality: fp,
            reason: EnrolFailure::Duplicate { slot: 4 }
        })
    );
    control.finger(7).unwrap();
    assert_eq!(
        next(&mut rx).await,
        Input::Module(ModuleReport::Recognised {
            modality: fp,
            slot: 4
        })
    );
    control.finger(8).unwrap();
    assert_eq!(
        next(&mut rx).await,
        Input::Module(ModuleReport::NotRecognised { modality: fp })
    );
    // The module's "flash" survives a restart of the board.
    drop(board);
    let (_board, control, mut rx) = sim(config);
    assert_eq!(control.snapshot().modules.fingerprint.get(&4), Some(&7));
    control.finger(7).unwrap();
    assert_eq!(
        next(&mut rx).await,
        Input::Module(ModuleReport::Recognised {
            modality: fp,
            slot: 4
        })
    );
}

#[tokio::test(start_paused = true)]
async fn face_enrolment_walks_the_five_poses_and_returns_a_template() {
    let (mut board, control, mut rx) = sim(SimConfig::default());
    board
        .face
        .command(&ModuleCmd::Enrol {
            modality: Modality::Face,
            slot: 1,
        })
        .unwrap();
    for _ in 0..5 {
        control.face(Some(2)).unwrap();
    }
    for pose in [
        crate::core::input::FacePose::Up,
        crate::core::input::FacePose::Down,
        crate::core::input::FacePose::Left,
        crate::core::input::FacePose::Right,
    ] {
        assert_eq!(
            next(&mut rx).await,
            Input::Module(ModuleReport::EnrolProgress {
                modality: Modality::Face,
                step: EnrolStep::FacePose(pose)
            })
        );
    }
    match next(&mut rx).await {
        Input::Module(ModuleReport::Enrolled {
            slot: 1,
            template: Some(t),
            ..
        }) => assert!(!t.is_empty()),
        other => panic!("expected an enrolled face, got {other:?}"),
    }
    // Manual recognition (B-6.2) sees whoever stands there; nobody = no attempt.
    board.face.command(&ModuleCmd::RecogniseFace).unwrap();
    assert_eq!(
        next(&mut rx).await,
        Input::Module(ModuleReport::Recognised {
            modality: Modality::Face,
            slot: 1
        })
    );
    control.face(None).unwrap();
    board.face.command(&ModuleCmd::RecogniseFace).unwrap();
    assert!(rx.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn door_cannot_close_on_a_thrown_bolt_and_bad_input_changes_nothing() {
    let (_board, control, mut rx) = sim(SimConfig::default());
    // Starts extended and closed: the bolt holds the door.
    assert_eq!(control.door(true), Err(SimError::BoltBlocksDoor));
    control.mechanical_key().unwrap();
    assert_eq!(next(&mut rx).await, Input::MechanicalKey);
    assert_eq!(next(&mut rx).await, Input::Bolt(BoltPosition::Retracted));
    control.door(true).unwrap();
    assert_eq!(next(&mut rx).await, Input::Door(DoorPosition::Open));
    assert_eq!(control.door(true), Err(SimError::DoorAlready("open")));
    assert_eq!(
        control.power(Some(101), None),
        Err(SimError::BadPercent(101))
    );
    assert_eq!(control.finger(0), Err(SimError::BadPerson));
    assert_eq!(control.snapshot().power.percent, 80);
    assert!(rx.try_recv().is_err());
}

#[test]
fn key_strings_parse_all_or_nothing() {
    assert_eq!(
        parse_keys("1 2#*ad").unwrap(),
        vec![
            Key::Digit(1),
            Key::Digit(2),
            Key::Confirm,
            Key::Back,
            Key::Away,
            Key::Doorbell
        ]
    );
    assert_eq!(parse_keys("12x"), Err(SimError::BadKey("x".into())));
    assert_eq!(parse_keys("  "), Err(SimError::NoKeys));
}

/// A camera from outside (`SimParts::camera`) is told every snapshot with
/// its event, after the sim's own counter; its failure is the snapshot's.
#[tokio::test]
async fn an_outside_camera_gets_each_snapshot_and_the_counter_still_counts() {
    use crate::board::{Camera, DeviceError};
    use crate::core::action::SnapshotReason;
    use std::sync::{Arc, Mutex};

    struct Refusing(Arc<Mutex<Vec<Option<u64>>>>);
    impl Camera for Refusing {
        fn snapshot(&mut self, reason: SnapshotReason) -> Result<(), DeviceError> {
            self.snapshot_for_event(reason, None)
        }
        fn snapshot_for_event(
            &mut self,
            _reason: SnapshotReason,
            event: Option<u64>,
        ) -> Result<(), DeviceError> {
            self.0.lock().unwrap().push(event);
            Err(DeviceError::Unavailable {
                device: "camera",
                detail: "disk full".into(),
            })
        }
    }

    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, _rx) = mpsc::channel(64);
    let (mut board, control) = build_with(
        SimConfig::default(),
        InputSender::new(tx),
        SimParts {
            camera: Some(Box::new(Refusing(seen.clone()))),
            ..SimParts::default()
        },
    )
    .expect("sim board builds");
    let e = board
        .camera
        .snapshot_for_event(SnapshotReason::Doorbell, Some(7))
        .expect_err("the store refused");
    assert!(e.to_string().contains("disk full"), "{e}");
    assert_eq!(*seen.lock().unwrap(), [Some(7)]);
    assert_eq!(control.snapshot().snapshots, 1);
}
