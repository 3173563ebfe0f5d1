//! Engine benchmarks.
//!
//! * `anti_peep/*`: verifying a 32-digit keypad input (125 windows, one
//!   HMAC-SHA256 each) against 50 stored codes — the worst case of B-6.4.
//! * `handle/mix`: `Engine::handle` throughput on a realistic input mix
//!   (wake, a code typed digit by digit, unlock, motor report, door open and
//!   close, lock button, a wrong code now and then, ticks).
//!
//! Run: `cargo bench --bench engine`.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use latchd::core::input::{BoltPosition, DoorPosition, MotorReport};
use latchd::core::passcode::{Macer, PasscodeIndex, PasscodeTarget};
use latchd::core::types::{
    Credential, CredentialId, CredentialKind, CredentialSecret, Handing, Key, Persisted, Role,
    TempPasscodeId, User, UserNumber,
};
use latchd::core::{Engine, EngineConfig, Input, Now, Validity};

const KEY: [u8; 32] = [9; 32];

fn fifty_codes() -> Vec<Vec<u8>> {
    (0..50u32)
        .map(|i| {
            format!("{:06}", 246_001 + i * 7919)
                .bytes()
                .map(|b| b - b'0')
                .collect()
        })
        .collect()
}

fn anti_peep(c: &mut Criterion) {
    let macer = Macer::new(&KEY);
    let mut idx = PasscodeIndex::default();
    for (i, code) in fifty_codes().iter().enumerate() {
        idx.insert(
            macer.mac(code),
            PasscodeTarget::Temp(TempPasscodeId(i as u32)),
        );
    }
    // No window matches: every one of the 125 windows is MACed and looked up.
    let miss: Vec<u8> = (0..32u8).map(|i| (i * 7 + 3) % 10).collect();
    let mut hit = vec![5u8; 26];
    hit.extend(&fifty_codes()[49]);
    let mut g = c.benchmark_group("anti_peep");
    g.bench_function("32_digits_50_codes_no_match", |b| {
        b.iter(|| idx.find(&macer, black_box(&miss)))
    });
    g.bench_function("32_digits_50_codes_match_at_end", |b| {
        b.iter(|| idx.find(&macer, black_box(&hit)))
    });
    g.finish();
}

fn engine() -> Engine {
    let macer = Macer::new(&KEY);
    let mut store = Persisted {
        handing: Some(Handing::RightHand),
        ..Persisted::default()
    };
    for (i, code) in fifty_codes().iter().enumerate() {
        let number = UserNumber::new(i as u16 + 1).expect("1..=50");
        store.users.push(User {
            number,
            role: if i == 0 { Role::Admin } else { Role::User },
            validity: Validity::ALWAYS,
        });
        store.credentials.push(Credential {
            id: CredentialId(i as u32 + 1),
            user: number,
            kind: CredentialKind::Passcode,
            secret: CredentialSecret::Passcode(macer.mac(code)),
        });
    }
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
    Engine::new(config, store, Now::new(0, Some(1_795_500_000)))
}

/// One visit: wake, type a padded code, unlock, motor, door, lock.
fn visit(code: &[u8], wrong: bool) -> Vec<Input> {
    let mut v = vec![Input::Touch];
    v.extend([3u8, 1].iter().map(|d| Input::Key(Key::Digit(*d))));
    let typed: Vec<u8> = if wrong {
        vec![9, 0, 9, 0, 9, 1]
    } else {
        code.to_vec()
    };
    v.extend(typed.iter().map(|d| Input::Key(Key::Digit(*d))));
    v.push(Input::Key(Key::Confirm));
    if !wrong {
        v.extend([
            Input::Motor(MotorReport::Done(BoltPosition::Retracted)),
            Input::Door(DoorPosition::Open),
            Input::Door(DoorPosition::Closed),
            Input::LockButton,
            Input::Motor(MotorReport::Done(BoltPosition::Extended)),
        ]);
    }
    v.push(Input::Tick);
    v
}

fn handle_mix(c: &mut Criterion) {
    let codes = fifty_codes();
    let inputs: Vec<Input> = (0..100)
        .flat_map(|i| visit(&codes[i % 50], i % 10 == 7))
        .collect();
    let mut g = c.benchmark_group("handle");
    g.throughput(Throughput::Elements(inputs.len() as u64));
    g.bench_function("mix", |b| {
        b.iter_batched(
            || {
                let mut e = engine();
                e.handle(Now::new(0, None), Input::PowerUp { set_held: false });
                e.handle(Now::new(0, None), Input::Door(DoorPosition::Closed));
                e.handle(Now::new(0, None), Input::Bolt(BoltPosition::Extended));
                e
            },
            |mut e| {
                let mut t = 1_000u64;
                for i in &inputs {
                    // 5 s between inputs: failures stay spread (no lockout).
                    t += 5_000;
                    black_box(e.handle(Now::new(t, Some(1_795_500_000)), i.clone()));
                }
                e
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, anti_peep, handle_mix);
criterion_main!(benches);
