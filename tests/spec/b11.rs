//! B-11 Privacy.
use latchd::core::types::{AppKeyRole, Change};
use latchd::core::{Action, AppCommand, Channel};

use crate::harness::{Sim, ADMIN_CODE};

#[test]
fn b11_2_passcodes_are_never_stored_or_logged_in_plain_text() {
    let mut s = Sim::installed();
    s.add_passcode_user("2", "802468");
    let owner = s.owner();
    s.add_temp_passcode(owner, "470258", crate::harness::a_day(), false);
    s.app(
        Channel::Ble,
        owner,
        AppCommand::SetDuressPasscode {
            user: crate::harness::n(2),
            digits: "975319".into(),
        },
    )
    .expect("duress");
    let store = serde_json::to_string(&s.store).expect("json");
    let everything: String = s
        .all
        .iter()
        .filter(|a| !matches!(a, Action::Reply { .. }))
        .map(|a| format!("{a:?} {}", serde_json::to_string(a).unwrap_or_default()))
        .collect();
    for code in [ADMIN_CODE, "802468", "470258", "975319"] {
        assert!(!store.contains(code), "{code} in the store image");
        assert!(!everything.contains(code), "{code} in an action");
        let digits: Vec<String> = code.chars().map(|c| c.to_string()).collect();
        assert!(!store.contains(&digits.join(",")), "{code} as a digit list");
    }
    // The persisted changes carry MACs only.
    assert!(s.all.iter().any(|a| matches!(a, Action::Persist(c)
        if c.iter().any(|c| matches!(c, Change::PutTempPasscode(_))))));
    assert!(s
        .store
        .app_keys
        .iter()
        .all(|k| matches!(k.role, AppKeyRole::Owner { .. } | AppKeyRole::Guest)));
}
