//! A simulated LPV/1 palm-vein module serving the wire protocol on any byte
//! stream.
//!
//! ```text
//!   test / sim board ─► SimPalmControl ─┐ present(person), withdraw(), inject(fault)
//!                                       │ (wakes the serve loop through a Notify)
//!   driver ◄─ frames ─► SimPalm::serve ◄┘
//!                       select! { request bytes | control change | step deadline }
//! ```
//!
//! A palm is a person number; an enrolled id holds the person it was made
//! from. Enrolment follows the module's script: note PresentPalm(k) → wait
//! for a palm → note Captured(k) → note WithdrawPalm(k) → wait for the palm
//! to leave → … → Duplicate check → store → reply. Each wait has the
//! timeout the host sent; that tokio timer is the only time dependence.
//!
//! Faults (from the control handle):
//! * [`PalmFault::Silence`] — the next request is swallowed;
//! * [`PalmFault::Busy`] — the next request is answered Busy, not executed;
//! * [`PalmFault::BadCrc`] — the next frame the module sends has a bad CRC;
//! * [`PalmFault::Truncated`] — only the first half of the next frame the
//!   module sends arrives (a cable cut or a brown-out mid-frame);
//! * [`PalmFault::Reset`] — the module restarts now: the operation in
//!   progress and its captures are dropped, nothing is stored, and the
//!   power-on note (cmd 0x00, seq 0) is sent.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::driver::{note, PalmCommand, PalmStatus, MAX_CAPTURES, NOTE_READY};
use super::frame::{Decoder, Frame, Kind};

/// A one-shot fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PalmFault {
    Silence,
    Busy,
    BadCrc,
    Reset,
    Truncated,
}

/// Simulated module settings.
#[derive(Clone, Debug)]
pub struct SimPalmConfig {
    pub capacity: u16,
    pub firmware: String,
    pub default_captures: u8,
    pub score: u16,
}

impl Default for SimPalmConfig {
    fn default() -> Self {
        Self {
            capacity: 100,
            firmware: "latchd-sim-palm 1.0".into(),
            default_captures: 3,
            score: 920,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    presented: Option<u32>,
    library: BTreeMap<u16, u32>,
    request_faults: VecDeque<PalmFault>,
    corrupt_next: u32,
    truncate_next: u32,
    reset_pending: bool,
    requests: u64,
    restarts: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Cloneable handle to act on the simulated module.
#[derive(Clone, Debug)]
pub struct SimPalmControl {
    shared: Arc<Shared>,
}

impl SimPalmControl {
    /// `person` holds a palm over the window.
    pub fn present(&self, person: u32) {
        lock(&self.shared).presented = Some(person);
        self.shared.changed.notify_one();
    }

    /// The palm leaves the window.
    pub fn withdraw(&self) {
        lock(&self.shared).presented = None;
        self.shared.changed.notify_one();
    }

    pub fn inject(&self, fault: PalmFault) {
        {
            let mut s = lock(&self.shared);
            match fault {
                PalmFault::Silence | PalmFault::Busy => s.request_faults.push_back(fault),
                PalmFault::BadCrc => s.corrupt_next += 1,
                PalmFault::Truncated => s.truncate_next += 1,
                PalmFault::Reset => s.reset_pending = true,
            }
        }
        self.shared.changed.notify_one();
    }

    /// Enrolled ids → person.
    pub fn templates(&self) -> BTreeMap<u16, u32> {
        lock(&self.shared).library.clone()
    }

    pub fn requests(&self) -> u64 {
        lock(&self.shared).requests
    }

    pub fn restarts(&self) -> u64 {
        lock(&self.shared).restarts
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    WaitPresent(u8),
    WaitWithdraw(u8),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Enroll {
        seq: u8,
        id: u16,
        captures: u8,
        person: Option<u32>,
        phase: Phase,
        step_timeout: Duration,
        deadline: Instant,
    },
    Identify {
        seq: u8,
        deadline: Instant,
    },
}

impl Op {
    fn cmd(&self) -> PalmCommand {
        match self {
            Op::Enroll { .. } => PalmCommand::Enroll,
            Op::Identify { .. } => PalmCommand::Identify,
        }
    }

    fn seq(&self) -> u8 {
        match self {
            Op::Enroll { seq, .. } | Op::Identify { seq, .. } => *seq,
        }
    }

    fn deadline(&self) -> Instant {
        match self {
            Op::Enroll { deadline, .. } | Op::Identify { deadline, .. } => *deadline,
        }
    }
}

/// The simulated module.
#[derive(Debug)]
pub struct SimPalm {
    config: SimPalmConfig,
    shared: Arc<Shared>,
}

/// Starts a simulator on `stream` in a tokio task.
pub fn spawn<S>(
    stream: S,
    config: SimPalmConfig,
) -> (SimPalmControl, JoinHandle<std::io::Result<()>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sim, control) = SimPalm::new(config);
    (control, tokio::spawn(sim.serve(stream)))
}

impl SimPalm {
    pub fn new(config: SimPalmConfig) -> (Self, SimPalmControl) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        let control = SimPalmControl {
            shared: shared.clone(),
        };
        (Self { config, shared }, control)
    }

    /// Serves until the stream ends.
    pub async fn serve<S>(self, mut stream: S) -> std::io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut decoder = Decoder::new();
        let mut op: Option<Op> = None;
        let mut buf = [0u8; 256];
        loop {
            // Let the operation in progress move as far as the world allows.
            let mut out = Vec::new();
            self.advance(&mut op, &mut out);
            self.send(&mut stream, out).await?;

            let deadline = op.map(|o| o.deadline());
            tokio::select! {
                read = stream.read(&mut buf) => {
                    let n = read?;
                    if n == 0 {
                        return Ok(());
                    }
                    decoder.push(&buf[..n]);
                    let mut out = Vec::new();
                    while let Some(frame) = decoder.next_frame() {
                        match frame {
                            Ok(f) => self.handle(&f, &mut op, &mut out),
                            // We cannot trust the damaged frame's seq.
                            Err(_) => out.push(Frame::new(Kind::Reply, 0xFF, 0, vec![PalmStatus::BadFrame.byte()])),
                        }
                    }
                    self.send(&mut stream, out).await?;
                }
                _ = self.shared.changed.notified() => {}
                _ = sleep_until_opt(deadline) => {
                    if let Some(o) = op.take() {
                        let reply = reply(o.cmd(), o.seq(), PalmStatus::Timeout, &[]);
                        self.send(&mut stream, vec![reply]).await?;
                    }
                }
            }
        }
    }

    async fn send<S>(&self, stream: &mut S, frames: Vec<Frame>) -> std::io::Result<()>
    where
        S: AsyncWrite + Unpin,
    {
        if frames.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for frame in frames {
            // Payloads here are bounded well below the frame limit (the id
            // list by `capacity`); should one ever exceed it, the module
            // stays silent and the host times out, which is safe.
            let Ok(mut encoded) = frame.encode() else {
                continue;
            };
            {
                let mut s = lock(&self.shared);
                if s.truncate_next > 0 {
                    s.truncate_next -= 1;
                    encoded.truncate(encoded.len() / 2);
                }
                if s.corrupt_next > 0 {
                    s.corrupt_next -= 1;
                    if let Some(last) = encoded.last_mut() {
                        *last ^= 0x5A;
                    }
                }
            }
            bytes.extend(encoded);
        }
        stream.write_all(&bytes).await?;
        stream.flush().await
    }

    /// Applies a pending reset and moves the operation along.
    fn advance(&self, op: &mut Option<Op>, out: &mut Vec<Frame>) {
        let mut s = lock(&self.shared);
        if std::mem::take(&mut s.reset_pending) {
            s.restarts += 1;
            *op = None;
            out.push(Frame::new(Kind::Note, NOTE_READY, 0, vec![]));
            return;
        }
        loop {
            let Some(current) = *op else { return };
            match current {
                Op::Identify { seq, .. } => {
                    let Some(person) = s.presented else { return };
                    let hit = s.library.iter().find(|(_, &p)| p == person);
                    out.push(match hit {
                        Some((&id, _)) => {
                            let mut r = id.to_be_bytes().to_vec();
                            r.extend_from_slice(&self.config.score.to_be_bytes());
                            reply(PalmCommand::Identify, seq, PalmStatus::Ok, &r)
                        }
                        None => reply(PalmCommand::Identify, seq, PalmStatus::NotFound, &[]),
                    });
                    *op = None;
                }
                Op::Enroll {
                    seq,
                    id,
                    captures,
                    person,
                    phase,
                    step_timeout,
                    ..
                } => {
                    let presented = s.presented;
                    let next = |phase| Op::Enroll {
                        seq,
                        id,
                        captures,
                        person: person.or(presented),
                        phase,
                        step_timeout,
                        deadline: Instant::now() + step_timeout,
                    };
                    let enroll_note = |step: u8, k: u8| {
                        Frame::new(
                            Kind::Note,
                            PalmCommand::Enroll as u8,
                            seq,
                            vec![step, k, captures],
                        )
                    };
                    match phase {
                        Phase::WaitPresent(k) => {
                            let Some(p) = presented else { return };
                            if person.is_some_and(|q| q != p) {
                                out.push(reply(
                                    PalmCommand::Enroll,
                                    seq,
                                    PalmStatus::Mismatch,
                                    &[],
                                ));
                                *op = None;
                                continue;
                            }
                            out.push(enroll_note(note::CAPTURED, k));
                            if k < captures {
                                out.push(enroll_note(note::WITHDRAW_PALM, k));
                                *op = Some(next(Phase::WaitWithdraw(k)));
                                continue;
                            }
                            // Last capture: refuse a palm enrolled under any id.
                            let existing = s.library.iter().find(|(_, &q)| q == p).map(|(&i, _)| i);
                            out.push(match existing {
                                Some(other) => reply(
                                    PalmCommand::Enroll,
                                    seq,
                                    PalmStatus::Duplicate,
                                    &other.to_be_bytes(),
                                ),
                                None => {
                                    s.library.insert(id, p);
                                    reply(PalmCommand::Enroll, seq, PalmStatus::Ok, &[])
                                }
                            });
                            *op = None;
                        }
                        Phase::WaitWithdraw(k) => {
                            if presented.is_some() {
                                return;
                            }
                            out.push(enroll_note(note::PRESENT_PALM, k + 1));
                            *op = Some(next(Phase::WaitPresent(k + 1)));
                        }
                    }
                }
            }
        }
    }

    /// Handles one request from the host.
    fn handle(&self, frame: &Frame, op: &mut Option<Op>, out: &mut Vec<Frame>) {
        if frame.kind != Kind::Request {
            return;
        }
        let mut s = lock(&self.shared);
        s.requests += 1;
        let seq = frame.seq;
        let Some(cmd) = PalmCommand::from_byte(frame.cmd) else {
            out.push(Frame::new(
                Kind::Reply,
                frame.cmd,
                seq,
                vec![PalmStatus::UnknownCommand.byte()],
            ));
            return;
        };
        match s.request_faults.pop_front() {
            Some(PalmFault::Silence) => return,
            Some(PalmFault::Busy) => {
                out.push(reply(cmd, seq, PalmStatus::Busy, &[]));
                return;
            }
            _ => {}
        }
        let p = frame.payload.as_slice();
        let id_ok = |id: u16| id < self.config.capacity;
        match cmd {
            PalmCommand::GetInfo => {
                let fw = self.config.firmware.as_bytes();
                let fw = &fw[..fw.len().min(64)];
                let mut r = vec![1];
                r.extend_from_slice(&self.config.capacity.to_be_bytes());
                // Cannot truncate: the library never exceeds `capacity` (u16).
                r.extend_from_slice(&(s.library.len() as u16).to_be_bytes());
                r.push(self.config.default_captures);
                r.push(fw.len() as u8);
                r.extend_from_slice(fw);
                out.push(reply(cmd, seq, PalmStatus::Ok, &r));
            }
            PalmCommand::Status => {
                let state = match op {
                    None => 0,
                    Some(Op::Enroll { .. }) => 1,
                    Some(Op::Identify { .. }) => 2,
                };
                out.push(reply(cmd, seq, PalmStatus::Ok, &[state]));
            }
            PalmCommand::Abort => {
                if let Some(o) = op.take() {
                    out.push(reply(o.cmd(), o.seq(), PalmStatus::Aborted, &[]));
                }
                out.push(reply(cmd, seq, PalmStatus::Ok, &[]));
            }
            _ if op.is_some() => out.push(reply(cmd, seq, PalmStatus::Busy, &[])),
            PalmCommand::Enroll => {
                let [hi, lo, captures, secs] = p else {
                    out.push(reply(cmd, seq, PalmStatus::BadParameter, &[]));
                    return;
                };
                let id = u16::from_be_bytes([*hi, *lo]);
                let status =
                    if !id_ok(id) || *captures == 0 || *captures > MAX_CAPTURES || *secs == 0 {
                        PalmStatus::BadParameter
                    } else if s.library.contains_key(&id) {
                        PalmStatus::IdInUse
                    } else if s.library.len() >= usize::from(self.config.capacity) {
                        PalmStatus::Full
                    } else {
                        let step_timeout = Duration::from_secs(u64::from(*secs));
                        *op = Some(Op::Enroll {
                            seq,
                            id,
                            captures: *captures,
                            person: None,
                            phase: Phase::WaitPresent(1),
                            step_timeout,
                            deadline: Instant::now() + step_timeout,
                        });
                        out.push(Frame::new(
                            Kind::Note,
                            cmd as u8,
                            seq,
                            vec![note::PRESENT_PALM, 1, *captures],
                        ));
                        return;
                    };
                out.push(reply(cmd, seq, status, &[]));
            }
            PalmCommand::Identify => {
                let [secs] = p else {
                    out.push(reply(cmd, seq, PalmStatus::BadParameter, &[]));
                    return;
                };
                if *secs == 0 {
                    out.push(reply(cmd, seq, PalmStatus::BadParameter, &[]));
                    return;
                }
                *op = Some(Op::Identify {
                    seq,
                    deadline: Instant::now() + Duration::from_secs(u64::from(*secs)),
                });
            }
            PalmCommand::Delete => {
                let status = match p {
                    [hi, lo] => {
                        let id = u16::from_be_bytes([*hi, *lo]);
                        if !id_ok(id) {
                            PalmStatus::BadParameter
                        } else if s.library.remove(&id).is_some() {
                            PalmStatus::Ok
                        } else {
                            PalmStatus::NotFound
                        }
                    }
                    _ => PalmStatus::BadParameter,
                };
                out.push(reply(cmd, seq, status, &[]));
            }
            PalmCommand::DeleteAll => {
                s.library.clear();
                out.push(reply(cmd, seq, PalmStatus::Ok, &[]));
            }
            PalmCommand::ListIds => {
                let mut r = (s.library.len() as u16).to_be_bytes().to_vec();
                for id in s.library.keys() {
                    r.extend_from_slice(&id.to_be_bytes());
                }
                out.push(reply(cmd, seq, PalmStatus::Ok, &r));
            }
        }
    }
}

fn reply(cmd: PalmCommand, seq: u8, status: PalmStatus, rest: &[u8]) -> Frame {
    let mut payload = vec![status.byte()];
    payload.extend_from_slice(rest);
    Frame::new(Kind::Reply, cmd as u8, seq, payload)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
