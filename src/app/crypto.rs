//! The crypto core of the lock channel: every primitive the BLE pairing, the
//! BLE session and the sealed one-shot (remote/MQTT) messages use, in one
//! place, so that a reviewer reads one file to audit key derivation and AEAD
//! use.
//!
//! ```text
//!   X25519 (x25519-dalek)  ──► shared secrets (all-zero / low-order refused)
//!            │
//!            ▼
//!   HKDF-SHA256(salt = transcript hash, ikm = DH outputs [‖ code key])
//!            │  info = fixed ASCII label per key
//!            ▼
//!   ChaCha20-Poly1305 keys (one per direction)  ·  HMAC-SHA256 confirm keys
//! ```
//!
//! * The **transcript hash** is SHA-256 over length-prefixed, labelled
//!   fields, so two different field splits can never hash alike.
//! * The **AEAD nonce** is `0x00000000 ‖ counter (u64 BE)`. Each key is used
//!   in one direction only and the counter never repeats under a key (the
//!   session refuses to send at `u64::MAX`), so a nonce is never reused.
//! * Secrets are zeroised on drop (`x25519-dalek`'s `zeroize` feature,
//!   [`Zeroizing`] for derived keys).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Length of an X25519 public key, of a symmetric key and of a hash.
pub const KEY_LEN: usize = 32;
/// Length of the Poly1305 authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;
/// Length of an HMAC-SHA256 key-confirmation tag.
pub const CONFIRM_LEN: usize = 32;

/// A crypto operation failed. Deliberately carries no detail: the caller
/// maps it to "unauthenticated" and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// The peer's public key is a low-order point (the shared secret would be
    /// all zeros); the handshake must be abandoned.
    #[error(
        "peer public key is a low-order point; abandon this handshake and retry with a fresh key"
    )]
    WeakPublicKey,
    /// The AEAD tag did not verify: the frame was forged, modified, replayed
    /// under another key, or sealed with the wrong key.
    #[error(
        "authentication tag did not verify; the frame was modified or sealed with another key"
    )]
    TagMismatch,
}

/// Short, stable identifier of a long-term X25519 public key: the first
/// 8 bytes of `SHA-256("latchd/key-id/v1" ‖ public key)`. Sent in the clear
/// so the lock can find the stored key; it reveals nothing about the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of `public`.
    pub fn of(public: &[u8; KEY_LEN]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"latchd/key-id/v1")
            .chain_update(public)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A long-term X25519 key pair: the lock's device identity, or an app's key.
pub struct StaticKeypair {
    secret: StaticSecret,
    public: PublicKey,
}

impl StaticKeypair {
    /// A fresh random key pair.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self::from_secret_bytes(StaticSecret::random_from_rng(rng).to_bytes())
    }

    /// Rebuild a key pair from its stored 32-byte secret.
    pub fn from_secret_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    /// The 32-byte secret, for the caller to seal and store (B-11.2: never
    /// in plain text).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> [u8; KEY_LEN] {
        self.public.to_bytes()
    }

    /// The [`KeyId`] of the public half.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(self.public.as_bytes())
    }

    pub(crate) fn dh(&self, peer: &[u8; KEY_LEN]) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        dh(&self.secret, peer)
    }
}

impl std::fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret half.
        f.debug_struct("StaticKeypair")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// X25519 with a check that the result is contributory: a low-order peer
/// key would make every session key predictable.
pub(crate) fn dh(
    secret: &StaticSecret,
    peer: &[u8; KEY_LEN],
) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*peer));
    if !shared.was_contributory() {
        return Err(CryptoError::WeakPublicKey);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// A fresh ephemeral key pair (a `StaticSecret` because a handshake uses it
/// for two DH operations; it is dropped, and zeroised, when the handshake
/// ends).
pub(crate) fn ephemeral(rng: &mut impl CryptoRngCore) -> (StaticSecret, [u8; KEY_LEN]) {
    let secret = StaticSecret::random_from_rng(rng);
    let public = PublicKey::from(&secret).to_bytes();
    (secret, public)
}

/// SHA-256 transcript over labelled, length-prefixed fields.
pub(crate) struct Transcript(Sha256);

impl Transcript {
    pub(crate) fn new(protocol_label: &[u8]) -> Self {
        let mut t = Transcript(Sha256::new());
        t.absorb(b"protocol", protocol_label);
        t
    }

    pub(crate) fn absorb(&mut self, label: &[u8], value: &[u8]) {
        // Both lengths are tiny (labels and keys); u32 prefixes make the
        // encoding injective.
        self.0.update((label.len() as u32).to_be_bytes());
        self.0.update(label);
        self.0.update((value.len() as u32).to_be_bytes());
        self.0.update(value);
    }

    pub(crate) fn finish(self) -> [u8; KEY_LEN] {
        self.0.finalize().into()
    }
}

/// HKDF-SHA256 extract-and-expand into a 32-byte key.
pub(crate) fn derive_key(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut okm = Zeroizing::new([0u8; KEY_LEN]);
    hk.expand(info, okm.as_mut())
        .expect("HKDF-SHA256 expands 32 bytes (its limit is 255 × 32)");
    okm
}

/// HMAC-SHA256 key-confirmation tag over `message`.
pub(crate) fn confirm_tag(key: &[u8; KEY_LEN], message: &[u8]) -> [u8; CONFIRM_LEN] {
    let mut mac = new_hmac(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Constant-time check of a key-confirmation tag.
pub(crate) fn confirm_verify(key: &[u8; KEY_LEN], message: &[u8], tag: &[u8]) -> bool {
    let mut mac = new_hmac(key);
    mac.update(message);
    mac.verify_slice(tag).is_ok()
}

fn new_hmac(key: &[u8; KEY_LEN]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC-SHA256 takes a key of any length")
}

/// One direction's AEAD key.
pub(crate) struct AeadKey(Zeroizing<[u8; KEY_LEN]>);

impl AeadKey {
    pub(crate) fn new(key: Zeroizing<[u8; KEY_LEN]>) -> Self {
        AeadKey(key)
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(self.0.as_ref()))
    }

    /// Seal `plaintext`; the result is `ciphertext ‖ tag`.
    pub(crate) fn seal(&self, counter: u64, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = nonce(counter);
        self.cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("ChaCha20-Poly1305 seals up to 256 GiB; frames are at most 4 KiB")
    }

    /// Open `ciphertext ‖ tag`.
    pub(crate) fn open(
        &self,
        counter: u64,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = nonce(counter);
        self.cipher()
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::TagMismatch)
    }
}

fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

/// The lock's long-term X25519 key, derived from the device secret
/// (HKDF-SHA256, own label) so it survives restarts without another stored
/// secret. Its public half is what an app learns when it pairs; both app
/// channels (BLE and the broker) use this one key, so an app paired over
/// BLE talks to the same key through the broker.
pub fn lock_keypair(device_secret: &[u8; 32]) -> StaticKeypair {
    let hk = Hkdf::<Sha256>::new(Some(b"latchd/lock-static-key/v1"), device_secret);
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand(b"x25519", okm.as_mut())
        .expect("HKDF-SHA256 expands 32 bytes (its limit is 255 × 32)");
    StaticKeypair::from_secret_bytes(*okm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn key_id_is_stable_and_distinct() {
        let a = StaticKeypair::generate(&mut OsRng);
        let b = StaticKeypair::generate(&mut OsRng);
        assert_eq!(a.key_id(), KeyId::of(&a.public()));
        assert_ne!(a.key_id(), b.key_id());
        let again = StaticKeypair::from_secret_bytes(*a.secret_bytes());
        assert_eq!(again.public(), a.public());
    }

    /// The id is printed (logs, `latchctl`) as its 16 hex digits, and a
    /// key pair's debug form shows only that id: never the secret half.
    #[test]
    fn a_key_prints_as_its_id_and_never_its_secret() {
        let pair = StaticKeypair::from_secret_bytes([0x5a; KEY_LEN]);
        let id = pair.key_id().to_string();
        assert_eq!(id, hex::encode(pair.key_id().0));
        assert_eq!(id.len(), 16);
        let debug = format!("{pair:?}");
        assert!(debug.starts_with("StaticKeypair"), "{debug}");
        assert!(debug.contains(&format!("{:?}", pair.key_id())), "{debug}");
        assert!(!debug.contains(&hex::encode([0x5a; KEY_LEN])), "{debug}");
        assert!(!debug.contains("90, 90"), "the secret's bytes: {debug}");
    }

    #[test]
    fn low_order_point_is_refused() {
        let a = StaticKeypair::generate(&mut OsRng);
        assert_eq!(a.dh(&[0u8; 32]), Err(CryptoError::WeakPublicKey));
    }

    #[test]
    fn aead_binds_counter_and_aad() {
        let key = AeadKey::new(Zeroizing::new([7u8; 32]));
        let ct = key.seal(5, b"hdr", b"hello");
        assert_eq!(key.open(5, b"hdr", &ct).as_deref(), Ok(&b"hello"[..]));
        assert_eq!(key.open(6, b"hdr", &ct), Err(CryptoError::TagMismatch));
        assert_eq!(key.open(5, b"hdx", &ct), Err(CryptoError::TagMismatch));
    }

    #[test]
    fn transcript_fields_are_unambiguous() {
        let mut a = Transcript::new(b"p");
        a.absorb(b"x", b"ab");
        a.absorb(b"y", b"c");
        let mut b = Transcript::new(b"p");
        b.absorb(b"x", b"a");
        b.absorb(b"y", b"bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn confirm_tags_verify_only_with_the_key() {
        let tag = confirm_tag(&[1; 32], b"m");
        assert!(confirm_verify(&[1; 32], b"m", &tag));
        assert!(!confirm_verify(&[2; 32], b"m", &tag));
        assert!(!confirm_verify(&[1; 32], b"n", &tag));
    }

    #[test]
    fn lock_key_is_stable_and_separate_per_device() {
        let a = lock_keypair(&[1; 32]);
        assert_eq!(a.public(), lock_keypair(&[1; 32]).public());
        assert_ne!(a.public(), lock_keypair(&[2; 32]).public());
    }
}
