//! Issue 17 item 3: door alarms — the door left open (Matter `DoorAjar`)
//! and forced entry (Matter `DoorForcedOpen`), one alarm per episode, and
//! never an unlock.
use latchd::core::action::{AlarmCmd, MotorCmd, Notice, SnapshotReason};
use latchd::core::event::AlarmKind;
use latchd::core::input::{BoltPosition, DoorPosition};
use latchd::core::types::SettingChange;
use latchd::core::{Action, AppCommand, AppError, AppOk, Channel, EventKind, Input, Prompt};

use crate::harness::{secs, Sim, ADMIN_CODE};

fn open(s: &mut Sim) {
    s.input(Input::Door(DoorPosition::Open));
}

fn close(s: &mut Sim) {
    s.input(Input::Door(DoorPosition::Closed));
}

/// How often `alarm` was raised since the start.
fn raised(s: &Sim, alarm: AlarmKind) -> usize {
    s.all
        .iter()
        .filter(|a| matches!(a, Action::Log(e) if e.kind == EventKind::AlarmRaised { alarm }))
        .count()
}

fn cleared(s: &Sim, alarm: AlarmKind) -> usize {
    s.all
        .iter()
        .filter(|a| matches!(a, Action::Log(e) if e.kind == EventKind::AlarmCleared { alarm }))
        .count()
}

/// Nothing since the start asked the motor to retract the bolt.
#[track_caller]
fn never_retracted(s: &Sim) {
    assert!(
        !s.all.iter().any(|a| matches!(
            a,
            Action::Motor(MotorCmd::Drive {
                target: BoltPosition::Retracted,
                ..
            })
        )),
        "a door alarm drove the bolt back"
    );
}

#[test]
fn door_forced_open_sounds_the_siren_tells_the_owner_and_logs() {
    let mut s = Sim::installed();
    open(&mut s);
    assert!(s.alarms().contains(&AlarmCmd::Sound {
        kind: AlarmKind::DoorForcedOpen,
        duration: secs(60)
    }));
    assert!(s
        .notices()
        .contains(&Notice::Alarm(AlarmKind::DoorForcedOpen)));
    assert!(s.has_event(&EventKind::AlarmRaised {
        alarm: AlarmKind::DoorForcedOpen
    }));
    assert!(s.last.contains(&Action::Snapshot(SnapshotReason::Alarm(
        AlarmKind::DoorForcedOpen
    ))));
    s.expect_prompt(Prompt::DoorForcedOpen);
    assert!(s.alarm_active(AlarmKind::DoorForcedOpen));
    // The alarm state lasts while the door stays open, past the siren.
    s.advance(120);
    assert!(s.alarm_active(AlarmKind::DoorForcedOpen));
    // Closed for the settle time: the episode is over.
    close(&mut s);
    s.advance(9);
    assert!(s.alarm_active(AlarmKind::DoorForcedOpen));
    s.advance(1);
    assert!(!s.alarm_active(AlarmKind::DoorForcedOpen));
    assert_eq!(cleared(&s, AlarmKind::DoorForcedOpen), 1);
    never_retracted(&s);
}

#[test]
fn a_chattering_door_sensor_raises_one_alarm_per_episode() {
    let mut s = Sim::installed();
    for _ in 0..50 {
        open(&mut s);
        s.advance_ms(300);
        close(&mut s);
        s.advance_ms(300);
    }
    assert_eq!(raised(&s, AlarmKind::DoorForcedOpen), 1);
    let sirens = s
        .all
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Alarm(AlarmCmd::Sound {
                    kind: AlarmKind::DoorForcedOpen,
                    ..
                })
            )
        })
        .count();
    assert_eq!(sirens, 1);
    let notices = s
        .all
        .iter()
        .filter(|a| matches!(a, Action::Notify(Notice::Alarm(AlarmKind::DoorForcedOpen))))
        .count();
    assert_eq!(notices, 1);
    // The door-ajar alarm is one per episode too: the chatter lasted 30 s,
    // keep it going past the 60 s delay.
    for _ in 0..60 {
        open(&mut s);
        s.advance_ms(400);
        close(&mut s);
        s.advance_ms(100);
    }
    open(&mut s);
    s.advance(5);
    assert_eq!(raised(&s, AlarmKind::DoorAjar), 1);
    // The siren is never cut short: the episode ends once it is over and
    // the door stayed shut.
    close(&mut s);
    s.advance(60);
    assert!(!s.alarm_active(AlarmKind::DoorForcedOpen));
    assert!(!s.alarm_active(AlarmKind::DoorAjar));
    // A new forcing after the episode is a new alarm.
    open(&mut s);
    assert_eq!(raised(&s, AlarmKind::DoorForcedOpen), 2);
    never_retracted(&s);
}

#[test]
fn a_door_forced_during_a_lockout_still_alarms() {
    let mut s = Sim::installed();
    for _ in 0..5 {
        s.input(Input::Touch);
        s.press("802468✓");
    }
    assert!(s.engine.status().lockout_active);
    open(&mut s);
    assert!(s.has_event(&EventKind::AlarmRaised {
        alarm: AlarmKind::DoorForcedOpen
    }));
    assert!(s.alarms().contains(&AlarmCmd::Sound {
        kind: AlarmKind::DoorForcedOpen,
        duration: secs(60)
    }));
    assert!(s.alarm_active(AlarmKind::Lockout) && s.alarm_active(AlarmKind::DoorForcedOpen));
    never_retracted(&s);
}

#[test]
fn an_unlocked_door_opening_is_not_forced() {
    let mut s = Sim::installed();
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(s.unlocked());
    // Opened while the motor is still retracting the bolt: an unlock in
    // progress, not a forcing.
    open(&mut s);
    s.finish_motor();
    close(&mut s);
    s.advance(11);
    // Opened after the bolt is in.
    open(&mut s);
    assert_eq!(raised(&s, AlarmKind::DoorForcedOpen), 0);
    close(&mut s);
    // The mechanical key and the inside handle turn the bolt by hand; the
    // bolt sensor may report after the door's.
    s.inputs([Input::Bolt(BoltPosition::Extended)]);
    s.advance(30);
    for by_hand in [Input::MechanicalKey, Input::InsideHandle] {
        s.input(by_hand);
        open(&mut s);
        close(&mut s);
        s.advance(30);
    }
    assert_eq!(raised(&s, AlarmKind::DoorForcedOpen), 0);
    // After the grace, the bolt still out: forced.
    s.input(Input::MechanicalKey);
    s.advance(6);
    open(&mut s);
    assert_eq!(raised(&s, AlarmKind::DoorForcedOpen), 1);
}

#[test]
fn the_first_door_report_after_a_start_is_not_an_opening() {
    let mut s = Sim::installed();
    // A daemon that starts with the door reading open did not see it move.
    s.engine = latchd::core::Engine::new(crate::harness::config(), s.store.clone(), s.now());
    s.input(Input::PowerUp { set_held: false });
    s.input(Input::Bolt(BoltPosition::Extended));
    open(&mut s);
    assert_eq!(raised(&s, AlarmKind::DoorForcedOpen), 0);
}

#[test]
fn a_door_left_open_prompts_and_tells_the_owner_once() {
    let mut s = Sim::installed();
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    s.finish_motor();
    open(&mut s);
    s.advance(59);
    assert_eq!(raised(&s, AlarmKind::DoorAjar), 0);
    s.advance(1);
    s.expect_prompt(Prompt::DoorAjar);
    assert!(s.notices().contains(&Notice::Alarm(AlarmKind::DoorAjar)));
    assert!(s.has_event(&EventKind::AlarmRaised {
        alarm: AlarmKind::DoorAjar
    }));
    // A prompt and a notice, no siren.
    assert!(!s
        .all
        .iter()
        .any(|a| matches!(a, Action::Alarm(AlarmCmd::Sound { .. }))));
    s.advance(600);
    assert_eq!(raised(&s, AlarmKind::DoorAjar), 1);
    // Closed: auto-lock as today (when set), and the alarm ends.
    close(&mut s);
    s.advance(10);
    assert!(!s.alarm_active(AlarmKind::DoorAjar));
    assert_eq!(cleared(&s, AlarmKind::DoorAjar), 1);
    // A door closed in time raises nothing.
    open(&mut s);
    s.advance(30);
    close(&mut s);
    s.advance(120);
    assert_eq!(raised(&s, AlarmKind::DoorAjar), 1);
}

#[test]
fn closing_the_door_still_auto_locks_during_a_door_alarm() {
    let mut s = Sim::installed();
    let owner = s.owner();
    s.app(
        Channel::Ble,
        owner,
        AppCommand::Setting(SettingChange::AutoLock(Some(secs(30)))),
    )
    .expect("auto-lock set");
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    s.finish_motor();
    open(&mut s);
    s.advance(61);
    assert!(s.alarm_active(AlarmKind::DoorAjar));
    close(&mut s);
    s.advance(30);
    assert!(matches!(
        s.drive(),
        Some(MotorCmd::Drive {
            target: BoltPosition::Extended,
            ..
        })
    ));
}

#[test]
fn the_door_ajar_delay_is_a_setting_and_zero_is_off() {
    let mut s = Sim::installed();
    let owner = s.owner();
    assert_eq!(s.engine.status().settings.door_ajar, Some(secs(60)));
    for bad in [secs(5), secs(3601)] {
        assert!(matches!(
            s.app(
                Channel::Ble,
                owner,
                AppCommand::Setting(SettingChange::DoorAjar(Some(bad)))
            ),
            Err(AppError::BadSetting(_))
        ));
    }
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::Setting(SettingChange::DoorAjar(Some(secs(120))))
        ),
        Ok(AppOk::Done)
    );
    assert_eq!(s.store.settings.door_ajar, Some(secs(120)));
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    s.finish_motor();
    open(&mut s);
    s.advance(119);
    assert_eq!(raised(&s, AlarmKind::DoorAjar), 0);
    s.advance(1);
    assert_eq!(raised(&s, AlarmKind::DoorAjar), 1);
    close(&mut s);
    s.advance(10);
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::Setting(SettingChange::DoorAjar(None))
        ),
        Ok(AppOk::Done)
    );
    s.restart();
    assert_eq!(s.engine.status().settings.door_ajar, None);
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    s.finish_motor();
    open(&mut s);
    s.advance(3600);
    assert!(!s.alarm_active(AlarmKind::DoorAjar));
}

#[test]
fn a_factory_reset_ends_the_door_alarms() {
    let mut s = Sim::installed();
    open(&mut s);
    assert!(s.alarm_active(AlarmKind::DoorForcedOpen));
    s.input(Input::PowerUp { set_held: true });
    s.press("✓");
    s.expect_prompt(Prompt::FactoryResetDone);
    assert!(!s.alarm_active(AlarmKind::DoorForcedOpen));
    never_retracted(&s);
}

/// Issue 17 item 8: the app's status report names every alarm the lock
/// shows at the lock (door alarms and the jam were missing).
#[test]
fn the_apps_status_report_shows_door_alarms_and_the_jam() {
    use latchd::app::wire::status_report;
    use latchd::app::Response;
    use latchd::core::input::MotorReport;

    let mut s = Sim::installed();
    let report = |s: &Sim| {
        // Through the wire, as the app reads it.
        let r = Response::Status(status_report(&s.engine.status()));
        match Response::decode(&r.encode()).expect("decodes") {
            Response::Status(st) => st.alarms,
            other => panic!("{other:?}"),
        }
    };
    assert!(report(&s).names().is_empty());
    open(&mut s);
    assert_eq!(report(&s).names(), ["door_forced_open"]);
    // The episode ends once the siren is over and the door is closed.
    s.advance(60);
    close(&mut s);
    s.advance(10);
    assert!(report(&s).names().is_empty(), "{:?}", report(&s).names());

    // Unlock at the keypad, then the bolt jams on the way out.
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    s.finish_motor();
    s.input(Input::LockButton);
    s.input(Input::Motor(MotorReport::Jammed {
        at: BoltPosition::Between,
    }));
    assert!(report(&s).jam, "{:?}", report(&s));
}

/// The log has one entry per movement of the door: a sensor reporting the
/// position it already reported (a bounce, a reading repeated) adds none.
#[test]
fn the_log_has_one_entry_per_door_movement() {
    let mut s = Sim::installed();
    let count = |s: &Sim, kind: EventKind| {
        s.all
            .iter()
            .filter(|a| matches!(a, Action::Log(e) if e.kind == kind))
            .count()
    };
    close(&mut s);
    let closed = count(&s, EventKind::DoorClosed);
    open(&mut s);
    assert_eq!(count(&s, EventKind::DoorOpened), 1);
    open(&mut s);
    assert_eq!(count(&s, EventKind::DoorOpened), 1);
    close(&mut s);
    close(&mut s);
    assert_eq!(count(&s, EventKind::DoorClosed), closed + 1);
    assert_eq!(count(&s, EventKind::DoorOpened), 1);
}
