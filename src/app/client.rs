//! The app side of pairing and of the session, sans-IO: what the phone app
//! (and later `latchctl ble`) runs against the lock. Used by the tests as the
//! real counterpart of the lock side, never a stand-in.
//!
//! ```text
//!  pairing:  AppPairing::start ──init──► lock
//!            .on_reply(reply)  ──confirm──► lock
//!            .on_done(done)    → PairedLock { lock_public }   (store it)
//!
//!  session:  AppSessionStart::new ──init──► lock
//!            .finish(accept)   → SecureSession                 (seal/open)
//!
//!  over BLE: every frame goes through protocol::fragment / Reassembler
//! ```

use std::time::Duration;

use crate::core::time::Instant;

use rand_core::CryptoRngCore;
use x25519_dalek::StaticSecret;

use super::codec::CommandError;
use super::crypto::{self, KeyId, StaticKeypair, KEY_LEN};
use super::pairing::{
    guest_code_key, owner_code_key, pair_keys, verify_done, GuestPairingCode, PairKeys, PairKind,
    PairRequest, PairingError, VerificationCode, PAIR_REPLY_BODY,
};
use super::protocol::{
    self, encode_plain, ChannelError, Frame, FrameType, SecureSession, SessionInit,
};
use super::request::Request;
use super::response::Response;

/// The out-of-band secret the app pairs with.
#[derive(Debug, Clone)]
pub enum PairingSecret {
    /// The lock's verification code (QR label): owner pairing.
    Owner(VerificationCode),
    /// A guest pairing code made by the owner's app.
    Guest(GuestPairingCode),
}

impl PairingSecret {
    fn kind(&self) -> PairKind {
        match self {
            PairingSecret::Owner(_) => PairKind::Owner,
            PairingSecret::Guest(c) => PairKind::Guest {
                code_id: c.code_id(),
            },
        }
    }
}

/// App pairing, waiting for the lock's reply.
pub struct AppPairing {
    secret: PairingSecret,
    app_static: [u8; KEY_LEN],
    ae_secret: StaticSecret,
    ae_public: [u8; KEY_LEN],
}

impl std::fmt::Debug for AppPairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppPairing")
            .field("kind", &self.secret.kind())
            .finish_non_exhaustive()
    }
}

/// The lock as the app stores it after pairing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedLock {
    /// The lock's long-term public key (needed for every session).
    pub lock_public: [u8; KEY_LEN],
    /// Its id.
    pub lock_key_id: KeyId,
}

impl AppPairing {
    /// Start pairing `app`'s key with the given secret; returns the
    /// pair-init frame to send.
    pub fn start(
        app: &StaticKeypair,
        secret: PairingSecret,
        rng: &mut impl CryptoRngCore,
    ) -> (Self, Vec<u8>) {
        let (ae_secret, ae_public) = crypto::ephemeral(rng);
        let frame = PairRequest::encode(secret.kind(), &app.public(), &ae_public);
        (
            AppPairing {
                secret,
                app_static: app.public(),
                ae_secret,
                ae_public,
            },
            frame,
        )
    }

    /// Take the lock's reply (or its error frame); returns the confirm frame
    /// to send. `app` must be the key pair given to [`AppPairing::start`].
    pub fn on_reply(
        self,
        app: &StaticKeypair,
        reply: &[u8],
    ) -> Result<(AppPairingSent, Vec<u8>), PairingError> {
        if app.public() != self.app_static {
            return Err(PairingError::ConfirmationFailed);
        }
        let f = Frame::parse_as(reply, FrameType::PairReply)?;
        if f.body.len() != PAIR_REPLY_BODY {
            return Err(ChannelError::Malformed {
                got: reply.len(),
                why: "pair-reply body must be 64 bytes",
            }
            .into());
        }
        let mut ls = [0u8; KEY_LEN];
        ls.copy_from_slice(&f.body[..KEY_LEN]);
        let mut le = [0u8; KEY_LEN];
        le.copy_from_slice(&f.body[KEY_LEN..]);
        let ee = crypto::dh(&self.ae_secret, &le).map_err(ChannelError::from)?;
        let se = app.dh(&le).map_err(ChannelError::from)?;
        let es = crypto::dh(&self.ae_secret, &ls).map_err(ChannelError::from)?;
        let code_key = match &self.secret {
            PairingSecret::Owner(c) => owner_code_key(c),
            PairingSecret::Guest(c) => guest_code_key(c),
        };
        let keys = pair_keys(
            self.secret.kind(),
            &self.app_static,
            &self.ae_public,
            &ls,
            &le,
            &ee,
            &se,
            &es,
            &code_key,
        );
        let tag = crypto::confirm_tag(&keys.app_confirm, &keys.transcript);
        Ok((
            AppPairingSent {
                keys,
                lock_public: ls,
            },
            encode_plain(FrameType::PairConfirm, &tag),
        ))
    }
}

/// App pairing, confirm sent, waiting for the lock's done frame.
pub struct AppPairingSent {
    keys: PairKeys,
    lock_public: [u8; KEY_LEN],
}

impl std::fmt::Debug for AppPairingSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppPairingSent").finish_non_exhaustive()
    }
}

impl AppPairingSent {
    /// Verify the lock's confirmation. Only now is the lock's public key
    /// trusted.
    pub fn on_done(self, done: &[u8]) -> Result<PairedLock, PairingError> {
        verify_done(&self.keys, done)?;
        Ok(PairedLock {
            lock_public: self.lock_public,
            lock_key_id: KeyId::of(&self.lock_public),
        })
    }
}

/// App session handshake in progress.
pub struct AppSessionStart {
    lock_public: [u8; KEY_LEN],
    ae_secret: StaticSecret,
    ae_public: [u8; KEY_LEN],
}

impl std::fmt::Debug for AppSessionStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSessionStart").finish_non_exhaustive()
    }
}

impl AppSessionStart {
    /// Start a session with a paired lock; returns the session-init frame.
    pub fn new(
        app: &StaticKeypair,
        lock_public: [u8; KEY_LEN],
        rng: &mut impl CryptoRngCore,
    ) -> (Self, Vec<u8>) {
        let (ae_secret, ae_public) = crypto::ephemeral(rng);
        let frame = SessionInit::encode(&app.key_id(), &ae_public);
        (
            AppSessionStart {
                lock_public,
                ae_secret,
                ae_public,
            },
            frame,
        )
    }

    /// Verify the lock's accept frame and derive the session.
    pub fn finish(
        self,
        app: &StaticKeypair,
        accept: &[u8],
        now: Instant,
        idle_timeout: Duration,
    ) -> Result<SecureSession, ChannelError> {
        protocol::finish_session_app(
            app,
            &self.lock_public,
            &self.ae_secret,
            &self.ae_public,
            accept,
            now,
            idle_timeout,
        )
    }
}

/// Seal a request on the app's session.
pub fn seal_request(
    session: &mut SecureSession,
    now: Instant,
    request: &Request,
) -> Result<Vec<u8>, ChannelError> {
    session.seal(now, &request.encode())
}

/// Errors reading a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Open and decode a response on the app's session.
pub fn open_response(
    session: &mut SecureSession,
    now: Instant,
    frame: &[u8],
) -> Result<Response, ClientError> {
    let plaintext = session.open(now, frame)?;
    Ok(Response::decode(&plaintext)?)
}

/// Sending a bundle in chunks, app side (issue 20): what to send next
/// after each answer. The lock says the offset it wants, so a dropped
/// connection resumes: a new session starts again with
/// [`BundleUpload::begin`] and the lock answers where it stopped.
///
/// ```text
///  begin ─► UpdateOffset{o} ─► chunk(o) ─► UpdateOffset{o'} … o == len ─► commit ─► Ok: done
/// ```
#[derive(Debug, Clone)]
pub struct BundleUpload {
    bytes: Vec<u8>,
    sha256: [u8; 32],
    allow_older: bool,
    committed: bool,
}

/// The lock refused a step of the upload (its words), or answered out of
/// turn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("the lock refused: {0}")]
    Refused(String),
    #[error("unexpected answer from the lock: {0}")]
    Unexpected(String),
}

impl BundleUpload {
    pub fn new(bytes: Vec<u8>, allow_older: bool) -> Self {
        use sha2::Digest;
        let sha256 = sha2::Sha256::digest(&bytes).into();
        BundleUpload {
            bytes,
            sha256,
            allow_older,
            committed: false,
        }
    }

    /// The first request of a session (also after a reconnect).
    pub fn begin(&self) -> Request {
        Request::UpdateBegin {
            size: self.bytes.len() as u64,
            sha256: self.sha256,
        }
    }

    /// The request after `answer`; `Ok(None)` once the lock took the
    /// commit.
    pub fn next(&mut self, answer: &Response) -> Result<Option<Request>, UploadError> {
        match answer {
            Response::UpdateOffset { offset } if !self.committed => {
                let len = self.bytes.len() as u64;
                if *offset >= len {
                    self.committed = true;
                    return Ok(Some(Request::UpdateCommit {
                        allow_older: self.allow_older,
                    }));
                }
                let from = usize::try_from(*offset).unwrap_or(usize::MAX);
                let to = from
                    .saturating_add(super::codec::MAX_UPDATE_CHUNK)
                    .min(self.bytes.len());
                Ok(Some(Request::UpdateChunk {
                    offset: *offset,
                    bytes: self.bytes[from..to].to_vec(),
                }))
            }
            Response::Ok if self.committed => Ok(None),
            Response::Error { detail, .. } => Err(UploadError::Refused(detail.clone())),
            other => Err(UploadError::Unexpected(format!("{other:?}"))),
        }
    }
}

#[cfg(test)]
mod upload_tests {
    use super::*;
    use crate::app::protocol::ErrorCode;

    #[test]
    fn an_upload_sends_chunks_from_the_offset_the_lock_asks_then_commits() {
        let bytes: Vec<u8> = (0..9000u32).map(|i| i as u8).collect();
        let mut u = BundleUpload::new(bytes.clone(), true);
        let Request::UpdateBegin { size, .. } = u.begin() else {
            panic!("begin first");
        };
        assert_eq!(size, 9000);
        // The lock asks for 4100 (a resume): the chunk starts there.
        let next = u.next(&Response::UpdateOffset { offset: 4100 }).unwrap();
        assert_eq!(
            next,
            Some(Request::UpdateChunk {
                offset: 4100,
                bytes: bytes[4100..8100].to_vec()
            })
        );
        let last = u.next(&Response::UpdateOffset { offset: 8100 }).unwrap();
        assert!(matches!(last, Some(Request::UpdateChunk { bytes, .. }) if bytes.len() == 900));
        let commit = u.next(&Response::UpdateOffset { offset: 9000 }).unwrap();
        assert_eq!(commit, Some(Request::UpdateCommit { allow_older: true }));
        assert_eq!(u.next(&Response::Ok), Ok(None));
        assert!(u.next(&Response::error(ErrorCode::Refused, "no")).is_err());
    }
}
