//! Issue 18 item 4: a product's Matter DAC key sealed to the TPM. The key
//! is sealed with the real `systemd-creds encrypt --with-key=tpm2` to a
//! TPM 2.0 emulator (`swtpm`), opened into a credentials directory as
//! systemd's `LoadCredentialEncrypted=` does, and the lock — configured
//! with `[matter] dac_key_credential` and no key file — is commissioned by
//! Home Assistant's controller, which checks the attestation signature
//! made with that key. The attestation set is rs-matter's development one
//! written to files (its PAA is the one the test controller trusts); what
//! is proven is where the key comes from.
//!
//! Without the credential the node does not start (the lock runs on) and
//! says which unit line is missing.
//!
//! Run alone:
//!     cargo test --all-features --test it matter_dac:: -- --nocapture
use std::path::Path;
use std::process::{Command, Stdio};

use rs_matter::dm::clusters::dev_att::DeviceAttestation;
use rs_matter::dm::devices::test::TEST_DEV_ATT;
use serde_json::json;

use crate::common::bus::TestBus;
use crate::common::daemon::{first_start, Daemon};
use crate::common::matter::{
    lock_config, manual_code, wait_for_diagnostics, wait_until, Controller, NetNs,
};
use crate::common::swtpm::Swtpm;

const CREDENTIAL: &str = "matter-dac-key";

/// The development DAC key as `openssl ec -outform DER` writes a P-256
/// key: RFC 5915 ECPrivateKey with the curve and the public key.
fn dac_key_der() -> Vec<u8> {
    let mut der = vec![0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend_from_slice(TEST_DEV_ATT.dac_priv_key().access());
    der.extend_from_slice(&[
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0xa1, 0x44, 0x03,
        0x42, 0x00,
    ]);
    der.extend_from_slice(TEST_DEV_ATT.dac_pub_key().access());
    der
}

/// `[matter]` naming the product files and the credential, no key file.
fn product_config(dir: &Path) -> std::path::PathBuf {
    let att = dir.join("attestation");
    std::fs::create_dir(&att).unwrap();
    std::fs::write(att.join("dac.der"), TEST_DEV_ATT.dac()).unwrap();
    std::fs::write(att.join("pai.der"), TEST_DEV_ATT.pai()).unwrap();
    std::fs::write(att.join("cd.der"), TEST_DEV_ATT.cert_declaration()).unwrap();
    let config = lock_config(dir);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[matter]\n",
        &format!(
            "[matter]\ndac = \"{a}/dac.der\"\npai = \"{a}/pai.der\"\n\
             certification_declaration = \"{a}/cd.der\"\ndac_key_credential = \"{CREDENTIAL}\"\n",
            a = att.display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn creds(tpm: &Swtpm, verb: &str, args: &[&Path]) {
    let c = tpm.creds();
    let out = Command::new(&c.program)
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .arg(verb)
        .arg("--with-key=tpm2")
        .arg(format!("--name={CREDENTIAL}"))
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .expect("systemd-creds");
    assert!(
        out.status.success(),
        "systemd-creds {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_dac_key_sealed_to_the_tpm_attests_the_lock_to_home_assistants_controller() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start();
    // The factory: seal the key to this board's TPM; the clear copy goes.
    let clear = dir.path().join("dac_key.der");
    std::fs::write(&clear, dac_key_der()).unwrap();
    let sealed = dir.path().join("matter-dac-key.cred");
    creds(&tpm, "encrypt", &[&clear, &sealed]);
    std::fs::remove_file(&clear).unwrap();
    // A flash dump finds no key: the credential is the key encrypted.
    let on_flash = std::fs::read(&sealed).unwrap();
    let secret = TEST_DEV_ATT.dac_priv_key().access().to_vec();
    assert!(
        !on_flash
            .windows(secret.len())
            .any(|w| w == secret.as_slice()),
        "the sealed credential holds the key in clear"
    );

    let ns = NetNs::new();
    let state = dir.path().join("lock");
    let config = product_config(dir.path());
    let bus = TestBus::start();
    let start = |credentials: Option<&Path>| {
        let wrapper = ns.enter();
        let credentials = credentials.map(|p| p.display().to_string());
        let env: Vec<(&str, &str)> = credentials
            .as_deref()
            .map(|p| ("CREDENTIALS_DIRECTORY", p))
            .into_iter()
            .collect();
        Daemon::start_wrapped_with_env(
            &wrapper,
            &state,
            &["--config", config.to_str().unwrap(), "--dbus", &bus.address],
            &env,
        )
    };

    // Not passed by systemd: the node says which line is missing and
    // stays down; the lock itself runs.
    let d = start(None);
    first_start(&d);
    wait_until("the node to report the missing credential", || {
        d.log_text().contains("dac_key_credential")
    });
    assert!(
        d.log_text().contains("the lock runs on without Matter"),
        "{}",
        d.log_text()
    );
    assert!(d.sigterm().success());

    // systemd's LoadCredentialEncrypted= opens it into the service's
    // credentials directory.
    let loaded = dir.path().join("credentials");
    std::fs::create_dir(&loaded).unwrap();
    creds(&tpm, "decrypt", &[&sealed, &loaded.join(CREDENTIAL)]);
    let d = start(Some(&loaded));
    wait_for_diagnostics(&bus.address, "running", 0);
    assert!(
        !d.log_text().contains("development attestation"),
        "the development key was used: {}",
        d.log_text()
    );
    let code = manual_code(&state, &config);
    let mut c = Controller::start(&ns, &dir.path().join("controller"));
    d.ok(json!({"cmd": "set", "long": true}));
    // Commissioning checks the attestation: the DAC chain to the test PAA
    // and the challenge signed with the key the TPM released.
    let done = c.ok("commission", json!({"code": code}));
    assert!(done["node_id"].as_u64().is_some(), "{done}");
    c.stop();
    assert!(d.sigterm().success());
}
