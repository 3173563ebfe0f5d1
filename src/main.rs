//! `latchd`: the daemon that runs the lock.
//!
//! ```text
//!   latchd [--config FILE] [--state-dir DIR] [--headless]
//!          [--control-socket PATH] [--dbus off|session|system|ADDRESS]
//!      │ defaults ◄ config file ◄ command line
//!      ▼
//!   tracing (journald-friendly) → tokio runtime → daemon::run → exit code
//! ```
//!
//! With no arguments it runs the simulated lock with the built-in defaults,
//! its state in `$XDG_STATE_HOME/latchd` (or `./.latchd-state`), the front
//! panel in the terminal and the control socket at
//! `<state-dir>/control.sock`.
//!
//! Exit codes: 0 clean shutdown (SIGTERM/SIGINT/quit), 1 the lock could
//! not start or failed, 2 bad command line or configuration, 75 a factory
//! reset retired the device key: start again to run under a new one
//! (systemd does, `RestartForceExitStatus=75`).
//!
//! `latchd --key-step` (root, `latchd-key.service`) creates, migrates or
//! rotates the TPM-sealed key credential and exits (`store::keystore`).
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, unused_qualifications)]
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use latchd::board::coast::{coast_from_files, CoastError, Coasted};
use latchd::config::{self, BoardKind, Config};
use latchd::daemon::{self, Options};
use latchd::dbus::BusChoice;

#[derive(Debug, Parser)]
#[command(
    name = "latchd",
    version,
    about = "The daemon that runs a smart door lock"
)]
struct Cli {
    /// Configuration file (TOML; see config/latchd.toml). Default: the
    /// built-in defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the database and device key live. Default: `state_dir` from the
    /// config, else $STATE_DIRECTORY, $XDG_STATE_HOME/latchd or ./.latchd-state.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// No terminal front panel (services, tests). The control socket is
    /// always served in this mode on the sim board.
    #[arg(long)]
    headless: bool,
    /// Control socket path (sim board). Default: <state-dir>/control.sock.
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// D-Bus diagnostics: `off`, `session`, `system` or a D-Bus address.
    /// Default: `[dbus] bus` from the config (`off`).
    #[arg(long, value_name = "BUS")]
    dbus: Option<String>,
    /// Simulate SET held while the battery goes in (B-10.6 factory reset).
    #[arg(long)]
    set_held: bool,
    /// Run the privileged key step and exit (latchd-key.service, as root):
    /// create, migrate or rotate the TPM-sealed device key credential for
    /// `[key] storage` = "tpm2" or "host" (see store::keystore).
    #[arg(long)]
    key_step: bool,
}

fn main() -> ExitCode {
    // Safety first, before anything that can fail (the command line, the
    // config, the store): a motor a killed predecessor left energised
    // stops here (`board::coast`, docs/motor-safety.md).
    let early_coast = coast_first();
    let cli = Cli::parse();
    let config = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("latchd: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    let dbus_word = cli.dbus.clone().unwrap_or_else(|| config.dbus.bus.clone());
    let dbus = if dbus_word == "off" {
        None
    } else {
        match dbus_word.parse::<BusChoice>() {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("latchd: --dbus: {e}, or `off`");
                return ExitCode::from(2);
            }
        }
    };
    let state_dir = cli
        .state_dir
        .clone()
        .or_else(|| config.state_dir.clone())
        .unwrap_or_else(config::default_state_dir);
    let sim = config.board == BoardKind::Sim;
    let front_panel = sim && !cli.headless && std::io::stdout().is_terminal();
    let control_socket = (sim && (cli.headless || config.control.enabled)).then(|| {
        cli.control_socket.clone().unwrap_or_else(|| {
            if config.control.socket.is_empty() {
                state_dir.join("control.sock")
            } else {
                PathBuf::from(&config.control.socket)
            }
        })
    });

    if cli.key_step {
        return key_step(&config, &state_dir);
    }
    if let Err(e) = daemon::create_state_dir(&state_dir) {
        eprintln!("latchd: {e}");
        return ExitCode::from(1);
    }
    if let Err(e) = init_tracing(&config, front_panel, &state_dir) {
        eprintln!("latchd: cannot set up logging: {e}");
        return ExitCode::from(1);
    }
    match early_coast {
        Some(Ok(Coasted::Lines { in1, in2 })) => {
            tracing::info!(%in1, %in2, "motor coasted at start")
        }
        Some(Ok(Coasted::NoMotor)) | None => {}
        Some(Err(e)) => tracing::error!("the motor could not be coasted at start: {e}"),
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("latchd: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = Options {
        config,
        state_dir,
        front_panel,
        control_socket,
        dbus,
        set_held: cli.set_held,
    };
    match runtime.block_on(daemon::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("latchd: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

/// Coast the motor the config file names, reading nothing but argv's
/// `--config FILE` (or `--config=FILE`), that file and the board file, so
/// that a bad command line, config or database cannot stop it. `None` for
/// `--key-step` (the key unit has no GPIO, and the daemon coasts anyway).
fn coast_first() -> Option<Result<Coasted, CoastError>> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.iter().any(|a| a == "--key-step") {
        return None;
    }
    let mut config: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            config = it.next().map(PathBuf::from);
        } else if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            config = Some(PathBuf::from(v));
        }
    }
    let result = coast_from_files(config.as_deref());
    if let Err(e) = &result {
        // Logging is not set up yet; it is logged again once it is.
        eprintln!("latchd: the motor could not be coasted at start: {e}");
    }
    Some(result)
}

/// `latchd --key-step`: the one part of latchd that runs as root and
/// talks to the TPM (through systemd-creds). Exit 0 when the credential
/// is in place and opens, 1 otherwise.
fn key_step(config: &Config, state_dir: &std::path::Path) -> ExitCode {
    use latchd::store::keystore::{self, files, SystemdCreds};
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .with_writer(std::io::stderr)
        .try_init();
    let creds = SystemdCreds {
        tpm2_pcrs: config.key.tpm2_pcrs.clone(),
        ..SystemdCreds::default()
    };
    match keystore::key_step(state_dir, &config.key, &creds, &mut files::no_hook) {
        Ok(done) => {
            println!("latchd key step ({}): {done:?}", config.key.storage.name());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("latchd --key-step: {e}");
            ExitCode::from(1)
        }
    }
}

/// Logs for journald: no colours unless stderr is a terminal, no
/// timestamps under systemd (`JOURNAL_STREAM` set; the journal stamps every
/// line). With the front panel on the terminal, logs go to
/// `<state-dir>/latchd.log` instead so they do not tear the screen.
fn init_tracing(
    config: &Config,
    front_panel: bool,
    state_dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&config.log.level))?;
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if front_panel {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_dir.join("latchd.log"))?;
        builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init()?;
    } else if under_journal {
        builder
            .with_ansi(false)
            .without_time()
            .with_writer(std::io::stderr)
            .try_init()?;
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init()?;
    }
    Ok(())
}
