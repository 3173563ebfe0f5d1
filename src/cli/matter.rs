//! `latchctl matter label`: what the lock's label prints for Matter — the
//! 11-digit manual code and the QR code's `MT:` text — read from the lock's
//! sealed store (so it needs the device key: root, on the lock itself, or
//! at the factory's labelling station).
//!
//! ```text
//!   latchctl matter label --state-dir /var/lib/latchd [--config latchd.toml]
//!     ─► Store::open (the existing key and database only) ─► sealed label blob
//!     ─► manual code 3497-011-2332 · MT:Y.K9042C00KA0648G00 · discriminator
//! ```
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::matter::onboarding::{Onboarding, ONBOARDING_KEY};
use crate::store::{MatterScope, Store, StoreOptions, DB_FILE, KEY_FILE};

#[derive(Debug, Args)]
pub struct MatterArgs {
    #[command(subcommand)]
    pub command: MatterCommand,
}

#[derive(Debug, Subcommand)]
pub enum MatterCommand {
    /// Print the Matter onboarding codes for the lock's label.
    Label {
        /// The lock's state directory (its database and device key).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// The lock's config file, for the vendor and product ids in the QR code.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MatterCliError {
    #[error("no lock state in {0}: start latchd once first (it makes the onboarding secret at its first start)")]
    NoState(PathBuf),
    #[error(
        "latchd has not started its Matter node on this state yet (no onboarding secret stored)"
    )]
    NoLabel,
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Onboarding(#[from] crate::matter::onboarding::OnboardingError),
    #[error("cannot make the QR text: {0}")]
    Qr(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

pub fn run(args: MatterArgs, json: bool, out: &mut dyn Write) -> Result<(), MatterCliError> {
    match args.command {
        MatterCommand::Label { state_dir, config } => {
            let config = match config {
                Some(p) => Config::load(&p)?,
                None => Config::default(),
            };
            let dir = state_dir
                .or_else(|| config.state_dir.clone())
                .unwrap_or_else(crate::config::default_state_dir);
            // Never a first start from here: that would make a new key.
            if !dir.join(KEY_FILE).exists() || !dir.join(DB_FILE).exists() {
                return Err(MatterCliError::NoState(dir));
            }
            let (store, _key) = Store::open(&dir, StoreOptions::default())?;
            let bytes = store
                .matter_blob(MatterScope::Label, ONBOARDING_KEY)?
                .ok_or(MatterCliError::NoLabel)?;
            let o = Onboarding::from_stored(&bytes)?;
            let m = &config.matter;
            let qr = o
                .qr_text(m.vendor_id, m.product_id, cfg!(feature = "board-linux"))
                .map_err(|e| MatterCliError::Qr(format!("{e:?}")))?;
            if json {
                let v = serde_json::json!({
                    "manual_code": o.manual_code(),
                    "manual_code_pretty": o.manual_code_pretty(),
                    "qr": qr,
                    "discriminator": o.discriminator(),
                    "vendor_id": m.vendor_id,
                    "product_id": m.product_id,
                });
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "manual code    {}", o.manual_code_pretty())?;
                writeln!(out, "QR code text   {qr}")?;
                writeln!(out, "discriminator  {}", o.discriminator())?;
                writeln!(
                    out,
                    "vendor/product 0x{:04X}/0x{:04X}",
                    m.vendor_id, m.product_id
                )?;
            }
            Ok(())
        }
    }
}
