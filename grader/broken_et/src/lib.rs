//! Deliberately broken epoll echo servers for the epoll labs' grader tests.
//! Each is the reference design (echo_core's protocol) with one classic
//! epoll mistake, marked `FAULT(...)`.

use echo_core::epoll::{LISTENER, MAX_EVENTS};
use echo_core::{Connection, ReadOutcome, Slab};
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use std::net::TcpListener;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// Edge-triggered, reads once per wakeup with a 4 KiB buffer.
    ReadOnce,
    /// Edge-triggered, accepts one connection per listener wakeup.
    AcceptOnce,
    /// Edge-triggered, registered for EPOLLIN only and writes once per
    /// wakeup: what does not fit waits for an edge that never comes.
    WriteOnce,
    /// The edge-triggered lab's loop (drains until EAGAIN) registered
    /// level-triggered.
    RegisteredLt,
    /// The level-triggered lab's loop registered with EPOLLET.
    RegisteredEt,
    /// Edge-triggered; a finished connection is forgotten but its socket is
    /// never closed, so it stays open and registered.
    KeepsClosedFds,
}

pub fn run(fault: Fault) -> ! {
    let listener = echo_core::start_listening();
    // FAULT(RegisteredLt): no EPOLLET anywhere.
    let edge = fault != Fault::RegisteredLt;
    let listener_events = if edge {
        EpollFlags::EPOLLIN | EpollFlags::EPOLLET
    } else {
        EpollFlags::EPOLLIN
    };
    let epoll = echo_core::epoll::with_listener(&listener, listener_events);
    let mut server = Server {
        epoll,
        listener,
        clients: Slab::default(),
        fault,
        edge,
    };
    let mut events = vec![EpollEvent::empty(); MAX_EVENTS];
    loop {
        let ready = echo_core::epoll::wait(&server.epoll, &mut events);
        for event in &events[..ready] {
            match event.data() {
                LISTENER => server.accept(),
                token => server.serve(token as usize),
            }
        }
    }
}

struct Server {
    epoll: Epoll,
    listener: TcpListener,
    clients: Slab<Connection>,
    fault: Fault,
    edge: bool,
}

impl Server {
    fn client_events(&self) -> EpollFlags {
        let mut events = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        // FAULT(WriteOnce): no EPOLLOUT, so a full socket is never reported again.
        if self.fault != Fault::WriteOnce {
            events |= EpollFlags::EPOLLOUT;
        }
        // FAULT(RegisteredEt) adds EPOLLET to a level-triggered loop.
        if self.edge {
            events |= EpollFlags::EPOLLET;
        }
        events
    }

    fn accept(&mut self) {
        loop {
            let Ok((stream, _)) = self.listener.accept() else {
                return;
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let token = self.clients.insert(Connection::new(stream));
            let events = self.client_events();
            let conn = self.clients.get_mut(token).unwrap();
            if self
                .epoll
                .add(conn.stream(), EpollEvent::new(events, token as u64))
                .is_err()
            {
                self.clients.remove(token);
            }
            // FAULT(AcceptOnce): one accept per wakeup of the listener.
            if self.fault == Fault::AcceptOnce {
                return;
            }
        }
    }

    fn serve(&mut self, token: usize) {
        let fault = self.fault;
        let Some(conn) = self.clients.get_mut(token) else {
            return;
        };
        let ok = match fault {
            Fault::ReadOnce => read_once_small(conn),
            Fault::WriteOnce => write_once(conn),
            Fault::RegisteredEt => level_step(conn),
            Fault::AcceptOnce | Fault::RegisteredLt | Fault::KeepsClosedFds => drain(conn),
        };
        if ok && !conn.is_done() {
            return;
        }
        // FAULT(KeepsClosedFds): forget the connection, leave the socket open.
        if fault == Fault::KeepsClosedFds {
            let conn = self.clients.remove(token).unwrap();
            std::mem::forget(conn);
            return;
        }
        let _ = self.epoll.delete(conn.stream());
        self.clients.remove(token);
    }
}

/// The correct edge-triggered handling: flush, read until EAGAIN, flush,
/// again while writing made room.
fn drain(conn: &mut Connection) -> bool {
    let mut scratch = vec![0; echo_core::READ_CHUNK];
    loop {
        if conn.flush().is_err() {
            return false;
        }
        let mut drained = false;
        while conn.wants_read() {
            match conn.read_once(&mut scratch) {
                Ok(ReadOutcome::WouldBlock | ReadOutcome::Eof) => {
                    drained = true;
                    break;
                }
                Ok(ReadOutcome::Data(_)) => {}
                Err(_) => return false,
            }
        }
        if conn.flush().is_err() {
            return false;
        }
        if drained || !conn.wants_read() {
            return true;
        }
    }
}

/// FAULT(ReadOnce): one 4 KiB read per wakeup, as if level-triggered.
fn read_once_small(conn: &mut Connection) -> bool {
    let mut scratch = [0u8; 4096];
    if conn.wants_read() && conn.read_once(&mut scratch).is_err() {
        return false;
    }
    conn.flush().is_ok()
}

/// FAULT(WriteOnce): drains input, then a single write attempt per wakeup.
fn write_once(conn: &mut Connection) -> bool {
    let mut scratch = vec![0; echo_core::READ_CHUNK];
    while conn.wants_read() {
        match conn.read_once(&mut scratch) {
            Ok(ReadOutcome::WouldBlock | ReadOutcome::Eof) => break,
            Ok(ReadOutcome::Data(_)) => {}
            Err(_) => return false,
        }
    }
    conn.flush().is_ok()
}

/// One read and one flush per wakeup: right for level-triggered.
fn level_step(conn: &mut Connection) -> bool {
    let mut scratch = vec![0; echo_core::READ_CHUNK];
    if conn.wants_read() && conn.read_once(&mut scratch).is_err() {
        return false;
    }
    conn.flush().is_ok()
}
