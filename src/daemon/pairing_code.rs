//! The verification code of each pairing generation (B-4.10, B-5.1,
//! issue 13 item 6).
//!
//! ```text
//!  generation 0  [lock] verification_code, or HMAC(key, "latchd/verification-code/v2")
//!                = the code on the QR label; pairs the first owner only
//!  generation n  HMAC(key, "latchd/verification-code/v2/gen" ‖ n)
//!                spoken by system information (SET + administrator, inside)
//! ```
//!
//! Every owner pairing moves the engine to the next generation (in the
//! same commit as the new key); the engine task then sets the
//! [`CurrentCode`] the BLE service checks pairings against. Codes are
//! derived from the device key, so they need no storage of their own and
//! are the same after a restart. A factory reset goes back to generation
//! 0, the label's code.
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::app::pairing::{CurrentCode, VerificationCode, CODE_BYTES};
use crate::config::Config;

/// Derives the code of any generation. Holds a copy of the passcode key.
#[derive(Clone)]
pub struct PairingCodes {
    key: zeroize::Zeroizing<[u8; 32]>,
    /// Generation 0 when the config names one (a code printed at the
    /// factory); otherwise derived like every other generation.
    label: Option<VerificationCode>,
}

impl std::fmt::Debug for PairingCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairingCodes(..)")
    }
}

impl PairingCodes {
    pub fn new(config: &Config, passcode_key: &[u8; 32]) -> Self {
        // The config was validated at load; a code that still does not
        // parse falls back to the derived one rather than to no code.
        let label = (!config.lock.verification_code.is_empty())
            .then(|| VerificationCode::parse(&config.lock.verification_code).ok())
            .flatten();
        PairingCodes {
            key: zeroize::Zeroizing::new(*passcode_key),
            label,
        }
    }

    /// The code of `generation`.
    pub fn code(&self, generation: u32) -> VerificationCode {
        if generation == 0 {
            if let Some(l) = &self.label {
                return l.clone();
            }
        }
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..]) {
            Ok(m) => m,
            // HMAC takes keys of any length; this cannot happen.
            Err(_) => return VerificationCode::from_bytes([0; CODE_BYTES]),
        };
        // Labels contain letters, so they never equal a digits-only
        // passcode MACed under the same key.
        mac.update(b"latchd/verification-code/v2");
        if generation > 0 {
            mac.update(b"/gen");
            mac.update(&generation.to_be_bytes());
        }
        let d: [u8; 32] = mac.finalize().into_bytes().into();
        let mut b = [0u8; CODE_BYTES];
        b.copy_from_slice(&d[..CODE_BYTES]);
        VerificationCode::from_bytes(b)
    }

    /// The engine's view: the spoken form of each generation's code.
    pub fn for_engine(&self) -> crate::core::PairingCodes {
        let codes = self.clone();
        crate::core::PairingCodes::new(move |g| codes.code(g).display().to_string())
    }

    /// The hook the engine task calls after it committed generation `g`.
    pub fn follow(&self, current: CurrentCode) -> Box<dyn FnMut(u32) + Send> {
        let codes = self.clone();
        Box::new(move |g| current.set(codes.code(g)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_differ_and_are_stable() {
        let config = Config::default();
        let a = PairingCodes::new(&config, &[7; 32]);
        let b = PairingCodes::new(&config, &[7; 32]);
        assert_eq!(*a.code(0).display(), *b.code(0).display());
        assert_eq!(*a.code(3).display(), *b.code(3).display());
        assert_ne!(*a.code(0).display(), *a.code(1).display());
        assert_ne!(*a.code(1).display(), *a.code(2).display());
        let c = PairingCodes::new(&config, &[8; 32]);
        assert_ne!(*a.code(1).display(), *c.code(1).display());
    }

    #[test]
    fn a_configured_label_code_is_generation_zero_only() {
        let mut config = Config::default();
        let label = VerificationCode::from_bytes([9; CODE_BYTES]);
        config.lock.verification_code = label.display().to_string();
        let codes = PairingCodes::new(&config, &[7; 32]);
        assert_eq!(*codes.code(0).display(), *label.display());
        assert_ne!(*codes.code(1).display(), *label.display());
    }
}
