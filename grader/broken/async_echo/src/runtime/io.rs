//! `Io`: a non-blocking socket registered with the reactor.
//!
//! Its calls (`read`, `write_vectored`, `accept`) are single non-blocking
//! attempts; the caller tries first and, on `WouldBlock`, awaits
//! [`Io::ready`] or [`Io::ready_or_deadline`], which complete when epoll
//! reports the socket ready for one of the directions asked (or the deadline
//! comes). Readiness is a reason to try again, never a promise: a wait that
//! is polled again after it armed the socket completes, bits or not (it was
//! woken, or polled for nothing; either way the caller's next attempt tells).

use super::reactor::{self, Token};
use super::timer::Timer;
use nix::sys::socket::{SockFlag, accept4};
use socket2::Socket;
use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub struct Io {
    socket: Socket,
    token: Token,
}

/// Why a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woke {
    /// The socket became ready: these readiness bits.
    Ready(u8),
    /// The deadline came first.
    Deadline,
}

impl Io {
    /// Registers `socket`, which must already be non-blocking.
    pub fn new(socket: Socket) -> io::Result<Io> {
        let token = reactor::with(|reactor| reactor.register(socket.as_fd()))?;
        Ok(Io { socket, token })
    }

    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.socket).read(buf)
    }

    pub fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.socket).write_vectored(bufs)
    }

    /// One connection, already non-blocking and close-on-exec (`accept4`).
    pub fn accept(&self) -> io::Result<Socket> {
        let fd = accept4(
            &self.socket,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        )?;
        Ok(Socket::from(fd))
    }

    /// Completes when the socket may be ready for a direction in `want`.
    pub fn ready(&self, want: u8) -> Wait<'_> {
        Wait {
            io: self,
            want,
            deadline: None,
            armed: false,
        }
    }

    /// As [`Io::ready`], or [`Woke::Deadline`] once `timer`, set for
    /// `deadline`, fires first.
    pub fn ready_or_deadline<'a>(
        &'a self,
        want: u8,
        timer: &'a mut Timer,
        deadline: Instant,
    ) -> Wait<'a> {
        Wait {
            io: self,
            want,
            deadline: Some((timer, deadline)),
            armed: false,
        }
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        let token = self.token;
        reactor::with(|reactor| reactor.deregister(token, self.socket.as_fd()));
    }
}

pub struct Wait<'a> {
    io: &'a Io,
    want: u8,
    deadline: Option<(&'a mut Timer, Instant)>,
    /// Polled once already: the socket is armed and the waker left.
    armed: bool,
}

impl Future for Wait<'_> {
    type Output = Woke;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Woke> {
        let this = self.get_mut();
        let io = this.io;
        // The timer first: a deadline that moved since the last wait is
        // moved in the reactor, and no longer counts as fired.
        if let Some((timer, deadline)) = this.deadline.as_mut() {
            timer.set(*deadline);
        }
        let got = reactor::with(|reactor| reactor.take_ready(io.token, this.want));
        if got != 0 {
            return Poll::Ready(Woke::Ready(got));
        }
        if let Some((timer, _)) = this.deadline.as_ref()
            && timer.fired()
        {
            return Poll::Ready(Woke::Deadline);
        }
        if this.armed {
            return Poll::Ready(Woke::Ready(0));
        }
        if let Some((timer, _)) = this.deadline.as_ref() {
            timer.listen(cx.waker());
        }
        this.armed = true;
        let want = this.want;
        reactor::with(|reactor| reactor.arm(io.token, io.socket.as_fd(), want, cx.waker()));
        Poll::Pending
    }
}
