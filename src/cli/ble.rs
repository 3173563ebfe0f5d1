//! `latchctl ble`: talk to a lock over Bluetooth LE as the app would, from a
//! Linux machine with BlueZ (a technician's laptop, the VM rig).
//!
//! ```text
//!  latchctl ble [--adapter hci1] [--address AA:BB:..] [--key-file F] <cmd>
//!     scan                      list nearby locks (latchd-*, Improv)
//!     pair --code CODE          owner pairing (lock in pairing mode) → key file
//!     unlock | lock | status    session with the key file's app key
//!     events [--limit N]        the newest events (owner key)
//!     invite --hours H          a one-time guest code (owner key)
//!     redeem --code CODE        pair as a guest with that code → key file
//!     time-sync                 set the lock's clock from this machine's (owner)
//!     settings                  the lock's settings (owner)
//!     language en|zh-TW         the prompt language (owner)
//!     owner-keys                list the owner keys (owner)
//!     schedules | schedule-week | schedule-year | holiday | clear-schedules
//!                               as `latchctl remote` (owner; cli::schedule)
//!     revoke-owner-key --slot N revoke one owner key (owner)
//!     wifi --ssid X --psk Y     Improv Wi-Fi (lock in pairing mode)
//!     wifi-scan                 networks the lock sees (lock in pairing mode)
//!     identify                  the lock says so and flashes "0" (Improv)
//!         │ bluer (ble::gatt_client) ─► lock's GATT application
//! ```
//!
//! The key file (`$HOME/.config/latchctl/ble-key.json`, mode 0600) holds the
//! app's private key and the paired lock's public key: it unlocks the door,
//! guard it like one. Without `--address` the first lock found is used.
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `latchctl ble …`
#[derive(Debug, Args)]
pub struct BleArgs {
    /// Bluetooth adapter to use as the central.
    #[arg(long, default_value = "hci0")]
    pub adapter: String,
    /// The lock's Bluetooth address; default: the first lock found.
    #[arg(long)]
    pub address: Option<String>,
    /// Where the app key and the paired lock's key are kept.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: BleCommand,
}

#[derive(Debug, Subcommand)]
pub enum BleCommand {
    /// List nearby locks.
    Scan {
        /// How long to listen, seconds.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Pair as the owner (hold SET on the lock first).
    Pair {
        /// The verification code from the lock's label (XXXX-XXXX-…).
        #[arg(long)]
        code: String,
    },
    /// Unlock.
    Unlock,
    /// Lock.
    Lock,
    /// Show the lock's status.
    Status,
    /// List the owner notices this key has not acknowledged (owner key),
    /// without acknowledging them. Every other command run with an owner
    /// key prints them (`NOTICE …`) and acknowledges them first.
    Notices,
    /// The schedules (issue 17 item 2; owner key), as `latchctl remote`:
    /// schedules, schedule-week, schedule-year, holiday, clear-schedules.
    #[command(flatten)]
    Schedule(crate::cli::schedule::ScheduleCommand),
    /// Show the newest events (owner key).
    Events {
        /// How many, 1..=32.
        #[arg(long, default_value_t = 10)]
        limit: u8,
    },
    /// Make a one-time guest pairing code valid from now for H hours
    /// (owner key); hand the printed code to the guest.
    Invite {
        #[arg(long, default_value_t = 24)]
        hours: u32,
    },
    /// Pair as a guest with a code from the owner.
    Redeem {
        /// The guest pairing code (XXXX-XXXX-…).
        #[arg(long)]
        code: String,
    },
    /// Set the lock's clock from this machine's clock (owner key).
    TimeSync,
    /// Install the RAUC bundle at URL, or the bundle FILE sent over BLE in
    /// chunks (resumed where the lock has it: run it again after a drop),
    /// when the lock is safe (owner key); progress and the result are in
    /// the event log. Not newer than the running version: refused unless
    /// --allow-older.
    Update {
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        url: Option<String>,
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        allow_older: bool,
    },
    /// Show the settings, the prompt language included (owner key).
    Settings,
    /// Set the prompt language: `en` or `zh-TW` (owner key).
    Language {
        /// `en` (English) or `zh-TW` (Mandarin, Traditional Chinese).
        tag: String,
    },
    /// Set the operating mode (owner key; issue 18 item 2): normal,
    /// vacation, privacy, no-remote or passage. Privacy needs the door
    /// locked and is ended only from inside (handle, key, SET).
    Mode {
        /// normal, vacation, privacy, no-remote or passage.
        name: String,
    },
    /// List the owner keys: slot, administrator, label (owner key).
    OwnerKeys,
    /// Revoke one owner key by its slot (owner key); logged on the lock.
    RevokeOwnerKey {
        #[arg(long)]
        slot: u16,
    },
    /// List the Wi-Fi networks the lock can see, with Improv (hold SET
    /// first).
    WifiScan,
    /// Ask the lock to identify itself: it speaks and flashes "0" (Improv;
    /// at most once per 10 s).
    Identify,
    /// Give the lock Wi-Fi credentials with Improv (hold SET first).
    Wifi {
        #[arg(long)]
        ssid: String,
        /// Empty for an open network.
        #[arg(long, default_value = "")]
        psk: String,
    },
}

/// One owner notice as `latchctl ble` prints it (issue 17 item 8):
/// `NOTICE <kind> user <n> at <time>` (the time in seconds since the
/// epoch, `-` when the lock's clock was not set; no user: `-`), then the
/// notice id and the logged event it points at (a doorbell's snapshot).
pub fn notice_line(n: &crate::app::response::PendingNotice, json: bool) -> String {
    let e = &n.entry;
    if json {
        return serde_json::json!({
            "notice": n.id,
            "kind": e.kind.name(),
            "user": e.user,
            "at": e.at.map(|t| t.0),
            "event": e.cursor,
        })
        .to_string();
    }
    format!(
        "NOTICE {} user {} at {} (notice {}, event {})",
        e.kind.name(),
        e.user.map_or_else(|| "-".into(), |u| format!("{u:03}")),
        e.at.map_or_else(|| "-".into(), |t| t.0.to_string()),
        n.id,
        e.cursor
    )
}

/// Why `latchctl ble` failed.
#[derive(Debug, thiserror::Error)]
pub enum BleCliError {
    #[error("latchctl was built without Bluetooth support; rebuild with --features board-linux")]
    Unsupported,
    #[error("bad argument: {0}")]
    Usage(String),
    #[error("key file {path}: {why}; pair first with `latchctl ble pair --code …`")]
    KeyFile { path: String, why: String },
    #[cfg(feature = "board-linux")]
    #[error(transparent)]
    Ble(#[from] crate::ble::gatt_client::GattClientError),
    #[error("the lock refused: {0}")]
    Refused(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl BleCliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            BleCliError::Usage(_) => 2,
            BleCliError::Unsupported => 5,
            _ => 1,
        }
    }
}

/// Run one `latchctl ble` command.
#[cfg(not(feature = "board-linux"))]
pub async fn run(_args: BleArgs, _json: bool, _out: &mut impl Write) -> Result<(), BleCliError> {
    Err(BleCliError::Unsupported)
}

/// Run one `latchctl ble` command.
#[cfg(feature = "board-linux")]
pub async fn run(args: BleArgs, json: bool, out: &mut impl Write) -> Result<(), BleCliError> {
    imp::run(args, json, out).await
}

#[cfg(feature = "board-linux")]
mod imp {
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use rand_core::OsRng;
    use serde::{Deserialize, Serialize};
    use zeroize::Zeroizing;

    use super::{BleArgs, BleCliError, BleCommand};
    use crate::app::client::PairingSecret;
    use crate::app::crypto::StaticKeypair;
    use crate::app::pairing::{GuestPairingCode, VerificationCode};
    use crate::app::{Request, Response};
    use crate::ble::gatt_client::{self, LockClient};
    use crate::core::time::WallTime;

    #[derive(Serialize, Deserialize)]
    struct KeyFile {
        /// Hex of the app's X25519 secret.
        app_secret: String,
        /// Hex of the lock's public key.
        lock_public: String,
        /// The lock's Bluetooth address.
        address: String,
    }

    fn key_path(args: &BleArgs) -> PathBuf {
        args.key_file.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".config/latchctl/ble-key.json")
        })
    }

    fn key_err(path: &Path, why: impl std::fmt::Display) -> BleCliError {
        BleCliError::KeyFile {
            path: path.display().to_string(),
            why: why.to_string(),
        }
    }

    fn load(path: &Path) -> Result<(StaticKeypair, [u8; 32], String), BleCliError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| key_err(path, e))?);
        let k: KeyFile = serde_json::from_str(&text).map_err(|e| key_err(path, e))?;
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(&k.app_secret, &mut secret[..]).map_err(|e| key_err(path, e))?;
        let mut public = [0u8; 32];
        hex::decode_to_slice(&k.lock_public, &mut public).map_err(|e| key_err(path, e))?;
        Ok((StaticKeypair::from_secret_bytes(*secret), public, k.address))
    }

    fn save(path: &Path, k: &KeyFile) -> Result<(), BleCliError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| key_err(path, e))?;
        }
        let text = Zeroizing::new(serde_json::to_string_pretty(k).map_err(|e| key_err(path, e))?);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| key_err(path, e))?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|e| key_err(path, e))
    }

    fn parse_addr(s: &str) -> Result<bluer::Address, BleCliError> {
        s.parse().map_err(|_| {
            BleCliError::Usage(format!(
                "`{s}` is not a Bluetooth address (AA:BB:CC:DD:EE:FF)"
            ))
        })
    }

    async fn pair_and_save(
        adapter: &bluer::Adapter,
        args: &BleArgs,
        path: &Path,
        secret: PairingSecret,
        out: &mut impl std::io::Write,
    ) -> Result<(), BleCliError> {
        let mut c = connect(adapter, args.address.as_deref()).await?;
        let app = StaticKeypair::generate(&mut OsRng);
        let paired = c.pair_with(&app, secret).await?;
        save(
            path,
            &KeyFile {
                app_secret: hex::encode(&app.secret_bytes()[..]),
                lock_public: hex::encode(paired.lock_public),
                address: c.address.to_string(),
            },
        )?;
        writeln!(
            out,
            "paired with {}; key saved to {}",
            c.address,
            path.display()
        )?;
        Ok(())
    }

    /// Issue 17 item 8: print the owner notices waiting for this key and,
    /// with `ack`, acknowledge them (a page of 20 at a time, up to 4). A
    /// guest key is refused the request: nothing is printed.
    async fn notices(
        c: &mut LockClient,
        app: &StaticKeypair,
        lock_public: [u8; 32],
        ack: bool,
        json: bool,
        out: &mut impl std::io::Write,
    ) -> Result<(), BleCliError> {
        for _ in 0..4 {
            let (list, more) = match c
                .request(app, lock_public, &Request::PendingNotices)
                .await?
            {
                Response::Notices { notices, more } => (notices, more),
                // A guest key, or a lock from before issue 17 item 8.
                _ => return Ok(()),
            };
            for n in &list {
                writeln!(out, "{}", super::notice_line(n, json))?;
            }
            let Some(last) = list.last() else {
                return Ok(());
            };
            if !ack {
                if more > 0 {
                    writeln!(out, "({more} more notices; acknowledge these to see them)")?;
                }
                return Ok(());
            }
            match c
                .request(app, lock_public, &Request::AckNotices { up_to: last.id })
                .await?
            {
                Response::Ok => {}
                other => {
                    return Err(BleCliError::Refused(format!(
                        "notices not acknowledged: {other:?}"
                    )))
                }
            }
            if more == 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    /// After a command, the owner notices waiting for this key, on stderr
    /// (stdout is the command's answer, which scripts and `--json` read),
    /// acknowledged. After the command, so a door opens without waiting
    /// for them; a failure here is said and does not fail the command.
    async fn after_command_notices(
        c: &mut LockClient,
        app: &StaticKeypair,
        lock_public: [u8; 32],
        json: bool,
    ) {
        if let Err(e) = notices(c, app, lock_public, true, json, &mut std::io::stderr()).await {
            eprintln!("owner notices: {e}");
        }
    }

    async fn connect(
        adapter: &bluer::Adapter,
        address: Option<&str>,
    ) -> Result<LockClient, BleCliError> {
        let addr = match address {
            Some(a) => parse_addr(a)?,
            None => {
                let window = Duration::from_secs(10);
                let found = gatt_client::scan(adapter, window, true).await?;
                found
                    .first()
                    .ok_or(gatt_client::GattClientError::NotFound(window))?
                    .address
            }
        };
        Ok(LockClient::connect(adapter, addr).await?)
    }

    pub async fn run(
        args: BleArgs,
        json: bool,
        out: &mut impl std::io::Write,
    ) -> Result<(), BleCliError> {
        let session = bluer::Session::new()
            .await
            .map_err(gatt_client::GattClientError::from)?;
        let adapter = session
            .adapter(&args.adapter)
            .map_err(gatt_client::GattClientError::from)?;
        let path = key_path(&args);
        match &args.command {
            BleCommand::Scan { seconds } => {
                let found =
                    gatt_client::scan(&adapter, Duration::from_secs(*seconds), false).await?;
                if json {
                    let list: Vec<_> = found
                        .iter()
                        .map(|f| {
                            serde_json::json!({
                                "address": f.address.to_string(),
                                "name": f.name,
                                "rssi": f.rssi,
                            })
                        })
                        .collect();
                    writeln!(out, "{}", serde_json::Value::Array(list))?;
                } else {
                    for f in &found {
                        writeln!(
                            out,
                            "{}  {:<14} {}",
                            f.address,
                            f.name.as_deref().unwrap_or("?"),
                            f.rssi.map(|r| format!("{r} dBm")).unwrap_or_default()
                        )?;
                    }
                }
            }
            BleCommand::Pair { code } => {
                let code = VerificationCode::parse(code)
                    .map_err(|e| BleCliError::Usage(format!("verification code: {e}")))?;
                pair_and_save(&adapter, &args, &path, PairingSecret::Owner(code), out).await?;
            }
            BleCommand::Redeem { code } => {
                let code = GuestPairingCode::parse(code)
                    .map_err(|e| BleCliError::Usage(format!("guest code: {e}")))?;
                pair_and_save(&adapter, &args, &path, PairingSecret::Guest(code), out).await?;
            }
            BleCommand::Update {
                file: Some(file),
                allow_older,
                ..
            } => {
                // Read before connecting to the lock: a missing file costs no
                // connection.
                let bytes = std::fs::read(file)
                    .map_err(|e| BleCliError::Usage(format!("{}: {e}", file.display())))?;
                let total = bytes.len() as u64;
                let mut upload = crate::app::client::BundleUpload::new(bytes, *allow_older);
                let (app, lock_public, saved) = load(&path)?;
                let addr = args.address.clone().unwrap_or(saved);
                let mut c = connect(&adapter, Some(&addr)).await?;
                let mut last = 0;
                c.send_bundle(&app, lock_public, &mut upload, |sent| {
                    // A line per 10 %: a progress report, not a flood.
                    let step = sent * 10 / total.max(1);
                    if step > last {
                        last = step;
                        eprintln!("sent {sent} of {total} bytes");
                    }
                })
                .await?;
                writeln!(out, "ok: the lock installs it when it is safe")?;
            }
            BleCommand::Lock
            | BleCommand::Events { .. }
            | BleCommand::Invite { .. }
            | BleCommand::TimeSync
            | BleCommand::Update { .. }
            | BleCommand::OwnerKeys
            | BleCommand::Settings
            | BleCommand::Language { .. }
            | BleCommand::Mode { .. }
            | BleCommand::Schedule(_)
            | BleCommand::RevokeOwnerKey { .. } => {
                let now = WallTime(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or(0),
                );
                // Built first: a bad argument is refused before any radio work.
                let req = match &args.command {
                    BleCommand::Events { limit } => Request::Events {
                        before: None,
                        limit: (*limit).clamp(1, crate::app::request::MAX_EVENTS_PER_PAGE),
                    },
                    BleCommand::Invite { hours } => Request::CreateGuestKey {
                        valid_from: now,
                        valid_until: WallTime(now.0 + i64::from(*hours).max(1) * 3600),
                    },
                    BleCommand::TimeSync => Request::TimeSync { now },
                    BleCommand::Update {
                        url: Some(url),
                        allow_older,
                        ..
                    } => Request::StartUpdate {
                        url: url.clone(),
                        allow_older: *allow_older,
                    },
                    BleCommand::OwnerKeys => Request::ListOwnerKeys,
                    BleCommand::RevokeOwnerKey { slot } => Request::RevokeOwnerKey { slot: *slot },
                    BleCommand::Settings => Request::GetSettings,
                    BleCommand::Schedule(c) => c.request().map_err(BleCliError::Usage)?,
                    BleCommand::Mode { name } => {
                        Request::SetSetting(crate::app::request::Setting::OperatingMode(
                            name.parse().map_err(BleCliError::Usage)?,
                        ))
                    }
                    BleCommand::Language { tag } => Request::SetSetting(
                        crate::app::request::Setting::Language(tag.parse().map_err(
                            |e: crate::core::lang::UnknownLanguage| {
                                BleCliError::Usage(e.to_string())
                            },
                        )?),
                    ),
                    _ => Request::Lock,
                };
                let (app, lock_public, saved) = load(&path)?;
                let addr = args.address.clone().unwrap_or(saved);
                let mut c = connect(&adapter, Some(&addr)).await?;
                match c.request(&app, lock_public, &req).await? {
                    Response::Ok => writeln!(out, "ok")?,
                    Response::GuestKeyCreated {
                        slot,
                        code,
                        code_expires_at,
                    } => {
                        if json {
                            writeln!(
                                out,
                                "{}",
                                serde_json::json!({
                                    "slot": slot,
                                    "code": code.display().as_str(),
                                    "code_expires_at": code_expires_at.0,
                                })
                            )?;
                        } else {
                            writeln!(
                                out,
                                "guest slot {slot}: code {} (redeem before {})",
                                code.display().as_str(),
                                code_expires_at.0
                            )?;
                        }
                    }
                    Response::Settings(s) => {
                        let (text, value) = crate::cli::remote::settings_text_json(&s);
                        if json {
                            writeln!(out, "{value}")?;
                        } else {
                            writeln!(out, "{text}")?;
                        }
                    }
                    Response::Schedules(list) => {
                        let (text, value) = crate::cli::schedule::schedules_text_json(&list);
                        if json {
                            writeln!(out, "{value}")?;
                        } else if !text.is_empty() {
                            writeln!(out, "{text}")?;
                        }
                    }
                    Response::OwnerKeys(keys) => {
                        for k in keys {
                            if json {
                                writeln!(
                                    out,
                                    "{}",
                                    serde_json::json!({
                                        "slot": k.slot,
                                        "admin": k.admin,
                                        "label": k.label,
                                    })
                                )?;
                            } else {
                                writeln!(
                                    out,
                                    "slot {}  administrator {:03}  {}",
                                    k.slot, k.admin, k.label
                                )?;
                            }
                        }
                    }
                    Response::Events { events, .. } => {
                        for e in events {
                            let line = format!(
                                "{} {} {}{}",
                                e.cursor,
                                e.at.map(|t| t.0.to_string()).unwrap_or_else(|| "-".into()),
                                e.kind.name(),
                                e.user.map(|u| format!(" user {u:03}")).unwrap_or_default()
                            );
                            if json {
                                writeln!(
                                    out,
                                    "{}",
                                    serde_json::json!({
                                        "cursor": e.cursor,
                                        "at": e.at.map(|t| t.0),
                                        "kind": e.kind.name(),
                                        "user": e.user,
                                    })
                                )?;
                            } else {
                                writeln!(out, "{line}")?;
                            }
                        }
                    }
                    Response::Error { code, detail } => {
                        return Err(BleCliError::Refused(format!("{code:?}: {detail}")))
                    }
                    other => {
                        return Err(BleCliError::Refused(format!("unexpected answer {other:?}")))
                    }
                }
                after_command_notices(&mut c, &app, lock_public, json).await;
            }
            BleCommand::Notices => {
                let (app, lock_public, saved) = load(&path)?;
                let addr = args.address.clone().unwrap_or(saved);
                let mut c = connect(&adapter, Some(&addr)).await?;
                notices(&mut c, &app, lock_public, false, json, out).await?;
            }
            BleCommand::Unlock | BleCommand::Status => {
                let (app, lock_public, saved) = load(&path)?;
                let addr = args.address.clone().unwrap_or(saved);
                let mut c = connect(&adapter, Some(&addr)).await?;
                let req = if matches!(args.command, BleCommand::Unlock) {
                    Request::Unlock
                } else {
                    Request::StatusWithUpdate
                };
                let mut answer = c.request(&app, lock_public, &req).await?;
                if req == Request::StatusWithUpdate
                    && matches!(
                        answer,
                        Response::Error {
                            code: crate::app::protocol::ErrorCode::MalformedCommand,
                            ..
                        }
                    )
                {
                    // A lock from before issue 20: the plain status.
                    answer = c.request(&app, lock_public, &Request::Status).await?;
                }
                match answer {
                    Response::Ok => writeln!(out, "ok")?,
                    Response::Status(s) => {
                        if json {
                            writeln!(out, "{}", s.json())?;
                        } else {
                            writeln!(out, "{}", s.text())?;
                        }
                    }
                    Response::Error { code, detail } => {
                        return Err(BleCliError::Refused(format!("{code:?}: {detail}")))
                    }
                    other => {
                        return Err(BleCliError::Refused(format!("unexpected answer {other:?}")))
                    }
                }
                after_command_notices(&mut c, &app, lock_public, json).await;
            }
            BleCommand::Identify => {
                let mut c = connect(&adapter, args.address.as_deref()).await?;
                c.improv_identify().await?;
                writeln!(out, "asked the lock to identify itself")?;
            }
            BleCommand::WifiScan => {
                let mut c = connect(&adapter, args.address.as_deref()).await?;
                let networks = c.improv_scan().await?;
                if networks.is_empty() {
                    writeln!(out, "the lock sees no Wi-Fi network")?;
                }
                for n in networks {
                    writeln!(
                        out,
                        "{:<32} {:>4} dBm  {}",
                        String::from_utf8_lossy(&n.ssid),
                        n.rssi_dbm,
                        if n.auth_required { "password" } else { "open" }
                    )?;
                }
            }
            BleCommand::Wifi { ssid, psk } => {
                let mut c = connect(&adapter, args.address.as_deref()).await?;
                c.improv_wifi(ssid.as_bytes(), psk.as_bytes()).await?;
                writeln!(out, "the lock joined `{ssid}`")?;
            }
        }
        Ok(())
    }
}
