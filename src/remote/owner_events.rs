//! Logged events for the owners only (issue 14 item 2): each event of the
//! log leaves the lock sealed to every owner key, so the broker no longer
//! learns who unlocked, how and when.
//!
//! ```text
//!  event (log id N) ─ telemetry::public_event (B-6.9: duress reads as passcode)
//!    ─ event_record → {"id": N, "time", "kind", "detail"}          the document the clear topic used to carry
//!    ─ plaintext  'E' (0x45) ‖ version 1 ‖ doc length (u16 BE) ‖ doc ‖ zeros to a multiple of 256 bytes
//!    ─ for each owner key K: seal_oneshot(lock key, K, LockToApp, counter = N, plaintext) ─► <prefix>/<serial>/events
//!
//!  app: open_oneshot(own key, lock public, LockToApp, last id seen) ─ tag, version, length ─ doc.id == counter?
//! ```
//!
//! The frame counter is the event's log id: it only grows, it is already
//! persisted (the log), so the lock writes nothing per frame, and an app
//! refuses any frame at or below the last id it accepted — a repeat after
//! a reconnect (QoS 1 is at least once) or a replay by the broker. The
//! document inside names the same id, checked on opening, so a frame
//! cannot be passed off under another counter. Another key's frame, a
//! guest key, and every other sealed message (a reply, a notice: their
//! plaintexts do not start with the tag) do not open as an event.
//!
//! What the broker still sees (`docs/remote.md`): that an event was
//! logged and when it went out, its log id (the frame counter) and one
//! frame per owner key — not its kind, user or time. The padding makes an
//! unlock the same size as a door event.
use rand_core::CryptoRngCore;
use serde_json::Value;

use super::telemetry;
use crate::app::crypto::StaticKeypair;
use crate::app::protocol::{open_oneshot, seal_oneshot, ChannelError, OneShotDirection};
use crate::core::event::Event;
use crate::core::types::AppKey;
use crate::link::event_record;

/// First byte of a sealed event's plaintext.
pub const TAG: u8 = 0x45;
/// Plaintext format version.
pub const VERSION: u8 = 1;
/// Plaintexts are padded to a multiple of this, so the frame's length
/// does not tell an unlock from a door event.
pub const PAD: usize = 256;
/// Tag, version, length.
const HEADER_LEN: usize = 4;

/// What to publish for one logged event.
#[derive(Debug)]
pub enum Sealed {
    /// No owner key to seal it to: nothing goes out, in clear or sealed,
    /// and the event cursor stays before it until an owner pairs.
    Wait,
    /// Nothing to send for it (B-6.9 keeps the duress alarm off every
    /// published surface, or its document cannot be sealed): the cursor
    /// moves past it.
    Skip,
    /// One frame per owner key, in the order of the keys given.
    Frames(Vec<Vec<u8>>),
}

/// A frame on the events topic that does not open as an event for us.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another key's frame, a bad seal, or a counter at or below the last
    /// one accepted (a repeat or a replay).
    #[error("{0}")]
    Channel(#[from] ChannelError),
    #[error("sealed event format version {0} is not supported (this app reads {VERSION}); update the app")]
    UnsupportedVersion(u8),
    #[error("the sealed message is not an event document")]
    Malformed,
    #[error("the event document names id {doc} but was sealed under counter {counter}")]
    IdMismatch { doc: u64, counter: u64 },
}

/// The padded plaintext of one event document.
pub fn encode(doc: &Value) -> Option<Vec<u8>> {
    let body = doc.to_string().into_bytes();
    let len = u16::try_from(body.len()).ok()?;
    let used = HEADER_LEN + body.len();
    let mut out = Vec::with_capacity(used.div_ceil(PAD) * PAD);
    out.extend_from_slice(&[TAG, VERSION]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    out.resize(used.div_ceil(PAD) * PAD, 0);
    Some(out)
}

/// The document of a plaintext made by [`encode`].
pub fn decode(plaintext: &[u8]) -> Result<Value, OpenError> {
    match plaintext {
        [TAG, VERSION, hi, lo, rest @ ..] => {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            let body = rest.get(..len).ok_or(OpenError::Malformed)?;
            serde_json::from_slice(body).map_err(|_| OpenError::Malformed)
        }
        [TAG, v, ..] => Err(OpenError::UnsupportedVersion(*v)),
        _ => Err(OpenError::Malformed),
    }
}

/// Seal logged event `id` to each of `owners` (the owner keys valid now).
pub fn seal(
    lock_key: &StaticKeypair,
    owners: &[AppKey],
    id: u64,
    event: &Event,
    rng: &mut impl CryptoRngCore,
) -> Sealed {
    if owners.is_empty() {
        return Sealed::Wait;
    }
    let Some(public) = telemetry::public_event(event) else {
        return Sealed::Skip;
    };
    let doc = telemetry::event_json(&event_record(id, &public));
    let Some(plaintext) = encode(&doc) else {
        tracing::error!(id, "event not published: its document is too large to seal");
        return Sealed::Skip;
    };
    let mut frames = Vec::with_capacity(owners.len());
    for key in owners {
        match seal_oneshot(
            lock_key,
            &key.public_key,
            OneShotDirection::LockToApp,
            id,
            &plaintext,
            rng,
        ) {
            Ok(f) => frames.push(f),
            // A key that cannot be sealed to (a low-order point stored by
            // a broken pairing) must not hold up the other owners.
            Err(e) => tracing::error!(key = key.id.0, id, "event not sealed to this key: {e}"),
        }
    }
    if frames.is_empty() {
        return Sealed::Skip;
    }
    Sealed::Frames(frames)
}

/// Open a frame from the events topic with this app's key: the event id
/// and its document. `last`: the newest id accepted so far; a frame at or
/// below it is refused.
pub fn open(
    me: &StaticKeypair,
    lock_public: &[u8; 32],
    last: Option<u64>,
    frame: &[u8],
) -> Result<(u64, Value), OpenError> {
    let (counter, plaintext) =
        open_oneshot(me, lock_public, OneShotDirection::LockToApp, last, frame)?;
    let doc = decode(&plaintext)?;
    let id = doc["id"].as_u64().ok_or(OpenError::Malformed)?;
    if id != counter {
        return Err(OpenError::IdMismatch { doc: id, counter });
    }
    Ok((id, doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::protocol::MAX_PLAINTEXT;
    use crate::app::Response;
    use crate::core::event::{AlarmKind, EventKind};
    use crate::core::time::{Validity, WallTime};
    use crate::core::types::{AppKeyId, AppKeyRole, Method, UserNumber};
    use rand_core::OsRng;

    fn key(id: u32, role: AppKeyRole, app: &StaticKeypair) -> AppKey {
        AppKey {
            id: AppKeyId(id),
            role,
            public_key: app.public(),
            validity: Validity::ALWAYS,
            label: format!("key {id}"),
        }
    }

    fn owner_role() -> AppKeyRole {
        AppKeyRole::Owner {
            admin: UserNumber::new(1).expect("user 1"),
        }
    }

    fn ev(kind: EventKind) -> Event {
        Event {
            at: Some(WallTime(1_764_140_000)),
            mono_ms: 5,
            kind,
        }
    }

    fn face_unlock(user: u16) -> Event {
        ev(EventKind::Unlocked {
            method: Method::Face,
            user: UserNumber::new(user),
        })
    }

    fn frames(s: Sealed) -> Vec<Vec<u8>> {
        match s {
            Sealed::Frames(f) => f,
            other => panic!("expected frames, got {other:?}"),
        }
    }

    /// Each owner opens its own frame and reads who unlocked, how and
    /// when; nothing of it is in the frame's bytes; a guest key and the
    /// other owner's frame do not open; a repeat is refused by the id.
    #[test]
    fn each_owner_opens_its_frame_and_no_one_else() {
        let lock = StaticKeypair::generate(&mut OsRng);
        let (a, b, guest) = (
            StaticKeypair::generate(&mut OsRng),
            StaticKeypair::generate(&mut OsRng),
            StaticKeypair::generate(&mut OsRng),
        );
        let owners = [key(1, owner_role(), &a), key(2, owner_role(), &b)];
        let f = frames(seal(&lock, &owners, 42, &face_unlock(7), &mut OsRng));
        assert_eq!(f.len(), 2, "one frame per owner key");
        for frame in &f {
            let text = String::from_utf8_lossy(frame);
            for word in ["unlock", "face", "user", "1764140000"] {
                assert!(!text.contains(word), "{word} in the frame's bytes");
            }
        }
        let (id, doc) = open(&a, &lock.public(), None, &f[0]).expect("owner A opens");
        assert_eq!(id, 42);
        assert_eq!(doc["kind"], "unlocked.face");
        assert_eq!(doc["detail"], "user=7");
        assert_eq!(doc["time"], 1_764_140_000);
        let (_, doc_b) = open(&b, &lock.public(), None, &f[1]).expect("owner B opens");
        assert_eq!(doc, doc_b);
        assert!(open(&a, &lock.public(), None, &f[1]).is_err(), "B's frame");
        for frame in &f {
            assert!(open(&guest, &lock.public(), None, frame).is_err(), "guest");
        }
        // A repeat (QoS 1 after a reconnect) or a replay: refused by id.
        assert!(matches!(
            open(&a, &lock.public(), Some(42), &f[0]),
            Err(OpenError::Channel(ChannelError::Replay { .. }))
        ));
        assert!(open(&a, &lock.public(), Some(41), &f[0]).is_ok());
    }

    /// Issue 14 item 2: no owner key, nothing to publish — the caller
    /// waits (the cursor does not move) instead of sending anything.
    #[test]
    fn without_an_owner_key_events_wait() {
        let lock = StaticKeypair::generate(&mut OsRng);
        assert!(matches!(
            seal(&lock, &[], 3, &face_unlock(7), &mut OsRng),
            Sealed::Wait
        ));
        // Only owner keys are given by the service; even a hidden event
        // waits rather than moving the cursor without an owner.
        let duress = ev(EventKind::AlarmRaised {
            alarm: AlarmKind::Duress,
        });
        assert!(matches!(
            seal(&lock, &[], 4, &duress, &mut OsRng),
            Sealed::Wait
        ));
    }

    /// B-6.9 in the sealed form too: a duress unlock reads as a passcode
    /// unlock, the duress alarm is skipped.
    #[test]
    fn duress_stays_ordinary_when_sealed() {
        let lock = StaticKeypair::generate(&mut OsRng);
        let a = StaticKeypair::generate(&mut OsRng);
        let owners = [key(1, owner_role(), &a)];
        let unlock = ev(EventKind::Unlocked {
            method: Method::DuressPasscode,
            user: UserNumber::new(3),
        });
        let f = frames(seal(&lock, &owners, 9, &unlock, &mut OsRng));
        let (_, doc) = open(&a, &lock.public(), None, &f[0]).expect("opens");
        assert_eq!(doc["kind"], "unlocked.passcode");
        let alarm = ev(EventKind::AlarmRaised {
            alarm: AlarmKind::Duress,
        });
        assert!(matches!(
            seal(&lock, &owners, 10, &alarm, &mut OsRng),
            Sealed::Skip
        ));
    }

    /// The frame's length does not tell an unlock from a door event.
    #[test]
    fn padding_hides_the_kind_in_the_length() {
        let lock = StaticKeypair::generate(&mut OsRng);
        let a = StaticKeypair::generate(&mut OsRng);
        let owners = [key(1, owner_role(), &a)];
        let door = ev(EventKind::DoorOpened);
        let unlock = frames(seal(&lock, &owners, 1, &face_unlock(250), &mut OsRng));
        let door = frames(seal(&lock, &owners, 2, &door, &mut OsRng));
        assert_eq!(unlock[0].len(), door[0].len());
        assert_eq!(
            encode(&serde_json::json!({"id": 1})).map(|p| p.len()),
            Some(PAD)
        );
    }

    /// Other sealed messages to the same key do not open as events, and
    /// a document sealed under another counter is refused.
    #[test]
    fn only_event_documents_under_their_own_id_open() {
        let lock = StaticKeypair::generate(&mut OsRng);
        let a = StaticKeypair::generate(&mut OsRng);
        let seal_plain = |counter, plaintext: &[u8]| {
            seal_oneshot(
                &lock,
                &a.public(),
                OneShotDirection::LockToApp,
                counter,
                plaintext,
                &mut OsRng,
            )
            .expect("seal")
        };
        let reply = seal_plain(5, &Response::Ok.encode());
        assert!(matches!(
            open(&a, &lock.public(), None, &reply),
            Err(OpenError::Malformed)
        ));
        let doc = serde_json::json!({"id": 6, "time": 0, "kind": "door_opened", "detail": ""});
        let moved = seal_plain(7, &encode(&doc).expect("encodes"));
        assert!(matches!(
            open(&a, &lock.public(), None, &moved),
            Err(OpenError::IdMismatch { doc: 6, counter: 7 })
        ));
        let future = seal_plain(6, &[TAG, 9, 0, 0]);
        assert!(matches!(
            open(&a, &lock.public(), None, &future),
            Err(OpenError::UnsupportedVersion(9))
        ));
        assert!(matches!(
            decode(&[TAG, VERSION, 0, 50, b'{']),
            Err(OpenError::Malformed)
        ));
        // A document too large for one sealed message is skipped, not
        // sent in clear and not stalling the cursor.
        let owners = [key(1, owner_role(), &a)];
        let huge = ev(EventKind::ModuleFault {
            detail: "x".repeat(MAX_PLAINTEXT),
        });
        assert!(matches!(
            seal(&lock, &owners, 8, &huge, &mut OsRng),
            Sealed::Skip
        ));
    }
}
