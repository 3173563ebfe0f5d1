//! The plaintext of a remote command: the challenge it answers, then the
//! request (the BLE command codec). Sealed as a whole in the one-shot
//! message, so the broker can neither read nor change which challenge a
//! command answers.
//!
//! ```text
//!  'R' (0x52) ‖ version 1 ‖ challenge (16) ‖ Request::encode()  (version 1 ‖ opcode ‖ fields)
//! ```
//!
//! A plaintext that starts with the codec's own version byte (0x01) is a
//! bare request from an app that predates freshness: it has no challenge
//! and is refused as stale ([`EnvelopeError::NoChallenge`]), never run.
use super::freshness::{Challenge, CHALLENGE_LEN};
use crate::app::Request;

/// First byte of an envelope.
pub const TAG: u8 = 0x52;
/// Envelope format version.
pub const VERSION: u8 = 1;
/// Bytes before the request.
pub const HEADER_LEN: usize = 2 + CHALLENGE_LEN;

/// A plaintext that is not an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the command carries no challenge (a bare request); update the app")]
    NoChallenge,
    #[error("remote command envelope version {0} is not supported (this lock speaks {VERSION}); update the app")]
    UnsupportedVersion(u8),
    #[error("remote command envelope is truncated or unknown")]
    Malformed,
}

/// The plaintext of a command answering `challenge`.
pub fn encode(challenge: &Challenge, request: &Request) -> Vec<u8> {
    let body = request.encode();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(TAG);
    out.push(VERSION);
    out.extend_from_slice(&challenge.0);
    out.extend_from_slice(&body);
    out
}

/// Split a verified plaintext into the challenge and the request bytes
/// (decoded by the caller with `Request::decode`).
pub fn split(plaintext: &[u8]) -> Result<(Challenge, &[u8]), EnvelopeError> {
    match plaintext {
        [TAG, VERSION, rest @ ..] if rest.len() >= CHALLENGE_LEN => {
            let (c, request) = rest.split_at(CHALLENGE_LEN);
            let mut b = [0u8; CHALLENGE_LEN];
            b.copy_from_slice(c);
            Ok((Challenge(b), request))
        }
        [TAG, VERSION, ..] => Err(EnvelopeError::Malformed),
        [TAG, v, ..] => Err(EnvelopeError::UnsupportedVersion(*v)),
        [crate::app::codec::COMMAND_VERSION, ..] => Err(EnvelopeError::NoChallenge),
        _ => Err(EnvelopeError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn round_trip_and_refusals() {
        let c = Challenge::generate(&mut OsRng);
        let p = encode(&c, &Request::Unlock);
        let (got, req) = split(&p).expect("splits");
        assert_eq!(got, c);
        assert_eq!(Request::decode(req), Ok(Request::Unlock));
        assert_eq!(
            split(&Request::Unlock.encode()),
            Err(EnvelopeError::NoChallenge)
        );
        assert_eq!(split(&p[..10]), Err(EnvelopeError::Malformed));
        assert_eq!(
            split(&[TAG, 9, 0]),
            Err(EnvelopeError::UnsupportedVersion(9))
        );
        assert_eq!(split(&[]), Err(EnvelopeError::Malformed));
    }
}
