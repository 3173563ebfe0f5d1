//! Passcodes: the rules a code must follow (B-2.3), the keyed MAC that is
//! all the lock ever stores of one (B-11.2), and the anti-peep lookup
//! (B-6.4).
//!
//! # Anti-peep in constant work per input
//!
//! ```text
//!  input (≤ 16 digits)   9 9 1 3 5 7 9 2 4 6 8 0 0
//!  windows of 6..=10     └──6──┘ …  └────10────┘      ≤ 45 windows for 16 digits
//!        │ HMAC-SHA256(passcode_key, window) — once per window
//!        ▼
//!  HashMap<PasscodeMac, PasscodeTarget>              one lookup per window
//! ```
//!
//! The work depends on the length of the input only, never on the number
//! of stored codes. Because a keyed MAC is deterministic, codes cannot be
//! salted per user; the key (derived from the device key by the store) is
//! what keeps a flash dump from being brute-forced offline, see
//! ARCHITECTURE.md "Security model".
//!
//! # Ambiguity, and how it is avoided
//!
//! With anti-peep, an input made of a code with padding around it could
//! also contain a *different* stored code. Two rules keep the answer
//! unambiguous:
//!
//! * at enrolment a new code is refused when it equals or contains a stored
//!   code (checked by MACing every window of the new code — the stored
//!   digits are never needed); and
//! * at verification the longest matching window wins, then the earliest.
//!   That resolves the one case enrolment cannot see without the stored
//!   digits: a new code that is *contained in* an older, longer code. Typing
//!   the longer code then opens as the longer code's owner.
use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::types::{limits, CredentialId, PasscodeMac, TempPasscodeId, UserNumber};

type HmacSha256 = Hmac<Sha256>;

/// Why a string of digits is not an acceptable passcode (B-2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasscodeError {
    #[error("a passcode has 6 to 10 digits; this one has {0}")]
    Length(usize),
    #[error("a passcode is made of the digits 0-9 only")]
    NotDigits,
    #[error("all digits are the same; choose a code with different digits")]
    AllSame,
    #[error("the digits form a consecutive run (like 123456 or 654321); choose another code")]
    Consecutive,
}

/// A passcode that satisfies B-2.3. The digits (values 0..=9) are wiped
/// from memory when the value is dropped.
pub struct Passcode(Zeroizing<Vec<u8>>);

impl Passcode {
    /// Check the rules on digit values 0..=9.
    pub fn from_digits(digits: &[u8]) -> Result<Passcode, PasscodeError> {
        check_rules(digits)?;
        Ok(Passcode(Zeroizing::new(digits.to_vec())))
    }

    /// Check the rules on text such as `"135790"` (what the app sends).
    pub fn parse(text: &str) -> Result<Passcode, PasscodeError> {
        let digits: Zeroizing<Vec<u8>> = Zeroizing::new(
            text.bytes()
                .map(|b| {
                    if b.is_ascii_digit() {
                        Ok(b - b'0')
                    } else {
                        Err(PasscodeError::NotDigits)
                    }
                })
                .collect::<Result<Vec<u8>, _>>()?,
        );
        Passcode::from_digits(&digits)
    }

    pub fn digits(&self) -> &[u8] {
        &self.0
    }
}

impl core::fmt::Debug for Passcode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Passcode({} digits)", self.0.len())
    }
}

/// B-2.3: 6–10 digits, not all the same, not a run of consecutive digits
/// up or down. A run does not wrap around (`890123` is accepted: it is not
/// what a person means by "consecutive" and refusing it buys nothing).
pub fn check_rules(digits: &[u8]) -> Result<(), PasscodeError> {
    if digits.iter().any(|&d| d > 9) {
        return Err(PasscodeError::NotDigits);
    }
    if !(limits::PASSCODE_MIN..=limits::PASSCODE_MAX).contains(&digits.len()) {
        return Err(PasscodeError::Length(digits.len()));
    }
    if digits.windows(2).all(|w| w[0] == w[1]) {
        return Err(PasscodeError::AllSame);
    }
    let up = digits.windows(2).all(|w| w[1] == w[0] + 1);
    let down = digits.windows(2).all(|w| w[0] == w[1] + 1);
    if up || down {
        return Err(PasscodeError::Consecutive);
    }
    Ok(())
}

/// Computes passcode MACs with the device-derived key. The keyed HMAC
/// state is computed once and cloned per MAC, which halves the work of an
/// anti-peep check.
#[derive(Clone)]
pub struct Macer {
    keyed: HmacSha256,
}

impl Macer {
    pub fn new(key: &[u8; 32]) -> Macer {
        let keyed = <HmacSha256 as Mac>::new_from_slice(key)
            .expect("HMAC-SHA256 takes a key of any length");
        Macer { keyed }
    }

    /// The MAC of a digit sequence (values 0..=9, hashed as ASCII).
    pub fn mac(&self, digits: &[u8]) -> PasscodeMac {
        let mut m = self.keyed.clone();
        let ascii: Zeroizing<Vec<u8>> = Zeroizing::new(digits.iter().map(|d| b'0' + d).collect());
        m.update(&ascii);
        PasscodeMac(m.finalize().into_bytes().into())
    }
}

impl core::fmt::Debug for Macer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Macer(..)")
    }
}

/// What a stored passcode opens as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasscodeTarget {
    /// A user's own code, or their duress code (B-6.9).
    User {
        user: UserNumber,
        credential: CredentialId,
        duress: bool,
    },
    /// A visitor code made in the app (B-6.10).
    Temp(TempPasscodeId),
}

/// Every window `(start, len)` of an input of `n` digits that could be a
/// passcode, longest first, then earliest: the order in which matches are
/// preferred.
pub fn windows(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (limits::PASSCODE_MIN..=limits::PASSCODE_MAX.min(n))
        .rev()
        .flat_map(move |len| (0..=n - len).map(move |start| (start, len)))
}

/// The MAC → target index. Lookups cost one MAC per window of the input.
#[derive(Debug, Default, Clone)]
pub struct PasscodeIndex {
    map: HashMap<PasscodeMac, PasscodeTarget>,
}

impl PasscodeIndex {
    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn insert(&mut self, mac: PasscodeMac, target: PasscodeTarget) {
        self.map.insert(mac, target);
    }

    /// B-6.4: the stored code found in `input`, preferring the longest
    /// window, then the earliest. Every window is MACed exactly once.
    pub fn find(&self, macer: &Macer, input: &[u8]) -> Option<PasscodeTarget> {
        if self.map.is_empty() {
            return None;
        }
        windows(input.len()).find_map(|(s, l)| self.map.get(&macer.mac(&input[s..s + l])).copied())
    }

    /// The stored code that is exactly `code` (no anti-peep windows: a
    /// remote channel sends the code itself, and one attempt tests one code).
    pub fn exact(&self, macer: &Macer, code: &[u8]) -> Option<PasscodeTarget> {
        self.map.get(&macer.mac(code)).copied()
    }

    /// Whether `code` equals or contains a stored code (other than the ones
    /// `ignore` accepts, e.g. the code being replaced).
    pub fn conflicts(
        &self,
        macer: &Macer,
        code: &[u8],
        ignore: impl Fn(&PasscodeTarget) -> bool,
    ) -> bool {
        windows(code.len()).any(|(s, l)| {
            self.map
                .get(&macer.mac(&code[s..s + l]))
                .is_some_and(|t| !ignore(t))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Vec<u8> {
        s.bytes().map(|b| b - b'0').collect()
    }

    /// The stored form of a code is HMAC-SHA256 over its ASCII digits: a
    /// lock updated to a new release must still open with the codes its
    /// store holds. Known answer computed outside latchd (Python:
    /// `hmac.new(bytes([7] * 32), b"802468", hashlib.sha256)`).
    #[test]
    fn a_codes_mac_is_hmac_sha256_of_its_ascii_digits() {
        let mac = Macer::new(&[7; 32]).mac(&d("802468"));
        assert_eq!(
            hex::encode(mac.0),
            "4ed554e5dcc850c5020ed72ffab43fa278c0e1d82cbc77a2414c734055dd923a"
        );
    }

    /// Neither a code nor the MAC key ever reaches a log through `Debug`.
    #[test]
    fn debug_forms_show_no_digits_and_no_key() {
        let code = Passcode::from_digits(&d("802468")).expect("valid");
        assert_eq!(format!("{code:?}"), "Passcode(6 digits)");
        assert_eq!(format!("{:?}", Macer::new(&[7; 32])), "Macer(..)");
    }

    #[test]
    fn rules_of_b2_3() {
        assert!(check_rules(&d("135790")).is_ok());
        assert_eq!(check_rules(&d("12345")), Err(PasscodeError::Length(5)));
        assert_eq!(
            check_rules(&d("12345678901")),
            Err(PasscodeError::Length(11))
        );
        assert_eq!(check_rules(&d("111111")), Err(PasscodeError::AllSame));
        assert_eq!(check_rules(&d("123456")), Err(PasscodeError::Consecutive));
        assert_eq!(
            check_rules(&d("9876543210")),
            Err(PasscodeError::Consecutive)
        );
        assert!(check_rules(&d("890123")).is_ok());
        assert_eq!(
            Passcode::parse("12a456").unwrap_err(),
            PasscodeError::NotDigits
        );
    }

    #[test]
    fn window_count_for_16_and_32_digits() {
        assert_eq!(windows(16).count(), 45);
        assert_eq!(windows(32).count(), 125);
        assert_eq!(windows(5).count(), 0);
        assert_eq!(windows(6).count(), 1);
    }

    #[test]
    fn longest_window_wins() {
        let m = Macer::new(&[1; 32]);
        let mut idx = PasscodeIndex::default();
        let short = PasscodeTarget::Temp(TempPasscodeId(1));
        let long = PasscodeTarget::Temp(TempPasscodeId(2));
        idx.insert(m.mac(&d("246813")), short);
        idx.insert(m.mac(&d("0246813")), long);
        assert_eq!(idx.find(&m, &d("990246813")), Some(long));
        assert_eq!(idx.find(&m, &d("246813")), Some(short));
        assert!(idx.conflicts(&m, &d("2468139"), |_| false));
        assert!(!idx.conflicts(&m, &d("2468139"), |_| true));
    }
}
