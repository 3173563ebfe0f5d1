//! Issue 17 item 4: the prompt language. An administrator chooses it in
//! the menu ("6"), the owner in the app; it is stored, survives a
//! restart, and a factory reset returns to the config's `[prompts]
//! language`. The engine says prompts as ids with the language in force;
//! the trace (what was said) is in that language.
use latchd::core::action::Trace;
use latchd::core::event::EventKind;
use latchd::core::types::{Change, Key, SettingChange};
use latchd::core::{Action, AppCommand, AppError, AppOk, Channel, Input, Language, Prompt};

use crate::harness::Sim;

/// The prompts of the last batch with the language each was said in.
fn said(s: &Sim) -> Vec<(Prompt, Language)> {
    s.last
        .iter()
        .filter_map(|a| match a {
            Action::Prompt(p, l) => Some((p.clone(), *l)),
            _ => None,
        })
        .collect()
}

fn traced(s: &Sim) -> Vec<String> {
    s.last
        .iter()
        .filter_map(|a| match a {
            Action::Trace(Trace::Prompt { text, .. }) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// A wrong passcode at the door: the failure prompt, in whatever language.
fn fail_once(s: &mut Sim) -> Vec<(Prompt, Language)> {
    s.input(Input::Touch);
    s.press("802468✓");
    said(s)
}

#[test]
fn menu_6_chooses_mandarin_stored_before_it_is_confirmed_in_mandarin() {
    let mut s = Sim::installed();
    assert_eq!(fail_once(&mut s), [(Prompt::VerifyFailed, Language::En)]);
    s.advance(30);
    s.enter_menu();
    assert!(s.lit().contains(&Key::Digit(6)), "{:?}", s.lit());
    s.press("6");
    // Each language is offered in its own words.
    assert_eq!(said(&s), [(Prompt::ChooseLanguage, Language::En)]);
    assert_eq!(traced(&s), ["For English, press 1. 中文請按2。"]);
    assert_eq!(s.lit(), [Key::Digit(1), Key::Digit(2), Key::Back]);
    assert_eq!(s.engine.status().step, "menu.language");
    s.press("2");
    let stored = s.expect_persist();
    assert!(matches!(
        stored.as_slice(),
        [Change::PutSettings(st)] if st.language == Some(Language::ZhTw)
    ));
    let persist = s.position(|a| matches!(a, Action::Persist(_)));
    let confirmed = s.position(|a| matches!(a, Action::Prompt(Prompt::LanguageSet, _)));
    assert!(
        persist < confirmed,
        "stored before it is confirmed (B-4.11)"
    );
    assert_eq!(said(&s), [(Prompt::LanguageSet, Language::ZhTw)]);
    assert_eq!(traced(&s), ["已切換為中文。"]);
    assert!(s.has_event(&EventKind::SettingChanged {
        change: SettingChange::Language(Language::ZhTw)
    }));
    assert_eq!(s.engine.status().step, "menu");
    assert_eq!(s.engine.status().language, Language::ZhTw);
    // Everything after it is said in Mandarin, user numbers digit by digit.
    s.press("2");
    assert_eq!(
        said(&s)[0],
        (Prompt::UserNumber(crate::harness::n(2)), Language::ZhTw)
    );
    assert_eq!(traced(&s)[0], "用戶編號 零 零 二。");
    s.press("↩↩");
    s.advance(30);
    assert_eq!(fail_once(&mut s), [(Prompt::VerifyFailed, Language::ZhTw)]);
    assert_eq!(traced(&s), ["驗證失敗。"]);
    // Stored: a restart keeps it.
    s.advance(30);
    s.restart();
    assert_eq!(s.engine.status().language, Language::ZhTw);
    assert_eq!(fail_once(&mut s), [(Prompt::VerifyFailed, Language::ZhTw)]);
}

#[test]
fn back_in_the_language_menu_changes_nothing() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("6");
    s.press("3"); // not lit: nothing
    assert!(said(&s).is_empty());
    assert_eq!(s.engine.status().step, "menu.language");
    s.press("↩");
    assert_eq!(said(&s), [(Prompt::MenuMain, Language::En)]);
    assert!(s.persisted().is_empty(), "{:?}", s.persisted());
    assert_eq!(s.store.settings.language, None);
    assert_eq!(s.engine.status().step, "menu");
}

#[test]
fn the_configured_language_holds_until_chosen_and_returns_after_a_factory_reset() {
    let mut s = Sim::installed();
    // `[prompts] language = "zh-TW"`: a lock whose owner never chose
    // follows the config.
    s.restart_with_default_language(Language::ZhTw);
    assert_eq!(s.store.settings.language, None);
    assert_eq!(s.engine.status().language, Language::ZhTw);
    assert_eq!(fail_once(&mut s), [(Prompt::VerifyFailed, Language::ZhTw)]);
    s.advance(30);
    // The owner chooses English in the app: stored, and it beats the
    // config across a restart.
    let owner = s.owner();
    assert_eq!(
        s.app(
            Channel::Remote,
            owner,
            AppCommand::Setting(SettingChange::Language(Language::En))
        ),
        Ok(AppOk::Done)
    );
    assert_eq!(s.store.settings.language, Some(Language::En));
    assert!(s.has_event(&EventKind::SettingChanged {
        change: SettingChange::Language(Language::En)
    }));
    s.restart();
    assert_eq!(s.engine.status().language, Language::En);
    assert_eq!(fail_once(&mut s), [(Prompt::VerifyFailed, Language::En)]);
    s.advance(30);
    // B-10.6: a factory reset erases the choice; the lock speaks the
    // config's language again, from the reset's own confirmation on.
    s.input(Input::PowerUp { set_held: true });
    s.press("✓");
    assert_eq!(s.store.settings.language, None);
    assert!(said(&s).contains(&(Prompt::FactoryResetDone, Language::ZhTw)));
    assert!(said(&s).contains(&(Prompt::ChooseDirection, Language::ZhTw)));
    assert_eq!(s.engine.status().language, Language::ZhTw);
}

#[test]
fn a_guest_cannot_change_the_language() {
    let mut s = Sim::installed();
    let guest = latchd::core::Principal::Guest {
        key: latchd::core::types::AppKeyId(9),
        validity: latchd::core::time::Validity::ALWAYS,
    };
    assert_eq!(
        s.app(
            Channel::Ble,
            guest,
            AppCommand::Setting(SettingChange::Language(Language::ZhTw))
        ),
        Err(AppError::Forbidden)
    );
    assert_eq!(s.store.settings.language, None);
    assert_eq!(s.engine.status().language, Language::En);
}

#[test]
fn muted_prompts_are_traced_in_the_chosen_language() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("62↩");
    s.advance(30);
    // B-3.4: hold "0" to mute; a failure is then only traced.
    s.input(Input::Touch);
    s.input(Input::KeyHeld(Key::Digit(0)));
    s.press("802468✓");
    assert!(said(&s).is_empty());
    assert_eq!(traced(&s), ["驗證失敗。"]);
}

/// B-4.10: "the lock speaks, in English, its serial number, firmware
/// version and verification code" — in English whatever the language.
#[test]
fn b4_10_system_information_stays_english_in_mandarin() {
    let mut s = Sim::installed();
    s.enter_menu();
    s.press("62");
    s.press("✓");
    let info = said(&s);
    assert!(
        matches!(info.as_slice(), [(Prompt::SystemInfo { .. }, Language::En)]),
        "{info:?}"
    );
    // ↩ back to the menu, whose prompt is Mandarin again.
    s.press("↩");
    assert_eq!(said(&s), [(Prompt::MenuMain, Language::ZhTw)]);
}
