//! The `[video]` table of latchd.toml and the glue the daemon needs to
//! start the stream: the token read from its own file, the battery level
//! bridged from whatever the daemon publishes.
//!
//! ```toml
//! [video]
//! enabled = true
//! bind = "127.0.0.1:8081"
//! token_file = "/etc/latchd/video-token"   # 0600, one line, ≥ 16 URL-safe chars
//! # tls_cert_file = "/etc/latchd/video.crt"  # both required beyond loopback
//! # tls_key_file = "/etc/latchd/video.key"   # 0600
//! min_battery_percent = 20                  # B-10.2
//! max_viewers = 4
//! max_connections = 64
//! max_pending = 32
//! max_pending_per_peer = 4
//! max_snapshots = 200
//! ```
//!
//! The token lives in its own file, not in latchd.toml, so the config can
//! be world-readable and shown in diagnostics while the secret is not; a
//! token file (or TLS key file) that group or others can read is refused.
//! A non-loopback `bind` without both TLS files is refused when the file
//! is loaded ([`VideoConfig::validate`]), before anything listens.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::admission::Caps;
use super::http::{check_plain_bind, StreamConfig, VideoError};
use super::snapshot::DEFAULT_MAX_SNAPSHOTS;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VideoConfig {
    /// Off by default: no port is opened unless asked for.
    pub enabled: bool,
    pub bind: SocketAddr,
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain for HTTPS; with `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (mode 0600); with `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    pub min_battery_percent: u8,
    pub max_viewers: usize,
    /// Connections held at once (pending, viewers, refusals being sent).
    pub max_connections: usize,
    /// Connections not yet authenticated; the oldest is closed for a new one.
    pub max_pending: usize,
    /// Connections not yet authenticated from one address (IPv6: a /64).
    pub max_pending_per_peer: usize,
    /// Snapshots kept under `<state>/snapshots`.
    pub max_snapshots: usize,
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            enabled: false,
            bind: SocketAddr::from(([127, 0, 0, 1], 8081)),
            token_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            min_battery_percent: 20,
            max_viewers: 4,
            max_connections: Caps::default().max_connections,
            max_pending: Caps::default().max_pending,
            max_pending_per_peer: Caps::default().max_pending_per_peer,
            max_snapshots: DEFAULT_MAX_SNAPSHOTS,
        }
    }
}

impl VideoConfig {
    /// What can be checked without reading files, at config load:
    /// `Err((key, why))`. Only an enabled stream is checked.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !self.enabled {
            return Ok(());
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) | (None, Some(_)) => {
                return Err((
                    "video.tls_cert_file",
                    "set both video.tls_cert_file and video.tls_key_file, or neither",
                ))
            }
            _ => {}
        }
        check_plain_bind(self.bind, self.tls_cert_file.is_some()).map_err(|why| ("video.bind", why))
    }

    /// The server settings, with the token read from `token_file` and the
    /// TLS certificate and key from theirs.
    pub fn stream_config(&self) -> Result<StreamConfig, VideoError> {
        let path = self.token_file.as_deref().ok_or_else(|| {
            VideoError::Config(
                "video.enabled needs video.token_file (a 0600 file holding the viewers' token)"
                    .into(),
            )
        })?;
        let mut cfg = StreamConfig::new(read_token(path)?.as_str());
        cfg.bind = self.bind;
        cfg.tls = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Some(super::tls::load(cert, key)?),
            (None, None) => None,
            _ => {
                return Err(VideoError::Config(
                    "set both video.tls_cert_file and video.tls_key_file, or neither".into(),
                ))
            }
        };
        cfg.min_battery_percent = self.min_battery_percent;
        cfg.max_viewers = self.max_viewers;
        cfg.caps = Caps {
            max_connections: self.max_connections,
            max_pending: self.max_pending,
            max_pending_per_peer: self.max_pending_per_peer,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Read a token file: owner-only permissions, one line, surrounding
/// whitespace trimmed.
pub fn read_token(path: &Path) -> Result<Zeroizing<String>, VideoError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| VideoError::Config(format!("video token file {}: {e}", path.display())))?;
    if meta.mode() & 0o077 != 0 {
        return Err(VideoError::Config(format!(
            "video token file {} is readable by group or others (mode {:o}); run chmod 600 on it",
            path.display(),
            meta.mode() & 0o777
        )));
    }
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            VideoError::Config(format!("video token file {}: {e}", path.display()))
        })?);
    let token = text.trim();
    if token.lines().count() != 1 {
        return Err(VideoError::Config(format!(
            "video token file {} must hold exactly one line",
            path.display()
        )));
    }
    Ok(Zeroizing::new(token.to_owned()))
}

/// A battery-percent `watch` for the server, fed from any published
/// state (the daemon's `watch::Receiver<Published>`, mapped with
/// `|p| p.engine.battery_percent`). The bridge task ends with its source.
pub fn battery_bridge<T, F>(
    mut source: watch::Receiver<T>,
    percent: F,
) -> watch::Receiver<Option<u8>>
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> Option<u8> + Send + 'static,
{
    let (tx, rx) = watch::channel(percent(&source.borrow_and_update()));
    tokio::spawn(async move {
        while source.changed().await.is_ok() {
            let p = percent(&source.borrow_and_update());
            // Only wake the server when the level really changed.
            tx.send_if_modified(|cur| {
                let changed = *cur != p;
                *cur = p;
                changed
            });
            if tx.is_closed() {
                break;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn token_file_must_be_private_and_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("token");
        std::fs::write(&p, "0123456789abcdef0123\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(read_token(&p).is_err(), "world-readable is refused");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_token(&p).expect("ok").as_str(), "0123456789abcdef0123");
        let cfg = VideoConfig {
            enabled: true,
            token_file: Some(p.clone()),
            ..Default::default()
        };
        assert!(cfg.stream_config().is_ok());
        std::fs::write(&p, "a\nb\n").expect("write");
        assert!(read_token(&p).is_err());
        assert!(
            VideoConfig::default().stream_config().is_err(),
            "no token file"
        );
    }

    #[test]
    fn parses_the_table() {
        let cfg: VideoConfig =
            toml::from_str("enabled = true\nbind = \"0.0.0.0:9000\"\nmax_viewers = 2")
                .expect("toml");
        assert!(cfg.enabled);
        assert_eq!(cfg.bind.port(), 9000);
        assert_eq!(cfg.min_battery_percent, 20);
        assert_eq!(cfg.max_pending_per_peer, 4);
        assert!(toml::from_str::<VideoConfig>("tokn_file = \"x\"").is_err());
    }

    #[tokio::test]
    async fn battery_bridge_follows_the_source() {
        let (tx, rx) = watch::channel((Some(50u8), 1u32));
        let mut b = battery_bridge(rx, |s| s.0);
        assert_eq!(*b.borrow(), Some(50));
        tx.send_replace((Some(12), 2));
        b.changed().await.expect("changed");
        assert_eq!(*b.borrow(), Some(12));
    }
}
