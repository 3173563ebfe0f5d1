//! Device attestation: rs-matter's development credentials (the default),
//! or a product's own DAC, PAI and certification declaration from files.
//!
//! A controller checks, during commissioning, that the DAC chains through
//! the PAI to a PAA it trusts and that the certification declaration names
//! this vendor and product. The development DAC (VID 0xFFF1, PID 0x8001)
//! chains to the CHIP "Matter Test PAA", which production controllers do
//! not trust: a product installs its own (`docs/matter.md`).
use std::path::Path;

use rs_matter::crypto::{CanonPkcPublicKeyRef, CanonPkcSecretKeyRef};
use rs_matter::dm::clusters::dev_att::DeviceAttestation;

use super::config::MatterConfig;

/// A P-256 key as `openssl ec -outform DER` writes it (RFC 5915
/// ECPrivateKey with the curve and the public key): 121 bytes.
const SEC1_PREFIX: [u8; 7] = [0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
const SEC1_CURVE: [u8; 14] = [
    0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0xa1, 0x44,
];
const SEC1_PUBLIC: [u8; 3] = [0x03, 0x42, 0x00];
const SEC1_LEN: usize = 121;

#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a P-256 key in DER (openssl ec -outform DER, with its public key)")]
    Key { path: String },
    #[error("{path} is empty or larger than {max} bytes")]
    Size { path: String, max: usize },
}

/// A product's attestation, loaded from the files `[matter]` names.
pub struct FileAttestation {
    dac: Vec<u8>,
    pai: Vec<u8>,
    cd: Vec<u8>,
    /// Private key (32 bytes) then the uncompressed public key (65 bytes).
    key: [u8; 97],
}

impl core::fmt::Debug for FileAttestation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FileAttestation").finish_non_exhaustive()
    }
}

fn read(path: &Path, max: usize) -> Result<Vec<u8>, AttestationError> {
    let bytes = std::fs::read(path).map_err(|source| AttestationError::Read {
        path: path.display().to_string(),
        source,
    })?;
    if bytes.is_empty() || bytes.len() > max {
        return Err(AttestationError::Size {
            path: path.display().to_string(),
            max,
        });
    }
    Ok(bytes)
}

/// The private and public key from an SEC1 DER P-256 key.
fn parse_key(der: &[u8]) -> Option<[u8; 97]> {
    if der.len() != SEC1_LEN || der[..7] != SEC1_PREFIX {
        return None;
    }
    let (secret, rest) = der[7..].split_at(32);
    let (curve, rest) = rest.split_at(SEC1_CURVE.len());
    let (bits, public) = rest.split_at(SEC1_PUBLIC.len());
    if curve != SEC1_CURVE || bits != SEC1_PUBLIC || public.len() != 65 || public[0] != 0x04 {
        return None;
    }
    let mut key = [0u8; 97];
    key[..32].copy_from_slice(secret);
    key[32..].copy_from_slice(public);
    Some(key)
}

impl FileAttestation {
    /// Load the four files; `None` when the config names none.
    pub fn load(c: &MatterConfig) -> Result<Option<FileAttestation>, AttestationError> {
        let (Some(dac), Some(key), Some(pai), Some(cd)) =
            (&c.dac, &c.dac_key, &c.pai, &c.certification_declaration)
        else {
            return Ok(None);
        };
        // Matter caps certificates at 600 bytes and a CD at 400; allow slack.
        let key_der = read(key, 1024)?;
        let key = parse_key(&key_der).ok_or_else(|| AttestationError::Key {
            path: key.display().to_string(),
        })?;
        Ok(Some(FileAttestation {
            dac: read(dac, 1024)?,
            pai: read(pai, 1024)?,
            cd: read(cd, 1024)?,
            key,
        }))
    }

    /// The DAC's private key, for rs-matter's crypto (it signs with it).
    pub fn secret_key(&self) -> CanonPkcSecretKeyRef<'_> {
        CanonPkcSecretKeyRef::new(self.key[..32].try_into().unwrap_or(&[0; 32]))
    }
}

impl rs_matter::utils::sync::DynBase for FileAttestation {}

impl DeviceAttestation for FileAttestation {
    fn cert_declaration(&self) -> &[u8] {
        &self.cd
    }

    fn pai(&self) -> &[u8] {
        &self.pai
    }

    fn dac(&self) -> &[u8] {
        &self.dac
    }

    fn dac_pub_key(&self) -> CanonPkcPublicKeyRef<'_> {
        CanonPkcPublicKeyRef::new(self.key[32..].try_into().unwrap_or(&[0; 65]))
    }

    fn dac_priv_key(&self) -> CanonPkcSecretKeyRef<'_> {
        self.secret_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sec1_der_key_parses_and_other_bytes_do_not() {
        let mut der = Vec::new();
        der.extend_from_slice(&SEC1_PREFIX);
        der.extend_from_slice(&[7; 32]);
        der.extend_from_slice(&SEC1_CURVE);
        der.extend_from_slice(&SEC1_PUBLIC);
        der.push(0x04);
        der.extend_from_slice(&[9; 64]);
        let key = parse_key(&der).unwrap();
        assert_eq!(&key[..32], &[7; 32]);
        assert_eq!(key[32], 0x04);
        assert!(parse_key(&der[..120]).is_none());
        der[5] = 0x05;
        assert!(parse_key(&der).is_none());
    }
}
