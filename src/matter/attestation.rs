//! Device attestation: rs-matter's development credentials (the default),
//! or a product's own DAC, PAI and certification declaration from files.
//!
//! A controller checks, during commissioning, that the DAC chains through
//! the PAI to a PAA it trusts and that the certification declaration names
//! this vendor and product. The development DAC (VID 0xFFF1, PID 0x8001)
//! chains to the CHIP "Matter Test PAA", which production controllers do
//! not trust: a product installs its own (`docs/matter.md`).
//!
//! The DAC's private key is what makes the lock this product's genuine
//! device: whoever reads it (a flash dump) can make clones that pass
//! attestation. On a product it rests sealed to the TPM as a systemd
//! credential (`[matter] dac_key_credential`), opened by systemd into the
//! service's private ramfs; a plain `dac_key` file must be private to
//! latchd (no group or other permission bits).
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

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
    #[error(
        "the Matter DAC key {path} is readable by others (mode {mode:04o}): it is the product's \
         identity; chmod 600 it, or seal it to the TPM ([matter] dac_key_credential, docs/matter.md)"
    )]
    Exposed { path: String, mode: u32 },
    #[error(
        "[matter] dac_key_credential = \"{name}\" but ${{CREDENTIALS_DIRECTORY}} is not set: latchd \
         must run under latchd.service with LoadCredentialEncrypted={name}:<sealed file> \
         (docs/matter.md)"
    )]
    NoCredentialsDirectory { name: String },
    #[error(
        "[matter] dac_key_credential = \"{name}\" but systemd did not pass it ({path} is missing): \
         check LoadCredentialEncrypted={name}:<sealed file> in latchd.service's drop-in"
    )]
    CredentialNotLoaded { name: String, path: String },
}

/// A product's attestation, loaded from the files `[matter]` names.
pub struct FileAttestation {
    dac: Vec<u8>,
    pai: Vec<u8>,
    cd: Vec<u8>,
    /// Private key (32 bytes) then the uncompressed public key (65 bytes),
    /// zeroed when the node stops.
    key: Zeroizing<[u8; 97]>,
}

impl core::fmt::Debug for FileAttestation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FileAttestation").finish_non_exhaustive()
    }
}

/// Where the DAC key comes from (`[matter] dac_key` or `dac_key_credential`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Credential(String),
}

/// The SEC1 DER bytes of the DAC key from its source: a file that must be
/// latchd's alone, or the credential systemd opened into
/// `credentials` (`$CREDENTIALS_DIRECTORY`).
fn read_key(
    source: &KeySource,
    credentials: Option<&Path>,
) -> Result<(Zeroizing<Vec<u8>>, String), AttestationError> {
    let path = match source {
        KeySource::File(path) => {
            let meta = std::fs::metadata(path).map_err(|source| AttestationError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(AttestationError::Exposed {
                    path: path.display().to_string(),
                    mode,
                });
            }
            path.clone()
        }
        KeySource::Credential(name) => {
            let dir = credentials
                .ok_or_else(|| AttestationError::NoCredentialsDirectory { name: name.clone() })?;
            let path = dir.join(name);
            if !path.exists() {
                return Err(AttestationError::CredentialNotLoaded {
                    name: name.clone(),
                    path: path.display().to_string(),
                });
            }
            path
        }
    };
    Ok((
        Zeroizing::new(read(&path, 1024)?),
        path.display().to_string(),
    ))
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
    /// Load the four; `None` when the config names none. The credential,
    /// if that is where the key rests, from `$CREDENTIALS_DIRECTORY`.
    pub fn load(c: &MatterConfig) -> Result<Option<FileAttestation>, AttestationError> {
        // systemd's variable for `LoadCredential*=`.
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        Self::load_from(c, credentials.as_deref())
    }

    /// [`load`](Self::load) with the credentials directory given.
    pub fn load_from(
        c: &MatterConfig,
        credentials: Option<&Path>,
    ) -> Result<Option<FileAttestation>, AttestationError> {
        let key = match (&c.dac_key, &c.dac_key_credential) {
            (Some(path), _) => Some(KeySource::File(path.clone())),
            (None, Some(name)) => Some(KeySource::Credential(name.clone())),
            (None, None) => None,
        };
        let (Some(dac), Some(key), Some(pai), Some(cd)) =
            (&c.dac, key, &c.pai, &c.certification_declaration)
        else {
            return Ok(None);
        };
        // Matter caps certificates at 600 bytes and a CD at 400; allow slack.
        let (key_der, key_path) = read_key(&key, credentials)?;
        let key = parse_key(&key_der)
            .map(Zeroizing::new)
            .ok_or(AttestationError::Key { path: key_path })?;
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

    fn key_der() -> Vec<u8> {
        let mut der = Vec::new();
        der.extend_from_slice(&SEC1_PREFIX);
        der.extend_from_slice(&[7; 32]);
        der.extend_from_slice(&SEC1_CURVE);
        der.extend_from_slice(&SEC1_PUBLIC);
        der.push(0x04);
        der.extend_from_slice(&[9; 64]);
        der
    }

    /// The product's attestation from files, the key from a file or a
    /// systemd credential.
    fn product(dir: &Path, key: KeySource) -> MatterConfig {
        for f in ["dac.der", "pai.der", "cd.der"] {
            std::fs::write(dir.join(f), [0x30, 0x03, 0x02, 0x01, 0x01]).unwrap();
        }
        let (dac_key, dac_key_credential) = match key {
            KeySource::File(p) => (Some(p), None),
            KeySource::Credential(n) => (None, Some(n)),
        };
        MatterConfig {
            dac: Some(dir.join("dac.der")),
            dac_key,
            dac_key_credential,
            pai: Some(dir.join("pai.der")),
            certification_declaration: Some(dir.join("cd.der")),
            ..MatterConfig::default()
        }
    }

    /// A flash dump must not find the DAC key readable by any user: a
    /// plain key file is taken only when it is latchd's alone.
    #[test]
    fn a_dac_key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dac_key.der");
        std::fs::write(&path, key_der()).unwrap();
        let c = product(dir.path(), KeySource::File(path.clone()));
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = FileAttestation::load_from(&c, None).unwrap_err();
            assert!(
                matches!(e, AttestationError::Exposed { .. }),
                "{mode:o}: {e}"
            );
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let att = FileAttestation::load_from(&c, None).unwrap().unwrap();
            assert_eq!(att.secret_key().access(), &[7; 32]);
        }
    }

    /// The sealed key comes from the directory systemd opened it into, and
    /// its absence is an error that says which unit line is missing.
    #[test]
    fn a_dac_key_credential_is_read_from_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        let c = product(dir.path(), KeySource::Credential("matter-dac-key".into()));
        let e = FileAttestation::load_from(&c, None).unwrap_err();
        assert!(
            matches!(e, AttestationError::NoCredentialsDirectory { .. }),
            "{e}"
        );
        let e = FileAttestation::load_from(&c, Some(&creds)).unwrap_err();
        assert!(
            matches!(e, AttestationError::CredentialNotLoaded { .. }),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("LoadCredentialEncrypted=matter-dac-key:"),
            "{e}"
        );
        std::fs::write(creds.join("matter-dac-key"), key_der()).unwrap();
        let att = FileAttestation::load_from(&c, Some(&creds))
            .unwrap()
            .unwrap();
        assert_eq!(att.secret_key().access(), &[7; 32]);
        assert_eq!(att.dac(), &[0x30, 0x03, 0x02, 0x01, 0x01]);
        std::fs::write(creds.join("matter-dac-key"), b"not a key").unwrap();
        let e = FileAttestation::load_from(&c, Some(&creds)).unwrap_err();
        assert!(matches!(e, AttestationError::Key { .. }), "{e}");
    }

    #[test]
    fn a_sec1_der_key_parses_and_other_bytes_do_not() {
        let mut der = key_der();
        let key = parse_key(&der).unwrap();
        assert_eq!(&key[..32], &[7; 32]);
        assert_eq!(key[32], 0x04);
        assert!(parse_key(&der[..120]).is_none());
        der[5] = 0x05;
        assert!(parse_key(&der).is_none());
    }
}
