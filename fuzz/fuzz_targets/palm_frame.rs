//! Whatever the palm-vein module's UART delivers, split at any point, into
//! the LPV/1 frame decoder.
//!
//! Invariants: the frames decoded do not depend on how the bytes were
//! split into reads; every frame decoded re-encodes to bytes found in the
//! input; the buffer never holds more than one partial frame; and
//! decode(encode(f)) == f for a frame built from the input.
#![no_main]

use latchd::biometrics::palm::frame::{Decoder, Frame, FrameError, Kind, MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;

/// Sync, kind, command, sequence, length, payload and CRC, less one byte:
/// the most a decoder may hold while it waits.
const MAX_HELD: usize = 7 + MAX_PAYLOAD + 2 - 1;

fn drain(d: &mut Decoder, out: &mut Vec<Result<Frame, FrameError>>) {
    while let Some(f) = d.next_frame() {
        out.push(f);
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
    for f in at_once.iter().flatten() {
        let bytes = f.encode().expect("a decoded payload is within the limit");
        assert!(
            rest.windows(bytes.len()).any(|w| w == bytes),
            "decoded a frame that is not in the input"
        );
    }
    if rest.len() >= 3 {
        let kind = [Kind::Request, Kind::Reply, Kind::Note][usize::from(rest[0] % 3)];
        let payload = rest[3..].iter().copied().take(MAX_PAYLOAD).collect();
        let f = Frame::new(kind, rest[1], rest[2], payload);
        let mut d = Decoder::new();
        d.push(&f.encode().expect("within the limit"));
        assert_eq!(d.next_frame(), Some(Ok(f)), "decode(encode(f)) != f");
        assert_eq!(d.buffered(), 0);
    }
});
