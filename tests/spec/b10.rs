//! B-10 Power, alarms, maintenance.
use latchd::core::action::{AlarmCmd, ModuleCmd, Notice, SnapshotReason};
use latchd::core::event::AlarmKind;
use latchd::core::input::{PowerReading, TamperState};
use latchd::core::types::{Change, Key, Modality};
use latchd::core::{Action, EventKind, Input, Prompt};

use crate::harness::{secs, Sim, ADMIN_CODE};

fn battery(percent: u8, external: bool) -> Input {
    Input::Power(PowerReading {
        percent,
        millivolts: 6000 + u32::from(percent) * 30,
        external,
    })
}

#[test]
fn b10_1_low_battery_prompts_on_wake_and_lights_the_led() {
    let mut s = Sim::installed();
    s.input(battery(19, false));
    assert!(s.keypad().low_battery_led);
    assert!(s.notices().contains(&Notice::Alarm(AlarmKind::LowBattery)));
    s.input(Input::Touch);
    s.expect_prompt(Prompt::LowBattery);
    // Only on wake, not on every touch.
    s.input(Input::Touch);
    assert!(s.prompts().is_empty());
    s.input(battery(80, false));
    assert!(!s.keypad().low_battery_led);
}

#[test]
fn b10_2_no_snapshot_below_twenty_percent() {
    let mut s = Sim::installed();
    s.input(battery(15, false));
    s.input(Input::Touch);
    s.press("b");
    assert!(!s.last.iter().any(|a| matches!(a, Action::Snapshot(_))));
    s.expect_prompt(Prompt::Doorbell);
}

#[test]
fn b10_3_emergency_power_keeps_the_lock_working() {
    let mut s = Sim::installed();
    s.input(battery(0, true));
    assert!(!s.keypad().low_battery_led);
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(s.unlocked());
}

#[test]
fn b10_4_tamper_alarm_sounds_for_a_minute() {
    let mut s = Sim::installed();
    s.input(Input::Tamper(TamperState::Opened));
    assert!(s.alarms().contains(&AlarmCmd::Sound {
        kind: AlarmKind::Tamper,
        duration: secs(60)
    }));
    s.expect_prompt(Prompt::TamperAlarm);
    assert!(s.has_event(&EventKind::AlarmRaised {
        alarm: AlarmKind::Tamper
    }));
    assert!(s.notices().contains(&Notice::Alarm(AlarmKind::Tamper)));
    assert!(s
        .last
        .contains(&Action::Snapshot(SnapshotReason::Alarm(AlarmKind::Tamper))));
    assert!(s.alarm_active(AlarmKind::Tamper));
    s.advance(60);
    assert!(s.has_event(&EventKind::AlarmCleared {
        alarm: AlarmKind::Tamper
    }));
    assert!(!s.alarm_active(AlarmKind::Tamper));
}

/// B-10.4: the switch reporting the panel in place (as it does at every
/// start) raises nothing; a switch bouncing open again while the alarm
/// sounds neither raises it twice nor makes it last longer.
#[test]
fn b10_4_a_panel_in_place_raises_nothing_and_a_bounce_raises_once() {
    let mut s = Sim::installed();
    s.input(Input::Tamper(TamperState::Intact));
    assert!(s.alarms().is_empty(), "{:?}", s.alarms());
    assert!(!s.alarm_active(AlarmKind::Tamper));
    s.input(Input::Tamper(TamperState::Opened));
    s.advance(10);
    s.input(Input::Tamper(TamperState::Intact));
    s.input(Input::Tamper(TamperState::Opened));
    let raised = s
        .all
        .iter()
        .filter(|a| {
            matches!(a, Action::Log(e) if e.kind == EventKind::AlarmRaised { alarm: AlarmKind::Tamper })
        })
        .count();
    assert_eq!(raised, 1);
    s.advance(50);
    assert!(s.has_event(&EventKind::AlarmCleared {
        alarm: AlarmKind::Tamper
    }));
}

#[test]
fn b10_5_lockout_alarm() {
    let mut s = Sim::installed();
    for _ in 0..5 {
        s.present_unknown(Modality::Palm);
    }
    assert!(s.alarms().contains(&AlarmCmd::Sound {
        kind: AlarmKind::Lockout,
        duration: secs(180)
    }));
    assert!(s.alarm_active(AlarmKind::Lockout));
}

#[test]
fn b10_6_factory_reset_erases_and_asks_the_direction_again() {
    let mut s = Sim::installed();
    s.add_passcode_user("2", "802468");
    // Strikes against the old household are forgotten with it.
    for _ in 0..2 {
        s.input(Input::Touch);
        s.press("111111✓");
    }
    assert_eq!(s.engine.status().strikes, 2);
    s.input(Input::PowerUp { set_held: true });
    s.expect_prompt(Prompt::FactoryResetRelease);
    s.expect_prompt(Prompt::FactoryResetConfirm);
    assert_eq!(s.lit(), vec![Key::Back, Key::Confirm]);
    s.press("✓");
    assert_eq!(s.expect_persist(), vec![Change::FactoryReset]);
    for modality in [Modality::Fingerprint, Modality::Palm] {
        assert!(s.module_cmds().contains(&ModuleCmd::Wipe { modality }));
    }
    s.expect_prompt(Prompt::FactoryResetDone);
    s.expect_prompt(Prompt::ChooseDirection);
    let persist = s.position(|a| matches!(a, Action::Persist(_)));
    let done = s.position(|a| matches!(a, Action::Prompt(Prompt::FactoryResetDone, _)));
    assert!(persist < done);
    assert!(s.store.users.is_empty() && s.store.handing.is_none());
    assert_eq!(
        s.engine.status().strikes,
        0,
        "the strikes went with the reset"
    );
    // The old codes are gone.
    s.press("✓1");
    s.press("✓");
    s.expect_prompt(Prompt::UserNumber(crate::harness::n(1)));
}

#[test]
fn b10_6_without_confirmation_nothing_is_erased() {
    let mut s = Sim::installed();
    s.input(Input::PowerUp { set_held: true });
    s.advance(30);
    assert!(s
        .all
        .iter()
        .all(|a| !matches!(a, Action::Persist(c) if c.contains(&Change::FactoryReset))));
    assert_eq!(s.store.users.len(), 1);
    assert_eq!(s.engine.status().step, "idle");
    // "↩" at the prompt also keeps everything.
    s.input(Input::PowerUp { set_held: true });
    s.press("↩");
    assert_eq!(s.store.users.len(), 1);
    s.input(Input::Touch);
    s.press(&format!("{ADMIN_CODE}✓"));
    assert!(s.unlocked());
}

// ----- B-10.7: weak Wi-Fi is a state, with an event and an owner notice -----

fn signal(s: &mut Sim, rssi: i16) {
    s.input(Input::Wifi(latchd::core::input::WifiStatus {
        connected: true,
        rssi,
    }));
}

/// Weak and recovered events logged since the start.
fn wifi_events(s: &Sim) -> (usize, usize) {
    let n = |want: fn(&EventKind) -> bool| {
        s.all
            .iter()
            .filter(|a| matches!(a, Action::Log(e) if want(&e.kind)))
            .count()
    };
    (
        n(|k| matches!(k, EventKind::WifiWeak { .. })),
        n(|k| matches!(k, EventKind::WifiRecovered { .. })),
    )
}

fn weak_notices(s: &Sim) -> usize {
    s.all
        .iter()
        .filter(|a| matches!(a, Action::Notify(Notice::WifiWeak { .. })))
        .count()
}

#[test]
fn b10_7_a_signal_that_stays_weak_is_reported_once() {
    let mut s = Sim::installed();
    signal(&mut s, -60);
    signal(&mut s, -82);
    s.advance(299);
    assert!(!s.engine.status().wifi_weak, "not before the hold");
    s.advance(1);
    assert!(s.engine.status().wifi_weak);
    assert!(s.has_event(&EventKind::WifiWeak { rssi: -82 }));
    assert!(s.notices().contains(&Notice::WifiWeak { rssi: -82 }));
    // It stays weak: nothing more is said.
    s.advance(3600);
    signal(&mut s, -84);
    s.advance(3600);
    assert_eq!(wifi_events(&s), (1, 0));
    assert_eq!(weak_notices(&s), 1);
}

#[test]
fn b10_7_a_wavering_signal_does_not_flap() {
    let mut s = Sim::installed();
    for _ in 0..30 {
        signal(&mut s, -80);
        s.advance(120);
        signal(&mut s, -73);
        s.advance(120);
    }
    assert!(!s.engine.status().wifi_weak);
    assert_eq!(wifi_events(&s), (0, 0));
}

#[test]
fn b10_7_recovery_needs_the_margin_and_the_owner_is_not_nagged() {
    let mut s = Sim::installed();
    signal(&mut s, -80);
    s.advance(300);
    assert!(s.engine.status().wifi_weak);
    // Just above the line is not enough (5 dB of hysteresis).
    signal(&mut s, -72);
    s.advance(900);
    assert!(s.engine.status().wifi_weak);
    signal(&mut s, -65);
    s.advance(300);
    assert!(!s.engine.status().wifi_weak);
    assert_eq!(wifi_events(&s), (1, 1));
    // Weak again within six hours: logged, but one notice is enough.
    signal(&mut s, -81);
    s.advance(300);
    assert_eq!(wifi_events(&s), (2, 1));
    assert_eq!(weak_notices(&s), 1);
    // After the gap the owner hears again.
    signal(&mut s, -60);
    s.advance(300);
    s.advance(6 * 3600);
    signal(&mut s, -85);
    s.advance(300);
    assert_eq!(weak_notices(&s), 2);
}

#[test]
fn b10_7_going_offline_ends_the_weak_state_without_a_recovery() {
    let mut s = Sim::installed();
    signal(&mut s, -80);
    s.advance(300);
    assert!(s.engine.status().wifi_weak);
    s.input(Input::Wifi(latchd::core::input::WifiStatus {
        connected: false,
        rssi: 0,
    }));
    assert!(!s.engine.status().wifi_weak);
    s.advance(600);
    assert_eq!(wifi_events(&s), (1, 0));
}

/// Issue 15 item 5 (the manual is silent; a lock sold to homes tells the
/// owner): a module outage is logged, said and told to the owner once; its
/// end is logged; a reader that flaps (a loose connector) stops ringing the
/// owner's phone once the outage budget is spent, and is told again after
/// the budget refills.
#[test]
fn module_outages_are_told_once_each_and_their_end_logged_within_a_budget() {
    use latchd::core::input::ModuleReport;
    let mut s = Sim::installed();
    let fault = |detail: &str| {
        Input::Module(ModuleReport::Fault {
            modality: Modality::Palm,
            detail: detail.into(),
        })
    };
    let recovered = Input::Module(ModuleReport::Recovered {
        modality: Modality::Palm,
    });
    s.input(fault("no answer"));
    assert_eq!(
        s.notices(),
        vec![Notice::ModuleFault {
            modality: Modality::Palm
        }]
    );
    s.expect_prompt(Prompt::ModuleFault);
    assert!(s.has_event(&EventKind::ModuleFault {
        detail: "Palm: no answer".into()
    }));
    s.advance(5);
    s.input(recovered.clone());
    assert!(s.has_event(&EventKind::ModuleRecovered {
        detail: "Palm".into()
    }));
    assert!(s.notices().is_empty(), "the end is logged, not rung");
    assert!(s.prompts().is_empty(), "and not said");

    // Flapping: outages and ends share one budget (5, then 1 per 12 min).
    let mut told = 1;
    for _ in 0..10 {
        s.input(fault("no answer"));
        told += s.notices().len();
        s.input(recovered.clone());
    }
    // The budget's five: fault, end, fault, end, fault — three told.
    assert_eq!(told, 3, "the budget held back the rest");
    s.advance(12 * 60);
    s.input(fault("no answer"));
    assert_eq!(s.notices().len(), 1, "told again after a refill");
}

/// Issue 15 item 5: the palm module dies half-way through an enrolment:
/// the enrolment ends at the method menu with nothing stored, the owner is
/// told; once the module answers again the same enrolment works, with no
/// restart.
#[test]
fn a_module_lost_mid_enrolment_stores_nothing_and_works_again_after() {
    use latchd::core::input::{EnrolStep, ModuleReport};
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("22");
    s.input(Input::Module(ModuleReport::EnrolProgress {
        modality: Modality::Palm,
        step: EnrolStep::PresentAgain { n: 1, of: 3 },
    }));
    let before = s.store.credentials.len();
    s.input(Input::Module(ModuleReport::Fault {
        modality: Modality::Palm,
        detail: "link closed".into(),
    }));
    assert_eq!(
        s.notices(),
        vec![Notice::ModuleFault {
            modality: Modality::Palm
        }]
    );
    s.expect_prompt(Prompt::ChooseMethod);
    assert_eq!(s.store.credentials.len(), before, "nothing half-stored");
    s.input(Input::Module(ModuleReport::Recovered {
        modality: Modality::Palm,
    }));
    assert!(s.has_event(&EventKind::ModuleRecovered {
        detail: "Palm".into()
    }));
    s.press("2");
    s.complete_enrolment(Modality::Palm);
    assert_eq!(s.store.credentials.len(), before + 1);
}
