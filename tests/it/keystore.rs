//! The device key's backends against the real `systemd-creds` (systemd
//! 252) and a real TPM 2.0 emulator (`swtpm`, reached through the TSS2
//! swtpm TCTI: `SYSTEMD_TPM2_DEVICE=swtpm:path=…`), on the host: first-boot
//! provisioning, migration from a plain key file and factory-reset
//! rotation, each interrupted between every pair of file steps (the key
//! step's hook stops there, as a killed process would) and then run again.
//! The guarantee checked after every interruption: the credential opens
//! to exactly one key — the old one before the promotion, the new one
//! after it — and no clear copy or half-written file is left behind.
//!
//! What systemd itself does with the credential (`LoadCredentialEncrypted=`
//! into `$CREDENTIALS_DIRECTORY`) is exercised in the VM (`vm_tpm.rs`);
//! here the test plays that part with `systemd-creds decrypt`.
//!
//! Needs the Debian packages `systemd`, `swtpm` and the TSS2 libraries
//! systemd-creds loads (`libtss2-esys-3.0.2-0 libtss2-rc0 libtss2-mu0
//! libtss2-tcti-swtpm0`); scripts/test.sh installs them.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use latchd::core::types::Change;
use latchd::store::keystore::{
    self, files, open_store_from, KeyConfig, KeyStepDone, KeyStorage, KeystoreError, Seal,
    SystemdCreds, CRED_FILE, ROTATE_REQUEST,
};
use latchd::store::{DeviceKey, Store, StoreError, StoreOptions, KEY_FILE};

use crate::common::swtpm::Swtpm;

fn config(storage: KeyStorage) -> KeyConfig {
    KeyConfig {
        storage,
        tpm2_pcrs: String::new(),
    }
}

fn new_state() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    (dir, state)
}

/// A fingerprint of a key (its passcode subkey): equal iff the key is.
fn id(key: &DeviceKey) -> [u8; 32] {
    *key.passcode_key()
}

/// What systemd's `LoadCredentialEncrypted=device-key:…` hands the daemon:
/// the opened key as `<into>/device-key`, written by systemd-creds itself.
fn load_credential(tpm: &Swtpm, state: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let out = into.join("device-key");
    let _ = std::fs::remove_file(&out);
    let creds = tpm.creds();
    let status = Command::new(&creds.program)
        .envs(creds.env.iter().map(|(k, v)| (k, v)))
        .arg("decrypt")
        .arg("--name=device-key")
        .arg(state.join(CRED_FILE))
        .arg(&out)
        .stderr(Stdio::null())
        .status()
        .expect("systemd-creds");
    assert!(status.success(), "systemd-creds decrypt failed");
}

/// Files a half-finished step could leave: none may remain after a run.
fn leftovers(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".new") || n.ends_with(".wipe") || n.ends_with(".check"))
        .collect();
    names.sort();
    names
}

/// Run the key step stopping at its `n`th file step (1-based); `None`
/// when it finished before reaching it.
fn step_interrupted_at(
    state: &Path,
    cfg: &KeyConfig,
    creds: &SystemdCreds,
    n: usize,
) -> Option<files::Step> {
    let mut seen = 0;
    let mut stopped = None;
    let mut hook = |s: files::Step| {
        seen += 1;
        if seen == n {
            stopped = Some(s);
            Err(std::io::Error::other("killed here (test)"))
        } else {
            Ok(())
        }
    };
    let r = keystore::key_step(state, cfg, creds, &mut hook);
    match stopped {
        Some(s) => {
            assert!(r.is_err(), "the hook stopped it at {s:?}");
            Some(s)
        }
        None => {
            r.expect("an uninterrupted key step succeeds");
            None
        }
    }
}

#[test]
fn first_boot_seals_a_new_key_with_the_tpm_and_writes_no_clear_copy() {
    let tpm = Swtpm::start();
    let creds = tpm.creds();
    let (_d, state) = new_state();
    let done = keystore::key_step(
        &state,
        &config(KeyStorage::Tpm2),
        &creds,
        &mut files::no_hook,
    )
    .expect("key step");
    assert_eq!(done, KeyStepDone::Provisioned);
    assert!(!state.join(KEY_FILE).exists());
    assert_eq!(
        keystore::creds::seal_of(&state.join(CRED_FILE)).unwrap(),
        Seal::Tpm2
    );
    assert!(leftovers(&state).is_empty());

    // The daemon's side: open the store from the loaded credential, twice.
    let loaded = state.parent().unwrap().join("credentials");
    load_credential(&tpm, &state, &loaded);
    let first = open_store_from(
        &state,
        &config(KeyStorage::Tpm2),
        StoreOptions::default(),
        Some(&loaded),
    )
    .expect("opens with the loaded key");
    assert_eq!(first.storage, "tpm2");
    let first_id = id(&first.key);
    drop(first);
    // A second key step only verifies.
    let done = keystore::key_step(
        &state,
        &config(KeyStorage::Tpm2),
        &creds,
        &mut files::no_hook,
    )
    .unwrap();
    assert_eq!(done, KeyStepDone::Verified);
    load_credential(&tpm, &state, &loaded);
    let again = open_store_from(
        &state,
        &config(KeyStorage::Tpm2),
        StoreOptions::default(),
        Some(&loaded),
    )
    .unwrap();
    assert_eq!(id(&again.key), first_id, "a restart keeps the key");

    // Without systemd's credentials directory it refuses, naming it.
    drop(again);
    let e = open_store_from(
        &state,
        &config(KeyStorage::Tpm2),
        StoreOptions::default(),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("CREDENTIALS_DIRECTORY"), "{e}");
}

#[test]
fn migration_from_a_key_file_survives_an_interruption_at_every_step() {
    let tpm = Swtpm::start();
    let creds = tpm.creds();
    let cfg = config(KeyStorage::Tpm2);
    let mut n = 1;
    loop {
        // A lock that ran with a plain key file.
        let (_d, state) = new_state();
        let (store, key) = Store::open(&state, StoreOptions::default()).unwrap();
        drop(store);
        let original = id(&key);

        let stopped = step_interrupted_at(&state, &cfg, &creds, n);
        // Whatever the interruption left, the next run finishes it...
        let done = keystore::key_step(&state, &cfg, &creds, &mut files::no_hook)
            .unwrap_or_else(|e| panic!("after a stop at step {n} ({stopped:?}): {e}"));
        if stopped.is_none() {
            assert_eq!(done, KeyStepDone::Verified);
        }
        // ...with the same key sealed, and the plain file gone.
        assert!(!state.join(KEY_FILE).exists(), "step {n}: plain key left");
        assert!(
            leftovers(&state).is_empty(),
            "step {n}: {:?}",
            leftovers(&state)
        );
        let sealed = creds.decrypt(&state.join(CRED_FILE)).unwrap();
        assert_eq!(id(&sealed), original, "step {n} ({stopped:?}): another key");
        // And the daemon opens its database with it.
        let loaded = state.parent().unwrap().join("credentials");
        load_credential(&tpm, &state, &loaded);
        let opened = open_store_from(&state, &cfg, StoreOptions::default(), Some(&loaded))
            .unwrap_or_else(|e| panic!("step {n}: {e}"));
        assert_eq!(id(&opened.key), original);
        println!("migration stopped at file step {n} ({stopped:?}): recovered, same key");
        if stopped.is_none() {
            break;
        }
        n += 1;
    }
    assert!(n >= 3, "the migration has at least three file steps");
}

#[test]
fn factory_reset_rotates_the_credential_even_when_interrupted() {
    let tpm = Swtpm::start();
    let creds = tpm.creds();
    let cfg = config(KeyStorage::Tpm2);
    let mut n = 1;
    loop {
        let (_d, state) = new_state();
        let loaded = state.parent().unwrap().join("credentials");
        keystore::key_step(&state, &cfg, &creds, &mut files::no_hook).unwrap();
        load_credential(&tpm, &state, &loaded);
        let mut opened =
            open_store_from(&state, &cfg, StoreOptions::default(), Some(&loaded)).unwrap();
        let old = id(&opened.key);
        // The reset: its transaction retires the key and asks for a new one.
        opened.store.apply(&[Change::FactoryReset]).unwrap();
        drop(opened);
        assert!(state.join(ROTATE_REQUEST).exists());
        assert!(keystore::rotation_requested(&state));
        // Started again before the key step ran (or with the old key
        // still loaded): the daemon refuses with exit status 75.
        let e = open_store_from(&state, &cfg, StoreOptions::default(), Some(&loaded)).unwrap_err();
        assert!(
            matches!(e, StoreError::Keystore(KeystoreError::RestartToRotate)),
            "{e}"
        );

        let stopped = step_interrupted_at(&state, &cfg, &creds, n);
        let done = keystore::key_step(&state, &cfg, &creds, &mut files::no_hook).unwrap();
        if stopped.is_none() {
            assert_eq!(done, KeyStepDone::Verified);
        }
        assert!(
            !state.join(ROTATE_REQUEST).exists(),
            "step {n}: request left"
        );
        assert!(
            leftovers(&state).is_empty(),
            "step {n}: {:?}",
            leftovers(&state)
        );
        load_credential(&tpm, &state, &loaded);
        let opened = open_store_from(&state, &cfg, StoreOptions::default(), Some(&loaded))
            .unwrap_or_else(|e| panic!("step {n} ({stopped:?}): {e}"));
        assert_ne!(id(&opened.key), old, "step {n}: the key did not change");
        assert_eq!(opened.store.load().unwrap(), Default::default());
        println!("rotation stopped at file step {n} ({stopped:?}): recovered, new key");
        if stopped.is_none() {
            break;
        }
        n += 1;
    }
}

#[test]
fn host_storage_works_without_a_tpm_and_tpm2_refuses_its_credential() {
    let tpm = Swtpm::start();
    let mut creds = tpm.creds();
    // No TPM reachable: the host key alone seals.
    creds.env[1].1 = "/nonexistent/tpmrm0".into();
    let (_d, state) = new_state();
    let done = keystore::key_step(
        &state,
        &config(KeyStorage::Host),
        &creds,
        &mut files::no_hook,
    )
    .unwrap();
    assert_eq!(done, KeyStepDone::Provisioned);
    assert_eq!(
        keystore::creds::seal_of(&state.join(CRED_FILE)).unwrap(),
        Seal::Host
    );
    // The same credential under the tpm2 policy: refused, saying why.
    let e = keystore::key_step(
        &state,
        &config(KeyStorage::Tpm2),
        &creds,
        &mut files::no_hook,
    )
    .unwrap_err();
    assert!(matches!(e, KeystoreError::WeakSeal { .. }), "{e}");
    assert!(e.to_string().contains("needs the TPM 2.0"), "{e}");

    // And tpm2 on a board without a TPM makes nothing.
    let (_d, state) = new_state();
    let e = keystore::key_step(
        &state,
        &config(KeyStorage::Tpm2),
        &creds,
        &mut files::no_hook,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("systemd-creds encrypt failed"),
        "{e}"
    );
    assert!(!state.join(CRED_FILE).exists());
    assert!(!state.join(KEY_FILE).exists());
}

#[test]
fn a_plain_key_and_a_different_credential_are_never_merged() {
    let tpm = Swtpm::start();
    let creds = tpm.creds();
    let cfg = config(KeyStorage::Tpm2);
    let (_d, state) = new_state();
    keystore::key_step(&state, &cfg, &creds, &mut files::no_hook).unwrap();
    // Someone puts back an unrelated plain key file.
    let other = tempfile::tempdir().unwrap();
    drop(Store::open(other.path(), StoreOptions::default()).unwrap());
    std::fs::copy(other.path().join(KEY_FILE), state.join(KEY_FILE)).unwrap();
    let e = keystore::key_step(&state, &cfg, &creds, &mut files::no_hook).unwrap_err();
    assert!(matches!(e, KeystoreError::TwoKeys { .. }), "{e}");
    // Nothing was destroyed.
    assert!(state.join(KEY_FILE).exists());
    assert!(state.join(CRED_FILE).exists());
    // The daemon refuses too, naming the file.
    let loaded = state.parent().unwrap().join("credentials");
    load_credential(&tpm, &state, &loaded);
    let e = open_store_from(&state, &cfg, StoreOptions::default(), Some(&loaded)).unwrap_err();
    assert!(e.to_string().contains("device.key"), "{e}");
}

#[test]
fn a_database_without_its_credential_is_refused_not_given_a_new_key() {
    let tpm = Swtpm::start();
    let creds = tpm.creds();
    let cfg = config(KeyStorage::Tpm2);
    let (_d, state) = new_state();
    keystore::key_step(&state, &cfg, &creds, &mut files::no_hook).unwrap();
    let loaded = state.parent().unwrap().join("credentials");
    load_credential(&tpm, &state, &loaded);
    drop(open_store_from(&state, &cfg, StoreOptions::default(), Some(&loaded)).unwrap());
    std::fs::remove_file(state.join(CRED_FILE)).unwrap();
    let e = keystore::key_step(&state, &cfg, &creds, &mut files::no_hook).unwrap_err();
    assert!(matches!(e, KeystoreError::KeyLost { .. }), "{e}");
    assert!(!state.join(CRED_FILE).exists());
}
