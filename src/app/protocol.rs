//! The secure lock channel, sans-IO: frames, fragmentation over the ATT MTU,
//! the session handshake from a stored key, the sealed session itself and
//! sealed one-shot messages for the remote (MQTT) path.
//!
//! Nothing here touches BlueZ, tokio or a clock: bytes and the current
//! monotonic [`Instant`] come in as arguments, bytes and typed errors come
//! out. The GATT glue writes whatever it is handed into the "lock channel"
//! characteristic.
//!
//! ```text
//!  app (client.rs)                                   lock (this file)
//!  ─────────────────                                 ────────────────
//!  SessionInit  key_id ‖ Ae  ──────────────────────► lookup key_id → StoredKey
//!                                                    Le fresh; keys = HKDF(T, ee‖se‖es)
//!              ◄──────────────────── SessionAccept  Le ‖ AEAD_confirm(ε)
//!  verify confirm (proves the lock holds Ls)
//!  Data ctr=0  AEAD_a2l(request) ──────────────────► open (proves the app holds As)
//!              ◄───────────────────────── Data ctr=0 AEAD_l2a(response)
//! ```
//!
//! Every frame, handshake or sealed, has the same 12-byte header, and the
//! whole header is the AEAD's associated data:
//!
//! ```text
//!  0       1       2                       10        12
//!  ┌───────┬───────┬───────────────────────┬─────────┬───────────────────┐
//!  │ ver=1 │ type  │ counter (u64 BE)      │ len u16 │ body (len bytes)  │
//!  └───────┴───────┴───────────────────────┴─────────┴───────────────────┘
//! ```
//!
//! A frame longer than one ATT write (MTU − 3 bytes) is split by
//! [`fragment`] and put back together by [`Reassembler`].
//!
//! **State only advances after a frame fully verifies**: every error path of
//! [`SecureSession::open`] leaves the counters and keys exactly as they were,
//! except the two that end the session on purpose (idle time-out and counter
//! exhaustion).

use std::time::Duration;

use crate::core::time::Instant;

use rand_core::CryptoRngCore;
use thiserror::Error;
use zeroize::Zeroizing;

use super::crypto::{
    self, AeadKey, CryptoError, KeyId, StaticKeypair, Transcript, KEY_LEN, TAG_LEN,
};

/// Wire format version carried in every frame header.
pub const VERSION: u8 = 1;
/// Size of the frame header (version, type, counter, length).
pub const HEADER_LEN: usize = 12;
/// Largest plaintext a sealed message may carry.
pub const MAX_PLAINTEXT: usize = 4096;
/// Largest frame body: a sealed one-shot message (key id + ephemeral key +
/// ciphertext + tag) is the biggest.
pub const MAX_BODY: usize = 8 + KEY_LEN + MAX_PLAINTEXT + TAG_LEN;
/// Largest frame on the wire; the reassembly buffer never grows past it.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_BODY;
/// Smallest ATT MTU (Bluetooth Core, LE default).
pub const MIN_ATT_MTU: u16 = 23;
/// Largest ATT MTU (Bluetooth Core: 512-byte attribute + 5).
pub const MAX_ATT_MTU: u16 = 517;
/// A session with no verified traffic for this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Frame types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// App → lock: start pairing (owner or guest redemption).
    PairInit = 0x01,
    /// Lock → app: the lock's keys.
    PairReply = 0x02,
    /// App → lock: the app's key confirmation.
    PairConfirm = 0x03,
    /// Lock → app: the lock's key confirmation; pairing done.
    PairDone = 0x04,
    /// App → lock: start a session from a stored key.
    SessionInit = 0x10,
    /// Lock → app: session keys agreed, with the lock's confirmation.
    SessionAccept = 0x11,
    /// Either way: a sealed message inside a session.
    Data = 0x20,
    /// A sealed one-shot message (remote path).
    OneShot = 0x30,
    /// Lock → app: a refusal, body = one [`ErrorCode`] byte. Not
    /// authenticated; it only ever makes the app give up, never proceed.
    Error = 0x7F,
}

impl FrameType {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => FrameType::PairInit,
            0x02 => FrameType::PairReply,
            0x03 => FrameType::PairConfirm,
            0x04 => FrameType::PairDone,
            0x10 => FrameType::SessionInit,
            0x11 => FrameType::SessionAccept,
            0x20 => FrameType::Data,
            0x30 => FrameType::OneShot,
            0x7F => FrameType::Error,
            _ => return None,
        })
    }
}

/// One-byte error codes the lock sends back in an [`FrameType::Error`] frame
/// or in a sealed error response; every error type of the `ble` module maps
/// to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCode {
    /// Frame shorter than its header, or length field disagrees with size.
    MalformedFrame = 0x01,
    /// Frame version is not [`VERSION`].
    UnsupportedVersion = 0x02,
    /// Unknown frame type, or a type not valid at this point.
    UnexpectedFrame = 0x03,
    /// Frame or message larger than the maximum.
    TooLarge = 0x04,
    /// Counter lower than expected: a replay.
    Replay = 0x05,
    /// Counter higher than expected: a frame was lost or reordered.
    OutOfOrder = 0x06,
    /// AEAD tag or key confirmation did not verify.
    Unauthenticated = 0x07,
    /// Session already closed.
    SessionClosed = 0x08,
    /// Session idle for too long.
    IdleTimeout = 0x09,
    /// 2^64 − 1 frames sent in one direction; start a new session.
    CounterExhausted = 0x0A,
    /// Fragment sequence broken or fragment malformed.
    BadFragment = 0x0B,
    /// Owner pairing attempted outside pairing mode (B-5).
    PairingModeInactive = 0x10,
    /// Key id not known to the lock (revoked or never paired).
    UnknownKey = 0x12,
    /// Guest pairing code past its expiry.
    CodeExpired = 0x13,
    /// Guest pairing code burned after too many failed attempts.
    CodeAttemptsExhausted = 0x14,
    /// Guest pairing code already redeemed.
    CodeAlreadyRedeemed = 0x15,
    /// Unknown guest pairing code id.
    UnknownCode = 0x16,
    /// The principal may not run this command.
    Forbidden = 0x20,
    /// A guest key outside its validity window.
    OutsideValidity = 0x21,
    /// The lock's wall clock is unknown; time-windowed keys are refused.
    ClockUnknown = 0x22,
    /// Command body malformed.
    MalformedCommand = 0x23,
    /// Command encoding version unsupported.
    UnsupportedCommandVersion = 0x24,
    /// Unknown command opcode.
    UnknownCommand = 0x25,
    /// A remote command that is not fresh: it answers a challenge the lock
    /// no longer accepts (older than the lock allows, sealed before the
    /// lock's current broker connection, or carrying none). Read the
    /// lock's current challenge and send the command again.
    Stale = 0x26,
    /// The engine refused the command (detail in the response).
    Refused = 0x30,
}

impl ErrorCode {
    /// Decode a received error byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        use ErrorCode::*;
        Some(match b {
            0x01 => MalformedFrame,
            0x02 => UnsupportedVersion,
            0x03 => UnexpectedFrame,
            0x04 => TooLarge,
            0x05 => Replay,
            0x06 => OutOfOrder,
            0x07 => Unauthenticated,
            0x08 => SessionClosed,
            0x09 => IdleTimeout,
            0x0A => CounterExhausted,
            0x0B => BadFragment,
            0x10 => PairingModeInactive,
            0x12 => UnknownKey,
            0x13 => CodeExpired,
            0x14 => CodeAttemptsExhausted,
            0x15 => CodeAlreadyRedeemed,
            0x16 => UnknownCode,
            0x20 => Forbidden,
            0x21 => OutsideValidity,
            0x22 => ClockUnknown,
            0x23 => MalformedCommand,
            0x24 => UnsupportedCommandVersion,
            0x25 => UnknownCommand,
            0x26 => Stale,
            0x30 => Refused,
            _ => return None,
        })
    }
}

/// Errors of frame parsing, the session and one-shot messages.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChannelError {
    #[error("frame of {got} bytes is malformed: {why}; the sender must re-frame the message")]
    Malformed { got: usize, why: &'static str },
    #[error(
        "frame version {0} is not supported (this lock speaks version {VERSION}); update the app"
    )]
    UnsupportedVersion(u8),
    #[error("frame type {0:#04x} is unknown or not valid at this point of the protocol")]
    UnexpectedFrame(u8),
    #[error("{what} of {got} bytes exceeds the maximum of {max}")]
    TooLarge {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("frame counter {got} was already used (expected {expected}); replayed frame dropped")]
    Replay { got: u64, expected: u64 },
    #[error("frame counter {got} is ahead of the expected {expected}; a frame was lost or reordered, start a new session")]
    OutOfOrder { got: u64, expected: u64 },
    #[error("frame failed authentication (modified, forged or wrong key); it was dropped")]
    Unauthenticated,
    #[error("the session is closed; start a new session")]
    SessionClosed,
    #[error("the session was idle longer than {0:?} and is closed; start a new session")]
    IdleTimeout(Duration),
    #[error("the frame counter is exhausted; the session is closed, start a new session")]
    CounterExhausted,
    #[error("handshake used a low-order public key; retry with a fresh key pair")]
    WeakKey,
    #[error("the peer refused: {0:?}")]
    PeerError(ErrorCode),
}

impl ChannelError {
    /// The wire error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ChannelError::Malformed { .. } => ErrorCode::MalformedFrame,
            ChannelError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            ChannelError::UnexpectedFrame(_) => ErrorCode::UnexpectedFrame,
            ChannelError::TooLarge { .. } => ErrorCode::TooLarge,
            ChannelError::Replay { .. } => ErrorCode::Replay,
            ChannelError::OutOfOrder { .. } => ErrorCode::OutOfOrder,
            ChannelError::Unauthenticated | ChannelError::WeakKey => ErrorCode::Unauthenticated,
            ChannelError::SessionClosed => ErrorCode::SessionClosed,
            ChannelError::IdleTimeout(_) => ErrorCode::IdleTimeout,
            ChannelError::CounterExhausted => ErrorCode::CounterExhausted,
            ChannelError::PeerError(c) => *c,
        }
    }
}

impl From<CryptoError> for ChannelError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::WeakPublicKey => ChannelError::WeakKey,
            CryptoError::TagMismatch => ChannelError::Unauthenticated,
        }
    }
}

/// A parsed frame borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Frame type.
    pub kind: FrameType,
    /// Counter field (0 for handshake frames).
    pub counter: u64,
    /// The 12 header bytes, used as associated data.
    pub header: &'a [u8],
    /// The body.
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Parse one complete frame. Checks version, type, the length field
    /// against the actual size, and the maximum body size.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ChannelError> {
        if bytes.len() < HEADER_LEN {
            return Err(ChannelError::Malformed {
                got: bytes.len(),
                why: "shorter than the 12-byte header",
            });
        }
        if bytes.len() > MAX_FRAME {
            return Err(ChannelError::TooLarge {
                what: "frame",
                got: bytes.len(),
                max: MAX_FRAME,
            });
        }
        let (header, body) = bytes.split_at(HEADER_LEN);
        if header[0] != VERSION {
            return Err(ChannelError::UnsupportedVersion(header[0]));
        }
        let kind = FrameType::from_u8(header[1]).ok_or(ChannelError::UnexpectedFrame(header[1]))?;
        let mut ctr = [0u8; 8];
        ctr.copy_from_slice(&header[2..10]);
        let len = u16::from_be_bytes([header[10], header[11]]) as usize;
        if len != body.len() {
            return Err(ChannelError::Malformed {
                got: bytes.len(),
                why: "length field does not match the frame size",
            });
        }
        let counter = u64::from_be_bytes(ctr);
        // Only sealed frames carry a counter; a handshake or error frame
        // with one set was made by something other than this protocol.
        if counter != 0 && !matches!(kind, FrameType::Data | FrameType::OneShot) {
            return Err(ChannelError::Malformed {
                got: bytes.len(),
                why: "handshake frames must carry counter 0",
            });
        }
        Ok(Frame {
            kind,
            counter,
            header,
            body,
        })
    }

    /// Parse and require a given type.
    pub fn parse_as(bytes: &'a [u8], kind: FrameType) -> Result<Self, ChannelError> {
        let f = Self::parse(bytes)?;
        if f.kind == FrameType::Error && kind != FrameType::Error {
            return Err(match f.body {
                [b] => ChannelError::PeerError(
                    ErrorCode::from_u8(*b)
                        .ok_or(ChannelError::UnexpectedFrame(FrameType::Error as u8))?,
                ),
                _ => ChannelError::Malformed {
                    got: bytes.len(),
                    why: "error frame body must be one byte",
                },
            });
        }
        if f.kind != kind {
            return Err(ChannelError::UnexpectedFrame(f.kind as u8));
        }
        Ok(f)
    }
}

/// Encode a frame header for a body of `body_len` bytes.
pub(crate) fn header(kind: FrameType, counter: u64, body_len: usize) -> [u8; HEADER_LEN] {
    debug_assert!(body_len <= MAX_BODY);
    let mut h = [0u8; HEADER_LEN];
    h[0] = VERSION;
    h[1] = kind as u8;
    h[2..10].copy_from_slice(&counter.to_be_bytes());
    h[10..12].copy_from_slice(&(body_len as u16).to_be_bytes());
    h
}

/// Encode a plaintext (handshake) frame.
pub(crate) fn encode_plain(kind: FrameType, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&header(kind, 0, body.len()));
    out.extend_from_slice(body);
    out
}

/// Encode an error frame the lock sends when it refuses a handshake.
pub fn error_frame(code: ErrorCode) -> Vec<u8> {
    encode_plain(FrameType::Error, &[code as u8])
}

/// Seal `plaintext` into a frame of `kind` with `counter`; the header is the
/// associated data. `prefix` is clear body bytes placed before the
/// ciphertext (and covered by the AAD too).
fn seal_frame(
    key: &AeadKey,
    kind: FrameType,
    counter: u64,
    prefix: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let body_len = prefix.len() + plaintext.len() + TAG_LEN;
    let h = header(kind, counter, body_len);
    let mut aad = Vec::with_capacity(HEADER_LEN + prefix.len());
    aad.extend_from_slice(&h);
    aad.extend_from_slice(prefix);
    let ct = key.seal(counter, &aad, plaintext);
    let mut out = aad;
    out.extend_from_slice(&ct);
    out
}

// ───────────────────────────── fragmentation ─────────────────────────────

/// Fragment header flag: first fragment of a frame (followed by the frame's
/// total length, u16 BE).
const FRAG_FIRST: u8 = 0x80;
/// Fragment header flag: last fragment of a frame.
const FRAG_LAST: u8 = 0x40;
/// Low 6 bits: fragment sequence number modulo 64.
const FRAG_SEQ_MASK: u8 = 0x3F;

/// Fragmentation errors. The reassembler drops any partial frame on error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FragmentError {
    #[error("ATT MTU {0} is outside {MIN_ATT_MTU}..={MAX_ATT_MTU}; use the MTU BlueZ negotiated")]
    BadMtu(u16),
    #[error("message of {got} bytes exceeds the maximum frame of {max} bytes")]
    TooLarge { got: usize, max: usize },
    #[error("fragment of {got} bytes exceeds one ATT write of {max} bytes")]
    FragmentTooLong { got: usize, max: usize },
    #[error("fragment is malformed: {0}; the partial message was dropped, resend it")]
    Malformed(&'static str),
    #[error("fragment sequence {got} where {expected} was expected; the partial message was dropped, resend it")]
    Sequence { got: u8, expected: u8 },
}

impl FragmentError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            FragmentError::TooLarge { .. } => ErrorCode::TooLarge,
            _ => ErrorCode::BadFragment,
        }
    }
}

fn att_payload(att_mtu: u16) -> Result<usize, FragmentError> {
    if !(MIN_ATT_MTU..=MAX_ATT_MTU).contains(&att_mtu) {
        return Err(FragmentError::BadMtu(att_mtu));
    }
    // An ATT Write/Notify PDU has 3 bytes of opcode + handle.
    Ok(att_mtu as usize - 3)
}

/// Split a frame into ATT-sized fragments:
///
/// ```text
///  first:  [0x80|last?0x40|seq] [total u16 BE] [bytes …]
///  others: [       last?0x40|seq]              [bytes …]
/// ```
///
/// `seq` counts 0, 1, 2 … modulo 64 within the frame.
pub fn fragment(frame: &[u8], att_mtu: u16) -> Result<Vec<Vec<u8>>, FragmentError> {
    let payload = att_payload(att_mtu)?;
    if frame.is_empty() || frame.len() > MAX_FRAME {
        return Err(FragmentError::TooLarge {
            got: frame.len(),
            max: MAX_FRAME,
        });
    }
    let mut out = Vec::new();
    let first_room = payload - 3;
    let (head, mut rest) = frame.split_at(frame.len().min(first_room));
    let mut f = Vec::with_capacity(payload);
    f.push(FRAG_FIRST | if rest.is_empty() { FRAG_LAST } else { 0 });
    f.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    f.extend_from_slice(head);
    out.push(f);
    let mut seq: u8 = 1;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(payload - 1));
        let mut f = Vec::with_capacity(payload);
        f.push((seq & FRAG_SEQ_MASK) | if tail.is_empty() { FRAG_LAST } else { 0 });
        f.extend_from_slice(chunk);
        out.push(f);
        rest = tail;
        seq = seq.wrapping_add(1);
    }
    Ok(out)
}

/// Bounded reassembly of fragments into frames. Holds at most one partial
/// frame of at most `max_frame` bytes.
#[derive(Debug)]
pub struct Reassembler {
    payload: usize,
    max_frame: usize,
    buf: Vec<u8>,
    expected_total: usize,
    next_seq: u8,
    in_progress: bool,
}

impl Reassembler {
    /// A reassembler for the negotiated `att_mtu`, accepting frames up to
    /// [`MAX_FRAME`] bytes.
    pub fn new(att_mtu: u16) -> Result<Self, FragmentError> {
        Self::with_limit(att_mtu, MAX_FRAME)
    }

    /// As [`Reassembler::new`] with a smaller frame limit (e.g. for the
    /// unauthenticated pairing characteristic).
    pub fn with_limit(att_mtu: u16, max_frame: usize) -> Result<Self, FragmentError> {
        Ok(Self {
            payload: att_payload(att_mtu)?,
            max_frame: max_frame.min(MAX_FRAME),
            buf: Vec::new(),
            expected_total: 0,
            next_seq: 0,
            in_progress: false,
        })
    }

    /// True when part of a frame is buffered.
    pub fn in_progress(&self) -> bool {
        self.in_progress
    }

    fn reset(&mut self) {
        self.buf = Vec::new();
        self.in_progress = false;
        self.expected_total = 0;
        self.next_seq = 0;
    }

    /// Take one fragment. Returns a complete frame when the last fragment
    /// arrives. On error the partial frame is dropped.
    pub fn push(&mut self, fragment: &[u8]) -> Result<Option<Vec<u8>>, FragmentError> {
        let r = self.push_inner(fragment);
        if r.is_err() {
            self.reset();
        }
        r
    }

    fn push_inner(&mut self, fragment: &[u8]) -> Result<Option<Vec<u8>>, FragmentError> {
        if fragment.len() > self.payload {
            return Err(FragmentError::FragmentTooLong {
                got: fragment.len(),
                max: self.payload,
            });
        }
        let (&flags, rest) = fragment
            .split_first()
            .ok_or(FragmentError::Malformed("empty fragment"))?;
        let seq = flags & FRAG_SEQ_MASK;
        let last = flags & FRAG_LAST != 0;
        let data = if flags & FRAG_FIRST != 0 {
            if self.in_progress {
                return Err(FragmentError::Malformed(
                    "a new frame started before the previous one ended",
                ));
            }
            if seq != 0 {
                return Err(FragmentError::Sequence {
                    got: seq,
                    expected: 0,
                });
            }
            let [hi, lo, data @ ..] = rest else {
                return Err(FragmentError::Malformed(
                    "first fragment lacks the total length",
                ));
            };
            let total = u16::from_be_bytes([*hi, *lo]) as usize;
            if total == 0 {
                return Err(FragmentError::Malformed("total length is zero"));
            }
            if total > self.max_frame {
                return Err(FragmentError::TooLarge {
                    got: total,
                    max: self.max_frame,
                });
            }
            self.in_progress = true;
            self.expected_total = total;
            self.buf = Vec::with_capacity(total);
            self.next_seq = 0;
            data
        } else {
            if !self.in_progress {
                return Err(FragmentError::Malformed(
                    "continuation fragment without a first fragment",
                ));
            }
            if seq != self.next_seq {
                return Err(FragmentError::Sequence {
                    got: seq,
                    expected: self.next_seq,
                });
            }
            rest
        };
        if data.is_empty() && !last {
            return Err(FragmentError::Malformed("empty middle fragment"));
        }
        if self.buf.len() + data.len() > self.expected_total {
            return Err(FragmentError::Malformed(
                "fragments exceed the announced total length",
            ));
        }
        self.buf.extend_from_slice(data);
        self.next_seq = (self.next_seq + 1) & FRAG_SEQ_MASK;
        if last {
            if self.buf.len() != self.expected_total {
                return Err(FragmentError::Malformed(
                    "last fragment arrived before the announced length",
                ));
            }
            let frame = std::mem::take(&mut self.buf);
            self.reset();
            return Ok(Some(frame));
        }
        Ok(None)
    }
}

// ─────────────────────────────── session ────────────────────────────────

/// Which end of a session this is; decides which derived key seals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The lock (GATT server).
    Lock,
    /// The app (GATT client).
    App,
}

/// Keys agreed by the session handshake.
pub(crate) struct SessionKeys {
    pub(crate) app_to_lock: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) lock_to_app: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) confirm: Zeroizing<[u8; KEY_LEN]>,
}

/// The session key schedule, shared by both ends (Noise-KK-like: ee, se, es).
///
/// `ee = DH(Ae, Le)`, `se = DH(As, Le)`, `es = DH(Ae, Ls)`; the transcript
/// binds key id, both static and both ephemeral keys.
// Eight 32-byte inputs named by their role read better than a tuple struct
// built only to pass them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn session_keys(
    key_id: &KeyId,
    app_static: &[u8; KEY_LEN],
    lock_static: &[u8; KEY_LEN],
    app_eph: &[u8; KEY_LEN],
    lock_eph: &[u8; KEY_LEN],
    ee: &[u8; KEY_LEN],
    se: &[u8; KEY_LEN],
    es: &[u8; KEY_LEN],
) -> SessionKeys {
    let mut t = Transcript::new(b"latchd/session/v1");
    t.absorb(b"key id", &key_id.0);
    t.absorb(b"app static", app_static);
    t.absorb(b"lock static", lock_static);
    t.absorb(b"app ephemeral", app_eph);
    t.absorb(b"lock ephemeral", lock_eph);
    let salt = t.finish();
    let mut ikm = Zeroizing::new([0u8; 3 * KEY_LEN]);
    ikm[..32].copy_from_slice(ee);
    ikm[32..64].copy_from_slice(se);
    ikm[64..].copy_from_slice(es);
    SessionKeys {
        app_to_lock: crypto::derive_key(&salt, ikm.as_ref(), b"latchd session app->lock"),
        lock_to_app: crypto::derive_key(&salt, ikm.as_ref(), b"latchd session lock->app"),
        confirm: crypto::derive_key(&salt, ikm.as_ref(), b"latchd session confirm"),
    }
}

/// Body of a session-init frame: `key_id (8) ‖ app ephemeral (32)`.
pub const SESSION_INIT_BODY: usize = 8 + KEY_LEN;
/// Body of a session-accept frame: `lock ephemeral (32) ‖ confirm tag (16)`.
pub const SESSION_ACCEPT_BODY: usize = KEY_LEN + TAG_LEN;

/// A parsed session-init: the lock looks `key_id` up in its key store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInit {
    /// Which stored key the app claims to hold.
    pub key_id: KeyId,
    app_eph: [u8; KEY_LEN],
}

impl SessionInit {
    /// Parse a session-init frame.
    pub fn parse(frame: &[u8]) -> Result<Self, ChannelError> {
        let f = Frame::parse_as(frame, FrameType::SessionInit)?;
        if f.body.len() != SESSION_INIT_BODY {
            return Err(ChannelError::Malformed {
                got: frame.len(),
                why: "session-init body must be 40 bytes",
            });
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&f.body[..8]);
        let mut eph = [0u8; KEY_LEN];
        eph.copy_from_slice(&f.body[8..]);
        Ok(SessionInit {
            key_id: KeyId(id),
            app_eph: eph,
        })
    }

    pub(crate) fn encode(key_id: &KeyId, app_eph: &[u8; KEY_LEN]) -> Vec<u8> {
        let mut body = [0u8; SESSION_INIT_BODY];
        body[..8].copy_from_slice(&key_id.0);
        body[8..].copy_from_slice(app_eph);
        encode_plain(FrameType::SessionInit, &body)
    }
}

/// Lock side of the session handshake: answer a [`SessionInit`] for a key
/// the caller found in its store. Returns the session and the accept frame
/// to send. `stored_public` must be the public key whose [`KeyId`] is
/// `init.key_id` (checked).
pub fn accept_session(
    lock: &StaticKeypair,
    init: &SessionInit,
    stored_public: &[u8; KEY_LEN],
    rng: &mut impl CryptoRngCore,
    now: Instant,
    idle_timeout: Duration,
) -> Result<(SecureSession, Vec<u8>), ChannelError> {
    if KeyId::of(stored_public) != init.key_id {
        return Err(ChannelError::Unauthenticated);
    }
    let (le_secret, le_public) = crypto::ephemeral(rng);
    let ee = crypto::dh(&le_secret, &init.app_eph)?;
    let se = crypto::dh(&le_secret, stored_public)?;
    let es = lock.dh(&init.app_eph)?;
    let keys = session_keys(
        &init.key_id,
        stored_public,
        &lock.public(),
        &init.app_eph,
        &le_public,
        &ee,
        &se,
        &es,
    );
    let confirm = AeadKey::new(keys.confirm.clone());
    let frame = seal_frame(&confirm, FrameType::SessionAccept, 0, &le_public, &[]);
    Ok((
        SecureSession::new(Side::Lock, &keys, now, idle_timeout),
        frame,
    ))
}

/// App side: finish the handshake from the lock's accept frame.
pub(crate) fn finish_session_app(
    app: &StaticKeypair,
    lock_static: &[u8; KEY_LEN],
    ae_secret: &x25519_dalek::StaticSecret,
    ae_public: &[u8; KEY_LEN],
    accept: &[u8],
    now: Instant,
    idle_timeout: Duration,
) -> Result<SecureSession, ChannelError> {
    let f = Frame::parse_as(accept, FrameType::SessionAccept)?;
    if f.body.len() != SESSION_ACCEPT_BODY || f.counter != 0 {
        return Err(ChannelError::Malformed {
            got: accept.len(),
            why: "session-accept body must be 48 bytes with counter 0",
        });
    }
    let mut le = [0u8; KEY_LEN];
    le.copy_from_slice(&f.body[..KEY_LEN]);
    let ee = crypto::dh(ae_secret, &le)?;
    let se = app.dh(&le)?;
    let es = crypto::dh(ae_secret, lock_static)?;
    let keys = session_keys(
        &app.key_id(),
        &app.public(),
        lock_static,
        ae_public,
        &le,
        &ee,
        &se,
        &es,
    );
    let confirm = AeadKey::new(keys.confirm.clone());
    let aad_len = HEADER_LEN + KEY_LEN;
    confirm.open(0, &accept[..aad_len], &accept[aad_len..])?;
    Ok(SecureSession::new(Side::App, &keys, now, idle_timeout))
}

/// An established session: per-direction ChaCha20-Poly1305 keys and a
/// 64-bit counter per direction. Counters must arrive exactly in order
/// (GATT writes and notifications are ordered), so any replay, reorder or
/// loss is detected.
pub struct SecureSession {
    side: Side,
    send_key: AeadKey,
    recv_key: AeadKey,
    send_ctr: u64,
    recv_ctr: u64,
    last_activity: Instant,
    idle_timeout: Duration,
    closed: bool,
}

impl std::fmt::Debug for SecureSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureSession")
            .field("side", &self.side)
            .field("send_ctr", &self.send_ctr)
            .field("recv_ctr", &self.recv_ctr)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl SecureSession {
    fn new(side: Side, keys: &SessionKeys, now: Instant, idle_timeout: Duration) -> Self {
        let (send, recv) = match side {
            Side::Lock => (&keys.lock_to_app, &keys.app_to_lock),
            Side::App => (&keys.app_to_lock, &keys.lock_to_app),
        };
        Self {
            side,
            send_key: AeadKey::new(send.clone()),
            recv_key: AeadKey::new(recv.clone()),
            send_ctr: 0,
            recv_ctr: 0,
            last_activity: now,
            idle_timeout,
            closed: false,
        }
    }

    /// Which end this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// True once the session was closed (idle, counter exhaustion, or
    /// [`SecureSession::close`]).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Close the session; every later call fails with `SessionClosed`.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Counter the next sealed frame will carry.
    pub fn send_counter(&self) -> u64 {
        self.send_ctr
    }

    /// Counter the next received frame must carry.
    pub fn recv_counter(&self) -> u64 {
        self.recv_ctr
    }

    /// When the session times out if nothing verified arrives or is sent,
    /// for the caller's timer. `None` once closed.
    pub fn deadline(&self) -> Option<Instant> {
        (!self.closed).then(|| self.last_activity + self.idle_timeout)
    }

    fn check_live(&mut self, now: Instant) -> Result<(), ChannelError> {
        if self.closed {
            return Err(ChannelError::SessionClosed);
        }
        if now.since(self.last_activity) > self.idle_timeout {
            self.closed = true;
            return Err(ChannelError::IdleTimeout(self.idle_timeout));
        }
        Ok(())
    }

    /// Seal a message into a data frame.
    pub fn seal(&mut self, now: Instant, plaintext: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(ChannelError::TooLarge {
                what: "message",
                got: plaintext.len(),
                max: MAX_PLAINTEXT,
            });
        }
        self.check_live(now)?;
        // u64::MAX is never used, so the receiver can tell exhaustion from a
        // wrap to 0 and a nonce is never reused.
        if self.send_ctr == u64::MAX {
            self.closed = true;
            return Err(ChannelError::CounterExhausted);
        }
        let frame = seal_frame(
            &self.send_key,
            FrameType::Data,
            self.send_ctr,
            &[],
            plaintext,
        );
        self.send_ctr += 1;
        self.last_activity = now;
        Ok(frame)
    }

    /// Verify and open a data frame. On any error other than idle time-out
    /// and counter exhaustion the session is unchanged.
    pub fn open(&mut self, now: Instant, frame: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.check_live(now)?;
        let f = Frame::parse_as(frame, FrameType::Data)?;
        if f.body.len() < TAG_LEN || f.body.len() > MAX_PLAINTEXT + TAG_LEN {
            return Err(ChannelError::Malformed {
                got: frame.len(),
                why: "data body must hold a 16-byte tag and at most 4096 bytes",
            });
        }
        if self.recv_ctr == u64::MAX {
            self.closed = true;
            return Err(ChannelError::CounterExhausted);
        }
        if f.counter < self.recv_ctr {
            return Err(ChannelError::Replay {
                got: f.counter,
                expected: self.recv_ctr,
            });
        }
        if f.counter > self.recv_ctr {
            return Err(ChannelError::OutOfOrder {
                got: f.counter,
                expected: self.recv_ctr,
            });
        }
        let plaintext = self.recv_key.open(f.counter, f.header, f.body)?;
        self.recv_ctr += 1;
        self.last_activity = now;
        Ok(plaintext)
    }

    #[cfg(test)]
    pub(crate) fn force_counters(&mut self, send: u64, recv: u64) {
        self.send_ctr = send;
        self.recv_ctr = recv;
    }
}

// ─────────────────────────── sealed one-shot ────────────────────────────

/// Direction of a one-shot message; part of the key derivation so a message
/// can never be reflected back to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneShotDirection {
    /// From the app (via the broker) to the lock.
    AppToLock,
    /// From the lock (via the broker) to the app.
    LockToApp,
}

/// Seal a one-shot message for the remote path (MQTT): no handshake, one
/// message, keyed by both stored long-term keys plus a fresh ephemeral.
///
/// ```text
///  header(type=OneShot, counter) ‖ sender key_id (8) ‖ E (32) ‖ AEAD(plaintext)
///  key = HKDF(salt = H(ids, S, R, E, counter, direction), DH(E,R) ‖ DH(S,R))
/// ```
///
/// `counter` must be strictly greater than every counter this sender used
/// before with this recipient; the caller persists it. A broker can neither
/// forge (needs a static secret), modify (AEAD over header and body) nor
/// replay (recipient keeps the last accepted counter) a message.
pub fn seal_oneshot(
    sender: &StaticKeypair,
    recipient_public: &[u8; KEY_LEN],
    direction: OneShotDirection,
    counter: u64,
    plaintext: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, ChannelError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(ChannelError::TooLarge {
            what: "message",
            got: plaintext.len(),
            max: MAX_PLAINTEXT,
        });
    }
    let (e_secret, e_public) = crypto::ephemeral(rng);
    let er = crypto::dh(&e_secret, recipient_public)?;
    let sr = sender.dh(recipient_public)?;
    let key = oneshot_key(
        &sender.public(),
        recipient_public,
        &e_public,
        counter,
        direction,
        &er,
        &sr,
    );
    let mut prefix = [0u8; 8 + KEY_LEN];
    prefix[..8].copy_from_slice(&sender.key_id().0);
    prefix[8..].copy_from_slice(&e_public);
    Ok(seal_frame(
        &key,
        FrameType::OneShot,
        counter,
        &prefix,
        plaintext,
    ))
}

fn oneshot_key(
    sender: &[u8; KEY_LEN],
    recipient: &[u8; KEY_LEN],
    eph: &[u8; KEY_LEN],
    counter: u64,
    direction: OneShotDirection,
    er: &[u8; KEY_LEN],
    sr: &[u8; KEY_LEN],
) -> AeadKey {
    let mut t = Transcript::new(b"latchd/oneshot/v1");
    t.absorb(b"sender", sender);
    t.absorb(b"recipient", recipient);
    t.absorb(b"ephemeral", eph);
    t.absorb(b"counter", &counter.to_be_bytes());
    t.absorb(
        b"direction",
        match direction {
            OneShotDirection::AppToLock => b"app->lock",
            OneShotDirection::LockToApp => b"lock->app",
        },
    );
    let salt = t.finish();
    let mut ikm = Zeroizing::new([0u8; 2 * KEY_LEN]);
    ikm[..32].copy_from_slice(er);
    ikm[32..].copy_from_slice(sr);
    AeadKey::new(crypto::derive_key(&salt, ikm.as_ref(), b"latchd oneshot"))
}

/// The sender's key id of a one-shot frame, so the recipient can look the
/// sender's public key and last counter up before [`open_oneshot`].
pub fn oneshot_sender(frame: &[u8]) -> Result<KeyId, ChannelError> {
    let f = Frame::parse_as(frame, FrameType::OneShot)?;
    if f.body.len() < 8 + KEY_LEN + TAG_LEN {
        return Err(ChannelError::Malformed {
            got: frame.len(),
            why: "one-shot body too short",
        });
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&f.body[..8]);
    Ok(KeyId(id))
}

/// Open a one-shot message. `last_accepted` is the highest counter already
/// accepted from this sender (persisted by the caller; `None` if none).
/// Returns the message counter (persist it as the new `last_accepted`)
/// and the plaintext.
pub fn open_oneshot(
    recipient: &StaticKeypair,
    sender_public: &[u8; KEY_LEN],
    direction: OneShotDirection,
    last_accepted: Option<u64>,
    frame: &[u8],
) -> Result<(u64, Vec<u8>), ChannelError> {
    let sender_id = oneshot_sender(frame)?;
    if sender_id != KeyId::of(sender_public) {
        return Err(ChannelError::Unauthenticated);
    }
    let f = Frame::parse(frame)?;
    if let Some(last) = last_accepted {
        if f.counter <= last {
            return Err(ChannelError::Replay {
                got: f.counter,
                expected: last.saturating_add(1),
            });
        }
    }
    let mut eph = [0u8; KEY_LEN];
    eph.copy_from_slice(&f.body[8..8 + KEY_LEN]);
    let er = recipient.dh(&eph)?;
    let sr = recipient.dh(sender_public)?;
    let key = oneshot_key(
        sender_public,
        &recipient.public(),
        &eph,
        f.counter,
        direction,
        &er,
        &sr,
    );
    let aad_len = HEADER_LEN + 8 + KEY_LEN;
    let plaintext = key.open(f.counter, &frame[..aad_len], &frame[aad_len..])?;
    Ok((f.counter, plaintext))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::app::client::AppSessionStart;
    use rand_core::OsRng;

    fn pair() -> (StaticKeypair, StaticKeypair) {
        (
            StaticKeypair::generate(&mut OsRng),
            StaticKeypair::generate(&mut OsRng),
        )
    }

    /// A lock session and the app's end of it (also for other modules'
    /// tests of what travels over one).
    pub(crate) fn sessions(now: Instant) -> (SecureSession, SecureSession) {
        let (lock, app) = pair();
        let (lock_s, app_s) = handshake(&lock, &app, now, |accept| accept);
        (lock_s, app_s.expect("finish"))
    }

    /// One session handshake between `lock` and `app`, the accept frame
    /// passed through `on_air` on its way to the app: the lock's session
    /// and what the app made of the (perhaps altered) accept.
    fn handshake(
        lock: &StaticKeypair,
        app: &StaticKeypair,
        now: Instant,
        on_air: impl FnOnce(Vec<u8>) -> Vec<u8>,
    ) -> (SecureSession, Result<SecureSession, ChannelError>) {
        let (start, init) = AppSessionStart::new(app, lock.public(), &mut OsRng);
        let parsed = SessionInit::parse(&init).expect("init parses");
        let (lock_s, accept) = accept_session(
            lock,
            &parsed,
            &app.public(),
            &mut OsRng,
            now,
            DEFAULT_IDLE_TIMEOUT,
        )
        .expect("accept");
        let app_s = start.finish(app, &on_air(accept), now, DEFAULT_IDLE_TIMEOUT);
        (lock_s, app_s)
    }

    #[test]
    fn round_trip_both_directions() {
        let now = Instant::from_millis(1_000);
        let (mut lock, mut app) = sessions(now);
        let f = app.seal(now, b"unlock").expect("seal");
        assert_eq!(lock.open(now, &f).expect("open"), b"unlock");
        let r = lock.seal(now, b"ok").expect("seal");
        assert_eq!(app.open(now, &r).expect("open"), b"ok");
        // A frame sealed for one direction never opens in the other.
        let f2 = app.seal(now, b"x").expect("seal");
        assert_eq!(app.open(now, &f2), Err(ChannelError::Unauthenticated));
    }

    /// Issue 23 item 2, reflection: a frame the lock sealed, sent back to
    /// it at exactly the counter it expects, does not open: each direction
    /// has its own key. Fails if the two directions share a key.
    #[test]
    fn the_locks_own_frame_never_opens_on_the_lock() {
        let now = Instant::from_millis(1_000);
        let (mut lock, mut app) = sessions(now);
        let own = lock.seal(now, b"ok").expect("seal");
        assert_eq!(lock.recv_counter(), 0);
        assert_eq!(lock.open(now, &own), Err(ChannelError::Unauthenticated));
        assert_eq!(lock.recv_counter(), 0, "a refused frame changes nothing");
        // The app's genuine frame at that counter still opens.
        let f = app.seal(now, b"unlock").expect("seal");
        assert_eq!(lock.open(now, &f).expect("open"), b"unlock");
    }

    #[test]
    fn replay_and_reorder_are_rejected_without_state_change() {
        let now = Instant::from_millis(1_000);
        let (mut lock, mut app) = sessions(now);
        let f0 = app.seal(now, b"a").expect("seal");
        let f1 = app.seal(now, b"b").expect("seal");
        assert!(matches!(
            lock.open(now, &f1),
            Err(ChannelError::OutOfOrder {
                got: 1,
                expected: 0
            })
        ));
        assert_eq!(lock.recv_counter(), 0);
        lock.open(now, &f0).expect("in order");
        assert!(matches!(
            lock.open(now, &f0),
            Err(ChannelError::Replay {
                got: 0,
                expected: 1
            })
        ));
        lock.open(now, &f1).expect("in order");
    }

    #[test]
    fn counter_exhaustion_closes_the_session() {
        let now = Instant::from_millis(1_000);
        let (mut lock, mut app) = sessions(now);
        app.force_counters(u64::MAX - 1, 0);
        lock.force_counters(0, u64::MAX - 1);
        let last = app
            .seal(now, b"last")
            .expect("the last usable counter seals");
        lock.open(now, &last).expect("and opens");
        assert_eq!(app.seal(now, b"more"), Err(ChannelError::CounterExhausted));
        assert!(app.is_closed());
        assert_eq!(lock.open(now, &last), Err(ChannelError::CounterExhausted));
        assert!(lock.is_closed());
    }

    #[test]
    fn idle_timeout_closes_exactly_after_the_limit() {
        let now = Instant::from_millis(1_000);
        let (mut lock, mut app) = sessions(now);
        let f = app.seal(now, b"a").expect("seal");
        // Exactly at the limit is still alive; one millisecond later is not.
        lock.open(now + DEFAULT_IDLE_TIMEOUT, &f)
            .expect("at the limit");
        let g = app.seal(now, b"b").expect("seal");
        let late = now + DEFAULT_IDLE_TIMEOUT * 2 + Duration::from_millis(1);
        assert_eq!(
            lock.open(late, &g),
            Err(ChannelError::IdleTimeout(DEFAULT_IDLE_TIMEOUT))
        );
        assert_eq!(lock.open(late, &g), Err(ChannelError::SessionClosed));
        assert_eq!(lock.deadline(), None);
    }

    #[test]
    fn wrong_stored_key_cannot_open() {
        let now = Instant::from_millis(1_000);
        let (lock, app) = pair();
        let other = StaticKeypair::generate(&mut OsRng);
        let (start, init) = AppSessionStart::new(&app, lock.public(), &mut OsRng);
        let parsed = SessionInit::parse(&init).expect("parses");
        // The store returned a key whose id does not match.
        assert!(accept_session(
            &lock,
            &parsed,
            &other.public(),
            &mut OsRng,
            now,
            DEFAULT_IDLE_TIMEOUT
        )
        .is_err());
        // An impostor lock (other key pair) cannot produce an accept the app takes.
        let (_, accept) = accept_session(
            &other,
            &parsed,
            &app.public(),
            &mut OsRng,
            now,
            DEFAULT_IDLE_TIMEOUT,
        )
        .expect("accept");
        assert_eq!(
            start
                .finish(&app, &accept, now, DEFAULT_IDLE_TIMEOUT)
                .map(|_| ()),
            Err(ChannelError::Unauthenticated)
        );
    }

    #[test]
    fn fragment_header_rules() {
        let frame: Vec<u8> = (0..100u8).collect();
        let frags = fragment(&frame, 23).expect("fragments");
        assert!(frags.iter().all(|f| f.len() <= 20));
        let mut r = Reassembler::new(23).expect("mtu");
        // A continuation first is refused.
        assert!(r.push(&frags[1]).is_err());
        let mut out = None;
        for f in &frags {
            out = r.push(f).expect("in order");
        }
        assert_eq!(out, Some(frame));
        assert_eq!(fragment(&[1], 22), Err(FragmentError::BadMtu(22)));
    }

    #[test]
    fn oneshot_round_trip_and_replay() {
        let (lock, app) = pair();
        let f = seal_oneshot(
            &app,
            &lock.public(),
            OneShotDirection::AppToLock,
            7,
            b"unlock",
            &mut OsRng,
        )
        .expect("seal");
        assert_eq!(oneshot_sender(&f), Ok(app.key_id()));
        let (ctr, msg) = open_oneshot(
            &lock,
            &app.public(),
            OneShotDirection::AppToLock,
            Some(6),
            &f,
        )
        .expect("open");
        assert_eq!((ctr, msg.as_slice()), (7, &b"unlock"[..]));
        assert!(matches!(
            open_oneshot(
                &lock,
                &app.public(),
                OneShotDirection::AppToLock,
                Some(7),
                &f
            ),
            Err(ChannelError::Replay { .. })
        ));
        // Reflected back as if from the lock: refused.
        assert_eq!(
            open_oneshot(&app, &lock.public(), OneShotDirection::LockToApp, None, &f),
            Err(ChannelError::Unauthenticated)
        );
    }

    /// The frame types' bytes are the wire contract with every app in the
    /// field: each parses back to its type, and no other byte parses.
    #[test]
    fn every_frame_type_has_its_wire_byte_and_no_other_byte_parses() {
        let types = [
            (FrameType::PairInit, 0x01),
            (FrameType::PairReply, 0x02),
            (FrameType::PairConfirm, 0x03),
            (FrameType::PairDone, 0x04),
            (FrameType::SessionInit, 0x10),
            (FrameType::SessionAccept, 0x11),
            (FrameType::Data, 0x20),
            (FrameType::OneShot, 0x30),
            (FrameType::Error, 0x7F),
        ];
        for (kind, byte) in types {
            let frame = encode_plain(kind, &[0xAA]);
            assert_eq!(frame[1], byte, "{kind:?}");
            let parsed = Frame::parse(&frame).expect("parses");
            assert_eq!((parsed.kind, parsed.body), (kind, &[0xAA][..]), "{kind:?}");
        }
        for byte in 0..=u8::MAX {
            if types.iter().any(|&(_, b)| b == byte) {
                continue;
            }
            let mut frame = encode_plain(FrameType::Data, &[0xAA]);
            frame[1] = byte;
            assert_eq!(
                Frame::parse(&frame),
                Err(ChannelError::UnexpectedFrame(byte)),
                "byte {byte:#04x}"
            );
        }
    }

    /// Error codes are the other half of the wire contract: the byte of
    /// each decodes to it, and a byte no code has decodes to nothing.
    #[test]
    fn every_error_code_round_trips_through_its_byte() {
        use ErrorCode::*;
        let codes = [
            (MalformedFrame, 0x01),
            (UnsupportedVersion, 0x02),
            (UnexpectedFrame, 0x03),
            (TooLarge, 0x04),
            (Replay, 0x05),
            (OutOfOrder, 0x06),
            (Unauthenticated, 0x07),
            (SessionClosed, 0x08),
            (IdleTimeout, 0x09),
            (CounterExhausted, 0x0A),
            (BadFragment, 0x0B),
            (PairingModeInactive, 0x10),
            (UnknownKey, 0x12),
            (CodeExpired, 0x13),
            (CodeAttemptsExhausted, 0x14),
            (CodeAlreadyRedeemed, 0x15),
            (UnknownCode, 0x16),
            (Forbidden, 0x20),
            (OutsideValidity, 0x21),
            (ClockUnknown, 0x22),
            (MalformedCommand, 0x23),
            (UnsupportedCommandVersion, 0x24),
            (UnknownCommand, 0x25),
            (Stale, 0x26),
            (Refused, 0x30),
        ];
        for (code, byte) in codes {
            assert_eq!(code as u8, byte, "{code:?}");
            assert_eq!(ErrorCode::from_u8(byte), Some(code), "{byte:#04x}");
            // As the app sees it: an error frame refusing a handshake.
            assert_eq!(
                Frame::parse_as(&error_frame(code), FrameType::PairReply),
                Err(ChannelError::PeerError(code))
            );
        }
        for byte in (0..=u8::MAX).filter(|b| codes.iter().all(|&(_, c)| c != *b)) {
            assert_eq!(ErrorCode::from_u8(byte), None, "{byte:#04x}");
        }
    }

    /// The largest message (4,096 bytes) sealed one-shot is the largest
    /// frame (4,164 bytes, what the app and the reassembler size for); it
    /// parses, crosses the air in fragments and opens. One byte more is
    /// refused at each step, before any work.
    #[test]
    fn the_largest_message_fills_the_largest_frame_and_one_byte_more_is_refused() {
        assert_eq!((MAX_BODY, MAX_FRAME), (4_152, 4_164));
        let (lock, app) = pair();
        let largest = vec![0x5A; MAX_PLAINTEXT];
        let frame = seal_oneshot(
            &app,
            &lock.public(),
            OneShotDirection::AppToLock,
            1,
            &largest,
            &mut OsRng,
        )
        .expect("the largest message seals");
        assert_eq!(frame.len(), MAX_FRAME);
        assert_eq!(Frame::parse(&frame).expect("parses").body.len(), MAX_BODY);
        for mtu in [MIN_ATT_MTU, MAX_ATT_MTU] {
            let mut r = Reassembler::new(mtu).expect("mtu");
            let mut whole = None;
            for f in fragment(&frame, mtu).expect("fragments") {
                whole = r.push(&f).expect("in order");
            }
            assert_eq!(whole.as_deref(), Some(&frame[..]), "mtu {mtu}");
        }
        let (_, opened) = open_oneshot(
            &lock,
            &app.public(),
            OneShotDirection::AppToLock,
            None,
            &frame,
        )
        .expect("opens");
        assert_eq!(opened.as_slice(), &largest[..]);

        let too_large = vec![0x5A; MAX_PLAINTEXT + 1];
        assert_eq!(
            seal_oneshot(
                &app,
                &lock.public(),
                OneShotDirection::AppToLock,
                2,
                &too_large,
                &mut OsRng,
            ),
            Err(ChannelError::TooLarge {
                what: "message",
                got: MAX_PLAINTEXT + 1,
                max: MAX_PLAINTEXT
            })
        );
        let mut long = frame.clone();
        long.push(0);
        assert_eq!(
            Frame::parse(&long),
            Err(ChannelError::TooLarge {
                what: "frame",
                got: MAX_FRAME + 1,
                max: MAX_FRAME
            })
        );
        assert_eq!(
            fragment(&long, MAX_ATT_MTU),
            Err(FragmentError::TooLarge {
                got: MAX_FRAME + 1,
                max: MAX_FRAME
            })
        );

        // In a session: the largest message seals and opens, one more not.
        let now = Instant::from_millis(1_000);
        let (mut lock_s, mut app_s) = sessions(now);
        let sealed = app_s.seal(now, &largest).expect("seal");
        assert_eq!(lock_s.open(now, &sealed).expect("open"), largest);
        assert!(matches!(
            app_s.seal(now, &too_large),
            Err(ChannelError::TooLarge { .. })
        ));
    }

    /// Each malformation alone is refused with its own error; a frame at
    /// each bound parses.
    #[test]
    fn a_frame_is_refused_for_each_malformation_alone() {
        let good = encode_plain(FrameType::PairInit, &[1, 2, 3]);
        assert!(Frame::parse(&good).is_ok());
        // The header alone is a frame with an empty body; one byte less is not.
        let empty = encode_plain(FrameType::PairDone, &[]);
        assert_eq!(empty.len(), HEADER_LEN);
        assert_eq!(Frame::parse(&empty).expect("header only").body, b"");
        assert!(matches!(
            Frame::parse(&empty[..HEADER_LEN - 1]),
            Err(ChannelError::Malformed { got: 11, .. })
        ));
        let mut v = good.clone();
        v[0] = VERSION + 1;
        assert_eq!(
            Frame::parse(&v),
            Err(ChannelError::UnsupportedVersion(VERSION + 1))
        );
        for delta in [-1i32, 1] {
            let mut l = good.clone();
            l[11] = (3 + delta) as u8;
            assert!(
                matches!(Frame::parse(&l), Err(ChannelError::Malformed { .. })),
                "length field {delta:+}"
            );
        }
        // A counter on a handshake frame is refused; on sealed frames it is
        // what they carry.
        let counted = |kind| {
            let mut f = encode_plain(kind, &[0; 20]);
            f[9] = 5;
            f
        };
        for kind in [
            FrameType::PairInit,
            FrameType::SessionInit,
            FrameType::Error,
        ] {
            assert!(
                matches!(
                    Frame::parse(&counted(kind)),
                    Err(ChannelError::Malformed { .. })
                ),
                "{kind:?}"
            );
        }
        for kind in [FrameType::Data, FrameType::OneShot] {
            assert_eq!(Frame::parse(&counted(kind)).expect("sealed").counter, 5);
        }
        // parse_as: the wrong type, and error frames that are not one known code.
        assert_eq!(
            Frame::parse_as(&good, FrameType::SessionInit),
            Err(ChannelError::UnexpectedFrame(0x01))
        );
        let two = encode_plain(FrameType::Error, &[0x07, 0x07]);
        assert!(matches!(
            Frame::parse_as(&two, FrameType::PairReply),
            Err(ChannelError::Malformed { .. })
        ));
        let unknown = encode_plain(FrameType::Error, &[0x11]);
        assert_eq!(
            Frame::parse_as(&unknown, FrameType::PairReply),
            Err(ChannelError::UnexpectedFrame(0x7F))
        );
        // Asked for an error frame, one is returned as a frame.
        let refusal = error_frame(ErrorCode::Forbidden);
        let f = Frame::parse_as(&refusal, FrameType::Error).expect("an error frame");
        assert_eq!((f.kind, f.body), (FrameType::Error, &[0x20][..]));
    }

    /// The fragment layout on the air, and each broken fragment refused
    /// alone with the partial frame dropped (the next frame reassembles).
    #[test]
    fn fragments_have_their_layout_and_each_broken_one_is_refused_alone() {
        assert_eq!(fragment(&[1], 22), Err(FragmentError::BadMtu(22)));
        assert_eq!(fragment(&[1], 518), Err(FragmentError::BadMtu(518)));
        assert!(matches!(
            Reassembler::new(518),
            Err(FragmentError::BadMtu(518))
        ));
        assert_eq!(
            fragment(&[], 23),
            Err(FragmentError::TooLarge {
                got: 0,
                max: MAX_FRAME
            })
        );
        // 100 bytes at MTU 23 (20 bytes an ATT write): 17 in the first
        // after its flags and total, then 19 a fragment: 17 + 4 × 19 + 7.
        let frame: Vec<u8> = (0..100u8).collect();
        let frags = fragment(&frame, 23).expect("fragments");
        let lens: Vec<usize> = frags.iter().map(Vec::len).collect();
        assert_eq!(lens, [20, 20, 20, 20, 20, 8]);
        assert_eq!(frags[0][..4], [0x80, 0, 100, 0]);
        assert_eq!(frags[1][..2], [0x01, 17]);
        assert_eq!(frags[5][..2], [0x40 | 5, 93]);
        // One fragment only: first and last.
        assert_eq!(fragment(&[9, 8], 23), Ok(vec![vec![0xC0, 0, 2, 9, 8]]));
        // At the largest MTU a write carries 514 bytes.
        let big = vec![7u8; 1_000];
        let lens: Vec<usize> = fragment(&big, 517)
            .expect("fragments")
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(lens, [514, 490]); // 511 after the first's header, 489 + 1

        let mut r = Reassembler::with_limit(23, 50).expect("mtu");
        let refused = |r: &mut Reassembler, frag: &[u8], want: FragmentError| {
            assert_eq!(r.push(frag), Err(want.clone()), "{frag:?}");
            assert!(!r.in_progress(), "{want:?} dropped the partial frame");
        };
        refused(
            &mut r,
            &[0u8; 21],
            FragmentError::FragmentTooLong { got: 21, max: 20 },
        );
        refused(&mut r, &[], FragmentError::Malformed("empty fragment"));
        refused(
            &mut r,
            &[0x81, 0, 5, 1],
            FragmentError::Sequence {
                got: 1,
                expected: 0,
            },
        );
        refused(
            &mut r,
            &[0x80, 0],
            FragmentError::Malformed("first fragment lacks the total length"),
        );
        refused(
            &mut r,
            &[0xC0, 0, 0],
            FragmentError::Malformed("total length is zero"),
        );
        refused(
            &mut r,
            &[0x80, 0, 51, 1],
            FragmentError::TooLarge { got: 51, max: 50 },
        );
        refused(
            &mut r,
            &[0x41, 1],
            FragmentError::Malformed("continuation fragment without a first fragment"),
        );
        let first = [0x80, 0, 5, 1, 2];
        assert_eq!(r.push(&first), Ok(None));
        assert!(r.in_progress());
        refused(
            &mut r,
            &first,
            FragmentError::Malformed("a new frame started before the previous one ended"),
        );
        r.push(&first).expect("first");
        refused(
            &mut r,
            &[0x42, 3],
            FragmentError::Sequence {
                got: 2,
                expected: 1,
            },
        );
        r.push(&first).expect("first");
        refused(
            &mut r,
            &[0x01],
            FragmentError::Malformed("empty middle fragment"),
        );
        r.push(&first).expect("first");
        refused(
            &mut r,
            &[0x41, 3, 4, 5, 6],
            FragmentError::Malformed("fragments exceed the announced total length"),
        );
        r.push(&first).expect("first");
        refused(
            &mut r,
            &[0x41, 3],
            FragmentError::Malformed("last fragment arrived before the announced length"),
        );
        // The largest frame the limit allows, in 3 fragments, then a frame
        // whose last fragment is empty.
        let fifty: Vec<u8> = (0..50).collect();
        let mut out = None;
        for f in fragment(&fifty, 23).expect("fragments") {
            out = r.push(&f).expect("in order");
        }
        assert_eq!(out, Some(fifty));
        assert_eq!(r.push(&[0x80, 0, 2, 1, 2]), Ok(None));
        assert_eq!(r.push(&[0x41]), Ok(Some(vec![1, 2])));
        assert!(!r.in_progress());
        // What the app is told for each: too large, or a broken fragment.
        assert_eq!(
            FragmentError::TooLarge { got: 51, max: 50 }.code(),
            ErrorCode::TooLarge
        );
        for e in [
            FragmentError::BadMtu(22),
            FragmentError::FragmentTooLong { got: 21, max: 20 },
            FragmentError::Malformed("empty fragment"),
            FragmentError::Sequence {
                got: 2,
                expected: 1,
            },
        ] {
            assert_eq!(e.code(), ErrorCode::BadFragment, "{e:?}");
        }
        // A limit above the protocol's is the protocol's.
        let mut r = Reassembler::with_limit(23, usize::MAX).expect("mtu");
        let total = (MAX_FRAME + 1) as u16;
        assert_eq!(
            r.push(&[0x80, (total >> 8) as u8, total as u8, 0]),
            Err(FragmentError::TooLarge {
                got: MAX_FRAME + 1,
                max: MAX_FRAME
            })
        );
    }

    /// The session handshake's frames have their exact sizes; a short or
    /// long one, a tampered confirmation or an accept with a counter is
    /// refused, each alone.
    #[test]
    fn session_handshake_frames_are_exact_and_each_bad_one_is_refused() {
        let now = Instant::from_millis(1_000);
        let (lock, app) = pair();
        let (_, init) = AppSessionStart::new(&app, lock.public(), &mut OsRng);
        assert_eq!(init.len(), HEADER_LEN + SESSION_INIT_BODY);
        assert_eq!(SESSION_INIT_BODY, 40);
        let parsed = SessionInit::parse(&init).expect("parses");
        assert_eq!(parsed.key_id, app.key_id());
        for body in [SESSION_INIT_BODY - 1, SESSION_INIT_BODY + 1] {
            let f = encode_plain(FrameType::SessionInit, &vec![1; body]);
            assert!(
                matches!(SessionInit::parse(&f), Err(ChannelError::Malformed { .. })),
                "{body}-byte body"
            );
        }
        assert_eq!(
            SessionInit::parse(&encode_plain(FrameType::PairInit, &[1; 40])),
            Err(ChannelError::UnexpectedFrame(0x01))
        );
        // A low-order ephemeral key (all zeros) would make the shared secret
        // known to anyone: refused, and told to the app as unauthenticated.
        let weak =
            SessionInit::parse(&SessionInit::encode(&app.key_id(), &[0; KEY_LEN])).expect("parses");
        let refused = accept_session(
            &lock,
            &weak,
            &app.public(),
            &mut OsRng,
            now,
            DEFAULT_IDLE_TIMEOUT,
        )
        .map(|_| ());
        assert_eq!(refused, Err(ChannelError::WeakKey));
        assert_eq!(ChannelError::WeakKey.code(), ErrorCode::Unauthenticated);

        // The app's end of one attempt, the accept altered on the air.
        let attempt = |on_air: &dyn Fn(Vec<u8>) -> Vec<u8>| {
            handshake(&lock, &app, now, |accept| {
                assert_eq!(accept.len(), HEADER_LEN + SESSION_ACCEPT_BODY);
                on_air(accept)
            })
            .1
            .map(|s| s.side())
        };
        assert_eq!(attempt(&|a| a), Ok(Side::App));
        for at in [
            HEADER_LEN,
            HEADER_LEN + KEY_LEN,
            HEADER_LEN + SESSION_ACCEPT_BODY - 1,
        ] {
            let r = attempt(&|mut a| {
                a[at] ^= 1;
                a
            });
            // A flipped bit of the lock's ephemeral key may make it a weak
            // key; either way the session is refused.
            assert!(
                matches!(
                    r,
                    Err(ChannelError::Unauthenticated | ChannelError::WeakKey)
                ),
                "bit flipped at {at}: {r:?}"
            );
        }
        let short = attempt(&|mut a| {
            a.pop();
            a[11] -= 1;
            a
        });
        assert!(
            matches!(short, Err(ChannelError::Malformed { .. })),
            "{short:?}"
        );
        let long = attempt(&|mut a| {
            a.push(0);
            a[11] += 1;
            a
        });
        assert!(
            matches!(long, Err(ChannelError::Malformed { .. })),
            "{long:?}"
        );
    }

    /// A session's counters, sides, deadline and close, as its callers
    /// (the connection's timer, the app) read them.
    #[test]
    fn a_session_keeps_its_counters_and_deadline_and_refuses_after_close() {
        let t0 = Instant::from_millis(1_000);
        let (mut lock, mut app) = sessions(t0);
        assert_eq!((lock.side(), app.side()), (Side::Lock, Side::App));
        // What a log shows of a session: its side and counters, no key.
        let shown = format!("{lock:?}");
        assert!(
            shown
                .starts_with("SecureSession { side: Lock, send_ctr: 0, recv_ctr: 0, closed: false"),
            "{shown}"
        );
        assert!(!shown.contains("key"), "{shown}");
        assert_eq!(lock.deadline(), Some(t0 + DEFAULT_IDLE_TIMEOUT));
        let t1 = t0 + Duration::from_secs(5);
        let f = app.seal(t1, b"one").expect("seal");
        assert_eq!((app.send_counter(), app.recv_counter()), (1, 0));
        assert_eq!(app.deadline(), Some(t1 + DEFAULT_IDLE_TIMEOUT));
        // A refused frame does not keep the session alive.
        let mut forged = f.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(lock.open(t1, &forged), Err(ChannelError::Unauthenticated));
        assert_eq!(lock.deadline(), Some(t0 + DEFAULT_IDLE_TIMEOUT));
        assert_eq!(lock.open(t1, &f).expect("open"), b"one");
        assert_eq!((lock.send_counter(), lock.recv_counter()), (0, 1));
        assert_eq!(lock.deadline(), Some(t1 + DEFAULT_IDLE_TIMEOUT));
        // An empty message is a bare tag; a body shorter than a tag or
        // longer than the largest message is malformed.
        let empty = app.seal(t1, b"").expect("seal");
        assert_eq!(empty.len(), HEADER_LEN + TAG_LEN);
        assert_eq!(lock.open(t1, &empty).expect("open"), b"");
        for body in [TAG_LEN - 1, MAX_PLAINTEXT + TAG_LEN + 1] {
            let mut f = encode_plain(FrameType::Data, &vec![0; body]);
            f[9] = 2;
            assert!(
                matches!(lock.open(t1, &f), Err(ChannelError::Malformed { .. })),
                "{body}-byte body"
            );
        }
        assert_eq!(lock.recv_counter(), 2);
        assert!(!lock.is_closed());
        lock.close();
        assert!(lock.is_closed());
        assert_eq!(lock.deadline(), None);
        let g = app.seal(t1, b"two").expect("seal");
        assert_eq!(lock.open(t1, &g), Err(ChannelError::SessionClosed));
        assert_eq!(lock.seal(t1, b"x"), Err(ChannelError::SessionClosed));
    }

    /// A one-shot frame's layout (the broker sees the sender's key id and
    /// nothing else in clear), each short or foreign frame refused, and the
    /// counter compared with the last accepted one at its bound.
    #[test]
    fn a_oneshot_is_refused_when_short_foreign_or_not_above_the_last_counter() {
        let (lock, app) = pair();
        let seal = |counter, msg: &[u8]| {
            seal_oneshot(
                &app,
                &lock.public(),
                OneShotDirection::AppToLock,
                counter,
                msg,
                &mut OsRng,
            )
            .expect("seal")
        };
        let open = |last, f: &[u8]| {
            open_oneshot(&lock, &app.public(), OneShotDirection::AppToLock, last, f)
        };
        let f = seal(9, b"unlock");
        assert_eq!(f.len(), HEADER_LEN + 8 + KEY_LEN + 6 + TAG_LEN);
        assert_eq!(
            f[..HEADER_LEN],
            header(FrameType::OneShot, 9, f.len() - HEADER_LEN)
        );
        assert_eq!(f[HEADER_LEN..HEADER_LEN + 8], app.key_id().0);
        // At the bound: the last accepted counter is refused, one below opens.
        assert_eq!(
            open(Some(9), &f),
            Err(ChannelError::Replay {
                got: 9,
                expected: 10
            })
        );
        assert_eq!(open(Some(8), &f).expect("opens"), (9, b"unlock".to_vec()));
        assert_eq!(open(None, &f).expect("opens").0, 9);
        // An empty message is the shortest frame; a byte less is malformed.
        let empty = seal(10, b"");
        assert_eq!(oneshot_sender(&empty), Ok(app.key_id()));
        assert_eq!(open(Some(9), &empty).expect("opens"), (10, vec![]));
        let mut short = empty.clone();
        short.pop();
        short[11] -= 1;
        assert!(matches!(
            oneshot_sender(&short),
            Err(ChannelError::Malformed { .. })
        ));
        assert!(matches!(
            open(None, &short),
            Err(ChannelError::Malformed { .. })
        ));
        // Sealed by someone else's key for this lock: refused before any work.
        let stranger = StaticKeypair::generate(&mut OsRng);
        let foreign = seal_oneshot(
            &stranger,
            &lock.public(),
            OneShotDirection::AppToLock,
            11,
            b"unlock",
            &mut OsRng,
        )
        .expect("seal");
        assert_eq!(open(None, &foreign), Err(ChannelError::Unauthenticated));
        // The stranger's frame carrying the app's key id: the AEAD refuses.
        let mut claimed = foreign.clone();
        claimed[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&app.key_id().0);
        assert_eq!(open(None, &claimed), Err(ChannelError::Unauthenticated));
        // A session data frame is not a one-shot.
        assert_eq!(
            oneshot_sender(&encode_plain(FrameType::Data, &[0; 60])),
            Err(ChannelError::UnexpectedFrame(0x20))
        );
    }
}
