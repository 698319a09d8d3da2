//! poll_echo: a line echo server that serves every client from one thread,
//! waiting for all of them at once with poll(2).
//!
//! The shape of the loop:
//!   1. build the array of fds we care about, each with the events we want;
//!   2. poll() sleeps until at least one of them is ready;
//!   3. for each ready fd, do the one read, write or accept it is ready for.
//!
//! The protocol itself (lines, `quit`, too-long lines, backpressure, the
//! lingering close) lives in `echo_core::Connection`, shared with the epoll labs.

use echo_core::{Connection, READ_CHUNK};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::net::TcpListener;
use std::os::fd::AsFd;

fn main() {
    Server::new(echo_core::start_listening()).run()
}

struct Server {
    listener: TcpListener,
    clients: Vec<Connection>,
    /// One buffer for every read: a connection keeps only its unfinished line.
    scratch: Vec<u8>,
}

impl Server {
    fn new(listener: TcpListener) -> Server {
        Server {
            listener,
            clients: Vec::new(),
            scratch: vec![0; READ_CHUNK],
        }
    }

    fn run(mut self) -> ! {
        loop {
            let ready = self.wait();
            // The ready flags line up with `clients` as it was when we polled.
            // New clients are appended after the old ones, so accepting first
            // does not shift anyone's index.
            if ready[0].intersects(PollFlags::POLLIN | PollFlags::POLLERR) {
                self.accept_all();
            }
            for (client, &revents) in self.clients.iter_mut().zip(&ready[1..]) {
                serve(client, revents, &mut self.scratch);
            }
            // Dropping a finished connection closes its socket.
            self.clients.retain(|client| !client.is_done());
        }
    }

    /// Sleeps in poll() until something is ready; returns each fd's revents,
    /// the listener first.
    fn wait(&self) -> Vec<PollFlags> {
        // poll() is stateless: the kernel forgets the set after every call, so
        // it is rebuilt each time, and its cost grows with the number of
        // clients (epoll, in the next lab, removes exactly this).
        let mut fds = Vec::with_capacity(self.clients.len() + 1);
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        for client in &self.clients {
            fds.push(PollFd::new(client.as_fd(), interest(client)));
        }
        loop {
            // No timeout: with nothing to do, the server sleeps and uses no CPU.
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(err) => labkit::fail(format_args!("poll: {err}")),
            }
        }
        fds.iter()
            .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
            .collect()
    }

    /// Accepts every pending connection (the listener is non-blocking, so
    /// this ends with EAGAIN once the backlog is empty).
    fn accept_all(&mut self) {
        let clients = &mut self.clients;
        echo_core::accept_all(&self.listener, |stream| {
            clients.push(Connection::new(stream))
        });
    }
}

/// The events to wait for on one client.
fn interest(client: &Connection) -> PollFlags {
    let mut events = PollFlags::empty();
    // Not asking for POLLIN while 64 KiB of replies are unsent is the
    // backpressure: the kernel's buffers fill up and the client's writes block.
    if client.wants_read() {
        events |= PollFlags::POLLIN;
    }
    // Only ask for POLLOUT while there is something to write: a socket is
    // almost always writable, and poll() would return at once, forever.
    if client.wants_write() {
        events |= PollFlags::POLLOUT;
    }
    events
}

/// Handles one client's readiness. Errors (a reset, a vanished client) end
/// only this connection: `Connection` marks itself done.
fn serve(client: &mut Connection, revents: PollFlags, scratch: &mut [u8]) {
    let readable = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
    if revents.intersects(readable) && client.wants_read() {
        // One read per wakeup is enough: poll() is level-triggered and reports
        // the socket again if bytes remain.
        if client.read_once(scratch).is_err() {
            return;
        }
    }
    if client.wants_write() {
        // Try to write right away rather than waiting for POLLOUT: the socket
        // usually has room, and this saves a trip through poll().
        let _ = client.flush();
    }
}
