//! A real PTY pair for UART tests and benches: the master end as a tokio
//! stream for a module simulator, the slave's path for a driver that opens
//! it like a serial port. Benches include it with
//! `#[path = "../tests/it/common/pty.rs"] mod pty;`.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};
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

/// A PTY pair, both ends close-on-exec: `(master, slave, slave path)`,
/// with the window size set when given.
///
/// `openpty(3)` leaves both fds inheritable, and the integration tests
/// share one process: a child another test spawns at that moment (latchd,
/// dbus-daemon, mosquitto) would inherit them and keep the slave open, so
/// the master would never see the hangup that ends the stream. Opening
/// `/dev/ptmx` with `O_CLOEXEC` and the slave through `std` (which always
/// sets it) leaves no window for that.
pub fn pty_pair(size: Option<Winsize>) -> (OwnedFd, OwnedFd, String) {
    let master =
        posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).expect("posix_openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let slave_path = ptsname_r(&master).expect("ptsname");
    // SAFETY: `into_raw_fd` hands over the fd `posix_openpt` opened; nothing
    // else owns or closes it.
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OFlag::O_NOCTTY.bits())
        .open(&slave_path)
        .expect("open the pty slave")
        .into();
    if let Some(size) = size {
        // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which
        // points at `size` for the duration of the call; the fd is open.
        let rc = unsafe { nix::libc::ioctl(slave.as_raw_fd(), nix::libc::TIOCSWINSZ, &size) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }
    (master, slave, slave_path)
}

pub fn open_pty() -> Pty {
    let (master, slave, slave_path) = pty_pair(None);
    let mut t = tcgetattr(&slave).expect("tcgetattr");
    cfmakeraw(&mut t);
    tcsetattr(&slave, SetArg::TCSANOW, &t).expect("tcsetattr raw");
    let raw = master.as_raw_fd();
    let flags = OFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GETFL).expect("getfl"));
    fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).expect("setfl");
    // SAFETY: the `File` owns the master fd and keeps it open, unchanged,
    // for as long as the `AsyncFd` that owns the `File` lives.
    let fd = unsafe { AsyncFd::register(File::from(master)) }.expect("register pty master");
    Pty {
        master: PtyMaster { fd },
        slave_path,
        slave,
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
