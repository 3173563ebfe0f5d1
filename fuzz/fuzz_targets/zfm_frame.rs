//! Whatever the fingerprint module's UART delivers (noise, a module that
//! lies, a wire tapped behind the outside panel), split at any point, into
//! the ZFM/R30x packet decoder.
//!
//! Invariants: the packets decoded do not depend on how the bytes were
//! split into reads; every packet decoded re-encodes to bytes found in the
//! input; the buffer never holds more than one partial packet; and
//! decode(encode(p)) == p for a packet built from the input.
#![no_main]

use latchd::biometrics::fingerprint::frame::{
    Decoder, FrameError, Packet, PacketKind, MAX_PAYLOAD, POWER_ON_MARKER,
};
use libfuzzer_sys::fuzz_target;

/// Header, address, identifier, length, payload and checksum, less one
/// byte: the most a decoder may hold while it waits.
const MAX_HELD: usize = 9 + MAX_PAYLOAD + 2 - 1;

fn drain(d: &mut Decoder, out: &mut Vec<Result<Packet, FrameError>>) {
    while let Some(p) = d.next_packet() {
        out.push(p);
    }
    assert!(
        d.buffered() <= MAX_HELD,
        "decoder holds {} bytes",
        d.buffered()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let mut whole = Decoder::new();
    let mut at_once = Vec::new();
    whole.push(rest);
    drain(&mut whole, &mut at_once);
    let mut split = Decoder::new();
    let mut in_reads = Vec::new();
    for read in rest.chunks(step) {
        split.push(read);
        drain(&mut split, &mut in_reads);
    }
    assert_eq!(
        at_once, in_reads,
        "reads of {step} bytes decode differently"
    );
    assert_eq!(whole.buffered(), split.buffered());
    assert_eq!(whole.discarded(), split.discarded());
    let power_on = split.take_power_on();
    assert_eq!(whole.take_power_on(), power_on);
    // A power-on byte is reported only when one was there.
    if power_on {
        assert!(rest.contains(&POWER_ON_MARKER));
    }
    for p in at_once.iter().flatten() {
        let bytes = p.encode().expect("a decoded payload is within the limit");
        assert!(
            rest.windows(bytes.len()).any(|w| w == bytes),
            "decoded a packet that is not in the input"
        );
    }
    // Round trip of a packet made from the input.
    if rest.len() >= 5 {
        let kind = [
            PacketKind::Command,
            PacketKind::Data,
            PacketKind::Ack,
            PacketKind::EndData,
        ][usize::from(rest[0] % 4)];
        let address = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
        let payload = rest[5..].iter().copied().take(MAX_PAYLOAD).collect();
        let p = Packet {
            address,
            kind,
            payload,
        };
        let mut d = Decoder::new();
        d.push(&p.encode().expect("within the limit"));
        assert_eq!(d.next_packet(), Some(Ok(p)), "decode(encode(p)) != p");
        assert_eq!(d.buffered(), 0);
    }
});
