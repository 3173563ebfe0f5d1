//! B-9 App operations (the lock's side of them).
use latchd::core::types::{Change, Role, SettingChange};
use latchd::core::WallTime;
use latchd::core::{AppCommand, AppError, AppOk, Channel, EventKind, Input, Validity};

use crate::harness::{n, secs, Sim, WALL0};

#[test]
fn b9_1_status_shows_battery_wifi_and_ble() {
    let mut s = Sim::installed();
    s.inputs([
        Input::Power(latchd::core::input::PowerReading {
            percent: 64,
            millivolts: 7900,
            external: false,
        }),
        Input::Wifi(latchd::core::input::WifiStatus {
            connected: true,
            rssi: -61,
        }),
        Input::BleConnected(true),
    ]);
    let st = s.engine.status();
    assert_eq!(st.battery_percent, Some(64));
    assert_eq!(st.battery_millivolts, Some(7900));
    assert!(st.wifi_connected && st.ble_connected);
    assert_eq!(st.wifi_rssi, Some(-61));
    assert_eq!(
        (st.counts.users, st.counts.admins, st.counts.passcodes),
        (1, 1, 1)
    );
}

#[test]
fn b9_3_users_added_from_the_app_and_deleted() {
    let mut s = Sim::installed();
    let owner = s.owner();
    let r = s.app(
        Channel::Ble,
        owner,
        AppCommand::AddUser {
            role: Role::User,
            validity: Validity::ALWAYS,
        },
    );
    assert_eq!(r, Ok(AppOk::UserAdded(n(2))));
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::DeleteUser(n(1))),
        Err(AppError::LastAdmin)
    );
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::DeleteUser(n(9))),
        Err(AppError::NoSuchUser)
    );
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::DeleteUser(n(2))),
        Ok(AppOk::Done)
    );
    assert!(s.has_event(&EventKind::UserDeleted { user: n(2) }));
}

#[test]
fn b9_4_validity_periods_are_edited_from_the_app() {
    let mut s = Sim::installed();
    let u = s.add_passcode_user("2", "802468");
    let owner = s.owner();
    let bad = Validity {
        from: Some(WallTime(100)),
        until: Some(WallTime(100)),
    };
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::SetValidity(u, bad)),
        Err(AppError::BadValidity)
    );
    let ended = Validity {
        from: None,
        until: Some(WallTime(1)),
    };
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::SetValidity(u, ended)),
        Ok(AppOk::Done)
    );
    assert!(s
        .expect_persist()
        .iter()
        .any(|c| matches!(c, Change::PutUser(x) if x.number == u && x.validity == ended)));
    s.input(Input::Touch);
    s.press("802468✓");
    assert!(!s.unlocked());
}

#[test]
fn b9_7_settings_are_persisted_and_logged() {
    let mut s = Sim::installed();
    let owner = s.owner();
    for change in [
        SettingChange::AutoLock(Some(secs(45))),
        SettingChange::LockoutProtection(false),
        SettingChange::RemoteUnlock(true),
        SettingChange::Wifi(false),
    ] {
        assert_eq!(
            s.app(Channel::Ble, owner, AppCommand::Setting(change.clone())),
            Ok(AppOk::Done)
        );
        assert!(s.has_event(&EventKind::SettingChanged { change }));
    }
    let st = s.store.settings.clone();
    assert_eq!(st.auto_lock, Some(secs(45)));
    assert!(!st.lockout_protection && st.remote_unlock && !st.wifi);
    assert!(matches!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::Setting(SettingChange::AutoLock(Some(secs(0))))
        ),
        Err(AppError::BadSetting(_))
    ));
    // Settings survive a restart.
    s.restart();
    assert_eq!(s.engine.status().settings, st);
}

#[test]
fn b9_app_changes_wait_while_the_menu_is_open() {
    let mut s = Sim::installed();
    let owner = s.owner();
    s.enter_menu();
    s.press("23");
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::DeleteUser(n(1))),
        Err(AppError::Busy)
    );
}

/// B-9.6 / issue 17 item 7: an owner's validity edits and visitor codes
/// are in the log (they were not logged at all); the digits never are.
#[test]
fn b9_6_validity_edits_and_visitor_codes_are_logged() {
    let mut s = Sim::installed();
    let owner = s.owner();
    let window = Validity {
        from: Some(WallTime(WALL0 + 600)),
        until: Some(WallTime(WALL0 + 7200)),
    };
    let user = s.add_passcode_user("2", "802469");
    s.app(Channel::Ble, owner, AppCommand::SetValidity(user, window))
        .expect("validity");
    assert!(s.has_event(&EventKind::ValidityChanged {
        user,
        validity: window
    }));
    let r = s.app(
        Channel::Ble,
        owner,
        AppCommand::AddTempPasscode {
            digits: "470258".into(),
            validity: window,
            one_time: true,
        },
    );
    let Ok(AppOk::TempPasscodeAdded(id)) = r else {
        panic!("{r:?}")
    };
    assert!(s.has_event(&EventKind::TempPasscodeCreated {
        id: id.0,
        validity: window,
        one_time: true
    }));
    s.app(Channel::Ble, owner, AppCommand::RevokeTempPasscode(id))
        .expect("revoke");
    assert!(s.has_event(&EventKind::TempPasscodeRevoked { id: id.0 }));
    let logged = serde_json::to_string(&s.events()).unwrap();
    assert!(!logged.contains("470258"), "{logged}");
}

/// Away mode (the app's "away" switch) arms and disarms from the app, and
/// only a change is logged. Found by mutation testing (issue 23): with
/// the change check inverted the switch did nothing and every test stayed
/// green.
#[test]
fn b9_away_mode_is_armed_and_disarmed_from_the_app_and_each_change_logged() {
    let mut s = Sim::installed();
    let owner = s.owner();
    for (armed, logged) in [(true, true), (true, false), (false, true), (false, false)] {
        assert_eq!(
            s.app(Channel::Ble, owner, AppCommand::SetAway(armed)),
            Ok(AppOk::Done)
        );
        assert_eq!(s.engine.status().away_armed, armed);
        assert_eq!(
            s.has_event(&EventKind::AwayMode { armed }),
            logged,
            "SetAway({armed}) logged"
        );
    }
}
