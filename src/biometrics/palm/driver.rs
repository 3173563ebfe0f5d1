//! The LPV/1 palm-vein driver: numbered requests, progress notes, one reply
//! per request, over any byte stream. Hardware and flow are described in
//! `palm/mod.rs`; the wire format in `docs/palm-protocol.md`.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::FutureExt;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use super::frame::{Decoder, Frame, FrameError, Kind};

/// Command identifiers (the `cmd` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PalmCommand {
    GetInfo = 0x01,
    Status = 0x02,
    Enroll = 0x10,
    Identify = 0x11,
    Delete = 0x12,
    DeleteAll = 0x13,
    ListIds = 0x14,
    Abort = 0x15,
}

impl PalmCommand {
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => Self::GetInfo,
            0x02 => Self::Status,
            0x10 => Self::Enroll,
            0x11 => Self::Identify,
            0x12 => Self::Delete,
            0x13 => Self::DeleteAll,
            0x14 => Self::ListIds,
            0x15 => Self::Abort,
            _ => return None,
        })
    }
}

impl std::fmt::Display for PalmCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?} ({:#04x})", *self as u8)
    }
}

/// `cmd` of the note a module sends once after power-up (seq 0, no payload).
pub const NOTE_READY: u8 = 0x00;

/// Progress note steps (first payload byte of an enrolment note).
pub mod note {
    pub const PRESENT_PALM: u8 = 0x01;
    pub const CAPTURED: u8 = 0x02;
    pub const WITHDRAW_PALM: u8 = 0x03;
}

/// Reply status (first payload byte of every reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PalmStatus {
    #[error("success")]
    Ok,
    #[error("the module is busy with another operation (0x01); wait for it or send Abort")]
    Busy,
    #[error("the module received a damaged frame (0x02)")]
    BadFrame,
    #[error("the module rejected a parameter (0x03)")]
    BadParameter,
    #[error("no palm was presented in time (0x04)")]
    Timeout,
    #[error("no such palm or id (0x05)")]
    NotFound,
    #[error("this palm is already enrolled (0x06)")]
    Duplicate,
    #[error("the module's palm library is full (0x07)")]
    Full,
    #[error("the id already holds a palm (0x08)")]
    IdInUse,
    #[error("the operation was aborted (0x09)")]
    Aborted,
    #[error("the capture failed (0x0A); palm too far, moving or not flat")]
    CaptureFailed,
    #[error("the module does not know this command (0x0B)")]
    UnknownCommand,
    #[error("a different palm was presented between captures (0x0C)")]
    Mismatch,
    #[error("undocumented status {0:#04x}")]
    Other(u8),
}

impl PalmStatus {
    pub fn from_byte(b: u8) -> Self {
        match b {
            0x00 => Self::Ok,
            0x01 => Self::Busy,
            0x02 => Self::BadFrame,
            0x03 => Self::BadParameter,
            0x04 => Self::Timeout,
            0x05 => Self::NotFound,
            0x06 => Self::Duplicate,
            0x07 => Self::Full,
            0x08 => Self::IdInUse,
            0x09 => Self::Aborted,
            0x0A => Self::CaptureFailed,
            0x0B => Self::UnknownCommand,
            0x0C => Self::Mismatch,
            other => Self::Other(other),
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            Self::Ok => 0x00,
            Self::Busy => 0x01,
            Self::BadFrame => 0x02,
            Self::BadParameter => 0x03,
            Self::Timeout => 0x04,
            Self::NotFound => 0x05,
            Self::Duplicate => 0x06,
            Self::Full => 0x07,
            Self::IdInUse => 0x08,
            Self::Aborted => 0x09,
            Self::CaptureFailed => 0x0A,
            Self::UnknownCommand => 0x0B,
            Self::Mismatch => 0x0C,
            Self::Other(b) => b,
        }
    }
}

/// Everything the palm driver can report.
#[derive(Debug, Error)]
pub enum PalmError {
    #[error(
        "palm module did not answer {command} within {timeout:?}; check power, wiring \
         (module TX → SoC RX) and baud rate"
    )]
    Timeout {
        command: PalmCommand,
        timeout: Duration,
    },
    #[error("UART I/O error talking to the palm module: {0}")]
    Io(#[from] std::io::Error),
    #[error("the palm module's serial link closed (end of stream)")]
    Closed,
    #[error("could not open the palm UART `{path}`: {source}")]
    Open {
        path: String,
        source: tokio_serial::Error,
    },
    #[error("bad frame from the palm module during {command}: {source}")]
    Frame {
        command: PalmCommand,
        source: FrameError,
    },
    #[error("palm module refused {command}: {status}")]
    Status {
        command: PalmCommand,
        status: PalmStatus,
    },
    #[error("this palm is already enrolled as id {id}; nothing was stored")]
    Duplicate { id: u16 },
    #[error("palm id {id} is already in use; delete it before enrolling into it")]
    IdInUse { id: u16 },
    #[error("palm id {id} is outside the module's library of {capacity}")]
    InvalidId { id: u16, capacity: u16 },
    #[error("enrolment needs 1..={max} captures, not {captures}", max = MAX_CAPTURES)]
    InvalidCaptures { captures: u8 },
    #[error("no palm was presented within {0:?}")]
    NoPalm(Duration),
    #[error(
        "the palm module restarted (power-on note received); any enrolment in progress was lost \
         and nothing was stored — start again"
    )]
    ModuleReset,
    #[error("unexpected answer to {command}: {detail}")]
    Protocol {
        command: PalmCommand,
        detail: String,
    },
}

/// Most captures one enrolment may ask for.
pub const MAX_CAPTURES: u8 = 10;

/// Driver settings.
#[derive(Clone, Debug)]
pub struct PalmConfig {
    /// Longest wait for the reply to a quick command.
    pub request_timeout: Duration,
    /// How long the module waits for a palm at each enrolment step and for
    /// identification (sent to the module in whole seconds, 1..=255).
    pub capture_timeout: Duration,
    /// Captures per enrolment.
    pub captures: u8,
}

impl Default for PalmConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_millis(1000),
            capture_timeout: Duration::from_secs(10),
            captures: 3,
        }
    }
}

/// GetInfo reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PalmInfo {
    pub protocol_version: u8,
    /// Valid ids are `0..capacity`.
    pub capacity: u16,
    pub enrolled: u16,
    /// The module's preferred number of captures per enrolment.
    pub default_captures: u8,
    pub firmware: String,
}

/// Status reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PalmState {
    Idle,
    Enrolling,
    Identifying,
    Other(u8),
}

/// An identification hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PalmMatch {
    pub id: u16,
    pub score: u16,
}

/// Enrolment progress, from the module's notes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PalmEnrollStep {
    /// Present the palm for capture `capture` of `of`.
    PresentPalm { capture: u8, of: u8 },
    /// Capture `capture` of `of` was taken.
    Captured { capture: u8, of: u8 },
    /// Withdraw the palm before the next capture.
    WithdrawPalm { capture: u8 },
    /// The palm was checked against the library and stored.
    Stored { id: u16 },
}

/// Driver for one palm-vein module speaking LPV/1.
pub struct Palm<S> {
    stream: S,
    decoder: Decoder,
    config: PalmConfig,
    info: PalmInfo,
    seq: u8,
    /// An Enroll/Identify was sent and its final reply never read (its
    /// future was dropped, or it failed on a timeout or a bad frame): the
    /// module may still be running it, so the next call aborts it first.
    unfinished: bool,
}

impl<S> std::fmt::Debug for Palm<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Palm").finish_non_exhaustive()
    }
}

const READ_CHUNK: usize = 128;

impl<S> Palm<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Takes over the stream and reads the module's info (the handshake).
    pub async fn connect(stream: S, config: PalmConfig) -> Result<Self, PalmError> {
        if config.captures == 0 || config.captures > MAX_CAPTURES {
            return Err(PalmError::InvalidCaptures {
                captures: config.captures,
            });
        }
        let mut me = Self {
            stream,
            decoder: Decoder::new(),
            config,
            info: PalmInfo {
                protocol_version: 0,
                capacity: 0,
                enrolled: 0,
                default_captures: 0,
                firmware: String::new(),
            },
            seq: 0,
            unfinished: false,
        };
        me.info = me.get_info().await?;
        debug!(info = ?me.info, "palm module ready");
        Ok(me)
    }

    /// Info read at connect time.
    pub fn info(&self) -> &PalmInfo {
        &self.info
    }

    pub fn into_inner(self) -> S {
        self.stream
    }

    pub async fn get_info(&mut self) -> Result<PalmInfo, PalmError> {
        self.settle().await?;
        let command = PalmCommand::GetInfo;
        let r = self.quick(command, vec![]).await?;
        let short = || PalmError::Protocol {
            command,
            detail: "info reply too short".into(),
        };
        if r.len() < 7 {
            return Err(short());
        }
        let fw_len = usize::from(r[6]);
        let fw = r.get(7..7 + fw_len).ok_or_else(short)?;
        Ok(PalmInfo {
            protocol_version: r[0],
            capacity: u16::from_be_bytes([r[1], r[2]]),
            enrolled: u16::from_be_bytes([r[3], r[4]]),
            default_captures: r[5],
            firmware: String::from_utf8_lossy(fw).into_owned(),
        })
    }

    pub async fn status(&mut self) -> Result<PalmState, PalmError> {
        let r = self.quick(PalmCommand::Status, vec![]).await?;
        Ok(match r.first() {
            Some(0) => PalmState::Idle,
            Some(1) => PalmState::Enrolling,
            Some(2) => PalmState::Identifying,
            Some(&b) => PalmState::Other(b),
            None => {
                return Err(PalmError::Protocol {
                    command: PalmCommand::Status,
                    detail: "status reply without a state".into(),
                })
            }
        })
    }

    /// Enrols the presented palm as `id`. The module stores nothing if the
    /// palm is already enrolled (reply Duplicate), the id is taken, or any
    /// capture fails.
    pub async fn enroll(
        &mut self,
        id: u16,
        progress: &mut (dyn FnMut(PalmEnrollStep) + Send),
    ) -> Result<(), PalmError> {
        self.check_id(id)?;
        self.settle().await?;
        let captures = self.config.captures;
        let [hi, lo] = id.to_be_bytes();
        let payload = vec![hi, lo, captures, self.capture_secs()];
        let wait = self.config.capture_timeout + self.config.request_timeout;
        let command = PalmCommand::Enroll;
        let mut on_note = |f: &Frame| -> Result<(), PalmError> {
            let step = match f.payload.as_slice() {
                [note::PRESENT_PALM, k, n] => PalmEnrollStep::PresentPalm {
                    capture: *k,
                    of: *n,
                },
                [note::CAPTURED, k, n] => PalmEnrollStep::Captured {
                    capture: *k,
                    of: *n,
                },
                [note::WITHDRAW_PALM, k, ..] => PalmEnrollStep::WithdrawPalm { capture: *k },
                other => {
                    return Err(PalmError::Protocol {
                        command,
                        detail: format!("unknown enrolment note {other:02x?}"),
                    })
                }
            };
            progress(step);
            Ok(())
        };
        match self.request(command, payload, wait, &mut on_note).await {
            Ok(_) => {
                progress(PalmEnrollStep::Stored { id });
                Ok(())
            }
            Err(PalmError::Status {
                status: PalmStatus::IdInUse,
                ..
            }) => Err(PalmError::IdInUse { id }),
            Err(PalmError::Status {
                status: PalmStatus::Timeout,
                ..
            }) => Err(PalmError::NoPalm(self.config.capture_timeout)),
            Err(e) => Err(e),
        }
    }

    /// Waits (up to the capture timeout) for a palm and matches it.
    /// `Ok(None)`: a palm was read and matches no enrolled id.
    pub async fn identify(&mut self) -> Result<Option<PalmMatch>, PalmError> {
        self.settle().await?;
        let command = PalmCommand::Identify;
        let wait = self.config.capture_timeout + self.config.request_timeout;
        let payload = vec![self.capture_secs()];
        let mut ignore = |_: &Frame| Ok(());
        match self.request(command, payload, wait, &mut ignore).await {
            Ok(r) if r.len() >= 4 => Ok(Some(PalmMatch {
                id: u16::from_be_bytes([r[0], r[1]]),
                score: u16::from_be_bytes([r[2], r[3]]),
            })),
            Ok(_) => Err(PalmError::Protocol {
                command,
                detail: "identify reply without id and score".into(),
            }),
            Err(PalmError::Status {
                status: PalmStatus::NotFound,
                ..
            }) => Ok(None),
            Err(PalmError::Status {
                status: PalmStatus::Timeout,
                ..
            }) => Err(PalmError::NoPalm(self.config.capture_timeout)),
            Err(e) => Err(e),
        }
    }

    pub async fn delete(&mut self, id: u16) -> Result<(), PalmError> {
        self.check_id(id)?;
        self.settle().await?;
        self.quick(PalmCommand::Delete, id.to_be_bytes().to_vec())
            .await
            .map(drop)
    }

    pub async fn delete_all(&mut self) -> Result<(), PalmError> {
        self.settle().await?;
        self.quick(PalmCommand::DeleteAll, vec![]).await.map(drop)
    }

    pub async fn list_ids(&mut self) -> Result<BTreeSet<u16>, PalmError> {
        self.settle().await?;
        let command = PalmCommand::ListIds;
        let r = self.quick(command, vec![]).await?;
        let bad = |detail: &str| PalmError::Protocol {
            command,
            detail: detail.into(),
        };
        let (count, rest) = r.split_at_checked(2).ok_or_else(|| bad("no id count"))?;
        let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
        if rest.len() != count * 2 {
            return Err(bad("id count does not match the list length"));
        }
        Ok(rest
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect())
    }

    /// Stops whatever the module is doing. An enrolment or identification
    /// whose future was dropped keeps running on the module until aborted;
    /// the driver sends this itself before its next command, so calling it
    /// is only needed to stop the module early.
    pub async fn abort(&mut self) -> Result<(), PalmError> {
        self.quick(PalmCommand::Abort, vec![]).await?;
        self.unfinished = false;
        Ok(())
    }

    async fn settle(&mut self) -> Result<(), PalmError> {
        if self.unfinished {
            debug!("aborting a palm operation whose result was never read");
            self.abort().await?;
        }
        Ok(())
    }

    // ---- plumbing -------------------------------------------------------------

    fn capture_secs(&self) -> u8 {
        // Clamped: the module field is one byte of whole seconds, at least 1.
        self.config.capture_timeout.as_secs().clamp(1, 255) as u8
    }

    fn check_id(&self, id: u16) -> Result<(), PalmError> {
        if id >= self.info.capacity {
            return Err(PalmError::InvalidId {
                id,
                capacity: self.info.capacity,
            });
        }
        Ok(())
    }

    async fn quick(
        &mut self,
        command: PalmCommand,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, PalmError> {
        let wait = self.config.request_timeout;
        let mut no_notes = |f: &Frame| -> Result<(), PalmError> {
            Err(PalmError::Protocol {
                command,
                detail: format!("unexpected note {:02x?}", f.payload),
            })
        };
        self.request(command, payload, wait, &mut no_notes).await
    }

    fn next_seq(&mut self) -> u8 {
        // 0 is reserved for the module's power-on note.
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Discards what arrived while nobody was asking (late replies to a
    /// timed-out request carry an old sequence number anyway, but a
    /// power-on note must still be noticed).
    fn drain_stale(&mut self) -> Result<(), PalmError> {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            match self.stream.read(&mut buf).now_or_never() {
                Some(Ok(0)) => return Err(PalmError::Closed),
                Some(Ok(n)) => self.decoder.push(&buf[..n]),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        while let Some(frame) = self.decoder.next_frame() {
            if let Ok(f) = &frame {
                if f.kind == Kind::Note && f.cmd == NOTE_READY {
                    // The module restarted while idle: nothing in flight was
                    // lost, so this is only worth a log line.
                    warn!("palm module restarted while idle");
                    continue;
                }
            }
            debug!(?frame, "dropping stale palm frame");
        }
        Ok(())
    }

    /// Sends one request and reads frames until its reply. Every frame must
    /// arrive within `wait` of the previous one (notes keep it alive).
    async fn request(
        &mut self,
        command: PalmCommand,
        payload: Vec<u8>,
        wait: Duration,
        on_note: &mut (dyn FnMut(&Frame) -> Result<(), PalmError> + Send),
    ) -> Result<Vec<u8>, PalmError> {
        self.drain_stale()?;
        let seq = self.next_seq();
        let bytes = Frame::new(Kind::Request, command as u8, seq, payload)
            .encode()
            .map_err(|source| PalmError::Frame { command, source })?;
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await?;
        let long = matches!(command, PalmCommand::Enroll | PalmCommand::Identify);
        if long {
            self.unfinished = true;
        }
        loop {
            let frame = match tokio::time::timeout(wait, self.read_frame()).await {
                Ok(r) => r?.map_err(|source| PalmError::Frame { command, source })?,
                Err(_) => {
                    self.decoder.clear();
                    return Err(PalmError::Timeout {
                        command,
                        timeout: wait,
                    });
                }
            };
            if frame.kind == Kind::Note && frame.cmd == NOTE_READY {
                // A restarted module runs nothing: no abort needed.
                self.unfinished = false;
                return Err(PalmError::ModuleReset);
            }
            // A damaged request is answered with seq 0: the module could not
            // read our seq.
            if frame.kind == Kind::Reply
                && frame.seq == 0
                && frame.payload.first() == Some(&PalmStatus::BadFrame.byte())
            {
                return Err(PalmError::Status {
                    command,
                    status: PalmStatus::BadFrame,
                });
            }
            if frame.seq != seq || frame.cmd != command as u8 || frame.kind == Kind::Request {
                debug!(?frame, seq, "skipping palm frame for another request");
                continue;
            }
            if frame.kind == Kind::Note {
                on_note(&frame)?;
                continue;
            }
            if long {
                self.unfinished = false;
            }
            let Some((&status, rest)) = frame.payload.split_first() else {
                return Err(PalmError::Protocol {
                    command,
                    detail: "reply without a status byte".into(),
                });
            };
            return match PalmStatus::from_byte(status) {
                PalmStatus::Ok => Ok(rest.to_vec()),
                PalmStatus::Duplicate => match rest {
                    [hi, lo, ..] => Err(PalmError::Duplicate {
                        id: u16::from_be_bytes([*hi, *lo]),
                    }),
                    _ => Err(PalmError::Protocol {
                        command,
                        detail: "duplicate reply without the existing id".into(),
                    }),
                },
                status => Err(PalmError::Status { command, status }),
            };
        }
    }

    /// Reads until one frame (or framing error) is available.
    async fn read_frame(&mut self) -> Result<Result<Frame, FrameError>, PalmError> {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            if let Some(frame) = self.decoder.next_frame() {
                return Ok(frame);
            }
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(PalmError::Closed);
            }
            self.decoder.push(&buf[..n]);
        }
    }
}
