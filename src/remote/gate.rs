//! Sans-IO check of one sealed command from the broker, and the sealed
//! reply. No network, no store: the caller passes the lock's key, the
//! stored app keys and the last accepted counter, and persists the new
//! counter *before* it acts on the command.
//!
//! ```text
//!  frame ─► oneshot_sender(frame) ─► key id ─► stored app key? ── no ──► Refused::UnknownKey
//!                                               │ yes
//!            open_oneshot(lock, app key, AppToLock, last counter)  ─ fails ─► Refused::Channel
//!                                               │ counter, plaintext
//!            envelope::split ─ no challenge ─► Verified, Refuse(Stale, sealed Stale error)
//!                            ─ not an envelope ─► Verified, Refuse(Malformed, sealed error)
//!            Challenges::check(challenge, now) ─ not live ─► Verified, Refuse(Stale, sealed Stale error)
//!            Request::decode ─ fails ─► Verified, Refuse(Malformed, sealed error)
//!            authorize(principal, request, wall clock) ─ fails ─► Refuse(Forbidden | OutsideValidity)
//!                                               ▼
//!            Verified { key, counter, outcome: Run(request) | Refuse { reason, response } }
//! ```
//!
//! Every refusal has an [`AppRefusal`] reason for the engine's event log
//! ([`Refused::reason`], [`Outcome::Refuse`]).
//!
//! The reply is sealed `LockToApp` with the *request's* counter: the
//! direction is part of the key, so the two never collide, and the app can
//! match the reply to its request (it accepts only the counter it sent).
use rand_core::CryptoRngCore;

use crate::app::authz::{authorize, AuthzError};
use crate::app::crypto::{KeyId, StaticKeypair};
use crate::app::protocol::{
    error_frame, oneshot_sender, open_oneshot, seal_oneshot, ChannelError, ErrorCode,
    OneShotDirection,
};
use crate::app::wire;
use crate::app::{Request, Response};
use crate::core::event::AppRefusal;
use crate::core::time::{Instant, WallTime};
use crate::core::types::AppKey;

use super::envelope::{self, EnvelopeError};
use super::freshness::{Challenges, Stale};

/// Why a frame was refused before anything could be answered sealed.
/// The broker only ever sees [`refusal_frame`], the same bytes for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no stored app key has id {0}; the key was revoked or never issued")]
    UnknownKey(KeyId),
    #[error("sealed command refused: {0}")]
    Channel(#[from] ChannelError),
}

impl Refused {
    /// The reason the engine logs (`app_refused`).
    pub fn reason(&self) -> AppRefusal {
        match self {
            Refused::UnknownKey(_) => AppRefusal::UnknownKey,
            Refused::Channel(e) => match e {
                // One-shot counters only move forward; anything not above
                // the stored one is a replay.
                ChannelError::Replay { .. } | ChannelError::OutOfOrder { .. } => AppRefusal::Replay,
                ChannelError::Malformed { .. }
                | ChannelError::UnsupportedVersion(_)
                | ChannelError::UnexpectedFrame(_)
                | ChannelError::TooLarge { .. } => AppRefusal::Malformed,
                // Failed authentication, a weak key and anything else a
                // well-formed frame can fail on: the seal did not hold.
                _ => AppRefusal::BadSeal,
            },
        }
    }
}

/// What to do with a command that verified.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answer it (`app::dispatch::answer`: the engine, the store, status).
    Run(Request),
    /// Verified but not acceptable (malformed, not allowed for this key):
    /// log `reason`, answer `response` sealed.
    Refuse {
        reason: AppRefusal,
        response: Response,
    },
}

/// A command that opened with a stored key.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The stored key it came with.
    pub key: AppKey,
    /// Its counter: persist it as the key's last accepted counter before
    /// acting; seal the reply with it.
    pub counter: u64,
    pub outcome: Outcome,
}

/// The key id of a stored app key.
pub fn key_id(key: &AppKey) -> KeyId {
    KeyId::of(&key.public_key)
}

/// Find the sender's stored key. Only the key id is read before the AEAD
/// check; nothing else of the frame is trusted yet.
pub fn sender_key<'a>(
    frame: &[u8],
    keys: impl IntoIterator<Item = &'a AppKey>,
) -> Result<&'a AppKey, Refused> {
    let id = oneshot_sender(frame)?;
    keys.into_iter()
        .find(|k| key_id(k) == id)
        .ok_or(Refused::UnknownKey(id))
}

/// When a frame is checked: the lock's clocks and its live challenges.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    /// Wall clock, for guest windows (`None`: unknown).
    pub wall: Option<WallTime>,
    /// Monotonic clock, for the challenge's age.
    pub mono: Instant,
    /// The challenges of this broker connection.
    pub challenges: &'a Challenges,
}

fn stale(why: Stale) -> Outcome {
    Outcome::Refuse {
        reason: AppRefusal::Stale,
        response: Response::error(ErrorCode::Stale, &why.to_string()),
    }
}

/// Verify and open `frame` from `key`, whose last accepted counter is
/// `last_counter`, check that it answers a live challenge, and run the
/// role check.
pub fn verify(
    lock: &StaticKeypair,
    key: &AppKey,
    last_counter: Option<u64>,
    frame: &[u8],
    at: At<'_>,
) -> Result<Verified, Refused> {
    let (counter, plaintext) = open_oneshot(
        lock,
        &key.public_key,
        OneShotDirection::AppToLock,
        last_counter,
        frame,
    )?;
    let outcome = match envelope::split(&plaintext) {
        Err(EnvelopeError::NoChallenge) => stale(Stale::Missing),
        Err(e) => Outcome::Refuse {
            reason: AppRefusal::Malformed,
            response: Response::error(ErrorCode::MalformedCommand, &e.to_string()),
        },
        Ok((challenge, request)) => match at.challenges.check(&challenge, at.mono) {
            Err(why) => stale(why),
            Ok(()) => decide(key, request, at.wall),
        },
    };
    Ok(Verified {
        key: key.clone(),
        counter,
        outcome,
    })
}

/// Decode and role-check a fresh request.
fn decide(key: &AppKey, request: &[u8], wall: Option<WallTime>) -> Outcome {
    match Request::decode(request) {
        Err(e) => Outcome::Refuse {
            reason: AppRefusal::Malformed,
            response: Response::error(e.code(), &e.to_string()),
        },
        Ok(request) => match authorize(&wire::principal(key), &request, wall) {
            Err(e) => Outcome::Refuse {
                reason: match e {
                    AuthzError::Forbidden(_) => AppRefusal::Forbidden,
                    // An unknown clock refuses time-limited keys: to the
                    // log it is the same as being outside the window.
                    AuthzError::NotYetValid { .. }
                    | AuthzError::Expired { .. }
                    | AuthzError::ClockUnknown => AppRefusal::OutsideValidity,
                },
                response: Response::error(e.code(), &e.to_string()),
            },
            Ok(()) => Outcome::Run(request),
        },
    }
}

/// Seal `response` for the key that sent request number `counter`.
pub fn seal_reply(
    lock: &StaticKeypair,
    key: &AppKey,
    counter: u64,
    response: &Response,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, ChannelError> {
    seal_oneshot(
        lock,
        &key.public_key,
        OneShotDirection::LockToApp,
        counter,
        &response.encode(),
        rng,
    )
}

/// What the broker sees for every refused frame: one unauthenticated error
/// byte, the same whether the key was unknown, the seal broken or the
/// counter replayed, so a prober learns nothing about which keys exist.
pub fn refusal_frame() -> Vec<u8> {
    error_frame(ErrorCode::Unauthenticated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::Validity;
    use crate::core::types::{AppKeyId, AppKeyRole, UserNumber};
    use crate::remote::freshness::{Challenge, DEFAULT_MAX_AGE};
    use rand_core::OsRng;

    /// Live challenges with one issued at 0 ms.
    fn live() -> (Challenges, Challenge) {
        let mut ch = Challenges::new(DEFAULT_MAX_AGE);
        let c = ch.reset(Instant::from_millis(0), &mut OsRng);
        (ch, c)
    }

    fn at(ch: &Challenges, wall: Option<WallTime>) -> At<'_> {
        At {
            wall,
            mono: Instant::from_millis(1000),
            challenges: ch,
        }
    }

    fn owner(app: &StaticKeypair) -> AppKey {
        AppKey {
            id: AppKeyId(1),
            role: AppKeyRole::Owner {
                admin: UserNumber::new(1).expect("1 is a user number"),
            },
            public_key: app.public(),
            validity: Validity::ALWAYS,
            label: "phone".into(),
        }
    }

    #[test]
    fn open_replay_tamper_and_unknown_key() {
        let lock = StaticKeypair::generate(&mut OsRng);
        let app = StaticKeypair::generate(&mut OsRng);
        let key = owner(&app);
        let keys = vec![key.clone()];
        let (ch, c) = live();
        let f = seal_oneshot(
            &app,
            &lock.public(),
            OneShotDirection::AppToLock,
            7,
            &envelope::encode(&c, &Request::Unlock),
            &mut OsRng,
        )
        .expect("seal");
        let k = sender_key(&f, &keys).expect("known");
        let v = verify(&lock, k, Some(6), &f, at(&ch, None)).expect("opens");
        assert_eq!(v.counter, 7);
        assert_eq!(v.outcome, Outcome::Run(Request::Unlock));
        // Replay of the same counter, and an older one.
        for last in [7, 8] {
            let e = verify(&lock, k, Some(last), &f, at(&ch, None)).expect_err("replay");
            assert_eq!(e.reason(), AppRefusal::Replay, "{e}");
        }
        // Any flipped byte after the key id.
        for i in 20..f.len() {
            let mut t = f.clone();
            t[i] ^= 1;
            let e = verify(&lock, k, Some(6), &t, at(&ch, None)).expect_err("tampered");
            assert!(
                matches!(e.reason(), AppRefusal::BadSeal | AppRefusal::Malformed),
                "byte {i}: {e}"
            );
        }
        // The AEAD tag (last byte) is the seal.
        let mut t = f.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        let e = verify(&lock, k, Some(6), &t, at(&ch, None)).expect_err("tampered");
        assert_eq!(e.reason(), AppRefusal::BadSeal);
        // Junk that is not a frame at all.
        let e = sender_key(b"open sesame", &keys).expect_err("junk");
        assert_eq!(e.reason(), AppRefusal::Malformed);
        // Another app's key.
        let other = StaticKeypair::generate(&mut OsRng);
        let g = seal_oneshot(
            &other,
            &lock.public(),
            OneShotDirection::AppToLock,
            1,
            &Request::Unlock.encode(),
            &mut OsRng,
        )
        .expect("seal");
        let e = sender_key(&g, &keys).expect_err("unknown");
        assert!(matches!(e, Refused::UnknownKey(_)));
        assert_eq!(e.reason(), AppRefusal::UnknownKey);
        // The reply opens for the app with the request's counter only.
        let r = seal_reply(&lock, &key, 7, &Response::Ok, &mut OsRng).expect("seal");
        let (ctr, pt) = open_oneshot(
            &app,
            &lock.public(),
            OneShotDirection::LockToApp,
            Some(6),
            &r,
        )
        .expect("reply opens");
        assert_eq!(
            (ctr, Response::decode(&pt).expect("decodes")),
            (7, Response::Ok)
        );
    }

    #[test]
    fn guest_reads_and_windows_are_refused_with_a_reason() {
        let lock = StaticKeypair::generate(&mut OsRng);
        let app = StaticKeypair::generate(&mut OsRng);
        let guest = AppKey {
            id: AppKeyId(2),
            role: AppKeyRole::Guest,
            public_key: app.public(),
            validity: Validity {
                from: Some(WallTime(100)),
                until: Some(WallTime(200)),
            },
            label: "guest".into(),
        };
        let (ch, c) = live();
        let sealed = |ctr: u64, r: &Request| {
            seal_oneshot(
                &app,
                &lock.public(),
                OneShotDirection::AppToLock,
                ctr,
                &envelope::encode(&c, r),
                &mut OsRng,
            )
            .expect("seal")
        };
        let cases = [
            (
                1,
                Request::ListUsers,
                Some(WallTime(150)),
                Some(AppRefusal::Forbidden),
            ),
            (
                2,
                Request::Unlock,
                Some(WallTime(250)),
                Some(AppRefusal::OutsideValidity),
            ),
            (3, Request::Unlock, None, Some(AppRefusal::OutsideValidity)),
            (4, Request::Unlock, Some(WallTime(150)), None),
        ];
        for (ctr, req, wall, want) in cases {
            let v = verify(
                &lock,
                &guest,
                Some(ctr - 1),
                &sealed(ctr, &req),
                at(&ch, wall),
            )
            .expect("opens");
            match (&v.outcome, want) {
                (Outcome::Refuse { reason, response }, Some(w)) => {
                    assert_eq!(*reason, w, "{req:?}");
                    assert!(matches!(response, Response::Error { .. }));
                }
                (Outcome::Run(r), None) => assert_eq!(r, &req),
                (other, _) => panic!("{req:?} at {wall:?}: {other:?}"),
            }
        }
        // A verified frame whose plaintext is not a command, or whose
        // envelope holds no command.
        for (ctr, plain) in [
            (9, vec![0xff, 0xff, 0xff]),
            (
                10,
                envelope::encode(&c, &Request::Unlock)[..envelope::HEADER_LEN].to_vec(),
            ),
        ] {
            let f = seal_oneshot(
                &app,
                &lock.public(),
                OneShotDirection::AppToLock,
                ctr,
                &plain,
                &mut OsRng,
            )
            .expect("seal");
            let v = verify(
                &lock,
                &guest,
                Some(ctr - 1),
                &f,
                at(&ch, Some(WallTime(150))),
            )
            .expect("opens");
            assert!(
                matches!(
                    v.outcome,
                    Outcome::Refuse {
                        reason: AppRefusal::Malformed,
                        ..
                    }
                ),
                "{plain:02x?}: {:?}",
                v.outcome
            );
        }
    }

    /// The broker sees every refusal as the one bare error frame the app
    /// recognises as "unauthenticated" (`remote::client` compares the
    /// bytes): it names no key, counter or reason, and an app that gets
    /// anything else waits out its timeout instead of reporting the
    /// refusal.
    #[test]
    fn a_refusal_is_one_bare_unauthenticated_error_frame() {
        let lock = StaticKeypair::generate(&mut OsRng);
        let app = StaticKeypair::generate(&mut OsRng);
        assert_eq!(
            open_oneshot(
                &app,
                &lock.public(),
                OneShotDirection::LockToApp,
                None,
                &refusal_frame(),
            ),
            Err(ChannelError::PeerError(ErrorCode::Unauthenticated))
        );
    }

    /// Issue 14 item 1: a command that verifies but answers no live
    /// challenge — none at all (an old app), one from before a reconnect,
    /// or one past the maximum age — is refused sealed with `Stale`, and
    /// the refusal is logged as `stale`. A fresh one runs.
    #[test]
    fn stale_commands_are_refused_sealed_with_their_own_code() {
        let lock = StaticKeypair::generate(&mut OsRng);
        let app = StaticKeypair::generate(&mut OsRng);
        let key = owner(&app);
        let mut ch = Challenges::new(DEFAULT_MAX_AGE);
        let old = ch.reset(Instant::from_millis(0), &mut OsRng);
        let seal = |ctr: u64, plain: &[u8]| {
            seal_oneshot(
                &app,
                &lock.public(),
                OneShotDirection::AppToLock,
                ctr,
                plain,
                &mut OsRng,
            )
            .expect("seal")
        };
        let check = |ch: &Challenges, f: &[u8], ctr: u64, mono_s: u64| {
            verify(
                &lock,
                &key,
                Some(ctr - 1),
                f,
                At {
                    wall: None,
                    mono: Instant::from_millis(mono_s * 1000),
                    challenges: ch,
                },
            )
            .expect("opens")
            .outcome
        };
        let is_stale = |o: &Outcome| {
            matches!(
                o,
                Outcome::Refuse {
                    reason: AppRefusal::Stale,
                    response: Response::Error {
                        code: ErrorCode::Stale,
                        ..
                    }
                }
            )
        };
        // No challenge: a bare request.
        let bare = seal(1, &Request::Unlock.encode());
        assert!(is_stale(&check(&ch, &bare, 1, 1)));
        // Fresh.
        let fresh = seal(2, &envelope::encode(&old, &Request::Unlock));
        assert_eq!(check(&ch, &fresh, 2, 1), Outcome::Run(Request::Unlock));
        // Past the maximum age.
        let late = DEFAULT_MAX_AGE.as_secs() + 1;
        let o = check(&ch, &fresh, 2, late);
        assert!(is_stale(&o), "{o:?}");
        // Held across a reconnect: refused however soon.
        ch.reset(Instant::from_millis(1000), &mut OsRng);
        let o = check(&ch, &fresh, 2, 1);
        assert!(is_stale(&o), "{o:?}");
        // A challenge the lock never issued.
        let made_up = seal(3, &envelope::encode(&Challenge([7; 16]), &Request::Unlock));
        assert!(is_stale(&check(&ch, &made_up, 3, 1)));
    }
}
