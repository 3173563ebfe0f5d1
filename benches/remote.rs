//! CPU and byte cost of the remote path.
//!
//! `cargo bench --bench remote` prints the sizes first (sealed unlock on
//! the `cmd` topic, sealed `Ok` reply, the refusal frame, one event
//! document and its sealed frame per owner key), then criterion timings for
//! the lock's side of one command (find the key among 50, open, check the
//! challenge, decode, role check, seal the reply), for building one event
//! document, for sealing one event to one owner key, and for the rate
//! limit's decision on a frame during a flood (what a dropped frame costs).
//! Network figures (reconnect time, events/s through a real broker) come
//! from `cargo test --all-features --test it remote_mqtt:: -- --nocapture`
//! (line `figures:`).
use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use latchd::app::crypto::StaticKeypair;
use latchd::app::protocol::{seal_oneshot, OneShotDirection};
use latchd::app::{Request, Response};
use latchd::core::event::{Event, EventKind};
use latchd::core::time::Instant;
use latchd::core::time::Validity;
use latchd::core::types::Method;
use latchd::core::types::{AppKey, AppKeyId, AppKeyRole, UserNumber};
use latchd::dbus::EventRecord;
use latchd::link::limit::{Decision, RefusalLimiter};
use latchd::remote::freshness::{Challenges, DEFAULT_MAX_AGE};
use latchd::remote::owner_events::{self, Sealed};
use latchd::remote::{envelope, gate, telemetry};
use rand_core::OsRng;

fn keys(n: u32) -> (Vec<AppKey>, StaticKeypair) {
    let admin = UserNumber::new(1).expect("user 1");
    let mut out = Vec::new();
    let mut last = None;
    for id in 1..=n {
        let app = StaticKeypair::generate(&mut OsRng);
        out.push(AppKey {
            id: AppKeyId(id),
            role: AppKeyRole::Owner { admin },
            public_key: app.public(),
            validity: Validity::ALWAYS,
            label: String::new(),
        });
        last = Some(app);
    }
    (out, last.expect("n > 0"))
}

fn main() {
    let lock = StaticKeypair::generate(&mut OsRng);
    let (keys, app) = keys(50);
    let key = keys.last().expect("key").clone();
    let mut challenges = Challenges::new(DEFAULT_MAX_AGE);
    let challenge = challenges.reset(Instant::from_millis(0), &mut OsRng);
    let cmd = seal_oneshot(
        &app,
        &lock.public(),
        OneShotDirection::AppToLock,
        1,
        &envelope::encode(&challenge, &Request::Unlock),
        &mut OsRng,
    )
    .expect("seal");
    let reply = gate::seal_reply(&lock, &key, 1, &Response::Ok, &mut OsRng).expect("seal");
    let event = EventRecord {
        id: 123_456,
        time: 1_764_140_000,
        kind: "unlocked".into(),
        detail: "user=2 method=fingerprint".into(),
    };
    let event_doc = telemetry::event_json(&event).to_string();
    println!("sealed unlock on cmd: {} B", cmd.len());
    println!("sealed Ok reply: {} B", reply.len());
    println!("refusal frame: {} B", gate::refusal_frame().len());
    println!("event document (typical unlock): {} B", event_doc.len());
    let unlock = Event {
        at: Some(latchd::core::time::WallTime(1_764_140_000)),
        mono_ms: 0,
        kind: EventKind::Unlocked {
            method: Method::Face,
            user: UserNumber::new(2),
        },
    };
    let seal_one = || match owner_events::seal(&lock, &keys[..1], 123_456, &unlock, &mut OsRng) {
        Sealed::Frames(f) => f,
        other => panic!("{other:?}"),
    };
    println!(
        "sealed event frame (any kind, per owner key): {} B",
        seal_one()[0].len()
    );

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    c.bench_function("lock side of one remote command (50 keys)", |b| {
        b.iter(|| {
            let k = gate::sender_key(black_box(&cmd), &keys).expect("known");
            let at = gate::At {
                wall: None,
                mono: Instant::from_millis(1000),
                challenges: &challenges,
            };
            let v = gate::verify(&lock, k, Some(0), &cmd, at).expect("opens");
            gate::seal_reply(&lock, k, v.counter, &Response::Ok, &mut OsRng).expect("seal")
        })
    });
    c.bench_function("event document", |b| {
        b.iter(|| telemetry::event_json(black_box(&event)).to_string())
    });
    c.bench_function("seal one event to one owner key", |b| b.iter(seal_one));
    c.bench_function("rate-limited frame (limiter decision, flood)", |b| {
        let mut limiter = RefusalLimiter::new(Instant::from_millis(0));
        // Empty the bucket: from here every frame at the same instant is
        // dropped.
        while let Decision::Check { .. } = limiter.before(Instant::from_millis(0)) {
            limiter.refused(Instant::from_millis(0));
        }
        b.iter(|| limiter.before(black_box(Instant::from_millis(0))))
    });
    c.bench_function("junk frame refused at the header (no store read)", |b| {
        b.iter(|| latchd::app::protocol::oneshot_sender(black_box(b"junk 123")).is_err())
    });
    c.final_summary();
}
