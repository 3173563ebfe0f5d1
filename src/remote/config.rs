//! The `[remote]` table of `latchd.toml`: which broker, how to log in, what
//! to publish. Everything is off by default (`enabled = false`).
//!
//! ```toml
//! [remote]
//! enabled = true
//! host = "broker.example.net"
//! port = 8883
//! topic_prefix = "latchd"
//! ca_file = "/etc/latchd/broker-ca.pem"     # TLS is required unless tls = false
//! client_cert = "/etc/latchd/lock.pem"      # optional, with client_key (0600)
//! client_key = "/etc/latchd/lock.key"
//! username = ""                              # optional, with password_file (0600)
//! password_file = "/etc/latchd/broker.pw"    # or password = "" in a 0600 latchd.toml
//! command_max_age_s = 60                     # remote commands expire (freshness.rs)
//! homeassistant = false                      # publish HA discovery configs
//! clear_presence = false                     # lock/door/away in the clear state: the broker sees presence
//! publish_snapshots = false                  # doorbell/alarm JPEGs for HA's camera
//! ```
//!
//! Secrets never sit in a file others can read: `password_file` and
//! `client_key` are refused unless only their owner may read them (mode
//! 0600 or 0400), and a `latchd.toml` holding `password` inline is held to
//! the same rule by `Config::load`. `tls = false` is accepted only for a
//! broker on this host (a loopback address or `localhost`): the broker
//! login and the clear topics must not cross a network unencrypted.
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::RemoteError;

/// The `[remote]` table as written in the file.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// Connect to the broker at all. Off by default: a lock reachable from
    /// the internet is the owner's choice.
    pub enabled: bool,
    /// Broker host name or address; empty = no broker configured (off).
    pub host: String,
    /// Broker port; 0 = 8883 with TLS, 1883 without.
    pub port: u16,
    /// First topic level: `<prefix>/<serial>/...`.
    pub topic_prefix: String,
    /// Use TLS. Turning it off is for a broker on the same host only; the
    /// commands stay end-to-end sealed either way, but the credentials and
    /// telemetry would travel in the clear.
    pub tls: bool,
    /// PEM file with the CA certificate(s) that sign the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Broker user name (with `password` or `password_file`); empty = none.
    pub username: String,
    /// Inline password: only in a latchd.toml of mode 0600 (prefer
    /// `password_file`).
    pub password: String,
    /// A file (mode 0600) whose one line is the broker password.
    pub password_file: Option<PathBuf>,
    /// A remote command is accepted at most this many seconds after the
    /// lock issued the challenge it answers (5–600; `freshness.rs`).
    pub command_max_age_s: u64,
    /// MQTT keep-alive in seconds (5–3600).
    pub keep_alive_s: u64,
    /// First reconnect delay after a lost connection, in milliseconds.
    pub reconnect_min_ms: u64,
    /// The reconnect delay doubles up to this, in milliseconds.
    pub reconnect_max_ms: u64,
    /// Publish Home Assistant MQTT discovery configs.
    pub homeassistant: bool,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// Opt-in: publish the lock, bolt and door state and away mode in the
    /// clear state document (and HA's `lock` and door entities). Whoever
    /// runs or can read the broker then sees when the door opens and
    /// whether anyone is home. Off by default (issue 14 item 2).
    pub clear_presence: bool,
    /// Publish each doorbell and alarm snapshot (JPEG, retained) for a
    /// camera entity. Off by default: unlike the rest of the telemetry a
    /// picture of the person at the door is personal data, and the broker
    /// operator can see it. Duress snapshots are never published (B-6.9).
    pub publish_snapshots: bool,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            enabled: false,
            host: String::new(),
            port: 0,
            topic_prefix: "latchd".into(),
            tls: true,
            ca_file: None,
            client_cert: None,
            client_key: None,
            username: String::new(),
            password: String::new(),
            password_file: None,
            command_max_age_s: super::freshness::DEFAULT_MAX_AGE.as_secs(),
            keep_alive_s: 30,
            reconnect_min_ms: 500,
            reconnect_max_ms: 60_000,
            homeassistant: false,
            discovery_prefix: "homeassistant".into(),
            clear_presence: false,
            publish_snapshots: false,
        }
    }
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("RemoteConfig")
            .field("enabled", &self.enabled)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("topic_prefix", &self.topic_prefix)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password_set", &!self.password.is_empty())
            .field("password_file", &self.password_file)
            .field("homeassistant", &self.homeassistant)
            .field("clear_presence", &self.clear_presence)
            .finish_non_exhaustive()
    }
}

/// Is `host` this machine: `localhost` or a loopback address?
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// Refuse a secret-bearing file that its group or others may read.
pub fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} holds a secret but its group or others may read it (mode {:o}); run chmod 600 on it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// Read a one-line secret file of mode 0600 (or stricter).
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, String> {
    check_private(path)?;
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    let secret = text.trim();
    if secret.is_empty() || secret.lines().count() != 1 {
        return Err(format!(
            "{} must hold exactly one non-empty line",
            path.display()
        ));
    }
    Ok(Zeroizing::new(secret.to_owned()))
}

/// TLS material read from the files, ready for the client.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca_pem: Vec<u8>,
    pub client_auth: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the client key.
        f.debug_struct("TlsMaterial")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("client_auth", &self.client_auth.is_some())
            .finish()
    }
}

/// A checked `[remote]` table.
#[derive(Clone)]
pub struct RemoteSettings {
    pub host: String,
    pub port: u16,
    pub topic_prefix: String,
    pub tls: Option<TlsMaterial>,
    /// User name and password (from the file or the table).
    pub credentials: Option<(String, Zeroizing<String>)>,
    pub keep_alive: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub homeassistant: Option<String>,
    /// The clear state document carries presence (lock, door, away).
    pub clear_presence: bool,
    /// How long a command's challenge stays acceptable.
    pub command_max_age: Duration,
    /// Publish doorbell and alarm snapshots.
    pub snapshots: bool,
}

impl std::fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("RemoteSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("topic_prefix", &self.topic_prefix)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("homeassistant", &self.homeassistant)
            .field("command_max_age", &self.command_max_age)
            .field("snapshots", &self.snapshots)
            .finish_non_exhaustive()
    }
}

fn topic_level_ok(s: &str) -> bool {
    !s.is_empty()
        && !s.contains(['+', '#', '\0'])
        && !s.starts_with('/')
        && !s.ends_with('/')
        && !s.contains("//")
}

impl RemoteConfig {
    /// Check the table and read the TLS files. `Ok(None)` when remote
    /// access is off (disabled, or no broker host configured).
    pub fn resolve(&self) -> Result<Option<RemoteSettings>, RemoteError> {
        if !self.enabled || self.host.trim().is_empty() {
            return Ok(None);
        }
        let bad = |key: &'static str, why: String| RemoteError::Config { key, why };
        if !topic_level_ok(&self.topic_prefix) {
            return Err(bad(
                "topic_prefix",
                format!(
                    "`{}` must be non-empty, without `+`, `#`, NUL or empty levels",
                    self.topic_prefix
                ),
            ));
        }
        if self.homeassistant && !topic_level_ok(&self.discovery_prefix) {
            return Err(bad(
                "discovery_prefix",
                "must be a plain topic prefix such as `homeassistant`".into(),
            ));
        }
        if !(5..=3600).contains(&self.keep_alive_s) {
            return Err(bad(
                "keep_alive_s",
                format!("{} is outside 5–3600", self.keep_alive_s),
            ));
        }
        if self.reconnect_min_ms == 0 || self.reconnect_max_ms < self.reconnect_min_ms {
            return Err(bad(
                "reconnect_min_ms",
                "must be > 0 and not above reconnect_max_ms".into(),
            ));
        }
        if !(5..=600).contains(&self.command_max_age_s) {
            return Err(bad(
                "command_max_age_s",
                format!("{} is outside 5–600", self.command_max_age_s),
            ));
        }
        if !self.password.is_empty() && self.password_file.is_some() {
            return Err(bad(
                "password",
                "set password or password_file, not both".into(),
            ));
        }
        let password = match &self.password_file {
            Some(p) => Some(read_secret_file(p).map_err(|why| bad("password_file", why))?),
            None => (!self.password.is_empty()).then(|| Zeroizing::new(self.password.clone())),
        };
        if self.username.is_empty() != password.is_none() {
            return Err(bad(
                "username",
                "set both username and password (or password_file), or neither".into(),
            ));
        }
        if !self.tls && !is_loopback_host(&self.host) {
            return Err(bad(
                "tls",
                format!(
                    "tls = false is only accepted for a broker on this host (localhost, 127.0.0.1, ::1), not `{}`: the login and the telemetry would cross the network in clear",
                    self.host.trim()
                ),
            ));
        }
        let read = |key: &'static str, p: &PathBuf| {
            std::fs::read(p).map_err(|e| bad(key, format!("cannot read {}: {e}", p.display())))
        };
        let tls = if self.tls {
            let ca = self.ca_file.as_ref().ok_or_else(|| {
                bad("ca_file", "TLS needs the broker's CA certificate (PEM); or set tls = false for a broker on this host".into())
            })?;
            let client_auth = match (&self.client_cert, &self.client_key) {
                (Some(c), Some(k)) => {
                    check_private(k).map_err(|why| bad("client_key", why))?;
                    Some((read("client_cert", c)?, read("client_key", k)?))
                }
                (None, None) => None,
                _ => {
                    return Err(bad(
                        "client_cert",
                        "set both client_cert and client_key, or neither".into(),
                    ))
                }
            };
            Some(TlsMaterial {
                ca_pem: read("ca_file", ca)?,
                client_auth,
            })
        } else {
            if self.client_cert.is_some() || self.client_key.is_some() || self.ca_file.is_some() {
                return Err(bad(
                    "tls",
                    "certificate files are set but tls = false".into(),
                ));
            }
            None
        };
        let port = match (self.port, self.tls) {
            (0, true) => 8883,
            (0, false) => 1883,
            (p, _) => p,
        };
        Ok(Some(RemoteSettings {
            host: self.host.trim().to_owned(),
            port,
            topic_prefix: self.topic_prefix.clone(),
            tls,
            credentials: password.map(|p| (self.username.clone(), p)),
            keep_alive: Duration::from_secs(self.keep_alive_s),
            reconnect_min: Duration::from_millis(self.reconnect_min_ms),
            reconnect_max: Duration::from_millis(self.reconnect_max_ms),
            homeassistant: self.homeassistant.then(|| self.discovery_prefix.clone()),
            clear_presence: self.clear_presence,
            command_max_age: Duration::from_secs(self.command_max_age_s),
            snapshots: self.publish_snapshots,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_without_a_host() {
        assert!(RemoteConfig::default().resolve().expect("ok").is_none());
        let c = RemoteConfig {
            enabled: true,
            ..Default::default()
        };
        assert!(c.resolve().expect("ok").is_none());
    }

    #[test]
    fn tls_needs_a_ca_and_bad_values_are_named() {
        let base = RemoteConfig {
            enabled: true,
            host: "broker".into(),
            ..Default::default()
        };
        let e = base.resolve().expect_err("no CA");
        assert!(e.to_string().contains("ca_file"), "{e}");
        let plain = RemoteConfig {
            tls: false,
            host: "127.0.0.1".into(),
            ..base.clone()
        };
        let s = plain.resolve().expect("ok").expect("on");
        assert_eq!(s.port, 1883);
        for bad in ["", "a/#", "a/+/b", "/a", "a//b"] {
            let c = RemoteConfig {
                topic_prefix: bad.into(),
                ..plain.clone()
            };
            assert!(c.resolve().is_err(), "{bad:?} accepted");
        }
        let c = RemoteConfig {
            username: "u".into(),
            ..plain
        };
        assert!(c
            .resolve()
            .expect_err("half creds")
            .to_string()
            .contains("username"));
    }

    /// Issue 14 item 2: plain MQTT only to a broker on this host.
    #[test]
    fn tls_off_only_for_a_loopback_broker() {
        for host in ["localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]"] {
            let c = RemoteConfig {
                enabled: true,
                tls: false,
                host: host.into(),
                ..Default::default()
            };
            assert!(c.resolve().is_ok(), "{host}");
        }
        for host in [
            "broker.example.net",
            "192.168.1.10",
            "10.0.0.1",
            "::ffff:8.8.8.8",
        ] {
            let c = RemoteConfig {
                enabled: true,
                tls: false,
                host: host.into(),
                ..Default::default()
            };
            let e = c.resolve().expect_err(host).to_string();
            assert!(e.contains("tls") && e.contains("this host"), "{host}: {e}");
        }
    }

    /// Issue 14 item 2: a password file or client key others can read is
    /// refused; a 0600 one is taken, and the password never shows in Debug.
    #[test]
    fn secret_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let pw = dir.path().join("broker.pw");
        std::fs::write(&pw, "s3cret-pw\n").expect("write");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let c = RemoteConfig {
            enabled: true,
            tls: false,
            host: "localhost".into(),
            username: "lock".into(),
            password_file: Some(pw.clone()),
            ..Default::default()
        };
        let e = c.resolve().expect_err("0644").to_string();
        assert!(
            e.contains("password_file") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let s = c.resolve().expect("0600").expect("on");
        let (user, pass) = s.credentials.as_ref().expect("credentials");
        assert_eq!((user.as_str(), pass.as_str()), ("lock", "s3cret-pw"));
        assert!(
            !format!("{s:?}{c:?}").contains("s3cret"),
            "Debug shows the password"
        );

        let key = dir.path().join("lock.key");
        std::fs::write(&key, "not a key").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let c = RemoteConfig {
            enabled: true,
            host: "broker".into(),
            ca_file: Some(pw.clone()),
            client_cert: Some(pw),
            client_key: Some(key),
            ..Default::default()
        };
        let e = c.resolve().expect_err("0640 key").to_string();
        assert!(e.contains("client_key") && e.contains("chmod 600"), "{e}");
    }
}
