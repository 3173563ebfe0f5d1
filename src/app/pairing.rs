//! Pairing (B-5): how an app's long-term X25519 key becomes an *owner* key
//! bound to an administrator, and how a guest app redeems a one-time guest
//! pairing code for a *guest* key. Sans-IO; the lock side lives here, the
//! app side in [`super::client`].
//!
//! Both are the same 4-message handshake, authenticated by a secret the app
//! got out of band — the lock's **verification code** (QR label, spoken in
//! system information, B-4.10) for the owner, a **guest pairing code** (made
//! by the owner's app, B-6.6) for a guest:
//!
//! ```text
//!  app                                                        lock
//!  PairInit    kind ‖ code_id ‖ As ‖ Ae  ───────────────────►  owner: pairing mode? (B-5)
//!                                                             guest: code valid? attempt++
//!              ◄───────────────────────────  PairReply  Ls ‖ Le
//!  T  = H(kind, code_id, As, Ae, Ls, Le)
//!  ck = HKDF(salt = T, ee ‖ se ‖ es ‖ K(code))   (ee = DH(Ae,Le), se = DH(As,Le), es = DH(Ae,Ls))
//!  PairConfirm HMAC(ck_app, T)  ───────────────────────────►  verify → store As as owner/guest
//!              ◄───────────────────────────  PairDone   HMAC(ck_lock, T)
//!  verify → store Ls as the lock's key
//! ```
//!
//! A man in the middle who swaps `Ae`/`Le` (or the static keys) for his own
//! cannot compute either confirmation without the code, so both ends fail.
//! The app proves first, so an attacker posing as the app learns nothing it
//! could test offline; only an attacker posing as the *lock* to a real app
//! gets a tag to test guesses against, which is why the codes carry ≥ 104
//! bits of entropy (see `docs/ble-protocol.md`). The `se`/`es` terms make
//! each side prove it holds the private half of the static key it presents.

use crate::core::time::Instant;

use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::crypto::{self, KeyId, StaticKeypair, Transcript, CONFIRM_LEN, KEY_LEN};
use super::protocol::{encode_plain, ChannelError, ErrorCode, Frame, FrameType};
use crate::core::time::WallTime;
use crate::core::types::limits;

/// Bytes of a code (verification code or guest code): 120 bits, 24 base32
/// characters.
pub const CODE_BYTES: usize = 15;
/// Characters of a code in base32 (without separators).
pub const CODE_CHARS: usize = 24;
/// Secret bytes of a guest code (the other 2 bytes are its public id):
/// 104 bits.
pub const GUEST_SECRET_BYTES: usize = CODE_BYTES - 2;
/// A guest code expires this long after it was made (or at the end of the
/// guest key's window, whichever is first).
pub const GUEST_CODE_TTL_SECS: u64 = 24 * 3600;

/// Body of a pair-init frame: kind (1) ‖ code id (2) ‖ As (32) ‖ Ae (32).
pub const PAIR_INIT_BODY: usize = 3 + 2 * KEY_LEN;
/// Body of a pair-reply frame: Ls (32) ‖ Le (32).
pub const PAIR_REPLY_BODY: usize = 2 * KEY_LEN;

const RFC4648: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Pairing failed; nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PairingError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("owner pairing is only possible in pairing mode: hold SET on the back panel until the prompt, then retry within 3 minutes")]
    PairingModeInactive,
    #[error("this guest pairing code has expired; ask the owner for a new one")]
    CodeExpired,
    #[error(
        "this guest pairing code was tried too often and is burned; ask the owner for a new one"
    )]
    CodeAttemptsExhausted,
    #[error("this guest pairing code was already redeemed; ask the owner for a new one")]
    CodeAlreadyRedeemed,
    #[error("the lock's clock is not set, so a guest code cannot be checked; the owner must sync the time first")]
    ClockUnknown,
    #[error("guest code id {got} does not belong to this invite (expected {expected})")]
    WrongInvite { got: u16, expected: u16 },
    #[error("key confirmation failed: wrong code or a man in the middle; nothing was paired")]
    ConfirmationFailed,
    #[error("pairing request kind {0} is unknown")]
    UnknownKind(u8),
    #[error("finish called for a {got:?} pairing with the wrong method; use the matching finish")]
    KindMismatch { got: PairKind },
}

impl PairingError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            PairingError::Channel(e) => e.code(),
            PairingError::PairingModeInactive => ErrorCode::PairingModeInactive,
            PairingError::CodeExpired => ErrorCode::CodeExpired,
            PairingError::CodeAttemptsExhausted => ErrorCode::CodeAttemptsExhausted,
            PairingError::CodeAlreadyRedeemed => ErrorCode::CodeAlreadyRedeemed,
            PairingError::ClockUnknown => ErrorCode::ClockUnknown,
            PairingError::WrongInvite { .. } => ErrorCode::UnknownCode,
            PairingError::ConfirmationFailed => ErrorCode::Unauthenticated,
            PairingError::UnknownKind(_) => ErrorCode::MalformedFrame,
            PairingError::KindMismatch { .. } => ErrorCode::UnexpectedFrame,
        }
    }
}

/// A code string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodeParseError {
    #[error("code has {0} characters; it must have 24 (separators and spaces are ignored)")]
    Length(usize),
    #[error("code character {0:?} is not in A–Z, 2–7; check for 0/O and 1/I mix-ups")]
    Character(char),
}

fn base32_encode(bytes: &[u8; CODE_BYTES]) -> String {
    let mut out = String::with_capacity(CODE_CHARS + CODE_CHARS / 4);
    // 15 bytes = 120 bits = exactly 24 groups of 5 bits, no padding.
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(RFC4648[((acc >> bits) & 0x1F) as usize] as char);
        }
    }
    out
}

fn base32_decode(s: &str) -> Result<[u8; CODE_BYTES], CodeParseError> {
    let chars: Vec<char> = s
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if chars.len() != CODE_CHARS {
        return Err(CodeParseError::Length(chars.len()));
    }
    let mut out = [0u8; CODE_BYTES];
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut i = 0;
    for c in chars {
        let v = RFC4648
            .iter()
            .position(|&a| a as char == c)
            .ok_or(CodeParseError::Character(c))?;
        acc = (acc << 5) | v as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out[i] = (acc >> bits) as u8;
            i += 1;
        }
    }
    Ok(out)
}

fn grouped(s: &str) -> String {
    s.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// The lock's verification code: 120 random bits made at manufacture,
/// printed (base32, in the QR label) and spoken in system information
/// (B-4.10). It authenticates owner pairing.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct VerificationCode([u8; CODE_BYTES]);

impl VerificationCode {
    /// A fresh random code (factory provisioning).
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut b = [0u8; CODE_BYTES];
        rng.fill_bytes(&mut b);
        VerificationCode(b)
    }

    /// Rebuild from stored bytes.
    pub fn from_bytes(bytes: [u8; CODE_BYTES]) -> Self {
        VerificationCode(bytes)
    }

    /// The raw bytes, for sealed storage.
    pub fn to_bytes(&self) -> Zeroizing<[u8; CODE_BYTES]> {
        Zeroizing::new(self.0)
    }

    /// Parse what the app read from the QR code or the user typed
    /// (case-insensitive; `-` and spaces ignored).
    pub fn parse(s: &str) -> Result<Self, CodeParseError> {
        base32_decode(s).map(VerificationCode)
    }

    /// The printable/speakable form, `XXXX-XXXX-XXXX-XXXX-XXXX-XXXX`.
    pub fn display(&self) -> Zeroizing<String> {
        Zeroizing::new(grouped(&base32_encode(&self.0)))
    }

    fn key(&self) -> Zeroizing<[u8; KEY_LEN]> {
        code_key(b"owner", &self.0)
    }
}

impl std::fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerificationCode(..)")
    }
}

/// The verification code owner pairing accepts *now*. Issue 13 item 6:
/// the label's code pairs the first owner only; every owner pairing moves
/// the lock to the next code, which system information speaks at the
/// lock. The runtime sets it when the engine commits a new generation;
/// clones share it.
#[derive(Clone)]
pub struct CurrentCode(std::sync::Arc<std::sync::RwLock<VerificationCode>>);

impl CurrentCode {
    pub fn new(code: VerificationCode) -> Self {
        CurrentCode(std::sync::Arc::new(std::sync::RwLock::new(code)))
    }

    pub fn get(&self) -> VerificationCode {
        // A poisoned lock still holds a whole code (the writer only swaps).
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, code: VerificationCode) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = code;
    }
}

impl From<std::sync::Arc<VerificationCode>> for CurrentCode {
    fn from(code: std::sync::Arc<VerificationCode>) -> Self {
        CurrentCode::new((*code).clone())
    }
}

impl From<VerificationCode> for CurrentCode {
    fn from(code: VerificationCode) -> Self {
        CurrentCode::new(code)
    }
}

impl std::fmt::Debug for CurrentCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CurrentCode(..)")
    }
}

/// A one-time guest pairing code: 2-byte public code id + 104 secret bits,
/// shown as 24 base32 characters. The owner's app passes it to the guest.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct GuestPairingCode([u8; CODE_BYTES]);

impl GuestPairingCode {
    /// The public id the lock uses to find the invite.
    pub fn code_id(&self) -> u16 {
        u16::from_be_bytes([self.0[0], self.0[1]])
    }

    /// Parse a code string.
    pub fn parse(s: &str) -> Result<Self, CodeParseError> {
        base32_decode(s).map(GuestPairingCode)
    }

    /// From the 15 raw bytes (as carried in a sealed response).
    pub fn from_bytes(bytes: [u8; CODE_BYTES]) -> Self {
        GuestPairingCode(bytes)
    }

    /// The 15 raw bytes.
    pub fn to_bytes(&self) -> Zeroizing<[u8; CODE_BYTES]> {
        Zeroizing::new(self.0)
    }

    /// The printable form.
    pub fn display(&self) -> Zeroizing<String> {
        Zeroizing::new(grouped(&base32_encode(&self.0)))
    }

    fn key(&self) -> Zeroizing<[u8; KEY_LEN]> {
        code_key(b"guest", &self.0)
    }
}

impl PartialEq for GuestPairingCode {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for GuestPairingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GuestPairingCode(id {}, ..)", self.code_id())
    }
}

fn code_key(kind: &[u8], code: &[u8; CODE_BYTES]) -> Zeroizing<[u8; KEY_LEN]> {
    crypto::derive_key(b"latchd/pair-secret/v1", code, kind)
}

/// A guest invite as the lock stores it (the caller seals the secret,
/// B-11.2). Made by [`GuestInvite::create`] when the owner asks for a guest
/// BLE key; redeemed once through guest pairing.
#[derive(Clone)]
pub struct GuestInvite {
    /// Public id, first two bytes of the code.
    pub code_id: u16,
    secret: [u8; GUEST_SECRET_BYTES],
    /// Start of the guest key's validity window (inclusive).
    pub key_valid_from: WallTime,
    /// End of the guest key's validity window (exclusive).
    pub key_valid_until: WallTime,
    /// The code cannot be redeemed at or after this time.
    pub code_expires_at: WallTime,
    /// Redemption attempts started (each costs one, success or not).
    pub attempts: u8,
    /// Redeemed: the code is spent.
    pub redeemed: bool,
}

impl Drop for GuestInvite {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl std::fmt::Debug for GuestInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestInvite")
            .field("code_id", &self.code_id)
            .field("key_valid_from", &self.key_valid_from)
            .field("key_valid_until", &self.key_valid_until)
            .field("code_expires_at", &self.code_expires_at)
            .field("attempts", &self.attempts)
            .field("redeemed", &self.redeemed)
            .finish_non_exhaustive()
    }
}

impl GuestInvite {
    /// Make an invite and its code. `code_id` is a free id chosen by the
    /// caller's store. The code expires after [`GUEST_CODE_TTL_SECS`] or at
    /// the end of the key's window, whichever comes first.
    pub fn create(
        code_id: u16,
        key_valid_from: WallTime,
        key_valid_until: WallTime,
        now: WallTime,
        rng: &mut impl CryptoRngCore,
    ) -> (Self, GuestPairingCode) {
        let mut secret = [0u8; GUEST_SECRET_BYTES];
        rng.fill_bytes(&mut secret);
        let expires = WallTime(
            now.0
                .saturating_add(GUEST_CODE_TTL_SECS as i64)
                .min(key_valid_until.0),
        );
        let invite = GuestInvite {
            code_id,
            secret,
            key_valid_from,
            key_valid_until,
            code_expires_at: expires,
            attempts: 0,
            redeemed: false,
        };
        let code = invite.code();
        (invite, code)
    }

    /// Rebuild from storage.
    pub fn restore(
        code_id: u16,
        secret: [u8; GUEST_SECRET_BYTES],
        key_valid_from: WallTime,
        key_valid_until: WallTime,
        code_expires_at: WallTime,
        attempts: u8,
        redeemed: bool,
    ) -> Self {
        GuestInvite {
            code_id,
            secret,
            key_valid_from,
            key_valid_until,
            code_expires_at,
            attempts,
            redeemed,
        }
    }

    /// The record the engine keeps (`CreateGuestInvite`; the engine
    /// assigns the slot).
    pub fn to_stored(&self) -> crate::core::types::GuestInvite {
        crate::core::types::GuestInvite {
            slot: crate::core::types::AppKeyId(0),
            code_id: self.code_id,
            secret: self.secret,
            validity: crate::core::time::Validity {
                from: Some(self.key_valid_from),
                until: Some(self.key_valid_until),
            },
            code_expires_at: self.code_expires_at,
            attempts: self.attempts,
        }
    }

    /// Back from the engine's record for a redemption the engine has
    /// already counted: this module's check wants the count *before* the
    /// attempt (it adds the attempt itself). `None` for a record without
    /// both ends of its window (the engine never stores one).
    pub fn from_counted(stored: &crate::core::types::GuestInvite) -> Option<Self> {
        Some(Self::restore(
            stored.code_id,
            stored.secret,
            stored.validity.from?,
            stored.validity.until?,
            stored.code_expires_at,
            stored.attempts.saturating_sub(1),
            false,
        ))
    }

    /// The secret bytes, for sealed storage.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; GUEST_SECRET_BYTES]> {
        Zeroizing::new(self.secret)
    }

    fn code(&self) -> GuestPairingCode {
        let mut b = [0u8; CODE_BYTES];
        b[..2].copy_from_slice(&self.code_id.to_be_bytes());
        b[2..].copy_from_slice(&self.secret);
        GuestPairingCode(b)
    }

    /// Can a redemption start now? Unknown wall clock → refused.
    pub fn check_redeemable(&self, now: Option<WallTime>) -> Result<(), PairingError> {
        let now = now.ok_or(PairingError::ClockUnknown)?;
        if self.redeemed {
            return Err(PairingError::CodeAlreadyRedeemed);
        }
        // The engine counts attempts and burns the code at the same limit
        // (core/app.rs); this is the handshake's own check of the count
        // the engine handed back.
        if self.attempts >= limits::GUEST_CODE_ATTEMPTS {
            return Err(PairingError::CodeAttemptsExhausted);
        }
        if now >= self.code_expires_at {
            return Err(PairingError::CodeExpired);
        }
        Ok(())
    }
}

/// What the app asks to pair as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairKind {
    /// Owner pairing with the verification code (pairing mode only).
    Owner,
    /// Guest redemption of the guest code with this id.
    Guest {
        /// Public id of the guest code.
        code_id: u16,
    },
}

impl PairKind {
    fn encode(self) -> [u8; 3] {
        match self {
            PairKind::Owner => [0, 0, 0],
            PairKind::Guest { code_id } => {
                let [a, b] = code_id.to_be_bytes();
                [1, a, b]
            }
        }
    }
}

/// A parsed pair-init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairRequest {
    /// Owner or guest (with the code id to look up).
    pub kind: PairKind,
    app_static: [u8; KEY_LEN],
    app_eph: [u8; KEY_LEN],
}

impl PairRequest {
    /// Parse a pair-init frame.
    pub fn parse(frame: &[u8]) -> Result<Self, PairingError> {
        let f = Frame::parse_as(frame, FrameType::PairInit)?;
        if f.body.len() != PAIR_INIT_BODY {
            return Err(ChannelError::Malformed {
                got: frame.len(),
                why: "pair-init body must be 67 bytes",
            }
            .into());
        }
        let code_id = u16::from_be_bytes([f.body[1], f.body[2]]);
        let kind = match (f.body[0], code_id) {
            (0, 0) => PairKind::Owner,
            (1, id) => PairKind::Guest { code_id: id },
            (k, _) => return Err(PairingError::UnknownKind(k)),
        };
        let mut app_static = [0u8; KEY_LEN];
        app_static.copy_from_slice(&f.body[3..35]);
        let mut app_eph = [0u8; KEY_LEN];
        app_eph.copy_from_slice(&f.body[35..]);
        Ok(PairRequest {
            kind,
            app_static,
            app_eph,
        })
    }

    /// The public key the app wants registered.
    pub fn app_public(&self) -> [u8; KEY_LEN] {
        self.app_static
    }

    pub(crate) fn encode(
        kind: PairKind,
        app_static: &[u8; KEY_LEN],
        app_eph: &[u8; KEY_LEN],
    ) -> Vec<u8> {
        let mut body = [0u8; PAIR_INIT_BODY];
        body[..3].copy_from_slice(&kind.encode());
        body[3..35].copy_from_slice(app_static);
        body[35..].copy_from_slice(app_eph);
        encode_plain(FrameType::PairInit, &body)
    }
}

/// Confirmation keys and transcript of one pairing.
pub(crate) struct PairKeys {
    pub(crate) transcript: [u8; KEY_LEN],
    pub(crate) app_confirm: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) lock_confirm: Zeroizing<[u8; KEY_LEN]>,
}

/// The pairing key schedule, shared by both ends.
#[allow(clippy::too_many_arguments)] // the eight inputs are named by role
pub(crate) fn pair_keys(
    kind: PairKind,
    app_static: &[u8; KEY_LEN],
    app_eph: &[u8; KEY_LEN],
    lock_static: &[u8; KEY_LEN],
    lock_eph: &[u8; KEY_LEN],
    ee: &[u8; KEY_LEN],
    se: &[u8; KEY_LEN],
    es: &[u8; KEY_LEN],
    code_key: &[u8; KEY_LEN],
) -> PairKeys {
    let mut t = Transcript::new(b"latchd/pair/v1");
    t.absorb(b"kind", &kind.encode());
    t.absorb(b"app static", app_static);
    t.absorb(b"app ephemeral", app_eph);
    t.absorb(b"lock static", lock_static);
    t.absorb(b"lock ephemeral", lock_eph);
    let transcript = t.finish();
    let mut ikm = Zeroizing::new([0u8; 4 * KEY_LEN]);
    ikm[..32].copy_from_slice(ee);
    ikm[32..64].copy_from_slice(se);
    ikm[64..96].copy_from_slice(es);
    ikm[96..].copy_from_slice(code_key);
    PairKeys {
        transcript,
        app_confirm: crypto::derive_key(&transcript, ikm.as_ref(), b"latchd pair confirm app"),
        lock_confirm: crypto::derive_key(&transcript, ikm.as_ref(), b"latchd pair confirm lock"),
    }
}

pub(crate) fn owner_code_key(code: &VerificationCode) -> Zeroizing<[u8; KEY_LEN]> {
    code.key()
}

pub(crate) fn guest_code_key(code: &GuestPairingCode) -> Zeroizing<[u8; KEY_LEN]> {
    code.key()
}

/// The outcome of a successful pairing on the lock: the key to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedKey {
    /// Owner or guest.
    pub kind: PairKind,
    /// The app's long-term public key.
    pub app_public: [u8; KEY_LEN],
    /// Its id, as later session-inits carry it.
    pub key_id: KeyId,
    /// Monotonic time of pairing, for the caller's records.
    pub paired_at: Instant,
}

/// Lock side of a pairing between reply and confirm.
pub struct LockPairing {
    kind: PairKind,
    app_static: [u8; KEY_LEN],
    keys: PairKeys,
}

impl std::fmt::Debug for LockPairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockPairing")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl LockPairing {
    /// Answer an owner pair-init. Refused outside pairing mode (B-5); the
    /// engine decides when pairing mode is active.
    pub fn respond_owner(
        req: &PairRequest,
        pairing_mode_active: bool,
        code: &VerificationCode,
        lock: &StaticKeypair,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Self, Vec<u8>), PairingError> {
        if req.kind != PairKind::Owner {
            return Err(PairingError::KindMismatch { got: req.kind });
        }
        if !pairing_mode_active {
            return Err(PairingError::PairingModeInactive);
        }
        Self::respond(req, &code.key(), lock, rng)
    }

    /// Answer a guest pair-init for the invite the caller found by
    /// `code_id`. Every call that gets past the checks spends one of the
    /// invite's attempts *before* replying, so the caller must persist the
    /// invite afterwards whether or not pairing completes.
    pub fn respond_guest(
        req: &PairRequest,
        invite: &mut GuestInvite,
        now: Option<WallTime>,
        lock: &StaticKeypair,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Self, Vec<u8>), PairingError> {
        let PairKind::Guest { code_id } = req.kind else {
            return Err(PairingError::KindMismatch { got: req.kind });
        };
        if code_id != invite.code_id {
            return Err(PairingError::WrongInvite {
                got: code_id,
                expected: invite.code_id,
            });
        }
        invite.check_redeemable(now)?;
        invite.attempts = invite.attempts.saturating_add(1);
        Self::respond(req, &invite.code().key(), lock, rng)
    }

    fn respond(
        req: &PairRequest,
        code_key: &[u8; KEY_LEN],
        lock: &StaticKeypair,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Self, Vec<u8>), PairingError> {
        let (le_secret, le_public) = crypto::ephemeral(rng);
        let ee = crypto::dh(&le_secret, &req.app_eph).map_err(ChannelError::from)?;
        let se = crypto::dh(&le_secret, &req.app_static).map_err(ChannelError::from)?;
        let es = lock.dh(&req.app_eph).map_err(ChannelError::from)?;
        let lock_static = lock.public();
        let keys = pair_keys(
            req.kind,
            &req.app_static,
            &req.app_eph,
            &lock_static,
            &le_public,
            &ee,
            &se,
            &es,
            code_key,
        );
        let mut body = [0u8; PAIR_REPLY_BODY];
        body[..KEY_LEN].copy_from_slice(&lock_static);
        body[KEY_LEN..].copy_from_slice(&le_public);
        Ok((
            LockPairing {
                kind: req.kind,
                app_static: req.app_static,
                keys,
            },
            encode_plain(FrameType::PairReply, &body),
        ))
    }

    fn verify(&self, confirm: &[u8]) -> Result<Vec<u8>, PairingError> {
        let f = Frame::parse_as(confirm, FrameType::PairConfirm)?;
        if f.body.len() != CONFIRM_LEN {
            return Err(ChannelError::Malformed {
                got: confirm.len(),
                why: "pair-confirm body must be 32 bytes",
            }
            .into());
        }
        if !crypto::confirm_verify(&self.keys.app_confirm, &self.keys.transcript, f.body) {
            return Err(PairingError::ConfirmationFailed);
        }
        let tag = crypto::confirm_tag(&self.keys.lock_confirm, &self.keys.transcript);
        Ok(encode_plain(FrameType::PairDone, &tag))
    }

    /// Finish an owner pairing from the app's confirm frame. On success
    /// returns the key to store as an owner key bound to an administrator,
    /// and the done frame to send.
    pub fn finish_owner(
        self,
        confirm: &[u8],
        now: Instant,
    ) -> Result<(PairedKey, Vec<u8>), PairingError> {
        if self.kind != PairKind::Owner {
            return Err(PairingError::KindMismatch { got: self.kind });
        }
        let done = self.verify(confirm)?;
        Ok((self.paired(now), done))
    }

    /// Finish a guest redemption; on success the invite is marked redeemed
    /// (persist it together with the new guest key, in one transaction).
    pub fn finish_guest(
        self,
        confirm: &[u8],
        invite: &mut GuestInvite,
        now: Instant,
    ) -> Result<(PairedKey, Vec<u8>), PairingError> {
        let PairKind::Guest { code_id } = self.kind else {
            return Err(PairingError::KindMismatch { got: self.kind });
        };
        if code_id != invite.code_id {
            return Err(PairingError::WrongInvite {
                got: code_id,
                expected: invite.code_id,
            });
        }
        if invite.redeemed {
            return Err(PairingError::CodeAlreadyRedeemed);
        }
        let done = self.verify(confirm)?;
        invite.redeemed = true;
        Ok((self.paired(now), done))
    }

    fn paired(&self, now: Instant) -> PairedKey {
        PairedKey {
            kind: self.kind,
            app_public: self.app_static,
            key_id: KeyId::of(&self.app_static),
            paired_at: now,
        }
    }
}

/// App side: check the lock's done tag.
pub(crate) fn verify_done(keys: &PairKeys, done: &[u8]) -> Result<(), PairingError> {
    let f = Frame::parse_as(done, FrameType::PairDone)?;
    if f.body.len() != CONFIRM_LEN {
        return Err(ChannelError::Malformed {
            got: done.len(),
            why: "pair-done body must be 32 bytes",
        }
        .into());
    }
    if crypto::confirm_verify(&keys.lock_confirm, &keys.transcript, f.body) {
        Ok(())
    } else {
        Err(PairingError::ConfirmationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    /// Issue 13 item 6: after an owner pairing the runtime moves the code;
    /// every clone (the BLE service's, the D-Bus one's) sees the new code.
    #[test]
    fn the_current_code_moves_for_every_clone() {
        let first = VerificationCode::from_bytes([1; CODE_BYTES]);
        let next = VerificationCode::from_bytes([2; CODE_BYTES]);
        let current = CurrentCode::new(first.clone());
        let service = current.clone();
        assert_eq!(*service.get().to_bytes(), *first.to_bytes());
        current.set(next.clone());
        assert_eq!(*service.get().to_bytes(), *next.to_bytes());
    }

    #[test]
    fn code_text_round_trips_and_tolerates_formatting() {
        let code = VerificationCode::generate(&mut OsRng);
        let shown = code.display();
        assert_eq!(shown.len(), CODE_CHARS + 5);
        let back = VerificationCode::parse(&shown.to_lowercase()).expect("parses");
        assert_eq!(*back.to_bytes(), *code.to_bytes());
        assert_eq!(
            VerificationCode::parse("ABC").map(|_| ()),
            Err(CodeParseError::Length(3))
        );
        assert_eq!(
            VerificationCode::parse("0AAAAAAAAAAAAAAAAAAAAAAA").map(|_| ()),
            Err(CodeParseError::Character('0'))
        );
    }

    #[test]
    fn guest_code_carries_its_id() {
        let (invite, code) = GuestInvite::create(
            0x1234,
            WallTime(10),
            WallTime(1_000_000),
            WallTime(5),
            &mut OsRng,
        );
        assert_eq!(code.code_id(), 0x1234);
        assert_eq!(
            GuestPairingCode::parse(&code.display())
                .expect("parses")
                .code_id(),
            0x1234
        );
        assert_eq!(
            invite.code_expires_at,
            WallTime(5 + GUEST_CODE_TTL_SECS as i64)
        );
    }

    #[test]
    fn guest_code_expiry_and_attempt_limits() {
        let (mut invite, _) =
            GuestInvite::create(1, WallTime(0), WallTime(100), WallTime(0), &mut OsRng);
        // The code never outlives the key's window.
        assert_eq!(invite.code_expires_at, WallTime(100));
        assert_eq!(invite.check_redeemable(Some(WallTime(99))), Ok(()));
        assert_eq!(
            invite.check_redeemable(Some(WallTime(100))),
            Err(PairingError::CodeExpired)
        );
        assert_eq!(
            invite.check_redeemable(None),
            Err(PairingError::ClockUnknown)
        );
        invite.attempts = limits::GUEST_CODE_ATTEMPTS;
        assert_eq!(
            invite.check_redeemable(Some(WallTime(1))),
            Err(PairingError::CodeAttemptsExhausted)
        );
    }

    /// The label's code is RFC 4648 base32 in groups of four: known answers
    /// computed with Python's `base64.b32encode`, so a release that changed
    /// the alphabet or the bit order could not pair with any printed label.
    #[test]
    fn codes_print_as_rfc4648_base32_known_answers() {
        let cases: [([u8; CODE_BYTES], &str); 3] = [
            (
                core::array::from_fn(|i| i as u8),
                "AAAQ-EAYE-AUDA-OCAJ-BIFQ-YDIO",
            ),
            ([0xFF; CODE_BYTES], "7777-7777-7777-7777-7777-7777"),
            (
                core::array::from_fn(|i| [0x12, 0x34][..].get(i).copied().unwrap_or(0xA5)),
                "CI2K-LJNF-UWS2-LJNF-UWS2-LJNF",
            ),
        ];
        for (bytes, text) in cases {
            assert_eq!(VerificationCode::from_bytes(bytes).display().as_str(), text);
            assert_eq!(
                *VerificationCode::parse(text).expect("parses").to_bytes(),
                bytes
            );
            let guest = GuestPairingCode::from_bytes(bytes);
            assert_eq!(guest.display().as_str(), text);
            assert_eq!(
                *GuestPairingCode::parse(text).expect("parses").to_bytes(),
                bytes
            );
        }
        // Typed by a person: lower case, spaces, no dashes.
        assert_eq!(
            *VerificationCode::parse("ci2k ljnf uws2 ljnf uws2 ljnf")
                .expect("parses")
                .to_bytes(),
            cases[2].0
        );
        assert_eq!(GuestPairingCode::from_bytes(cases[2].0).code_id(), 0x1234);
        // One character short or long, and each character outside A–Z, 2–7.
        assert_eq!(
            VerificationCode::parse("AAAQEAYEAUDAOCAJBIFQYDI").map(|_| ()),
            Err(CodeParseError::Length(23))
        );
        assert_eq!(
            VerificationCode::parse("AAAQEAYEAUDAOCAJBIFQYDIOA").map(|_| ()),
            Err(CodeParseError::Length(25))
        );
        for bad in ['0', '1', '8', '9', '=', 'É'] {
            let text: String = std::iter::once(bad)
                .chain("AAAQEAYEAUDAOCAJBIFQYDI".chars())
                .collect();
            assert_eq!(
                VerificationCode::parse(&text).map(|_| ()),
                Err(CodeParseError::Character(bad))
            );
        }
    }

    /// Neither code shows in a log: only the guest code's public id does.
    #[test]
    fn debug_forms_show_no_code() {
        let code = VerificationCode::from_bytes([0xFF; CODE_BYTES]);
        assert_eq!(format!("{code:?}"), "VerificationCode(..)");
        assert_eq!(format!("{:?}", CurrentCode::new(code)), "CurrentCode(..)");
        let guest = GuestPairingCode::from_bytes(core::array::from_fn(|i| {
            [0x12, 0x34][..].get(i).copied().unwrap_or(0xA5)
        }));
        assert_eq!(format!("{guest:?}"), "GuestPairingCode(id 4660, ..)");
    }

    /// A pair-init names its kind in three bytes: owner `00 00 00`, guest
    /// `01` and the code id; anything else is refused, as is a body of
    /// another length.
    #[test]
    fn a_pair_init_is_read_by_its_kind_bytes_and_exact_length() {
        let (s, e) = ([3; KEY_LEN], [4; KEY_LEN]);
        let owner = PairRequest::encode(PairKind::Owner, &s, &e);
        assert_eq!(owner.len(), 12 + PAIR_INIT_BODY);
        assert_eq!(PAIR_INIT_BODY, 67);
        assert_eq!(owner[12..15], [0, 0, 0]);
        let r = PairRequest::parse(&owner).expect("parses");
        assert_eq!((r.kind, r.app_public()), (PairKind::Owner, s));
        let guest = PairRequest::encode(PairKind::Guest { code_id: 0x1234 }, &s, &e);
        assert_eq!(guest[12..15], [1, 0x12, 0x34]);
        assert_eq!(
            PairRequest::parse(&guest).expect("parses").kind,
            PairKind::Guest { code_id: 0x1234 }
        );
        let with_kind = |k: [u8; 3]| {
            let mut f = owner.clone();
            f[12..15].copy_from_slice(&k);
            PairRequest::parse(&f).map(|r| r.kind)
        };
        assert_eq!(with_kind([0, 0, 1]), Err(PairingError::UnknownKind(0)));
        assert_eq!(with_kind([2, 0, 0]), Err(PairingError::UnknownKind(2)));
        assert_eq!(with_kind([1, 0, 0]), Ok(PairKind::Guest { code_id: 0 }));
        for body in [PAIR_INIT_BODY - 1, PAIR_INIT_BODY + 1] {
            let f = encode_plain(FrameType::PairInit, &vec![0; body]);
            assert!(
                matches!(
                    PairRequest::parse(&f),
                    Err(PairingError::Channel(ChannelError::Malformed { .. }))
                ),
                "{body}-byte body"
            );
        }
    }

    /// An invite's code lives 24 hours or to the end of the key's window,
    /// whichever is first; it is refused once redeemed and at the attempt
    /// limit, and its stored form carries everything back.
    #[test]
    fn an_invite_expires_is_spent_and_round_trips_through_its_record() {
        let day = GUEST_CODE_TTL_SECS as i64;
        assert_eq!(day, 86_400);
        let (long, code) =
            GuestInvite::create(7, WallTime(0), WallTime(10 * day), WallTime(50), &mut OsRng);
        assert_eq!(long.code_expires_at, WallTime(50 + day));
        assert_eq!(code.to_bytes()[2..], *long.secret_bytes());
        assert_eq!(long.check_redeemable(Some(WallTime(50 + day - 1))), Ok(()));
        let mut invite = long.clone();
        invite.attempts = limits::GUEST_CODE_ATTEMPTS - 1;
        assert_eq!(invite.check_redeemable(Some(WallTime(60))), Ok(()));
        invite.redeemed = true;
        assert_eq!(
            invite.check_redeemable(Some(WallTime(60))),
            Err(PairingError::CodeAlreadyRedeemed)
        );
        let stored = long.to_stored();
        assert_eq!(stored.code_id, 7);
        assert_eq!(stored.secret, *long.secret_bytes());
        assert_eq!(
            (stored.validity.from, stored.validity.until),
            (Some(WallTime(0)), Some(WallTime(10 * day)))
        );
        assert_eq!(stored.code_expires_at, WallTime(50 + day));
        // The engine counted this attempt before handing the record back.
        let counted = crate::core::types::GuestInvite {
            attempts: 3,
            ..stored.clone()
        };
        let back = GuestInvite::from_counted(&counted).expect("a closed window");
        assert_eq!((back.code_id, back.attempts, back.redeemed), (7, 2, false));
        assert_eq!(*back.secret_bytes(), *long.secret_bytes());
        assert_eq!(
            (
                back.key_valid_from,
                back.key_valid_until,
                back.code_expires_at
            ),
            (WallTime(0), WallTime(10 * day), WallTime(50 + day))
        );
        let open_ended = crate::core::types::GuestInvite {
            validity: crate::core::time::Validity {
                until: None,
                ..stored.validity
            },
            ..stored
        };
        assert!(GuestInvite::from_counted(&open_ended).is_none());
        // What a log shows: no secret.
        let shown = format!("{long:?}");
        assert!(shown.starts_with("GuestInvite { code_id: 7,"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    /// Owner pairing end to end in the library (the BLE tests drive it
    /// over GATT): each refusal alone — outside pairing mode, a guest
    /// request, a wrong code, a short or tampered confirmation — and the
    /// key stored on success is the app's, under its own id.
    #[test]
    fn owner_pairing_refuses_each_fault_alone_and_stores_the_apps_key() {
        use crate::app::client::{AppPairing, PairingSecret};
        let lock = StaticKeypair::generate(&mut OsRng);
        let app = StaticKeypair::generate(&mut OsRng);
        let code = VerificationCode::generate(&mut OsRng);
        let now = Instant::from_millis(5);
        let start = |secret| AppPairing::start(&app, secret, &mut OsRng);

        let (_, init) = start(PairingSecret::Owner(code.clone()));
        let req = PairRequest::parse(&init).expect("parses");
        assert_eq!(
            LockPairing::respond_owner(&req, false, &code, &lock, &mut OsRng).map(|_| ()),
            Err(PairingError::PairingModeInactive)
        );
        let guest_code = GuestPairingCode::from_bytes([1; CODE_BYTES]);
        let (_, guest_init) = start(PairingSecret::Guest(guest_code));
        let guest_req = PairRequest::parse(&guest_init).expect("parses");
        assert_eq!(
            LockPairing::respond_owner(&guest_req, true, &code, &lock, &mut OsRng).map(|_| ()),
            Err(PairingError::KindMismatch {
                got: PairKind::Guest { code_id: 0x0101 }
            })
        );

        // The app holding the right code.
        let (pairing, init) = start(PairingSecret::Owner(code.clone()));
        let req = PairRequest::parse(&init).expect("parses");
        let (lp, reply) =
            LockPairing::respond_owner(&req, true, &code, &lock, &mut OsRng).expect("reply");
        assert_eq!(reply.len(), 12 + PAIR_REPLY_BODY);
        assert_eq!(reply[12..12 + KEY_LEN], lock.public());
        let (sent, confirm) = pairing.on_reply(&app, &reply).expect("confirm");
        let (paired, done) = lp.finish_owner(&confirm, now).expect("paired");
        assert_eq!(
            paired,
            PairedKey {
                kind: PairKind::Owner,
                app_public: app.public(),
                key_id: app.key_id(),
                paired_at: now,
            }
        );
        let mut forged_done = done.clone();
        forged_done[20] ^= 1;
        let mut short_done = done.clone();
        short_done.pop();
        short_done[11] -= 1;
        let locked = sent.on_done(&done).expect("the app trusts the lock");
        assert_eq!(locked.lock_public, lock.public());
        assert_eq!(locked.lock_key_id, lock.key_id());

        // The app's later attempts: the done frame forged or short.
        for (bad, want_malformed) in [(forged_done, false), (short_done, true)] {
            let (pairing, init) = start(PairingSecret::Owner(code.clone()));
            let req = PairRequest::parse(&init).expect("parses");
            let (lp, reply) =
                LockPairing::respond_owner(&req, true, &code, &lock, &mut OsRng).expect("reply");
            let (sent, confirm) = pairing.on_reply(&app, &reply).expect("confirm");
            lp.finish_owner(&confirm, now).expect("paired");
            let r = sent.on_done(&bad).map(|_| ());
            if want_malformed {
                assert!(
                    matches!(
                        r,
                        Err(PairingError::Channel(ChannelError::Malformed { .. }))
                    ),
                    "{r:?}"
                );
            } else {
                assert_eq!(r, Err(PairingError::ConfirmationFailed));
            }
        }

        // A wrong code, a short confirmation: refused by the lock.
        let other = VerificationCode::generate(&mut OsRng);
        let (pairing, init) = start(PairingSecret::Owner(other));
        let req = PairRequest::parse(&init).expect("parses");
        let (lp, reply) =
            LockPairing::respond_owner(&req, true, &code, &lock, &mut OsRng).expect("reply");
        let (_, confirm) = pairing.on_reply(&app, &reply).expect("confirm");
        assert_eq!(
            lp.finish_owner(&confirm, now).map(|_| ()),
            Err(PairingError::ConfirmationFailed)
        );
        let (pairing, init) = start(PairingSecret::Owner(code.clone()));
        let req = PairRequest::parse(&init).expect("parses");
        let (lp, reply) =
            LockPairing::respond_owner(&req, true, &code, &lock, &mut OsRng).expect("reply");
        let (_, mut confirm) = pairing.on_reply(&app, &reply).expect("confirm");
        confirm.pop();
        confirm[11] -= 1;
        assert!(matches!(
            lp.finish_owner(&confirm, now),
            Err(PairingError::Channel(ChannelError::Malformed { .. }))
        ));
    }

    /// An invite made at 10 s for a key valid [0, 1000) s: redeemable at 20 s.
    fn redeemable(code_id: u16) -> (GuestInvite, GuestPairingCode) {
        GuestInvite::create(
            code_id,
            WallTime(0),
            WallTime(1_000),
            WallTime(10),
            &mut OsRng,
        )
    }

    /// The guest code's secret bits are what the handshake proves: a code
    /// with the invite's id and any other secret is refused at the
    /// confirmation (and spends an attempt); codes compare by every byte.
    #[test]
    fn a_guest_code_with_the_right_id_and_a_wrong_secret_is_refused() {
        use crate::app::client::{AppPairing, PairingSecret};
        let lock = StaticKeypair::generate(&mut OsRng);
        let app = StaticKeypair::generate(&mut OsRng);
        let (mut invite, code) = redeemable(0x0042);
        let mut bytes = *code.to_bytes();
        bytes[CODE_BYTES - 1] ^= 1;
        let guessed = GuestPairingCode::from_bytes(bytes);
        assert_eq!(guessed.code_id(), 0x0042);
        assert!(guessed != code && code == code.clone());
        let (pairing, init) = AppPairing::start(&app, PairingSecret::Guest(guessed), &mut OsRng);
        let req = PairRequest::parse(&init).expect("parses");
        let (lp, reply) =
            LockPairing::respond_guest(&req, &mut invite, Some(WallTime(20)), &lock, &mut OsRng)
                .expect("reply");
        let (_, confirm) = pairing.on_reply(&app, &reply).expect("confirm");
        assert_eq!(
            lp.finish_guest(&confirm, &mut invite, Instant::from_millis(5))
                .map(|_| ()),
            Err(PairingError::ConfirmationFailed)
        );
        assert_eq!(invite.attempts, 1);
        assert!(!invite.redeemed);
    }

    /// Guest redemption: the invite's id, its attempts (one spent per
    /// reply, none for a refusal), its expiry and its single use.
    #[test]
    fn guest_redemption_spends_one_attempt_per_reply_and_the_code_once() {
        use crate::app::client::{AppPairing, PairingSecret};
        let lock = StaticKeypair::generate(&mut OsRng);
        let app = StaticKeypair::generate(&mut OsRng);
        let now = Instant::from_millis(5);
        let (mut invite, code) = redeemable(0x0042);
        let (mut other, _) = redeemable(0x0043);
        let start = || AppPairing::start(&app, PairingSecret::Guest(code.clone()), &mut OsRng);

        let (_, init) = start();
        let req = PairRequest::parse(&init).expect("parses");
        assert_eq!(
            LockPairing::respond_guest(&req, &mut other, Some(WallTime(20)), &lock, &mut OsRng)
                .map(|_| ()),
            Err(PairingError::WrongInvite {
                got: 0x0042,
                expected: 0x0043
            })
        );
        assert_eq!(
            LockPairing::respond_guest(&req, &mut invite, Some(WallTime(1_000)), &lock, &mut OsRng)
                .map(|_| ()),
            Err(PairingError::CodeExpired)
        );
        assert_eq!(
            (invite.attempts, other.attempts),
            (0, 0),
            "refusals spend nothing"
        );
        let owner_req = PairRequest::parse(&PairRequest::encode(
            PairKind::Owner,
            &[3; KEY_LEN],
            &[4; KEY_LEN],
        ))
        .expect("parses");
        assert_eq!(
            LockPairing::respond_guest(
                &owner_req,
                &mut invite,
                Some(WallTime(20)),
                &lock,
                &mut OsRng
            )
            .map(|_| ()),
            Err(PairingError::KindMismatch {
                got: PairKind::Owner
            })
        );

        let (pairing, init) = start();
        let req = PairRequest::parse(&init).expect("parses");
        let (lp, reply) =
            LockPairing::respond_guest(&req, &mut invite, Some(WallTime(20)), &lock, &mut OsRng)
                .expect("reply");
        assert_eq!(invite.attempts, 1);
        let (sent, confirm) = pairing.on_reply(&app, &reply).expect("confirm");
        assert_eq!(
            LockPairing::respond_guest(&req, &mut invite, Some(WallTime(20)), &lock, &mut OsRng)
                .map(|(lp, _)| lp.finish_guest(&confirm, &mut other, now).map(|_| ())),
            Ok(Err(PairingError::WrongInvite {
                got: 0x0042,
                expected: 0x0043
            }))
        );
        assert_eq!(invite.attempts, 2);
        let (paired, done) = lp
            .finish_guest(&confirm, &mut invite, now)
            .expect("redeemed");
        assert!(invite.redeemed);
        assert_eq!(paired.kind, PairKind::Guest { code_id: 0x0042 });
        assert_eq!(paired.app_public, app.public());
        sent.on_done(&done).expect("the guest trusts the lock");

        // Spent: a reply made before the redemption cannot finish again.
        let (pairing, init) = start();
        let req = PairRequest::parse(&init).expect("parses");
        invite.redeemed = false;
        let (lp, reply) =
            LockPairing::respond_guest(&req, &mut invite, Some(WallTime(20)), &lock, &mut OsRng)
                .expect("reply");
        invite.redeemed = true;
        let (_, confirm) = pairing.on_reply(&app, &reply).expect("confirm");
        assert_eq!(
            lp.finish_guest(&confirm, &mut invite, now).map(|_| ()),
            Err(PairingError::CodeAlreadyRedeemed)
        );
    }
}
