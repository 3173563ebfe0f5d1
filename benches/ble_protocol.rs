//! CPU cost of the BLE secure channel and its byte overhead.
//!
//! `cargo bench --bench ble_protocol` prints the frame overhead table first,
//! then criterion timings for: a full owner pairing (both ends), a session
//! handshake (both ends), and one sealed command round trip (app seals an
//! unlock, lock opens it, lock seals `Ok`, app opens it).

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use latchd::app::authz::{open_request, seal_response};
use latchd::app::client::{
    open_response, seal_request, AppPairing, AppSessionStart, PairingSecret,
};
use latchd::app::crypto::StaticKeypair;
use latchd::app::pairing::{LockPairing, PairRequest, VerificationCode};
use latchd::app::protocol::{accept_session, fragment, SessionInit, DEFAULT_IDLE_TIMEOUT};
use latchd::app::wire::Principal;
use latchd::app::{Request, Response};
use latchd::core::time::{Instant, WallTime};
use rand_core::OsRng;

const T0: Instant = Instant(1_000);

fn pairing(lock: &StaticKeypair, code: &VerificationCode, app: &StaticKeypair) {
    let (p, init) = AppPairing::start(app, PairingSecret::Owner(code.clone()), &mut OsRng);
    let req = PairRequest::parse(&init).expect("parses");
    let (lp, reply) =
        LockPairing::respond_owner(&req, true, code, lock, &mut OsRng).expect("reply");
    let (sent, confirm) = p.on_reply(app, &reply).expect("confirm");
    let (_, done) = lp.finish_owner(&confirm, T0).expect("paired");
    black_box(sent.on_done(&done).expect("done"));
}

fn session(
    lock: &StaticKeypair,
    app: &StaticKeypair,
) -> (
    latchd::app::protocol::SecureSession,
    latchd::app::protocol::SecureSession,
) {
    let (start, init) = AppSessionStart::new(app, lock.public(), &mut OsRng);
    let init = SessionInit::parse(&init).expect("parses");
    let (l, accept) = accept_session(
        lock,
        &init,
        &app.public(),
        &mut OsRng,
        T0,
        DEFAULT_IDLE_TIMEOUT,
    )
    .expect("accept");
    let a = start
        .finish(app, &accept, T0, DEFAULT_IDLE_TIMEOUT)
        .expect("finish");
    (l, a)
}

fn print_overhead(lock: &StaticKeypair, app: &StaticKeypair, code: &VerificationCode) {
    let (_, mut a) = session(lock, app);
    let unlock = seal_request(&mut a, T0, &Request::Unlock).expect("seal");
    let (_, pair_init) = AppPairing::start(app, PairingSecret::Owner(code.clone()), &mut OsRng);
    let (_, session_init) = AppSessionStart::new(app, lock.public(), &mut OsRng);
    println!("ble_protocol frame overhead:");
    println!("  sealed frame = 12 header + plaintext + 16 tag = plaintext + 28 bytes");
    println!(
        "  sealed unlock request: {} bytes (2-byte command)",
        unlock.len()
    );
    println!(
        "  pair-init {} bytes, session-init {} bytes",
        pair_init.len(),
        session_init.len()
    );
    for mtu in [23u16, 185, 247, 517] {
        let frags = fragment(&unlock, mtu).expect("fragments");
        let big = vec![0u8; 4096 + 28];
        let big_frags = fragment(&big, mtu).expect("fragments");
        println!(
            "  MTU {mtu:3}: unlock in {} ATT write(s); a 4096-byte message in {} writes ({} bytes of fragment headers)",
            frags.len(),
            big_frags.len(),
            big_frags.len() + 2
        );
    }
}

fn main() {
    let lock = StaticKeypair::generate(&mut OsRng);
    let app = StaticKeypair::generate(&mut OsRng);
    let code = VerificationCode::generate(&mut OsRng);
    print_overhead(&lock, &app, &code);

    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    c.bench_function("pairing handshake (owner, both ends)", |b| {
        b.iter(|| pairing(&lock, &code, &app))
    });
    c.bench_function("session handshake (both ends)", |b| {
        b.iter(|| black_box(session(&lock, &app)))
    });
    let (mut l, mut a) = session(&lock, &app);
    let principal = Principal::Owner {
        key_id: app.key_id(),
        admin_user: 1,
    };
    c.bench_function("command round trip (seal+open unlock, seal+open Ok)", |b| {
        b.iter(|| {
            let f = seal_request(&mut a, T0, &Request::Unlock).expect("seal");
            let req = open_request(&mut l, &principal, T0, Some(WallTime(0)), &f).expect("open");
            black_box(req);
            let r = seal_response(&mut l, T0, &Response::Ok).expect("seal");
            black_box(open_response(&mut a, T0, &r).expect("open"))
        })
    });
    c.final_summary();
}
