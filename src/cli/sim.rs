//! `latchctl sim …`: press the simulated lock's buttons through a running
//! latchd's control socket (sim board only; `docs/control-socket.md`).
//!
//! ```text
//!   latchctl sim press 123456✓ ─► {"cmd":"press","keys":"123456✓"}\n ─► control.sock
//!                               ◄─ {"ok":true}\n  (after the engine handled it)
//! ```
//!
//! Output is plain text (`--json` prints the daemon's reply line as is).
//! A refused command prints the daemon's reason and exits 1; no socket
//! (latchd not running, or not on the sim board) exits 3.
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::control::Request;

/// Arguments of `latchctl sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// The control socket. Default: <state-dir>/control.sock for the
    /// default state dir ($XDG_STATE_HOME/latchd or ./.latchd-state).
    #[arg(long, value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: SimCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OpenClose {
    Open,
    Close,
}

/// One simulated input or query.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Press keypad keys: 0-9, ✓ or # (confirm), ↩ or * (back), a (away), d (doorbell).
    Press { keys: String },
    /// Touch the keypad (wakes it; starts manual face recognition).
    Touch,
    /// Hold one key until the keypad flashes (`hold 0` = one-time mute).
    Hold { key: String },
    /// Press SET on the back panel (`--long` holds it: pairing mode).
    Set {
        #[arg(long)]
        long: bool,
    },
    /// Press the electronic lock button on the back panel.
    LockButton,
    /// Turn the inside handle.
    Handle,
    /// Turn the mechanical key.
    Key,
    /// Open or close the door.
    Door { state: OpenClose },
    /// Remove (open) or refit (close) the front panel: the tamper switch.
    Tamper { state: OpenClose },
    /// Set the battery charge and/or USB-C emergency power.
    Battery {
        #[arg(long)]
        percent: Option<u8>,
        #[arg(long)]
        external: Option<bool>,
    },
    /// Person N puts a finger on the reader.
    Finger { person: u32 },
    /// Person N holds a palm over the palm-vein window.
    Palm { person: u32 },
    /// Person N steps in front of the camera (no number: they leave).
    Face { person: Option<u32> },
    /// Make the next N motor moves jam.
    Jam {
        #[arg(default_value_t = 1)]
        moves: u32,
    },
    /// Wait until the motor is idle and the engine has handled everything.
    Settle,
    /// Engine status, daemon counters and the simulated board.
    Status,
    /// The last N voice prompts.
    Prompts {
        #[arg(default_value_t = 10)]
        n: usize,
    },
    /// The last N logged events.
    Events {
        #[arg(default_value_t = 10)]
        n: usize,
    },
}

impl SimCommand {
    /// The control-socket request for this command.
    pub fn request(&self) -> Request {
        match self {
            SimCommand::Press { keys } => Request::Press { keys: keys.clone() },
            SimCommand::Touch => Request::Touch {},
            SimCommand::Hold { key } => Request::Hold { key: key.clone() },
            SimCommand::Set { long } => Request::Set { long: *long },
            SimCommand::LockButton => Request::LockButton {},
            SimCommand::Handle => Request::Handle {},
            SimCommand::Key => Request::Key {},
            SimCommand::Door { state } => Request::Door {
                open: *state == OpenClose::Open,
            },
            SimCommand::Tamper { state } => Request::Tamper {
                open: *state == OpenClose::Open,
            },
            SimCommand::Battery { percent, external } => Request::Battery {
                percent: *percent,
                external: *external,
            },
            SimCommand::Finger { person } => Request::Finger { person: *person },
            SimCommand::Palm { person } => Request::Palm { person: *person },
            SimCommand::Face { person } => Request::Face { person: *person },
            SimCommand::Jam { moves } => Request::Jam { moves: *moves },
            SimCommand::Settle => Request::Settle {},
            SimCommand::Status => Request::Status {},
            SimCommand::Prompts { n } => Request::Prompts { n: Some(*n) },
            SimCommand::Events { n } => Request::Events { n: Some(*n) },
        }
    }
}

/// Why `latchctl sim` failed.
#[derive(Debug, thiserror::Error)]
pub enum SimCliError {
    #[error("cannot connect to the control socket {path}: {source}; is latchd running on the sim board? (give --socket <state-dir>/control.sock)")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("latchd refused: {0}")]
    Refused(String),
    #[error("latchd's reply was not understood: {0}")]
    BadReply(String),
}

impl SimCliError {
    /// `latchctl`'s exit code for this failure (3 = latchd not reachable).
    pub fn exit_code(&self) -> u8 {
        match self {
            SimCliError::Connect { .. } => 3,
            _ => 1,
        }
    }
}

fn default_socket() -> PathBuf {
    crate::config::default_state_dir().join("control.sock")
}

/// Send one request and return the reply object (`ok` checked).
pub fn call(path: &std::path::Path, request: &Request) -> Result<Value, SimCliError> {
    let io = |source| SimCliError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| SimCliError::Connect {
        path: path.to_owned(),
        source,
    })?;
    // `settle` can take a few motor moves; anything longer is a hang.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let mut line =
        serde_json::to_string(request).map_err(|e| SimCliError::BadReply(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).map_err(io)?;
    let value: Value =
        serde_json::from_str(reply.trim()).map_err(|e| SimCliError::BadReply(e.to_string()))?;
    match value.get("ok") {
        Some(Value::Bool(true)) => Ok(value),
        Some(Value::Bool(false)) => Err(SimCliError::Refused(
            value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
                .to_owned(),
        )),
        _ => Err(SimCliError::BadReply(reply.trim().to_owned())),
    }
}

/// Run `latchctl sim …`, printing to `out`.
pub fn run(args: SimArgs, json: bool, out: &mut dyn Write) -> Result<(), SimCliError> {
    let path = args.socket.unwrap_or_else(default_socket);
    let reply = call(&path, &args.command.request())?;
    let w = |out: &mut dyn Write, s: String| {
        writeln!(out, "{s}").map_err(|source| SimCliError::Io {
            path: path.clone(),
            source,
        })
    };
    if json {
        return w(out, reply.to_string());
    }
    match args.command {
        SimCommand::Prompts { .. } => {
            for p in reply["prompts"].as_array().into_iter().flatten() {
                w(
                    out,
                    format!(
                        "{:>9.1}s  {}",
                        p["at_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                        p["text"].as_str().unwrap_or("")
                    ),
                )?;
            }
        }
        SimCommand::Events { .. } => {
            for e in reply["events"].as_array().into_iter().flatten() {
                w(
                    out,
                    format!(
                        "#{:<6} {:<28} {}",
                        e["id"],
                        e["kind"].as_str().unwrap_or(""),
                        e["detail"].as_str().unwrap_or("")
                    ),
                )?;
            }
        }
        SimCommand::Status => {
            // Strings without their JSON quotes; anything else as JSON.
            let t = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            let (e, s) = (&reply["engine"], &reply["sim"]);
            w(
                out,
                format!(
                    "lock {}  bolt {}  door {}  motor {}  step {}",
                    t(&e["lock"]),
                    t(&s["bolt"]),
                    t(&s["door"]),
                    t(&s["motor"]["state"]),
                    t(&e["step"])
                ),
            )?;
            w(
                out,
                format!(
                    "battery {}%{}  alarms {}  lockout {}  users {} (admins {})",
                    s["power"]["percent"],
                    if s["power"]["external"] == Value::Bool(true) {
                        " +USB-C"
                    } else {
                        ""
                    },
                    e["active_alarms"],
                    e["lockout_active"],
                    e["counts"]["users"],
                    e["counts"]["admins"]
                ),
            )?;
            w(
                out,
                format!(
                    "keypad awake {} lit {}  wake-ups {}",
                    s["keypad"]["awake"], s["keypad"]["lit"], reply["daemon"]["wakeups"]
                ),
            )?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        args: SimArgs,
    }

    #[test]
    fn commands_map_to_requests() {
        let t = T::parse_from(["t", "press", "123456✓"]);
        assert_eq!(
            t.args.command.request(),
            Request::Press {
                keys: "123456✓".into()
            }
        );
        let t = T::parse_from(["t", "--socket", "/x", "door", "open"]);
        assert_eq!(t.args.command.request(), Request::Door { open: true });
        assert_eq!(t.args.socket, Some(PathBuf::from("/x")));
        let t = T::parse_from(["t", "face"]);
        assert_eq!(t.args.command.request(), Request::Face { person: None });
    }

    #[test]
    fn no_socket_is_a_connect_error() {
        let e = call(
            std::path::Path::new("/nonexistent/control.sock"),
            &Request::Status {},
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(e.to_string().contains("is latchd running"));
    }
}
