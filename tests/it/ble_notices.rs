//! Issue 17 item 8: owner notices reach a BLE-only owner's app at its next
//! connection. The real daemon (sim board, in process) makes the notices;
//! the lock side of BLE as the GATT glue runs it (`ChannelConn` over the
//! daemon's `Link`, every frame fragmented) answers the real app client —
//! no radio, no broker.
//!
//! ```text
//!  sim doorbell / away + key ─► engine Notify ─► store (sealed notice)
//!  phone: SessionInit ─► PendingNotices ─► Notices{…} ─► AckNotices{up_to}
//! ```
use std::path::Path;
use std::sync::Arc;

use latchd::app::client::{open_response, seal_request, AppSessionStart};
use latchd::app::connection::ChannelConn;
use latchd::app::crypto::StaticKeypair;
use latchd::app::pairing::VerificationCode;
use latchd::app::protocol::{
    fragment, ErrorCode, Reassembler, SecureSession, DEFAULT_IDLE_TIMEOUT,
};
use latchd::app::response::PendingNotice;
use latchd::app::wire::{EventKind, UnlockMethod};
use latchd::app::{Request, Response};
use latchd::config::{BoardKind, Config};
use latchd::core::time::{Instant, Validity};
use latchd::core::types::{
    AppKey, AppKeyId, AppKeyRole, Change, Handing, Key, Role, User, UserNumber,
};
use latchd::daemon::{self, Running};
use latchd::link::Link;
use latchd::store::{Store, StoreOptions};
use rand_core::OsRng;

const MTU: u16 = 185;
const NOW: Instant = Instant(1_000);
const OWNER: AppKeyId = AppKeyId(1);
const GUEST: AppKeyId = AppKeyId(2);

fn admin() -> UserNumber {
    UserNumber::new(1).unwrap()
}

/// A lock with an administrator, an owner key and a guest key.
fn seed(state: &Path, owner: &StaticKeypair, guest: &StaticKeypair) {
    daemon::create_state_dir(state).expect("state dir");
    let (mut store, _) = Store::open(state, StoreOptions::default()).expect("store");
    let key = |id, role, public_key| AppKey {
        id,
        role,
        public_key,
        validity: Validity::ALWAYS,
        label: format!("key {}", id.0),
    };
    store
        .apply(&[
            Change::SetHanding(Handing::RightHand),
            Change::PutUser(User {
                number: admin(),
                role: Role::Admin,
                validity: Validity::ALWAYS,
            }),
            Change::PutAppKey(key(
                OWNER,
                AppKeyRole::Owner { admin: admin() },
                owner.public(),
            )),
            Change::PutAppKey(key(GUEST, AppKeyRole::Guest, guest.public())),
        ])
        .expect("seed");
}

async fn start_lock(state: &Path) -> Running {
    let mut config = Config {
        board: BoardKind::Sim,
        ..Default::default()
    };
    config.lock.trust_system_clock = true;
    config.lock.timedate_bus = "off".into();
    config.ble.enabled = false;
    config.sim.motor_travel_ms = 20;
    crate::common::daemon::start_in_process(state, config, None).await
}

/// One BLE connection of a phone: the lock side as the GATT glue runs it,
/// and the phone's open session.
struct Connection {
    conn: ChannelConn,
    session: SecureSession,
    link: Link,
}

async fn exchange(conn: &mut ChannelConn, link: &Link, frame: &[u8]) -> Vec<u8> {
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

impl Connection {
    /// Connect and authenticate as `app`.
    async fn open(running: &Running, app: &StaticKeypair) -> Connection {
        let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
        let code = VerificationCode::generate(&mut OsRng);
        let mut conn = ChannelConn::new(lock.clone(), Arc::new(code), MTU);
        let link = running.link.clone();
        let (start, init) = AppSessionStart::new(app, lock.public(), &mut OsRng);
        let accept = exchange(&mut conn, &link, &init).await;
        let session = start
            .finish(app, &accept, NOW, DEFAULT_IDLE_TIMEOUT)
            .expect("a registered key opens a session");
        Connection {
            conn,
            session,
            link,
        }
    }

    async fn ask(&mut self, request: &Request) -> Response {
        let sealed = seal_request(&mut self.session, NOW, request).expect("sealed");
        let answer = exchange(&mut self.conn, &self.link, &sealed).await;
        open_response(&mut self.session, NOW, &answer).expect("an answer")
    }

    /// What the lock has for this key now.
    async fn pending(&mut self) -> (Vec<PendingNotice>, u16) {
        match self.ask(&Request::PendingNotices).await {
            Response::Notices { notices, more } => (notices, more),
            other => panic!("{other:?}"),
        }
    }
}

fn kinds(list: &[PendingNotice]) -> Vec<EventKind> {
    list.iter().map(|n| n.entry.kind).collect()
}

/// A notice made while no app is connected (the doorbell, an unlock while
/// away) is there at the owner's next session, oldest first; events that
/// are not notices (locking, arming away) are not offered; unacknowledged
/// notices come again, acknowledged ones never; a guest key gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_notices_wait_for_the_next_ble_session_until_acknowledged() {
    let owner = StaticKeypair::generate(&mut OsRng);
    let guest = StaticKeypair::generate(&mut OsRng);
    let dir = tempfile::tempdir().expect("state");
    let state = dir.path().join("lock");
    seed(&state, &owner, &guest);
    let mut running = start_lock(&state).await;
    let sim = running.sim.clone().expect("sim board");

    // Nothing yet.
    let mut phone = Connection::open(&running, &owner).await;
    assert_eq!(phone.pending().await, (vec![], 0));
    // Away mode armed from the phone (an event, not a notice); the phone
    // leaves.
    assert_eq!(phone.ask(&Request::SetAway(true)).await, Response::Ok);
    drop(phone);

    // No app connected: someone rings, the door is locked from inside (not
    // a notice), then opened with the mechanical key while away.
    sim.press(&[Key::Doorbell]).expect("doorbell");
    running.barrier().await;
    sim.lock_button().expect("lock button");
    running.barrier().await;
    sim.mechanical_key().expect("key");
    running.barrier().await;

    // Next connection: both notices, oldest first, and only those.
    let mut phone = Connection::open(&running, &owner).await;
    let (first, more) = phone.pending().await;
    assert_eq!(more, 0);
    assert_eq!(
        kinds(&first),
        [
            EventKind::Doorbell,
            EventKind::Unlocked(UnlockMethod::MechanicalKey)
        ],
        "{first:?}"
    );
    assert!(first[0].id < first[1].id);
    assert!(first.iter().all(|n| n.entry.at.is_some()), "{first:?}");
    // The doorbell points at its logged event (its snapshot's key).
    assert!(first[0].entry.cursor > 0, "{first:?}");
    drop(phone);

    // Never acknowledged (the phone lost the link): offered again.
    let mut phone = Connection::open(&running, &owner).await;
    assert_eq!(phone.pending().await.0, first);
    // Acknowledge the first only: the second stays.
    assert_eq!(
        phone.ask(&Request::AckNotices { up_to: first[0].id }).await,
        Response::Ok
    );
    assert_eq!(phone.pending().await.0, first[1..]);
    assert_eq!(
        phone.ask(&Request::AckNotices { up_to: first[1].id }).await,
        Response::Ok
    );
    // An ack never goes back, nor past the newest notice.
    assert_eq!(
        phone.ask(&Request::AckNotices { up_to: 0 }).await,
        Response::Ok
    );
    assert_eq!(phone.pending().await, (vec![], 0));
    drop(phone);

    // Acknowledged: not sent again at the next connection.
    let mut phone = Connection::open(&running, &owner).await;
    assert_eq!(phone.pending().await, (vec![], 0));
    drop(phone);

    // A guest key gets nothing, and cannot acknowledge for anyone.
    sim.press(&[Key::Doorbell]).expect("doorbell");
    running.barrier().await;
    let mut visitor = Connection::open(&running, &guest).await;
    for req in [Request::PendingNotices, Request::AckNotices { up_to: 99 }] {
        match visitor.ask(&req).await {
            Response::Error { code, .. } => assert_eq!(code, ErrorCode::Forbidden),
            other => panic!("a guest was answered {other:?}"),
        }
    }
    drop(visitor);
    let mut phone = Connection::open(&running, &owner).await;
    assert_eq!(kinds(&phone.pending().await.0), [EventKind::Doorbell]);
    drop(phone);

    // Kept across a restart: the cursor and the notices are stored.
    running.stop().await.expect("stops");
    let running = start_lock(&state).await;
    let mut phone = Connection::open(&running, &owner).await;
    assert_eq!(kinds(&phone.pending().await.0), [EventKind::Doorbell]);
    drop(phone);
    running.stop().await.expect("stops");
}
