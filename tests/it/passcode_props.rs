//! Property tests for the passcode rules (B-2.3) and anti-peep (B-6.4),
//! on the index itself and through the whole engine.
use latchd::core::input::{BoltPosition, DoorPosition};
use latchd::core::passcode::{check_rules, Macer, PasscodeError, PasscodeIndex, PasscodeTarget};
use latchd::core::types::{
    Credential, CredentialId, CredentialKind, CredentialSecret, Handing, Key, Persisted, Role,
    TempPasscodeId, User, UserNumber,
};
use latchd::core::{Action, Engine, EngineConfig, EventKind, Input, Now, Validity};
use proptest::prelude::*;

const KEY: [u8; 32] = [0x42; 32];

fn is_run(d: &[u8]) -> bool {
    d.windows(2).all(|w| w[1] == w[0] + 1) || d.windows(2).all(|w| w[0] == w[1] + 1)
}

fn valid_code() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..10, 6..=10).prop_filter("B-2.3", |d| check_rules(d).is_ok())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn engine_with_code(code: &[u8]) -> (Engine, u64) {
    let macer = Macer::new(&KEY);
    let admin = UserNumber::new(1).expect("001");
    let store = Persisted {
        handing: Some(Handing::RightHand),
        users: vec![User {
            number: admin,
            role: Role::Admin,
            validity: Validity::ALWAYS,
        }],
        credentials: vec![Credential {
            id: CredentialId(1),
            user: admin,
            kind: CredentialKind::Passcode,
            secret: CredentialSecret::Passcode(macer.mac(code)),
        }],
        ..Persisted::default()
    };
    let config = EngineConfig {
        passcode_key: KEY,
        serial: "S".into(),
        firmware: "F".into(),
        pairing_codes: latchd::core::PairingCodes::new(|_| "V".into()),
        low_battery_percent: 20,
        matter_code: None,
        one_time_code_ttl: latchd::core::EngineConfig::DEFAULT_ONE_TIME_CODE_TTL,
        weak_wifi_dbm: latchd::core::wifi_signal::DEFAULT_WEAK_DBM,
        update: latchd::core::update::UpdatePolicy::default(),
        default_language: latchd::core::Language::En,
        time_zone: latchd::core::schedule::LocalZone::utc(),
    };
    let now = Now::new(0, None);
    let mut e = Engine::new(config, store, now);
    for i in [
        Input::PowerUp { set_held: false },
        Input::Door(DoorPosition::Closed),
        Input::Bolt(BoltPosition::Extended),
        Input::Touch,
    ] {
        e.handle(now, i);
    }
    (e, 1)
}

/// Type `input` then "✓"; true if the door was opened.
fn type_and_confirm(e: &mut Engine, t: &mut u64, input: &[u8]) -> bool {
    let mut out = Vec::new();
    for d in input.iter().copied().map(Key::Digit).chain([Key::Confirm]) {
        *t += 10;
        out.extend(e.handle(Now::new(*t, None), Input::Key(d)));
    }
    out.iter()
        .any(|a| matches!(a, Action::Log(ev) if matches!(ev.kind, EventKind::Unlocked { .. })))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rules_accept_exactly_the_b2_3_codes(d in prop::collection::vec(0u8..10, 0..14)) {
        let expect_ok = (6..=10).contains(&d.len())
            && !d.windows(2).all(|w| w[0] == w[1])
            && !is_run(&d);
        prop_assert_eq!(check_rules(&d).is_ok(), expect_ok);
        if d.len() < 6 || d.len() > 10 {
            prop_assert_eq!(check_rules(&d), Err(PasscodeError::Length(d.len())));
        }
    }

    #[test]
    fn all_same_and_runs_are_refused(start in 0u8..10, len in 6usize..=10, up in any::<bool>()) {
        let same = vec![start; len];
        prop_assert_eq!(check_rules(&same), Err(PasscodeError::AllSame));
        // A run has to fit in 0..=9.
        let run: Vec<u8> = if up {
            (0..len as u8).map(|i| i + (start % (11 - len as u8))).collect()
        } else {
            (0..len as u8).map(|i| 9 - i - (start % (11 - len as u8))).collect()
        };
        prop_assert_eq!(check_rules(&run), Err(PasscodeError::Consecutive));
    }

    #[test]
    fn any_padding_around_a_valid_code_opens(
        code in valid_code(),
        pre in prop::collection::vec(0u8..10, 0..16),
        post in prop::collection::vec(0u8..10, 0..16),
    ) {
        let macer = Macer::new(&KEY);
        let mut idx = PasscodeIndex::default();
        let target = PasscodeTarget::Temp(TempPasscodeId(1));
        idx.insert(macer.mac(&code), target);
        let input: Vec<u8> = pre.iter().chain(&code).chain(&post).copied().take(32).collect();
        prop_assume!(contains(&input, &code));
        prop_assert_eq!(idx.find(&macer, &input), Some(target));
    }

    #[test]
    fn no_input_without_a_stored_code_in_it_opens(
        codes in prop::collection::vec(valid_code(), 1..8),
        input in prop::collection::vec(0u8..10, 0..=32),
    ) {
        let macer = Macer::new(&KEY);
        let mut idx = PasscodeIndex::default();
        for (i, c) in codes.iter().enumerate() {
            idx.insert(macer.mac(c), PasscodeTarget::Temp(TempPasscodeId(i as u32)));
        }
        match idx.find(&macer, &input) {
            None => prop_assert!(codes.iter().all(|c| !contains(&input, c))),
            Some(PasscodeTarget::Temp(TempPasscodeId(i))) => {
                let hit = &codes[i as usize];
                prop_assert!(contains(&input, hit));
                // The longest matching code wins.
                prop_assert!(codes.iter().filter(|c| contains(&input, c)).all(|c| c.len() <= hit.len()));
            }
            Some(other) => prop_assert!(false, "unexpected target {:?}", other),
        }
    }

    #[test]
    fn the_engine_opens_for_padded_codes_and_nothing_else(
        code in valid_code(),
        // The keypad takes 16 digits (issue 13): up to 6 of padding.
        pre in prop::collection::vec(0u8..10, 0..4),
        post in prop::collection::vec(0u8..10, 0..4),
        noise in prop::collection::vec(0u8..10, 6..=16),
    ) {
        let (mut e, mut t) = engine_with_code(&code);
        let padded: Vec<u8> = pre.iter().chain(&code).chain(&post).copied().collect();
        prop_assert!(type_and_confirm(&mut e, &mut t, &padded));
        let opened = type_and_confirm(&mut e, &mut t, &noise);
        prop_assert_eq!(opened, contains(&noise, &code));
    }
}
