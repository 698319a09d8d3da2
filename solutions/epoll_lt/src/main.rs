//! epoll_lt: the line echo server on level-triggered epoll.
//!
//! poll() hands the kernel the whole list of fds on every call and scans it
//! on every return. epoll keeps the list (the "interest set") in the kernel:
//! we register each socket once, change it only when what we wait for
//! changes, and each wait returns only the sockets that are ready.
//!
//! Level-triggered means the same as poll: a socket is reported for as long
//! as it is readable (or writable), so one read per wakeup is enough.
//! The protocol lives in `echo_core::Connection`, shared with the other labs.

use echo_core::epoll::{LISTENER, MAX_EVENTS};
use echo_core::{Connection, READ_CHUNK, Slab};
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use std::net::TcpListener;

fn main() {
    Server::new(echo_core::start_listening()).run()
}

/// A connection and the events it is registered for right now.
struct Client {
    conn: Connection,
    registered: EpollFlags,
}

struct Server {
    epoll: Epoll,
    listener: TcpListener,
    clients: Slab<Client>,
    scratch: Vec<u8>,
}

impl Server {
    fn new(listener: TcpListener) -> Server {
        Server {
            epoll: echo_core::epoll::with_listener(&listener, EpollFlags::EPOLLIN),
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
                    LISTENER => self.accept_all(),
                    token => self.serve(token as usize, event.events()),
                }
            }
        }
    }

    fn accept_all(&mut self) {
        let (epoll, clients) = (&self.epoll, &mut self.clients);
        echo_core::accept_all(&self.listener, |stream| {
            let conn = Connection::new(stream);
            let registered = interest(&conn);
            let token = clients.insert(Client { conn, registered });
            let client = clients.get_mut(token).expect("just inserted");
            let event = EpollEvent::new(registered, token as u64);
            if epoll.add(client.conn.stream(), event).is_err() {
                clients.remove(token);
            }
        });
    }

    /// Handles one ready client: one read, then as much writing as fits.
    fn serve(&mut self, token: usize, events: EpollFlags) {
        let Some(client) = self.clients.get_mut(token) else {
            return; // already closed earlier in this batch of events
        };
        let readable = EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
        let mut ok = true;
        if events.intersects(readable) && client.conn.wants_read() {
            ok = client.conn.read_once(&mut self.scratch).is_ok();
        }
        if ok && client.conn.wants_write() {
            // Write at once: the socket usually has room, and waiting for
            // EPOLLOUT first would cost a trip through epoll_wait.
            ok = client.conn.flush().is_ok();
        }
        if !ok || client.conn.is_done() {
            // Closing the socket also removes it from the interest set (it is
            // the last reference to the file); deleting first says so plainly.
            let _ = self.epoll.delete(client.conn.stream());
            self.clients.remove(token);
            return;
        }
        self.update_interest(token);
    }

    /// Re-registers a client whose needs changed: EPOLLOUT only while replies
    /// are pending (a socket is almost always writable, so asking for it
    /// otherwise wakes us for nothing), EPOLLIN only below the backpressure
    /// limit. Unchanged needs cost no system call.
    fn update_interest(&mut self, token: usize) {
        let Some(client) = self.clients.get_mut(token) else {
            return;
        };
        let wanted = interest(&client.conn);
        if wanted == client.registered {
            return;
        }
        let mut event = EpollEvent::new(wanted, token as u64);
        if self.epoll.modify(client.conn.stream(), &mut event).is_ok() {
            client.registered = wanted;
        }
    }
}

/// The events to wait for on one client (level-triggered: no EPOLLET).
fn interest(conn: &Connection) -> EpollFlags {
    let mut events = EpollFlags::empty();
    if conn.wants_read() {
        events |= EpollFlags::EPOLLIN;
    }
    if conn.wants_write() {
        events |= EpollFlags::EPOLLOUT;
    }
    events
}
