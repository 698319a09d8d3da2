//! `Async<T>`: a non-blocking socket registered with the reactor. Each
//! operation loops: `reactor::poll_ready` (`Pending` stores the waker: return
//! it); try the system call; on `WouldBlock`, `reactor::clear_ready` and loop
//! again; on `Interrupted`, try again; anything else is the result
//! (`std::future::poll_fn` makes such a future from a closure). `read` also
//! clears after a short read (0 < n < buf.len(), not on EOF). Dropping it
//! deregisters it. Step 2 of the build order.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;

pub struct Async<T: AsFd> {
    io: T,
    token: usize,
}

impl<T: AsFd> Async<T> {
    /// Registers `io`, which must already be non-blocking.
    pub fn new(io: T) -> io::Result<Async<T>> {
        todo!("Async::new: register with the reactor")
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsFd> Drop for Async<T> {
    /// Deregisters the fd before it is closed (when `io` is dropped next).
    fn drop(&mut self) {
        todo!("Async::drop: deregister from the reactor")
    }
}

impl Async<TcpListener> {
    /// The next connection, made non-blocking (accepted sockets do not
    /// inherit O_NONBLOCK) and registered.
    pub async fn accept(&self) -> io::Result<Async<TcpStream>> {
        todo!("Async::accept")
    }
}

impl Async<TcpStream> {
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        todo!("Async::read: clear the read readiness after a short read")
    }

    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        todo!("Async::write")
    }

    /// One write attempt, never waiting (for `BYE idle`).
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        todo!("Async::try_write")
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        todo!("Async::shutdown_write")
    }
}
