//! One BLE connection's secure channel, lock side: the glue between the
//! GATT characteristics (bytes in, fragments out) and the engine. No BlueZ
//! here — `ble/gatt.rs` moves bytes; this decides what they mean, so it is
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
//! daemon (`link::Link`) and tests.
use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;

use super::authz::{open_request, RequestError};
use super::crypto::{KeyId, StaticKeypair};
use super::lock_link::LockLink;
use super::pairing::{self, CurrentCode, LockPairing, PairKind, PairRequest};
use super::protocol::{
    accept_session, error_frame, fragment, ErrorCode, Frame, FrameType, Reassembler, SecureSession,
    SessionInit, DEFAULT_IDLE_TIMEOUT,
};
use super::request::Request;
use super::response::Response;
use super::wire;
use crate::core::action::AppError;
use crate::core::event::AppRefusal;
use crate::core::time::{Validity, WallTime};
use crate::core::types::{AppKey, AppKeyId, AppKeyRole, UserNumber};
use crate::core::{AppCommand, Channel, Principal};

enum ConnState {
    Idle,
    Pairing(LockPairing),
    GuestPairing {
        pairing: LockPairing,
        invite: Box<pairing::GuestInvite>,
    },
    Open {
        session: Box<SecureSession>,
        key: AppKey,
    },
}

/// The secure channel of one connection.
pub struct ChannelConn {
    lock: Arc<StaticKeypair>,
    code: CurrentCode,
    mtu: u16,
    reasm: Reassembler,
    state: ConnState,
    idle_timeout: Duration,
    /// A second device asking for the BLE slot (`ble/slot.rs`): only a
    /// session with a registered key may displace the current one, so
    /// nothing else is even parsed.
    session_init_only: bool,
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
    pub fn new(lock: Arc<StaticKeypair>, code: impl Into<CurrentCode>, mtu: u16) -> Self {
        let code = code.into();
        let mtu = mtu.clamp(super::protocol::MIN_ATT_MTU, super::protocol::MAX_ATT_MTU);
        let reasm = Reassembler::new(mtu).expect("the MTU was clamped into the accepted range");
        ChannelConn {
            lock,
            code,
            mtu,
            reasm,
            state: ConnState::Idle,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            session_init_only: false,
        }
    }

    /// A connection that accepts nothing but a `SessionInit` (any other
    /// frame is refused before it costs anything): a device contending
    /// for the BLE slot while another holds it.
    pub fn session_init_only(mut self) -> Self {
        self.session_init_only = true;
        self
    }

    /// Is a session open?
    pub fn is_open(&self) -> bool {
        matches!(self.state, ConnState::Open { .. })
    }

    /// The role of the key whose session is open, if one is.
    pub fn session_role(&self) -> Option<&AppKeyRole> {
        match &self.state {
            ConnState::Open { key, .. } => Some(&key.role),
            _ => None,
        }
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
        if self.session_init_only && kind != FrameType::SessionInit {
            return Err(ErrorCode::UnexpectedFrame);
        }
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
                    &self.code.get(),
                    &self.lock,
                    &mut OsRng,
                )
                .map_err(|e| e.code())?;
                self.state = ConnState::Pairing(pairing);
                Ok(reply)
            }
            (ConnState::Pairing(pairing), FrameType::PairConfirm) => {
                let (paired, done) = match pairing.finish_owner(frame, now) {
                    Ok(ok) => ok,
                    Err(e) => {
                        // Issue 13: an old code (the label's after the
                        // first owner) or a man in the middle; the owner
                        // sees every failed confirmation in the log.
                        link.refused(Channel::Ble, AppRefusal::PairingFailed);
                        return Err(e.code());
                    }
                };
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
                // The published snapshot, not the store: a stranger's
                // SessionInit costs one hash per registered key, no read.
                let access = link.app_access();
                let Some(key) = access
                    .keys
                    .values()
                    .find(|k| KeyId::of(&k.public_key) == init.key_id)
                    .cloned()
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
                    .app_access()
                    .keys
                    .get(&key.id)
                    .is_some_and(|k| k.public_key == key.public_key);
                if !still_registered {
                    session.close();
                    link.refused(Channel::Ble, AppRefusal::UnknownKey);
                    return Err(ErrorCode::UnknownKey);
                }
                let principal = wire::principal(&key);
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
        // The engine has counted the attempt and committed it before its
        // reply, so the published snapshot holds the counted invite.
        let access = link.app_access();
        let stored = access.invite(code_id).ok_or(ErrorCode::UnknownCode)?;
        let mut invite = pairing::GuestInvite::from_counted(stored).ok_or(ErrorCode::Refused)?;
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::app::client::{self, AppSessionStart};
    use crate::app::lock_link::{LinkFuture, LoggedEvent, StorageError};
    use crate::app::pairing::{VerificationCode, CODE_BYTES};
    use crate::app::wire::StatusReport;
    use crate::core::time::Instant;
    use crate::core::types::Persisted;
    use crate::core::users::AppAccess;
    use crate::core::{AppOk, AppResult};

    const NOW: Instant = Instant(5_000);
    const MTU: u16 = 185;

    /// A lock with one owner key that counts what each frame cost.
    struct CountingLink {
        access: Arc<AppAccess>,
        store_reads: AtomicUsize,
        commands: AtomicUsize,
        refusals: AtomicUsize,
    }

    impl CountingLink {
        fn with_owner(app: &StaticKeypair) -> Self {
            let owner = AppKey {
                id: AppKeyId(1),
                role: AppKeyRole::Owner {
                    admin: UserNumber::new(1).expect("user 1"),
                },
                public_key: app.public(),
                validity: Validity::ALWAYS,
                label: "owner".into(),
            };
            CountingLink {
                access: Arc::new(AppAccess::from_persisted(&Persisted {
                    app_keys: vec![owner],
                    ..Persisted::default()
                })),
                store_reads: AtomicUsize::new(0),
                commands: AtomicUsize::new(0),
                refusals: AtomicUsize::new(0),
            }
        }
    }

    impl LockLink for CountingLink {
        fn pairing_mode(&self) -> bool {
            false
        }
        fn status(&self) -> StatusReport {
            panic!("no status was asked for")
        }
        fn default_language(&self) -> crate::core::Language {
            panic!("no settings were asked for")
        }
        fn app_access(&self) -> Arc<AppAccess> {
            self.access.clone()
        }
        fn persisted(&self) -> LinkFuture<'_, Result<Persisted, StorageError>> {
            self.store_reads.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(Persisted::default()) })
        }
        fn events_before(
            &self,
            _before: Option<u64>,
            _limit: usize,
        ) -> LinkFuture<'_, Result<Vec<LoggedEvent>, StorageError>> {
            self.store_reads.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(Vec::new()) })
        }
        fn submit(
            &self,
            _via: Channel,
            _principal: Principal,
            _command: AppCommand,
        ) -> LinkFuture<'_, Option<AppResult>> {
            self.commands.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Some(Ok(AppOk::Done)) })
        }
        fn refused(&self, _via: Channel, _reason: AppRefusal) {
            self.refusals.fetch_add(1, Ordering::SeqCst);
        }
        fn ble_connected(&self, _connected: bool) {}
        fn identify(&self) {}
        fn now(&self) -> (Instant, Option<WallTime>) {
            (NOW, Some(WallTime(1_700_000_000)))
        }
    }

    /// One frame through the lock side, fragmented both ways.
    async fn exchange(conn: &mut ChannelConn, link: &CountingLink, frame: &[u8]) -> Vec<u8> {
        let mut reasm = Reassembler::new(MTU).expect("mtu");
        let mut answer = None;
        for part in fragment(frame, MTU).expect("fragments") {
            for out in conn.on_write(link, &part).await {
                if let Some(f) = reasm.push(&out).expect("a well-formed answer") {
                    answer = Some(f);
                }
            }
        }
        answer.expect("the lock answered")
    }

    fn conn(lock: &Arc<StaticKeypair>) -> ChannelConn {
        let code = Arc::new(VerificationCode::from_bytes([3; CODE_BYTES]));
        ChannelConn::new(lock.clone(), code, MTU)
    }

    /// Issue 14.3: a stranger's SessionInit is checked against the
    /// published app keys; a flood of them costs no store read at all.
    #[tokio::test]
    async fn session_inits_from_strangers_cost_no_store_read() {
        let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
        let owner = StaticKeypair::generate(&mut OsRng);
        let link = CountingLink::with_owner(&owner);
        let mut conn = conn(&lock);
        for _ in 0..200 {
            let stranger = StaticKeypair::generate(&mut OsRng);
            let (_start, init) = AppSessionStart::new(&stranger, lock.public(), &mut OsRng);
            let answer = exchange(&mut conn, &link, &init).await;
            assert_eq!(answer, error_frame(ErrorCode::UnknownKey));
        }
        assert_eq!(link.store_reads.load(Ordering::SeqCst), 0);
        assert_eq!(link.commands.load(Ordering::SeqCst), 0);
        assert_eq!(link.refusals.load(Ordering::SeqCst), 200);
    }

    /// The owner's session opens from the snapshot too, and an unlock
    /// reaches the engine without a store read.
    #[tokio::test]
    async fn the_owners_session_and_unlock_read_no_store() {
        let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
        let owner = StaticKeypair::generate(&mut OsRng);
        let link = CountingLink::with_owner(&owner);
        let mut conn = conn(&lock);
        let (start, init) = AppSessionStart::new(&owner, lock.public(), &mut OsRng);
        let accept = exchange(&mut conn, &link, &init).await;
        let mut session = start
            .finish(&owner, &accept, NOW, DEFAULT_IDLE_TIMEOUT)
            .expect("session opens");
        assert!(conn.is_open());
        let frame = client::seal_request(&mut session, NOW, &Request::Unlock).expect("seal");
        let answer = exchange(&mut conn, &link, &frame).await;
        let response = client::open_response(&mut session, NOW, &answer).expect("response");
        assert_eq!(response, Response::Ok);
        assert_eq!(link.commands.load(Ordering::SeqCst), 1);
        assert_eq!(link.store_reads.load(Ordering::SeqCst), 0);
    }

    /// Opens the owner's session on `conn` and runs one unlock; returns
    /// the frames the app sent (init, unlock) and the lock's (accept,
    /// response).
    async fn recorded_unlock(
        conn: &mut ChannelConn,
        link: &CountingLink,
        owner: &StaticKeypair,
        lock: &StaticKeypair,
    ) -> ([Vec<u8>; 2], [Vec<u8>; 2]) {
        let (start, init) = AppSessionStart::new(owner, lock.public(), &mut OsRng);
        let accept = exchange(conn, link, &init).await;
        let mut session = start
            .finish(owner, &accept, NOW, DEFAULT_IDLE_TIMEOUT)
            .expect("session opens");
        let unlock = client::seal_request(&mut session, NOW, &Request::Unlock).expect("seal");
        let answer = exchange(conn, link, &unlock).await;
        let response = client::open_response(&mut session, NOW, &answer).expect("response");
        assert_eq!(response, Response::Ok);
        ([init, unlock], [accept, answer])
    }

    /// Issue 23 item 2: a recorded session replayed whole (its SessionInit
    /// and then its sealed unlock) on a new connection, or again on the
    /// same one, unlocks nothing: the lock answers the init with a fresh
    /// ephemeral key, so the recorded unlock was sealed under keys no
    /// longer in use. Fails if the lock's session keys repeat.
    #[tokio::test]
    async fn a_whole_recorded_session_replayed_unlocks_nothing() {
        let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
        let owner = StaticKeypair::generate(&mut OsRng);
        let link = CountingLink::with_owner(&owner);
        let mut first = conn(&lock);
        let ([init, unlock], [accept, _]) = recorded_unlock(&mut first, &link, &owner, &lock).await;
        assert_eq!(link.commands.load(Ordering::SeqCst), 1);

        let mut again = conn(&lock);
        for conn in [&mut again, &mut first] {
            let replayed_accept = exchange(conn, &link, &init).await;
            assert_eq!(
                Frame::parse(&replayed_accept).expect("a frame").kind,
                FrameType::SessionAccept,
                "a known key's init is answered"
            );
            assert_ne!(replayed_accept, accept, "the lock's ephemeral key is fresh");
            let answer = exchange(conn, &link, &unlock).await;
            assert_eq!(answer, error_frame(ErrorCode::Unauthenticated));
            assert!(!conn.is_open(), "a refused frame leaves nothing open");
        }
        assert_eq!(link.commands.load(Ordering::SeqCst), 1, "no second unlock");
        assert_eq!(link.refusals.load(Ordering::SeqCst), 2);
    }

    /// Issue 23 item 2, reflection: the lock's own frames written back to
    /// it (its sealed response, its session accept) are refused and reach
    /// no engine command. (That a lock→app frame never opens as app→lock
    /// even at a matching counter is checked on the session itself,
    /// `protocol::tests::the_locks_own_frame_never_opens_on_the_lock`.)
    #[tokio::test]
    async fn the_locks_own_frames_reflected_back_are_refused() {
        let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
        let owner = StaticKeypair::generate(&mut OsRng);
        let link = CountingLink::with_owner(&owner);
        let mut conn = conn(&lock);
        let (_, [accept, response]) = recorded_unlock(&mut conn, &link, &owner, &lock).await;
        let answer = exchange(&mut conn, &link, &response).await;
        assert_eq!(
            Frame::parse(&answer).expect("a frame").kind,
            FrameType::Error,
            "the reflected response: {answer:?}"
        );
        assert!(!conn.is_open());
        let (_, [accept2, _]) = recorded_unlock(&mut conn, &link, &owner, &lock).await;
        assert_ne!(accept, accept2);
        let answer = exchange(&mut conn, &link, &accept2).await;
        assert_eq!(answer, error_frame(ErrorCode::UnexpectedFrame));
        assert!(!conn.is_open());
        // Only the two genuine unlocks reached the engine.
        assert_eq!(link.commands.load(Ordering::SeqCst), 2);
    }
}
