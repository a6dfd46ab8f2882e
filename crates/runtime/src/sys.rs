//! The few system calls that nix and std do not wrap safely.
//!
//! Restoring SIGPIPE's default disposition needs `sigaction`, which is
//! `unsafe` because it could install a handler; this module only ever sets
//! `SIG_DFL`, which has no handler to be unsound.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::signal::{signal, SigHandler, Signal};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// Gives SIGPIPE its default action back in a process about to exec a
/// workload (the Rust runtime set it to ignored, which exec would keep).
pub(crate) fn reset_sigpipe() {
    // SAFETY: SIG_DFL installs no handler code; nothing can run unsoundly.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Receives one file descriptor sent with SCM_RIGHTS (a pty master from a
/// console socket).
pub(crate) fn recv_fd(socket: impl AsFd) -> std::io::Result<OwnedFd> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 64];
    rustix::net::recvmsg(
        socket,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(std::io::Error::other("no file descriptor received"))
}

/// Sets a terminal's size (TIOCSWINSZ).
pub(crate) fn set_winsize(fd: BorrowedFd, width: u16, height: u16) {
    let _ = rustix::termios::tcsetwinsize(
        fd,
        rustix::termios::Winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    );
}
