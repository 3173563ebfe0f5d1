//! Start-up step 1: the lock's state, read once.
//!
//! ```text
//!   state dir (0700) ─► keystore::open_store (device key from `[key] storage`:
//!        │                 TPM-sealed credential or file; created on first start)
//!        │                 ├─ load() ─────────► Persisted (engine, board modules, face templates)
//!        │                 ├─ motor cycles ───► diagnostics
//!        │                 └─ reader() ───────► read-only connection for the channels
//!        │                 └─ meta ──────────► an owner's time sync of this boot (clock_sync)
//!        └─ device key ──► passcode key ─► serial, the lock's static key, the
//!                          verification code of each pairing generation (pairing_code)
//!   [remote] table ──────► resolved and its TLS files read (a bad table fails the start)
//! ```
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::pairing_code::PairingCodes;
use super::{clock_sync, status, DaemonError, Options};
use crate::app::crypto::{lock_keypair, StaticKeypair};
use crate::app::pairing::{CurrentCode, VerificationCode, CODE_BYTES};
use crate::biometrics::fingerprint::pairing::{self, ModuleLink, Pairing};
use crate::config::Config;
use crate::core::types::Persisted;
use crate::core::EngineConfig;
use crate::remote::RemoteSettings;
use crate::store::keystore::{self, OpenedStore};
use crate::store::{StorageHealth, Store, StoreOptions, StoreReader};

/// The database's two connections, until the daemon hands them out.
#[derive(Debug)]
pub struct Storage {
    /// The writer; moved onto the store thread when the engine starts.
    pub writer: Store,
    /// A read-only connection for the channels.
    pub reader: StoreReader,
}

/// What the lock knows about itself when it starts, each file read once.
pub struct State {
    /// What the store held at start-up (`store.load()`, the only time).
    pub persisted: Persisted,
    /// The engine's configuration (passcode key, serial, code, firmware).
    pub engine_config: EngineConfig,
    /// The verification code of each pairing generation (issue 13 item 6).
    pub pairing_codes: PairingCodes,
    /// The code owner pairing accepts now (B-5.1): the stored generation's;
    /// the engine task moves it on after each owner pairing or reset.
    pub current_code: CurrentCode,
    /// An owner's time sync remembered by the store (issue 13 item 3).
    pub owner_time_sync: Option<clock_sync::Remembered>,
    /// The lock's long-term key on both app channels.
    pub lock_key: Arc<StaticKeypair>,
    /// Bolt moves of earlier runs.
    pub motor_cycles_before: u64,
    /// The storage summary at start-up (the open's quick_check), shown
    /// until the first write refreshes it.
    pub storage_health: StorageHealth,
    /// The fingerprint module's password (issue 13 item 7).
    pub fingerprint_link: ModuleLink,
    /// Where the device key rests (`tpm2`, `host+tpm2`, `host`, `file`).
    pub key_storage: &'static str,
    /// `[remote]`, resolved (`None`: off), and its TLS configuration.
    pub remote: Option<(RemoteSettings, Option<Arc<rustls::ClientConfig>>)>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("serial", &self.engine_config.serial)
            .finish_non_exhaustive()
    }
}

impl State {
    /// [`State::open`] on the blocking pool: opening checks the database
    /// (quick_check) and loads every sealed value, which is disk work an
    /// async worker must not wait on.
    pub async fn open_off_runtime(opts: &Options) -> Result<(State, Storage), DaemonError> {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || State::open(&opts))
            .await
            .map_err(DaemonError::StartTask)?
    }

    /// Open the store in the state directory and derive what follows from
    /// the device key; resolve `[remote]` before anything runs.
    pub fn open(opts: &Options) -> Result<(State, Storage), DaemonError> {
        create_state_dir(&opts.state_dir)?;
        let config = &opts.config;
        let OpenedStore {
            mut store,
            key,
            storage: key_storage,
        } = keystore::open_store(
            &opts.state_dir,
            &config.key,
            StoreOptions {
                max_events: config.store.max_events,
                max_db_bytes: (config.store.max_db_bytes != 0).then_some(config.store.max_db_bytes),
                cache_kib: config.store.cache_kib,
                ..StoreOptions::default()
            },
        )?;
        let passcode_key: Zeroizing<[u8; 32]> = key.passcode_key();
        drop(key);
        let (serial, _label_code) = identity(config, &passcode_key);
        let pairing_codes = PairingCodes::new(config, &passcode_key);
        let remote = match config.remote.resolve()? {
            Some(settings) => {
                let tls = match &settings.tls {
                    Some(m) => Some(crate::remote::tls_config(m)?),
                    None => None,
                };
                Some((settings, tls))
            }
            None => None,
        };
        let engine_config = EngineConfig {
            passcode_key: *passcode_key,
            serial,
            firmware: env!("CARGO_PKG_VERSION").into(),
            pairing_codes: pairing_codes.for_engine(),
            low_battery_percent: config.lock.low_battery_percent,
            one_time_code_ttl: std::time::Duration::from_secs(
                u64::from(config.lock.one_time_code_hours) * 3600,
            ),
            matter_code: super::matter_port::label_code(config, &mut store),
            weak_wifi_dbm: config.wifi.weak_signal_dbm,
            update: config.update.policy(),
            default_language: config.prompts.language,
            time_zone: crate::zone::load(&config.lock.time_zone)?,
        };
        let persisted = store.load()?;
        let fingerprint_link = fingerprint_link(&mut store)?;
        // Issue 13 item 6: owner pairing accepts the current generation's code.
        let current_code = CurrentCode::new(pairing_codes.code(persisted.pairing_generation));
        let state = State {
            persisted,
            owner_time_sync: clock_sync::read(&store),
            motor_cycles_before: store.get_counter(status::MOTOR_CYCLES)?.unwrap_or(0),
            storage_health: store.health(),
            fingerprint_link,
            key_storage,
            engine_config,
            pairing_codes,
            current_code,
            lock_key: Arc::new(lock_keypair(&passcode_key)),
            remote,
        };
        let storage = Storage {
            reader: store.reader()?,
            writer: store,
        };
        Ok((state, storage))
    }
}

/// Issue 13 item 7: the lock's fingerprint module password. Made at first
/// start (and committed, sealed, before any module is given it), when this
/// start may adopt a factory-fresh module; afterwards only verified.
fn fingerprint_link(store: &mut Store) -> Result<ModuleLink, DaemonError> {
    if let Some(password) = store.fingerprint_module_password()? {
        return Ok(ModuleLink {
            password,
            pairing: Pairing::Verify,
        });
    }
    let password = pairing::generate_password().map_err(crate::store::StoreError::Random)?;
    store.put_fingerprint_module_password(password)?;
    tracing::info!(
        "made the lock's fingerprint module password; a factory-fresh module is paired now"
    );
    Ok(ModuleLink {
        password,
        pairing: Pairing::AdoptFactory,
    })
}

/// Create the state directory (0700: it holds the device key).
pub fn create_state_dir(path: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| DaemonError::StateDir {
            path: path.to_owned(),
            source,
        })
}

/// Serial and verification code: from the config, or derived from the
/// device key so every lock has its own and they survive restarts. The
/// code is the one owner pairing is authenticated with (B-5.1), printed in
/// the QR label and spoken by system information (B-4.10) — one code, 120
/// bits, so a man in the middle cannot guess it during a pairing window.
pub(super) fn identity(config: &Config, passcode_key: &[u8; 32]) -> (String, VerificationCode) {
    let derive = |label: &[u8]| -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(passcode_key)
            .expect("HMAC-SHA256 takes a key of any length");
        // Labels contain letters, so they never equal a digits-only
        // passcode MACed under the same key.
        mac.update(label);
        mac.finalize().into_bytes().into()
    };
    let serial = if config.lock.serial.is_empty() {
        format!(
            "LD-{}",
            hex::encode_upper(&derive(b"latchd/serial/v1")[..5])
        )
    } else {
        config.lock.serial.clone()
    };
    let derived = || {
        let d = derive(b"latchd/verification-code/v2");
        let mut b = [0u8; CODE_BYTES];
        b.copy_from_slice(&d[..CODE_BYTES]);
        VerificationCode::from_bytes(b)
    };
    // The config was validated at load; a code that still does not parse
    // falls back to the derived one rather than to no code at all.
    let code = if config.lock.verification_code.is_empty() {
        derived()
    } else {
        VerificationCode::parse(&config.lock.verification_code).unwrap_or_else(|_| derived())
    };
    (serial, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_identity_is_stable_and_well_formed() {
        let config = Config::default();
        let (s1, c1) = identity(&config, &[7; 32]);
        let (s2, c2) = identity(&config, &[7; 32]);
        assert_eq!(s1, s2);
        assert_eq!(*c1.display(), *c2.display());
        assert!(s1.starts_with("LD-") && s1.len() == 13, "{s1}");
        // 24 base32 characters in six groups of four.
        let shown = c1.display();
        assert_eq!(shown.len(), 29, "{}", *shown);
        assert!(shown
            .chars()
            .all(|c| c == '-' || c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
        let (s3, c3) = identity(&config, &[8; 32]);
        assert_ne!(s3, s1);
        assert_ne!(*c3.display(), *shown);
    }
}
