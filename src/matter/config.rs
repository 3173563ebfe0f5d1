//! `[matter]` in the config file (`config/latchd.toml` documents it).
use std::path::PathBuf;

use serde::Deserialize;

/// `[matter]`: the Matter node (builds with the `matter` feature).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatterConfig {
    /// Run the node. On by default in builds that have it.
    pub enabled: bool,
    /// The network interface whose addresses the mDNS responder publishes;
    /// empty: the first interface that is up, not loopback, and has an IPv6
    /// address.
    pub interface: String,
    /// The UDP port of the node (Matter's is 5540).
    pub port: u16,
    /// Basic Information: vendor and product as the certification
    /// declaration names them. The defaults are the CSA's test vendor and
    /// rs-matter's test product, which its development attestation covers.
    pub vendor_id: u16,
    pub product_id: u16,
    pub vendor_name: String,
    pub product_name: String,
    /// A product's own attestation: the device attestation certificate
    /// (DER), its private key (a SEC1 DER P-256 key with its public key,
    /// `openssl ec -outform DER`), the product attestation intermediate
    /// (DER) and the certification declaration (DER). All four, or none for
    /// the development attestation (test DAC/PAI, "Matter Test PAA").
    pub dac: Option<PathBuf>,
    /// The DAC key as a plain file (0600 or 0400; development, or a board
    /// without a TPM) …
    pub dac_key: Option<PathBuf>,
    /// … or, on a product, the name of a systemd credential holding it,
    /// sealed to the TPM (`systemd-creds encrypt --with-key=tpm2`) and
    /// opened by systemd into `$CREDENTIALS_DIRECTORY`
    /// (`LoadCredentialEncrypted=<name>:<file>` in a drop-in of
    /// latchd.service, `docs/matter.md`). One of the two.
    pub dac_key_credential: Option<String>,
    pub pai: Option<PathBuf>,
    pub certification_declaration: Option<PathBuf>,
}

impl Default for MatterConfig {
    fn default() -> Self {
        MatterConfig {
            enabled: true,
            interface: String::new(),
            port: 5540,
            vendor_id: 0xFFF1,
            product_id: 0x8001,
            vendor_name: "latchd".into(),
            product_name: "latchd smart lock".into(),
            dac: None,
            dac_key: None,
            dac_key_credential: None,
            pai: None,
            certification_declaration: None,
        }
    }
}

impl MatterConfig {
    /// Checked at load.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.dac_key.is_some() && self.dac_key_credential.is_some() {
            return Err(
                "set dac_key (a file) or dac_key_credential (a systemd credential), not both",
            );
        }
        let files = [
            self.dac.is_some(),
            self.dac_key.is_some() || self.dac_key_credential.is_some(),
            self.pai.is_some(),
            self.certification_declaration.is_some(),
        ];
        if files.iter().any(|f| *f) && !files.iter().all(|f| *f) {
            return Err("set all four of dac, dac_key (or dac_key_credential), pai and certification_declaration, or none (the development attestation)");
        }
        if let Some(name) = &self.dac_key_credential {
            // systemd's credential names: a file name in the credentials
            // directory, so no path separators and no dot-files.
            let ok = !name.is_empty()
                && name.len() <= 64
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !ok {
                return Err("dac_key_credential is a systemd credential name: letters, digits, '-', '_' and '.', at most 64, not starting with '.'");
            }
        }
        if self.vendor_name.len() > 32 || self.product_name.len() > 32 {
            return Err("vendor_name and product_name are at most 32 bytes (Basic Information)");
        }
        if self.port == 0 {
            return Err("port must not be 0");
        }
        if self.interface.len() > 15 {
            return Err("interface names are at most 15 characters");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attestation_files_come_all_or_none() {
        assert!(MatterConfig::default().validate().is_ok());
        let half = MatterConfig {
            dac: Some("dac.der".into()),
            ..MatterConfig::default()
        };
        assert!(half.validate().is_err());
        let all = MatterConfig {
            dac: Some("dac.der".into()),
            dac_key: Some("dac.key".into()),
            pai: Some("pai.der".into()),
            certification_declaration: Some("cd.der".into()),
            ..MatterConfig::default()
        };
        assert!(all.validate().is_ok());
        let sealed = MatterConfig {
            dac_key: None,
            dac_key_credential: Some("matter-dac-key".into()),
            ..all.clone()
        };
        assert!(sealed.validate().is_ok());
        let both = MatterConfig {
            dac_key_credential: Some("matter-dac-key".into()),
            ..all
        };
        assert!(both.validate().is_err(), "a file and a credential");
        for bad in ["", "../dac", "a/b", ".hidden", "x y"] {
            let c = MatterConfig {
                dac_key_credential: Some(bad.into()),
                ..sealed.clone()
            };
            assert!(c.validate().is_err(), "{bad:?}");
        }
    }
}
