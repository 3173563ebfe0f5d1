//! The lock's front-panel link to its fingerprint module (issue 13 item 7):
//! a random per-lock module password, set on the module once and verified
//! at every session, so a module swapped in from outside is refused.
//!
//! ```text
//!   connect(lock password, Pairing)
//!     VfyPwd(lock) ── ok ──────────────────────────────► trusted session
//!        │ 0x13 wrong password
//!        ├─ Pairing::Verify ───────────────────────────► ForeignModule (never used)
//!        └─ Pairing::AdoptFactory
//!             VfyPwd(0) ── 0x13 ───────────────────────► ForeignModule
//!                 │ ok (factory-fresh module)
//!             SetPwd(lock) → VfyPwd(lock) ─────────────► trusted session
//! ```
//!
//! `AdoptFactory` is used only when the lock has just created its password
//! (first start) or an administrator asked to re-pair after replacing the
//! module; it adopts a module at the factory password 0 and nothing else,
//! so a module that was set up elsewhere (someone else's password, someone
//! else's fingers) is never adopted.
//!
//! What this does not stop: the R30x protocol sends the password in the
//! clear and does not authenticate the module's replies, so whoever taps
//! the UART behind the outside panel learns the password, and a device
//! that answers "ok" to any VfyPwd passes. See the README's threat table.

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use super::driver::{Fingerprint, FingerprintConfig, FingerprintError, ModuleCode};

/// The password a module leaves the factory with.
pub const FACTORY_PASSWORD: u32 = 0;

/// Which modules a connection accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pairing {
    /// Only a module that knows the lock's password.
    Verify,
    /// Also a factory-fresh module (password 0), which is given the lock's
    /// password first: first start, or an administrator's re-pair.
    AdoptFactory,
}

/// What the daemon hands the board at start: the lock's password and
/// whether this start may adopt a factory-fresh module (the password was
/// made just now, first start) or only verify.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ModuleLink {
    pub password: u32,
    pub pairing: Pairing,
}

impl std::fmt::Debug for ModuleLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleLink")
            .field("pairing", &self.pairing)
            .finish_non_exhaustive()
    }
}

/// A fresh random module password (never the factory 0).
pub fn generate_password() -> Result<u32, getrandom::Error> {
    loop {
        let mut b = [0u8; 4];
        getrandom::getrandom(&mut b)?;
        let p = u32::from_be_bytes(b);
        if p != FACTORY_PASSWORD {
            return Ok(p);
        }
    }
}

fn wrong_password(e: &FingerprintError) -> bool {
    matches!(
        e,
        FingerprintError::Module {
            code: ModuleCode::WrongPassword,
            ..
        }
    )
}

/// Opens a session with the module on `stream` under the lock's
/// `password` (`config.password` is ignored). Fails with
/// [`FingerprintError::ForeignModule`] for a module that does not know
/// the password (and, with [`Pairing::AdoptFactory`], is not factory-fresh
/// either); no other instruction is sent to such a module.
pub async fn connect<S>(
    stream: S,
    config: FingerprintConfig,
    password: u32,
    pairing: Pairing,
) -> Result<Fingerprint<S>, FingerprintError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    if password == FACTORY_PASSWORD {
        return Err(FingerprintError::FactoryPassword);
    }
    let mut module = Fingerprint::attach(stream, FingerprintConfig { password, ..config });
    match module.verify(password).await {
        Ok(()) => {}
        Err(e) if wrong_password(&e) && pairing == Pairing::AdoptFactory => {
            match module.verify(FACTORY_PASSWORD).await {
                Ok(()) => {}
                Err(e) if wrong_password(&e) => {
                    warn!("fingerprint module knows neither the lock's nor the factory password");
                    return Err(FingerprintError::ForeignModule);
                }
                Err(e) => return Err(e),
            }
            module.set_password(password).await?;
            // Proves the module kept it before anything is trusted to it.
            module.verify(password).await?;
            info!("fingerprint module paired: it now holds the lock's module password");
        }
        Err(e) if wrong_password(&e) => {
            warn!("fingerprint module does not know the lock's password: refused");
            return Err(FingerprintError::ForeignModule);
        }
        Err(e) => return Err(e),
    }
    module.read_capacity().await?;
    Ok(module)
}
