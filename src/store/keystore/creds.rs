//! `systemd-creds`: sealing the device key into an encrypted credential
//! and opening it again, and reading which key sealed a credential file.
//!
//! Only the privileged key step (`latchd --key-step`, `latchd-key.service`)
//! runs these commands; the daemon itself gets the opened key from systemd
//! (`LoadCredentialEncrypted=` → `$CREDENTIALS_DIRECTORY/device-key`).
//!
//! ```text
//!   credential file = base64( header ‖ … )     header starts with a 16-byte id:
//!     0c7cc07b-1176-4591-9c4b-0bea08bc20fe    sealed by the TPM 2.0 only
//!     93a89409-4874-4490-90ca-f2fc93cab553    host key and TPM 2.0
//!     5a1c6a86-df9d-4096-b1d5-a65e0862f19a    host key only (/var/lib/systemd/credential.secret)
//! ```
//! (systemd's `src/shared/creds-util.h`, the same in every release since
//! v250.)
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use super::KeyStorage;
use crate::store::{DeviceKey, DEVICE_KEY_LEN};

/// The credential's name: `LoadCredentialEncrypted=device-key:…` checks
/// the name sealed into the file against it.
pub const CREDENTIAL_NAME: &str = "device-key";

const ID_TPM2: [u8; 16] = [
    0x0c, 0x7c, 0xc0, 0x7b, 0x11, 0x76, 0x45, 0x91, 0x9c, 0x4b, 0x0b, 0xea, 0x08, 0xbc, 0x20, 0xfe,
];
const ID_HOST_TPM2: [u8; 16] = [
    0x93, 0xa8, 0x94, 0x09, 0x48, 0x74, 0x44, 0x90, 0x90, 0xca, 0xf2, 0xfc, 0x93, 0xca, 0xb5, 0x53,
];
const ID_HOST: [u8; 16] = [
    0x5a, 0x1c, 0x6a, 0x86, 0xdf, 0x9d, 0x40, 0x96, 0xb1, 0xd5, 0xa6, 0x5e, 0x08, 0x62, 0xf1, 0x9a,
];

/// Which key a credential file is sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seal {
    Tpm2,
    HostAndTpm2,
    Host,
}

impl Seal {
    /// The word diagnostics show.
    pub fn name(self) -> &'static str {
        match self {
            Seal::Tpm2 => "tpm2",
            Seal::HostAndTpm2 => "host+tpm2",
            Seal::Host => "host",
        }
    }

    /// Whether `policy` accepts a credential sealed this way: `tpm2`
    /// needs the TPM in the seal; `host` takes any.
    pub fn satisfies(self, policy: KeyStorage) -> bool {
        match policy {
            KeyStorage::Tpm2 => matches!(self, Seal::Tpm2 | Seal::HostAndTpm2),
            KeyStorage::Host => true,
            KeyStorage::File => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    #[error("cannot run systemd-creds ({source}); install systemd ≥ 250 with TPM2 support")]
    Spawn {
        #[source]
        source: std::io::Error,
    },
    #[error("systemd-creds {action} failed ({status}): {stderr}")]
    Failed {
        action: &'static str,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("systemd-creds decrypt gave {len} bytes, a device key is {DEVICE_KEY_LEN}")]
    Length { len: usize },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a systemd credential (unknown or unreadable header)")]
    Header { path: PathBuf },
}

/// Read the seal of the credential file at `path` from its header.
pub fn seal_of(path: &Path) -> Result<Seal, CredsError> {
    let mut head = [0u8; 24];
    let mut f = std::fs::File::open(path).map_err(|source| CredsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    f.read_exact(&mut head).map_err(|source| CredsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // 24 base64 characters are exactly 18 bytes: the 16-byte id first.
    let bytes = decode_base64(&head).ok_or_else(|| CredsError::Header {
        path: path.to_path_buf(),
    })?;
    let id: [u8; 16] = bytes[..16].try_into().expect("18 decoded bytes");
    match id {
        ID_TPM2 => Ok(Seal::Tpm2),
        ID_HOST_TPM2 => Ok(Seal::HostAndTpm2),
        ID_HOST => Ok(Seal::Host),
        _ => Err(CredsError::Header {
            path: path.to_path_buf(),
        }),
    }
}

/// Standard base64 of a whole number of 4-character groups, no padding
/// inside (enough for a header prefix).
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.chunks_exact(4) {
        let mut n = 0u32;
        for &c in chunk {
            n = (n << 6) | val(c)?;
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    Some(out)
}

/// `systemd-creds`, with the TPM and PCR choices of the policy.
#[derive(Debug, Clone)]
pub struct SystemdCreds {
    pub program: PathBuf,
    /// `--tpm2-pcrs=`; empty: systemd-creds' default (PCR 7).
    pub tpm2_pcrs: String,
    /// Extra environment for systemd-creds, e.g. `SYSTEMD_TPM2_DEVICE`
    /// (a TCTI such as `swtpm:path=…` in host tests) or
    /// `SYSTEMD_CREDENTIAL_SECRET` (the host key's file).
    pub env: Vec<(String, String)>,
}

impl Default for SystemdCreds {
    fn default() -> Self {
        SystemdCreds {
            program: PathBuf::from("systemd-creds"),
            tpm2_pcrs: String::new(),
            env: Vec::new(),
        }
    }
}

impl SystemdCreds {
    /// Seal `key` as credential `device-key`: `tpm2` refuses without a
    /// TPM; `host` takes the TPM too when there is one (`auto`).
    pub fn encrypt(&self, key: &DeviceKey, policy: KeyStorage) -> Result<Vec<u8>, CredsError> {
        let with = match policy {
            KeyStorage::Tpm2 => "tpm2",
            _ => "auto",
        };
        let mut cmd = Command::new(&self.program);
        cmd.arg("encrypt")
            .arg(format!("--with-key={with}"))
            .arg(format!("--name={CREDENTIAL_NAME}"));
        if !self.tpm2_pcrs.is_empty() {
            cmd.arg(format!("--tpm2-pcrs={}", self.tpm2_pcrs));
        }
        cmd.args(["-", "-"]);
        let out = self.run(cmd, "encrypt", Some(key.as_bytes()))?;
        Ok(out.to_vec())
    }

    /// Open the credential file at `path` (needs the TPM that sealed it).
    pub fn decrypt(&self, path: &Path) -> Result<DeviceKey, CredsError> {
        let mut cmd = Command::new(&self.program);
        cmd.arg("decrypt")
            .arg(format!("--name={CREDENTIAL_NAME}"))
            .arg(path)
            .arg("-");
        let out = self.run(cmd, "decrypt", None)?;
        let bytes: [u8; DEVICE_KEY_LEN] = out[..]
            .try_into()
            .map_err(|_| CredsError::Length { len: out.len() })?;
        Ok(DeviceKey::from_bytes(bytes))
    }

    fn run(
        &self,
        mut cmd: Command,
        action: &'static str,
        input: Option<&[u8]>,
    ) -> Result<Zeroizing<Vec<u8>>, CredsError> {
        let mut child = cmd
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CredsError::Spawn { source })?;
        {
            let mut stdin = child.stdin.take().expect("piped");
            if let Some(bytes) = input {
                // A child that died early shows up in its status below.
                let _ = stdin.write_all(bytes);
            }
        }
        let mut out = Zeroizing::new(Vec::new());
        if let Some(mut stdout) = child.stdout.take() {
            stdout
                .read_to_end(&mut out)
                .map_err(|source| CredsError::Spawn { source })?;
        }
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let status = child
            .wait()
            .map_err(|source| CredsError::Spawn { source })?;
        if !status.success() {
            return Err(CredsError::Failed {
                action,
                status,
                stderr: stderr.trim().to_string(),
            });
        }
        if !stderr.trim().is_empty() {
            tracing::info!("systemd-creds {action}: {}", stderr.trim());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_ids_decode_from_base64() {
        // Prefixes of real files made by systemd-creds 252.
        for (text, seal) in [
            ("DHzAexF2RZGcSwvqCLwg/iAA", Seal::Tpm2),
            ("k6iUCUh0RJCQyvL8k8q1UyAA", Seal::HostAndTpm2),
            ("Whxqht+dQJax1aZeCGLxmiAA", Seal::Host),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("c");
            std::fs::write(&p, text).unwrap();
            assert_eq!(seal_of(&p).unwrap(), seal, "{text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        std::fs::write(&p, [b'A'; 24]).unwrap();
        assert!(matches!(seal_of(&p), Err(CredsError::Header { .. })));
    }

    #[test]
    fn tpm2_policy_needs_the_tpm_in_the_seal() {
        assert!(Seal::Tpm2.satisfies(KeyStorage::Tpm2));
        assert!(Seal::HostAndTpm2.satisfies(KeyStorage::Tpm2));
        assert!(!Seal::Host.satisfies(KeyStorage::Tpm2));
        assert!(Seal::Host.satisfies(KeyStorage::Host));
    }
}
