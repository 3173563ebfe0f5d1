//! Issue 20: software updates — owner keys only, installed and restarted
//! only when the lock is safe (door closed, bolt out, motor idle, no menu,
//! battery, no lockout or alarm), bounded waits, and no downgrade unless
//! the owner allows one. The engine's side only: RAUC is driven by the
//! update task (`tests/it/update_rauc.rs`).
use latchd::core::action::Prompt;
use latchd::core::action::UpdateCmd;
use latchd::core::event::AlarmKind;
use latchd::core::input::{BoltPosition, DoorPosition, PowerReading, TamperState, UpdateReport};
use latchd::core::time::Validity;
use latchd::core::update::{Blocker, Phase, UpdatePolicy, UpdateRefusal};
use latchd::core::{Action, AppCommand, AppError, AppOk, Channel, EventKind, Input, Principal};

use crate::harness::{n, Sim};

const URL: &str = "https://updates.example.net/lock-0.2.0.raucb";

fn power(percent: u8, external: bool) -> Input {
    Input::Power(PowerReading {
        percent,
        millivolts: 3900,
        external,
    })
}

/// An installed lock with an owner key, the battery at 80 %, door
/// closed and bolt out (safe).
fn lock_with_owner() -> (Sim, Principal) {
    let mut s = Sim::installed();
    let owner = s.owner();
    s.input(power(80, false));
    s.last.clear();
    (s, owner)
}

fn start(s: &mut Sim, owner: Principal) {
    let r = s.app(
        Channel::Ble,
        owner,
        AppCommand::StartUpdate {
            source: URL.into(),
            allow_older: false,
        },
    );
    assert_eq!(r, Ok(AppOk::Done));
}

fn update_cmds(s: &Sim) -> Vec<UpdateCmd> {
    s.all
        .iter()
        .filter_map(|a| match a {
            Action::Update(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// Every event logged since the start (not only the last batch).
fn all_events(s: &Sim) -> Vec<latchd::core::Event> {
    s.all
        .iter()
        .filter_map(|a| match a {
            Action::Log(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn ever_logged(s: &Sim, kind: &EventKind) -> bool {
    all_events(s).iter().any(|e| &e.kind == kind)
}

fn report(s: &mut Sim, r: UpdateReport) {
    s.input(Input::Update(r));
}

fn inspect(version: &str) -> UpdateReport {
    UpdateReport::Inspected {
        version: version.into(),
    }
}

fn install_cmd() -> UpdateCmd {
    UpdateCmd::Install { source: URL.into() }
}

fn inspect_cmd() -> UpdateCmd {
    UpdateCmd::Inspect { source: URL.into() }
}

#[test]
fn an_owner_update_on_a_safe_lock_inspects_installs_and_restarts() {
    let (mut s, owner) = lock_with_owner();
    start(&mut s, owner);
    assert!(ever_logged(
        &s,
        &EventKind::UpdateRequested {
            by: n(1),
            via: Channel::Ble,
            allow_older: false
        }
    ));
    // RAUC checks the bundle before anything waits or installs.
    assert_eq!(update_cmds(&s), vec![inspect_cmd()]);
    report(&mut s, inspect("0.2.0"));
    assert_eq!(update_cmds(&s), vec![inspect_cmd(), install_cmd()]);
    assert!(ever_logged(
        &s,
        &EventKind::UpdateInstalling {
            version: "0.2.0".into()
        }
    ));
    for p in [10, 30, 40, 60, 99] {
        report(&mut s, UpdateReport::Progress { percent: p });
    }
    let steps: Vec<u8> = all_events(&s)
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::UpdateProgress { percent } => Some(percent),
            _ => None,
        })
        .collect();
    assert_eq!(steps, vec![25, 50, 75], "progress is logged in steps");
    assert_eq!(s.engine.status().update.expect("in progress").progress, 99);
    report(&mut s, UpdateReport::Installed);
    assert!(ever_logged(
        &s,
        &EventKind::UpdateInstalled {
            version: "0.2.0".into()
        }
    ));
    assert_eq!(update_cmds(&s).last(), Some(&UpdateCmd::Restart));
    assert!(ever_logged(
        &s,
        &EventKind::UpdateRestarting {
            version: "0.2.0".into()
        }
    ));
    assert_eq!(
        s.engine.status().update.map(|u| u.phase),
        Some(Phase::Restarting)
    );
}

#[test]
fn an_update_waits_while_the_door_is_open_and_installs_once_it_is_closed_and_locked() {
    let (mut s, owner) = lock_with_owner();
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::Unlock),
        Ok(AppOk::Done)
    );
    s.finish_motor();
    s.input(Input::Door(DoorPosition::Open));
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    // Nothing installs; the log says why.
    assert_eq!(update_cmds(&s), vec![inspect_cmd()]);
    assert!(ever_logged(
        &s,
        &EventKind::UpdateWaiting {
            phase: Phase::WaitingToInstall,
            blocked_by: vec![Blocker::DoorOpen, Blocker::BoltNotExtended],
        }
    ));
    let status = s.engine.status().update.expect("waiting");
    assert_eq!(status.phase, Phase::WaitingToInstall);
    // Closed but not locked: still waiting, now only for the bolt.
    s.input(Input::Door(DoorPosition::Closed));
    assert_eq!(update_cmds(&s), vec![inspect_cmd()]);
    assert_eq!(
        s.engine.status().update.expect("waiting").blocked_by,
        vec![Blocker::BoltNotExtended]
    );
    // Locking: while the motor moves it still waits; when it is done, go.
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::Lock),
        Ok(AppOk::Done)
    );
    assert_eq!(
        s.engine.status().update.expect("waiting").blocked_by,
        vec![Blocker::BoltNotExtended, Blocker::MotorBusy]
    );
    assert_eq!(update_cmds(&s), vec![inspect_cmd()]);
    s.finish_motor();
    assert_eq!(update_cmds(&s), vec![inspect_cmd(), install_cmd()]);
}

#[test]
fn the_restart_waits_for_a_menu_to_close() {
    let (mut s, owner) = lock_with_owner();
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    report(&mut s, UpdateReport::Progress { percent: 50 });
    // Someone opens the menu while RAUC writes the other slot.
    s.enter_menu();
    report(&mut s, UpdateReport::Installed);
    assert!(!update_cmds(&s).contains(&UpdateCmd::Restart));
    assert!(ever_logged(
        &s,
        &EventKind::UpdateWaiting {
            phase: Phase::WaitingToRestart,
            blocked_by: vec![Blocker::MenuInUse],
        }
    ));
    s.press("↩↩");
    assert_eq!(update_cmds(&s).last(), Some(&UpdateCmd::Restart));
}

#[test]
fn an_installed_update_never_safe_to_restart_is_abandoned_and_the_old_slot_kept() {
    let (mut s, owner) = lock_with_owner();
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    // The battery runs down while RAUC writes, then a tamper alarm.
    s.input(power(25, false));
    s.input(Input::Tamper(TamperState::Opened));
    report(&mut s, UpdateReport::Installed);
    let need = UpdatePolicy::DEFAULT_MIN_BATTERY_PERCENT;
    assert!(ever_logged(
        &s,
        &EventKind::UpdateWaiting {
            phase: Phase::WaitingToRestart,
            blocked_by: vec![
                Blocker::BatteryLow { percent: 25, need },
                Blocker::Alarm {
                    alarm: AlarmKind::Tamper
                }
            ],
        }
    ));
    s.advance(UpdatePolicy::DEFAULT_MAX_WAIT.as_secs());
    // The tamper alarm ended by itself; the battery never recovered.
    assert!(ever_logged(
        &s,
        &EventKind::UpdateAbandoned {
            phase: Phase::WaitingToRestart,
            blocked_by: vec![Blocker::BatteryLow { percent: 25, need }],
        }
    ));
    // The booted slot is made primary again; nothing restarts.
    assert_eq!(update_cmds(&s).last(), Some(&UpdateCmd::Abandon));
    assert!(!update_cmds(&s).contains(&UpdateCmd::Restart));
    assert_eq!(s.engine.status().update, None);
}

#[test]
fn an_install_that_never_becomes_safe_is_abandoned_after_the_configured_wait() {
    let (mut s, owner) = lock_with_owner();
    s.input(power(15, false));
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    let need = UpdatePolicy::DEFAULT_MIN_BATTERY_PERCENT;
    assert!(ever_logged(
        &s,
        &EventKind::UpdateWaiting {
            phase: Phase::WaitingToInstall,
            blocked_by: vec![Blocker::BatteryLow { percent: 15, need }],
        }
    ));
    s.advance(UpdatePolicy::DEFAULT_MAX_WAIT.as_secs() - 1);
    assert!(s.engine.status().update.is_some());
    s.advance(1);
    assert!(ever_logged(
        &s,
        &EventKind::UpdateAbandoned {
            phase: Phase::WaitingToInstall,
            blocked_by: vec![Blocker::BatteryLow { percent: 15, need }],
        }
    ));
    assert_eq!(update_cmds(&s), vec![inspect_cmd()], "nothing installed");
    // A new request may start afresh.
    start(&mut s, owner);
}

#[test]
fn a_low_battery_waits_but_usb_c_power_lets_the_update_run() {
    let (mut s, owner) = lock_with_owner();
    s.input(power(30, false));
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    assert_eq!(update_cmds(&s), vec![inspect_cmd()]);
    s.input(power(30, true));
    assert_eq!(update_cmds(&s), vec![inspect_cmd(), install_cmd()]);
}

#[test]
fn an_unknown_battery_or_door_blocks_fail_closed() {
    let mut s = Sim::installed();
    let owner = s.owner();
    // No battery report yet.
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    assert_eq!(
        s.engine.status().update.expect("waiting").blocked_by,
        vec![Blocker::BatteryUnknown]
    );
    assert_eq!(update_cmds(&s), vec![inspect_cmd()]);
}

#[test]
fn a_lockout_blocks_an_update() {
    let (mut s, owner) = lock_with_owner();
    for _ in 0..5 {
        s.press("999999✓");
    }
    assert!(s.engine.status().lockout_active);
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    let blocked = s.engine.status().update.expect("waiting").blocked_by;
    assert!(blocked.contains(&Blocker::LockedOut), "{blocked:?}");
    assert_eq!(update_cmds(&s), vec![inspect_cmd()]);
    // The lockout ends by itself (3 min): the update goes on.
    s.advance(3 * 60 + 1);
    assert_eq!(update_cmds(&s), vec![inspect_cmd(), install_cmd()]);
}

#[test]
fn an_older_bundle_is_refused_unless_the_owner_allows_it() {
    let (mut s, owner) = lock_with_owner();
    start(&mut s, owner);
    // The harness runs 0.1.0; the bundle says 0.0.9.
    report(&mut s, inspect("0.0.9"));
    assert!(ever_logged(
        &s,
        &EventKind::UpdateRefused {
            refusal: UpdateRefusal::NotNewer {
                installed: "0.1.0".into(),
                offered: "0.0.9".into()
            }
        }
    ));
    assert_eq!(update_cmds(&s), vec![inspect_cmd()], "nothing installed");
    assert_eq!(s.engine.status().update, None);
    // The same version is not newer either.
    start(&mut s, owner);
    report(&mut s, inspect("0.1.0"));
    assert_eq!(update_cmds(&s).last(), Some(&inspect_cmd()));
    // A version that does not parse is refused even when allowed.
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::StartUpdate {
                source: URL.into(),
                allow_older: true
            }
        ),
        Ok(AppOk::Done)
    );
    report(&mut s, inspect("latest"));
    assert!(ever_logged(
        &s,
        &EventKind::UpdateRefused {
            refusal: UpdateRefusal::BadVersion {
                version: "latest".into()
            }
        }
    ));
    // Explicitly allowed: the downgrade installs.
    assert_eq!(
        s.app(
            Channel::Remote,
            owner,
            AppCommand::StartUpdate {
                source: URL.into(),
                allow_older: true
            }
        ),
        Ok(AppOk::Done)
    );
    report(&mut s, inspect("0.0.9"));
    assert_eq!(update_cmds(&s).last(), Some(&install_cmd()));
}

#[test]
fn guests_pairing_apps_and_matter_fabrics_cannot_start_an_update() {
    let (mut s, owner) = lock_with_owner();
    let key = s.add_guest_key(owner, Validity::ALWAYS, "visitor");
    let guest = Principal::Guest {
        key,
        validity: Validity::ALWAYS,
    };
    let cmd = || AppCommand::StartUpdate {
        source: URL.into(),
        allow_older: true,
    };
    assert_eq!(s.app(Channel::Ble, guest, cmd()), Err(AppError::Forbidden));
    assert!(ever_logged(
        &s,
        &EventKind::AppRefused {
            via: Channel::Ble,
            reason: latchd::core::event::AppRefusal::Forbidden
        }
    ));
    assert_eq!(
        s.app(Channel::Ble, Principal::Pairing, cmd()),
        Err(AppError::Forbidden)
    );
    assert_eq!(
        s.app(
            Channel::Matter,
            Principal::Matter { fabric: 1, node: 7 },
            cmd()
        ),
        Err(AppError::Forbidden)
    );
    // A revoked owner key is refused too.
    let Principal::Owner { key: owner_key, .. } = owner else {
        unreachable!()
    };
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::RevokeOwnerKey(owner_key)),
        Ok(AppOk::Done)
    );
    assert_eq!(s.app(Channel::Ble, owner, cmd()), Err(AppError::Forbidden));
    assert!(update_cmds(&s).is_empty(), "nothing reached RAUC");
}

#[test]
fn rauc_refusing_the_bundle_is_reported_and_a_new_request_may_follow() {
    let (mut s, owner) = lock_with_owner();
    start(&mut s, owner);
    // One update at a time.
    assert_eq!(
        s.app(
            Channel::Remote,
            owner,
            AppCommand::StartUpdate {
                source: URL.into(),
                allow_older: false
            }
        ),
        Err(AppError::UpdateInProgress)
    );
    let error = "signature verification failed: certificate signature failure".to_string();
    report(
        &mut s,
        UpdateReport::Failed {
            error: error.clone(),
        },
    );
    assert!(ever_logged(
        &s,
        &EventKind::UpdateFailed {
            phase: Phase::Inspecting,
            error
        }
    ));
    assert_eq!(s.engine.status().update, None);
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    report(
        &mut s,
        UpdateReport::Failed {
            error: "no space".into(),
        },
    );
    assert!(ever_logged(
        &s,
        &EventKind::UpdateFailed {
            phase: Phase::Installing,
            error: "no space".into()
        }
    ));
    assert!(!update_cmds(&s).contains(&UpdateCmd::Restart));
}

#[test]
fn a_source_that_is_not_an_http_url_is_refused_before_rauc_sees_it() {
    let (mut s, owner) = lock_with_owner();
    for source in ["/data/x.raucb", "file:///data/x.raucb", "https://a b"] {
        let r = s.app(
            Channel::Ble,
            owner,
            AppCommand::StartUpdate {
                source: source.into(),
                allow_older: false,
            },
        );
        assert!(
            matches!(
                r,
                Err(AppError::UpdateRefused(UpdateRefusal::BadSource { .. }))
            ),
            "{source}: {r:?}"
        );
    }
    assert!(update_cmds(&s).is_empty());
}

#[test]
fn a_lock_without_rauc_refuses_update_requests() {
    let mut config = crate::harness::config();
    config.update.enabled = false;
    let mut s = Sim::installed();
    s.engine = latchd::core::Engine::new(config, s.store.clone(), s.now());
    s.input(Input::PowerUp { set_held: false });
    s.input(Input::Door(DoorPosition::Closed));
    s.input(Input::Bolt(BoltPosition::Extended));
    let owner = s.owner();
    assert_eq!(
        s.app(
            Channel::Ble,
            owner,
            AppCommand::StartUpdate {
                source: URL.into(),
                allow_older: false
            }
        ),
        Err(AppError::UpdatesOff)
    );
}

/// Issue 20: an update waiting for a safe moment to install survives a
/// daemon restart: the store keeps it, and the next start has RAUC inspect
/// the bundle again (what the URL serves may have changed meanwhile), then
/// waits and installs as before.
#[test]
fn a_waiting_install_survives_a_restart_and_the_bundle_is_inspected_again() {
    let (mut s, owner) = lock_with_owner();
    s.input(Input::Door(DoorPosition::Open));
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    assert_eq!(
        s.store.pending_update.as_ref().map(|p| p.phase),
        Some(Phase::WaitingToInstall)
    );
    s.restart();
    assert_eq!(
        s.engine.status().update.map(|u| u.phase),
        Some(Phase::Inspecting)
    );
    assert_eq!(update_cmds(&s), vec![inspect_cmd(), inspect_cmd()]);
    report(&mut s, inspect("0.2.0"));
    // After a restart the battery has not reported yet: it waits.
    assert!(!update_cmds(&s).contains(&install_cmd()));
    s.input(power(80, false));
    assert_eq!(update_cmds(&s).last(), Some(&install_cmd()));
    assert_eq!(s.store.pending_update, None, "no longer waiting");
}

/// The bundle behind the URL became an older one while the lock was down:
/// the version rule refuses it on the second inspection.
#[test]
fn a_resumed_update_applies_the_version_rule_to_what_the_url_serves_now() {
    let (mut s, owner) = lock_with_owner();
    s.input(Input::Door(DoorPosition::Open));
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    s.restart();
    report(&mut s, inspect("0.0.9"));
    s.input(power(80, false));
    assert!(!update_cmds(&s).contains(&install_cmd()));
    assert!(all_events(&s).iter().any(|e| matches!(
        e.kind,
        EventKind::UpdateRefused {
            refusal: UpdateRefusal::NotNewer { .. }
        }
    )));
    assert_eq!(s.store.pending_update, None);
}

/// Installed, waiting to restart (door open), then the daemon restarts:
/// the lock waits for a safe moment again and then restarts into the new
/// slot, instead of forgetting the update with the other slot primary.
#[test]
fn a_waiting_restart_survives_a_restart_and_waits_for_a_safe_moment_again() {
    let (mut s, owner) = lock_with_owner();
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    s.input(Input::Door(DoorPosition::Open));
    report(&mut s, UpdateReport::Installed);
    assert_eq!(
        s.store.pending_update.as_ref().map(|p| p.phase),
        Some(Phase::WaitingToRestart)
    );
    s.restart();
    assert!(!update_cmds(&s).contains(&UpdateCmd::Restart));
    assert_eq!(
        s.engine.status().update.map(|u| u.phase),
        Some(Phase::WaitingToRestart)
    );
    s.input(power(80, false));
    assert_eq!(update_cmds(&s).last(), Some(&UpdateCmd::Restart));
    assert_eq!(s.store.pending_update, None);
}

/// A kept update from another running version is over (the board
/// restarted into the new slot, or the image changed): forgotten, and
/// nothing is asked of RAUC.
#[test]
fn a_kept_update_of_another_running_version_is_forgotten() {
    let (mut s, owner) = lock_with_owner();
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    s.input(Input::Door(DoorPosition::Open));
    report(&mut s, UpdateReport::Installed);
    let before = update_cmds(&s).len();
    if let Some(p) = s.store.pending_update.as_mut() {
        p.running = "0.0.1".into();
    }
    s.restart();
    s.input(power(80, false));
    assert_eq!(update_cmds(&s).len(), before);
    assert_eq!(s.engine.status().update, None);
    assert_eq!(s.store.pending_update, None);
}

/// Every prompt said since the start, in order.
fn all_prompts(s: &Sim) -> Vec<Prompt> {
    s.all
        .iter()
        .filter_map(|a| match a {
            Action::Prompt(p, _) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_lock_says_when_an_update_installs_and_when_it_restarts() {
    let (mut s, owner) = lock_with_owner();
    start(&mut s, owner);
    // RAUC only inspecting: nothing said yet.
    assert!(!all_prompts(&s).contains(&Prompt::UpdateInstalling));
    report(&mut s, inspect("0.2.0"));
    s.expect_prompt(Prompt::UpdateInstalling);
    report(&mut s, UpdateReport::Progress { percent: 50 });
    s.expect_no_prompt(Prompt::UpdateInstalling);
    report(&mut s, UpdateReport::Installed);
    s.expect_prompt(Prompt::UpdateRestarting);
    // Said before the restart is asked for: actions run in order.
    let said = s
        .last
        .iter()
        .position(|a| matches!(a, Action::Prompt(Prompt::UpdateRestarting, _)));
    let restart = s
        .last
        .iter()
        .position(|a| matches!(a, Action::Update(UpdateCmd::Restart)));
    assert!(said.is_some() && restart.is_some() && said < restart);
    assert!(!all_prompts(&s).contains(&Prompt::UpdateNotInstalled));
}

#[test]
fn the_update_prompts_wait_with_the_update_until_the_menu_closes() {
    let (mut s, owner) = lock_with_owner();
    start(&mut s, owner);
    s.enter_menu();
    report(&mut s, inspect("0.2.0"));
    assert!(!all_prompts(&s).contains(&Prompt::UpdateInstalling));
    s.press("↩↩");
    s.expect_prompt(Prompt::UpdateInstalling);
    s.enter_menu();
    report(&mut s, UpdateReport::Installed);
    assert!(!all_prompts(&s).contains(&Prompt::UpdateRestarting));
    s.press("↩↩");
    s.expect_prompt(Prompt::UpdateRestarting);
}

#[test]
fn a_refused_bundle_is_said_at_the_lock_but_never_into_a_menu() {
    let (mut s, owner) = lock_with_owner();
    // The version rule refuses an older bundle.
    start(&mut s, owner);
    report(&mut s, inspect("0.0.1"));
    s.expect_prompt(Prompt::UpdateNotInstalled);
    // RAUC refuses one while an administrator is in the menu: logged, not
    // said (it would break the menu's prompts).
    start(&mut s, owner);
    s.enter_menu();
    report(
        &mut s,
        UpdateReport::Failed {
            error: "signature verification failed".into(),
        },
    );
    s.expect_no_prompt(Prompt::UpdateNotInstalled);
    assert!(ever_logged(
        &s,
        &EventKind::UpdateFailed {
            phase: Phase::Inspecting,
            error: "signature verification failed".into()
        }
    ));
    // An install that fails on an idle lock is said.
    s.press("↩↩");
    start(&mut s, owner);
    report(&mut s, inspect("0.2.0"));
    report(
        &mut s,
        UpdateReport::Failed {
            error: "no space".into(),
        },
    );
    s.expect_prompt(Prompt::UpdateNotInstalled);
    assert!(!all_prompts(&s).contains(&Prompt::UpdateRestarting));
}
