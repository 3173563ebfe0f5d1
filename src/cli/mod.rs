//! `latchctl`: the technician's and developer's command line for a running
//! latchd, over D-Bus.
//!
//! ```text
//!  latchctl [--bus system|session|ADDR] [--json] <command>
//!      │ clap parses → Context { bus, json }
//!      ▼
//!  Command::Diag(..) ─▶ diag::run ─▶ dbus::client ─▶ org.latchd /org/latchd/Lock
//!  (more subcommand groups plug in here: one module, one variant, one match arm)
//!      │
//!      ▼
//!  table on stdout (or JSON) · message on stderr · exit code from CliError
//! ```
//!
//! Exit codes (also in `latchctl --help` and `docs/dbus.md`):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | latchd answered with an error, or its reply was not understood |
//! | 2 | bad command line |
//! | 3 | latchd is not running (nobody owns `org.latchd`) or stopped while following |
//! | 4 | access denied by the bus policy (not root, not in `latchd-tech`) |
//! | 5 | the bus itself cannot be reached |
//! | 6 | `self-test`: at least one device failed |
use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::dbus::client::ClientError;
use crate::dbus::BusChoice;

pub mod audit;
pub mod ble;
pub mod diag;
#[cfg(feature = "matter")]
pub mod matter;
pub mod remote;
pub mod schedule;
pub mod sim;

/// Printed under `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  latchd answered with an error, or its reply was not understood
  2  bad command line
  3  latchd is not running (nobody owns org.latchd), or it stopped while following
  4  access denied by the D-Bus policy (run as root or as a member of latchd-tech)
  5  the D-Bus bus cannot be reached
  6  self-test: at least one device failed
  remote: 1 the lock refused (reason printed), 3 the lock is offline (nothing sent),
          4 the broker refused the login, 5 the broker cannot be reached, 7 TLS failed,
          8 no answer in time";

/// Talk to a running latchd over D-Bus.
#[derive(Debug, Parser)]
#[command(name = "latchctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Bus to use: `system`, `session`, or a D-Bus address such as `unix:path=/tmp/bus`.
    #[arg(long, global = true, default_value = "system")]
    pub bus: BusChoice,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Every command group. A new group is a module with its own `Subcommand`
/// enum, flattened in here, and one arm in [`run_command`].
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Diag(diag::DiagCommand),
    /// Drive the simulated lock through its control socket (sim board only).
    Sim(sim::SimArgs),
    /// Talk to a lock over Bluetooth LE as the app would (BlueZ).
    Ble(ble::BleArgs),
    /// The Matter node's onboarding codes, from the lock's store (`label`).
    #[cfg(feature = "matter")]
    Matter(matter::MatterArgs),
    /// Talk to a lock through the MQTT broker with the `ble` key file.
    Remote(remote::RemoteArgs),
}

/// What every command needs besides its own arguments.
#[derive(Debug, Clone)]
pub struct Context {
    pub bus: BusChoice,
    pub json: bool,
}

/// Why a command failed; decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Boxed: zbus errors are large and this travels up every call.
    #[error(transparent)]
    Client(Box<ClientError>),
    #[error("latchd left the bus while following events (restarted or stopped)")]
    DaemonStopped,
    #[error("self-test: {failed} of {total} devices failed")]
    SelfTestFailed { failed: usize, total: usize },
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
    #[error("cannot encode JSON output: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error(transparent)]
    Sim(#[from] sim::SimCliError),
    #[error(transparent)]
    Ble(#[from] ble::BleCliError),
    #[cfg(feature = "matter")]
    #[error(transparent)]
    Matter(#[from] matter::MatterCliError),
    #[error(transparent)]
    Remote(#[from] remote::RemoteCliError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError::Client(Box::new(e))
    }
}

impl CliError {
    /// The documented exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Client(e) => match **e {
                ClientError::NotRunning(_) => 3,
                ClientError::AccessDenied(_) => 4,
                ClientError::Connect { .. } => 5,
                _ => 1,
            },
            CliError::DaemonStopped => 3,
            CliError::SelfTestFailed { .. } => 6,
            CliError::Sim(e) => e.exit_code(),
            CliError::Ble(e) => e.exit_code(),
            CliError::Remote(e) => e.exit_code(),
            _ => 1,
        }
    }
}

/// Dispatch one parsed command.
pub async fn run_command(ctx: &Context, command: Command) -> Result<(), CliError> {
    match command {
        Command::Diag(cmd) => diag::run(ctx, cmd).await,
        Command::Sim(args) => Ok(sim::run(args, ctx.json, &mut io::stdout())?),
        Command::Ble(args) => Ok(ble::run(args, ctx.json, &mut io::stdout()).await?),
        #[cfg(feature = "matter")]
        Command::Matter(args) => Ok(matter::run(args, ctx.json, &mut io::stdout())?),
        Command::Remote(args) => Ok(remote::run(args, ctx.json, &mut io::stdout()).await?),
    }
}

/// `latchctl`'s `main`: parse, run, report.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Context {
        bus: cli.bus,
        json: cli.json,
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
        .and_then(|rt| rt.block_on(run_command(&ctx, cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `latchctl events --follow | head`: the reader left; not an error.
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            // Error texts can carry the daemon's words: keep them one safe line.
            eprintln!("latchctl: {}", diag::sanitize(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}
