//! `Async<T>`: a non-blocking socket registered with the reactor, whose
//! operations are futures.
//!
//! Each operation is the same three steps: try the system call; if it would
//! block, leave this task's waker with the reactor for that direction and
//! return `Pending`; when woken, try again. The attempt comes first, every
//! time: readiness from the reactor is a hint that trying is worthwhile,
//! never a promise, and bytes that arrived while nobody was waiting produce
//! no new edge, so only an attempt finds them.

use super::reactor;
use std::future::poll_fn;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::task::{Context, Poll};

pub struct Async<T: AsFd> {
    io: T,
    token: usize,
}

/// Which way a socket must become ready for the call to go on.
enum Direction {
    Read,
    Write,
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

    /// One attempt of `op`; on `WouldBlock`, asks for a wake-up and returns
    /// `Pending`.
    fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            match op(&self.io) {
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    match direction {
                        Direction::Read => reactor::wait_readable(self.token, cx.waker()),
                        Direction::Write => reactor::wait_writable(self.token, cx.waker()),
                    }
                    return Poll::Pending;
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
        poll_fn(|cx| self.poll_io(cx, Direction::Read, |mut s| s.read(buf))).await
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
