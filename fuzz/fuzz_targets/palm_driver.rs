//! The palm-vein driver's reply handling: the lock connects (GetInfo),
//! then runs two operations, while every byte the "module" sends is the
//! fuzzer's: replies, notes, stale sequence numbers, power-on notes, noise,
//! in reads of any size.
//!
//! Invariants (beyond "no panic"): everything the driver sends is a
//! well-formed request with a non-zero sequence number one above the last
//! (0 is the module's); ids sent are inside the library the module
//! reported; an enrolment reports `Stored` exactly when it succeeds; a
//! listing has as many ids as it claims.
#![no_main]

#[path = "common/script.rs"]
mod script;

use latchd::biometrics::palm::frame::{Decoder, Kind};
use latchd::biometrics::palm::{Palm, PalmCommand, PalmConfig, PalmEnrollStep};
use libfuzzer_sys::fuzz_target;
use script::Script;

thread_local! {
    static RT: tokio::runtime::Runtime = script::runtime();
}

/// The requests in what the driver wrote, as (command, seq, payload).
fn requests(written: &[u8]) -> Vec<(PalmCommand, u8, Vec<u8>)> {
    let mut d = Decoder::new();
    d.push(written);
    let mut out = Vec::new();
    while let Some(f) = d.next_frame() {
        let f = f.expect("the driver writes well-formed frames");
        assert_eq!(f.kind, Kind::Request);
        let c = PalmCommand::from_byte(f.cmd).expect("a known command");
        out.push((c, f.seq, f.payload));
    }
    assert_eq!(d.buffered(), 0, "a partial frame was written");
    assert_eq!(d.discarded(), 0, "noise was written");
    out
}

fuzz_target!(|data: &[u8]| {
    let [mode, op1, op2, arg, replies @ ..] = data else {
        return;
    };
    let (stream, written) = Script::new(replies, usize::from(mode & 0x7f) + 1);
    let config = PalmConfig {
        captures: 1 + mode % 3,
        ..PalmConfig::default()
    };
    let sent = || requests(&written.lock().expect("not poisoned"));
    RT.with(|rt| {
        rt.block_on(async {
            let Ok(mut palm) = Palm::connect(stream, config).await else {
                return;
            };
            let capacity = palm.info().capacity;
            for op in [op1, op2] {
                let id = u16::from(*arg) % capacity.saturating_add(2).max(1);
                match op % 7 {
                    0 => {
                        let _ = palm.identify().await;
                    }
                    1 => {
                        let mut steps = Vec::new();
                        let r = palm.enroll(id, &mut |s| steps.push(s)).await;
                        let stored = steps.contains(&PalmEnrollStep::Stored { id });
                        assert_eq!(r.is_ok(), stored, "Stored reported for {r:?}");
                        if r.is_ok() {
                            assert_eq!(steps.last(), Some(&PalmEnrollStep::Stored { id }));
                        }
                    }
                    2 => {
                        if let Ok(ids) = palm.list_ids().await {
                            assert!(ids.len() <= 254, "{} ids in one frame", ids.len());
                        }
                    }
                    3 => {
                        let _ = palm.delete(id).await;
                    }
                    4 => {
                        let _ = palm.delete_all().await;
                    }
                    5 => {
                        let _ = palm.status().await;
                    }
                    _ => {
                        let _ = palm.abort().await;
                    }
                }
            }
            let reqs = sent();
            let mut last_seq = 0u8;
            for (c, seq, payload) in &reqs {
                assert_ne!(*seq, 0, "seq 0 is the module's");
                assert_eq!(*seq, last_seq.wrapping_add(1).max(1), "sequence skipped");
                last_seq = *seq;
                if matches!(c, PalmCommand::Enroll | PalmCommand::Delete) {
                    let id = u16::from_be_bytes([payload[0], payload[1]]);
                    assert!(id < capacity, "{c:?} for id {id} beyond {capacity}");
                }
            }
        })
    });
});
