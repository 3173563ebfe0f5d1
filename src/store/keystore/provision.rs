//! The privileged key step: `latchd --key-step`, run as root by
//! `latchd-key.service` before `latchd.service` (which loads the result
//! with `LoadCredentialEncrypted=`). It is the only part of latchd that
//! talks to the TPM, through `systemd-creds`.
//!
//! ```text
//!   storage = "file" ─► nothing to do
//!   1 files::recover on device-key.cred and device.key (power cut mid-step)
//!   2 rotate-key.request ─► new key sealed into device-key.cred
//!                           (files::replace), request removed
//!   3 device.key present ─► no credential: seal it, decrypt and compare,
//!                           promote (migration); credential: it must hold
//!                           the same key; then retire device.key (zeroed,
//!                           unlinked)
//!   4 no credential, no database ─► first boot: first-start marker, then a
//!                           new key sealed into device-key.cred
//!     no credential, a database ─► refuse: the key is lost, never replaced
//!   5 the credential's seal must satisfy the policy and it must open here
//! ```
//! Every write goes through `files`: a power cut at any point leaves
//! either the old state or the new one, and the next run finishes it.
//! The key exists in clear only in this process's memory (zeroed on drop)
//! and in the pipe to systemd-creds.
use std::path::Path;

use super::creds::SystemdCreds;
use super::files::{self, Hook};
use super::{io_err, KeyConfig, KeyStorage, KeystoreError, CRED_FILE, ROTATE_REQUEST};
use crate::store::{DeviceKey, StoreError, DB_FILE, FIRST_START_MARKER, KEY_FILE};

/// What the key step did (logged, and checked by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStepDone {
    /// `storage = "file"`: the daemon keeps its own key file.
    NothingForFileStorage,
    /// The credential was there and opens.
    Verified,
    /// First boot: a new key, sealed.
    Provisioned,
    /// A plain device.key was sealed and removed.
    Migrated,
    /// A factory reset's request: a new key replaced the old credential.
    Rotated,
}

/// Run the key step for `state_dir`. `hook` may stop it between file
/// steps (crash tests); production passes `files::no_hook`.
pub fn key_step(
    state_dir: &Path,
    config: &KeyConfig,
    creds: &SystemdCreds,
    hook: Hook<'_>,
) -> Result<KeyStepDone, KeystoreError> {
    let policy = config.storage;
    if policy == KeyStorage::File {
        return Ok(KeyStepDone::NothingForFileStorage);
    }
    if !state_dir.is_dir() {
        return Err(KeystoreError::NoStateDir {
            dir: state_dir.to_path_buf(),
        });
    }
    let cred = state_dir.join(CRED_FILE);
    let plain = state_dir.join(KEY_FILE);
    let request = state_dir.join(ROTATE_REQUEST);
    let db = state_dir.join(DB_FILE);
    let exists = |p: &Path| files::exists(p).map_err(io_err(p));

    // 1. Whatever a power cut interrupted.
    files::recover(&cred).map_err(io_err(&cred))?;
    files::recover(&plain).map_err(io_err(&plain))?;

    let mut done = KeyStepDone::Verified;
    // 2. A factory reset asked for a new key. The request exists only
    //    while the database waits for one, so rotating again after a
    //    power cut here is harmless.
    if exists(&request)? && exists(&cred)? {
        let key = DeviceKey::generate().map_err(store_random)?;
        seal_into(&cred, &key, policy, creds, hook)?;
        files::remove_durable(&request).map_err(io_err(&request))?;
        tracing::info!(cred = %cred.display(), "factory reset: sealed a new device key");
        done = KeyStepDone::Rotated;
    }

    // 3. Migration from a plain key file.
    if exists(&plain)? {
        let key = DeviceKey::read_file(&plain).map_err(|e| match e {
            StoreError::KeyIo { path, source } => KeystoreError::Io { path, source },
            other => KeystoreError::Io {
                path: plain.clone(),
                source: std::io::Error::other(other.to_string()),
            },
        })?;
        if exists(&cred)? {
            // A power cut after the promotion: the credential must hold
            // this very key before the file may go.
            let sealed = creds.decrypt(&cred)?;
            if sealed.as_bytes() != key.as_bytes() {
                return Err(KeystoreError::TwoKeys { key: plain, cred });
            }
        } else {
            seal_into(&cred, &key, policy, creds, hook)?;
        }
        files::retire(&plain, hook).map_err(io_err(&plain))?;
        tracing::info!(
            cred = %cred.display(),
            "sealed the plain device key into a credential and wiped {}",
            plain.display()
        );
        done = KeyStepDone::Migrated;
    }

    // 4. First boot, or a lost key.
    if !exists(&cred)? {
        if exists(&db)? && !exists(&state_dir.join(FIRST_START_MARKER))? {
            return Err(KeystoreError::KeyLost { cred, db });
        }
        // The marker first, as the daemon's own first start does: a power
        // cut before the database exists is then finished, not refused.
        let marker = state_dir.join(FIRST_START_MARKER);
        if !exists(&marker)? {
            files::write_durable(&marker, b"", 0o600).map_err(io_err(&marker))?;
        }
        let key = DeviceKey::generate().map_err(store_random)?;
        seal_into(&cred, &key, policy, creds, hook)?;
        tracing::info!(cred = %cred.display(), "first boot: sealed a new device key");
        done = KeyStepDone::Provisioned;
    }

    // 5. What the daemon will get must satisfy the policy and open.
    let seal = super::creds::seal_of(&cred)?;
    if !seal.satisfies(policy) {
        return Err(KeystoreError::WeakSeal {
            cred,
            seal: seal.name(),
            policy: policy.name(),
        });
    }
    if done == KeyStepDone::Verified {
        creds.decrypt(&cred)?;
    }
    Ok(done)
}

/// Seal `key` into `cred` through `cred.new`: encrypt, decrypt the new
/// file and compare (the TPM can open it before anything is replaced),
/// then promote.
fn seal_into(
    cred: &Path,
    key: &DeviceKey,
    policy: KeyStorage,
    creds: &SystemdCreds,
    hook: Hook<'_>,
) -> Result<(), KeystoreError> {
    let blob = creds.encrypt(key, policy)?;
    let check = files::sibling(cred, ".check");
    files::remove_durable(&check).map_err(io_err(&check))?;
    files::write_durable(&check, &blob, 0o644).map_err(io_err(&check))?;
    let opened = creds.decrypt(&check);
    files::remove_durable(&check).map_err(io_err(&check))?;
    if opened?.as_bytes() != key.as_bytes() {
        return Err(KeystoreError::Io {
            path: cred.to_path_buf(),
            source: std::io::Error::other("the new credential did not open to the key just sealed"),
        });
    }
    // The header is not secret and the daemon reads it to check the seal;
    // the state directory (0700) keeps others out anyway.
    files::replace(cred, &blob, 0o644, hook).map_err(io_err(cred))
}

fn store_random(e: StoreError) -> KeystoreError {
    KeystoreError::Io {
        path: "/dev/urandom".into(),
        source: std::io::Error::other(e.to_string()),
    }
}
