//! Where the device key rests: a systemd credential sealed to the TPM 2.0
//! on a product, a plain file for development — and how it is created,
//! migrated from a file, and rotated by a factory reset, crash-safely.
//!
//! ```text
//!  [key] storage = "tpm2" | "host"                       "file"
//!  ─────────────────────────────────────────────         ──────────────────────────
//!  latchd-key.service (root, oneshot, before latchd):    latchd itself:
//!    latchd --key-step                                     device.key (0600) in the
//!      first boot: marker, new key ─► systemd-creds          state directory, created,
//!        encrypt ─► device-key.cred (no clear copy)          read and rotated here;
//!      device.key found: seal it, verify, retire it          a warning at every start
//!      rotate-key.request found: new key, new credential
//!  latchd.service (user latchd, no TPM access):
//!    LoadCredentialEncrypted=device-key:…/device-key.cred
//!    ─► $CREDENTIALS_DIRECTORY/device-key (ramfs) ─► DeviceKey, buffer zeroed
//! ```
//!
//! # Factory reset rotates the key
//!
//! ```text
//!  1 the reset's transaction erases users and sealed tables and sets
//!    key_rotation_pending; then rotate-key.request is written and the
//!    daemon exits with EXIT_ROTATE (75) so that it is started again
//!  2 the new key: file backend: open() sees pending + the old key and
//!    replaces device.key (files::replace); credential backends: the key
//!    step sees the request, seals a new key into device-key.cred and
//!    retires the old credential, then removes the request
//!  3 open() with the new key: the key check no longer opens and pending
//!    is set, so the database is adopted in one transaction (sealed tables
//!    emptied again, check sealed anew, pending cleared)
//! ```
//! A power cut anywhere repeats the unfinished step: `files::recover`
//! finishes a half-done replacement; pending + old key rotates again; the
//! request exists only while pending is set, so a second rotation can
//! only happen before the daemon adopted the first. A new key means a new
//! serial, verification code and lock identity (all derived from it).
pub mod creds;
pub mod files;
mod provision;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{DeviceKey, Store, StoreError, StoreOptions, DEVICE_KEY_LEN, KEY_FILE};
pub use creds::{Seal, SystemdCreds};
pub use provision::{key_step, KeyStepDone};

/// The sealed credential in the state directory.
pub const CRED_FILE: &str = "device-key.cred";
/// Written after a factory reset: "seal a new key" (see the module doc).
pub const ROTATE_REQUEST: &str = "rotate-key.request";
/// Exit status of a daemon that stops so that it can be started with a
/// new key (`RestartForceExitStatus=75` in the unit; EX_TEMPFAIL).
pub const EXIT_ROTATE: u8 = 75;
/// Environment variable systemd sets for `LoadCredential*=`.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// `[key] storage`: where the device key rests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStorage {
    /// A systemd credential that only this board's TPM 2.0 can open;
    /// refuses to start without one.
    Tpm2,
    /// A systemd credential under the host key
    /// (`/var/lib/systemd/credential.secret`), and the TPM too where there
    /// is one (`--with-key=auto`): for boards without a TPM.
    Host,
    /// A plain 0600 file beside the database: development, the simulated
    /// board, `cargo run`. A flash dump reveals it.
    File,
}

impl KeyStorage {
    pub fn name(self) -> &'static str {
        match self {
            KeyStorage::Tpm2 => "tpm2",
            KeyStorage::Host => "host",
            KeyStorage::File => "file",
        }
    }
}

/// The `[key]` table of latchd.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyConfig {
    pub storage: KeyStorage,
    /// TPM PCRs the credential is bound to (`systemd-creds --tpm2-pcrs=`),
    /// e.g. "7" or "0+7"; empty: systemd-creds' default (PCR 7).
    pub tpm2_pcrs: String,
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig {
            storage: KeyStorage::File,
            tpm2_pcrs: String::new(),
        }
    }
}

impl KeyConfig {
    /// `tpm2_pcrs` is a `+`-separated list of PCR numbers 0..=23.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.tpm2_pcrs.is_empty() {
            return Ok(());
        }
        let ok = self
            .tpm2_pcrs
            .split('+')
            .all(|p| p.parse::<u8>().is_ok_and(|n| n <= 23));
        if ok {
            Ok(())
        } else {
            Err("use PCR numbers 0-23 joined by '+', e.g. \"7\" or \"0+7\", or leave it empty")
        }
    }
}

/// Why the key could not be had from where the config says it rests.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error(
        "[key] storage = \"{policy}\" but ${CREDENTIALS_DIRECTORY} is not set: latchd must run \
         under latchd.service, which loads the sealed key with LoadCredentialEncrypted=. For \
         development without systemd set [key] storage = \"file\""
    )]
    NoCredentialsDirectory { policy: &'static str },
    #[error(
        "the sealed device key {cred} exists but systemd did not pass it ({loaded} is missing): \
         check LoadCredentialEncrypted=device-key:{cred} in latchd.service"
    )]
    CredentialNotLoaded { cred: PathBuf, loaded: PathBuf },
    #[error(
        "no sealed device key {cred}: latchd-key.service (latchd --key-step, as root) creates \
         it before latchd starts; check that it ran (journalctl -u latchd-key)"
    )]
    NotProvisioned { cred: PathBuf },
    #[error(
        "[key] storage = \"{policy}\" but the plain key file {key} is still there: \
         latchd-key.service seals it and removes it; check that it ran (journalctl -u latchd-key)"
    )]
    PlainKeyPresent { key: PathBuf, policy: &'static str },
    #[error(
        "[key] storage = \"file\" but the device key is sealed in {cred}: set [key] storage back \
         to the credential backend it was made with (\"tpm2\" or \"host\")"
    )]
    CredentialPresent { cred: PathBuf },
    #[error(
        "{cred} is sealed with the {seal} key only, but [key] storage = \"{policy}\" needs the \
         TPM 2.0: the board's TPM was missing when it was made. Enable the TPM (or set \
         storage = \"host\" if this board has none)"
    )]
    WeakSeal {
        cred: PathBuf,
        seal: &'static str,
        policy: &'static str,
    },
    #[error(
        "{key} and {cred} hold different keys: refusing to pick one. Keep the one the database \
         was made with and move the other away"
    )]
    TwoKeys { key: PathBuf, cred: PathBuf },
    #[error(
        "{db} exists but there is no device key ({cred} is missing): the sealed credentials \
         cannot be read. Restore the credential from this board's backup; to start over as a \
         new lock (all users lost), move {db} away and restart"
    )]
    KeyLost { cred: PathBuf, db: PathBuf },
    #[error("the state directory {dir} does not exist (systemd-tmpfiles creates it from latchd.conf in tmpfiles.d)")]
    NoStateDir { dir: PathBuf },
    #[error(
        "a factory reset retired the device key: latchd exits (status {EXIT_ROTATE}) so that \
         latchd-key.service seals a new one before it starts again"
    )]
    RestartToRotate,
    #[error(transparent)]
    Creds(#[from] creds::CredsError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a store's device key comes from.
pub(crate) trait KeySlot {
    /// The file that holds the key at rest (for messages).
    fn location(&self) -> &Path;
    /// Finish what a power cut interrupted; refuse contradictory files.
    fn recover(&self) -> Result<(), StoreError>;
    fn exists(&self) -> Result<bool, StoreError>;
    fn read(&self) -> Result<DeviceKey, StoreError>;
    /// First start: keep this new key (only a file can be made here).
    fn create(&self, key: &DeviceKey) -> Result<(), StoreError>;
    /// Whether [`KeySlot::create`] can work, asked before a first start
    /// writes anything.
    fn can_create(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// A factory reset retired the key: make a new one, or say who must.
    fn rotate(&self) -> Result<DeviceKey, StoreError>;
}

/// `device.key`, a plain file.
pub(crate) struct FileSlot {
    path: PathBuf,
    cred: PathBuf,
}

impl FileSlot {
    pub(crate) fn new(state_dir: &Path) -> FileSlot {
        FileSlot {
            path: state_dir.join(KEY_FILE),
            cred: state_dir.join(CRED_FILE),
        }
    }
}

impl KeySlot for FileSlot {
    fn location(&self) -> &Path {
        &self.path
    }

    fn recover(&self) -> Result<(), StoreError> {
        files::recover(&self.path).map_err(io_err(&self.path))?;
        if files::exists(&self.cred).map_err(io_err(&self.cred))? {
            return Err(KeystoreError::CredentialPresent {
                cred: self.cred.clone(),
            }
            .into());
        }
        Ok(())
    }

    fn exists(&self) -> Result<bool, StoreError> {
        Ok(files::exists(&self.path).map_err(io_err(&self.path))?)
    }

    fn read(&self) -> Result<DeviceKey, StoreError> {
        DeviceKey::read_file(&self.path)
    }

    fn create(&self, key: &DeviceKey) -> Result<(), StoreError> {
        key.create_file(&self.path)
    }

    fn rotate(&self) -> Result<DeviceKey, StoreError> {
        let key = DeviceKey::generate()?;
        files::replace(&self.path, key.as_bytes(), 0o600, &mut files::no_hook)
            .map_err(io_err(&self.path))?;
        // Done with the request; the database adopts the key next.
        if let Some(dir) = self.path.parent() {
            let request = dir.join(ROTATE_REQUEST);
            files::remove_durable(&request).map_err(io_err(&request))?;
        }
        tracing::info!(key = %self.path.display(), "factory reset: a new device key replaced the old one");
        Ok(key)
    }
}

/// `device-key.cred`, opened by systemd into `$CREDENTIALS_DIRECTORY`.
pub(crate) struct CredentialSlot {
    policy: KeyStorage,
    state_dir: PathBuf,
    cred: PathBuf,
    plain: PathBuf,
    /// `$CREDENTIALS_DIRECTORY/device-key`, when systemd set the variable.
    loaded: Option<PathBuf>,
}

impl CredentialSlot {
    pub(crate) fn new(
        state_dir: &Path,
        policy: KeyStorage,
        credentials_dir: Option<PathBuf>,
    ) -> CredentialSlot {
        CredentialSlot {
            policy,
            state_dir: state_dir.to_path_buf(),
            cred: state_dir.join(CRED_FILE),
            plain: state_dir.join(KEY_FILE),
            loaded: credentials_dir.map(|d| d.join(creds::CREDENTIAL_NAME)),
        }
    }

    /// The seal of the credential file, checked against the policy.
    fn seal(&self) -> Result<Seal, StoreError> {
        let seal = creds::seal_of(&self.cred).map_err(KeystoreError::from)?;
        if !seal.satisfies(self.policy) {
            return Err(KeystoreError::WeakSeal {
                cred: self.cred.clone(),
                seal: seal.name(),
                policy: self.policy.name(),
            }
            .into());
        }
        Ok(seal)
    }
}

impl KeySlot for CredentialSlot {
    fn location(&self) -> &Path {
        &self.cred
    }

    fn recover(&self) -> Result<(), StoreError> {
        // The key step (root) finishes interrupted replacements before we
        // run; a plain key left over means it did not run.
        if files::exists(&self.plain).map_err(io_err(&self.plain))? {
            return Err(KeystoreError::PlainKeyPresent {
                key: self.plain.clone(),
                policy: self.policy.name(),
            }
            .into());
        }
        Ok(())
    }

    fn exists(&self) -> Result<bool, StoreError> {
        Ok(files::exists(&self.cred).map_err(io_err(&self.cred))?)
    }

    fn read(&self) -> Result<DeviceKey, StoreError> {
        let loaded = self
            .loaded
            .as_ref()
            .ok_or(KeystoreError::NoCredentialsDirectory {
                policy: self.policy.name(),
            })?;
        self.seal()?;
        let mut f = match std::fs::File::open(loaded) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::CredentialNotLoaded {
                    cred: self.cred.clone(),
                    loaded: loaded.clone(),
                }
                .into())
            }
            Err(e) => return Err(io_err(loaded)(e).into()),
        };
        // Read one byte more than a key to notice a longer file; the
        // buffer is zeroed when it goes out of scope.
        let mut buf = Zeroizing::new([0u8; DEVICE_KEY_LEN + 1]);
        let mut n = 0;
        loop {
            let got = f.read(&mut buf[n..]).map_err(io_err(loaded))?;
            if got == 0 || n + got == buf.len() {
                n += got;
                break;
            }
            n += got;
        }
        if n != DEVICE_KEY_LEN {
            return Err(StoreError::KeyLength {
                path: loaded.clone(),
                len: n as u64,
                expected: DEVICE_KEY_LEN,
            });
        }
        let mut bytes = Zeroizing::new([0u8; DEVICE_KEY_LEN]);
        bytes.copy_from_slice(&buf[..DEVICE_KEY_LEN]);
        Ok(DeviceKey::from_bytes(*bytes))
    }

    fn create(&self, _key: &DeviceKey) -> Result<(), StoreError> {
        self.can_create()
    }

    fn can_create(&self) -> Result<(), StoreError> {
        Err(KeystoreError::NotProvisioned {
            cred: self.cred.clone(),
        }
        .into())
    }

    fn rotate(&self) -> Result<DeviceKey, StoreError> {
        request_rotation(&self.state_dir)?;
        Err(KeystoreError::RestartToRotate.into())
    }
}

/// Ask for a new key (after the factory reset's transaction committed).
pub(crate) fn request_rotation(state_dir: &Path) -> Result<(), StoreError> {
    let path = state_dir.join(ROTATE_REQUEST);
    if !files::exists(&path).map_err(io_err(&path))? {
        files::write_durable(&path, b"", 0o600).map_err(io_err(&path))?;
    }
    Ok(())
}

/// True after a factory reset until the new key is in place: the daemon
/// then exits with [`EXIT_ROTATE`] instead of 0.
pub fn rotation_requested(state_dir: &Path) -> bool {
    files::exists(&state_dir.join(ROTATE_REQUEST)).unwrap_or(false)
}

/// The store as the daemon opens it, with where its key rests.
#[derive(Debug)]
pub struct OpenedStore {
    pub store: Store,
    pub key: DeviceKey,
    /// What diagnostics show: `tpm2`, `host+tpm2`, `host` or `file`.
    pub storage: &'static str,
}

/// Open the store with the key from where `config` says it rests. The
/// daemon's one call at start-up.
pub fn open_store(
    state_dir: &Path,
    config: &KeyConfig,
    opts: StoreOptions,
) -> Result<OpenedStore, StoreError> {
    let dir = std::env::var_os(CREDENTIALS_DIRECTORY)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    open_store_from(state_dir, config, opts, dir.as_deref())
}

/// [`open_store`] with the credentials directory given rather than read
/// from `$CREDENTIALS_DIRECTORY` (tests).
pub fn open_store_from(
    state_dir: &Path,
    config: &KeyConfig,
    opts: StoreOptions,
    credentials_dir: Option<&Path>,
) -> Result<OpenedStore, StoreError> {
    match config.storage {
        KeyStorage::File => {
            tracing::warn!(
                "[key] storage = \"file\": the device key is a plain file in {}; a flash dump \
                 reveals it and with it every passcode. Use \"tpm2\" on a product",
                state_dir.display()
            );
            let (store, key) = Store::open_with(state_dir, opts, &FileSlot::new(state_dir))?;
            clear_stale_request(state_dir)?;
            Ok(OpenedStore {
                store,
                key,
                storage: "file",
            })
        }
        policy => {
            let slot =
                CredentialSlot::new(state_dir, policy, credentials_dir.map(Path::to_path_buf));
            let (store, key) = Store::open_with(state_dir, opts, &slot)?;
            let storage = slot.seal()?.name();
            tracing::info!("device key: systemd credential sealed with the {storage} key");
            Ok(OpenedStore {
                store,
                key,
                storage,
            })
        }
    }
}

/// The store is open and not waiting for a rotation: a request file left
/// by an interrupted file-backend rotation is done with.
fn clear_stale_request(state_dir: &Path) -> Result<(), StoreError> {
    let path = state_dir.join(ROTATE_REQUEST);
    Ok(files::remove_durable(&path).map_err(io_err(&path))?)
}
