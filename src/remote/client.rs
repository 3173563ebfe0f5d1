//! The app side of remote access: what `latchctl remote` (and an app that
//! embeds this library) runs against the lock over the broker, with the
//! same key as over Bluetooth (an owner or guest key from BLE pairing).
//!
//! ```text
//!  RemoteClient::connect ── CONNECT (TLS, login) ──► broker ── ConnAck? ─ no ─► Unreachable | Tls | Login
//!      │ subscribe availability, challenge, reply (+ notify, events to follow)
//!      │ retained availability + challenge arrive
//!      ▼
//!  request(r) ── lock not `online`? ─► LockOffline (nothing published: nothing queued)
//!      │ counter+1 ─ seal(envelope(challenge, r)) ─► cmd (QoS 1, not retained)
//!      ▼ reply with our counter within the timeout, else Timeout
//!  Response (a sealed Error is the lock's refusal: Stale, Forbidden, …)
//!
//!  next_push() ── events | notify: both sealed to each owner key, opened with
//!                 ours; an event is refused if its id (the frame counter) is
//!                 not above the last one opened, a notice likewise by the
//!                 push counter; other keys' frames do not open and are skipped
//! ```
//!
//! The session is clean (nothing queued by the broker for this client)
//! and commands are never retained: a command for a lock that is offline
//! is refused here instead of waiting in a broker to be delivered late.
//! The caller chooses the first counter (above every counter this key sent
//! before: `latchctl` keeps the last one next to the key file and starts
//! at least at the clock in microseconds).
use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS, Transport};
use tokio::sync::mpsc;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::envelope;
use super::freshness::Challenge;
use super::owner_events;
use super::telemetry::Topics;
use crate::app::crypto::StaticKeypair;
use crate::app::protocol::{
    error_frame, open_oneshot, seal_oneshot, ChannelError, ErrorCode, OneShotDirection,
};
use crate::app::wire::EventEntry;
use crate::app::{Request, Response};

/// Where the broker is and how to log in.
#[derive(Clone)]
pub struct ClientSettings {
    pub host: String,
    pub port: u16,
    pub topic_prefix: String,
    /// The lock's serial (its topic level).
    pub serial: String,
    /// The rustls config (CA, optional client certificate); `None` = plain
    /// MQTT.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub credentials: Option<(String, Zeroizing<String>)>,
    /// MQTT client id (unique per app instance).
    pub client_id: String,
    /// How long to wait for the broker, the lock's retained state and an
    /// answer.
    pub timeout: Duration,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("ClientSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("serial", &self.serial)
            .field("tls", &self.tls.is_some())
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

/// The app's key and the paired lock's public key.
pub struct AppIdentity {
    pub me: StaticKeypair,
    pub lock_public: [u8; 32],
}

impl std::fmt::Debug for AppIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key never appears.
        f.debug_struct("AppIdentity")
            .field("me", &hex::encode(self.me.public()))
            .field("lock_public", &hex::encode(self.lock_public))
            .finish()
    }
}

/// Why a remote command did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum RemoteClientError {
    #[error("cannot reach the broker at {addr}: {why}")]
    Unreachable { addr: String, why: String },
    #[error("TLS with the broker failed: {0}; check the CA file and the client certificate")]
    Tls(String),
    #[error("the broker refused the login: {0}")]
    Login(String),
    #[error("the lock is offline (its retained availability is `{0}`); nothing was sent")]
    LockOffline(String),
    #[error("the lock went offline before answering; the command may or may not have run (check with `status`)")]
    WentOffline,
    #[error("the lock has published no challenge; is it running a version with remote freshness?")]
    NoChallenge,
    #[error("no answer from the lock within {0:?}")]
    Timeout(Duration),
    #[error("the lock refused the command before opening it (unknown key, bad seal or a replayed counter)")]
    Unauthenticated,
    #[error("cannot seal the command: {0}")]
    Seal(#[source] ChannelError),
    #[error("the connection to the broker was lost: {0}")]
    Lost(String),
}

/// Something the lock published unasked.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    /// One logged event, opened from the sealed `events` topic
    /// (`owner_events`): `{"id", "time", "kind", "detail"}`.
    Event(serde_json::Value),
    /// An owner notice sealed to this key (duress, unlock while away,
    /// lockout).
    Notice(EventEntry),
}

enum Incoming {
    Connected,
    Subscribed,
    Message(String, Vec<u8>),
    Failed(ConnectionError),
}

/// A connection to the broker on behalf of one app key.
pub struct RemoteClient {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Incoming>,
    topics: Topics,
    id: AppIdentity,
    counter: u64,
    timeout: Duration,
    availability: Option<String>,
    challenge: Option<Challenge>,
    last_notice: Option<u64>,
    /// The newest event id opened: an older or repeated one is dropped.
    last_event: Option<u64>,
    pushes: std::collections::VecDeque<Push>,
    follow: bool,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteClient")
            .field("topics", &self.topics.cmd)
            .field("id", &self.id)
            .field("counter", &self.counter)
            .field("availability", &self.availability)
            .finish_non_exhaustive()
    }
}

fn classify(addr: &str, e: ConnectionError) -> RemoteClientError {
    match e {
        ConnectionError::Tls(t) => RemoteClientError::Tls(t.to_string()),
        ConnectionError::ConnectionRefused(code) => RemoteClientError::Login(format!("{code:?}")),
        ConnectionError::Io(e) => RemoteClientError::Unreachable {
            addr: addr.to_owned(),
            why: e.to_string(),
        },
        other => RemoteClientError::Unreachable {
            addr: addr.to_owned(),
            why: other.to_string(),
        },
    }
}

impl RemoteClient {
    /// Connect, subscribe and read the lock's retained availability and
    /// challenge. `follow`: also receive events and owner notices
    /// ([`RemoteClient::next_push`]). `first_counter`: the counter of the
    /// first command.
    pub async fn connect(
        s: &ClientSettings,
        id: AppIdentity,
        first_counter: u64,
        follow: bool,
    ) -> Result<Self, RemoteClientError> {
        let addr = format!("{}:{}", s.host, s.port);
        let mut o = MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(true);
        o.set_max_packet_size(1 << 20, 64 * 1024);
        if let Some((u, p)) = &s.credentials {
            o.set_credentials(u.clone(), p.as_str());
        }
        if let Some(tls) = &s.tls {
            o.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        let (client, mut el) = AsyncClient::new(o, 16);
        super::no_delay(&mut el);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let item = match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Incoming::Connected,
                    Ok(Event::Incoming(Packet::SubAck(_))) => Incoming::Subscribed,
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        Incoming::Message(p.topic.clone(), p.payload.to_vec())
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        // One report, then stop: the client does not
                        // reconnect on its own (a command must not go out
                        // late through a new session).
                        let _ = tx.send(Incoming::Failed(e));
                        return;
                    }
                };
                if tx.send(item).is_err() {
                    return;
                }
            }
        });
        let topics = Topics::new(&s.topic_prefix, &s.serial);
        let mut c = RemoteClient {
            client,
            rx,
            topics,
            id,
            counter: first_counter.saturating_sub(1),
            timeout: s.timeout,
            availability: None,
            challenge: None,
            last_notice: None,
            last_event: None,
            pushes: Default::default(),
            follow,
        };
        let deadline = Instant::now() + s.timeout;
        match c.recv(deadline).await {
            Some(Incoming::Connected) => {}
            Some(Incoming::Failed(e)) => return Err(classify(&addr, e)),
            _ => {
                return Err(RemoteClientError::Unreachable {
                    addr,
                    why: format!("no CONNACK within {:?}", s.timeout),
                })
            }
        }
        let mut subs = vec![
            c.topics.availability.clone(),
            c.topics.challenge.clone(),
            c.topics.reply.clone(),
        ];
        if follow {
            subs.push(c.topics.events.clone());
            subs.push(c.topics.notify.clone());
        }
        for t in &subs {
            c.client
                .subscribe(t.clone(), QoS::AtLeastOnce)
                .await
                .map_err(|e| RemoteClientError::Lost(e.to_string()))?;
        }
        let mut acks = 0;
        while acks < subs.len() {
            match c.recv(deadline).await {
                Some(Incoming::Subscribed) => acks += 1,
                Some(Incoming::Message(t, p)) => {
                    c.note(t, p);
                }
                Some(Incoming::Failed(e)) => return Err(classify(&addr, e)),
                Some(Incoming::Connected) => {}
                None => return Err(RemoteClientError::Timeout(s.timeout)),
            }
        }
        // Retained messages follow the SUBACK; give them a moment.
        let settle = Instant::now() + Duration::from_millis(500).min(s.timeout);
        while c.availability.is_none() || c.challenge.is_none() {
            match c.recv(settle).await {
                Some(Incoming::Message(t, p)) => {
                    c.note(t, p);
                }
                Some(Incoming::Failed(e)) => return Err(classify(&addr, e)),
                Some(_) => {}
                None => break,
            }
        }
        Ok(c)
    }

    /// The lock's retained availability (`online` / `offline`), if any.
    pub fn availability(&self) -> Option<&str> {
        self.availability.as_deref()
    }

    /// The counter of the last command sent.
    pub fn last_counter(&self) -> u64 {
        self.counter
    }

    async fn recv(&mut self, deadline: Instant) -> Option<Incoming> {
        tokio::time::timeout_at(deadline, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Keep what a message says about the lock; queue pushes.
    fn note(&mut self, topic: String, payload: Vec<u8>) -> Option<Vec<u8>> {
        if topic == self.topics.availability {
            self.availability = Some(String::from_utf8_lossy(&payload).into_owned());
        } else if topic == self.topics.challenge {
            self.challenge = Challenge::from_hex(&payload);
        } else if topic == self.topics.reply {
            return Some(payload);
        } else if self.follow && topic == self.topics.events {
            // Sealed to each owner key (issue 14 item 2): frames for other
            // keys, for none of ours (a guest key gets none), repeats after
            // the lock reconnected and replays do not open and are skipped.
            if let Ok((id, doc)) =
                owner_events::open(&self.id.me, &self.id.lock_public, self.last_event, &payload)
            {
                self.last_event = Some(id);
                self.pushes.push_back(Push::Event(doc));
            }
        } else if self.follow && topic == self.topics.notify {
            // Sealed to each owner key: frames for other keys (or for a
            // guest key, which gets none) do not open and are skipped.
            if let Ok((ctr, pt)) = open_oneshot(
                &self.id.me,
                &self.id.lock_public,
                OneShotDirection::LockToApp,
                self.last_notice,
                &payload,
            ) {
                if let Ok(Response::Notice(entry)) = Response::decode(&pt) {
                    self.last_notice = Some(ctr);
                    self.pushes.push_back(Push::Notice(entry));
                }
            }
        }
        None
    }

    /// Send `request` answering the lock's current challenge and wait for
    /// its sealed answer. A lock that is not `online` gets nothing.
    pub async fn request(&mut self, request: &Request) -> Result<Response, RemoteClientError> {
        match self.availability.as_deref() {
            Some("online") => {}
            other => {
                return Err(RemoteClientError::LockOffline(
                    other.unwrap_or("never published").to_owned(),
                ))
            }
        }
        let challenge = self.challenge.ok_or(RemoteClientError::NoChallenge)?;
        self.counter += 1;
        let frame = seal_oneshot(
            &self.id.me,
            &self.id.lock_public,
            OneShotDirection::AppToLock,
            self.counter,
            &envelope::encode(&challenge, request),
            &mut OsRng,
        )
        .map_err(RemoteClientError::Seal)?;
        self.client
            .publish(self.topics.cmd.clone(), QoS::AtLeastOnce, false, frame)
            .await
            .map_err(|e| RemoteClientError::Lost(e.to_string()))?;
        let refusal = error_frame(ErrorCode::Unauthenticated);
        let deadline = Instant::now() + self.timeout;
        loop {
            let payload = match self.recv(deadline).await {
                None => return Err(RemoteClientError::Timeout(self.timeout)),
                Some(Incoming::Failed(e)) => return Err(RemoteClientError::Lost(e.to_string())),
                Some(Incoming::Message(t, p)) => match self.note(t, p) {
                    Some(reply) => reply,
                    None => {
                        if self.availability.as_deref() == Some("offline") {
                            return Err(RemoteClientError::WentOffline);
                        }
                        continue;
                    }
                },
                Some(_) => continue,
            };
            if payload == refusal {
                // Unauthenticated by design: it could be another app's, but
                // ours is the command in flight.
                return Err(RemoteClientError::Unauthenticated);
            }
            // Another key's reply, or an older one of ours: not it.
            let Ok((ctr, pt)) = open_oneshot(
                &self.id.me,
                &self.id.lock_public,
                OneShotDirection::LockToApp,
                None,
                &payload,
            ) else {
                continue;
            };
            if ctr != self.counter {
                continue;
            }
            return Response::decode(&pt).map_err(|e| {
                RemoteClientError::Lost(format!("the lock's answer does not decode: {e}"))
            });
        }
    }

    /// The next event or notice (only with `follow`); `None` if the
    /// connection is lost.
    pub async fn next_push(&mut self) -> Option<Push> {
        loop {
            if let Some(p) = self.pushes.pop_front() {
                return Some(p);
            }
            match self.rx.recv().await? {
                Incoming::Message(t, p) => {
                    self.note(t, p);
                }
                Incoming::Failed(_) => return None,
                _ => {}
            }
        }
    }

    /// Disconnect cleanly.
    pub async fn close(self) {
        let _ = self.client.disconnect().await;
    }
}
