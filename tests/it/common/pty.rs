//! A real PTY pair for UART tests and benches: the master end as a tokio
//! stream for a module simulator, the slave's path for a driver that opens
//! it like a serial port. Benches include it with
//! `#[path = "../tests/it/common/pty.rs"] mod pty;`.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The master side of a PTY as a tokio stream (the simulator's end).
pub struct PtyMaster {
    fd: AsyncFd<File>,
}

/// A PTY in raw mode: the master for the simulator, the slave's path for
/// the driver. The slave fd is kept open so the master never sees a hangup
/// while the driver reopens the path.
pub struct Pty {
    pub master: PtyMaster,
    pub slave_path: String,
    pub slave: OwnedFd,
}

pub fn open_pty() -> Pty {
    let pair = nix::pty::openpty(None, None).expect("openpty");
    let mut t = tcgetattr(&pair.slave).expect("tcgetattr");
    cfmakeraw(&mut t);
    tcsetattr(&pair.slave, SetArg::TCSANOW, &t).expect("tcsetattr raw");
    let slave_path = nix::unistd::ttyname(&pair.slave)
        .expect("ttyname")
        .to_string_lossy()
        .into_owned();
    let raw = pair.master.as_raw_fd();
    let flags = OFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GETFL).expect("getfl"));
    fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).expect("setfl");
    // SAFETY: the `File` owns the master fd and keeps it open, unchanged,
    // for as long as the `AsyncFd` that owns the `File` lives.
    let fd = unsafe { AsyncFd::register(File::from(pair.master)) }.expect("register pty master");
    Pty {
        master: PtyMaster { fd },
        slave_path,
        slave: pair.slave,
    }
}

impl AsyncRead for PtyMaster {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|f| f.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // EIO: every slave fd closed — end of stream.
                Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                    return Poll::Ready(Ok(()))
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyMaster {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|f| f.get_ref().write(buf)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
