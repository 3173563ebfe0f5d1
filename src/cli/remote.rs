//! `latchctl remote`: talk to a lock through the MQTT broker as the app
//! would, with the same key file as `latchctl ble` (an owner or guest key
//! from BLE pairing). The work is done by the library's
//! [`crate::remote::client::RemoteClient`]; this module is flags and output.
//!
//! ```text
//!  latchctl remote --host H [--port P] --serial S [--ca-file F [--cert C --key K]]
//!                  [--username U --password-file PW] [--plain] [--key-file F] <cmd>
//!     status | unlock | lock | users | passcodes | settings
//!     set <auto-lock|lockout-protection|remote-unlock|wifi|door-ajar|language|mode> <value>
//!     invite [--hours H] | release-lockout | time-sync
//!     enrol --user N --method <face|palm|fingerprint|passcode>   (the person enrols at the lock)
//!     delete-credential --user N --method <…>                    (the user's newest of that kind)
//!     schedules | schedule-week | schedule-year | holiday | clear-schedules   (cli::schedule)
//!     events [-n N] [--follow]          newest N; then live events and owner notices
//!                                       (sealed to the owner keys, opened with this key)
//! ```
//!
//! Exit codes (on top of `latchctl`'s): 1 the lock refused (the reason is
//! printed: remote unlock off, outside a guest window, stale, forbidden),
//! 3 the lock is offline (nothing was sent), 4 the broker refused the
//! login, 5 the broker cannot be reached, 7 TLS failed, 8 no answer in
//! time.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use crate::app::crypto::StaticKeypair;
use crate::app::request::Setting;
use crate::app::{Request, Response};
use crate::cli::schedule::{schedules_text_json, ScheduleCommand};
use crate::core::time::{Validity, WallTime};
use crate::remote::client::{AppIdentity, ClientSettings, Push, RemoteClient, RemoteClientError};
use crate::remote::config::{is_loopback_host, read_secret_file, TlsMaterial};

/// `latchctl remote …`
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// Broker host.
    #[arg(long)]
    pub host: String,
    /// Broker port; default 8883 with TLS, 1883 with --plain.
    #[arg(long)]
    pub port: Option<u16>,
    /// The lock's serial (its topic level).
    #[arg(long)]
    pub serial: String,
    /// First topic level, as the lock's `[remote] topic_prefix`.
    #[arg(long, default_value = "latchd")]
    pub prefix: String,
    /// PEM CA certificate of the broker (required unless --plain).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (with --key) for brokers that want one.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM key of --cert (mode 0600).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Broker user name (with --password-file).
    #[arg(long, requires = "password_file")]
    pub username: Option<String>,
    /// File (mode 0600) holding the broker password on one line.
    #[arg(long, requires = "username")]
    pub password_file: Option<PathBuf>,
    /// Plain MQTT without TLS: only to a broker on this machine.
    #[arg(long)]
    pub plain: bool,
    /// The key file from `latchctl ble pair` / `redeem`.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Seconds to wait for the broker and for the lock's answer.
    #[arg(long, default_value_t = 15)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: RemoteCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SettingName {
    AutoLock,
    LockoutProtection,
    RemoteUnlock,
    Wifi,
    /// Seconds a door may stand open before the door-ajar alarm; 0 = off.
    DoorAjar,
    /// The prompt language: `en` or `zh-TW` (issue 17 item 4).
    Language,
    /// The operating mode: normal, vacation, privacy, no-remote, passage
    /// (issue 18 item 2).
    Mode,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MethodName {
    Face,
    Palm,
    Fingerprint,
    Passcode,
}

impl MethodName {
    fn method(self) -> crate::app::request::CredentialMethod {
        use crate::app::request::CredentialMethod as M;
        match self {
            MethodName::Face => M::Face,
            MethodName::Palm => M::Palm,
            MethodName::Fingerprint => M::Fingerprint,
            MethodName::Passcode => M::Passcode,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Put the lock into enrolment for existing user N (owner key); the
    /// person then enrols at the lock within 2 minutes ("↩" cancels).
    Enrol {
        #[arg(long)]
        user: u16,
        #[arg(long)]
        method: MethodName,
    },
    /// Delete user N's newest credential of one kind (owner key).
    DeleteCredential {
        #[arg(long)]
        user: u16,
        #[arg(long)]
        method: MethodName,
    },
    /// The lock's status (owner key).
    Status,
    /// Unlock (needs remote unlock on; a guest inside its window).
    Unlock,
    /// Lock.
    Lock,
    /// List the users (owner key).
    Users,
    /// List the temporary passcodes, never their digits (owner key).
    Passcodes,
    /// Show the settings (owner key).
    Settings,
    /// Change one setting (owner key): on/off, seconds (0 = off) for
    /// auto-lock and door-ajar, `en` or `zh-TW` for language, normal,
    /// vacation, privacy, no-remote or passage for mode.
    Set { name: SettingName, value: String },
    /// A one-time guest pairing code valid from now for H hours (owner).
    Invite {
        #[arg(long, default_value_t = 24)]
        hours: u32,
    },
    /// End an active lockout early (owner key).
    ReleaseLockout,
    /// Set the lock's clock from this machine's (owner key).
    TimeSync,
    /// Install the RAUC bundle at URL when the lock is safe (owner key):
    /// door closed, bolt out, battery; progress and the result are in the
    /// event log (`events --follow`). Not newer than the running version:
    /// refused unless --allow-older.
    Update {
        /// An http:// or https:// URL the lock can reach.
        #[arg(long)]
        url: String,
        #[arg(long)]
        allow_older: bool,
    },
    /// The schedules (issue 17 item 2): schedules, schedule-week,
    /// schedule-year, holiday, clear-schedules (`cli::schedule`).
    #[command(flatten)]
    Schedule(ScheduleCommand),
    /// The newest events (owner key); with --follow, then the live events
    /// and owner notices (duress, unlock while away, lockout), both sealed
    /// to each owner key and opened with this one, until interrupted.
    /// `-n 0 --follow`: no history (a guest key may follow; it opens
    /// nothing).
    Events {
        #[arg(short = 'n', long, default_value_t = 10)]
        limit: u8,
        #[arg(long)]
        follow: bool,
    },
}

/// Why `latchctl remote` failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteCliError {
    #[error("bad argument: {0}")]
    Usage(String),
    #[error("key file {path}: {why}; pair first with `latchctl ble pair --code …`")]
    KeyFile { path: String, why: String },
    #[error(transparent)]
    Client(#[from] RemoteClientError),
    #[error("the lock refused: {0}")]
    Refused(String),
    #[error("the lock answered something unexpected: {0}")]
    Unexpected(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl RemoteCliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RemoteCliError::Usage(_) => 2,
            RemoteCliError::Client(e) => match e {
                RemoteClientError::LockOffline(_)
                | RemoteClientError::WentOffline
                | RemoteClientError::NoChallenge => 3,
                RemoteClientError::Login(_) => 4,
                RemoteClientError::Unreachable { .. } | RemoteClientError::Lost(_) => 5,
                RemoteClientError::Tls(_) => 7,
                RemoteClientError::Timeout(_) => 8,
                _ => 1,
            },
            _ => 1,
        }
    }
}

fn key_path(args: &RemoteArgs) -> PathBuf {
    args.key_file.clone().unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        PathBuf::from(home).join(".config/latchctl/ble-key.json")
    })
}

fn key_err(path: &Path, why: impl std::fmt::Display) -> RemoteCliError {
    RemoteCliError::KeyFile {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// The key file `latchctl ble` writes: `app_secret`, `lock_public` (hex).
fn load_key(path: &Path) -> Result<AppIdentity, RemoteCliError> {
    #[derive(serde::Deserialize)]
    struct KeyFile {
        app_secret: String,
        lock_public: String,
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| key_err(path, e))?);
    let k: KeyFile = serde_json::from_str(&text).map_err(|e| key_err(path, e))?;
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(&k.app_secret, &mut secret[..]).map_err(|e| key_err(path, e))?;
    let mut lock_public = [0u8; 32];
    hex::decode_to_slice(&k.lock_public, &mut lock_public).map_err(|e| key_err(path, e))?;
    Ok(AppIdentity {
        me: StaticKeypair::from_secret_bytes(*secret),
        lock_public,
    })
}

/// The next command counter for this key: above the last one used (kept
/// in `<key file>.remote-counter`) and at least the clock in microseconds,
/// so a lost counter file does not make the lock refuse every command as
/// a replay. Persisted before use.
fn take_counter(key_file: &Path) -> Result<u64, RemoteCliError> {
    let path = PathBuf::from(format!("{}.remote-counter", key_file.display()));
    let last = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().parse::<u64>().map_err(|e| key_err(&path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(key_err(&path, e)),
    };
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let next = (last + 1).max(micros);
    std::fs::write(&path, format!("{next}\n")).map_err(|e| key_err(&path, e))?;
    Ok(next)
}

fn settings(args: &RemoteArgs) -> Result<ClientSettings, RemoteCliError> {
    let usage = |s: String| RemoteCliError::Usage(s);
    let tls = if args.plain {
        if !is_loopback_host(&args.host) {
            return Err(usage(format!(
                "--plain is only for a broker on this machine, not `{}`: the login and the lock's topics would cross the network in clear",
                args.host
            )));
        }
        None
    } else {
        let ca = args.ca_file.as_ref().ok_or_else(|| {
            usage("TLS needs --ca-file (or --plain for a broker on this machine)".into())
        })?;
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))
        };
        let client_auth = match (&args.cert, &args.key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => None,
        };
        let m = TlsMaterial {
            ca_pem: read(ca)?,
            client_auth,
        };
        Some(crate::remote::tls_config(&m).map_err(|e| usage(e.to_string()))?)
    };
    let credentials = match (&args.username, &args.password_file) {
        (Some(u), Some(p)) => Some((
            u.clone(),
            read_secret_file(p).map_err(|why| usage(format!("--password-file: {why}")))?,
        )),
        _ => None,
    };
    Ok(ClientSettings {
        host: args.host.clone(),
        port: args.port.unwrap_or(if args.plain { 1883 } else { 8883 }),
        topic_prefix: args.prefix.clone(),
        serial: args.serial.clone(),
        tls,
        credentials,
        client_id: format!("latchctl-{}", std::process::id()),
        timeout: Duration::from_secs(args.timeout.max(1)),
    })
}

fn on_off(v: &str) -> Result<bool, RemoteCliError> {
    match v {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        other => Err(RemoteCliError::Usage(format!("`{other}`: use on or off"))),
    }
}

fn request_of(cmd: &RemoteCommand) -> Result<Option<Request>, RemoteCliError> {
    let now = || {
        WallTime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        )
    };
    Ok(Some(match cmd {
        // With the software versions and slots (issue 20); a lock from
        // before that answers `MalformedCommand`.
        RemoteCommand::Status => Request::StatusWithUpdate,
        RemoteCommand::Unlock => Request::Unlock,
        RemoteCommand::Lock => Request::Lock,
        RemoteCommand::Users => Request::ListUsers,
        RemoteCommand::Passcodes => Request::ListPasscodes,
        RemoteCommand::Settings => Request::GetSettings,
        RemoteCommand::Set { name, value } => Request::SetSetting(match name {
            SettingName::AutoLock => {
                let s: u16 = value.parse().map_err(|_| {
                    RemoteCliError::Usage(format!("auto-lock `{value}`: seconds, 0 = off"))
                })?;
                Setting::AutoLock((s > 0).then_some(s))
            }
            SettingName::LockoutProtection => Setting::LockoutProtection(on_off(value)?),
            SettingName::RemoteUnlock => Setting::RemoteUnlock(on_off(value)?),
            SettingName::Wifi => Setting::WifiEnabled(on_off(value)?),
            SettingName::DoorAjar => {
                let s: u16 = value.parse().map_err(|_| {
                    RemoteCliError::Usage(format!("door-ajar `{value}`: seconds, 0 = off"))
                })?;
                Setting::DoorAjar((s > 0).then_some(s))
            }
            SettingName::Language => Setting::Language(value.parse().map_err(
                |e: crate::core::lang::UnknownLanguage| RemoteCliError::Usage(e.to_string()),
            )?),
            SettingName::Mode => {
                Setting::OperatingMode(value.parse().map_err(RemoteCliError::Usage)?)
            }
        }),
        RemoteCommand::Invite { hours } => {
            let from = now();
            Request::CreateGuestKey {
                valid_from: from,
                valid_until: WallTime(from.0 + i64::from(*hours) * 3600),
            }
        }
        RemoteCommand::ReleaseLockout => Request::ReleaseLockout,
        RemoteCommand::Enrol { user, method } => Request::EnrolCredential {
            user: *user,
            method: method.method(),
        },
        RemoteCommand::DeleteCredential { user, method } => Request::DeleteCredential {
            user: *user,
            method: method.method(),
        },
        RemoteCommand::TimeSync => Request::TimeSync { now: now() },
        RemoteCommand::Schedule(c) => c.request().map_err(RemoteCliError::Usage)?,
        RemoteCommand::Update { url, allow_older } => Request::StartUpdate {
            url: url.clone(),
            allow_older: *allow_older,
        },
        RemoteCommand::Events {
            limit: 0,
            follow: true,
        } => return Ok(None),
        RemoteCommand::Events { limit, .. } => {
            if !(1..=32).contains(limit) {
                return Err(RemoteCliError::Usage(
                    "-n must be 1..=32 (0 only with --follow: no history)".into(),
                ));
            }
            Request::Events {
                before: None,
                limit: *limit,
            }
        }
    }))
}

fn validity_json(v: &Validity) -> serde_json::Value {
    serde_json::json!({ "from": v.from.map(|t| t.0), "until": v.until.map(|t| t.0) })
}

/// The settings reply as a line and as JSON (`latchctl remote settings`,
/// `latchctl ble settings`).
pub(crate) fn settings_text_json(s: &crate::app::wire::Settings) -> (String, serde_json::Value) {
    (
        format!(
            "auto-lock {}, lockout protection {}, remote unlock {}, Wi-Fi {}, door-ajar alarm {}, language {}, mode {}",
            s.auto_lock_secs.map_or("off".into(), |v| format!("{v} s")),
            s.lockout_protection,
            s.remote_unlock,
            s.wifi_enabled,
            s.door_ajar_secs.map_or("off".into(), |v| format!("{v} s")),
            s.language,
            s.operating_mode.tag(),
        ),
        serde_json::json!({
            "auto_lock_secs": s.auto_lock_secs,
            "lockout_protection": s.lockout_protection,
            "remote_unlock": s.remote_unlock,
            "wifi_enabled": s.wifi_enabled,
            "door_ajar_secs": s.door_ajar_secs,
            "language": s.language.tag(),
            "mode": s.operating_mode.tag(),
        }),
    )
}

fn print(r: &Response, json: bool, out: &mut impl Write) -> Result<(), RemoteCliError> {
    use serde_json::json;
    let (text, doc): (String, serde_json::Value) = match r {
        Response::Ok => ("ok".into(), json!({"result": "ok"})),
        Response::Status(s) => (s.text(), s.json()),
        Response::Users(us) => (
            us.iter()
                .map(|u| format!("user {:>3}  {:?}  {:?}", u.user, u.role, u.credentials))
                .collect::<Vec<_>>()
                .join("\n"),
            json!(us
                .iter()
                .map(|u| json!({
                    "user": u.user,
                    "role": format!("{:?}", u.role).to_lowercase(),
                    "validity": validity_json(&u.validity),
                    "credentials": format!("{:?}", u.credentials),
                }))
                .collect::<Vec<_>>()),
        ),
        Response::Passcodes(ps) => (
            ps.iter()
                .map(|p| {
                    format!(
                        "id {:>3}  {:?}{}",
                        p.id,
                        p.kind,
                        if p.used { "  used" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            json!(ps
                .iter()
                .map(|p| json!({"id": p.id, "kind": format!("{:?}", p.kind), "used": p.used}))
                .collect::<Vec<_>>()),
        ),
        Response::Settings(s) => settings_text_json(s),
        Response::Schedules(list) => schedules_text_json(list),
        Response::GuestKeyCreated { .. } => (format!("{r:?}"), json!({"result": format!("{r:?}")})),
        Response::Events { events, .. } => (
            events
                .iter()
                .map(|e| {
                    format!(
                        "#{:<6} {}  {}{}",
                        e.cursor,
                        e.at.map(|t| t.0.to_string()).unwrap_or_else(|| "-".into()),
                        e.kind.name(),
                        e.user.map(|u| format!(" user {u:03}")).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            json!(events
                .iter()
                .map(|e| json!({
                    "cursor": e.cursor,
                    "at": e.at.map(|t| t.0),
                    "kind": e.kind.name(),
                    "user": e.user,
                }))
                .collect::<Vec<_>>()),
        ),
        Response::Error { code, detail } => {
            return Err(RemoteCliError::Refused(format!("{code:?}: {detail}")))
        }
        other => return Err(RemoteCliError::Unexpected(format!("{other:?}"))),
    };
    if json {
        writeln!(out, "{doc}")?;
    } else if !text.is_empty() {
        writeln!(out, "{text}")?;
    }
    Ok(())
}

fn print_push(p: &Push, json: bool, out: &mut impl Write) -> Result<(), RemoteCliError> {
    use serde_json::json;
    match (p, json) {
        (Push::Event(v), true) => writeln!(out, "{}", json!({"event": v}))?,
        (Push::Event(v), false) => writeln!(
            out,
            "event #{} {} {}",
            v["id"],
            v["kind"].as_str().unwrap_or("?"),
            v["detail"].as_str().unwrap_or("")
        )?,
        (Push::Notice(e), true) => writeln!(
            out,
            "{}",
            json!({"notice": {"kind": format!("{:?}", e.kind), "user": e.user, "at": e.at.map(|t| t.0)}})
        )?,
        (Push::Notice(e), false) => writeln!(out, "NOTICE {:?} user {:?}", e.kind, e.user)?,
    }
    out.flush()?;
    Ok(())
}

/// Run one `latchctl remote` command.
pub async fn run(args: RemoteArgs, json: bool, out: &mut impl Write) -> Result<(), RemoteCliError> {
    let s = settings(&args)?;
    let key_file = key_path(&args);
    let id = load_key(&key_file)?;
    let follow = matches!(args.command, RemoteCommand::Events { follow: true, .. });
    let request = request_of(&args.command)?;
    let counter = take_counter(&key_file)?;
    let mut client = RemoteClient::connect(&s, id, counter, follow).await?;
    if let Some(r) = request {
        let answer = client.request(&r).await;
        // The counter file already holds the first counter; one command
        // per run, so nothing more to persist.
        let answer = answer?;
        print(&answer, json, out)?;
    }
    if follow {
        while let Some(p) = client.next_push().await {
            print_push(&p, json, out)?;
        }
        return Err(RemoteClientError::Lost("the broker closed the connection".into()).into());
    }
    client.close().await;
    Ok(())
}
