//! The batches the crash tests write and the checks they make after a
//! crash: generation `gen` re-enrols user `gen % 999 + 1` with 1 to 5
//! credentials whose secrets derive from `gen`, so a half-stored batch or a
//! mix-up between batches shows. Used by `store_crash` here and, by
//! `#[path = "../it/common/crash_batches.rs"]`, by the VM crate's
//! `vm_power_cut`.
#![allow(dead_code)]

use latchd::core::event::{Event, EventKind};
use latchd::core::time::{Validity, WallTime};
use latchd::core::types::Persisted;
use latchd::core::types::{
    Change, Credential, CredentialId, CredentialKind, CredentialSecret, PasscodeMac, Role, User,
    UserNumber,
};
use latchd::store::{Store, StoreOptions};

/// The writer's counter: the newest generation fully written.
pub const COUNTER: &str = "crash.gen";
/// Small enough that the writer prunes the log in most rounds.
pub const MAX_EVENTS: usize = 40;

pub fn opts() -> StoreOptions {
    StoreOptions {
        max_events: MAX_EVENTS,
        ..StoreOptions::default()
    }
}

pub fn user_for(gen: u64) -> UserNumber {
    UserNumber::new((gen % 999 + 1) as u16).expect("1..=999")
}

pub fn role_for(gen: u64) -> Role {
    if gen.is_multiple_of(7) {
        Role::Admin
    } else {
        Role::User
    }
}

/// The credentials batch `gen` gives its user: 1 to 5, of every kind,
/// with secrets derived from `gen` so a mix-up between batches shows.
pub fn credentials_for(gen: u64) -> Vec<Credential> {
    let user = user_for(gen);
    let bytes = |len: usize| -> Vec<u8> {
        gen.to_le_bytes()
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()
    };
    let mac = || {
        let mut m = [0u8; 32];
        m.copy_from_slice(&bytes(32));
        PasscodeMac(m)
    };
    (0..=(gen % 5) as u32)
        .map(|j| {
            let (kind, secret) = match j {
                0 => (
                    CredentialKind::Face,
                    CredentialSecret::FaceTemplate {
                        slot: (gen % 50) as u16,
                        template: bytes(512),
                    },
                ),
                1 => (
                    CredentialKind::Fingerprint,
                    CredentialSecret::ModuleSlot(gen as u16),
                ),
                2 => (CredentialKind::Passcode, CredentialSecret::Passcode(mac())),
                3 => (
                    CredentialKind::Palm,
                    CredentialSecret::ModuleSlot((gen >> 3) as u16),
                ),
                _ => (
                    CredentialKind::DuressPasscode,
                    CredentialSecret::Passcode(mac()),
                ),
            };
            Credential {
                id: CredentialId(u32::from(user.get()) * 10 + j),
                user,
                kind,
                secret,
            }
        })
        .collect()
}

pub fn batch_for(gen: u64) -> Vec<Change> {
    let number = user_for(gen);
    let mut batch = vec![
        // Re-enrolling a number replaces the old user and all it held.
        Change::DeleteUser(number),
        Change::PutUser(User {
            number,
            role: role_for(gen),
            validity: Validity {
                from: Some(WallTime(gen as i64)),
                until: None,
            },
        }),
    ];
    batch.extend(credentials_for(gen).into_iter().map(Change::PutCredential));
    batch
}

/// One generation, as three commits: its batch, its event, the counter.
pub fn write_generation(store: &mut Store, gen: u64) {
    store
        .apply(&batch_for(gen))
        .expect("writer applies a batch");
    store
        .append_events(&[Event {
            at: None,
            mono_ms: gen,
            kind: EventKind::UserAdded {
                user: user_for(gen),
            },
        }])
        .expect("writer appends an event");
    store
        .put_counter(COUNTER, gen)
        .expect("writer stores its counter");
}

/// Every user holds exactly the credentials its batch carried, and no
/// credential is left without its user. Returns each user's generation.
#[track_caller]
pub fn assert_whole_batches(state: &Persisted, ctx: &str) -> Vec<u64> {
    let mut gens = Vec::new();
    for user in &state.users {
        let gen = user.validity.from.expect("writer sets a from-time").0 as u64;
        assert_eq!(user_for(gen), user.number, "{ctx}: user/gen mismatch");
        assert_eq!(user.role, role_for(gen), "{ctx}");
        let held: Vec<Credential> = state
            .credentials
            .iter()
            .filter(|c| c.user == user.number)
            .cloned()
            .collect();
        assert_eq!(
            held,
            credentials_for(gen),
            "{ctx}: user {} (batch {gen}) is half-stored",
            user.number
        );
        gens.push(gen);
    }
    let owned: usize = gens.iter().map(|g| credentials_for(*g).len()).sum();
    assert_eq!(state.credentials.len(), owned, "{ctx}: orphan credentials");
    gens
}
