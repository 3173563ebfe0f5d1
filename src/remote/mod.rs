//! Remote access over MQTT: end-to-end sealed commands, telemetry and
//! Home Assistant discovery (B-6.7, B-10.7).
//!
//! ```text
//!   owner's / guest's app                 broker (untrusted)                  lock
//!   seal_oneshot(app key, lock key,  ──►  <prefix>/<serial>/cmd  ──────────►  gate: key id → stored app key,
//!     AppToLock, counter, request)                                            open, counter > persisted one,
//!                                                                             persist counter, role check
//!                                                                             ──► app::dispatch::answer
//!                                                                                 (engine, store, status)
//!   open_oneshot(LockToApp, counter) ◄──  <prefix>/<serial>/reply  ◄────────  the Response, sealed
//!   owner apps (open with their key) ◄──  …/events (QoS 1, every event once per owner key, sealed),
//!                                         …/notify (owner notices, sealed)
//!   dashboards / Home Assistant      ◄──  …/state (retained), …/alert, …/availability (online / will: offline)
//! ```
//!
//! The broker carries bytes and can read the clear telemetry (device
//! health, HA's alerts; presence only by opt-in); who unlocked and when
//! reaches only the owners (`owner_events`). It cannot unlock, replay or
//! forge: commands use the app protocol's sealed one-shot messages
//! (`app::protocol::seal_oneshot`), keyed by the lock's static key and the
//! app key the owner issued over Bluetooth. `docs/remote.md` has the topic
//! layout, payloads and threat table.
//!
//! Every refusal is logged in the engine's event log (`app_refused`, with
//! its reason), and refusals are rate-limited (`link::limit`) so a flood of
//! junk costs neither the log nor the store.
//!
//! The lock is reached only through [`Link`]: commands go to the engine as
//! `Input::App`, the app keys come from the snapshot the engine task
//! publishes, and this service's own counters (each key's replay counter,
//! the push counter, the event cursor) are written through the store's
//! single writer thread.
//!
//! Everything is off unless `[remote] enabled = true` names a broker, and
//! it pauses while the Wi-Fi setting is off. The engine still decides:
//! remote unlock off (B-6.7), revoked keys and guest windows are refused
//! there too.
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::crypto::StaticKeypair;
use crate::link::Link;

pub mod client;
pub mod config;
pub mod envelope;
pub mod freshness;
pub mod gate;
pub mod outbox;
pub mod owner_events;
mod service;
pub mod telemetry;

pub use config::{RemoteConfig, RemoteSettings};
pub use service::{counter_name, run, EVENT_CURSOR, PUSH_COUNTER};
pub use telemetry::Topics;

/// Remote access could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("[remote] {key}: {why}")]
    Config { key: &'static str, why: String },
    #[error("[remote] TLS: {0}; check that ca_file, client_cert and client_key are PEM files that belong together")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("[remote] TLS: {0}; check that ca_file, client_cert and client_key are PEM files that belong together")]
    Tls(#[from] rustls::Error),
    #[error("[remote] TLS: ca_file holds no certificate; check that ca_file, client_cert and client_key are PEM files that belong together")]
    NoCaCertificate,
}

/// Turn off Nagle's algorithm on a connection's socket (rumqttc leaves it
/// on). An MQTT request/answer is write-write-read on each side: the
/// PUBACK of the command, then the reply. With Nagle the reply waits until
/// the broker acknowledges the PUBACK, and Linux delays that ACK up to
/// 40 ms — the soak (issue 15 item 4) measured ≈ 80 ms per app request
/// over a loopback broker, nearly all of it these waits.
pub fn no_delay(eventloop: &mut rumqttc::EventLoop) {
    let mut n = eventloop.network_options();
    n.set_tcp_nodelay(true);
    eventloop.set_network_options(n);
}

/// A rustls client config with the *ring* provider (builds without cmake),
/// the broker's CA and, when given, a client certificate.
pub fn tls_config(m: &config::TlsMaterial) -> Result<Arc<rustls::ClientConfig>, RemoteError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&m.ca_pem) {
        roots.add(cert?)?;
    }
    if roots.is_empty() {
        return Err(RemoteError::NoCaCertificate);
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let config = match &m.client_auth {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert).collect::<Result<_, _>>()?;
            let key = PrivateKeyDer::from_pem_slice(key)?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Counters for tests, diagnostics and the bench.
#[derive(Debug, Default)]
pub struct RemoteStats {
    /// Successful CONNACKs.
    pub connects: AtomicU64,
    /// Attempts that ended before a CONNACK (broker down, TLS or login
    /// refused).
    pub connect_failures: AtomicU64,
    /// Commands that verified (whatever the answer; a guest asking for
    /// what only an owner may do is verified, then refused sealed).
    pub accepted: AtomicU64,
    /// Frames checked and refused with the bare error frame (junk, unknown
    /// key, bad seal, replay, store error).
    pub refused: AtomicU64,
    /// Frames dropped unanswered and unchecked because too many were
    /// refused (`link::limit`).
    pub rate_limited: AtomicU64,
    /// Sealed event frames handed to the client, one per event and owner
    /// key (repeats after reconnect count).
    pub events_published: AtomicU64,
    /// Newest event id acknowledged by the broker with all before it (the
    /// persisted cursor).
    pub events_acked: AtomicU64,
    /// Sealed event frames published in this session and not yet
    /// acknowledged.
    pub events_in_flight: AtomicU64,
    /// Snapshots handed to the client.
    pub snapshots_published: AtomicU64,
    /// Sealed notices handed to the client (one per owner key).
    pub notices_sealed: AtomicU64,
}

/// What the remote service needs from the daemon.
pub struct RemoteContext {
    pub settings: RemoteSettings,
    /// Built by [`tls_config`] when `settings.tls` is set.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// MQTT client id and second topic level.
    pub serial: String,
    pub firmware: String,
    pub lock_key: Arc<StaticKeypair>,
    /// The running lock: engine, status, notices, events, store reads and
    /// this service's counters.
    pub link: Link,
    /// Stored snapshots, when `[remote] publish_snapshots` and a camera.
    pub snapshots: Option<broadcast::Receiver<crate::video::SnapshotSaved>>,
    pub stats: Arc<RemoteStats>,
}

impl std::fmt::Debug for RemoteContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteContext")
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// Start the service task (see [`run`]).
pub fn spawn(ctx: RemoteContext, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(run(ctx, shutdown))
}
