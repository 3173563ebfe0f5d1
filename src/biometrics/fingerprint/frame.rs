//! R30x/ZFM packet framing: encoding, checksum, and a resynchronising
//! decoder.
//!
//! ```text
//!  0      2            6     7       9               9+n     11+n
//!  ┌──────┬────────────┬─────┬───────┬───────────────┬────────┐
//!  │EF 01 │ address BE │ PID │ len BE│ payload (n)   │ sum BE │   len = n + 2
//!  └──────┴────────────┴─────┴───────┴───────────────┴────────┘
//!  sum = (PID + len_hi + len_lo + Σ payload) mod 2^16
//! ```
//!
//! The decoder is fed whatever the UART delivered (any split, any garbage)
//! and yields whole packets. Bytes before a header are dropped; a header
//! followed by an impossible identifier or length is treated as noise and
//! the search restarts one byte later, so one corrupt byte never costs more
//! than the packet it hit.

use thiserror::Error;

/// Start of every packet, in both directions.
pub const HEADER: [u8; 2] = [0xEF, 0x01];
/// The address every module answers to until it is changed with SetAdder.
pub const DEFAULT_ADDRESS: u32 = 0xFFFF_FFFF;
/// Largest payload we accept. Acknowledgements are at most 33 bytes
/// (ReadIndexTable); data packets carry at most 256 bytes (packet size code
/// 3). Anything longer is a corrupt length field, not a packet.
pub const MAX_PAYLOAD: usize = 256;
/// Header, address, identifier and length: the bytes before the payload.
const PREFIX_LEN: usize = 9;
/// Byte a R503-class module sends once after power-up (about 200 ms after
/// VCC rises) to say it is ready. Seen in the middle of a session it means
/// the module restarted and lost its RAM (image and character buffers).
pub const POWER_ON_MARKER: u8 = 0x55;

/// Packet identifier (PID) byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    /// Host → module instruction.
    Command = 0x01,
    /// Data packet with more to follow (template/image transfer).
    Data = 0x02,
    /// Module → host acknowledgement: confirmation code + results.
    Ack = 0x07,
    /// Last data packet of a transfer.
    EndData = 0x08,
}

impl PacketKind {
    /// Parses an identifier byte; `None` for values the protocol does not define.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(Self::Command),
            0x02 => Some(Self::Data),
            0x07 => Some(Self::Ack),
            0x08 => Some(Self::EndData),
            _ => None,
        }
    }
}

/// One packet, header and checksum stripped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub address: u32,
    pub kind: PacketKind,
    pub payload: Vec<u8>,
}

/// What can be wrong with bytes that looked like a packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error(
        "fingerprint packet checksum mismatch (packet says {received:#06x}, bytes sum to \
         {computed:#06x}); the packet was dropped — check the UART wiring, ground and baud rate"
    )]
    Checksum { received: u16, computed: u16 },
    #[error(
        "fingerprint packet length field {0} is outside 2..={max}; the bytes were treated as noise \
         and the reader resynchronised on the next header",
        max = MAX_PAYLOAD + 2
    )]
    Length(u16),
    #[error(
        "fingerprint packet identifier {0:#04x} is not one of 0x01/0x02/0x07/0x08; the bytes were \
         treated as noise and the reader resynchronised on the next header"
    )]
    UnknownKind(u8),
    #[error("fingerprint packet payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    PayloadTooLong(usize),
}

/// The protocol checksum: a 16-bit wrapping sum of identifier, length and payload.
pub fn checksum(kind: u8, len: u16, payload: &[u8]) -> u16 {
    let [hi, lo] = len.to_be_bytes();
    payload.iter().fold(
        u16::from(kind) + u16::from(hi) + u16::from(lo),
        |acc, &b| acc.wrapping_add(u16::from(b)),
    )
}

impl Packet {
    pub fn command(address: u32, payload: Vec<u8>) -> Self {
        Self {
            address,
            kind: PacketKind::Command,
            payload,
        }
    }

    pub fn ack(address: u32, payload: Vec<u8>) -> Self {
        Self {
            address,
            kind: PacketKind::Ack,
            payload,
        }
    }

    /// Serialises the packet. Fails only when the payload is over the limit.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        if self.payload.len() > MAX_PAYLOAD {
            return Err(FrameError::PayloadTooLong(self.payload.len()));
        }
        // Cannot truncate: bounded by MAX_PAYLOAD + 2 above.
        let len = (self.payload.len() + 2) as u16;
        let mut out = Vec::with_capacity(PREFIX_LEN + self.payload.len() + 2);
        out.extend_from_slice(&HEADER);
        out.extend_from_slice(&self.address.to_be_bytes());
        out.push(self.kind as u8);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out.extend_from_slice(&checksum(self.kind as u8, len, &self.payload).to_be_bytes());
        Ok(out)
    }
}

/// Incremental decoder. Feed it with [`Decoder::push`], drain it with
/// [`Decoder::next_packet`] until it returns `None` (needs more bytes).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    power_on_seen: bool,
    discarded: u64,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether a power-on marker (0x55) was dropped between packets since
    /// the last call; clears the flag.
    pub fn take_power_on(&mut self) -> bool {
        std::mem::take(&mut self.power_on_seen)
    }

    /// Number of noise bytes dropped so far (diagnostics).
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Bytes held waiting for the rest of a packet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forgets any partial packet (after a timeout the rest is not coming
    /// in any useful order).
    pub fn clear(&mut self) {
        self.discard(self.buf.len());
    }

    fn discard(&mut self, n: usize) {
        // Any 0x55 dropped between packets counts as a possible restart.
        // Noise can produce a false alarm, which only makes the driver abandon
        // an enrolment (safe); missing a real restart could store a template
        // built from buffers the module no longer holds.
        if self.buf[..n].contains(&POWER_ON_MARKER) {
            self.power_on_seen = true;
        }
        self.discarded += n as u64;
        self.buf.drain(..n);
    }

    /// Next complete packet, a framing error for a packet that had to be
    /// dropped, or `None` when more bytes are needed.
    pub fn next_packet(&mut self) -> Option<Result<Packet, FrameError>> {
        // Find the header; keep a trailing 0xEF, it may be half of one.
        match self.buf.windows(2).position(|w| w == HEADER) {
            Some(0) => {}
            Some(at) => self.discard(at),
            None => {
                let keep = usize::from(self.buf.last() == Some(&HEADER[0]));
                let drop = self.buf.len() - keep;
                if drop > 0 {
                    self.discard(drop);
                }
                return None;
            }
        }
        if self.buf.len() < PREFIX_LEN {
            return None;
        }
        let pid = self.buf[6];
        let len = u16::from_be_bytes([self.buf[7], self.buf[8]]);
        let Some(kind) = PacketKind::from_byte(pid) else {
            self.discarded += 1;
            self.buf.drain(..1);
            return Some(Err(FrameError::UnknownKind(pid)));
        };
        if !(2..=MAX_PAYLOAD as u16 + 2).contains(&len) {
            self.discarded += 1;
            self.buf.drain(..1);
            return Some(Err(FrameError::Length(len)));
        }
        let total = PREFIX_LEN + usize::from(len);
        if self.buf.len() < total {
            return None;
        }
        let address = u32::from_be_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]]);
        let payload = self.buf[PREFIX_LEN..total - 2].to_vec();
        let received = u16::from_be_bytes([self.buf[total - 2], self.buf[total - 1]]);
        let computed = checksum(pid, len, &payload);
        self.buf.drain(..total);
        if received != computed {
            return Some(Err(FrameError::Checksum { received, computed }));
        }
        Some(Ok(Packet {
            address,
            kind,
            payload,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Result<Packet, FrameError>> {
        let mut d = Decoder::new();
        d.push(bytes);
        std::iter::from_fn(|| d.next_packet()).collect()
    }

    #[test]
    fn encodes_the_datasheet_template_num_command() {
        // TempleteNum (0x1D) as printed in the R503 manual: length 3, sum 0x0021.
        let bytes = Packet::command(DEFAULT_ADDRESS, vec![0x1D])
            .encode()
            .expect("small payload");
        assert_eq!(
            bytes,
            [0xEF, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x03, 0x1D, 0x00, 0x21]
        );
    }

    #[test]
    fn round_trips_and_checks_the_sum() {
        let p = Packet::ack(0x1234_5678, vec![0x00, 0x01, 0x02, 0xFF]);
        let bytes = p.encode().expect("encode");
        assert_eq!(decode_all(&bytes), vec![Ok(p)]);
    }

    #[test]
    fn reassembles_a_packet_split_into_single_bytes() {
        let p = Packet::ack(DEFAULT_ADDRESS, vec![0x00, 0x00, 0x05]);
        let bytes = p.encode().expect("encode");
        let mut d = Decoder::new();
        for (i, b) in bytes.iter().enumerate() {
            d.push(&[*b]);
            let got = d.next_packet();
            if i + 1 < bytes.len() {
                assert_eq!(got, None, "packet complete too early at byte {i}");
            } else {
                assert_eq!(got, Some(Ok(p.clone())));
            }
        }
    }

    #[test]
    fn skips_garbage_before_the_header_and_notes_a_power_on_byte() {
        let p = Packet::ack(DEFAULT_ADDRESS, vec![0x00]);
        let mut bytes = vec![0x00, 0xEF, 0x13, POWER_ON_MARKER];
        bytes.extend(p.encode().expect("encode"));
        let mut d = Decoder::new();
        d.push(&bytes);
        assert_eq!(d.next_packet(), Some(Ok(p)));
        assert!(d.take_power_on());
        assert!(!d.take_power_on(), "flag is cleared once read");
        assert_eq!(d.discarded(), 4);
    }

    #[test]
    fn rejects_a_bad_checksum_then_reads_the_next_packet() {
        let p = Packet::ack(DEFAULT_ADDRESS, vec![0x00, 0x07]);
        let mut bad = p.encode().expect("encode");
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        bad.extend(p.encode().expect("encode"));
        let got = decode_all(&bad);
        assert!(matches!(got[0], Err(FrameError::Checksum { .. })));
        assert_eq!(got[1], Ok(p));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn rejects_an_oversize_length_and_resynchronises() {
        let good = Packet::ack(DEFAULT_ADDRESS, vec![0x00]);
        let mut bytes = vec![0xEF, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 0x7F, 0xFF];
        bytes.extend(good.encode().expect("encode"));
        let got = decode_all(&bytes);
        assert_eq!(got[0], Err(FrameError::Length(0x7FFF)));
        assert_eq!(got.last(), Some(&Ok(good)));
    }

    #[test]
    fn rejects_an_unknown_identifier() {
        let mut bytes = Packet::ack(DEFAULT_ADDRESS, vec![0x00])
            .encode()
            .expect("encode");
        bytes[6] = 0x42;
        assert_eq!(decode_all(&bytes)[0], Err(FrameError::UnknownKind(0x42)));
    }

    #[test]
    fn refuses_to_encode_an_oversize_payload() {
        let p = Packet::command(DEFAULT_ADDRESS, vec![0; MAX_PAYLOAD + 1]);
        assert_eq!(p.encode(), Err(FrameError::PayloadTooLong(MAX_PAYLOAD + 1)));
    }

    #[test]
    fn garbage_without_a_header_does_not_grow_the_buffer() {
        let mut d = Decoder::new();
        for _ in 0..100 {
            d.push(&[0x12; 64]);
            assert_eq!(d.next_packet(), None);
        }
        assert_eq!(d.buffered(), 0);
    }
}
