//! The control socket: simulated inputs for the sim board over a Unix
//! stream socket, one JSON object per line each way
//! (`docs/control-socket.md` is the reference).
//!
//! ```text
//!   client (latchctl sim, tests, nc -U)            latchd
//!   {"cmd":"press","keys":"123456✓"}\n ───────►  parse ─► SimControl::press
//!                                                        ─► wait until the engine
//!                                                           has handled those inputs
//!   {"ok":true}\n ◄──────────────────────────────
//!   {"cmd":"status"}\n ──────────────────────────► engine status + sim board state
//!   {"ok":true,"engine":{..},"daemon":{..},"sim":{..}}\n ◄──
//!   garbage\n ───────────────────────────────────► {"ok":false,"error":"..."}\n, nothing changes
//! ```
//!
//! Only the simulated board has one: a real lock takes no simulated inputs.
//! The socket is created mode 0600 (owner only); in the default place,
//! `<state-dir>/control.sock`, the 0700 state directory protects it too.
//! An input command is answered after the engine has handled it, so a
//! client that asks `prompts` next sees what that input caused; motor
//! moves take their travel time, which `settle` waits for.
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

use crate::board::sim::{parse_keys, SimControl, SimError};
pub use crate::control::{Request, MAX_EVENTS, MAX_LINE};
use crate::core::input::SetPress;
use crate::link::{event_record, Link, LinkError};
/// How long an input command waits for the engine before answering
/// with an error.
const ENGINE_WAIT: Duration = Duration::from_secs(10);
/// Concurrent connections served; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 16;

/// Why the control socket could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: another latchd is already listening there; stop it or use --control-socket")]
    InUse { path: PathBuf },
    #[error("control socket {path} exists and is not a socket; remove it or choose another path")]
    NotASocket { path: PathBuf },
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Bind `path` with mode 0600, replacing a stale socket left by a crash.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse {
                    path: path.to_owned(),
                });
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(_) => {
            return Err(ControlError::NotASocket {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// What a connection handler needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct ControlContext {
    /// The simulated board's buttons and state.
    pub sim: SimControl,
    /// The running lock: published status, the inputs' barrier count and
    /// the event log (read-only connection).
    pub link: Link,
}

/// Serve connections until `shutdown`; then remove the socket file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    ctx: ControlContext,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let ctx = ctx.clone();
                let stop = shutdown.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = connection(stream, ctx) => {}
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // instead of spinning on a failing accept.
                tracing::warn!("control socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tasks.shutdown().await;
    let _ = std::fs::remove_file(&path);
}

async fn connection(stream: UnixStream, ctx: ControlContext) {
    let (read, mut write) = stream.into_split();
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_LINE));
    while let Some(line) = lines.next().await {
        let (mut reply, close) = match line {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => (handle_line(&line, &ctx).await, false),
            Err(LinesCodecError::MaxLineLengthExceeded) => (
                error_reply(format!("request longer than {MAX_LINE} bytes; closing")),
                true,
            ),
            Err(LinesCodecError::Io(_)) => return,
        };
        reply.push('\n');
        if write.write_all(reply.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

fn error_reply(error: impl std::fmt::Display) -> String {
    json!({"ok": false, "error": error.to_string()}).to_string()
}

/// Handle one request line and return the reply line.
pub async fn handle_line(line: &str, ctx: &ControlContext) -> String {
    let request: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return error_reply(format!("bad request: {e}")),
    };
    match handle(request, ctx).await {
        Ok(value) => value.to_string(),
        Err(e) => error_reply(e),
    }
}

/// Why a request was refused; the message is the reply's `error`.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("hold takes one key, got {0:?}")]
    HoldOneKey(String),
    #[error("battery needs `percent` and/or `external`")]
    BatteryArgs,
    #[error(transparent)]
    Events(#[from] LinkError),
    #[error("the engine has stopped; the daemon is shutting down")]
    EngineStopped,
    #[error("the engine did not handle the input within {0:?}")]
    EngineSlow(Duration),
    #[error("the lock did not settle (motor still moving after 10 rounds)")]
    NotSettled,
}

async fn handle(request: Request, ctx: &ControlContext) -> Result<serde_json::Value, Refused> {
    let sim = &ctx.sim;
    match request {
        Request::Settle {} => {
            settle(ctx).await?;
            wait_for_engine(ctx).await?;
        }
        Request::Status {} => {
            let p = ctx.link.published().borrow().clone();
            return Ok(json!({
                "ok": true,
                "engine": p.engine,
                "daemon": p.daemon,
                "sim": sim.snapshot(),
            }));
        }
        Request::Prompts { n } => {
            let n = n.unwrap_or(10).min(200);
            return Ok(json!({"ok": true, "prompts": sim.prompts(n)}));
        }
        Request::Events { n } => return events(ctx, n.unwrap_or(10).min(MAX_EVENTS)).await,
        input => {
            simulate(sim, input)?;
            // An input: answer once the engine has handled it.
            wait_for_engine(ctx).await?;
        }
    }
    Ok(json!({"ok": true}))
}

/// One simulated input on the sim board.
fn simulate(sim: &SimControl, request: Request) -> Result<(), Refused> {
    match request {
        Request::Press { keys } => sim.press(&parse_keys(&keys)?)?,
        Request::Touch {} => sim.touch()?,
        Request::Hold { key } => {
            let keys = parse_keys(&key)?;
            let [k] = keys[..] else {
                return Err(Refused::HoldOneKey(key));
            };
            sim.hold(k)?
        }
        Request::Set { long } => sim.set(if long {
            SetPress::Long
        } else {
            SetPress::Short
        })?,
        Request::LockButton {} => sim.lock_button()?,
        Request::Handle {} => sim.inside_handle()?,
        Request::Key {} => sim.mechanical_key()?,
        Request::Door { open } => sim.door(open)?,
        Request::Tamper { open } => sim.tamper(open)?,
        Request::Battery { percent, external } => {
            if percent.is_none() && external.is_none() {
                return Err(Refused::BatteryArgs);
            }
            sim.power(percent, external)?
        }
        Request::Finger { person } => sim.finger(person)?,
        Request::Palm { person } => sim.palm(person)?,
        Request::Face { person } => sim.face(person)?,
        Request::Jam { moves } => sim.jam(moves),
        // Queries are answered by `handle`.
        Request::Settle {}
        | Request::Status {}
        | Request::Prompts { .. }
        | Request::Events { .. } => {}
    }
    Ok(())
}

/// The last `n` logged events, oldest first, each with its event as JSON.
async fn events(ctx: &ControlContext, n: usize) -> Result<serde_json::Value, Refused> {
    let stored = ctx.link.recent_events(n).await?;
    let records: Vec<_> = stored
        .iter()
        .rev()
        .map(|s| {
            let mut r = serde_json::to_value(event_record(s.id.0, &s.event)).unwrap_or_default();
            r["event"] = serde_json::to_value(&s.event.kind).unwrap_or_default();
            r
        })
        .collect();
    Ok(json!({"ok": true, "events": records}))
}

/// Wait until the engine has taken every input sent so far.
async fn wait_for_engine(ctx: &ControlContext) -> Result<(), Refused> {
    let target = ctx.link.inputs().sent();
    let mut rx = ctx.link.published();
    let reached = tokio::time::timeout(ENGINE_WAIT, async {
        loop {
            if rx.borrow_and_update().daemon.processed >= target {
                return true;
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    })
    .await;
    match reached {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refused::EngineStopped),
        Err(_) => Err(Refused::EngineSlow(ENGINE_WAIT)),
    }
}

/// Wait for the motor and the engine to be quiet together.
async fn settle(ctx: &ControlContext) -> Result<(), Refused> {
    // A handled input can start a move, and a move's end is an input:
    // go round until both are quiet at once (bounded; a move is < 10 s).
    for _ in 0..10 {
        ctx.sim.motor_idle().await;
        wait_for_engine(ctx).await?;
        if ctx.sim.snapshot().motor == crate::board::sim::MotorState::Idle
            && ctx.link.published().borrow().daemon.processed >= ctx.link.inputs().sent()
        {
            return Ok(());
        }
    }
    Err(Refused::NotSettled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_refuses_a_regular_file_and_replaces_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(bind(&file), Err(ControlError::NotASocket { .. })));
        let sock = dir.path().join("s");
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let l = bind(&sock).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(bind(&sock), Err(ControlError::InUse { .. })));
        drop(l);
    }
}
