//! latchd palm-vein link framing (LPV/1; see `docs/palm-protocol.md`).
//!
//! ```text
//!  0     2      3     4     5        7             7+n        9+n
//!  ┌─────┬──────┬─────┬─────┬────────┬─────────────┬──────────┐
//!  │5A A5│ kind │ cmd │ seq │ len BE │ payload (n) │ CRC16 BE │
//!  └─────┴──────┴─────┴─────┴────────┴─────────────┴──────────┘
//!  kind: 0x01 request, 0x02 reply, 0x03 note (progress / power-on)
//!  CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over kind..payload
//! ```
//!
//! The decoder resynchronises on the next sync word after noise, an
//! impossible kind or length, and drops a frame whose CRC does not match.

use thiserror::Error;

/// Start of every frame.
pub const SYNC: [u8; 2] = [0x5A, 0xA5];
/// Largest payload either side may send (a full id list of 255 entries
/// plus status and count is 513 bytes; 512 keeps lists to 254 ids, and
/// capacities are far below that).
pub const MAX_PAYLOAD: usize = 512;
const PREFIX_LEN: usize = 7;

/// Frame kind byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Request = 0x01,
    Reply = 0x02,
    Note = 0x03,
}

impl Kind {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(Self::Request),
            0x02 => Some(Self::Reply),
            0x03 => Some(Self::Note),
            _ => None,
        }
    }
}

/// One frame, sync and CRC stripped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub cmd: u8,
    pub seq: u8,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error(
        "palm frame CRC mismatch (frame says {received:#06x}, computed {computed:#06x}); the frame \
         was dropped — check the UART wiring, ground and baud rate"
    )]
    Crc { received: u16, computed: u16 },
    #[error(
        "palm frame length {0} exceeds {MAX_PAYLOAD}; treated as noise, the reader resynchronised"
    )]
    Length(u16),
    #[error("palm frame kind {0:#04x} is not 0x01/0x02/0x03; treated as noise, the reader resynchronised")]
    UnknownKind(u8),
    #[error("palm frame payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    PayloadTooLong(usize),
}

/// CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no xor-out.
/// Check value for "123456789" is 0x29B1.
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0xFFFFu16, |mut crc, &b| {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

impl Frame {
    pub fn new(kind: Kind, cmd: u8, seq: u8, payload: Vec<u8>) -> Self {
        Self {
            kind,
            cmd,
            seq,
            payload,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        if self.payload.len() > MAX_PAYLOAD {
            return Err(FrameError::PayloadTooLong(self.payload.len()));
        }
        // Cannot truncate: bounded by MAX_PAYLOAD above.
        let len = self.payload.len() as u16;
        let mut out = Vec::with_capacity(PREFIX_LEN + self.payload.len() + 2);
        out.extend_from_slice(&SYNC);
        out.extend_from_slice(&[self.kind as u8, self.cmd, self.seq]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.payload);
        let crc = crc16(&out[2..]);
        out.extend_from_slice(&crc.to_be_bytes());
        Ok(out)
    }
}

/// Incremental, resynchronising decoder.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    discarded: u64,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn clear(&mut self) {
        self.discarded += self.buf.len() as u64;
        self.buf.clear();
    }

    fn discard(&mut self, n: usize) {
        self.discarded += n as u64;
        self.buf.drain(..n);
    }

    /// Next frame, an error for a dropped frame, or `None` for "need more bytes".
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        match self.buf.windows(2).position(|w| w == SYNC) {
            Some(0) => {}
            Some(at) => self.discard(at),
            None => {
                let keep = usize::from(self.buf.last() == Some(&SYNC[0]));
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
        let Some(kind) = Kind::from_byte(self.buf[2]) else {
            let k = self.buf[2];
            self.discard(1);
            return Some(Err(FrameError::UnknownKind(k)));
        };
        let len = u16::from_be_bytes([self.buf[5], self.buf[6]]);
        if usize::from(len) > MAX_PAYLOAD {
            self.discard(1);
            return Some(Err(FrameError::Length(len)));
        }
        let total = PREFIX_LEN + usize::from(len) + 2;
        if self.buf.len() < total {
            return None;
        }
        let computed = crc16(&self.buf[2..total - 2]);
        let received = u16::from_be_bytes([self.buf[total - 2], self.buf[total - 1]]);
        let frame = Frame {
            kind,
            cmd: self.buf[3],
            seq: self.buf[4],
            payload: self.buf[PREFIX_LEN..total - 2].to_vec(),
        };
        self.buf.drain(..total);
        if computed != received {
            return Some(Err(FrameError::Crc { received, computed }));
        }
        Some(Ok(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Result<Frame, FrameError>> {
        let mut d = Decoder::new();
        d.push(bytes);
        std::iter::from_fn(|| d.next_frame()).collect()
    }

    #[test]
    fn crc_matches_the_ccitt_false_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn round_trips() {
        let f = Frame::new(Kind::Reply, 0x14, 9, vec![0, 0, 2, 0, 1, 0, 7]);
        assert_eq!(decode_all(&f.encode().expect("encode")), vec![Ok(f)]);
    }

    #[test]
    fn reassembles_split_reads() {
        let f = Frame::new(Kind::Note, 0x10, 3, vec![2, 1, 3]);
        let bytes = f.encode().expect("encode");
        let mut d = Decoder::new();
        let (a, b) = bytes.split_at(5);
        d.push(a);
        assert_eq!(d.next_frame(), None);
        d.push(b);
        assert_eq!(d.next_frame(), Some(Ok(f)));
    }

    #[test]
    fn skips_garbage_and_rejects_bad_crc_then_recovers() {
        let f = Frame::new(Kind::Reply, 0x01, 1, vec![0]);
        let mut bad = f.encode().expect("encode");
        bad[7] ^= 0xFF;
        let mut bytes = vec![0x00, 0x5A, 0x11, 0xA5];
        bytes.extend(bad);
        bytes.extend(f.encode().expect("encode"));
        let got = decode_all(&bytes);
        assert!(matches!(got[0], Err(FrameError::Crc { .. })));
        assert_eq!(got[1], Ok(f));
    }

    #[test]
    fn rejects_oversize_length_and_unknown_kind() {
        let good = Frame::new(Kind::Reply, 0x02, 4, vec![0, 0]);
        let mut bytes = vec![0x5A, 0xA5, 0x02, 0x01, 0x00, 0xFF, 0xFF];
        bytes.extend([0x5A, 0xA5, 0x09, 0x01, 0x00, 0x00, 0x00]);
        bytes.extend(good.encode().expect("encode"));
        let got = decode_all(&bytes);
        assert_eq!(got[0], Err(FrameError::Length(0xFFFF)));
        assert!(got.contains(&Err(FrameError::UnknownKind(0x09))));
        assert_eq!(got.last(), Some(&Ok(good)));
        assert_eq!(
            Frame::new(Kind::Request, 1, 1, vec![0; MAX_PAYLOAD + 1]).encode(),
            Err(FrameError::PayloadTooLong(MAX_PAYLOAD + 1))
        );
    }
}
