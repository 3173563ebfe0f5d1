//! The `[video]` table of latchd.toml and the glue the daemon needs to
//! start the stream: the token read from its own file, the battery level
//! bridged from whatever the daemon publishes.
//!
//! ```toml
//! [video]
//! enabled = true
//! bind = "127.0.0.1:8081"
//! token_file = "/etc/latchd/video-token"   # 0600, one line, ≥ 16 URL-safe chars
//! min_battery_percent = 20                  # B-10.2
//! max_viewers = 4
//! max_snapshots = 200
//! ```
//!
//! The token lives in its own file, not in latchd.toml, so the config can
//! be world-readable and shown in diagnostics while the secret is not; a
//! token file that group or others can read is refused.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::http::{StreamConfig, VideoError};
use super::snapshot::DEFAULT_MAX_SNAPSHOTS;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VideoConfig {
    /// Off by default: no port is opened unless asked for.
    pub enabled: bool,
    pub bind: SocketAddr,
    pub token_file: Option<PathBuf>,
    pub min_battery_percent: u8,
    pub max_viewers: usize,
    /// Snapshots kept under `<state>/snapshots`.
    pub max_snapshots: usize,
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            enabled: false,
            bind: SocketAddr::from(([127, 0, 0, 1], 8081)),
            token_file: None,
            min_battery_percent: 20,
            max_viewers: 4,
            max_snapshots: DEFAULT_MAX_SNAPSHOTS,
        }
    }
}

impl VideoConfig {
    /// The server settings, with the token read from `token_file`.
    pub fn stream_config(&self) -> Result<StreamConfig, VideoError> {
        let path = self.token_file.as_deref().ok_or_else(|| {
            VideoError::Config(
                "video.enabled needs video.token_file (a 0600 file holding the viewers' token)"
                    .into(),
            )
        })?;
        let mut cfg = StreamConfig::new(read_token(path)?.as_str());
        cfg.bind = self.bind;
        cfg.min_battery_percent = self.min_battery_percent;
        cfg.max_viewers = self.max_viewers;
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
