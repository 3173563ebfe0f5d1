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
//!            Request::decode ─ fails ─► Verified, answered with a sealed error
//!            authorize(principal, request, wall clock) ─ fails ─► sealed error
//!                                               ▼
//!            Verified { key, counter, outcome: Run(request) | Answer(error) }
//! ```
//!
//! The reply is sealed `LockToApp` with the *request's* counter: the
//! direction is part of the key, so the two never collide, and the app can
//! match the reply to its request (it accepts only the counter it sent).
use rand_core::CryptoRngCore;

use crate::ble::commands::{authorize, Principal as BlePrincipal, Request, Response};
use crate::ble::crypto::{KeyId, StaticKeypair};
use crate::ble::protocol::{
    error_frame, oneshot_sender, open_oneshot, seal_oneshot, ChannelError, ErrorCode,
    OneShotDirection,
};
use crate::core::time::{Validity, WallTime};
use crate::core::types::{AppKey, AppKeyRole};
use crate::core::{AppError, AppOk, AppResult};

/// Why a frame was refused before anything could be answered sealed.
/// The broker only ever sees [`refusal_frame`], the same bytes for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no stored app key has id {0}; the key was revoked or never issued")]
    UnknownKey(KeyId),
    #[error("sealed command refused: {0}")]
    Channel(#[from] ChannelError),
}

/// What to do with a command that verified.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Hand it to the engine (or answer it from the status, for queries).
    Run(Request),
    /// Verified but not acceptable (malformed, not allowed): answer this.
    Answer(Response),
}

/// A command that opened with a stored key.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The stored key it came with.
    pub key: AppKey,
    /// Its counter: persist it as the key's last accepted counter before
    /// acting; seal the reply with it.
    pub counter: u64,
    /// The ble-level principal (for the role check already made).
    pub principal: BlePrincipal,
    pub outcome: Outcome,
}

/// The key id of a stored app key.
pub fn key_id(key: &AppKey) -> KeyId {
    KeyId::of(&key.public_key)
}

/// The principal a stored key speaks for (unbounded validity ends become
/// the widest times, which the role check treats as always valid).
pub fn principal_of(key: &AppKey) -> BlePrincipal {
    match key.role {
        AppKeyRole::Owner { admin } => BlePrincipal::Owner {
            key_id: key_id(key),
            admin_user: admin.get(),
        },
        AppKeyRole::Guest => BlePrincipal::Guest {
            key_id: key_id(key),
            valid_from: key.validity.from.unwrap_or(WallTime(i64::MIN)),
            valid_until: key.validity.until.unwrap_or(WallTime(i64::MAX)),
        },
    }
}

/// The engine's principal for a stored key.
pub fn core_principal(key: &AppKey) -> crate::core::input::Principal {
    match key.role {
        AppKeyRole::Owner { admin } => crate::core::input::Principal::Owner { key: key.id, admin },
        AppKeyRole::Guest => crate::core::input::Principal::Guest {
            key: key.id,
            validity: Validity {
                from: key.validity.from,
                until: key.validity.until,
            },
        },
    }
}

/// Find the sender's stored key. Only the key id is read before the AEAD
/// check; nothing else of the frame is trusted yet.
pub fn sender_key<'a>(frame: &[u8], keys: &'a [AppKey]) -> Result<&'a AppKey, Refused> {
    let id = oneshot_sender(frame)?;
    keys.iter()
        .find(|k| key_id(k) == id)
        .ok_or(Refused::UnknownKey(id))
}

/// Verify and open `frame` from `key`, whose last accepted counter is
/// `last_counter`, and run the role check at `wall`.
pub fn verify(
    lock: &StaticKeypair,
    key: &AppKey,
    last_counter: Option<u64>,
    frame: &[u8],
    wall: Option<WallTime>,
) -> Result<Verified, Refused> {
    let (counter, plaintext) = open_oneshot(
        lock,
        &key.public_key,
        OneShotDirection::AppToLock,
        last_counter,
        frame,
    )?;
    let principal = principal_of(key);
    let outcome = match Request::decode(&plaintext) {
        Err(e) => Outcome::Answer(Response::error(e.code(), &e.to_string())),
        Ok(request) => match authorize(&principal, &request, wall) {
            Err(e) => Outcome::Answer(Response::error(e.code(), &e.to_string())),
            Ok(()) => Outcome::Run(request),
        },
    };
    Ok(Verified {
        key: key.clone(),
        counter,
        principal,
        outcome,
    })
}

/// The engine's answer as a wire response.
pub fn response_of(result: &AppResult) -> Response {
    match result {
        Ok(AppOk::Done) | Ok(AppOk::AppKeyAdded(_)) | Ok(AppOk::GuestInviteCreated(_)) => Response::Ok,
        Ok(AppOk::UserAdded(n)) => Response::UserAdded { user: n.get() },
        Ok(AppOk::TempPasscodeAdded(id)) => Response::PasscodeCreated {
            id: u16::try_from(id.0).unwrap_or(u16::MAX),
        },
        Err(e) => {
            let code = match e {
                AppError::Forbidden => ErrorCode::Forbidden,
                AppError::OutsideValidity => ErrorCode::OutsideValidity,
                _ => ErrorCode::Refused,
            };
            Response::error(code, &e.to_string())
        }
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
    use crate::core::types::{AppKeyId, UserNumber};
    use rand_core::OsRng;

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
        let f = seal_oneshot(
            &app,
            &lock.public(),
            OneShotDirection::AppToLock,
            7,
            &Request::Unlock.encode(),
            &mut OsRng,
        )
        .expect("seal");
        let k = sender_key(&f, &keys).expect("known");
        let v = verify(&lock, k, Some(6), &f, None).expect("opens");
        assert_eq!(v.counter, 7);
        assert_eq!(v.outcome, Outcome::Run(Request::Unlock));
        // Replay of the same counter.
        assert!(matches!(
            verify(&lock, k, Some(7), &f, None),
            Err(Refused::Channel(ChannelError::Replay { .. }))
        ));
        // Any flipped byte after the key id.
        for i in 20..f.len() {
            let mut t = f.clone();
            t[i] ^= 1;
            assert!(verify(&lock, k, Some(6), &t, None).is_err(), "byte {i}");
        }
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
        assert!(matches!(sender_key(&g, &keys), Err(Refused::UnknownKey(_))));
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
}
