//! The per-device key and the sealing built on it.
//!
//! ```text
//!   device.key (32 random bytes, mode 0600)
//!        │ HKDF-SHA256 (salt "latchd device key v1")
//!        ├── info "latchd/passcode-mac/v1" ─► passcode_key(): the engine's HMAC key
//!        └── info "latchd/seal/v1"         ─► XChaCha20-Poly1305 key for sealed columns
//!
//!   sealed value = 0x01 ‖ nonce (24 random bytes) ‖ ciphertext ‖ tag (16)
//!   associated data = "latchd/v1" ‖ table ‖ row id ‖ kind (‖ owner)
//! ```
//!
//! The associated data binds each sealed value to its row: a template
//! copied into another credential's row, or an owner's app key moved to a
//! different administrator, no longer opens.
//!
//! # Where the key rests
//!
//! A passcode is 6–10 digits, so its MAC can be brute-forced in seconds by
//! anyone who holds this key: the MAC only protects passcodes from someone
//! who has the database and *not* the key. With the key in a file next to
//! the database (`key_storage = "file"`, the development default), a flash
//! dump yields both. On a product the key is a systemd credential sealed to
//! the TPM 2.0 and exists in clear only in RAM (`store::keystore`).
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::StoreError;

/// Length of the device key file, in bytes.
pub const DEVICE_KEY_LEN: usize = 32;

const HKDF_SALT: &[u8] = b"latchd device key v1";
const INFO_PASSCODE: &[u8] = b"latchd/passcode-mac/v1";
const INFO_SEAL: &[u8] = b"latchd/seal/v1";
const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The device's root secret. Only subkeys leave it; the bytes are wiped
/// when it is dropped.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DeviceKey {
    bytes: [u8; DEVICE_KEY_LEN],
}

impl core::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DeviceKey(..)")
    }
}

impl DeviceKey {
    /// A fresh key from the OS random generator.
    pub fn generate() -> Result<DeviceKey, StoreError> {
        let mut key = DeviceKey {
            bytes: [0; DEVICE_KEY_LEN],
        };
        getrandom::getrandom(&mut key.bytes).map_err(StoreError::Random)?;
        Ok(key)
    }

    /// A key from its 32 bytes: what a credential or a backup holds. (The
    /// flash-dump test also tries every 32 bytes it finds this way.)
    pub fn from_bytes(bytes: [u8; DEVICE_KEY_LEN]) -> DeviceKey {
        DeviceKey { bytes }
    }

    /// The raw bytes, for sealing into a credential. Never log or store them.
    pub(crate) fn as_bytes(&self) -> &[u8; DEVICE_KEY_LEN] {
        &self.bytes
    }

    /// The key the engine uses for HMAC-SHA256 of passcodes.
    pub fn passcode_key(&self) -> Zeroizing<[u8; 32]> {
        self.derive(INFO_PASSCODE)
    }

    /// The XChaCha20-Poly1305 key for sealed columns.
    pub(crate) fn sealer(&self) -> Sealer {
        let key = self.derive(INFO_SEAL);
        Sealer {
            cipher: XChaCha20Poly1305::new((&*key).into()),
        }
    }

    fn derive(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.bytes);
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 255 * 32 byte limit.
        hk.expand(info, &mut *out)
            .expect("HKDF-SHA256 can always expand 32 bytes");
        out
    }

    /// Write a new key file. `create_new` refuses to overwrite an existing
    /// key; the mode is set at creation so the key is never readable by
    /// others, not even for a moment. File and directory are fsynced so a
    /// power cut right after first start cannot lose the key while keeping
    /// the database it sealed.
    pub(crate) fn create_file(&self, path: &Path) -> Result<(), StoreError> {
        let io = |source| StoreError::KeyIo {
            path: path.to_path_buf(),
            source,
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io)?;
        f.write_all(&self.bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(io)?;
        }
        Ok(())
    }

    /// Read and check an existing key file: a regular file (no symlink),
    /// owner-only permissions, exactly 32 bytes.
    pub(crate) fn read_file(path: &Path) -> Result<DeviceKey, StoreError> {
        let io = |source| StoreError::KeyIo {
            path: path.to_path_buf(),
            source,
        };
        let meta = fs::symlink_metadata(path).map_err(io)?;
        if !meta.file_type().is_file() {
            return Err(StoreError::KeyNotAFile {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(StoreError::KeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        if meta.len() != DEVICE_KEY_LEN as u64 {
            return Err(StoreError::KeyLength {
                path: path.to_path_buf(),
                len: meta.len(),
                expected: DEVICE_KEY_LEN,
            });
        }
        let mut f: File = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io)?;
        let mut key = DeviceKey {
            bytes: [0; DEVICE_KEY_LEN],
        };
        f.read_exact(&mut key.bytes).map_err(io)?;
        // The file may have grown between the stat and the read.
        let mut extra = [0u8; 1];
        if f.read(&mut extra).map_err(io)? != 0 {
            return Err(StoreError::KeyLength {
                path: path.to_path_buf(),
                len: DEVICE_KEY_LEN as u64 + 1,
                expected: DEVICE_KEY_LEN,
            });
        }
        Ok(key)
    }
}

/// fsync a directory so a file created in it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Seals and opens column values. The cipher wipes its key on drop.
#[derive(Clone)]
pub(crate) struct Sealer {
    cipher: XChaCha20Poly1305,
}

/// What a sealed value is bound to: its table, row id, the kind of secret
/// and (where it matters) who it belongs to.
pub(crate) struct Binding<'a> {
    pub table: &'a str,
    pub id: i64,
    pub kind: &'a str,
    pub owner: Option<i64>,
}

impl Binding<'_> {
    fn associated_data(&self) -> Vec<u8> {
        let mut ad = Vec::with_capacity(64);
        ad.extend_from_slice(b"latchd/v1\0");
        ad.extend_from_slice(self.table.as_bytes());
        ad.push(0);
        ad.extend_from_slice(&self.id.to_be_bytes());
        ad.extend_from_slice(self.kind.as_bytes());
        ad.push(0);
        match self.owner {
            Some(o) => {
                ad.push(1);
                ad.extend_from_slice(&o.to_be_bytes());
            }
            None => ad.push(0),
        }
        ad
    }

    fn describe(&self) -> String {
        format!("{} row {} ({})", self.table, self.id, self.kind)
    }
}

impl Sealer {
    pub(crate) fn seal(&self, bind: &Binding<'_>, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(StoreError::Random)?;
        let ad = bind.associated_data();
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &ad,
                },
            )
            // Encryption only fails for messages beyond 256 GiB.
            .map_err(|_| {
                StoreError::Invalid(format!("{} is too large to seal", bind.describe()))
            })?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub(crate) fn open(
        &self,
        bind: &Binding<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let unseal = || StoreError::Unseal {
            what: bind.describe(),
        };
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEAL_VERSION {
            return Err(unseal());
        }
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        let ad = bind.associated_data();
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &ad })
            .map(Zeroizing::new)
            .map_err(|_| unseal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(id: i64) -> Binding<'static> {
        Binding {
            table: "credentials",
            id,
            kind: "passcode",
            owner: Some(1),
        }
    }

    #[test]
    fn sealed_values_open_only_in_their_row() {
        let s = DeviceKey::generate().unwrap().sealer();
        let sealed = s.seal(&bind(7), b"secret").unwrap();
        assert_eq!(&s.open(&bind(7), &sealed).unwrap()[..], b"secret");
        assert!(matches!(
            s.open(&bind(8), &sealed),
            Err(StoreError::Unseal { .. })
        ));
        let mut moved = bind(7);
        moved.owner = Some(2);
        assert!(s.open(&moved, &sealed).is_err());
    }

    #[test]
    fn tampered_or_short_values_do_not_open() {
        let s = DeviceKey::generate().unwrap().sealer();
        let mut sealed = s.seal(&bind(1), b"secret").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(s.open(&bind(1), &sealed).is_err());
        assert!(s.open(&bind(1), &[1, 2, 3]).is_err());
    }

    #[test]
    fn subkeys_differ_and_are_stable() {
        let k = DeviceKey::generate().unwrap();
        assert_eq!(*k.passcode_key(), *k.passcode_key());
        assert_ne!(*k.passcode_key(), *k.derive(INFO_SEAL));
    }
}
