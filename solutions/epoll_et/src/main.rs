//! epoll_et: the line echo server on edge-triggered epoll.
//!
//! Edge-triggered epoll reports a socket when something *changes* (bytes
//! arrive, room appears in the send buffer), not for as long as it stays
//! readable. So each wakeup must finish the job: accept until EAGAIN, read
//! until EAGAIN, write until EAGAIN. Whatever is left behind is never
//! reported again, and that client stalls.
//!
//! Compared with epoll_lt, only the registration (once, with EPOLLET) and
//! `serve` differ. The protocol lives in `echo_core::Connection`.

use echo_core::epoll::{LISTENER, MAX_EVENTS};
use echo_core::{Connection, READ_CHUNK, ReadOutcome, Slab};
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use std::net::TcpListener;

fn main() {
    // Edge-triggered needs non-blocking fds (start_listening makes the
    // listener so, accept_all every client): draining means calling accept,
    // read or write until they fail with EAGAIN, and that last call must
    // return at once instead of sleeping.
    Server::new(echo_core::start_listening()).run()
}

struct Server {
    epoll: Epoll,
    listener: TcpListener,
    clients: Slab<Connection>,
    scratch: Vec<u8>,
}

/// Every client is registered once for everything it may ever need. With
/// edge triggering there is no busy loop to fear from EPOLLOUT (it is
/// reported when room appears, not while it exists), so no EPOLL_CTL_MOD is
/// ever needed.
fn client_events() -> EpollFlags {
    EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET
}

impl Server {
    fn new(listener: TcpListener) -> Server {
        let events = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        Server {
            epoll: echo_core::epoll::with_listener(&listener, events),
            listener,
            clients: Slab::default(),
            scratch: vec![0; READ_CHUNK],
        }
    }

    fn run(mut self) -> ! {
        let mut events = vec![EpollEvent::empty(); MAX_EVENTS];
        loop {
            let ready = echo_core::epoll::wait(&self.epoll, &mut events);
            for event in &events[..ready] {
                match event.data() {
                    // One edge may stand for many connections: accept them
                    // all, or the rest wait until yet another client arrives.
                    LISTENER => self.accept_all(),
                    token => self.serve(token as usize),
                }
            }
        }
    }

    fn accept_all(&mut self) {
        let (epoll, clients) = (&self.epoll, &mut self.clients);
        echo_core::accept_all(&self.listener, |stream| {
            let token = clients.insert(Connection::new(stream));
            let conn = clients.get_mut(token).expect("just inserted");
            let event = EpollEvent::new(client_events(), token as u64);
            if epoll.add(conn.stream(), event).is_err() {
                clients.remove(token);
            }
        });
    }

    /// Handles one edge on a client, whatever it was (readable, writable,
    /// hang-up): flush, drain the input, flush again, and repeat while
    /// writing made room for input that is already waiting.
    fn serve(&mut self, token: usize) {
        let Some(conn) = self.clients.get_mut(token) else {
            return; // already closed earlier in this batch of events
        };
        let ok = drive(conn, &mut self.scratch).is_ok();
        if !ok || conn.is_done() {
            let _ = self.epoll.delete(conn.stream());
            self.clients.remove(token);
        }
    }
}

fn drive(conn: &mut Connection, scratch: &mut [u8]) -> std::io::Result<()> {
    loop {
        conn.flush()?;
        let drained = drain_input(conn, scratch)?;
        conn.flush()?;
        // Reading stopped early for backpressure, and the flush has made room:
        // no new edge will come for bytes that are already waiting, so go
        // back for them now. Otherwise the next edge (EPOLLOUT when the
        // client reads, EPOLLIN when it sends) brings us back.
        if drained || !conn.wants_read() {
            return Ok(());
        }
    }
}

/// Reads until EAGAIN or the end of input: `Ok(true)`. `Ok(false)` when it
/// stopped because 64 KiB of replies are pending (input may still wait).
fn drain_input(conn: &mut Connection, scratch: &mut [u8]) -> std::io::Result<bool> {
    while conn.wants_read() {
        match conn.read_once(scratch)? {
            ReadOutcome::WouldBlock | ReadOutcome::Eof => return Ok(true),
            ReadOutcome::Data(_) => {}
        }
    }
    Ok(false)
}
