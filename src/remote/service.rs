//! The MQTT session loop: connect, serve sealed commands, publish state,
//! events and alerts, reconnect with back-off.
//!
//! ```text
//!            ┌───────────────────────── run ─────────────────────────────┐
//!            │ Wi-Fi off (setting)? ── wait for the setting ─────────────┤
//!            │ session: fresh rumqttc EventLoop, clean_session = true,   │
//!            │          will = "offline" (retained) on availability      │
//!            │   select! ─ poll ─► ConnAck: new challenge, subscribe cmd,│
//!            │           │          "online", discovery, state, events   │
//!            │           │        ► Publish on cmd: limit → gate → answer│
//!            │           │        ► PubAck: advance the event cursor     │
//!            │           ├ rotation due ───► next challenge (retained)   │
//!            │           ├ status changed ─► state (retained, if changed)│
//!            │           ├ event logged ───► pump events, sealed/owner   │
//!            │           ├ app keys changed ► pump events (owner paired) │
//!            │           ├ notice ─────────► alert (doorbell, alarms)    │
//!            │           ├ snapshot stored ► JPEG, retained (opt-in)     │
//!            │           └ shutdown / Wi-Fi off ─► "offline", DISCONNECT │
//!            │ lost: sleep back-off (min … ×2 … max), next session        │
//!            └────────────────────────────────────────────────────────────┘
//! ```
//!
//! Every publish goes through this one loop, so the order of
//! `Outgoing::Publish(pkid)` notifications matches the order of our
//! requests; that is how an event's packet id is known and its PubAck
//! moves the persisted cursor. Each session gets a fresh event loop (no
//! retransmission queue inside rumqttc): after a reconnect, everything
//! after the persisted cursor is published again, oldest first, so an
//! event whose PubAck was lost may arrive twice (QoS 1 is at least once) —
//! apps drop repeats by the frame's counter, which is the event id.
//!
//! Events leave only sealed to each owner key (`owner_events.rs`, issue 14
//! item 2), one frame per key; the cursor moves over an event once every
//! frame of it was acknowledged (`outbox.rs`). With no owner key nothing
//! is published and the cursor stays: the events wait for an owner.
//!
//! What the broker may queue for the lock (issue 14 item 1): nothing. The
//! session is clean (`clean_session = true`), so while the lock is away
//! the broker keeps no subscription and queues no command for it. A
//! command that still reaches it late — held on purpose by the broker, or
//! retained and delivered at subscription — answers a challenge of an
//! earlier connection, or one past its age, and is refused `Stale`
//! (`freshness.rs`). The lock's own publishes are tracked by the persisted
//! event cursor, not by a broker session.
//!
//! A command frame:
//!
//! ```text
//!  frame ─► RefusalLimiter::before ── bucket empty ─► dropped unanswered (RemoteStats::rate_limited;
//!    │                                                 one app_refused/rate_limited per burst)
//!    ▼ check
//!  header ─► stored key (published snapshot) ─► last counter (writer) ─► gate::verify ── refused ─► bare refusal frame,
//!    │        (open, envelope, live challenge, decode, role check)
//!    │                                                                  app_refused(reason), bucket charged
//!    ▼ verified: persist the counter first (store writer thread)
//!  Refuse { reason } ─► sealed error, app_refused(reason), bucket charged
//!  Run(request)      ─► task: app::dispatch::answer(Link, key, Remote) ─► sealed reply ─► out
//! ```
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    Transport,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::freshness::Challenges;
use super::gate::{self, Outcome};
use super::outbox::{EventOutbox, FRAMES_IN_FLIGHT};
use super::owner_events::{self, Sealed};
use super::telemetry::{self, Topics};
use super::RemoteContext;
use crate::app::crypto::StaticKeypair;
use crate::app::dispatch;
use crate::app::protocol::{seal_oneshot, ErrorCode, OneShotDirection};
use crate::app::wire::{self, EventEntry};
use crate::app::{LockLink, Request, Response};
use crate::core::action::SnapshotReason;
use crate::core::event::{AlarmKind, AppRefusal};
use crate::core::types::{AppKey, AppKeyRole};
use crate::core::Channel;
use crate::link::limit::{Decision, RefusalLimiter};
use crate::link::{EventId, EventRecord, Link, OwnerNotice, Published};
use crate::video::SnapshotSaved;

/// Persisted counter: id of the newest event the broker acknowledged.
pub const EVENT_CURSOR: &str = "remote.events.acked";
/// Persisted counter of sealed notices (lock → owner apps): an app refuses
/// one at or below the last it accepted, so the broker cannot replay one.
pub const PUSH_COUNTER: &str = "remote.push";
/// Notices waiting for a connection, at most (the oldest dropped).
const PENDING_NOTICES: usize = 16;
/// How long a command waits for its answer (the engine, the store).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Queue between rumqttc's client handle and its event loop.
const CLIENT_QUEUE: usize = 64;
/// Largest MQTT packet either way without snapshots: commands, replies and
/// documents are small, and a small limit bounds what a broker can make
/// the lock buffer.
const MAX_PACKET: usize = 16 * 1024;
/// Largest snapshot published (a 640×480 JPEG is 30–80 KB).
pub const MAX_SNAPSHOT_BYTES: usize = 512 * 1024;

/// Persisted counter name of the last accepted command counter of a key.
pub fn counter_name(key: &AppKey) -> String {
    format!("remote.rx.{}", hex::encode(gate::key_id(key).0))
}

enum End {
    Shutdown,
    WifiOff,
    Lost { was_connected: bool },
}

/// A sealed reply ready to publish (from a command task).
struct Outbound {
    payload: Vec<u8>,
}

/// Which of our publishes got which packet id, and which events are out.
#[derive(Default)]
struct Tracker {
    /// One entry per publish request, in order: `Some(event id)` for the
    /// sealed frames of an event.
    requested: VecDeque<Option<u64>>,
    by_pkid: HashMap<u16, u64>,
    /// The session's events; `None` until the persisted cursor was read
    /// (no event goes out before it is known).
    events: Option<EventOutbox>,
}

/// Run remote access until `shutdown`. Never returns an error: a broker
/// that is down or refuses us is retried with back-off, and the lock keeps
/// working without it.
pub async fn run(ctx: RemoteContext, shutdown: CancellationToken) {
    let mut svc = Service::new(ctx);
    let mut backoff = svc.ctx.settings.reconnect_min;
    loop {
        if !svc.wifi_on() {
            tracing::info!("remote access paused: Wi-Fi is off");
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = svc.published.changed() => if r.is_err() { return },
                }
                if svc.wifi_on() {
                    break;
                }
            }
        }
        match svc.session(&shutdown).await {
            End::Shutdown => return,
            End::WifiOff => backoff = svc.ctx.settings.reconnect_min,
            End::Lost { was_connected } => {
                if was_connected {
                    backoff = svc.ctx.settings.reconnect_min;
                }
                tracing::info!("reconnecting to the broker in {} ms", backoff.as_millis());
                let link_back = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    back = back_off(backoff, &mut svc.published, |p| p.engine.wifi_connected) => back,
                };
                backoff = if link_back {
                    tracing::info!("Wi-Fi is back: reconnecting to the broker now");
                    svc.ctx.settings.reconnect_min
                } else {
                    (backoff * 2).min(svc.ctx.settings.reconnect_max)
                };
            }
        }
    }
}

/// Wait `backoff` before trying the broker again, or less: when the lock's
/// network link (`link_up`) comes back — down at the start or at any time
/// during the wait, up now — the wait ends at once and says so (true). The
/// broker was unreachable because the link was down, so the doubled
/// back-off (up to `reconnect_max_ms`, a minute by default) would only keep
/// the lock offline after its Wi-Fi returned.
async fn back_off<T>(
    backoff: Duration,
    rx: &mut watch::Receiver<T>,
    link_up: impl Fn(&T) -> bool,
) -> bool {
    let mut was_up = link_up(&rx.borrow_and_update());
    let sleep = tokio::time::sleep(backoff);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return false,
            r = rx.changed() => {
                if r.is_err() {
                    sleep.await;
                    return false;
                }
                let up = link_up(&rx.borrow_and_update());
                if up && !was_up {
                    return true;
                }
                was_up = up;
            }
        }
    }
}

struct Service {
    ctx: RemoteContext,
    topics: Topics,
    published: watch::Receiver<Published>,
    events: broadcast::Receiver<EventRecord>,
    /// Changes of the app keys: events waiting for an owner key go out
    /// when one appears.
    access: watch::Receiver<Arc<crate::core::users::AppAccess>>,
    notices: broadcast::Receiver<OwnerNotice>,
    out_tx: mpsc::Sender<Outbound>,
    out_rx: mpsc::Receiver<Outbound>,
    /// The running lock (`app::dispatch` takes it as its `LockLink`).
    link: Link,
    limiter: RefusalLimiter,
    last_state: Option<String>,
    snapshots: Option<broadcast::Receiver<SnapshotSaved>>,
    /// The newest snapshot not yet handed to the client.
    pending_snapshot: Option<std::path::PathBuf>,
    /// Owner notices waiting for a connection (the newest kept).
    pending_notices: VecDeque<EventEntry>,
    /// The challenges of the current connection (`freshness.rs`).
    challenges: Challenges,
    /// "No owner key, events wait" was logged in this session.
    no_owner_warned: bool,
}

impl Service {
    fn new(ctx: RemoteContext) -> Self {
        let (out_tx, out_rx) = mpsc::channel(16);
        // The service's own limiter runs before anything is refused, so
        // the link passes refusals on unlimited.
        let link = ctx.link.clone();
        let limiter = RefusalLimiter::new(link.clock().now().mono);
        Service {
            topics: Topics::new(&ctx.settings.topic_prefix, &ctx.serial),
            published: link.published(),
            events: link.events(),
            access: link.app_access_watch(),
            notices: link.notices(),
            out_tx,
            out_rx,
            link,
            limiter,
            last_state: None,
            snapshots: ctx.snapshots.as_ref().map(|r| r.resubscribe()),
            pending_snapshot: None,
            pending_notices: VecDeque::new(),
            challenges: Challenges::new(ctx.settings.command_max_age),
            no_owner_warned: false,
            ctx,
        }
    }

    /// Publish the current challenge, retained.
    fn publish_challenge(&mut self, client: &AsyncClient, tracker: &mut Tracker) {
        if let Some(c) = self.challenges.current() {
            let topic = self.topics.challenge.clone();
            let payload = c.to_hex().into_bytes();
            publish(
                client,
                tracker,
                topic,
                QoS::AtLeastOnce,
                true,
                payload,
                None,
            );
        }
    }

    fn wifi_on(&self) -> bool {
        self.published.borrow().engine.wifi_enabled
    }

    fn options(&self) -> MqttOptions {
        let s = &self.ctx.settings;
        let mut o = MqttOptions::new(self.ctx.serial.clone(), s.host.clone(), s.port);
        o.set_keep_alive(s.keep_alive);
        // Issue 14 item 1: the broker queues nothing for the lock while it
        // is away (a late command would be stale anyway).
        o.set_clean_session(true);
        o.set_last_will(LastWill::new(
            self.topics.availability.clone(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        o.set_inflight(FRAMES_IN_FLIGHT as u16 + 8);
        let outgoing = if self.snapshots.is_some() {
            MAX_SNAPSHOT_BYTES + 1024
        } else {
            MAX_PACKET
        };
        o.set_max_packet_size(MAX_PACKET, outgoing);
        if let Some((u, p)) = &s.credentials {
            o.set_credentials(u.clone(), p.as_str());
        }
        if let Some(tls) = &self.ctx.tls {
            o.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        o
    }

    async fn session(&mut self, shutdown: &CancellationToken) -> End {
        let (client, mut eventloop) = AsyncClient::new(self.options(), CLIENT_QUEUE);
        super::no_delay(&mut eventloop);
        let mut tracker = Tracker::default();
        let mut connected = false;
        loop {
            let rotate_at = self
                .challenges
                .next_rotation()
                .map(|at| self.link.clock().to_tokio(at));
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.go_offline(&client, &mut eventloop, connected).await;
                    return End::Shutdown;
                }
                _ = sleep_until(rotate_at), if connected => {
                    self.challenges.rotate(self.link.clock().now().mono, &mut OsRng);
                    self.publish_challenge(&client, &mut tracker);
                }
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        connected = true;
                        self.ctx.stats.connects.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(session_present = ack.session_present, "connected to the broker");
                        tracker = Tracker::default();
                        self.ctx.stats.events_in_flight.store(0, Ordering::Relaxed);
                        self.on_connected(&client, &mut tracker).await;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if p.topic == self.topics.cmd {
                            self.on_command(&client, &mut tracker, &p.payload).await;
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        if let Some(Some(id)) = tracker.requested.pop_front() {
                            tracker.by_pkid.insert(pkid, id);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(id) = tracker.by_pkid.remove(&ack.pkid) {
                            if let Some(o) = tracker.events.as_mut() {
                                o.acked(id);
                            }
                            self.advance_cursor(&mut tracker).await;
                            self.pump_events(&client, &mut tracker).await;
                        }
                        // A snapshot the full queue refused goes out as soon
                        // as there is room, not at the next connection.
                        self.publish_snapshot(&client, &mut tracker);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log_lost(&e, connected);
                        if !connected {
                            self.ctx.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                        }
                        return End::Lost { was_connected: connected };
                    }
                },
                changed = self.published.changed() => {
                    if changed.is_err() {
                        self.go_offline(&client, &mut eventloop, connected).await;
                        return End::Shutdown;
                    }
                    if !self.wifi_on() {
                        self.go_offline(&client, &mut eventloop, connected).await;
                        return End::WifiOff;
                    }
                    if connected {
                        self.publish_state(&client, &mut tracker, false);
                    }
                }
                ev = self.events.recv() => {
                    // Lagged is fine: the store, not the channel, is the source.
                    if matches!(ev, Err(broadcast::error::RecvError::Closed)) {
                        self.go_offline(&client, &mut eventloop, connected).await;
                        return End::Shutdown;
                    }
                    if connected {
                        self.pump_events(&client, &mut tracker).await;
                    }
                }
                changed = self.access.changed() => {
                    if changed.is_err() {
                        self.go_offline(&client, &mut eventloop, connected).await;
                        return End::Shutdown;
                    }
                    if connected {
                        self.pump_events(&client, &mut tracker).await;
                    }
                }
                n = self.notices.recv() => {
                    if let Ok(n) = n {
                        if let Some(entry) = owner_entry(&n, self.link.now().1) {
                            if self.pending_notices.len() == PENDING_NOTICES {
                                self.pending_notices.pop_front();
                            }
                            self.pending_notices.push_back(entry);
                        }
                        if connected {
                            if let Some(doc) = telemetry::alert_json(&n.notice, self.ctx.settings.clear_presence) {
                                let topic = self.topics.alert.clone();
                                publish(&client, &mut tracker, topic, QoS::AtLeastOnce, false, doc.to_string().into_bytes(), None);
                            }
                            self.flush_notices(&client, &mut tracker).await;
                        }
                    }
                }
                saved = next_snapshot(&mut self.snapshots) => match saved {
                    // B-6.9: a duress alarm is silent; its picture must not
                    // reach a screen the person under duress may be shown.
                    Ok(s) if s.reason == SnapshotReason::Alarm(AlarmKind::Duress) => {}
                    Ok(s) => {
                        self.pending_snapshot = Some(s.path);
                        if connected {
                            self.publish_snapshot(&client, &mut tracker);
                        }
                    }
                    // A slow loop skipped some: the newest one comes next.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => self.snapshots = None,
                },
                Some(out) = self.out_rx.recv() => {
                    // A reply for a command of an earlier session still goes
                    // out: the app matches it by counter.
                    let topic = self.topics.reply.clone();
                    publish(&client, &mut tracker, topic, QoS::AtLeastOnce, false, out.payload, None);
                }
            }
        }
    }

    async fn on_connected(&mut self, client: &AsyncClient, tracker: &mut Tracker) {
        // A new connection forgets every earlier challenge: a command held
        // back while the lock was away is stale, however soon it is back.
        // The challenge goes out before "online", so an app that sees the
        // lock online reads this one.
        self.challenges
            .reset(self.link.clock().now().mono, &mut OsRng);
        self.publish_challenge(client, tracker);
        if let Err(e) = client.try_subscribe(self.topics.cmd.clone(), QoS::AtLeastOnce) {
            tracing::warn!("cannot subscribe to {}: {e}", self.topics.cmd);
        }
        let avail = self.topics.availability.clone();
        publish(
            client,
            tracker,
            avail,
            QoS::AtLeastOnce,
            true,
            b"online".to_vec(),
            None,
        );
        if let Some(prefix) = &self.ctx.settings.homeassistant {
            let camera = self.snapshots.is_some();
            let presence = self.ctx.settings.clear_presence;
            let configs = |presence| {
                telemetry::discovery(
                    prefix,
                    &self.ctx.serial,
                    &self.topics,
                    &self.ctx.firmware,
                    camera,
                    presence,
                )
            };
            let published = configs(presence);
            // Without presence, remove the lock and door entities an
            // earlier configuration may have left retained at the broker.
            let stale: Vec<String> = configs(true)
                .into_iter()
                .map(|d| d.topic)
                .filter(|t| !published.iter().any(|d| &d.topic == t))
                .collect();
            for topic in stale {
                publish(
                    client,
                    tracker,
                    topic,
                    QoS::AtLeastOnce,
                    true,
                    Vec::new(),
                    None,
                );
            }
            for d in published {
                publish(
                    client,
                    tracker,
                    d.topic,
                    QoS::AtLeastOnce,
                    true,
                    d.payload.to_string().into_bytes(),
                    None,
                );
            }
        }
        self.publish_state(client, tracker, true);
        self.publish_snapshot(client, tracker);
        self.flush_notices(client, tracker).await;
        match self.link.counter(EVENT_CURSOR).await {
            Ok(c) => {
                tracker.events = Some(EventOutbox::new(c.unwrap_or(0)));
                self.no_owner_warned = false;
                self.pump_events(client, tracker).await;
            }
            Err(e) => tracing::error!("cannot read the event cursor; events wait: {e}"),
        }
    }

    fn publish_state(&mut self, client: &AsyncClient, tracker: &mut Tracker, force: bool) {
        let doc = telemetry::state_json(
            &self.published.borrow().engine,
            self.ctx.settings.clear_presence,
        )
        .to_string();
        if !force && self.last_state.as_deref() == Some(doc.as_str()) {
            return;
        }
        let topic = self.topics.state.clone();
        if publish(
            client,
            tracker,
            topic,
            QoS::AtLeastOnce,
            true,
            doc.clone().into_bytes(),
            None,
        ) {
            self.last_state = Some(doc);
        }
    }

    /// The owner keys valid now: who events and notices are sealed to.
    fn owner_keys(&self) -> Vec<AppKey> {
        let wall = self.link.now().1;
        self.link
            .app_access()
            .keys
            .values()
            .filter(|k| matches!(k.role, AppKeyRole::Owner { .. }) && k.validity.admits(wall))
            .cloned()
            .collect()
    }

    /// Publish the logged events after the cursor, each sealed to every
    /// owner key (`owner_events`; issue 14 item 2: who unlocked and when
    /// is for the owners, not the broker). Without an owner key nothing
    /// goes out and the cursor stays: the events wait for one.
    async fn pump_events(&mut self, client: &AsyncClient, tracker: &mut Tracker) {
        let Some(outbox) = tracker.events.as_ref() else {
            return;
        };
        let owners = self.owner_keys();
        if owners.is_empty() {
            if !self.no_owner_warned {
                self.no_owner_warned = true;
                tracing::warn!(
                    "events are not published: no owner app key to seal them to (they wait for one)"
                );
            }
            return;
        }
        self.no_owner_warned = false;
        let room = outbox.room(owners.len());
        if room == 0 {
            return;
        }
        let batch = match self
            .link
            .events_after(EventId(outbox.next_after()), room)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("cannot read the event log for publishing: {e}");
                return;
            }
        };
        'events: for ev in batch {
            let id = ev.id.0;
            match owner_events::seal(&self.ctx.lock_key, &owners, id, &ev.event, &mut OsRng) {
                // Not with a key list that was just checked; stop as if.
                Sealed::Wait => break,
                Sealed::Skip => {}
                Sealed::Frames(frames) => {
                    for frame in frames {
                        let topic = self.topics.events.clone();
                        if !publish(
                            client,
                            tracker,
                            topic,
                            QoS::AtLeastOnce,
                            false,
                            frame,
                            Some(id),
                        ) {
                            // The client queue is full: this event is read
                            // and sealed again, whole, at the next pump.
                            break 'events;
                        }
                        if let Some(o) = tracker.events.as_mut() {
                            o.sent(id);
                        }
                        self.ctx
                            .stats
                            .events_published
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if let Some(o) = tracker.events.as_mut() {
                o.done(id);
            }
        }
        self.advance_cursor(tracker).await;
    }

    /// Persist the newest event whose frames, and those of every event
    /// before it, the broker acknowledged.
    async fn advance_cursor(&mut self, tracker: &mut Tracker) {
        let Some(outbox) = tracker.events.as_mut() else {
            return;
        };
        let cursor = outbox.advance();
        self.ctx
            .stats
            .events_in_flight
            .store(outbox.frames_out() as u64, Ordering::Relaxed);
        if let Some(c) = cursor {
            self.ctx.stats.events_acked.store(c, Ordering::Relaxed);
            if let Err(e) = self.link.put_counter(EVENT_CURSOR, c).await {
                // Not fatal: those events go out again after a reconnect.
                tracing::error!("cannot persist the event cursor: {e}");
            }
        }
    }

    /// Say `offline` ourselves (a clean DISCONNECT suppresses the will),
    /// then disconnect; bounded so shutdown never hangs on a dead broker.
    async fn go_offline(
        &mut self,
        client: &AsyncClient,
        eventloop: &mut EventLoop,
        connected: bool,
    ) {
        if !connected {
            return;
        }
        let mut t = Tracker::default();
        publish(
            client,
            &mut t,
            self.topics.availability.clone(),
            QoS::AtLeastOnce,
            true,
            b"offline".to_vec(),
            None,
        );
        let _ = client.try_disconnect();
        let drain = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        tracing::info!("disconnected from the broker");
    }

    /// Count a refusal, charge the rate limit, log it in the engine's event
    /// log (unless a burst's one `rate_limited` entry stands for it).
    /// `reason: None` is our own failure (the store): not the sender's
    /// doing, so neither logged as an app refusal nor charged.
    fn note_refusal(&mut self, reason: Option<AppRefusal>, why: &dyn std::fmt::Display) {
        let Some(reason) = reason else {
            tracing::error!("remote command not served: {why}");
            return;
        };
        tracing::warn!(?reason, "remote command refused: {why}");
        if self.limiter.refused(self.link.clock().now().mono) {
            self.link.refused(Channel::Remote, reason);
        }
    }

    /// Refuse a frame that did not verify: one bare error frame, the same
    /// for every reason.
    fn refuse(
        &mut self,
        client: &AsyncClient,
        tracker: &mut Tracker,
        reason: Option<AppRefusal>,
        why: &dyn std::fmt::Display,
    ) {
        self.ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
        self.note_refusal(reason, why);
        let topic = self.topics.reply.clone();
        publish(
            client,
            tracker,
            topic,
            QoS::AtMostOnce,
            false,
            gate::refusal_frame(),
            None,
        );
    }

    async fn on_command(&mut self, client: &AsyncClient, tracker: &mut Tracker, frame: &[u8]) {
        // The rate limit comes first: a dropped frame costs no parse, no
        // store read, no engine input and no answer.
        match self.limiter.before(self.link.clock().now().mono) {
            Decision::Drop { first_of_burst } => {
                self.ctx.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                if first_of_burst {
                    tracing::warn!(
                        "too many refused remote commands: dropping frames unanswered until they stop"
                    );
                    self.link.refused(Channel::Remote, AppRefusal::RateLimited);
                }
                return;
            }
            Decision::Check {
                ended_burst: Some(n),
            } => tracing::warn!("remote command flood over: {n} frames were dropped unanswered"),
            Decision::Check { ended_burst: None } => {}
        }
        // The sender's key from the snapshot the engine task publishes:
        // junk and unknown keys cost no database read.
        let access = self.link.app_access();
        let key = match gate::sender_key(frame, access.keys.values()) {
            Ok(k) => k.clone(),
            Err(e) => return self.refuse(client, tracker, Some(e.reason()), &e),
        };
        let name = counter_name(&key);
        let last = match self.link.counter(&name).await {
            Ok(l) => l,
            Err(e) => {
                return self.refuse(
                    client,
                    tracker,
                    None,
                    &format!("cannot read the replay counter: {e}"),
                )
            }
        };
        let now = self.link.clock().now();
        let at = gate::At {
            wall: now.wall,
            mono: now.mono,
            challenges: &self.challenges,
        };
        let verified = match gate::verify(&self.ctx.lock_key, &key, last, frame, at) {
            Ok(v) => v,
            Err(e) => return self.refuse(client, tracker, Some(e.reason()), &e),
        };
        // Persist first: a crash after acting must not let the same frame
        // be accepted again.
        if let Err(e) = self.link.put_counter(&name, verified.counter).await {
            return self.refuse(
                client,
                tracker,
                None,
                &format!("cannot persist the replay counter: {e}"),
            );
        }
        self.ctx.stats.accepted.fetch_add(1, Ordering::Relaxed);
        match verified.outcome {
            Outcome::Refuse { reason, response } => {
                self.note_refusal(Some(reason), &format!("key {}", key.id.0));
                self.send_reply(client, tracker, &key, verified.counter, &response);
            }
            Outcome::Run(request) => {
                tokio::spawn(serve(
                    self.link.clone(),
                    self.ctx.lock_key.clone(),
                    key,
                    verified.counter,
                    request,
                    self.out_tx.clone(),
                ));
            }
        }
    }

    fn send_reply(
        &mut self,
        client: &AsyncClient,
        tracker: &mut Tracker,
        key: &AppKey,
        counter: u64,
        r: &Response,
    ) {
        match gate::seal_reply(&self.ctx.lock_key, key, counter, r, &mut OsRng) {
            Ok(frame) => {
                let topic = self.topics.reply.clone();
                publish(client, tracker, topic, QoS::AtLeastOnce, false, frame, None);
            }
            Err(e) => tracing::error!("cannot seal a reply: {e}"),
        }
    }
}

/// Answer one verified request (the same handler as over BLE) and hand the
/// sealed reply to the session loop. A task of its own, so a command that
/// waits for the engine (an unlock drives the motor) does not hold up the
/// loop, the keep-alive or other commands.
async fn serve(
    link: Link,
    lock_key: Arc<StaticKeypair>,
    key: AppKey,
    counter: u64,
    request: Request,
    out: mpsc::Sender<Outbound>,
) {
    let answer = async {
        let mut rng = OsRng;
        dispatch::answer(&link, &key, Channel::Remote, &request, &mut rng).await
    };
    let response = match tokio::time::timeout(REPLY_TIMEOUT, answer).await {
        Ok(r) => r,
        Err(_) => Response::error(
            ErrorCode::Refused,
            "the lock did not answer in time; check its status before retrying",
        ),
    };
    match gate::seal_reply(&lock_key, &key, counter, &response, &mut OsRng) {
        Ok(payload) => {
            // Closed only when the service stopped; the app asks again.
            let _ = out.send(Outbound { payload }).await;
        }
        Err(e) => tracing::error!("cannot seal a reply: {e}"),
    }
}

/// Queue one publish; record which event (if any) it carries so its
/// packet id can be matched. `false` when the client queue is full.
impl Service {
    /// The newest stored snapshot, retained, so a camera entity shows it
    /// whenever it connects. Kept for the next connection if it cannot be
    /// queued now; dropped if it cannot be read or is too large.
    fn publish_snapshot(&mut self, client: &AsyncClient, tracker: &mut Tracker) {
        let Some(path) = self.pending_snapshot.take() else {
            return;
        };
        // A local file of a few tens of KB: read in place.
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(path = %path.display(), "snapshot not published: {e}");
                return;
            }
        };
        if bytes.len() > MAX_SNAPSHOT_BYTES {
            tracing::warn!(
                path = %path.display(),
                bytes = bytes.len(),
                "snapshot not published: larger than {MAX_SNAPSHOT_BYTES} bytes"
            );
            return;
        }
        let topic = self.topics.snapshot.clone();
        if publish(client, tracker, topic, QoS::AtLeastOnce, true, bytes, None) {
            self.ctx
                .stats
                .snapshots_published
                .fetch_add(1, Ordering::Relaxed);
        } else {
            self.pending_snapshot = Some(path);
        }
    }
}

impl Service {
    /// Seal each waiting notice to every owner key and publish it on
    /// `notify`. The push counter is persisted before a frame leaves, so a
    /// broker replaying an old notice is refused by the app.
    async fn flush_notices(&mut self, client: &AsyncClient, tracker: &mut Tracker) {
        while let Some(entry) = self.pending_notices.pop_front() {
            let owners = self.owner_keys();
            if owners.is_empty() {
                tracing::warn!(?entry, "notice not sent: no owner app key is registered");
                continue;
            }
            let body = Response::Notice(entry).encode();
            for key in owners {
                let counter = match self.link.next_counter(PUSH_COUNTER).await {
                    Ok(c) => c,
                    Err(e) => {
                        // Fail closed: without a fresh counter the app
                        // could not tell this from a replay.
                        tracing::error!("notice not sent: cannot persist the push counter: {e}");
                        return;
                    }
                };
                match seal_oneshot(
                    &self.ctx.lock_key,
                    &key.public_key,
                    OneShotDirection::LockToApp,
                    counter,
                    &body,
                    &mut OsRng,
                ) {
                    Ok(frame) => {
                        let topic = self.topics.notify.clone();
                        if publish(client, tracker, topic, QoS::AtLeastOnce, false, frame, None) {
                            self.ctx
                                .stats
                                .notices_sealed
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => tracing::error!(key = key.id.0, "notice not sealed: {e}"),
                }
            }
        }
    }
}

/// Sleep until `at`; never, without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the owner's app is told of a notice, if the broker seals it
/// (B-6.9 duress, B-3.6 an unlock while away, a lockout); doorbell and the
/// other alarms go to the clear alert topic instead. The classification is
/// the app layer's, shared with BLE (`wire::notice_entry`).
fn owner_entry(n: &OwnerNotice, now: Option<crate::core::WallTime>) -> Option<EventEntry> {
    if !wire::sealed_on_broker(&n.notice) {
        return None;
    }
    wire::notice_entry(&n.notice, n.last_event.unwrap_or(0), now)
}

/// The next stored snapshot; never, when snapshots are not published.
async fn next_snapshot(
    rx: &mut Option<broadcast::Receiver<SnapshotSaved>>,
) -> Result<SnapshotSaved, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn publish(
    client: &AsyncClient,
    tracker: &mut Tracker,
    topic: String,
    qos: QoS,
    retain: bool,
    payload: Vec<u8>,
    event: Option<u64>,
) -> bool {
    match client.try_publish(topic, qos, retain, payload) {
        Ok(()) => {
            tracker.requested.push_back(event);
            true
        }
        Err(e) => {
            tracing::warn!(
                "cannot queue a publish (it is retried after reconnect if it was an event): {e}"
            );
            false
        }
    }
}

fn log_lost(e: &ConnectionError, connected: bool) {
    if connected {
        tracing::warn!("lost the broker connection: {e}");
    } else {
        tracing::warn!("cannot connect to the broker: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::action::Notice;

    const MINUTE: Duration = Duration::from_secs(60);

    /// The link (Wi-Fi) coming back ends the back-off at once; a link that
    /// stayed up, or other changes, do not.
    #[tokio::test(start_paused = true)]
    async fn the_link_coming_back_ends_the_back_off() {
        let up = |v: &(bool, u8)| v.0;
        // Down at the start, up after 3 s: cut short.
        let (tx, mut rx) = watch::channel((false, 0u8));
        let t = tokio::time::Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            tx.send((true, 0)).unwrap();
            tokio::time::sleep(MINUTE * 10).await;
        });
        assert!(back_off(MINUTE, &mut rx, up).await);
        assert_eq!(t.elapsed(), Duration::from_secs(3));

        // Up throughout (the broker is what is down), other fields
        // changing: the whole back-off.
        let (tx, mut rx) = watch::channel((true, 0u8));
        let t = tokio::time::Instant::now();
        tokio::spawn(async move {
            for i in 1..=5 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                tx.send((true, i)).unwrap();
            }
            tokio::time::sleep(MINUTE * 10).await;
        });
        assert!(!back_off(MINUTE, &mut rx, up).await);
        assert_eq!(t.elapsed(), MINUTE);

        // Up, lost during the wait, back: cut short when it is back.
        let (tx, mut rx) = watch::channel((true, 0u8));
        let t = tokio::time::Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            tx.send((false, 0)).unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            tx.send((true, 0)).unwrap();
            tokio::time::sleep(MINUTE * 10).await;
        });
        assert!(back_off(MINUTE, &mut rx, up).await);
        assert_eq!(t.elapsed(), Duration::from_secs(7));

        // The engine gone (shutdown): the back-off still runs out.
        let (tx, mut rx) = watch::channel((false, 0u8));
        drop(tx);
        let t = tokio::time::Instant::now();
        assert!(!back_off(MINUTE, &mut rx, up).await);
        assert_eq!(t.elapsed(), MINUTE);
    }

    /// Issue 13: the owner hears of a keypad lockout (the first included)
    /// as a sealed notice; the clock falling behind goes to the clear
    /// alert topic only.
    #[test]
    fn a_lockout_is_an_owner_notice() {
        let n = |notice| OwnerNotice {
            notice,
            last_event: Some(42),
        };
        let entry = owner_entry(
            &n(Notice::Lockout {
                level: 1,
                minutes: Some(3),
                keypad_disabled: false,
            }),
            Some(crate::core::WallTime(7)),
        )
        .expect("an owner notice");
        assert_eq!(entry.kind, wire::EventKind::Alarm(wire::AlarmKind::Lockout));
        assert_eq!(entry.cursor, 42);
        assert!(owner_entry(&n(Notice::ClockBehind), None).is_none());
        assert_eq!(
            telemetry::alert_json(
                &Notice::Lockout {
                    level: 5,
                    minutes: Some(48),
                    keypad_disabled: true
                },
                false
            ),
            Some(serde_json::json!({"event_type": "keypad_disabled"}))
        );
    }
}
