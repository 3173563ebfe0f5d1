//! The lock's Matter onboarding secret: a setup passcode and a 12-bit
//! discriminator, random per lock, made at the node's first start and kept
//! sealed ([`BlobScope::Label`]: a factory reset keeps it, because it is
//! printed on the label). The label carries the 11-digit manual code and
//! the `MT:` QR text derived from it.
//!
//! ```text
//!   first start: passcode ← uniform over 1..=99_999_998 minus the spec's
//!                           trivial ones; discriminator ← 0..=4095
//!                └► 6 bytes sealed ─► label: manual code, QR "MT:..."
//! ```
use rand_core::RngCore;

use super::port::{BlobError, BlobScope, LockPort};

/// The onboarding blob's key in [`BlobScope::Label`].
pub const ONBOARDING_KEY: u16 = 1;

/// Matter Core spec 5.1.7.1: setup passcodes a device must never use.
const INVALID_PASSCODES: [u32; 12] = [
    0, 11111111, 22222222, 33333333, 44444444, 55555555, 66666666, 77777777, 88888888, 99999999,
    12345678, 87654321,
];
/// The largest valid setup passcode.
const MAX_PASSCODE: u32 = 99_999_998;
/// Discriminators are 12 bits.
const MAX_DISCRIMINATOR: u16 = 0x0FFF;

/// A lock's onboarding secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Onboarding {
    passcode: u32,
    discriminator: u16,
}

impl core::fmt::Debug for Onboarding {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Onboarding")
            .field("discriminator", &self.discriminator)
            .finish_non_exhaustive()
    }
}

/// A stored onboarding blob that is not one.
#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("the stored Matter onboarding secret is damaged ({0}); the label no longer matches: restore the database or re-label the lock")]
    Damaged(&'static str),
}

impl Onboarding {
    /// A valid passcode and discriminator, or why not.
    pub fn new(passcode: u32, discriminator: u16) -> Result<Onboarding, &'static str> {
        if passcode == 0 || passcode > MAX_PASSCODE || INVALID_PASSCODES.contains(&passcode) {
            return Err("setup passcode not allowed by the Matter specification");
        }
        if discriminator > MAX_DISCRIMINATOR {
            return Err("discriminator wider than 12 bits");
        }
        Ok(Onboarding {
            passcode,
            discriminator,
        })
    }

    /// A fresh random secret. Rejection sampling keeps every valid
    /// passcode equally likely.
    pub fn generate(rng: &mut dyn RngCore) -> Onboarding {
        loop {
            // 27 bits cover 1..=99_999_998 with little waste.
            let passcode = rng.next_u32() & 0x07FF_FFFF;
            let discriminator = (rng.next_u32() & u32::from(MAX_DISCRIMINATOR)) as u16;
            if let Ok(o) = Onboarding::new(passcode, discriminator) {
                return o;
            }
        }
    }

    pub fn passcode(&self) -> u32 {
        self.passcode
    }

    pub fn discriminator(&self) -> u16 {
        self.discriminator
    }

    fn to_bytes(&self) -> [u8; 6] {
        let mut b = [0u8; 6];
        b[..4].copy_from_slice(&self.passcode.to_le_bytes());
        b[4..].copy_from_slice(&self.discriminator.to_le_bytes());
        b
    }

    /// The secret from its stored bytes (`latchctl matter label`).
    pub fn from_stored(b: &[u8]) -> Result<Onboarding, OnboardingError> {
        Self::from_bytes(b)
    }

    fn from_bytes(b: &[u8]) -> Result<Onboarding, OnboardingError> {
        let b: [u8; 6] = b
            .try_into()
            .map_err(|_| OnboardingError::Damaged("wrong length"))?;
        let passcode = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let discriminator = u16::from_le_bytes([b[4], b[5]]);
        Onboarding::new(passcode, discriminator).map_err(OnboardingError::Damaged)
    }

    /// The stored secret, or a new one stored first (the node's first
    /// start). A damaged one is an error, never silently replaced: the
    /// printed label would stop working without anyone knowing why.
    pub fn load_or_create(
        port: &dyn LockPort,
        rng: &mut dyn RngCore,
    ) -> Result<Onboarding, OnboardingError> {
        Self::load_or_create_with(
            || port.blob_load(BlobScope::Label, ONBOARDING_KEY),
            |b| port.blob_store(BlobScope::Label, ONBOARDING_KEY, b),
            rng,
        )
    }

    /// [`Self::load_or_create`] over any storage of the one blob.
    pub fn load_or_create_with(
        load: impl FnOnce() -> Result<Option<Vec<u8>>, BlobError>,
        store: impl FnOnce(&[u8]) -> Result<(), BlobError>,
        rng: &mut dyn RngCore,
    ) -> Result<Onboarding, OnboardingError> {
        if let Some(bytes) = load()? {
            return Onboarding::from_bytes(&bytes);
        }
        let fresh = Onboarding::generate(rng);
        store(&fresh.to_bytes())?;
        tracing::info!("Matter: made this lock's onboarding secret (first start)");
        Ok(fresh)
    }

    /// The 11-digit manual pairing code (standard commissioning flow).
    pub fn manual_code(&self) -> String {
        self.comm_data().compute_pairing_code().to_string()
    }

    /// The manual code as printed: `XXXX-XXX-XXXX`.
    pub fn manual_code_pretty(&self) -> String {
        self.comm_data().compute_pretty_pairing_code().to_string()
    }

    /// The QR code's text (`MT:...`) for this lock's vendor and product.
    /// User-intent flow: the window opens when SET is held (B-5.1).
    pub fn qr_text(
        &self,
        vid: u16,
        pid: u16,
        ble: bool,
    ) -> Result<String, rs_matter::error::Error> {
        use rs_matter::pairing::qr::{no_optional_data, CommFlowType, QrPayload};
        use rs_matter::pairing::DiscoveryCapabilities;
        let mut caps = DiscoveryCapabilities::IP;
        if ble {
            caps |= DiscoveryCapabilities::BLE;
        }
        let payload = QrPayload::new(
            caps,
            CommFlowType::UserIntent,
            self.comm_data(),
            vid,
            pid,
            "",
            no_optional_data,
        );
        let mut buf = [0u8; 256];
        let (text, _) = payload.as_str(&mut buf)?;
        Ok(text.to_string())
    }

    /// What rs-matter needs to run PASE with this secret.
    pub fn comm_data(&self) -> rs_matter::BasicCommData {
        use rs_matter::sc::pase::{Spake2pVerifierPassword, Spake2pVerifierPasswordRef};
        rs_matter::BasicCommData {
            password: Spake2pVerifierPassword::new_from_ref(Spake2pVerifierPasswordRef::new(
                &self.passcode.to_le_bytes(),
            )),
            discriminator: self.discriminator,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u32);
    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_add(1);
            self.0
        }
        fn next_u64(&mut self) -> u64 {
            u64::from(self.next_u32())
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(7);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    #[test]
    fn trivial_passcodes_and_wide_discriminators_are_refused() {
        for bad in INVALID_PASSCODES {
            assert!(Onboarding::new(bad, 1).is_err(), "{bad}");
        }
        assert!(Onboarding::new(MAX_PASSCODE + 1, 1).is_err());
        assert!(Onboarding::new(20202021, 0x1000).is_err());
        assert!(Onboarding::new(20202021, 3840).is_ok());
    }

    #[test]
    fn bytes_round_trip_and_damage_is_reported() {
        let o = Onboarding::new(20202021, 3840).unwrap();
        assert_eq!(Onboarding::from_bytes(&o.to_bytes()).unwrap(), o);
        assert!(Onboarding::from_bytes(&[1, 2, 3]).is_err());
        let mut b = o.to_bytes();
        b[..4].copy_from_slice(&12345678u32.to_le_bytes());
        assert!(Onboarding::from_bytes(&b).is_err());
    }

    #[test]
    fn the_test_vector_gives_chip_tools_manual_code() {
        // connectedhomeip's well-known development values: passcode
        // 20202021, discriminator 3840 → manual code 34970112332.
        let o = Onboarding::new(20202021, 3840).unwrap();
        assert_eq!(o.manual_code(), "34970112332");
        assert_eq!(o.manual_code_pretty(), "3497-011-2332");
        let qr = o.qr_text(0xFFF1, 0x8001, false).unwrap();
        assert!(qr.starts_with("MT:"), "{qr}");
    }

    #[test]
    fn generated_secrets_are_valid() {
        let mut rng = Counter(0);
        for _ in 0..100 {
            let o = Onboarding::generate(&mut rng);
            assert!(Onboarding::new(o.passcode(), o.discriminator()).is_ok());
        }
    }
}
