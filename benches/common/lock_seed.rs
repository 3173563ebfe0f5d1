//! The store a performance bench starts from: a finished first start
//! (door direction) with administrator 001 and users 002…`users`, each
//! holding one passcode, and optionally one face template, one fingerprint
//! and one palm (the lock's capacity is 50 of each kind, so 50 users give
//! 200 credentials). Written the way the engine persists them, before the
//! daemon opens the store. Benches include it with
//! `#[path = "common/lock_seed.rs"] mod lock_seed;`.
#![allow(dead_code)]

use std::path::Path;

#[cfg(feature = "face")]
use latchd::biometrics::face::{Embedding, FaceTemplate, EMBEDDING_DIM};
use latchd::core::passcode::{Macer, Passcode};
use latchd::core::time::Validity;
use latchd::core::types::{
    Change, Credential, CredentialId, CredentialKind, CredentialSecret, Handing, Role, User,
    UserNumber,
};
use latchd::store::{Store, StoreOptions};

/// The administrator's code (user 001).
pub const ADMIN_CODE: &str = "135792";

/// User `n`'s passcode (six digits, distinct for n in 1..=50; 001 is
/// [`ADMIN_CODE`]).
pub fn code_of(n: u16) -> String {
    if n == 1 {
        ADMIN_CODE.to_string()
    } else {
        format!("{:06}", 246_001 + u32::from(n) * 7919)
    }
}

/// A unit-length embedding that is no one's face (deterministic).
#[cfg(feature = "face")]
fn synthetic_embedding(seed: u16) -> Embedding {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).max(1);
    let raw: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|_| {
            // xorshift32: spread values, no zero vector.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) - 0.5
        })
        .collect();
    Embedding::from_raw(&raw).expect("a finite, non-zero embedding")
}

/// Seed `state` (created if missing) with `users` users (1..=50), user 001
/// the administrator. `biometrics`: also a face template, a fingerprint
/// and a palm per user (module slots `n − 1`).
pub fn seed_lock(state: &Path, users: u16, biometrics: bool) {
    assert!((1..=50).contains(&users), "the lock holds 50 passcodes");
    latchd::daemon::create_state_dir(state).expect("state dir");
    let (mut store, key) = Store::open(state, StoreOptions::default()).expect("store");
    let macer = Macer::new(&key.passcode_key());
    let mut changes = vec![Change::SetHanding(Handing::RightHand)];
    let mut id = 0u32;
    let mut next_id = || {
        id += 1;
        CredentialId(id)
    };
    for n in 1..=users {
        let number = UserNumber::new(n).expect("user number");
        changes.push(Change::PutUser(User {
            number,
            role: if n == 1 { Role::Admin } else { Role::User },
            validity: Validity::ALWAYS,
        }));
        let code = Passcode::parse(&code_of(n)).expect("code");
        changes.push(Change::PutCredential(Credential {
            id: next_id(),
            user: number,
            kind: CredentialKind::Passcode,
            secret: CredentialSecret::Passcode(macer.mac(code.digits())),
        }));
        if biometrics {
            changes.extend(biometrics_of(number, next_id(), next_id(), next_id()));
        }
    }
    store.apply(&changes).expect("seed");
}

/// User `number`'s face template, fingerprint and palm (module slots
/// `number − 1`).
#[cfg(feature = "face")]
fn biometrics_of(
    number: UserNumber,
    face: CredentialId,
    finger: CredentialId,
    palm: CredentialId,
) -> Vec<Change> {
    let slot = number.get() - 1;
    let template = FaceTemplate::new(vec![synthetic_embedding(number.get())])
        .expect("template")
        .to_bytes();
    [
        (
            face,
            CredentialKind::Face,
            CredentialSecret::FaceTemplate { slot, template },
        ),
        (
            finger,
            CredentialKind::Fingerprint,
            CredentialSecret::ModuleSlot(slot),
        ),
        (
            palm,
            CredentialKind::Palm,
            CredentialSecret::ModuleSlot(slot),
        ),
    ]
    .into_iter()
    .map(|(id, kind, secret)| {
        Change::PutCredential(Credential {
            id,
            user: number,
            kind,
            secret,
        })
    })
    .collect()
}

#[cfg(not(feature = "face"))]
fn biometrics_of(_: UserNumber, _: CredentialId, _: CredentialId, _: CredentialId) -> Vec<Change> {
    panic!("face templates need the `face` feature")
}
