//! A UART whose far end is the fuzzer. The script is a list of segments,
//! each a length byte and that many bytes: the first is what the module
//! sent before it was asked anything (a power-on byte, noise), each next
//! one is released when the driver writes a request. Reads return the
//! released bytes in reads of a fuzzed size; with none left a read is
//! pending, so the driver's time-out fires (the clock is paused, so at
//! once). A length byte of 0xFF closes the link (reads return end of
//! stream). Writes are kept for the target to check.
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The length byte that closes the link.
const CLOSE: u8 = 0xFF;

#[derive(Debug)]
pub struct Script {
    script: Vec<u8>,
    /// Next unreleased script byte.
    next: usize,
    /// Released and not yet read.
    ready: std::collections::VecDeque<u8>,
    closed: bool,
    read_size: usize,
    written: Arc<Mutex<Vec<u8>>>,
}

impl Script {
    /// The stream, and what the driver writes to it.
    pub fn new(script: &[u8], read_size: usize) -> (Self, Arc<Mutex<Vec<u8>>>) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let mut s = Script {
            script: script.to_vec(),
            next: 0,
            ready: Default::default(),
            closed: false,
            read_size: read_size.max(1),
            written: written.clone(),
        };
        s.release();
        (s, written)
    }

    fn release(&mut self) {
        let Some(&len) = self.script.get(self.next) else {
            return;
        };
        self.next += 1;
        if len == CLOSE {
            self.closed = true;
            return;
        }
        let end = (self.next + usize::from(len)).min(self.script.len());
        self.ready.extend(&self.script[self.next..end]);
        self.next = end;
    }
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.ready.is_empty() {
            // Silence: the driver's time-out (a timer) wakes the task.
            return if self.closed {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        }
        let n = self.read_size.min(buf.remaining()).min(self.ready.len());
        let bytes: Vec<u8> = self.ready.drain(..n).collect();
        buf.put_slice(&bytes);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        if !self.closed {
            self.release();
        }
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A current-thread runtime with a paused clock: the drivers' poll
/// intervals and time-outs pass instantly.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
}
