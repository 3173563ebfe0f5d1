//! The fingerprint driver's reply handling: the lock pairs with (or
//! verifies) a module, then runs two operations, while every byte the
//! "module" sends is the fuzzer's: any acknowledgement, code, length,
//! address, power-on byte or noise, in reads of any size.
//!
//! Invariants (beyond "no panic"): everything the driver sends is a
//! well-formed instruction to the configured address; the first one is
//! `VfyPwd` with the lock's password; a module refused as foreign was sent
//! nothing but passwords (`VfyPwd`, and `SetPwd` under the rule below); `SetPwd` carries the lock's password, is sent in
//! `AdoptFactory` only and right after a `VfyPwd` (0 or the lock's); slots read back are
//! inside the library; an enrolment stores (`Store`, right after a
//! `Search`) only into its own slot, never when it reports a duplicate,
//! and reports `Stored` only after a `Store`.
#![no_main]

#[path = "common/script.rs"]
mod script;

use latchd::biometrics::fingerprint::frame::{Decoder, PacketKind, DEFAULT_ADDRESS};
use latchd::biometrics::fingerprint::pairing::{self, Pairing};
use latchd::biometrics::fingerprint::{
    Command, EnrollStep, FingerprintConfig, FingerprintError, Led, LedColor, LedMode,
};
use libfuzzer_sys::fuzz_target;
use script::Script;

const PASSWORD: u32 = 0x1234_5678;

thread_local! {
    static RT: tokio::runtime::Runtime = script::runtime();
}

/// The instructions in what the driver wrote, each as (command, arguments).
fn instructions(written: &[u8]) -> Vec<(Command, Vec<u8>)> {
    let mut d = Decoder::new();
    d.push(written);
    let mut out = Vec::new();
    while let Some(p) = d.next_packet() {
        let p = p.expect("the driver writes well-formed packets");
        assert_eq!(p.kind, PacketKind::Command);
        assert_eq!(p.address, DEFAULT_ADDRESS);
        let (&code, args) = p.payload.split_first().expect("an instruction code");
        let c = Command::from_byte(code).expect("a known instruction");
        out.push((c, args.to_vec()));
    }
    assert_eq!(d.buffered(), 0, "a partial packet was written");
    assert_eq!(d.discarded(), 0, "noise was written");
    out
}

fn slot_of(args: &[u8]) -> u16 {
    u16::from_be_bytes([args[1], args[2]])
}

fuzz_target!(|data: &[u8]| {
    let [mode, op1, op2, arg, replies @ ..] = data else {
        return;
    };
    let (stream, written) = Script::new(replies, usize::from(mode & 0x3f) + 1);
    let pairing = if mode & 0x40 != 0 {
        Pairing::AdoptFactory
    } else {
        Pairing::Verify
    };
    let config = FingerprintConfig {
        char_buffers: 4,
        ..FingerprintConfig::default()
    };
    let sent = |from: usize| instructions(&written.lock().expect("not poisoned"))[from..].to_vec();
    RT.with(|rt| {
        rt.block_on(async {
            let connected = pairing::connect(stream, config, PASSWORD, pairing).await;
            let handshake = sent(0);
            let Some((first, args)) = handshake.first() else {
                // Only a link closed before the first word stops it.
                assert!(
                    matches!(connected, Err(FingerprintError::Closed)),
                    "{connected:?}"
                );
                return;
            };
            assert_eq!(*first, Command::VfyPwd);
            assert_eq!(args[..], PASSWORD.to_be_bytes());
            for (i, (c, args)) in handshake.iter().enumerate() {
                if *c == Command::SetPwd {
                    assert_eq!(
                        pairing,
                        Pairing::AdoptFactory,
                        "SetPwd while only verifying"
                    );
                    assert_eq!(
                        args[..],
                        PASSWORD.to_be_bytes(),
                        "SetPwd with another password"
                    );
                    // Right after the module accepted a password: the
                    // factory one, or the lock's own when the driver had
                    // to verify again (the module restarted: 0x55, or it
                    // asked with 0x21).
                    let (c, before) = &handshake[i - 1];
                    assert_eq!(*c, Command::VfyPwd, "SetPwd without a VfyPwd before it");
                    assert!(
                        before[..] == [0; 4] || before[..] == PASSWORD.to_be_bytes(),
                        "SetPwd after verifying another password"
                    );
                }
            }
            let mut fp = match connected {
                Err(FingerprintError::ForeignModule) => {
                    // Nothing but passwords: `VfyPwd`, and the adoption's
                    // `SetPwd` (checked above: only after the module took
                    // the factory or the lock's password) when a module
                    // that took the factory password then refuses the
                    // lock's own (found by this target: the invariant had
                    // allowed `VfyPwd` alone).
                    assert!(
                        handshake
                            .iter()
                            .all(|(c, _)| matches!(c, Command::VfyPwd | Command::SetPwd)),
                        "a foreign module was sent {handshake:?}"
                    );
                    return;
                }
                Err(_) => return,
                Ok(fp) => fp,
            };
            let capacity = fp.capacity();
            for op in [op1, op2] {
                let before = sent(0).len();
                let slot = u16::from(*arg) % capacity.saturating_add(2).max(1);
                match op % 8 {
                    0 => {
                        let _ = fp.identify().await;
                    }
                    1 => {
                        let touches = 2 + arg % 3;
                        let mut steps = Vec::new();
                        let r = fp.enroll(slot, touches, &mut |s| steps.push(s)).await;
                        let ops = sent(before);
                        let stores: Vec<usize> = ops
                            .iter()
                            .enumerate()
                            .filter(|(_, (c, _))| *c == Command::Store)
                            .map(|(i, _)| i)
                            .collect();
                        for &i in &stores {
                            assert_eq!(slot_of(&ops[i].1), slot, "stored into another slot");
                            assert_eq!(ops[i - 1].0, Command::Search, "stored without a search");
                        }
                        if matches!(r, Err(FingerprintError::Duplicate { .. })) {
                            assert!(stores.is_empty(), "stored a duplicate");
                        }
                        if r.is_ok() {
                            assert_eq!(stores.len(), 1);
                            assert_eq!(steps.last(), Some(&EnrollStep::Stored { slot }));
                        } else {
                            assert!(!steps.contains(&EnrollStep::Stored { slot }));
                        }
                    }
                    2 => {
                        if let Ok(slots) = fp.occupied_slots().await {
                            assert!(
                                slots.iter().all(|&s| s < capacity),
                                "slot beyond the library"
                            );
                        }
                    }
                    3 => {
                        let _ = fp.template_count().await;
                    }
                    4 => {
                        let _ = fp.delete(slot).await;
                    }
                    5 => {
                        let _ = fp.empty().await;
                    }
                    6 => {
                        let led = Led {
                            mode: LedMode::Breathing,
                            color: LedColor::Blue,
                            speed: *arg,
                            cycles: 0,
                        };
                        let _ = fp.set_led(led).await;
                    }
                    _ => {
                        let _ = fp.read_system_parameters().await;
                    }
                }
                // Whatever the module said, slot arguments stay inside
                // the library it reported at connect time.
                for (c, args) in sent(before) {
                    if matches!(c, Command::Store | Command::LoadChar) {
                        assert!(slot_of(&args) < capacity, "{c} beyond the library");
                    }
                    if c == Command::DeleteChar {
                        let start = u16::from_be_bytes([args[0], args[1]]);
                        let count = u16::from_be_bytes([args[2], args[3]]);
                        assert!(u32::from(start) + u32::from(count) <= u32::from(capacity));
                    }
                }
            }
        })
    });
});
