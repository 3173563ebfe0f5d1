//! B-5 Pairing with the app.
use latchd::core::input::SetPress;
use latchd::core::types::{AppKey, AppKeyId, AppKeyRole, Key};
use latchd::core::{
    AppCommand, AppError, AppOk, Channel, EventKind, Input, Principal, Prompt, Validity,
};

use crate::harness::{n, Sim};

fn new_key(role: AppKeyRole) -> AppKey {
    AppKey {
        id: AppKeyId(0),
        role,
        public_key: [3; 32],
        validity: Validity::ALWAYS,
        label: "phone".into(),
    }
}

#[test]
fn b5_1_holding_set_enters_pairing_mode_and_zero_flashes() {
    let mut s = Sim::installed();
    s.input(Input::Set(SetPress::Long));
    s.expect_prompt(Prompt::PairingMode);
    assert!(s.has_event(&EventKind::PairingMode { active: true }));
    let st = s.engine.status();
    assert!(st.pairing_mode);
    assert_eq!(st.keypad.flashing, vec![Key::Digit(0)]);
}

#[test]
fn b5_1_pairing_binds_the_owner_key_to_the_lowest_admin() {
    let mut s = Sim::installed();
    s.add_passcode_user("1", "802468");
    // Outside pairing mode the pairing principal may do nothing.
    let r = s.app(
        Channel::Ble,
        Principal::Pairing,
        AppCommand::AddAppKey(new_key(AppKeyRole::Owner { admin: n(2) })),
    );
    assert_eq!(r, Err(AppError::Forbidden));
    s.input(Input::Set(SetPress::Long));
    // Not even in pairing mode may it unlock or add a guest key.
    assert_eq!(
        s.app(Channel::Ble, Principal::Pairing, AppCommand::Unlock),
        Err(AppError::Forbidden)
    );
    assert_eq!(
        s.app(
            Channel::Ble,
            Principal::Pairing,
            AppCommand::AddAppKey(new_key(AppKeyRole::Guest))
        ),
        Err(AppError::Forbidden)
    );
    let r = s.app(
        Channel::Ble,
        Principal::Pairing,
        AppCommand::AddAppKey(new_key(AppKeyRole::Owner { admin: n(2) })),
    );
    let Ok(AppOk::AppKeyAdded(id)) = r else {
        panic!("{r:?}")
    };
    let stored = s
        .store
        .app_keys
        .iter()
        .find(|k| k.id == id)
        .expect("stored");
    assert_eq!(stored.role, AppKeyRole::Owner { admin: n(1) });
    // The binding ends the pairing window.
    assert!(!s.engine.status().pairing_mode);
    // The new owner key works.
    let owner = Principal::Owner {
        key: id,
        admin: n(1),
    };
    assert_eq!(
        s.app(Channel::Ble, owner, AppCommand::Unlock),
        Ok(AppOk::Done)
    );
}

#[test]
fn b5_1_pairing_without_an_administrator_is_refused() {
    let mut s = Sim::new();
    s.press("✓1");
    s.input(Input::Set(SetPress::Long));
    let r = s.app(
        Channel::Ble,
        Principal::Pairing,
        AppCommand::AddAppKey(new_key(AppKeyRole::Owner { admin: n(1) })),
    );
    assert_eq!(r, Err(AppError::NoAdmin));
    assert!(s.store.app_keys.is_empty());
}

#[test]
fn b5_2_pairing_mode_ends_by_itself_after_three_minutes() {
    let mut s = Sim::installed();
    s.input(Input::Set(SetPress::Long));
    s.advance(179);
    assert!(s.engine.status().pairing_mode);
    s.advance(1);
    s.expect_prompt(Prompt::PairingEnded);
    assert!(!s.engine.status().pairing_mode);
    assert!(s.keypad().flashing.is_empty());
}

/// B-5.1 with Improv's "identify": an installer's phone asks which lock it
/// is talking to; the lock says so and flashes "0". The standard lets any
/// client ask without authorisation, so a nearby stranger could make the
/// lock talk: it answers at most once per `IDENTIFY_GAP`, and only when
/// idle (never over a menu or an enrolment).
#[test]
fn b5_1_improv_identify_speaks_and_flashes_but_not_on_demand() {
    use latchd::core::{IDENTIFY_FLASH, IDENTIFY_GAP};
    let mut s = Sim::installed();
    s.input(Input::Identify);
    s.expect_prompt(Prompt::Identify);
    assert_eq!(s.engine.status().keypad.flashing, vec![Key::Digit(0)]);
    s.advance_ms(IDENTIFY_FLASH.as_millis() as u64);
    assert!(s.engine.status().keypad.flashing.is_empty());

    // Asked again at once: nothing.
    s.input(Input::Identify);
    assert!(s.prompts().is_empty(), "{:?}", s.prompts());
    s.advance_ms(IDENTIFY_GAP.as_millis() as u64);
    s.input(Input::Identify);
    s.expect_prompt(Prompt::Identify);

    // Not over the admin menu.
    s.advance_ms(IDENTIFY_GAP.as_millis() as u64);
    s.enter_menu();
    s.input(Input::Identify);
    assert!(s.prompts().is_empty(), "{:?}", s.prompts());
    assert_eq!(s.engine.status().step, "menu");
}
