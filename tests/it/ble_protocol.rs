//! The BLE secure channel end to end, sans-IO: the real app side
//! (`app::client`) against the real lock side (`app::protocol`,
//! `app::pairing`, `app::codec`), every frame fragmented over an ATT MTU
//! and reassembled, as the GATT glue would move it.
//!
//! Covers B-5 (pairing only in pairing mode, authenticated by the
//! verification code), B-6.6 (guest BLE keys and their window) and the
//! channel's guarantees (replay, reorder, tamper, wrong key, MITM). The
//! `fuzz_*` properties are the bounded random-input form of the cargo-fuzz
//! targets in `fuzz/` (raise `PROPTEST_CASES` for longer runs).

use std::time::Duration;

use latchd::app::authz::{authorize, open_request, seal_response, AuthzError, RequestError};
use latchd::app::client::{
    open_response, seal_request, AppPairing, AppSessionStart, PairingSecret,
};
use latchd::app::crypto::StaticKeypair;
use latchd::app::pairing::{
    GuestInvite, LockPairing, PairKind, PairRequest, PairingError, VerificationCode,
};
use latchd::app::protocol::{
    accept_session, fragment, ChannelError, ErrorCode, Frame, Reassembler, SecureSession,
    SessionInit, DEFAULT_IDLE_TIMEOUT, MAX_ATT_MTU, MAX_PLAINTEXT, MIN_ATT_MTU,
};
use latchd::app::request::{Setting, TempPasscodeKind};
use latchd::app::wire::Principal;
use latchd::app::{Request, Response};
use latchd::ble::improv::{self, Improv};
use latchd::core::time::{Instant, WallTime};
use latchd::core::types::limits::GUEST_CODE_ATTEMPTS;
use proptest::prelude::*;
use rand_core::OsRng;

const T0: Instant = Instant(10_000);

/// Move a frame over the "air": fragment at `mtu`, reassemble.
fn over_air(frame: &[u8], mtu: u16) -> Vec<u8> {
    let mut r = Reassembler::new(mtu).expect("valid mtu");
    let mut out = None;
    for f in fragment(frame, mtu).expect("fragments") {
        assert!(f.len() <= mtu as usize - 3, "fragment fits one ATT write");
        assert!(out.is_none(), "frame completed before its last fragment");
        out = r.push(&f).expect("in-order fragments reassemble");
    }
    out.expect("last fragment completes the frame")
}

struct Lock {
    keys: StaticKeypair,
    code: VerificationCode,
}

fn lock() -> Lock {
    Lock {
        keys: StaticKeypair::generate(&mut OsRng),
        code: VerificationCode::generate(&mut OsRng),
    }
}

/// Full owner pairing; returns the lock's public key as the app stored it.
fn pair_owner(lock: &Lock, app: &StaticKeypair, mtu: u16) -> [u8; 32] {
    let (p, init) = AppPairing::start(app, PairingSecret::Owner(lock.code.clone()), &mut OsRng);
    let req = PairRequest::parse(&over_air(&init, mtu)).expect("init parses");
    assert_eq!(req.kind, PairKind::Owner);
    let (lp, reply) =
        LockPairing::respond_owner(&req, true, &lock.code, &lock.keys, &mut OsRng).expect("reply");
    let (sent, confirm) = p.on_reply(app, &over_air(&reply, mtu)).expect("confirm");
    let (paired, done) = lp
        .finish_owner(&over_air(&confirm, mtu), T0)
        .expect("lock accepts");
    assert_eq!(paired.app_public, app.public());
    assert_eq!(paired.key_id, app.key_id());
    let stored = sent.on_done(&over_air(&done, mtu)).expect("app accepts");
    assert_eq!(stored.lock_public, lock.keys.public());
    stored.lock_public
}

fn session(
    lock: &Lock,
    app: &StaticKeypair,
    stored_app_public: &[u8; 32],
    mtu: u16,
) -> (SecureSession, SecureSession) {
    let (start, init) = AppSessionStart::new(app, lock.keys.public(), &mut OsRng);
    let init = SessionInit::parse(&over_air(&init, mtu)).expect("init parses");
    assert_eq!(init.key_id, app.key_id());
    let (lock_s, accept) = accept_session(
        &lock.keys,
        &init,
        stored_app_public,
        &mut OsRng,
        T0,
        DEFAULT_IDLE_TIMEOUT,
    )
    .expect("accept");
    let app_s = start
        .finish(app, &over_air(&accept, mtu), T0, DEFAULT_IDLE_TIMEOUT)
        .expect("app verifies the lock");
    (lock_s, app_s)
}

fn owner(app: &StaticKeypair) -> Principal {
    Principal::Owner {
        key_id: app.key_id(),
        admin_user: 1,
    }
}

#[test]
fn b_5_owner_pairs_then_runs_commands_over_a_sealed_session() {
    let lock = lock();
    let app = StaticKeypair::generate(&mut OsRng);
    pair_owner(&lock, &app, MIN_ATT_MTU);
    let (mut lock_s, mut app_s) = session(&lock, &app, &app.public(), MIN_ATT_MTU);
    let principal = owner(&app);

    let f = seal_request(&mut app_s, T0, &Request::Unlock).expect("seal");
    let req = open_request(
        &mut lock_s,
        &principal,
        over_air_now(),
        Some(WallTime(1_700_000_000)),
        &over_air(&f, 23),
    )
    .expect("owner may unlock");
    assert_eq!(req, Request::Unlock);
    let r = seal_response(&mut lock_s, T0, &Response::Ok).expect("seal");
    assert_eq!(
        open_response(&mut app_s, T0, &over_air(&r, 23)),
        Ok(Response::Ok)
    );

    // Owner-only commands work with an unknown wall clock (time sync fixes it).
    let f = seal_request(
        &mut app_s,
        T0,
        &Request::TimeSync {
            now: WallTime(1_700_000_000),
        },
    )
    .expect("seal");
    assert!(open_request(&mut lock_s, &principal, T0, None, &f).is_ok());
}

fn over_air_now() -> Instant {
    T0 + Duration::from_secs(1)
}

#[test]
fn b_5_pairing_outside_pairing_mode_is_refused() {
    let lock = lock();
    let app = StaticKeypair::generate(&mut OsRng);
    let (p, init) = AppPairing::start(&app, PairingSecret::Owner(lock.code.clone()), &mut OsRng);
    let req = PairRequest::parse(&init).expect("parses");
    let err = LockPairing::respond_owner(&req, false, &lock.code, &lock.keys, &mut OsRng)
        .expect_err("refused");
    assert_eq!(err, PairingError::PairingModeInactive);
    // The lock answers with an error frame; the app stops with its code.
    let refusal = latchd::app::protocol::error_frame(err.code());
    assert_eq!(
        p.on_reply(&app, &refusal).map(|_| ()),
        Err(PairingError::Channel(ChannelError::PeerError(
            ErrorCode::PairingModeInactive
        )))
    );
}

#[test]
fn b_5_wrong_verification_code_fails_on_both_ends() {
    let lock = lock();
    let app = StaticKeypair::generate(&mut OsRng);
    let wrong = VerificationCode::generate(&mut OsRng);
    let (p, init) = AppPairing::start(&app, PairingSecret::Owner(wrong), &mut OsRng);
    let req = PairRequest::parse(&init).expect("parses");
    let (lp, reply) =
        LockPairing::respond_owner(&req, true, &lock.code, &lock.keys, &mut OsRng).expect("reply");
    let (_sent, confirm) = p.on_reply(&app, &reply).expect("app cannot tell yet");
    assert_eq!(
        lp.finish_owner(&confirm, T0).map(|_| ()),
        Err(PairingError::ConfirmationFailed)
    );
}

/// B-5: a man in the middle without the verification code swaps in his own
/// ephemeral (and static) keys toward each side. Both ends refuse.
#[test]
fn b_5_mitm_substituting_keys_fails_on_both_ends() {
    let lock = lock();
    let app = StaticKeypair::generate(&mut OsRng);
    let mitm = StaticKeypair::generate(&mut OsRng);
    let guess = VerificationCode::generate(&mut OsRng);

    // App → MITM (posing as the lock).
    let (app_p, init_a) =
        AppPairing::start(&app, PairingSecret::Owner(lock.code.clone()), &mut OsRng);
    let req_a = PairRequest::parse(&init_a).expect("parses");
    let (mitm_as_lock, reply_m) =
        LockPairing::respond_owner(&req_a, true, &guess, &mitm, &mut OsRng).expect("reply");
    let (app_sent, confirm_a) = app_p
        .on_reply(&app, &reply_m)
        .expect("app sends its confirm");
    // The MITM cannot verify the app's confirm without the code…
    assert!(mitm_as_lock.finish_owner(&confirm_a, T0).is_err());
    // …so whatever "done" it forges, the app refuses. Try the lock's own
    // done from a parallel run and a replay of the app's confirm.
    let forged = latchd::app::protocol::error_frame(ErrorCode::Replay);
    assert!(app_sent.on_done(&forged).is_err());

    // MITM (posing as the app) → lock.
    let (mitm_p, init_m) =
        AppPairing::start(&mitm, PairingSecret::Owner(guess.clone()), &mut OsRng);
    let req_m = PairRequest::parse(&init_m).expect("parses");
    let (lock_p, reply_l) =
        LockPairing::respond_owner(&req_m, true, &lock.code, &lock.keys, &mut OsRng)
            .expect("reply");
    let (_, confirm_m) = mitm_p.on_reply(&mitm, &reply_l).expect("confirm");
    assert_eq!(
        lock_p.finish_owner(&confirm_m, T0).map(|_| ()),
        Err(PairingError::ConfirmationFailed)
    );
}

/// The subtler MITM: relay everything, but replace only the app's ephemeral
/// key in the init (keeping its static key), then relay the app's confirm.
#[test]
fn b_5_mitm_replacing_only_the_ephemeral_key_fails() {
    let lock = lock();
    let app = StaticKeypair::generate(&mut OsRng);
    let (app_p, mut init) =
        AppPairing::start(&app, PairingSecret::Owner(lock.code.clone()), &mut OsRng);
    let attacker_eph = StaticKeypair::generate(&mut OsRng).public();
    let n = init.len();
    init[n - 32..].copy_from_slice(&attacker_eph);
    let req = PairRequest::parse(&init).expect("still well-formed");
    let (lp, reply) =
        LockPairing::respond_owner(&req, true, &lock.code, &lock.keys, &mut OsRng).expect("reply");
    let (app_sent, confirm) = app_p.on_reply(&app, &reply).expect("confirm");
    assert_eq!(
        lp.finish_owner(&confirm, T0).map(|_| ()),
        Err(PairingError::ConfirmationFailed)
    );
    assert!(app_sent
        .on_done(&latchd::app::protocol::error_frame(
            ErrorCode::Unauthenticated
        ))
        .is_err());
}

#[test]
fn session_from_an_unknown_or_wrong_key_is_refused() {
    let lock = lock();
    let app = StaticKeypair::generate(&mut OsRng);
    let thief = StaticKeypair::generate(&mut OsRng);
    // The thief claims the app's key id but holds only its own secret.
    let (start, init) = AppSessionStart::new(&thief, lock.keys.public(), &mut OsRng);
    let mut init = init;
    init[12..20].copy_from_slice(&app.key_id().0);
    let parsed = SessionInit::parse(&init).expect("parses");
    let (mut lock_s, accept) = accept_session(
        &lock.keys,
        &parsed,
        &app.public(),
        &mut OsRng,
        T0,
        DEFAULT_IDLE_TIMEOUT,
    )
    .expect("lock answers");
    // The thief cannot verify the accept (keys differ)…
    assert!(start
        .finish(&thief, &accept, T0, DEFAULT_IDLE_TIMEOUT)
        .is_err());
    // …and a frame it seals with a session of its own never opens.
    let (mut thief_s, _) = {
        let other_lock = StaticKeypair::generate(&mut OsRng);
        let (st, i) = AppSessionStart::new(&thief, other_lock.public(), &mut OsRng);
        let p = SessionInit::parse(&i).expect("parses");
        let (_, acc) = accept_session(
            &other_lock,
            &p,
            &thief.public(),
            &mut OsRng,
            T0,
            DEFAULT_IDLE_TIMEOUT,
        )
        .expect("accept");
        (
            st.finish(&thief, &acc, T0, DEFAULT_IDLE_TIMEOUT)
                .expect("own session"),
            (),
        )
    };
    let f = seal_request(&mut thief_s, T0, &Request::Unlock).expect("seal");
    assert_eq!(
        open_request(&mut lock_s, &owner(&app), T0, None, &f),
        Err(RequestError::Channel(ChannelError::Unauthenticated))
    );
    assert_eq!(lock_s.recv_counter(), 0);
}

#[test]
fn b_6_6_guest_redeems_a_code_once_and_may_only_unlock_inside_its_window() {
    let lock = lock();
    let owner_app = StaticKeypair::generate(&mut OsRng);
    let guest_app = StaticKeypair::generate(&mut OsRng);
    pair_owner(&lock, &owner_app, 185);
    let (mut lock_s, mut app_s) = session(&lock, &owner_app, &owner_app.public(), 185);

    // The owner asks for a guest key; the lock makes an invite.
    let wall = WallTime(1_700_000_000);
    let (from, until) = (WallTime(1_700_000_100), WallTime(1_700_003_700));
    let f = seal_request(
        &mut app_s,
        T0,
        &Request::CreateGuestKey {
            valid_from: from,
            valid_until: until,
        },
    )
    .expect("seal");
    assert!(matches!(
        open_request(&mut lock_s, &owner(&owner_app), T0, Some(wall), &f),
        Ok(Request::CreateGuestKey { .. })
    ));
    let (mut invite, code) = GuestInvite::create(7, from, until, wall, &mut OsRng);
    let resp = Response::GuestKeyCreated {
        slot: 7,
        code: code.clone(),
        code_expires_at: invite.code_expires_at,
    };
    let r = seal_response(&mut lock_s, T0, &resp).expect("seal");
    let Ok(Response::GuestKeyCreated { code: got, .. }) = open_response(&mut app_s, T0, &r) else {
        panic!("owner app gets the guest code");
    };
    assert_eq!(got, code);

    // The guest redeems it.
    let (gp, init) = AppPairing::start(&guest_app, PairingSecret::Guest(got.clone()), &mut OsRng);
    let req = PairRequest::parse(&init).expect("parses");
    assert_eq!(req.kind, PairKind::Guest { code_id: 7 });
    let (lp, reply) =
        LockPairing::respond_guest(&req, &mut invite, Some(wall), &lock.keys, &mut OsRng)
            .expect("reply");
    let (sent, confirm) = gp.on_reply(&guest_app, &reply).expect("confirm");
    let (paired, done) = lp
        .finish_guest(&confirm, &mut invite, T0)
        .expect("redeemed");
    sent.on_done(&done).expect("guest trusts the lock");
    assert!(invite.redeemed);
    assert_eq!(paired.app_public, guest_app.public());

    // A second redemption of the same code is refused.
    let (_, init2) = AppPairing::start(&guest_app, PairingSecret::Guest(got), &mut OsRng);
    let req2 = PairRequest::parse(&init2).expect("parses");
    assert_eq!(
        LockPairing::respond_guest(&req2, &mut invite, Some(wall), &lock.keys, &mut OsRng)
            .map(|_| ()),
        Err(PairingError::CodeAlreadyRedeemed)
    );

    // The guest's session: unlock inside the window only, never status.
    let guest = Principal::Guest {
        key_id: guest_app.key_id(),
        valid_from: from,
        valid_until: until,
    };
    let (mut gl, mut ga) = session(&lock, &guest_app, &paired.app_public, 185);
    let mut try_req = |req: &Request, at: Option<WallTime>| {
        let f = seal_request(&mut ga, T0, req).expect("seal");
        open_request(&mut gl, &guest, T0, at, &f)
    };
    assert_eq!(try_req(&Request::Unlock, Some(from)), Ok(Request::Unlock));
    assert_eq!(
        try_req(&Request::Lock, Some(WallTime(until.0 - 1))),
        Ok(Request::Lock)
    );
    assert!(matches!(
        try_req(&Request::Unlock, Some(until)),
        Err(RequestError::Authz(AuthzError::Expired { .. }))
    ));
    assert!(matches!(
        try_req(&Request::Unlock, Some(WallTime(from.0 - 1))),
        Err(RequestError::Authz(AuthzError::NotYetValid { .. }))
    ));
    assert_eq!(
        try_req(&Request::Unlock, None),
        Err(RequestError::Authz(AuthzError::ClockUnknown))
    );
    assert!(matches!(
        try_req(&Request::Status, Some(from)),
        Err(RequestError::Authz(AuthzError::Forbidden(_)))
    ));
}

#[test]
fn guest_code_is_burned_after_the_attempt_limit() {
    let lock = lock();
    let wall = WallTime(1_000);
    let (mut invite, code) =
        GuestInvite::create(3, WallTime(0), WallTime(100_000), wall, &mut OsRng);
    let attacker = StaticKeypair::generate(&mut OsRng);
    for _ in 0..GUEST_CODE_ATTEMPTS {
        // A guess with the right id but a wrong secret.
        let mut bytes = *code.to_bytes();
        bytes[14] ^= 0x55;
        let guess = latchd::app::pairing::GuestPairingCode::from_bytes(bytes);
        let (p, init) = AppPairing::start(&attacker, PairingSecret::Guest(guess), &mut OsRng);
        let req = PairRequest::parse(&init).expect("parses");
        let (lp, reply) =
            LockPairing::respond_guest(&req, &mut invite, Some(wall), &lock.keys, &mut OsRng)
                .expect("reply");
        let (_, confirm) = p.on_reply(&attacker, &reply).expect("confirm");
        assert_eq!(
            lp.finish_guest(&confirm, &mut invite, T0).map(|_| ()),
            Err(PairingError::ConfirmationFailed)
        );
    }
    // Even the right code no longer works.
    let (_, init) = AppPairing::start(&attacker, PairingSecret::Guest(code), &mut OsRng);
    let req = PairRequest::parse(&init).expect("parses");
    assert_eq!(
        LockPairing::respond_guest(&req, &mut invite, Some(wall), &lock.keys, &mut OsRng)
            .map(|_| ()),
        Err(PairingError::CodeAttemptsExhausted)
    );
    assert!(!invite.redeemed);
}

#[test]
fn improv_provisioning_follows_pairing_mode() {
    let mut imp = Improv::new(improv::DeviceInfo {
        firmware: "latchd".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        hardware: "sim".into(),
        device_name: "Front door".into(),
    });
    let pkt = improv::encode_packet(improv::cmd::WIFI_SETTINGS, &[b"home", b"correct horse"]);
    assert_eq!(
        imp.on_rpc_write(&pkt),
        vec![improv::Output::Error(improv::ErrorState::NotAuthorized)]
    );
    imp.set_authorized(true);
    let out = imp.on_rpc_write(&pkt);
    assert!(out.contains(&improv::Output::State(improv::State::Provisioning)));
    let out = imp.on_connect_result(Ok(None));
    assert_eq!(out[0], improv::Output::State(improv::State::Provisioned));
    assert_eq!(imp.service_data()[0], improv::State::Provisioned as u8);
}

fn all_requests() -> Vec<Request> {
    use latchd::app::request::PasscodeDigits;
    use latchd::app::wire::Role;
    use latchd::core::time::Validity;
    let v = Validity {
        from: Some(WallTime(5)),
        until: Some(WallTime(10)),
    };
    vec![
        Request::Status,
        Request::Unlock,
        Request::Lock,
        Request::ListUsers,
        Request::AddUser {
            role: Role::User,
            validity: v,
        },
        Request::DeleteUser { user: 3 },
        Request::SetUserValidity {
            user: 2,
            validity: Validity::ALWAYS,
        },
        Request::CreatePasscode {
            digits: PasscodeDigits::new("4829173").expect("valid"),
            kind: TempPasscodeKind::Window {
                from: WallTime(1),
                until: WallTime(2),
            },
        },
        Request::SetDuressPasscode {
            user: 2,
            digits: PasscodeDigits::new("918273").expect("valid"),
        },
        Request::ListPasscodes,
        Request::RevokePasscode { id: 9 },
        Request::CreateGuestKey {
            valid_from: WallTime(0),
            valid_until: WallTime(1),
        },
        Request::ListGuestKeys,
        Request::RevokeGuestKey { slot: 4 },
        Request::ListOwnerKeys,
        Request::RevokeOwnerKey { slot: 2 },
        Request::Events {
            before: Some(77),
            limit: 32,
        },
        Request::GetSettings,
        Request::SetSetting(Setting::AutoLock(Some(30))),
        Request::SetSetting(Setting::WifiEnabled(false)),
        Request::SetSetting(Setting::DoorAjar(Some(90))),
        Request::SetSetting(Setting::DoorAjar(None)),
        Request::SetSetting(Setting::Language(latchd::core::Language::ZhTw)),
        Request::EnrolCredential {
            user: 3,
            method: latchd::app::request::CredentialMethod::Fingerprint,
        },
        Request::DeleteCredential {
            user: 3,
            method: latchd::app::request::CredentialMethod::Face,
        },
        Request::ReleaseLockout,
        Request::SetAway(true),
        Request::TimeSync { now: WallTime(-1) },
        Request::StartUpdate {
            url: "https://updates.example.net/lock-0.2.0.raucb".into(),
            allow_older: true,
        },
    ]
}

#[test]
fn every_request_round_trips_and_fits_one_packet_at_mtu_23() {
    for r in all_requests() {
        let bytes = r.encode();
        assert_eq!(Request::decode(&bytes).as_ref(), Ok(&r), "{r:?}");
        // A sealed unlock is header 12 + 2 + tag 16 = 30 bytes.
        if r == Request::Unlock {
            assert_eq!(bytes.len() + 12 + 16, 30);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any message, any MTU: seal, fragment, reassemble, open.
    #[test]
    fn prop_round_trip_any_message_any_mtu(
        msg in proptest::collection::vec(any::<u8>(), 0..=MAX_PLAINTEXT),
        mtu in MIN_ATT_MTU..=MAX_ATT_MTU,
    ) {
        let lock = lock();
        let app = StaticKeypair::generate(&mut OsRng);
        let (mut l, mut a) = session(&lock, &app, &app.public(), mtu);
        let f = a.seal(T0, &msg).expect("seal");
        prop_assert_eq!(f.len(), msg.len() + 28);
        prop_assert_eq!(l.open(T0, &over_air(&f, mtu)).expect("open"), msg.clone());
        let g = l.seal(T0, &msg).expect("seal");
        prop_assert_eq!(a.open(T0, &over_air(&g, mtu)).expect("open"), msg);
    }

    /// Flip any bits of any single byte: rejected, state unchanged, and the
    /// genuine frame still opens afterwards.
    #[test]
    fn prop_tamper_any_byte_is_rejected_without_state_change(
        msg in proptest::collection::vec(any::<u8>(), 0..64),
        pos in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let lock = lock();
        let app = StaticKeypair::generate(&mut OsRng);
        let (mut l, mut a) = session(&lock, &app, &app.public(), 23);
        let f = a.seal(T0, &msg).expect("seal");
        let mut bad = f.clone();
        let i = pos.index(bad.len());
        bad[i] ^= flip;
        prop_assert!(l.open(T0, &bad).is_err());
        prop_assert_eq!(l.recv_counter(), 0);
        prop_assert!(!l.is_closed());
        prop_assert_eq!(l.open(T0, &f).expect("genuine frame"), msg);
    }

    /// Tampering with any byte of the handshake frames makes the handshake
    /// fail: the pairing confirm at the lock, the session accept at the app.
    #[test]
    fn prop_tampered_handshakes_fail(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let lock = lock();
        let app = StaticKeypair::generate(&mut OsRng);
        let (p, init) = AppPairing::start(&app, PairingSecret::Owner(lock.code.clone()), &mut OsRng);
        let req = PairRequest::parse(&init).expect("parses");
        let (lp, reply) = LockPairing::respond_owner(&req, true, &lock.code, &lock.keys, &mut OsRng).expect("reply");
        let (_, mut confirm) = p.on_reply(&app, &reply).expect("confirm");
        let i = pos.index(confirm.len());
        confirm[i] ^= flip;
        prop_assert!(lp.finish_owner(&confirm, T0).is_err());

        let (start, init) = AppSessionStart::new(&app, lock.keys.public(), &mut OsRng);
        let init = SessionInit::parse(&init).expect("parses");
        let (_, mut accept) =
            accept_session(&lock.keys, &init, &app.public(), &mut OsRng, T0, DEFAULT_IDLE_TIMEOUT).expect("accept");
        let i = pos.index(accept.len());
        accept[i] ^= flip;
        prop_assert!(start.finish(&app, &accept, T0, DEFAULT_IDLE_TIMEOUT).is_err());
    }

    /// Replays of any earlier frame and any reordering are rejected.
    #[test]
    fn prop_replay_and_reorder_rejected(n in 2usize..8, pick in any::<prop::sample::Index>()) {
        let lock = lock();
        let app = StaticKeypair::generate(&mut OsRng);
        let (mut l, mut a) = session(&lock, &app, &app.public(), 23);
        let frames: Vec<Vec<u8>> = (0..n).map(|i| a.seal(T0, &[i as u8]).expect("seal")).collect();
        let ahead = pick.index(n - 1) + 1;
        let is_out_of_order = matches!(l.open(T0, &frames[ahead]), Err(ChannelError::OutOfOrder { .. }));
        prop_assert!(is_out_of_order);
        for f in &frames {
            l.open(T0, f).expect("in order");
        }
        let old = pick.index(n);
        let is_replay = matches!(l.open(T0, &frames[old]), Err(ChannelError::Replay { .. }));
        prop_assert!(is_replay);
    }

    /// The command codec is canonical: whatever decodes re-encodes to the
    /// same bytes (so no two encodings of one command exist).
    #[test]
    fn prop_command_codec_is_canonical(
        op in prop::sample::select(vec![
            0x01u8, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x23, 0x30, 0x31, 0x32,
            0x40, 0x50, 0x51, 0x52, 0x53, 0x60, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
            0x88, 0x89, 0xFF,
        ]),
        tail in proptest::collection::vec(any::<u8>(), 0..48),
    ) {
        let mut bytes = vec![1, op];
        bytes.extend_from_slice(&tail);
        if let Ok(r) = Request::decode(&bytes) {
            prop_assert_eq!(r.encode(), bytes.clone());
        }
        if let Ok(r) = Response::decode(&bytes) {
            prop_assert_eq!(r.encode(), bytes);
        }
    }
}

fn fuzz_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

    /// Bounded form of `fuzz/fuzz_targets/frame_parser.rs`: arbitrary bytes
    /// into every frame-level parser and a live session never panic, and a
    /// session never accepts them.
    #[test]
    fn fuzz_frame_parser(data in proptest::collection::vec(any::<u8>(), 0..600), mtu in MIN_ATT_MTU..=MAX_ATT_MTU) {
        let _ = Frame::parse(&data);
        let _ = SessionInit::parse(&data);
        let _ = PairRequest::parse(&data);
        let _ = Request::decode(&data);
        let _ = Response::decode(&data);
        let mut r = Reassembler::new(mtu).expect("valid mtu");
        for chunk in data.chunks(mtu as usize - 3) {
            let _ = r.push(chunk);
        }
        let lock = lock();
        let app = StaticKeypair::generate(&mut OsRng);
        let (mut l, _a) = session(&lock, &app, &app.public(), 23);
        prop_assert!(l.open(T0, &data).is_err());
        prop_assert_eq!(l.recv_counter(), 0);
    }

    /// Bounded form of `fuzz/fuzz_targets/improv_rpc.rs`.
    #[test]
    fn fuzz_improv_rpc(writes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8), auth: bool) {
        let mut imp = Improv::new(improv::DeviceInfo {
            firmware: "f".into(), version: "v".into(), hardware: "h".into(), device_name: "d".into(),
        });
        imp.set_authorized(auth);
        for w in &writes {
            let _ = improv::parse_rpc(w);
            for o in imp.on_rpc_write(w) {
                if matches!(o, improv::Output::ApplyCredentials { .. } | improv::Output::Scan) {
                    prop_assert!(auth, "nothing is provisioned without authorisation");
                }
            }
        }
    }
}

#[test]
fn idle_session_is_closed_and_refuses_further_frames() {
    let lock = lock();
    let app = StaticKeypair::generate(&mut OsRng);
    let (mut l, mut a) = session(&lock, &app, &app.public(), 23);
    let f = a.seal(T0, b"late").expect("seal");
    let later = T0 + DEFAULT_IDLE_TIMEOUT + Duration::from_millis(1);
    assert_eq!(
        l.open(later, &f),
        Err(ChannelError::IdleTimeout(DEFAULT_IDLE_TIMEOUT))
    );
    assert_eq!(l.open(later, &f), Err(ChannelError::SessionClosed));
    assert!(authorize(&owner(&app), &Request::Unlock, None).is_ok());
}

/// Issue 13 item 6: the owner-key listing round-trips, and a label too
/// long for the wire is cut on a character boundary.
#[test]
fn owner_key_listing_round_trips_and_cuts_long_labels() {
    use latchd::app::response::{OwnerKeyEntry, MAX_LABEL};
    let long = "é".repeat(40);
    let r = Response::OwnerKeys(vec![
        OwnerKeyEntry {
            slot: 1,
            admin: 1,
            label: "owner phone".into(),
        },
        OwnerKeyEntry {
            slot: 7,
            admin: 3,
            label: long.clone(),
        },
    ]);
    let Ok(Response::OwnerKeys(keys)) = Response::decode(&r.encode()) else {
        panic!("does not round-trip")
    };
    assert_eq!(keys[0].label, "owner phone");
    assert_eq!((keys[1].slot, keys[1].admin), (7, 3));
    assert!(keys[1].label.len() <= MAX_LABEL && long.starts_with(&keys[1].label));
}
