//! One TCP client: the line echo protocol of the earlier labs (lines,
//! `quit`, the 8192-byte limit, the 64 KiB backpressure, the lingering
//! close) and what it is registered for. You may start from your epoll_lt
//! or poll_echo: only `serve`'s limit of one read per round is new.

use crate::given::{Fed, LineReader};
use nix::sys::epoll::EpollFlags;
use std::net::TcpStream;

/// Stop reading a connection while this many reply bytes wait to be sent.
pub const BACKPRESSURE_LIMIT: usize = 64 * 1024;
/// The size of the scratch buffer `serve` reads into: the most bytes one
/// client's read takes in one round. Small, because a round lasts as long
/// as its ready clients' reads take to echo, and a datagram may wait that
/// long.
pub const READ_PER_ROUND: usize = 8 * 1024;

pub struct Client {
    stream: TcpStream,
    // TODO 6: the rest of the client's state: the unfinished line (a
    //    `LineReader`), the replies not yet written (and how much of them
    //    is), where the connection is in its life (echoing; ending after
    //    `quit` or a too-long line, before and after `shutdown(Write)`; the
    //    client's EOF seen, flushing the last replies; done).
    /// The events it is registered for right now.
    pub registered: EpollFlags,
}

impl Client {
    /// Wraps an accepted socket that is already non-blocking.
    pub fn new(stream: TcpStream) -> Client {
        // TODO 6: a client in its first phase, nothing pending; `registered`
        //    is `interest` of it (EPOLLIN).
        todo!("TODO 6: the client's state in Client::new, src/tcp.rs")
    }

    /// The socket, to register it with epoll.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// One round's share of work: at most one read, then as much writing as
    /// the socket takes without waiting. Returns false once the connection
    /// is over (finished, reset or vanished): drop it.
    pub fn serve(&mut self, events: EpollFlags, scratch: &mut [u8]) -> bool {
        // TODO 7: if `events` has EPOLLIN (or EPOLLHUP/EPOLLERR: the read
        //    says what happened) and the client may be read (TODO 9), ONE
        //    `read` into `scratch`, never a loop "until the line ends" or
        //    "until EAGAIN": a client half-way through a line, or sending
        //    megabytes, would hold the loop and every datagram. Level-
        //    triggered epoll reports the socket again next round.
        //    - n > 0 while echoing: `LineReader::echo` onto the replies;
        //      anything but `Fed::All` starts the ending (TODO 8);
        //    - 0 (EOF): queue the unfinished line (`take_fragment`), flush
        //      what is pending, then the connection is over;
        //    - WouldBlock or Interrupted: nothing this round;
        //    - any other error (a reset): the connection is over.
        //    Then write the pending replies until done or WouldBlock (try
        //    at once: the socket usually has room). A write error ends it.
        //
        // TODO 8: ending a connection (`quit`, too long): once every reply
        //    is written, `shutdown(Shutdown::Write)`, then keep reading and
        //    discarding until the client's EOF, and only then is it over
        //    (closing with unread input would send a reset that can destroy
        //    replies the client has not read yet).
        todo!("TODO 7: one round's work for a TCP client in Client::serve, src/tcp.rs")
    }

    /// What it should be registered for now, if that changed.
    pub fn new_interest(&self) -> Option<EpollFlags> {
        let wanted = self.interest();
        (wanted != self.registered).then_some(wanted)
    }

    /// The events to wait for (level-triggered: no EPOLLET).
    fn interest(&self) -> EpollFlags {
        // TODO 9: EPOLLIN while the client may be read: echoing with fewer
        //    than BACKPRESSURE_LIMIT reply bytes unsent (the backpressure),
        //    or discarding during the ending. EPOLLOUT only while something
        //    is left to write (or the shutdown to make): a socket is almost
        //    always writable, and asking for it otherwise wakes the loop
        //    for nothing.
        todo!("TODO 9: what a client waits for in Client::interest, src/tcp.rs")
    }
}
