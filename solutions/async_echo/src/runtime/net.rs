//! `Async<T>`: a non-blocking socket registered with the reactor, whose
//! operations are futures.
//!
//! Each operation is the same loop: while the reactor says the socket may
//! be ready in that direction, try the system call; when the call proves
//! the socket drained, tell the reactor (`clear_ready`), which makes the
//! next `poll_ready` leave this task's waker for the next edge and return
//! `Pending`. Readiness is a hint that trying is worthwhile, never a
//! promise: a call made on it may still return `WouldBlock`.

use super::reactor::{self, Direction};
use std::future::poll_fn;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::task::{Context, Poll, ready};

pub struct Async<T: AsFd> {
    io: T,
    token: usize,
}

impl<T: AsFd> Async<T> {
    /// Registers `io`, which must already be non-blocking.
    pub fn new(io: T) -> io::Result<Async<T>> {
        let token = reactor::register(io.as_fd())?;
        Ok(Async { io, token })
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Tries `op` while the socket may be ready in `direction`; once it
    /// would block, waits for the next edge (`poll_ready` stores the waker
    /// and returns `Pending`).
    fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            ready!(reactor::poll_ready(self.token, direction, cx));
            match op(&self.io) {
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                // Drained: forget the readiness, and loop to wait for an edge.
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    reactor::clear_ready(self.token, direction)
                }
                result => return Poll::Ready(result),
            }
        }
    }
}

impl<T: AsFd> Drop for Async<T> {
    fn drop(&mut self) {
        reactor::deregister(self.token, self.io.as_fd());
    }
}

impl Async<TcpListener> {
    /// The next connection, made non-blocking and registered.
    pub async fn accept(&self) -> io::Result<Async<TcpStream>> {
        let (stream, _) = poll_fn(|cx| self.poll_io(cx, Direction::Read, |l| l.accept())).await?;
        // Accepted sockets do not inherit O_NONBLOCK from the listener.
        stream.set_nonblocking(true)?;
        Async::new(stream)
    }
}

impl Async<TcpStream> {
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        let n = poll_fn(|cx| self.poll_io(cx, Direction::Read, |mut s| s.read(buf))).await?;
        // A short read emptied the receive queue: a stream socket returns
        // fewer bytes than asked only when no more were there. Any byte
        // that arrives after it raises a new edge, so the next read can
        // wait for that edge instead of trying first and getting
        // `WouldBlock`: one system call saved per round trip. Not after 0
        // (EOF), which stays readable; and a FIN that came with these bytes
        // is kept by the reactor (`read_closed`).
        if 0 < n && n < len {
            reactor::clear_ready(self.token, Direction::Read);
        }
        Ok(n)
    }

    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_io(cx, Direction::Write, |mut s| s.write(buf))).await
    }

    /// One write attempt, never waiting: how much went out.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        (&self.io).write(buf)
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        self.io.shutdown(Shutdown::Write)
    }
}
