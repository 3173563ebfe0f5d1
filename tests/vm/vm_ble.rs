//! The BLE service end to end.
//!
//! * `channel_*` (runs everywhere, no radio): the lock side of the secure
//!   channel (`app::ChannelConn`) against the real app-side client
//!   (`app::client`), fragment by fragment at a small ATT MTU, with the real
//!   engine (the spec harness: pure `Engine`, in-memory store) behind it —
//!   owner pairing, sessions, guest invite → redemption → unlock only →
//!   spent code → events paged → revocation.
//! * `ble_end_to_end_in_vm` (`LATCHD_VM_TESTS=1`, QEMU guest with btvirt):
//!   the GATT application registered with bluetoothd on `hci0`, the bluer
//!   client on `hci1` and `latchctl ble`: discovery, pairing refused outside
//!   pairing mode, pairing in pairing mode, unlock and status, Improv
//!   refused without pairing mode.
//! * `daemon_ble_end_to_end_in_vm`: the real `latchd` binary (sim board,
//!   `[ble]` on hci0, `[wifi] backend = "wpa_supplicant"`) with a
//!   wpa_supplicant double on the guest's system bus: Improv and pairing
//!   refused outside pairing mode; SET held over the control socket; Improv
//!   joins Wi-Fi through the supplicant's D-Bus API and the status report
//!   shows the link; owner pairs, unlocks, reads events; a guest redeems a
//!   code over the air and is refused `ListUsers`; bluetoothd restarts and
//!   the daemon registers again by itself.
//! * `daemon_improv_client_in_vm`: the same daemon against Home Assistant's
//!   Improv client (`py-improv-ble-client` on `bleak`, venv from
//!   `tests/vm/improv-venv.sh`) run by `tests/vm/improv_client.py` on hci1:
//!   found by the library's `device_filter`, the advertised service data
//!   following authorization required → authorized → provisioned,
//!   `need_authorization`, device info, identify, scan, provision.
//!
//! Run: `LATCHD_VM_TESTS=1 cargo test --all-features --test vm vm_ble:: -- --test-threads=1`
#[path = "../spec/harness.rs"]
#[allow(unused_imports)]
mod harness;
use crate::rig as vm;

use std::sync::{Arc, Mutex};

use latchd::app::client::{self, AppPairing, AppSessionStart, PairingSecret};
use latchd::app::crypto::StaticKeypair;
use latchd::app::pairing::{GuestPairingCode, PairingError, VerificationCode};
use latchd::app::protocol::{fragment, ErrorCode, Reassembler, DEFAULT_IDLE_TIMEOUT};
use latchd::app::wire::{self, status_report, StatusReport};
use latchd::app::{
    ChannelConn, LinkFuture, LockLink, LoggedEvent, Request, Response, StorageError,
};
use latchd::ble::guard::{Admit, Guard, Limits, Standing};
use latchd::ble::slot::{Outcome as SlotOutcome, Slot, MAX_CONTENDERS};
use latchd::core::event::AppRefusal;
use latchd::core::input::SetPress;
use latchd::core::time::{Instant, WallTime};
use latchd::core::types::Persisted;
use latchd::core::users::AppAccess;
use latchd::core::{AppCommand, Channel, Input, Principal};
use rand_core::OsRng;

/// The real engine behind the BLE service.
struct SimLink {
    sim: Mutex<harness::Sim>,
}

impl SimLink {
    fn installed() -> Arc<SimLink> {
        Arc::new(SimLink {
            sim: Mutex::new(harness::Sim::installed()),
        })
    }
    fn hold_set(&self) {
        self.sim.lock().unwrap().input(Input::Set(SetPress::Long));
    }
    /// What the harness's store holds.
    fn stored(&self) -> Persisted {
        self.sim.lock().unwrap().store.clone()
    }
    /// The registered app keys.
    fn app_keys(&self) -> Vec<latchd::core::types::AppKey> {
        self.stored().app_keys
    }
}

impl LockLink for SimLink {
    fn identify(&self) {
        self.sim.lock().unwrap().input(Input::Identify);
    }
    fn pairing_mode(&self) -> bool {
        self.sim.lock().unwrap().engine.status().pairing_mode
    }
    fn app_access(&self) -> Arc<AppAccess> {
        Arc::new(AppAccess::from_persisted(&self.sim.lock().unwrap().store))
    }
    fn persisted(&self) -> LinkFuture<'_, Result<Persisted, StorageError>> {
        let p = self.sim.lock().unwrap().store.clone();
        Box::pin(async move { Ok(p) })
    }
    /// The harness keeps no event table: its log is numbered from 1 in
    /// the order the engine logged it, as the store would.
    fn events_before(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> LinkFuture<'_, Result<Vec<LoggedEvent>, StorageError>> {
        let events: Vec<_> = self
            .sim
            .lock()
            .unwrap()
            .all
            .iter()
            .filter_map(|a| match a {
                latchd::core::Action::Log(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        let page = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| LoggedEvent {
                id: i as u64 + 1,
                event,
            })
            .rev()
            .filter(|e| before.is_none_or(|b| e.id < b))
            .take(limit)
            .collect();
        Box::pin(async move { Ok(page) })
    }
    fn ble_connected(&self, connected: bool) {
        self.sim
            .lock()
            .unwrap()
            .input(Input::BleConnected(connected));
    }
    fn refused(&self, via: Channel, reason: AppRefusal) {
        self.sim
            .lock()
            .unwrap()
            .input(Input::AppRefused { via, reason });
    }
    fn status(&self) -> StatusReport {
        status_report(&self.sim.lock().unwrap().engine.status())
    }
    fn default_language(&self) -> latchd::core::Language {
        latchd::core::Language::En
    }
    fn submit(
        &self,
        via: Channel,
        principal: Principal,
        command: AppCommand,
    ) -> LinkFuture<'_, Option<latchd::core::AppResult>> {
        let r = self.sim.lock().unwrap().app(via, principal, command);
        Box::pin(async move { Some(r) })
    }
    fn now(&self) -> (Instant, Option<WallTime>) {
        let n = self.sim.lock().unwrap().now();
        (n.mono, n.wall)
    }
}

/// One request/answer through the lock side, fragmented both ways.
async fn exchange(conn: &mut ChannelConn, link: &SimLink, frame: &[u8]) -> Vec<u8> {
    let mut reasm = Reassembler::new(185).unwrap();
    let mut answer = None;
    for part in fragment(frame, 23).unwrap() {
        for out in conn.on_write(link, &part).await {
            if let Some(f) = reasm.push(&out).unwrap() {
                assert!(answer.is_none(), "one answer per request");
                answer = Some(f);
            }
        }
    }
    answer.expect("the lock answered")
}

async fn pair(
    conn: &mut ChannelConn,
    link: &SimLink,
    app: &StaticKeypair,
    code: &VerificationCode,
) -> Result<client::PairedLock, PairingError> {
    pair_with(conn, link, app, PairingSecret::Owner(code.clone())).await
}

/// Owner pairing or a guest's redemption, through the lock side.
async fn pair_with(
    conn: &mut ChannelConn,
    link: &SimLink,
    app: &StaticKeypair,
    secret: PairingSecret,
) -> Result<client::PairedLock, PairingError> {
    let (p, init) = AppPairing::start(app, secret, &mut OsRng);
    let reply = exchange(conn, link, &init).await;
    let (sent, confirm) = p.on_reply(app, &reply)?;
    let done = exchange(conn, link, &confirm).await;
    sent.on_done(&done)
}

/// The owner asks for a guest code valid from now for `secs`: (slot, code).
async fn invite(
    conn: &mut ChannelConn,
    link: &SimLink,
    owner: &StaticKeypair,
    lock_public: [u8; 32],
    secs: i64,
) -> (u16, GuestPairingCode) {
    let wall = link.now().1.unwrap();
    let r = request(
        conn,
        link,
        owner,
        lock_public,
        &Request::CreateGuestKey {
            valid_from: wall,
            valid_until: WallTime(wall.0 + secs),
        },
    )
    .await
    .unwrap();
    match r {
        Response::GuestKeyCreated { slot, code, .. } => (slot, code),
        other => panic!("{other:?}"),
    }
}

async fn request(
    conn: &mut ChannelConn,
    link: &SimLink,
    app: &StaticKeypair,
    lock_public: [u8; 32],
    req: &Request,
) -> Result<Response, client::ClientError> {
    let now = link.now().0;
    let (start, init) = AppSessionStart::new(app, lock_public, &mut OsRng);
    let accept = exchange(conn, link, &init).await;
    let mut session = start.finish(app, &accept, now, DEFAULT_IDLE_TIMEOUT)?;
    let sealed = client::seal_request(&mut session, now, req)?;
    let answer = exchange(conn, link, &sealed).await;
    client::open_response(&mut session, now, &answer)
}

#[tokio::test]
async fn channel_pairs_only_in_pairing_mode_then_unlocks() {
    let link = SimLink::installed();
    let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
    let code = Arc::new(VerificationCode::generate(&mut OsRng));
    let mut conn = ChannelConn::new(lock.clone(), code.clone(), 185);
    let app = StaticKeypair::generate(&mut OsRng);

    // Outside pairing mode: refused, nothing stored.
    let err = pair(&mut conn, &link, &app, &code).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PairingModeInactive, "{err}");
    assert!(link.app_keys().is_empty());

    // In pairing mode with the wrong code: the lock's confirmation fails.
    link.hold_set();
    let wrong = VerificationCode::generate(&mut OsRng);
    assert!(pair(&mut conn, &link, &app, &wrong).await.is_err());
    assert!(link.app_keys().is_empty());
    assert!(
        link.pairing_mode(),
        "a failed attempt does not end the window"
    );

    // The right code: paired, the key stored by the engine, window closed.
    let paired = pair(&mut conn, &link, &app, &code).await.expect("pairs");
    assert_eq!(paired.lock_public, lock.public());
    let keys = link.app_keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].public_key, app.public());
    assert!(!link.pairing_mode());

    // A session with the paired key: unlock, then status.
    let r = request(&mut conn, &link, &app, paired.lock_public, &Request::Unlock)
        .await
        .expect("unlock answered");
    assert_eq!(r, Response::Ok);
    match request(&mut conn, &link, &app, paired.lock_public, &Request::Status)
        .await
        .expect("status answered")
    {
        Response::Status(s) => assert_ne!(s.lock, wire::LockState::Jammed),
        other => panic!("expected a status report, got {other:?}"),
    }

    // An unknown app key gets no session.
    let stranger = StaticKeypair::generate(&mut OsRng);
    let err = request(
        &mut conn,
        &link,
        &stranger,
        paired.lock_public,
        &Request::Unlock,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("key"), "{err}");
}

/// Issue 13 item 6: the label's code pairs the first owner only; the
/// next owner needs the code of the next generation (what system
/// information speaks), a failed confirmation is logged, and owner keys
/// are listed and revoked one by one over the channel.
#[tokio::test]
async fn channel_the_label_code_pairs_the_first_owner_only() {
    use latchd::app::pairing::CurrentCode;
    use latchd::app::response::OwnerKeyEntry;
    use latchd::daemon::pairing_code::PairingCodes;

    let link = SimLink::installed();
    let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
    let codes = PairingCodes::new(&latchd::config::Config::default(), &[7; 32]);
    let current = CurrentCode::new(codes.code(0));
    // What the daemon's engine task calls after it committed a generation.
    let mut follow = codes.follow(current.clone());
    let mut conn = ChannelConn::new(lock.clone(), current.clone(), 185);
    let first = StaticKeypair::generate(&mut OsRng);
    link.hold_set();
    let paired = pair(&mut conn, &link, &first, &codes.code(0))
        .await
        .expect("the label pairs the first owner");
    let generation = link.persisted().await.unwrap().pairing_generation;
    assert_eq!(generation, 1);
    follow(generation);

    let second = StaticKeypair::generate(&mut OsRng);
    link.hold_set();
    assert!(pair(&mut conn, &link, &second, &codes.code(0))
        .await
        .is_err());
    assert!(link.sim.lock().unwrap().all.iter().any(
        |a| matches!(a, latchd::core::Action::Log(e) if e.kind
        == latchd::core::EventKind::AppRefused {
            via: Channel::Ble,
            reason: AppRefusal::PairingFailed
        })
    ));
    pair(&mut conn, &link, &second, &codes.code(1))
        .await
        .expect("the spoken code pairs the next owner");

    let Response::OwnerKeys(keys) = request(
        &mut conn,
        &link,
        &first,
        paired.lock_public,
        &Request::ListOwnerKeys,
    )
    .await
    .expect("listed") else {
        panic!("no listing")
    };
    assert_eq!(keys.len(), 2);
    let OwnerKeyEntry { slot, .. } = keys[1].clone();
    assert_eq!(
        request(
            &mut conn,
            &link,
            &first,
            paired.lock_public,
            &Request::RevokeOwnerKey { slot },
        )
        .await
        .expect("answered"),
        Response::Ok
    );
    assert!(request(
        &mut conn,
        &link,
        &second,
        paired.lock_public,
        &Request::Unlock
    )
    .await
    .is_err());
}

#[tokio::test]
async fn channel_rejects_garbage_and_recovers() {
    let link = SimLink::installed();
    let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
    let code = Arc::new(VerificationCode::generate(&mut OsRng));
    let mut conn = ChannelConn::new(lock, code.clone(), 23);
    // A data frame with no session, and random bytes: error frames only.
    for junk in [vec![0xFFu8; 40], vec![0x00, 0x01, 0x02]] {
        let out = conn.on_write(link.as_ref(), &junk).await;
        assert!(!out.is_empty(), "an error frame is sent");
        assert!(!conn.is_open());
    }
    // The channel still works afterwards.
    link.hold_set();
    let app = StaticKeypair::generate(&mut OsRng);
    pair(&mut conn, &link, &app, &code).await.expect("pairs");
}

#[tokio::test]
async fn channel_guest_key_from_invite_to_unlock_and_nothing_else() {
    let link = SimLink::installed();
    let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
    let code = Arc::new(VerificationCode::generate(&mut OsRng));
    let mut conn = ChannelConn::new(lock.clone(), code.clone(), 185);
    let owner = StaticKeypair::generate(&mut OsRng);
    link.hold_set();
    let paired = pair(&mut conn, &link, &owner, &code).await.expect("pairs");

    // The owner invites a guest for the next two hours.
    let (slot, guest_code) = invite(&mut conn, &link, &owner, paired.lock_public, 7200).await;
    let listed = request(
        &mut conn,
        &link,
        &owner,
        paired.lock_public,
        &Request::ListGuestKeys,
    )
    .await
    .unwrap();
    assert!(
        matches!(&listed, Response::GuestKeys(g) if g.len() == 1 && g[0].slot == slot && !g[0].redeemed),
        "{listed:?}"
    );

    // A wrong guest code with the right id: refused, and it costs an attempt.
    let guest = StaticKeypair::generate(&mut OsRng);
    let mut wrong = *guest_code.to_bytes();
    wrong[14] ^= 1;
    let (p, init) = AppPairing::start(
        &guest,
        PairingSecret::Guest(GuestPairingCode::from_bytes(wrong)),
        &mut OsRng,
    );
    let reply = exchange(&mut conn, &link, &init).await;
    let confirm = p.on_reply(&guest, &reply);
    match confirm {
        Err(_) => {}
        Ok((_sent, confirm)) => {
            let done = exchange(&mut conn, &link, &confirm).await;
            assert!(latchd::app::protocol::Frame::parse(&done).is_ok());
        }
    }
    assert!(link
        .app_keys()
        .iter()
        .all(|k| k.public_key != guest.public()));
    assert_eq!(link.stored().guest_invites[0].attempts, 1);

    // The right code: the guest key is registered in the invite's slot.
    let guest_paired = pair_with(
        &mut conn,
        &link,
        &guest,
        PairingSecret::Guest(guest_code.clone()),
    )
    .await
    .expect("redeemed");
    let keys = link.app_keys();
    let key = keys
        .iter()
        .find(|k| k.public_key == guest.public())
        .unwrap();
    assert_eq!(u32::from(slot), key.id.0);

    // The guest may unlock, and nothing else.
    let r = request(
        &mut conn,
        &link,
        &guest,
        guest_paired.lock_public,
        &Request::Unlock,
    )
    .await
    .unwrap();
    assert_eq!(r, Response::Ok);
    let r = request(
        &mut conn,
        &link,
        &guest,
        guest_paired.lock_public,
        &Request::ListUsers,
    )
    .await
    .unwrap();
    assert!(
        matches!(
            r,
            Response::Error {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "{r:?}"
    );

    // The code is spent.
    let other = StaticKeypair::generate(&mut OsRng);
    let (p, init) = AppPairing::start(&other, PairingSecret::Guest(guest_code), &mut OsRng);
    let reply = exchange(&mut conn, &link, &init).await;
    assert!(
        p.on_reply(&other, &reply).is_err(),
        "a spent code is refused"
    );

    // The owner reads the log page by page, newest first: the guest's
    // unlock is there, the refused redemption too.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let r = request(
            &mut conn,
            &link,
            &owner,
            paired.lock_public,
            &Request::Events { before, limit: 2 },
        )
        .await
        .unwrap();
        let Response::Events {
            events,
            next_cursor,
        } = r
        else {
            panic!("{r:?}")
        };
        assert!(events.windows(2).all(|w| w[0].cursor > w[1].cursor));
        seen.extend(events);
        match next_cursor {
            Some(c) => before = Some(c),
            None => break,
        }
    }
    use latchd::app::wire::UnlockMethod;
    assert!(seen
        .iter()
        .any(|e| e.kind == wire::EventKind::Unlocked(UnlockMethod::Ble)));
    assert!(seen
        .iter()
        .any(|e| e.kind == wire::EventKind::VerificationFailed));

    // Revoking the guest slot ends the guest's key.
    let r = request(
        &mut conn,
        &link,
        &owner,
        paired.lock_public,
        &Request::RevokeGuestKey { slot },
    )
    .await
    .unwrap();
    assert_eq!(r, Response::Ok);
    assert!(request(
        &mut conn,
        &link,
        &guest,
        guest_paired.lock_public,
        &Request::Unlock
    )
    .await
    .is_err());
}

#[tokio::test]
async fn channel_an_open_session_dies_with_its_key() {
    let link = SimLink::installed();
    let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
    let code = Arc::new(VerificationCode::generate(&mut OsRng));
    let mut owner_conn = ChannelConn::new(lock.clone(), code.clone(), 185);
    let owner = StaticKeypair::generate(&mut OsRng);
    link.hold_set();
    let paired = pair(&mut owner_conn, &link, &owner, &code).await.unwrap();
    let (slot, gc) = invite(&mut owner_conn, &link, &owner, paired.lock_public, 3600).await;
    // The guest pairs and opens a session on its own connection.
    let mut guest_conn = ChannelConn::new(lock.clone(), code.clone(), 185);
    let guest = StaticKeypair::generate(&mut OsRng);
    pair_with(&mut guest_conn, &link, &guest, PairingSecret::Guest(gc))
        .await
        .unwrap();
    let now = link.now().0;
    let (start, init) = AppSessionStart::new(&guest, paired.lock_public, &mut OsRng);
    let accept = exchange(&mut guest_conn, &link, &init).await;
    let mut session = start
        .finish(&guest, &accept, now, DEFAULT_IDLE_TIMEOUT)
        .unwrap();
    // The owner revokes the guest while that session is open.
    let r = request(
        &mut owner_conn,
        &link,
        &owner,
        paired.lock_public,
        &Request::RevokeGuestKey { slot },
    )
    .await
    .unwrap();
    assert_eq!(r, Response::Ok);
    let sealed = client::seal_request(&mut session, now, &Request::Unlock).unwrap();
    let answer = exchange(&mut guest_conn, &link, &sealed).await;
    let err = client::open_response(&mut session, now, &answer).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("key"), "{err}");
    assert!(!guest_conn.is_open());
}

/// Feed `frame` from device `p` into the slot as `gatt.rs` does (the
/// guard's admission first, fragments at ATT MTU 23); the outcome of the
/// last fragment, the earlier ones having said nothing.
async fn to_slot(
    slot: &mut Slot<u8>,
    guard: &mut Guard<u8>,
    link: &SimLink,
    p: u8,
    frame: &[u8],
    now: Instant,
) -> SlotOutcome<u8> {
    let parts = fragment(frame, 23).unwrap();
    let n = parts.len();
    let mut last = None;
    for (i, part) in parts.into_iter().enumerate() {
        assert_eq!(guard.admit_write(p, now), Admit::Yes);
        let out = slot.on_write(link, guard, p, &part, 23, now).await;
        if i + 1 < n {
            assert!(
                out.notify.is_empty() && out.evict.is_none() && !out.refused,
                "{out:?}"
            );
        }
        last = Some(out);
    }
    last.unwrap()
}

/// Issue 14.3: the one channel slot. A stranger holding it (one byte
/// written) is displaced by a registered key's session, a guest's by an
/// owner's, an owner's by another owner session only once idle; what else
/// a second device sends is refused unread.
#[tokio::test]
async fn channel_slot_sessions_of_registered_keys_preempt_by_rank() {
    let link = SimLink::installed();
    let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
    let code = Arc::new(VerificationCode::generate(&mut OsRng));
    let owner = StaticKeypair::generate(&mut OsRng);
    let guest = StaticKeypair::generate(&mut OsRng);
    link.hold_set();
    let mut c = ChannelConn::new(lock.clone(), code.clone(), 185);
    pair(&mut c, &link, &owner, &code)
        .await
        .expect("owner pairs");
    let (_, guest_code) = invite(&mut c, &link, &owner, lock.public(), 3600).await;
    let mut g = ChannelConn::new(lock.clone(), code.clone(), 185);
    pair_with(&mut g, &link, &guest, PairingSecret::Guest(guest_code))
        .await
        .expect("guest redeems");

    let t = Instant::from_millis;
    let mut slot = Slot::<u8>::new(lock.clone(), code.clone().into());
    let mut guard = Guard::new(Limits::default(), t(0));
    // 1 squats: one byte, the slot is its.
    let out = to_slot(&mut slot, &mut guard, &link, 1, &[0x00], t(0)).await;
    assert!(out.took_slot, "{out:?}");
    assert_eq!(slot.holder(), Some(1));
    // 2, a stranger too, may not pair nor open a session of an unknown key.
    let stranger = StaticKeypair::generate(&mut OsRng);
    let (_, init) = AppPairing::start(&stranger, PairingSecret::Owner((*code).clone()), &mut OsRng);
    let out = to_slot(&mut slot, &mut guard, &link, 2, &init, t(100)).await;
    assert!(
        out.refused && out.evict.is_none() && out.notify.is_empty(),
        "{out:?}"
    );
    let (_, init) = AppSessionStart::new(&stranger, lock.public(), &mut OsRng);
    let out = to_slot(&mut slot, &mut guard, &link, 2, &init, t(200)).await;
    assert!(out.refused && out.evict.is_none(), "{out:?}");
    assert_eq!(slot.holder(), Some(1));
    // 3, the guest's phone: its session displaces the squatter.
    let (_, init) = AppSessionStart::new(&guest, lock.public(), &mut OsRng);
    let out = to_slot(&mut slot, &mut guard, &link, 3, &init, t(300)).await;
    assert_eq!(out.evict, Some(1), "{out:?}");
    assert!(!out.notify.is_empty() && !out.refused);
    assert_eq!(
        (slot.holder(), guard.standing(3)),
        (Some(3), Standing::Guest)
    );
    slot.release(1);
    guard.gone(1);
    // 4, the owner's phone: displaces the guest at once.
    let (_, init) = AppSessionStart::new(&owner, lock.public(), &mut OsRng);
    let out = to_slot(&mut slot, &mut guard, &link, 4, &init, t(400)).await;
    assert_eq!(out.evict, Some(3), "{out:?}");
    assert_eq!(
        (slot.holder(), guard.standing(4)),
        (Some(4), Standing::Owner)
    );
    slot.release(3);
    guard.gone(3);
    // 5, the owner's laptop: not while the phone's session is in use…
    let (_, init) = AppSessionStart::new(&owner, lock.public(), &mut OsRng);
    let out = to_slot(&mut slot, &mut guard, &link, 5, &init, t(1_000)).await;
    assert!(out.refused && out.evict.is_none(), "{out:?}");
    // …and a guest never.
    let (_, init) = AppSessionStart::new(&guest, lock.public(), &mut OsRng);
    let out = to_slot(&mut slot, &mut guard, &link, 6, &init, t(60_000)).await;
    assert!(out.refused && out.evict.is_none(), "{out:?}");
    // Once the phone has been idle PREEMPT_IDLE, the laptop may.
    let (_, init) = AppSessionStart::new(&owner, lock.public(), &mut OsRng);
    let out = to_slot(&mut slot, &mut guard, &link, 5, &init, t(60_000)).await;
    assert_eq!(out.evict, Some(4), "{out:?}");
    assert_eq!(slot.holder(), Some(5));
}

/// Contenders are bounded: while one holds the slot, at most
/// MAX_CONTENDERS devices may be half-way through a frame.
#[tokio::test]
async fn channel_slot_contenders_are_bounded() {
    let link = SimLink::installed();
    let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
    let code = Arc::new(VerificationCode::generate(&mut OsRng));
    let t = Instant::from_millis;
    let mut slot = Slot::<u8>::new(lock.clone(), code.into());
    let mut guard = Guard::new(Limits::default(), t(0));
    let out = slot
        .on_write(&*link, &mut guard, 0, &[0x00], 23, t(0))
        .await;
    assert!(out.took_slot);
    let stranger = StaticKeypair::generate(&mut OsRng);
    let (_, init) = AppSessionStart::new(&stranger, lock.public(), &mut OsRng);
    let first = fragment(&init, 23).unwrap().remove(0);
    for p in 1..=MAX_CONTENDERS as u8 {
        let out = slot.on_write(&*link, &mut guard, p, &first, 23, t(1)).await;
        assert!(!out.refused, "contender {p}: {out:?}");
    }
    let out = slot
        .on_write(&*link, &mut guard, 99, &first, 23, t(1))
        .await;
    assert!(out.refused, "{out:?}");
    slot.release(1);
    let out = slot
        .on_write(&*link, &mut guard, 99, &first, 23, t(2))
        .await;
    assert!(!out.refused, "a place was freed: {out:?}");
}

// ───────────────────────────── in the VM ─────────────────────────────

/// The target dir is shared: a concurrent default-feature build may replace
/// a binary at any time. Pin this build by copying it next to itself (the
/// guest sees the host's tree, not its /tmp).
pub(crate) fn pinned(built: &str, tag: &str) -> std::path::PathBuf {
    let built = std::path::Path::new(built);
    let pinned = built.with_file_name(format!(
        "{}-{tag}-{}",
        built.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    std::fs::copy(built, &pinned).expect("copy the binary");
    pinned
}

/// `cmd`'s output, run again while the kernel answers ETXTBSY. A copy just
/// made by [`pinned`] is "busy" while a child that another test thread
/// spawned during the copy still holds the copy's write descriptor (until
/// that child's exec closes it): with two VM tests at a time, one test's
/// first run of its pinned `latchctl` met the other's spawn.
fn output_once_not_busy(cmd: &mut std::process::Command) -> std::process::Output {
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.expect("run latchctl"),
        }
    }
    panic!("{cmd:?}: still ETXTBSY after 2 s");
}

/// The host half of a guest test that starts the real daemon: `latchd` and
/// `latchctl` pinned (a concurrent build cannot swap them mid-run) and
/// named in `LATCHD_BIN` / `LATCHCTL` with `extra_env`, the BLE rig with
/// `controllers` (None: two), the guest half `guest_test` of `module` run,
/// the copies removed, its output printed.
pub(crate) fn run_daemon_guest(
    module: &str,
    guest_test: &str,
    controllers: Option<u8>,
    timeout: std::time::Duration,
    extra_env: Vec<(String, String)>,
) {
    let tag = format!("vm-{guest_test}");
    let latchd = pinned(env!("CARGO_BIN_EXE_latchd"), &tag);
    let latchctl = pinned(env!("CARGO_BIN_EXE_latchctl"), &tag);
    let mut env = vec![
        ("LATCHD_BIN".into(), latchd.display().to_string()),
        ("LATCHCTL".into(), latchctl.display().to_string()),
    ];
    env.extend(extra_env);
    let opts = vm::VmOptions {
        ble: true,
        ble_controllers: controllers,
        timeout: Some(timeout),
        env,
        ..Default::default()
    };
    let result = vm::run_test_in_guest(&opts, module, guest_test);
    let _ = std::fs::remove_file(&latchd);
    let _ = std::fs::remove_file(&latchctl);
    eprintln!("{}", result.unwrap().stdout);
}

/// Run a guest test's async body on a small runtime.
#[cfg(feature = "board-linux")]
pub(crate) fn block_on(body: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(body);
}

#[test]
fn ble_end_to_end_in_vm() {
    if !vm::enabled_or_skip("ble_end_to_end_in_vm") {
        return;
    }
    let pinned = pinned(env!("CARGO_BIN_EXE_latchctl"), "vm-ble");
    let probe = output_once_not_busy(std::process::Command::new(&pinned).args([
        "ble",
        "--adapter",
        "none",
        "scan",
        "--seconds",
        "0",
    ]));
    assert!(
        !String::from_utf8_lossy(&probe.stderr).contains("without Bluetooth support"),
        "target/debug/latchctl was rebuilt without board-linux by a concurrent build; run again"
    );
    let opts = vm::VmOptions {
        ble: true,
        timeout: Some(std::time::Duration::from_secs(400)),
        env: vec![("LATCHCTL".into(), pinned.display().to_string())],
        ..Default::default()
    };
    let result = vm::run_test_in_guest(&opts, module_path!(), "guest_ble_end_to_end");
    let _ = std::fs::remove_file(&pinned);
    eprintln!("{}", result.unwrap().stdout);
}

#[cfg(feature = "board-linux")]
#[test]
fn guest_ble_end_to_end() {
    if !vm::in_guest_or_skip("guest_ble_end_to_end") {
        return;
    }
    block_on(guest::run());
}

#[cfg(feature = "board-linux")]
mod guest {
    use std::time::{Duration, Instant as StdInstant};

    use latchd::ble::gatt::{self, GattConfig, GattDeps};
    use latchd::ble::gatt_client::{self, GattClientError, LockClient};
    use latchd::ble::improv::DeviceInfo;
    use latchd::daemon::status::ble_state;
    use latchd::link::{BleHealth, HealthBoard};

    use super::*;

    pub async fn run() {
        let link = SimLink::installed();
        let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
        let code = Arc::new(VerificationCode::generate(&mut OsRng));
        let deps = GattDeps {
            link: link.clone(),
            wifi: Arc::new(latchd::wifi::NoWifi),
            lock_key: lock.clone(),
            code: code.clone().into(),
            health: HealthBoard::new(),
            device_info: DeviceInfo {
                firmware: "latchd".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                hardware: "vm".into(),
                device_name: "latchd-0001".into(),
            },
        };
        let config = GattConfig {
            adapter: Some("hci0".into()),
            local_name: gatt::local_name("LD-0001"),
        };
        let t0 = StdInstant::now();
        let _handles = gatt::serve_once(&config, &deps)
            .await
            .expect("GATT application registered on hci0");
        println!("registered in {:?}", t0.elapsed());
        // Issue 22: the service reports itself registered, no app yet.
        let registered = |app_connected| BleHealth::Registered { app_connected };
        assert_eq!(deps.health.get().ble, registered(false));
        assert_eq!(ble_state(&deps.health.get().ble, false), "advertising");

        let session = bluer::Session::new().await.unwrap();
        let central = session.adapter("hci1").unwrap();
        let t1 = StdInstant::now();
        // The scan returns at the first lock; the window only turns a hang
        // into a failure (advertising in a TCG VM on a loaded host is slow).
        let found = gatt_client::scan(&central, Duration::from_secs(90), true)
            .await
            .unwrap();
        let lock_dev = found.first().expect("the lock is discovered from hci1");
        assert_eq!(lock_dev.name.as_deref(), Some("latchd-0001"));
        println!("discovered {:?} in {:?}", lock_dev, t1.elapsed());

        let t2 = StdInstant::now();
        let mut c = LockClient::connect(&central, lock_dev.address)
            .await
            .expect("connect and discover the services");
        println!("connected + services in {:?}", t2.elapsed());

        let app = StaticKeypair::generate(&mut OsRng);
        // Improv and pairing are refused outside pairing mode.
        let e = c.improv_wifi(b"home", b"password123").await.unwrap_err();
        assert!(matches!(e, GattClientError::ImprovNotAuthorized), "{e}");
        let e = c.pair(&app, (*code).clone()).await.unwrap_err();
        assert!(
            matches!(&e, GattClientError::Pairing(p) if p.code() == ErrorCode::PairingModeInactive),
            "{e}"
        );

        let e = c.improv_scan().await.unwrap_err();
        assert!(matches!(e, GattClientError::ImprovNotAuthorized), "{e}");
        // Identify needs no authorisation (Improv): the lock says so.
        c.improv_identify().await.expect("identify");
        // The write may return before the lock ran it: wait for the prompt
        // in the engine's whole history.
        let heard = || {
            link.sim.lock().unwrap().all.iter().any(|a| {
                matches!(
                    a,
                    latchd::core::Action::Prompt(latchd::core::Prompt::Identify, _)
                )
            })
        };
        let deadline = StdInstant::now() + Duration::from_secs(10);
        while !heard() {
            assert!(
                StdInstant::now() < deadline,
                "the engine never heard the identify request"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // SET held: Improv is authorised; with no Wi-Fi backend the lock
        // reports "unable to connect" (0x03), and a scan "unknown" (0xFF).
        link.hold_set();
        let e = c.improv_wifi(b"home", b"password123").await.unwrap_err();
        assert!(matches!(e, GattClientError::ImprovFailed(0x03)), "{e}");
        let e = c.improv_scan().await.unwrap_err();
        assert!(matches!(e, GattClientError::ImprovScanFailed(0xff)), "{e}");

        let t3 = StdInstant::now();
        let paired = c.pair(&app, (*code).clone()).await.expect("pairs");
        println!("paired in {:?}", t3.elapsed());
        assert_eq!(paired.lock_public, lock.public());
        // Issue 22: the app holds the channel, and the service says so.
        assert_eq!(deps.health.get().ble, registered(true));
        assert_eq!(ble_state(&deps.health.get().ble, true), "connected");

        let t4 = StdInstant::now();
        let r = c
            .request(&app, paired.lock_public, &Request::Unlock)
            .await
            .expect("unlock");
        println!(
            "unlock round trip (session + request) in {:?}",
            t4.elapsed()
        );
        assert_eq!(r, Response::Ok);
        match c
            .request(&app, paired.lock_public, &Request::Status)
            .await
            .expect("status")
        {
            Response::Status(_) => {}
            other => panic!("expected status, got {other:?}"),
        }
        drop(c);

        // The same through `latchctl ble` (a separate process, its own
        // BlueZ client), pairing a second owner key in a new window.
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("ble-key.json");
        let latchctl = |args: &[&str]| {
            let exe = std::env::var("LATCHCTL")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_latchctl").to_owned());
            let mut cmd = tokio::process::Command::new(exe);
            cmd.args(["ble", "--adapter", "hci1", "--key-file"])
                .arg(&key_file)
                .args(args);
            let label = args.join(" ");
            async move {
                let out = cmd.output().await.expect("run latchctl");
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                println!("latchctl ble {label}: {text}");
                (out.status.code(), text)
            }
        };
        let display = code.display();
        let (status, text) = latchctl(&["pair", "--code", display.as_str()]).await;
        assert_eq!(status, Some(1), "outside pairing mode: {text}");
        assert!(text.contains("pairing mode"), "{text}");
        link.hold_set();
        let (status, text) = latchctl(&["pair", "--code", display.as_str()]).await;
        assert_eq!(status, Some(0), "{text}");
        assert_eq!(link.app_keys().len(), 2);
        let (status, text) = latchctl(&["unlock"]).await;
        assert_eq!((status, text.trim()), (Some(0), "ok"));
        let (status, text) = latchctl(&["status"]).await;
        assert_eq!(status, Some(0), "{text}");
        assert!(text.starts_with("lock "), "{text}");
        // Issue 17 item 2: schedules over BLE with the subcommands
        // `latchctl remote` shares: set, read back, clear (a holiday: one
        // on administrator 1 would shut this owner key out of hours).
        let (status, text) = latchctl(&[
            "holiday", "--index", "1", "--from", "100", "--to", "200", "--mode", "vacation",
        ])
        .await;
        assert_eq!((status, text.trim()), (Some(0), "ok"));
        let (status, text) = latchctl(&["schedules"]).await;
        assert_eq!(status, Some(0), "{text}");
        assert!(text.contains("holiday  1  vacation  100..200"), "{text}");
        let (status, text) = latchctl(&["clear-schedules", "--kind", "holiday"]).await;
        assert_eq!((status, text.trim()), (Some(0), "ok"));
    }
}

// ──────────────── a squatter on the one channel slot ────────────────

/// Issue 14.3 in the VM: three controllers on one air — the lock's GATT
/// application on hci0, a squatter on hci1 (connects, writes one byte,
/// stays), the owner's `latchctl ble` on hci2.
#[test]
fn ble_squatter_in_vm() {
    if !vm::enabled_or_skip("ble_squatter_in_vm") {
        return;
    }
    let pinned = pinned(env!("CARGO_BIN_EXE_latchctl"), "vm-ble-squat");
    let opts = vm::VmOptions {
        ble: true,
        ble_controllers: Some(3),
        timeout: Some(std::time::Duration::from_secs(400)),
        env: vec![("LATCHCTL".into(), pinned.display().to_string())],
        ..Default::default()
    };
    let result = vm::run_test_in_guest(&opts, module_path!(), "guest_ble_squatter");
    let _ = std::fs::remove_file(&pinned);
    eprintln!("{}", result.unwrap().stdout);
}

#[cfg(feature = "board-linux")]
#[test]
fn guest_ble_squatter() {
    if !vm::in_guest_or_skip("guest_ble_squatter") {
        return;
    }
    block_on(squatter::run());
}

#[cfg(feature = "board-linux")]
mod squatter {
    use std::time::{Duration, Instant as StdInstant};

    use latchd::ble::gatt::{self, GattConfig, GattDeps, CHANNEL_RX_UUID, CHANNEL_SERVICE_UUID};
    use latchd::ble::gatt_client;
    use latchd::ble::guard::{TICK, UNAUTH_GRACE};
    use latchd::ble::improv::DeviceInfo;
    use latchd::link::HealthBoard;

    use super::*;

    /// Only turns a hang into a failure; the figures are printed.
    const HANG: Duration = Duration::from_secs(120);

    /// Connect from `central`, write one byte to the channel, stay.
    async fn squat(central: &bluer::Adapter, lock: bluer::Address) -> bluer::Device {
        // bluetoothd forgets an unconnected device ~30 s after the scan.
        gatt_client::see_again(central, lock, HANG)
            .await
            .expect("the squatter sees the lock again");
        let dev = central.device(lock).unwrap();
        if !dev.is_connected().await.unwrap() && dev.connect().await.is_err() {
            dev.connect().await.expect("the squatter connects");
        }
        for service in dev.services().await.unwrap() {
            if service.uuid().await.unwrap() != CHANNEL_SERVICE_UUID {
                continue;
            }
            for c in service.characteristics().await.unwrap() {
                if c.uuid().await.unwrap() == CHANNEL_RX_UUID {
                    c.write(&[0x00]).await.expect("the lock takes one byte");
                    return dev;
                }
            }
        }
        panic!("no latchd channel on the lock");
    }

    async fn wait_disconnected(dev: &bluer::Device, what: &str) -> Duration {
        let t = StdInstant::now();
        while dev.is_connected().await.unwrap_or(false) {
            assert!(t.elapsed() < HANG, "{what}: still connected after {HANG:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        t.elapsed()
    }

    pub async fn run() {
        // The lock side's log (evictions, pre-emption) in the test output.
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stdout)
            .with_ansi(false)
            .with_env_filter("latchd=info")
            .try_init();
        let link = SimLink::installed();
        let lock = Arc::new(StaticKeypair::generate(&mut OsRng));
        let code = Arc::new(VerificationCode::generate(&mut OsRng));
        let deps = GattDeps {
            link: link.clone(),
            wifi: Arc::new(latchd::wifi::NoWifi),
            lock_key: lock.clone(),
            code: code.clone().into(),
            health: HealthBoard::new(),
            device_info: DeviceInfo {
                firmware: "latchd".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                hardware: "vm".into(),
                device_name: "latchd-0001".into(),
            },
        };
        let config = GattConfig {
            adapter: Some("hci0".into()),
            local_name: gatt::local_name("LD-0001"),
        };
        let _handles = gatt::serve_once(&config, &deps)
            .await
            .expect("GATT application registered on hci0");

        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("owner-key.json");
        let latchctl = |args: &[&str]| {
            let exe = std::env::var("LATCHCTL")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_latchctl").to_owned());
            let mut cmd = tokio::process::Command::new(exe);
            cmd.args(["ble", "--adapter", "hci2", "--key-file"])
                .arg(&key_file)
                .args(args);
            let label = args.join(" ");
            async move {
                let out = cmd.output().await.expect("run latchctl");
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                println!("latchctl ble {label}: {text}");
                (out.status.code(), text)
            }
        };
        let session = bluer::Session::new().await.unwrap();
        // bluetoothd on each central has to have seen the lock advertise
        // (it forgets unconnected devices after a while: scan again later).
        let discover = |name: &'static str| {
            let adapter = session.adapter(name).unwrap();
            async move {
                let t = StdInstant::now();
                // A real controller (and btvirt ≥ 5.80: tests/vm/btvirt.sh)
                // advertises every interval: seen in ~1.3 s.
                let found = gatt_client::scan(&adapter, Duration::from_secs(45), true)
                    .await
                    .unwrap();
                let lock = found
                    .first()
                    .unwrap_or_else(|| panic!("the lock is not discovered from {name}"))
                    .address;
                println!("{name} discovered the lock in {:?}", t.elapsed());
                (adapter, lock)
            }
        };
        // Both centrals see the lock advertise while nobody is connected.
        let (owner_central, lock_addr) = discover("hci2").await;
        let (central, _) = discover("hci1").await;
        // The owner pairs from hci2 (SET held), before anyone squats.
        let addr = lock_addr.to_string();
        link.hold_set();
        let display = code.display();
        let (status, text) = latchctl(&[
            "--address",
            addr.as_str(),
            "pair",
            "--code",
            display.as_str(),
        ])
        .await;
        assert_eq!(status, Some(0), "{text}");
        // BlueZ keeps the owner's idle link a while: end it.
        let _ = owner_central.device(lock_addr).unwrap().disconnect().await;

        // 1. Nobody else wants the lock: the squatter is cut off by the
        //    sentry after the grace, without writing anything more.
        let dev = squat(&central, lock_addr).await;
        let held = wait_disconnected(&dev, "a squatter nobody contends with").await;
        println!(
            "squatter disconnected by the lock {held:?} after its one-byte write \
             (grace {UNAUTH_GRACE:?}, tick {TICK:?})"
        );

        // 2. It squats again; the owner's unlock from the other controller
        //    takes the slot from it.
        let dev = squat(&central, lock_addr).await;
        let t = StdInstant::now();
        let (status, text) = latchctl(&["--address", addr.as_str(), "unlock"]).await;
        let took = t.elapsed();
        assert_eq!((status, text.trim()), (Some(0), "ok"), "{text}");
        println!("owner's `latchctl ble unlock` with a squatter connected: {took:?}");
        assert!(took < HANG, "{took:?}");
        wait_disconnected(&dev, "the squatter after the owner's unlock").await;
        let unlocked = link.sim.lock().unwrap().all.iter().any(|a| {
            matches!(a, latchd::core::Action::Log(e) if matches!(e.kind, latchd::core::event::EventKind::Unlocked { .. }))
        });
        assert!(unlocked, "the engine logged the owner's unlock");
    }
}

// ──────────────────── the real daemon, in the VM ────────────────────

#[test]
fn daemon_ble_end_to_end_in_vm() {
    if !vm::enabled_or_skip("daemon_ble_end_to_end_in_vm") {
        return;
    }
    run_daemon_guest(
        module_path!(),
        "guest_daemon_ble_end_to_end",
        None,
        std::time::Duration::from_secs(480),
        vec![],
    );
}

#[cfg(feature = "board-linux")]
#[test]
fn guest_daemon_ble_end_to_end() {
    if !vm::in_guest_or_skip("guest_daemon_ble_end_to_end") {
        return;
    }
    block_on(guest_daemon::run());
}

#[cfg(feature = "board-linux")]
use crate::daemon_common;

#[cfg(feature = "board-linux")]
#[path = "../it/common/wpa_double.rs"]
mod wpa_double;

#[cfg(feature = "board-linux")]
pub(crate) mod guest_daemon {
    use std::time::{Duration, Instant as StdInstant};

    use latchd::app::client::PairingSecret;
    use latchd::app::wire::UnlockMethod;
    use latchd::ble::gatt_client::{self, GattClientError, LockClient};
    use serde_json::json;

    use super::daemon_common::{first_start, Daemon};
    use super::wpa_double::{self, GOOD_PSK, RSSI_DBM};
    use super::*;

    pub(super) const SERIAL: &str = "LD-00BE";

    pub(crate) async fn find_lock(central: &bluer::Adapter, d: &Daemon) -> gatt_client::Found {
        // bluetoothd may take a moment to (re)register the application and
        // a scan can end early (the adapter resetting); keep scanning. The
        // deadline only turns a hang into a failure with the daemon's log.
        let deadline = StdInstant::now() + Duration::from_secs(120);
        while StdInstant::now() < deadline {
            match gatt_client::scan(central, Duration::from_secs(10), true).await {
                Ok(found) => {
                    if let Some(f) = found
                        .into_iter()
                        .find(|f| f.name.as_deref() == Some("latchd-00BE"))
                    {
                        return f;
                    }
                }
                Err(e) => println!("scan: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("latchd-00BE is not advertising\n{}", d.log_text());
    }

    /// The running bluetoothd processes: pid and command line.
    fn bluetoothds() -> Vec<(i32, Vec<String>)> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if comm.trim() == "bluetoothd" {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let argv = cmdline
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                found.push((pid, argv));
            }
        }
        found
    }

    /// The pid of the one bluetoothd running now, if there is exactly one.
    pub(crate) fn bluetoothd_pid() -> Option<i32> {
        match bluetoothds()[..] {
            [(pid, _)] => Some(pid),
            _ => None,
        }
    }

    fn signal(pid: i32, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
    }

    /// Stop bluetoothd and start it again with the same command line (the
    /// rig's: the lock's BlueZ config with `-f`; a bare restart would bring
    /// BlueZ's defaults back, EATT included). SIGTERM is a clean stop: the
    /// rig's supervisor (guest-setup.sh) lets it go, as systemd would.
    fn restart_bluetoothd() {
        let mut argv: Vec<String> = Vec::new();
        for (pid, cmdline) in bluetoothds() {
            argv = cmdline;
            signal(pid, nix::sys::signal::Signal::SIGTERM);
        }
        assert!(
            argv.iter().any(|a| a == "-f"),
            "bluetoothd was not running with the lock's config: {argv:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
        // `setsid -f` forks: bluetoothd outlives the call, as at boot.
        let started = std::process::Command::new("setsid")
            .arg("-f")
            .args(&argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("bluetoothd starts again");
        assert!(started.success());
    }

    /// Crash bluetoothd (SIGSEGV, as a bug in it would) and wait until the
    /// rig has started it again — guest-setup.sh does what the lock's
    /// drop-in has systemd do (`Restart=on-failure`, `RestartSec=2`).
    pub(crate) fn crash_bluetoothd() {
        let old = bluetoothd_pid().expect("one bluetoothd before the crash");
        signal(old, nix::sys::signal::Signal::SIGSEGV);
        let deadline = StdInstant::now() + Duration::from_secs(30);
        while bluetoothd_pid().is_none_or(|pid| pid == old) {
            assert!(
                StdInstant::now() < deadline,
                "bluetoothd did not come back after the crash: {:?}",
                bluetoothds()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The real `latchd` (sim board, `[ble]` on hci0, wpa_supplicant
    /// backend on the guest's system bus for `wifi_iface`), past its first
    /// start.
    pub(crate) fn start_daemon(
        dir: &std::path::Path,
        wifi_iface: &str,
    ) -> (Daemon, VerificationCode) {
        start_daemon_with(dir, wifi_iface, "")
    }

    /// [`start_daemon`] with `extra` (whole TOML tables, e.g. `[remote]`)
    /// appended to its configuration file, which stays mode 0600.
    pub(crate) fn start_daemon_with(
        dir: &std::path::Path,
        wifi_iface: &str,
        extra: &str,
    ) -> (Daemon, VerificationCode) {
        let wifi = format!(
            "backend = \"wpa_supplicant\"\ninterface = \"{wifi_iface}\"\nconnect_timeout_secs = 20\n"
        );
        start_daemon_wifi(dir, &wifi, extra)
    }

    /// [`start_daemon_with`] with `wifi` as the body of its `[wifi]` table
    /// (backend, interface, timeout).
    pub(crate) fn start_daemon_wifi(
        dir: &std::path::Path,
        wifi: &str,
        extra: &str,
    ) -> (Daemon, VerificationCode) {
        let code = VerificationCode::generate(&mut OsRng);
        let state = dir.join("state");
        let config = dir.join("latchd.toml");
        std::fs::write(
            &config,
            format!(
                "board = \"sim\"\n\
                 [lock]\nserial = \"{SERIAL}\"\nverification_code = \"{}\"\n\
                 trust_system_clock = true\ntimedate_bus = \"off\"\n\
                 [sim]\nmotor_travel_ms = 100\n\
                 [ble]\nenabled = true\nadapter = \"hci0\"\n\
                 [wifi]\n{wifi}\
                 {extra}",
                code.display().as_str()
            ),
        )
        .unwrap();
        // It holds the verification code: latchd refuses it unless 0600.
        std::fs::set_permissions(
            &config,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .unwrap();
        let exe =
            std::env::var("LATCHD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_latchd").to_owned());
        let d = Daemon::start_exe(
            std::path::Path::new(&exe),
            &state,
            &["--config", config.to_str().unwrap()],
        );
        first_start(&d);
        (d, code)
    }

    pub async fn run() {
        // The network service the lock joins Wi-Fi through.
        let (_wpa, wpa_log) =
            wpa_double::serve_wpa_on(zbus::connection::Builder::system().unwrap()).await;
        let dir = tempfile::tempdir().unwrap();
        let (d, code) = start_daemon(dir.path(), "wlan0");

        let session = bluer::Session::new().await.unwrap();
        let central = session.adapter("hci1").unwrap();
        let t0 = StdInstant::now();
        let lock_dev = find_lock(&central, &d).await;
        println!("daemon's GATT application found in {:?}", t0.elapsed());
        let mut c = LockClient::connect(&central, lock_dev.address)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", d.log_text()));

        // Outside pairing mode nobody may provision or pair.
        let owner = StaticKeypair::generate(&mut OsRng);
        let e = c
            .improv_wifi(b"home", GOOD_PSK.as_bytes())
            .await
            .unwrap_err();
        assert!(matches!(e, GattClientError::ImprovNotAuthorized), "{e}");
        let e = c.improv_scan().await.unwrap_err();
        assert!(matches!(e, GattClientError::ImprovNotAuthorized), "{e}");
        assert!(wpa_log.lock().unwrap().scans.is_empty());
        // The installer asks which lock this is: it tells them (twice in a
        // row is once: a stranger cannot make it talk on demand).
        c.improv_identify().await.expect("identify");
        c.improv_identify().await.expect("identify again");
        let said = || -> Vec<String> {
            d.settle();
            d.last_prompts(5)
                .into_iter()
                .filter(|p| p.contains("setting up"))
                .collect()
        };
        let deadline = StdInstant::now() + Duration::from_secs(10);
        while said().is_empty() {
            assert!(StdInstant::now() < deadline, "{}", d.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Give the second write time to arrive (it falls within
        // IDENTIFY_GAP whenever it does; a late one only weakens the check).
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(said().len(), 1, "{:?}", said());
        let e = c.pair(&owner, code.clone()).await.unwrap_err();
        assert!(
            matches!(&e, GattClientError::Pairing(p) if p.code() == ErrorCode::PairingModeInactive),
            "{e}"
        );
        assert_eq!(d.status()["engine"]["pairing_mode"], json!(false));

        // SET held (B-5.1): Improv joins Wi-Fi through wpa_supplicant's API,
        // then the owner's app pairs with the label's code.
        d.ok(json!({"cmd": "set", "long": true}));
        assert_eq!(d.status()["engine"]["pairing_mode"], json!(true));
        // The installer picks the network from what the lock hears,
        // through wpa_supplicant's scan (the double's airwaves).
        let t_scan = StdInstant::now();
        let heard: Vec<(Vec<u8>, i8, bool)> = c
            .improv_scan()
            .await
            .unwrap_or_else(|e| panic!("improv scan: {e}\n{}", d.log_text()))
            .into_iter()
            .map(|n| (n.ssid, n.rssi_dbm, n.auth_required))
            .collect();
        println!("Improv scan answered in {:?}", t_scan.elapsed());
        assert_eq!(
            heard,
            vec![
                (b"home".to_vec(), -44, true),
                (b"owe-net".to_vec(), -66, false),
                (b"cafe".to_vec(), -70, false),
                (b"attic".to_vec(), -85, true),
            ]
        );
        assert_eq!(wpa_log.lock().unwrap().scans, vec!["active".to_owned()]);
        c.improv_wifi(b"home", GOOD_PSK.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("improv: {e}\n{}", d.log_text()));
        assert_eq!(wpa_log.lock().unwrap().networks.len(), 1);
        let paired = c
            .pair(&owner, code.clone())
            .await
            .unwrap_or_else(|e| panic!("pair: {e}\n{}", d.log_text()));

        assert_eq!(d.status()["engine"]["ble_connected"], json!(true));
        // The status report carries the Wi-Fi link the join reported.
        match c
            .request(&owner, paired.lock_public, &Request::Status)
            .await
            .unwrap()
        {
            Response::Status(s) => {
                assert!(s.wifi.connected, "{s:?}");
                assert_eq!(s.wifi.rssi_dbm, Some(RSSI_DBM as i8));
            }
            other => panic!("{other:?}"),
        }
        let r = c
            .request(&owner, paired.lock_public, &Request::Unlock)
            .await
            .unwrap();
        assert_eq!(r, Response::Ok);
        d.settle();
        assert_eq!(d.status()["engine"]["lock"], json!("unlocked"));
        let r = c
            .request(
                &owner,
                paired.lock_public,
                &Request::Events {
                    before: None,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        let Response::Events { events, .. } = r else {
            panic!("{r:?}")
        };
        assert!(
            events
                .iter()
                .any(|e| e.kind == wire::EventKind::Unlocked(UnlockMethod::Ble)),
            "{events:?}"
        );

        // A guest key: the owner's app makes a code, the guest's app
        // redeems it over the air and may unlock, nothing else.
        let now = WallTime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
        );
        let r = c
            .request(
                &owner,
                paired.lock_public,
                &Request::CreateGuestKey {
                    valid_from: WallTime(now.0 - 60),
                    valid_until: WallTime(now.0 + 3600),
                },
            )
            .await
            .unwrap();
        let Response::GuestKeyCreated {
            code: guest_code, ..
        } = r
        else {
            panic!("{r:?}")
        };
        let guest = StaticKeypair::generate(&mut OsRng);
        let g = c
            .pair_with(&guest, PairingSecret::Guest(guest_code))
            .await
            .unwrap_or_else(|e| panic!("guest redemption: {e}\n{}", d.log_text()));
        let r = c
            .request(&guest, g.lock_public, &Request::ListUsers)
            .await
            .unwrap();
        assert!(
            matches!(
                r,
                Response::Error {
                    code: ErrorCode::Forbidden,
                    ..
                }
            ),
            "{r:?}"
        );
        // A second guest, the way a guest's laptop would: `latchctl ble
        // redeem` with a code the owner's app made, then unlock; the owner
        // reads the guest's unlock with `latchctl`'s request path too.
        let r = c
            .request(
                &owner,
                paired.lock_public,
                &Request::CreateGuestKey {
                    valid_from: WallTime(now.0 - 60),
                    valid_until: WallTime(now.0 + 3600),
                },
            )
            .await
            .unwrap();
        let Response::GuestKeyCreated { code: second, .. } = r else {
            panic!("{r:?}")
        };
        c.disconnect().await;
        // The engine hears that the app left (B-9.1 status).
        let deadline = StdInstant::now() + Duration::from_secs(30);
        while d.status()["engine"]["ble_connected"] != json!(false) {
            assert!(StdInstant::now() < deadline, "{}", d.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let key_file = dir.path().join("guest-key.json");
        let latchctl = |args: &[&str]| {
            let exe = std::env::var("LATCHCTL")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_latchctl").to_owned());
            let out = std::process::Command::new(exe)
                .args(["ble", "--adapter", "hci1", "--key-file"])
                .arg(&key_file)
                .args(args)
                .output()
                .expect("run latchctl");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            println!("latchctl ble {}: {text}", args.join(" "));
            (out.status.code(), text)
        };
        // The owner's pairing ended pairing mode: no scan without SET.
        let (status, text) = latchctl(&["wifi-scan"]);
        assert_eq!(status, Some(1), "{text}");
        assert!(text.contains("hold SET"), "{text}");
        d.ok(json!({"cmd": "set", "long": true}));
        let (status, text) = latchctl(&["wifi-scan"]);
        assert_eq!(status, Some(0), "{text}");
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            vec![
                vec!["home", "-44", "dBm", "password"],
                vec!["owe-net", "-66", "dBm", "open"],
                vec!["cafe", "-70", "dBm", "open"],
                vec!["attic", "-85", "dBm", "password"],
            ],
            "{text}"
        );
        assert_eq!(wpa_log.lock().unwrap().scans.len(), 2);
        let display = second.display();
        let (status, text) = latchctl(&["redeem", "--code", display.as_str()]);
        assert_eq!(status, Some(0), "{text}");
        let (status, text) = latchctl(&["lock"]);
        assert_eq!((status, text.trim()), (Some(0), "ok"));
        let (status, text) = latchctl(&["events"]);
        assert_eq!(status, Some(1), "a guest may not read the log: {text}");
        assert!(text.contains("Forbidden"), "{text}");
        let (status, text) = latchctl(&["redeem", "--code", display.as_str()]);
        assert_eq!(status, Some(1), "a spent code: {text}");

        // bluetoothd restarts: the daemon registers again by itself.
        restart_bluetoothd();
        let t1 = StdInstant::now();
        let (_session, central) = central_after_restart().await;
        let mut lock_dev = find_lock(&central, &d).await;
        println!(
            "registered again {:?} after bluetoothd restarted",
            t1.elapsed()
        );
        // The restarted bluetoothd is also the central's: it reloads the
        // attribute table it cached on disk for the lock, and in about
        // one run of three a handle in it no longer matches the lock's
        // new registration ("write not permitted" / "not supported").
        // A phone would refresh its cache: forget the device once the
        // failed link is down, discover and connect again (at most 3
        // times; every failure is printed).
        let mut attempt = 1;
        let r = loop {
            let tried = async {
                let mut c = LockClient::connect(&central, lock_dev.address).await?;
                c.request(&owner, paired.lock_public, &Request::Unlock)
                    .await
            }
            .await;
            match tried {
                Ok(r) => break r,
                Err(e) if attempt < 3 => {
                    println!(
                        "attempt {attempt} after the restart failed: {e}; refreshing the cache"
                    );
                    if let Ok(dev) = central.device(lock_dev.address) {
                        let _ = dev.disconnect().await;
                        let t = StdInstant::now();
                        while dev.is_connected().await.unwrap_or(false)
                            && t.elapsed() < Duration::from_secs(30)
                        {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    let _ = central.remove_device(lock_dev.address).await;
                    lock_dev = find_lock(&central, &d).await;
                    attempt += 1;
                }
                Err(e) => panic!("unlock after restart: {e}\n{}", d.log_text()),
            }
        };
        println!("unlocked after the restart in {attempt} attempt(s)");
        assert_eq!(r, Response::Ok);
        assert!(
            d.log_text().contains("registering again"),
            "{}",
            d.log_text()
        );
        let status = d.sigterm();
        assert!(status.success(), "{status}");
    }

    /// A fresh BlueZ session on hci1 once the new bluetoothd has it back
    /// (the session is returned too: it must outlive the adapter's use).
    async fn central_after_restart() -> (bluer::Session, bluer::Adapter) {
        for _ in 0..50 {
            if let Ok(session) = bluer::Session::new().await {
                if let Ok(a) = session.adapter("hci1") {
                    if a.set_powered(true).await.is_ok() {
                        return (session, a);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("hci1 did not come back after bluetoothd restarted");
    }
}

// ──────────── Home Assistant's Improv client against the real daemon ────────────

/// The venv with `py-improv-ble-client` and `bleak` (built once by
/// `tests/vm/improv-venv.sh`, cached in the rig cache the guest sees).
fn improv_venv() -> std::path::PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/improv-venv.sh");
    let out = std::process::Command::new(script)
        .output()
        .expect("run tests/vm/improv-venv.sh");
    assert!(
        out.status.success(),
        "improv-venv.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn daemon_improv_client_in_vm() {
    if !vm::enabled_or_skip("daemon_improv_client_in_vm") {
        return;
    }
    let venv = improv_venv();
    run_daemon_guest(
        module_path!(),
        "guest_daemon_improv_client",
        None,
        std::time::Duration::from_secs(480),
        vec![(
            "IMPROV_PYTHON".into(),
            venv.join("bin/python").display().to_string(),
        )],
    );
}

#[cfg(feature = "board-linux")]
#[test]
fn guest_daemon_improv_client() {
    if !vm::in_guest_or_skip("guest_daemon_improv_client") {
        return;
    }
    block_on(guest_improv::run());
}

#[cfg(feature = "board-linux")]
mod guest_improv {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant as StdInstant};

    use serde_json::json;

    use super::guest_daemon::start_daemon;
    use super::wpa_double::{self, GOOD_PSK};

    /// Only turns a hung client into a failure with its output.
    const DEADLINE: Duration = Duration::from_secs(360);

    pub async fn run() {
        let (_wpa, wpa_log) =
            wpa_double::serve_wpa_on(zbus::connection::Builder::system().unwrap()).await;
        let dir = tempfile::tempdir().unwrap();
        let (d, _code) = start_daemon(dir.path(), "wlan0");

        let python = std::env::var("IMPROV_PYTHON").expect("IMPROV_PYTHON: the venv's python");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/improv_client.py");
        let stderr_path = dir.path().join("improv_client.stderr");
        let mut child = Command::new(python)
            .args([
                script,
                "--adapter",
                "hci1",
                "--name",
                "latchd-00BE",
                "--ssid",
                "home",
                "--psk",
                GOOD_PSK,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start improv_client.py");
        let mut stdin = child.stdin.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines: Vec<String> = Vec::new();
        let report = |lines: &[String]| {
            format!(
                "client said:\n{}\nclient stderr:\n{}\ndaemon:\n{}",
                lines.join("\n"),
                std::fs::read_to_string(&stderr_path).unwrap_or_default(),
                d.log_text()
            )
        };
        let deadline = StdInstant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(StdInstant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    println!("client: {line}");
                    let wait_set = line == "WAIT_SET";
                    lines.push(line);
                    if wait_set {
                        // The owner holds SET (B-5.1): pairing mode.
                        assert_eq!(d.status()["engine"]["pairing_mode"], json!(false));
                        d.ok(json!({"cmd": "set", "long": true}));
                        assert_eq!(d.status()["engine"]["pairing_mode"], json!(true));
                        writeln!(stdin, "go").unwrap();
                        stdin.flush().unwrap();
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("improv_client.py hung\n{}", report(&lines));
                }
            }
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}\n{}", report(&lines));
        let has = |want: &str| lines.iter().any(|l| l == want);
        let starts = |p: &str| lines.iter().any(|l| l.starts_with(p));
        let check = |ok: bool, what: &str| assert!(ok, "{what}\n{}", report(&lines));

        // Discovered through HA's own filter, state by state in the
        // advertisement: authorization required, authorized, provisioned
        // (and then no longer offered).
        check(
            starts("ADV AUTHORIZATION_REQUIRED 7 filter=True raw=010700000000"),
            "advertised: authorization required, capabilities 7",
        );
        check(
            starts("ADV AUTHORIZED 7 filter=True raw=020700000000"),
            "advertised: authorized once SET was held",
        );
        check(
            starts("ADV PROVISIONED 7 filter=False raw=040700000000"),
            "advertised: provisioned, and HA's filter drops it",
        );
        check(starts("AFTER filter=False"), "not offered once provisioned");
        // need_authorization: true outside pairing mode, false in it.
        let auth: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("NEED_AUTHORIZATION"))
            .collect();
        check(
            auth == ["NEED_AUTHORIZATION True", "NEED_AUTHORIZATION False"],
            "need_authorization",
        );
        check(
            has("CAPABILITIES 7"),
            "identify, device info, scan; no hostname",
        );
        check(
            has(&format!(
                "DEVICE_INFO latchd|{}|sim|latchd-00BE",
                env!("CARGO_PKG_VERSION")
            )),
            "device info",
        );
        // Identify reached the engine: the lock said so.
        check(has("IDENTIFY sent"), "identify");
        d.settle();
        check(
            d.last_prompts(20).iter().any(|p| p.contains("setting up")),
            "the lock identified itself",
        );
        // The scan: the supplicant's networks, one result of triples.
        check(
            has("SCAN home|-44|YES owe-net|-66|NO cafe|-70|NO attic|-85|YES"),
            "scan",
        );
        // Provisioning: state notifications, then the result (no URL), and
        // the network is in wpa_supplicant.
        let states: Vec<&String> = lines.iter().filter(|l| l.starts_with("STATE")).collect();
        check(
            states == ["STATE PROVISIONING", "STATE PROVISIONED"],
            "state notifications",
        );
        check(has("PROVISIONED redirect=None"), "provisioned");
        assert_eq!(wpa_log.lock().unwrap().networks.len(), 1);
        if let Some(f) = lines.iter().find(|l| l.starts_with("FIGURE")) {
            println!("{f}");
        }
        let status = d.sigterm();
        assert!(status.success(), "{status}");
    }
}
