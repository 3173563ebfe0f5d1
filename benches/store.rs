//! Store throughput on a real database file (synchronous=FULL, WAL).
//!
//! * `apply/enrolment_batch`: one user with a face template (512 bytes,
//!   sealed), a fingerprint slot and a passcode MAC (sealed) — what the
//!   engine persists when an administrator enrols someone.
//! * `append_events/1` and `/100`: one event per transaction (the normal
//!   case) and a burst of 100 in one.
//! * `load/50_users_150_credentials`: start-up load, unsealing included.
//!
//! Every commit is fsynced, so the figures are dominated by the storage
//! under the temp directory: run with `TMPDIR` on the device's real flash
//! to get numbers that mean anything for a product.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use latchd::core::event::{Event, EventKind};
use latchd::core::time::{Validity, WallTime};
use latchd::core::types::{
    Change, Credential, CredentialId, CredentialKind, CredentialSecret, Method, PasscodeMac, Role,
    User, UserNumber,
};
use latchd::store::{Store, StoreOptions};

fn enrolment(gen: u32) -> Vec<Change> {
    let number = UserNumber::new((gen % 999 + 1) as u16).expect("1..=999");
    let base = u32::from(number.get()) * 10;
    vec![
        Change::DeleteUser(number),
        Change::PutUser(User {
            number,
            role: Role::User,
            validity: Validity::ALWAYS,
        }),
        Change::PutCredential(Credential {
            id: CredentialId(base),
            user: number,
            kind: CredentialKind::Face,
            secret: CredentialSecret::FaceTemplate {
                slot: 0,
                template: vec![gen as u8; 512],
            },
        }),
        Change::PutCredential(Credential {
            id: CredentialId(base + 1),
            user: number,
            kind: CredentialKind::Fingerprint,
            secret: CredentialSecret::ModuleSlot(gen as u16),
        }),
        Change::PutCredential(Credential {
            id: CredentialId(base + 2),
            user: number,
            kind: CredentialKind::Passcode,
            secret: CredentialSecret::Passcode(PasscodeMac([gen as u8; 32])),
        }),
    ]
}

fn event(i: u64) -> Event {
    Event {
        at: Some(WallTime(1_700_000_000 + i as i64)),
        mono_ms: i,
        kind: EventKind::Unlocked {
            method: Method::Fingerprint,
            user: UserNumber::new(1),
        },
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut store, _key) = Store::open(dir.path(), StoreOptions::default()).expect("open");

    let mut gen = 0u32;
    c.bench_function("apply/enrolment_batch", |b| {
        b.iter_batched(
            || {
                gen = gen.wrapping_add(1);
                enrolment(gen)
            },
            |batch| store.apply(black_box(&batch)).expect("apply"),
            BatchSize::SmallInput,
        )
    });

    let mut group = c.benchmark_group("append_events");
    for n in [1u64, 100] {
        let batch: Vec<Event> = (0..n).map(event).collect();
        group.throughput(Throughput::Elements(n));
        group.bench_function(n.to_string(), |b| {
            b.iter(|| store.append_events(black_box(&batch)).expect("append"))
        });
    }
    group.finish();

    // Start-up load of a full lock: 50 users with 3 credentials each
    // (two of them sealed), in a database of its own.
    let full = tempfile::tempdir().expect("temp dir");
    let (mut full_store, _key) = Store::open(full.path(), StoreOptions::default()).expect("open");
    for g in 1..=50 {
        full_store.apply(&enrolment(g)).expect("enrol");
    }
    c.bench_function("load/50_users_150_credentials", |b| {
        b.iter(|| black_box(full_store.load().expect("load")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
