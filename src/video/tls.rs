//! HTTPS for the video stream: a rustls server config (the *ring*
//! provider, as for MQTT) from a PEM certificate chain and private key.
//!
//! The key file is a secret like the token file: refused unless only its
//! owner may read it. The certificate may be anyone's to read.
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::http::VideoError;

/// Read `cert` (PEM chain, leaf first) and `key` (PEM, 0600).
pub fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, VideoError> {
    use std::os::unix::fs::MetadataExt;
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| VideoError::Config(format!("video TLS file {}: {e}", p.display())))
    };
    let meta = std::fs::metadata(key)
        .map_err(|e| VideoError::Config(format!("video.tls_key_file {}: {e}", key.display())))?;
    if meta.mode() & 0o077 != 0 {
        return Err(VideoError::Config(format!(
            "video.tls_key_file {} is readable by group or others (mode {:o}); run chmod 600 on it",
            key.display(),
            meta.mode() & 0o777
        )));
    }
    let key_pem = zeroize::Zeroizing::new(read(key)?);
    server_config(&read(cert)?, &key_pem).map_err(|why| {
        VideoError::Config(format!(
            "video TLS ({} and {}): {why}",
            cert.display(),
            key.display()
        ))
    })
}

/// The server config from PEM bytes; HTTP/1.1 offered by ALPN.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("private key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("{e}; check that the key belongs to the certificate"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
