//! One BLE connection's secure channel, lock side: the glue between the
//! GATT characteristics (bytes in, fragments out) and the engine. No BlueZ
//! here — `gatt.rs` moves bytes; this decides what they mean, so it is
//! tested with the real app-side client (`client.rs`) in unit tests.
//!
//! ```text
//!  write fragments ─► Reassembler ─► frame
//!     Idle ──PairInit──► LockPairing::respond_owner (pairing mode? code) ─► PairReply
//!     Pairing ──PairConfirm──► finish_owner ─► engine AddAppKey (Principal::Pairing)
//!                               engine Ok ─► PairDone        engine Err ─► Error frame
//!     any ──PairInit / SessionInit──► closes what was open, starts over
//!     Idle ──PairInit(guest code id)──► engine GuestRedeemAttempt (counts, refuses spent)
//!               ─► LockPairing::respond_guest (invite's sealed secret) ─► PairReply
//!     GuestPairing ──PairConfirm──► finish_guest ─► engine RedeemGuestInvite ─► PairDone
//!     Idle ──SessionInit──► key id ∈ engine's app keys ─► accept_session ─► Open
//!     Open ──Data──► open_request (role check) ─► dispatch::answer ─► sealed Response
//!  any failure: Error frame, state back to Idle (nothing half-open survives)
//! ```
//!
//! The engine is reached through [`LockLink`], so the same code serves the
//! daemon ([`DaemonLink`]) and tests.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_core::OsRng;
use tokio::sync::{broadcast, watch};

use super::commands::{
    open_request, BoltState, DoorState, LockState, Principal as BlePrincipal, Request,
    RequestError, Response, StatusReport, WifiStatus as BleWifi,
};
use super::crypto::{KeyId, StaticKeypair};
use super::pairing::{
    GuestInvite as PairingInvite, LockPairing, PairKind, PairRequest, VerificationCode,
};
use super::protocol::{
    accept_session, error_frame, fragment, ErrorCode, Frame, FrameType, Reassembler, SecureSession,
    SessionInit, DEFAULT_IDLE_TIMEOUT,
};
use crate::core::action::{AppError, AppOk};
use crate::core::event::AppRefusal;
use crate::core::time::{Instant, Validity, WallTime};
use crate::core::types::{AppKey, AppKeyId, AppKeyRole, GuestInvite, Persisted, UserNumber};
use crate::core::{AppCommand, AppRequest, AppResult, Channel, Input, Principal};
use crate::store::StoredEvent;

/// Boxed future for [`LockLink`].
pub type LinkFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The engine and the store as an app channel sees them (BLE here, the
/// broker in `src/remote`).
pub trait LockLink: Send + Sync + 'static {
    /// Pairing mode, as the engine last published it (B-5.1).
    fn pairing_mode(&self) -> bool;
    /// What the store holds (users, keys, invites, settings). An error
    /// fails closed: no session, no listing.
    fn persisted(&self) -> Result<Persisted, String>;
    /// A page of the event log, newest first, older than `before`.
    fn events_before(&self, before: Option<u64>, limit: usize) -> Result<Vec<StoredEvent>, String>;
    /// The status report for the app (B-9.1).
    fn status(&self) -> StatusReport;
    /// Run an authenticated command; `None` if the engine has stopped.
    fn submit(
        &self,
        via: Channel,
        principal: Principal,
        command: AppCommand,
    ) -> LinkFuture<'_, Option<AppResult>>;
    /// A frame refused before it became a command: into the event log.
    fn refused(&self, via: Channel, reason: AppRefusal);
    /// An app connected over BLE, or the last one left (B-9.1 status).
    fn ble_connected(&self, connected: bool);
    /// An Improv client asked the lock to identify itself; the engine
    /// decides whether it does (it rate-limits the request).
    fn identify(&self);
    /// Monotonic and wall-clock now, in the engine's terms.
    fn now(&self) -> (Instant, Option<WallTime>);

    /// The registered app keys (sessions are only accepted for these).
    fn app_keys(&self) -> Vec<AppKey> {
        match self.persisted() {
            Ok(p) => p.app_keys,
            Err(e) => {
                tracing::error!("cannot read app keys: {e}");
                Vec::new()
            }
        }
    }

    /// The outstanding guest invite with this public code id.
    fn guest_invite(&self, code_id: u16) -> Option<GuestInvite> {
        match self.persisted() {
            Ok(p) => p.guest_invites.into_iter().find(|i| i.code_id == code_id),
            Err(e) => {
                tracing::error!("cannot read guest invites: {e}");
                None
            }
        }
    }
}

/// The principal a stored key speaks for on the wire (role check).
pub fn ble_principal(key: &AppKey) -> BlePrincipal {
    match key.role {
        AppKeyRole::Owner { admin } => BlePrincipal::Owner {
            key_id: KeyId::of(&key.public_key),
            admin_user: admin.get(),
        },
        AppKeyRole::Guest => BlePrincipal::Guest {
            key_id: KeyId::of(&key.public_key),
            valid_from: key.validity.from.unwrap_or(WallTime(i64::MIN)),
            valid_until: key.validity.until.unwrap_or(WallTime(i64::MAX)),
        },
    }
}

/// The engine's principal for a stored key.
pub fn engine_principal(key: &AppKey) -> Principal {
    match key.role {
        AppKeyRole::Owner { admin } => Principal::Owner { key: key.id, admin },
        AppKeyRole::Guest => Principal::Guest {
            key: key.id,
            validity: key.validity,
        },
    }
}

/// The engine's answer as a wire response.
pub fn response_of(result: &AppResult) -> Response {
    match result {
        Ok(AppOk::Done) | Ok(AppOk::AppKeyAdded(_)) | Ok(AppOk::GuestInviteCreated(_)) => {
            Response::Ok
        }
        Ok(AppOk::UserAdded(n)) => Response::UserAdded { user: n.get() },
        Ok(AppOk::TempPasscodeAdded(id)) => Response::PasscodeCreated {
            id: u16::try_from(id.0).unwrap_or(u16::MAX),
        },
        Err(e) => {
            let code = match e {
                AppError::Forbidden => ErrorCode::Forbidden,
                AppError::OutsideValidity => ErrorCode::OutsideValidity,
                _ => ErrorCode::Refused,
            };
            Response::error(code, &e.to_string())
        }
    }
}

enum ConnState {
    Idle,
    Pairing(LockPairing),
    GuestPairing {
        pairing: LockPairing,
        invite: Box<PairingInvite>,
    },
    Open {
        session: Box<SecureSession>,
        key: AppKey,
    },
}

/// The secure channel of one connection.
pub struct ChannelConn {
    lock: Arc<StaticKeypair>,
    code: Arc<VerificationCode>,
    mtu: u16,
    reasm: Reassembler,
    state: ConnState,
    idle_timeout: Duration,
}

impl std::fmt::Debug for ChannelConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConn")
            .field("mtu", &self.mtu)
            .finish_non_exhaustive()
    }
}

impl ChannelConn {
    /// A fresh connection at ATT MTU `mtu` (clamped to the protocol's range).
    pub fn new(lock: Arc<StaticKeypair>, code: Arc<VerificationCode>, mtu: u16) -> Self {
        let mtu = mtu.clamp(super::protocol::MIN_ATT_MTU, super::protocol::MAX_ATT_MTU);
        // MTU is clamped into the accepted range, so this cannot fail; fall
        // back to the minimum rather than panic.
        let reasm = Reassembler::new(mtu)
            .or_else(|_| Reassembler::new(super::protocol::MIN_ATT_MTU))
            .unwrap_or_else(|_| unreachable_reassembler());
        ChannelConn {
            lock,
            code,
            mtu,
            reasm,
            state: ConnState::Idle,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// Is a session open?
    pub fn is_open(&self) -> bool {
        matches!(self.state, ConnState::Open { .. })
    }

    /// Feed one characteristic write; returns the notifications to send.
    pub async fn on_write(&mut self, link: &dyn LockLink, bytes: &[u8]) -> Vec<Vec<u8>> {
        let frame = match self.reasm.push(bytes) {
            Ok(Some(f)) => f,
            Ok(None) => return Vec::new(),
            Err(e) => return self.fail(e.code()),
        };
        let out = match self.on_frame(link, &frame).await {
            Ok(out) => out,
            Err(code) => return self.fail(code),
        };
        self.fragments(&out)
    }

    fn fragments(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        match fragment(frame, self.mtu) {
            Ok(f) => f,
            Err(e) => self.fail(e.code()),
        }
    }

    /// Any failure closes whatever was open and answers one error frame.
    fn fail(&mut self, code: ErrorCode) -> Vec<Vec<u8>> {
        if let ConnState::Open { session, .. } = &mut self.state {
            session.close();
        }
        self.state = ConnState::Idle;
        fragment(&error_frame(code), self.mtu).unwrap_or_default()
    }

    async fn on_frame(&mut self, link: &dyn LockLink, frame: &[u8]) -> Result<Vec<u8>, ErrorCode> {
        let kind = Frame::parse(frame).map_err(|e| e.code())?.kind;
        let (now, wall) = link.now();
        let previous = std::mem::replace(&mut self.state, ConnState::Idle);
        // A handshake frame starts over: whatever was open is closed first
        // (the same app reconnecting, or another process on its machine).
        let previous = match (previous, kind) {
            (ConnState::Open { mut session, .. }, FrameType::PairInit | FrameType::SessionInit) => {
                session.close();
                ConnState::Idle
            }
            (
                ConnState::Pairing(_) | ConnState::GuestPairing { .. },
                FrameType::PairInit | FrameType::SessionInit,
            ) => ConnState::Idle,
            (other, _) => other,
        };
        match (previous, kind) {
            (ConnState::Idle, FrameType::PairInit) => {
                let req = PairRequest::parse(frame).map_err(|e| e.code())?;
                if let PairKind::Guest { code_id } = req.kind {
                    return self.guest_pair_init(link, &req, code_id, wall).await;
                }
                let (pairing, reply) = LockPairing::respond_owner(
                    &req,
                    link.pairing_mode(),
                    &self.code,
                    &self.lock,
                    &mut OsRng,
                )
                .map_err(|e| e.code())?;
                self.state = ConnState::Pairing(pairing);
                Ok(reply)
            }
            (ConnState::Pairing(pairing), FrameType::PairConfirm) => {
                let (paired, done) = pairing.finish_owner(frame, now).map_err(|e| e.code())?;
                // The engine binds the key to the first administrator and
                // assigns its id; ours are placeholders it overwrites.
                let key = AppKey {
                    id: AppKeyId(0),
                    role: AppKeyRole::Owner {
                        admin: UserNumber::new(1).ok_or(ErrorCode::Refused)?,
                    },
                    public_key: paired.app_public,
                    validity: Validity::ALWAYS,
                    label: format!("app {}", hex::encode(&paired.key_id.0[..4])),
                };
                match link
                    .submit(Channel::Ble, Principal::Pairing, AppCommand::AddAppKey(key))
                    .await
                {
                    Some(Ok(_)) => Ok(done),
                    Some(Err(AppError::Forbidden)) => Err(ErrorCode::Forbidden),
                    _ => Err(ErrorCode::Refused),
                }
            }
            (
                ConnState::GuestPairing {
                    pairing,
                    mut invite,
                },
                FrameType::PairConfirm,
            ) => {
                let code_id = invite.code_id;
                let (paired, done) = match pairing.finish_guest(frame, &mut invite, now) {
                    Ok(ok) => ok,
                    Err(e) => {
                        // A wrong code or a man in the middle: the attempt
                        // was counted when it started; log the failure.
                        link.refused(Channel::Ble, AppRefusal::InviteRefused);
                        return Err(e.code());
                    }
                };
                let cmd = AppCommand::RedeemGuestInvite {
                    public_key: paired.app_public,
                    label: format!("guest {}", hex::encode(&paired.key_id.0[..4])),
                };
                match link
                    .submit(Channel::Ble, Principal::Invitee { code_id }, cmd)
                    .await
                {
                    Some(Ok(_)) => Ok(done),
                    Some(Err(AppError::InviteRefused)) => Err(ErrorCode::CodeExpired),
                    _ => Err(ErrorCode::Refused),
                }
            }
            (ConnState::Idle, FrameType::SessionInit) => {
                let init = SessionInit::parse(frame).map_err(|e| e.code())?;
                let Some(key) = link
                    .app_keys()
                    .into_iter()
                    .find(|k| KeyId::of(&k.public_key) == init.key_id)
                else {
                    link.refused(Channel::Ble, AppRefusal::UnknownKey);
                    return Err(ErrorCode::UnknownKey);
                };
                let (session, accept) = accept_session(
                    &self.lock,
                    &init,
                    &key.public_key,
                    &mut OsRng,
                    now,
                    self.idle_timeout,
                )
                .map_err(|e| e.code())?;
                self.state = ConnState::Open {
                    session: Box::new(session),
                    key,
                };
                Ok(accept)
            }
            (ConnState::Open { mut session, key }, FrameType::Data) => {
                // The key may have been revoked (and its slot reissued)
                // while the session was open: the session speaks only for
                // the very public key it was opened with.
                let still_registered = link
                    .app_keys()
                    .iter()
                    .any(|k| k.id == key.id && k.public_key == key.public_key);
                if !still_registered {
                    session.close();
                    link.refused(Channel::Ble, AppRefusal::UnknownKey);
                    return Err(ErrorCode::UnknownKey);
                }
                let principal = ble_principal(&key);
                let response = match open_request(&mut session, &principal, now, wall, frame) {
                    Err(RequestError::Channel(e)) => {
                        let reason = match e {
                            super::protocol::ChannelError::Replay { .. } => AppRefusal::Replay,
                            _ => AppRefusal::BadSeal,
                        };
                        link.refused(Channel::Ble, reason);
                        return Err(e.code());
                    }
                    Err(RequestError::Command(e)) => Response::error(e.code(), &e.to_string()),
                    Err(RequestError::Authz(e)) => Response::error(e.code(), &e.to_string()),
                    Ok(request) => self.run(link, &key, &request).await,
                };
                let sealed = session
                    .seal(now, &response.encode())
                    .map_err(|e| e.code())?;
                self.state = ConnState::Open { session, key };
                Ok(sealed)
            }
            _ => Err(ErrorCode::UnexpectedFrame),
        }
    }

    async fn run(&self, link: &dyn LockLink, key: &AppKey, request: &Request) -> Response {
        super::dispatch::answer(link, key, Channel::Ble, request, &mut OsRng).await
    }

    /// A guest's app starts redeeming its one-time code (B-6.6). The
    /// engine counts the attempt (and refuses a spent, burned or expired
    /// code) before the lock says anything, so each guess costs one.
    async fn guest_pair_init(
        &mut self,
        link: &dyn LockLink,
        req: &PairRequest,
        code_id: u16,
        wall: Option<WallTime>,
    ) -> Result<Vec<u8>, ErrorCode> {
        let invitee = Principal::Invitee { code_id };
        match link
            .submit(Channel::Ble, invitee, AppCommand::GuestRedeemAttempt)
            .await
        {
            Some(Ok(_)) => {}
            Some(Err(AppError::InviteRefused)) => return Err(ErrorCode::UnknownCode),
            Some(Err(AppError::ClockUnknown)) => return Err(ErrorCode::ClockUnknown),
            _ => return Err(ErrorCode::Refused),
        }
        let stored = link.guest_invite(code_id).ok_or(ErrorCode::UnknownCode)?;
        let mut invite = PairingInvite::from_counted(&stored).ok_or(ErrorCode::Refused)?;
        let (pairing, reply) =
            LockPairing::respond_guest(req, &mut invite, wall, &self.lock, &mut OsRng)
                .map_err(|e| e.code())?;
        self.state = ConnState::GuestPairing {
            pairing,
            invite: Box::new(invite),
        };
        Ok(reply)
    }
}

/// `Reassembler::new` only fails for an MTU outside 23..=517, which the
/// constructor excludes; this keeps the code panic-free without `unwrap`.
fn unreachable_reassembler() -> Reassembler {
    // 23 is MIN_ATT_MTU: always accepted.
    match Reassembler::new(23) {
        Ok(r) => r,
        Err(_) => std::process::abort(),
    }
}

/// [`LockLink`] over the running daemon's channels: the engine's input
/// queue, its replies broadcast, its published status and the store. One
/// per channel; `id_base` keeps each channel's request ids apart so a
/// reply is never taken by the wrong waiter.
pub struct DaemonLink {
    pub inputs: crate::board::InputSender,
    pub replies: broadcast::Sender<(u64, AppResult)>,
    pub published: watch::Receiver<crate::daemon::Published>,
    pub store: Arc<Mutex<crate::store::Store>>,
    pub clock: crate::daemon::Clock,
    pub id_base: u64,
    pub next_id: AtomicU64,
    /// Bounds what refused frames write to the event log (a radio-range
    /// attacker reconnecting and sending junk must not push real history
    /// out of the bounded log). `None` when the channel limits refusals
    /// itself before they get here (the broker path does).
    pub refusal_log_limit: Option<Mutex<crate::remote::limit::RefusalLimiter>>,
}

/// First request id used by the BLE service.
pub const BLE_ID_BASE: u64 = 1 << 48;

impl DaemonLink {
    fn store(&self) -> std::sync::MutexGuard<'_, crate::store::Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LockLink for DaemonLink {
    fn pairing_mode(&self) -> bool {
        self.published.borrow().engine.pairing_mode
    }

    fn persisted(&self) -> Result<Persisted, String> {
        self.store().load().map_err(|e| e.to_string())
    }

    fn app_keys(&self) -> Vec<AppKey> {
        self.store().app_keys().unwrap_or_else(|e| {
            // Fail closed: no keys, no sessions.
            tracing::error!("cannot read app keys: {e}");
            Vec::new()
        })
    }

    fn guest_invite(&self, code_id: u16) -> Option<GuestInvite> {
        match self.store().guest_invites() {
            Ok(invites) => invites.into_iter().find(|i| i.code_id == code_id),
            Err(e) => {
                tracing::error!("cannot read guest invites: {e}");
                None
            }
        }
    }

    fn events_before(&self, before: Option<u64>, limit: usize) -> Result<Vec<StoredEvent>, String> {
        self.store()
            .events_before(before.map(crate::store::EventId), limit)
            .map_err(|e| e.to_string())
    }

    fn status(&self) -> StatusReport {
        let s = &self.published.borrow().engine;
        status_report(s)
    }

    fn submit(
        &self,
        via: Channel,
        principal: Principal,
        command: AppCommand,
    ) -> LinkFuture<'_, Option<AppResult>> {
        Box::pin(async move {
            let id = self.id_base + self.next_id.fetch_add(1, Ordering::Relaxed);
            // Subscribe before sending: the reply cannot overtake us.
            let mut replies = self.replies.subscribe();
            let req = AppRequest {
                id,
                via,
                principal,
                command,
            };
            if !self.inputs.send(Input::App(req)).await {
                return None;
            }
            loop {
                match replies.recv().await {
                    Ok((rid, result)) if rid == id => return Some(result),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    fn refused(&self, via: Channel, reason: AppRefusal) {
        use crate::remote::limit::Decision;
        let reason = match &self.refusal_log_limit {
            None => reason,
            Some(limit) => {
                let now = self.clock.now().mono;
                let mut limit = limit.lock().unwrap_or_else(|p| p.into_inner());
                match limit.before(now) {
                    Decision::Check { .. } => {
                        if !limit.refused(now) {
                            return; // inside a burst: counted, not logged
                        }
                        reason
                    }
                    Decision::Drop {
                        first_of_burst: true,
                    } => AppRefusal::RateLimited,
                    Decision::Drop {
                        first_of_burst: false,
                    } => return,
                }
            }
        };
        // Never wait here: a flood of junk frames must not stall the
        // channel on a full engine queue.
        if !self.inputs.try_send(Input::AppRefused { via, reason }) {
            tracing::warn!(
                ?via,
                ?reason,
                "refused app frame not logged: engine queue full"
            );
        }
    }

    fn ble_connected(&self, connected: bool) {
        if !self.inputs.try_send(Input::BleConnected(connected)) {
            tracing::warn!(
                connected,
                "BLE connection state not reported: engine queue full"
            );
        }
    }

    fn identify(&self) {
        if !self.inputs.try_send(Input::Identify) {
            tracing::warn!("Improv identify dropped: engine queue full");
        }
    }

    fn now(&self) -> (Instant, Option<WallTime>) {
        let n = self.clock.now();
        (n.mono, n.wall)
    }
}

/// The engine's status as the app's status report (B-9.1).
pub fn status_report(s: &crate::core::Status) -> StatusReport {
    use crate::core::input::{BoltPosition, DoorPosition};
    use crate::core::{AlarmKind, LockState as Core};
    let lock = match s.lock {
        Core::Locked => LockState::Locked,
        Core::Unlocked => LockState::Unlocked,
        Core::Jammed => LockState::Jammed,
        Core::Moving | Core::Unknown => LockState::Unknown,
    };
    let bolt = match (s.lock, s.bolt) {
        (Core::Moving, _) => BoltState::Moving,
        (_, BoltPosition::Extended) => BoltState::Extended,
        (_, BoltPosition::Retracted) => BoltState::Retracted,
        (_, BoltPosition::Between) => BoltState::Unknown,
    };
    let door = match s.door {
        Some(DoorPosition::Open) => DoorState::Open,
        Some(DoorPosition::Closed) => DoorState::Closed,
        None => DoorState::Unknown,
    };
    let has = |k: AlarmKind| s.active_alarms.contains(&k);
    StatusReport {
        lock,
        door,
        bolt,
        battery_percent: s.battery_percent.unwrap_or(0).min(100),
        wifi: BleWifi {
            enabled: s.wifi_enabled,
            connected: s.wifi_connected,
            rssi_dbm: s.wifi_rssi.and_then(|r| i8::try_from(r).ok()),
        },
        alarms: super::commands::Alarms {
            tamper: has(AlarmKind::Tamper),
            lockout: s.lockout_active,
            duress: has(AlarmKind::Duress),
            low_battery: s.low_battery,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Engine, EngineConfig, Now};
    use crate::remote::limit::{RefusalLimiter, CAPACITY};
    use crate::store::{Store, StoreOptions};
    use tokio::sync::mpsc;

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_refused_ble_frames_logs_one_burst_and_one_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _key) = Store::open(
            dir.path(),
            StoreOptions {
                max_events: 100,
                max_db_bytes: None,
            },
        )
        .unwrap();
        let engine = Engine::new(
            EngineConfig {
                passcode_key: [1; 32],
                serial: "LD-TEST".into(),
                firmware: "0".into(),
                verification_code: "X".into(),
                low_battery_percent: 20,
                matter_code: None,
            },
            crate::core::Persisted::default(),
            Now::new(0, None),
        );
        let (_published_tx, published) = watch::channel(crate::daemon::Published {
            engine: engine.status(),
            daemon: Default::default(),
        });
        let (tx, mut rx) = mpsc::channel(1024);
        let clock = crate::daemon::Clock::new(false);
        let link = DaemonLink {
            inputs: crate::board::InputSender::new(tx),
            replies: broadcast::channel(4).0,
            published,
            store: Arc::new(Mutex::new(store)),
            id_base: BLE_ID_BASE,
            next_id: AtomicU64::new(0),
            refusal_log_limit: Some(Mutex::new(RefusalLimiter::new(clock.now().mono))),
            clock,
        };
        for _ in 0..500 {
            link.refused(Channel::Ble, AppRefusal::BadSeal);
        }
        let mut logged = Vec::new();
        while let Ok(Input::AppRefused { reason, .. }) = rx.try_recv() {
            logged.push(reason);
        }
        let bad_seals = logged.iter().filter(|r| **r == AppRefusal::BadSeal).count();
        assert_eq!(bad_seals, CAPACITY as usize);
        assert_eq!(
            logged
                .iter()
                .filter(|r| **r == AppRefusal::RateLimited)
                .count(),
            1
        );
        assert_eq!(logged.len(), CAPACITY as usize + 1);
    }
}
