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
    /// (DER), its private key (32 raw bytes, or a PEM/DER SEC1 or PKCS#8
    /// EC key), the product attestation intermediate (DER) and the
    /// certification declaration (DER). All four, or none for the
    /// development attestation (test DAC/PAI, "Matter Test PAA").
    pub dac: Option<PathBuf>,
    pub dac_key: Option<PathBuf>,
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
            pai: None,
            certification_declaration: None,
        }
    }
}

impl MatterConfig {
    /// Checked at load.
    pub fn validate(&self) -> Result<(), &'static str> {
        let files = [
            self.dac.is_some(),
            self.dac_key.is_some(),
            self.pai.is_some(),
            self.certification_declaration.is_some(),
        ];
        if files.iter().any(|f| *f) && !files.iter().all(|f| *f) {
            return Err("set all four of dac, dac_key, pai and certification_declaration, or none (the development attestation)");
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
    }
}
