//! The loop: one `epoll_wait` over the TCP listener, the UDP socket and
//! every TCP client, then one round of work, for ever.
//!
//! Fairness: a round serves every ready source, each for a bounded time: a
//! TCP client one read and the writes its socket takes without waiting
//! (`tcp.rs`), the UDP socket up to `udp::PER_ROUND` datagrams (`udp.rs`),
//! before any TCP client. Every socket is non-blocking, so no call sleeps.
//! Then a datagram waits for about one round at most, whatever the TCP
//! clients do.

use crate::given::Slab;
use crate::tcp::{self, Client};
use crate::udp;
use labkit::OrFail;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};

/// The `data` of the listener's registration; each client's is its slab token.
const LISTENER: u64 = u64::MAX;
/// The `data` of the UDP socket's registration.
const UDP: u64 = u64::MAX - 1;
/// How many ready sockets one `epoll_wait` may return.
const MAX_EVENTS: usize = 1024;

pub struct Server {
    epoll: Epoll,
    listener: TcpListener,
    udp: UdpSocket,
    clients: Slab<Client>,
    /// One buffer for every TCP read: a client keeps only its unfinished line.
    scratch: Vec<u8>,
    /// One buffer for every datagram, large enough for the largest.
    datagram: Vec<u8>,
}

impl Server {
    pub fn new(listener: TcpListener, udp: UdpSocket) -> Server {
        // TODO 1: make the listener and the UDP socket non-blocking (the loop
        //    may sleep only in epoll_wait), create the epoll instance
        //    (`Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)`), register the
        //    listener and the UDP socket for EPOLLIN with the `data` tokens
        //    LISTENER and UDP (no EPOLLET: level-triggered), and return the
        //    server with `scratch` of tcp::READ_PER_ROUND bytes and `datagram` of
        //    udp::BUFFER. Fail with `or_fail("...")`: one line, exit 1.
        todo!("TODO 1: the epoll instance and its registrations in Server::new, src/server.rs")
    }

    pub fn run(mut self) -> ! {
        // TODO 2: the loop. For ever: `self.epoll.wait(&mut events,
        //    EpollTimeout::NONE)` (no timeout: idle, the server sleeps; EINTR
        //    means wait again), then `self.round(&events[..ready])`. Allocate
        //    `events` (MAX_EVENTS of `EpollEvent::empty()`) once, before.
        todo!("TODO 2: the loop in Server::run, src/server.rs")
    }

    /// Gives every ready source its share: the UDP socket first, then the
    /// listener and the clients in the order epoll reported them.
    fn round(&mut self, ready: &[EpollEvent]) {
        // TODO 4: if the UDP token is among `ready`, `udp::echo_some` first:
        //    a datagram that came during the last round then waits for no
        //    TCP client of this one. Then, for each event: LISTENER:
        //    `accept_all`; UDP: nothing (done); a client's token: `serve`.
        todo!("TODO 4: one round of work in Server::round, src/server.rs")
    }

    /// Accepts every pending connection.
    fn accept_all(&mut self) {
        // TODO 5: `self.listener.accept()` until WouldBlock. Make each new
        //    socket non-blocking (accepted sockets do not inherit it from
        //    the listener), insert `Client::new(stream)` into the slab, and
        //    register its stream for `client.registered` with its token as
        //    `data`. ConnectionAborted or Interrupted: try the next one; any
        //    other error (EMFILE): stop for this round, keep serving.
        todo!("TODO 5: accepting clients in Server::accept_all, src/server.rs")
    }

    /// Gives one ready client its share, then drops it if it is over, or
    /// changes its registration if what it waits for changed.
    fn serve(&mut self, token: usize, events: EpollFlags) {
        // TODO 10: the client may already be gone (closed earlier in this
        //    round): return. `client.serve(events, &mut self.scratch)`; if
        //    it is over, `epoll.delete` its stream and remove it from the
        //    slab (dropping closes the socket). Otherwise, if
        //    `client.new_interest()` says something changed, `epoll.modify`
        //    its registration and update `client.registered`.
        todo!("TODO 10: finishing a client's round in Server::serve, src/server.rs")
    }
}
