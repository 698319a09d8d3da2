//! The loop: one `epoll_wait` over the TCP listener, the UDP socket and
//! every TCP client, then one round of work, for ever.
//!
//! Why epoll, level-triggered: each socket is registered once and changed
//! only when what it waits for changes, so the UDP socket is just one more
//! token beside the listener's, and no fd limit applies (`select` stops at
//! fd 1024; `poll` would serve 1,000 clients too, rebuilding its array every
//! round). Level-triggered because fairness means leaving work for later:
//! a socket still readable after its share is reported again by the next
//! wait, with no list of "who still has work" to keep (edge-triggered epoll
//! would need one, or would forget them).
//!
//! Fairness, the point of this lab. A round serves every ready source, each
//! for a bounded time:
//! - a TCP client gets one `read` (at most `tcp::READ_PER_ROUND` bytes)
//!   and the writes its socket takes without waiting; never a read "until
//!   the line ends" or "until EAGAIN", so a client half-way through a line,
//!   or one sending megabytes, costs one call;
//! - the UDP socket gets up to `udp::PER_ROUND` datagrams, before any TCP
//!   client: a datagram that came during a round waits for the end of that
//!   round at most, never for a second one;
//! - every socket is non-blocking, so no call sleeps: a client that neither
//!   reads nor writes only stops being asked for (backpressure), it never
//!   holds the loop.
//!
//! So a datagram waits at most about one round, and a round is bounded by
//! the number of ready clients times one chunk, whatever the clients do.

use crate::tcp::{self, Client};
use crate::udp;
use echo_core::Slab;
use echo_core::epoll::{LISTENER, MAX_EVENTS};
use labkit::OrFail;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use std::net::{TcpListener, UdpSocket};

/// The `data` of the UDP socket's registration; the listener's is
/// `LISTENER`, each client's its slab token.
const UDP: u64 = LISTENER - 1;

pub struct Server {
    epoll: Epoll,
    listener: TcpListener,
    udp: UdpSocket,
    clients: Slab<Client>,
    /// One buffer for every TCP read: a connection keeps only its unfinished line.
    scratch: Vec<u8>,
    /// One buffer for every datagram, large enough for the largest.
    datagram: Vec<u8>,
}

impl Server {
    pub fn new(listener: TcpListener, udp: UdpSocket) -> Server {
        // Non-blocking, both: the loop may sleep only in epoll_wait. A
        // connection reported ready can be gone by the time we accept it,
        // and a ready datagram can be dropped (bad checksum) before we
        // receive it: EAGAIN then, instead of a server asleep.
        listener
            .set_nonblocking(true)
            .or_fail("cannot make the listening socket non-blocking");
        udp.set_nonblocking(true)
            .or_fail("cannot make the UDP socket non-blocking");
        let epoll = echo_core::epoll::with_listener(&listener, EpollFlags::EPOLLIN);
        epoll
            .add(&udp, EpollEvent::new(EpollFlags::EPOLLIN, UDP))
            .or_fail("epoll_ctl(ADD, UDP socket)");
        Server {
            epoll,
            listener,
            udp,
            clients: Slab::default(),
            scratch: vec![0; tcp::READ_PER_ROUND],
            datagram: vec![0; udp::BUFFER],
        }
    }

    pub fn run(mut self) -> ! {
        let mut events = vec![EpollEvent::empty(); MAX_EVENTS];
        loop {
            let ready = echo_core::epoll::wait(&self.epoll, &mut events);
            self.round(&events[..ready]);
        }
    }

    /// Gives every ready source its share: the UDP socket first, then the
    /// listener and the clients in the order epoll reported them.
    fn round(&mut self, ready: &[EpollEvent]) {
        if ready.iter().any(|event| event.data() == UDP) {
            udp::echo_some(&self.udp, &mut self.datagram);
        }
        for event in ready {
            match event.data() {
                LISTENER => self.accept_all(),
                UDP => {} // served above
                token => self.serve(token as usize, event.events()),
            }
        }
    }

    /// Accepts every pending connection. Bounded too: the backlog holds at
    /// most what `listen` allowed.
    fn accept_all(&mut self) {
        let (epoll, clients) = (&self.epoll, &mut self.clients);
        echo_core::accept_all(&self.listener, |stream| {
            let token = clients.insert(Client::new(stream));
            let client = clients.get_mut(token).expect("just inserted");
            let event = EpollEvent::new(client.registered, token as u64);
            if epoll.add(client.stream(), event).is_err() {
                clients.remove(token);
            }
        });
    }

    /// Gives one ready client its share, then drops it if it is over, or
    /// changes its registration if what it waits for changed.
    fn serve(&mut self, token: usize, events: EpollFlags) {
        let Some(client) = self.clients.get_mut(token) else {
            return; // already closed earlier in this round
        };
        if !client.serve(events, &mut self.scratch) {
            // Closing the socket also removes it from the interest set (it is
            // the last reference to the file); deleting first says so plainly.
            let _ = self.epoll.delete(client.stream());
            self.clients.remove(token);
            return;
        }
        if let Some(wanted) = client.new_interest() {
            let mut event = EpollEvent::new(wanted, token as u64);
            if self.epoll.modify(client.stream(), &mut event).is_ok() {
                client.registered = wanted;
            }
        }
    }
}
