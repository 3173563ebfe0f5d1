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
//! client_cert = "/etc/latchd/lock.pem"      # optional, with client_key
//! client_key = "/etc/latchd/lock.key"
//! username = ""                              # optional, with password
//! password = ""
//! homeassistant = false                      # publish HA discovery configs
//! publish_snapshots = false                  # doorbell/alarm JPEGs for HA's camera
//! ```
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::RemoteError;

/// The `[remote]` table as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    /// Broker user name (with `password`); empty = none.
    pub username: String,
    pub password: String,
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
            keep_alive_s: 30,
            reconnect_min_ms: 500,
            reconnect_max_ms: 60_000,
            homeassistant: false,
            discovery_prefix: "homeassistant".into(),
            publish_snapshots: false,
        }
    }
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
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    pub host: String,
    pub port: u16,
    pub topic_prefix: String,
    pub tls: Option<TlsMaterial>,
    pub credentials: Option<(String, String)>,
    pub keep_alive: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub homeassistant: Option<String>,
    /// Publish doorbell and alarm snapshots.
    pub snapshots: bool,
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
        if self.username.is_empty() != self.password.is_empty() {
            return Err(bad(
                "username",
                "set both username and password, or neither".into(),
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
                (Some(c), Some(k)) => Some((read("client_cert", c)?, read("client_key", k)?)),
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
            credentials: (!self.username.is_empty())
                .then(|| (self.username.clone(), self.password.clone())),
            keep_alive: Duration::from_secs(self.keep_alive_s),
            reconnect_min: Duration::from_millis(self.reconnect_min_ms),
            reconnect_max: Duration::from_millis(self.reconnect_max_ms),
            homeassistant: self.homeassistant.then(|| self.discovery_prefix.clone()),
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
}
