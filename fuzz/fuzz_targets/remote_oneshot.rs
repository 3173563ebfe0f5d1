//! What a broker can put on the lock's MQTT topics: any bytes on the
//! command topic go through `remote::gate` (`oneshot_sender`, the sealed
//! one-shot `open_oneshot`, the envelope, the challenge check, the request
//! codec, the role check); any bytes on the challenge topic go through
//! `Challenge::from_hex` (the app's side).
//!
//! Invariants: nothing the fuzzer did not seal with the owner's key ever
//! verifies; a frame an app sealed verifies once, with its counter, and
//! never again (replay), nor with any byte flipped; a command runs only
//! when it answers the live challenge and its request decodes canonically.
#![no_main]

use latchd::app::crypto::StaticKeypair;
use latchd::app::protocol::{seal_oneshot, OneShotDirection};
use latchd::app::Request;
use latchd::core::event::AppRefusal;
use latchd::core::time::{Instant, Validity};
use latchd::core::types::{AppKey, AppKeyId, AppKeyRole, UserNumber};
use latchd::remote::envelope;
use latchd::remote::freshness::{Challenge, Challenges, DEFAULT_MAX_AGE};
use latchd::remote::gate::{self, At, Outcome};
use libfuzzer_sys::fuzz_target;
use rand_core::OsRng;

struct Fixture {
    lock: StaticKeypair,
    app: StaticKeypair,
    keys: Vec<AppKey>,
    challenges: Challenges,
    live: Challenge,
}

thread_local! {
    static FIX: Fixture = {
        let lock = StaticKeypair::from_secret_bytes([1; 32]);
        let app = StaticKeypair::from_secret_bytes([2; 32]);
        let keys = vec![AppKey {
            id: AppKeyId(1),
            role: AppKeyRole::Owner {
                admin: UserNumber::new(1).expect("1 is a user number"),
            },
            public_key: app.public(),
            validity: Validity::ALWAYS,
            label: "phone".into(),
        }];
        let mut challenges = Challenges::new(DEFAULT_MAX_AGE);
        let live = challenges.reset(Instant::from_millis(0), &mut OsRng);
        Fixture { lock, app, keys, challenges, live }
    };
}

fn at(f: &Fixture) -> At<'_> {
    At {
        wall: None,
        mono: Instant::from_millis(1_000),
        challenges: &f.challenges,
    }
}

fuzz_target!(|data: &[u8]| {
    // The challenge topic: a parsed challenge prints back as the payload.
    if let Some(c) = Challenge::from_hex(data) {
        let text = std::str::from_utf8(data).expect("parsed, so UTF-8").trim();
        assert_eq!(
            c.to_hex(),
            text.to_ascii_lowercase(),
            "challenge round trip"
        );
    }
    // A plaintext that splits is exactly header ‖ challenge ‖ request.
    if let Ok((c, req)) = envelope::split(data) {
        assert_eq!(data.len(), envelope::HEADER_LEN + req.len());
        assert_eq!(&data[2..envelope::HEADER_LEN], &c.0[..]);
    }
    FIX.with(|f| {
        // 1. Raw bytes from the broker: never verify.
        if let Ok(k) = gate::sender_key(data, &f.keys) {
            for last in [None, Some(0)] {
                assert!(
                    gate::verify(&f.lock, k, last, data, at(f)).is_err(),
                    "a frame nobody sealed verified"
                );
            }
        }
        // 2. The same bytes as the plaintext of a command the owner's app
        // sealed (answering the live challenge when the first byte says).
        let Some((&mode, body)) = data.split_first() else {
            return;
        };
        let plaintext = if mode & 1 == 1 {
            let mut p = vec![envelope::TAG, envelope::VERSION];
            p.extend_from_slice(&f.live.0);
            p.extend_from_slice(body);
            p
        } else {
            body.to_vec()
        };
        let counter = u64::from(mode >> 1) + 1;
        let Ok(frame) = seal_oneshot(
            &f.app,
            &f.lock.public(),
            OneShotDirection::AppToLock,
            counter,
            &plaintext,
            &mut OsRng,
        ) else {
            return; // too large to seal: the app refuses it itself
        };
        let key = gate::sender_key(&frame, &f.keys).expect("own key id");
        let v = gate::verify(&f.lock, key, Some(counter - 1), &frame, at(f))
            .expect("an honestly sealed frame verifies");
        assert_eq!(v.counter, counter);
        match (&v.outcome, envelope::split(&plaintext)) {
            (Outcome::Run(request), Ok((c, req))) => {
                assert_eq!(c, f.live, "ran a command that answers no live challenge");
                assert_eq!(Request::decode(req).as_ref(), Ok(request));
                assert_eq!(request.encode(), req, "request codec is canonical");
            }
            (Outcome::Run(_), Err(e)) => panic!("ran a command that is no envelope: {e}"),
            (Outcome::Refuse { reason, .. }, split) => {
                if split
                    .as_ref()
                    .is_ok_and(|(c, req)| *c == f.live && Request::decode(req).is_ok())
                {
                    // A decoded, fresh owner request is refused only by
                    // the role check.
                    assert!(
                        matches!(reason, AppRefusal::Forbidden | AppRefusal::OutsideValidity),
                        "fresh owner request refused as {reason:?}"
                    );
                }
            }
        }
        // Replays of it, and any flipped byte, are refused.
        for last in [counter, u64::MAX] {
            assert!(gate::verify(&f.lock, key, Some(last), &frame, at(f)).is_err());
        }
        let i = usize::from(mode) % frame.len();
        let mut t = frame.clone();
        t[i] ^= 0x80;
        if let Ok(k) = gate::sender_key(&t, &f.keys) {
            assert!(
                gate::verify(&f.lock, k, Some(counter - 1), &t, at(f)).is_err(),
                "a frame with byte {i} flipped verified"
            );
        }
    });
});
