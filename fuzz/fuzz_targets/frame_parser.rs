//! Arbitrary bytes into every parser an unauthenticated BLE peer can reach:
//! the frame header, the handshake bodies, the fragment reassembler at any
//! MTU, a live session's `open`, and the command codec. Nothing may panic,
//! and a session must never accept a frame it did not seal.
#![no_main]

use std::cell::RefCell;

use latchd::app::client::AppSessionStart;
use latchd::app::crypto::StaticKeypair;
use latchd::app::pairing::PairRequest;
use latchd::app::protocol::{
    accept_session, Frame, Reassembler, SecureSession, SessionInit, DEFAULT_IDLE_TIMEOUT,
    MAX_ATT_MTU, MIN_ATT_MTU,
};
use latchd::app::{Request, Response};
use latchd::core::time::Instant;
use libfuzzer_sys::fuzz_target;
use rand_core::OsRng;

const T0: Instant = Instant(1_000);

thread_local! {
    // One real session for all inputs: the handshake costs ~0.5 ms.
    static SESSION: RefCell<SecureSession> = RefCell::new({
        let lock = StaticKeypair::from_secret_bytes([1; 32]);
        let app = StaticKeypair::from_secret_bytes([2; 32]);
        let (_start, init) = AppSessionStart::new(&app, lock.public(), &mut OsRng);
        let init = SessionInit::parse(&init).expect("own init parses");
        accept_session(&lock, &init, &app.public(), &mut OsRng, T0, DEFAULT_IDLE_TIMEOUT)
            .expect("own handshake")
            .0
    });
}

fuzz_target!(|data: &[u8]| {
    let _ = Frame::parse(data);
    let _ = SessionInit::parse(data);
    let _ = PairRequest::parse(data);
    if let Ok(r) = Request::decode(data) {
        assert_eq!(r.encode(), data, "request codec is canonical");
    }
    if let Ok(r) = Response::decode(data) {
        assert_eq!(r.encode(), data, "response codec is canonical");
    }
    if let Some((&m, rest)) = data.split_first() {
        let mtu = MIN_ATT_MTU + u16::from(m) % (MAX_ATT_MTU - MIN_ATT_MTU + 1);
        let mut r = Reassembler::new(mtu).expect("mtu in range");
        for chunk in rest.chunks(mtu as usize - 3) {
            let _ = r.push(chunk);
        }
    }
    SESSION.with(|s| {
        let mut s = s.borrow_mut();
        let before = s.recv_counter();
        assert!(s.open(T0, data).is_err(), "a forged frame opened");
        assert_eq!(
            s.recv_counter(),
            before,
            "a rejected frame changed the session"
        );
    });
});
