//! select_echo: a line echo server that serves every client from one thread,
//! waiting for all of them at once with select(2): the first lecture's
//! server.
//!
//! The shape of the loop, in `serve`:
//!   1. build the read and write fd sets from every connection's state;
//!   2. select() sleeps until at least one of those fds is ready;
//!   3. for each ready fd, do the one accept, read or write it is ready for.
//!
//! Each connection is a small state machine (`conn.rs`): an event loop keeps
//! no per-client state on a stack, so it lives in a struct. The line protocol
//! itself (cutting lines, the 8192-byte limit) is `echo_core::LineReader`,
//! shared with the other echo labs.
//!
//! `main` and `serve` are the stub's (`labs/select_echo/src/main.rs`),
//! filled in: TODO 1 is in `serve`, TODO 2 in `conn.rs`, TODO 3 is the loop.

mod conn;

use conn::Conn;
use echo_core::READ_CHUNK;
use labkit::{EchoArgs, OrFail};
use nix::errno::Errno;
use nix::sys::select::{FdSet, select};
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};

/// select's bitmaps have room for fds 0..FD_SETSIZE and no more.
const FD_SETSIZE: i32 = nix::libc::FD_SETSIZE as i32;

const SERVER_FULL: &[u8] = b"ERR server full\n";

fn main() {
    let args = EchoArgs::parse();
    // Odd as it looks for a server that serves fds below 1024 only: with a
    // soft limit of 1024, fds 0..1023 are all we may have, accept() fails
    // with EMFILE once they are used, the client stays in the backlog, and
    // the listener stays readable: select returns at once, forever. Raised
    // to the hard limit, accept() hands us fds of 1024 and more to refuse.
    labkit::raise_fd_limit();
    let listener = labkit::bind_loopback(args.port);
    labkit::announce(&listener);
    serve(listener)
}

/// Serves clients forever. Nothing a client does ends it: each error is
/// handled where it happens; only a failed select is fatal.
fn serve(listener: TcpListener) -> ! {
    // TODO 1. Non-blocking, so that accept() returns EAGAIN once the backlog
    // is empty (or when a connection announced as ready is already gone)
    // instead of putting the whole server to sleep. Accepted sockets get
    // their own O_NONBLOCK in `accept_all`: they do not inherit it.
    listener
        .set_nonblocking(true)
        .or_fail("cannot make the listening socket non-blocking");
    let mut server = Server {
        listener,
        conns: Vec::new(),
        scratch: vec![0; READ_CHUNK],
    };
    loop {
        let (accept_now, ready) = server.wait();
        // `ready` lines up with `conns` as it was when we called select.
        // New connections are appended after the old ones, so accepting
        // first does not shift anyone's index.
        if accept_now {
            server.accept_all();
        }
        for (conn, ready) in server.conns.iter_mut().zip(ready) {
            handle(conn, ready, &mut server.scratch);
        }
        // Dropping a finished connection closes its socket.
        server.conns.retain(|conn| !conn.is_done());
    }
}

struct Server {
    listener: TcpListener,
    conns: Vec<Conn>,
    /// One buffer for every read: a connection keeps only its unfinished line.
    scratch: Vec<u8>,
}

/// What select reported for one fd.
#[derive(Clone, Copy, Default)]
struct Ready {
    read: bool,
    write: bool,
}

impl Server {
    /// Sleeps in select() until something is ready; returns whether the
    /// listener is, and what each connection is ready for.
    fn wait(&self) -> (bool, Vec<Ready>) {
        loop {
            // The sets are rebuilt before every call, for two reasons:
            // select() overwrites each set with the subset that was ready, so
            // after one call it no longer says what we want; and what we want
            // changes with each connection's state.
            let mut read = FdSet::new();
            let mut write = FdSet::new();
            read.insert(self.listener.as_fd());
            // nfds is the highest fd plus one: the kernel scans the bitmaps
            // from 0 up to there, it has no idea which bits are set. Computed
            // each round, since the highest fd comes and goes with clients.
            let mut nfds = self.listener.as_raw_fd() + 1;
            for conn in &self.conns {
                if conn.wants_read() {
                    read.insert(conn.as_fd());
                }
                if conn.wants_write() {
                    write.insert(conn.as_fd());
                }
                nfds = nfds.max(conn.as_fd().as_raw_fd() + 1);
            }
            // No timeout (None): with nothing to do, the server sleeps and
            // uses no CPU, and a socket that becomes writable wakes it.
            match select(nfds, &mut read, &mut write, None, None) {
                Ok(_) => {
                    let ready = self
                        .conns
                        .iter()
                        .map(|conn| Ready {
                            read: read.contains(conn.as_fd()),
                            write: write.contains(conn.as_fd()),
                        })
                        .collect();
                    return (read.contains(self.listener.as_fd()), ready);
                }
                // A signal interrupted the wait: nothing is ready, wait again.
                Err(Errno::EINTR) => continue,
                Err(err) => labkit::fail(format_args!("select: {err}")),
            }
        }
    }

    /// Accepts every pending connection (the listener is non-blocking, so
    /// this ends with EAGAIN once the backlog is empty).
    fn accept_all(&mut self) {
        let conns = &mut self.conns;
        echo_core::accept_all(&self.listener, |stream| {
            if stream.as_raw_fd() < FD_SETSIZE {
                conns.push(Conn::new(stream));
            } else {
                refuse(stream);
            }
        });
    }
}

/// A client whose fd is FD_SETSIZE or more cannot be watched: putting it in
/// an fd_set writes past the end of the bitmap in C (memory corruption) and
/// panics in nix's FdSet. Say so and close at once.
fn refuse(mut stream: TcpStream) {
    // 16 bytes always fit in a new socket's send buffer: one write is enough.
    let _ = stream.write(SERVER_FULL);
    // Our FIN after the line, then the close (dropping the stream). No
    // lingering close here, unlike every other ending: waiting for this
    // client's EOF would mean watching its fd, which is exactly what select
    // cannot do. So a client that has already sent bytes gets a reset, which
    // may destroy the ERR line; the contract accepts that.
    let _ = stream.shutdown(Shutdown::Write);
}

/// Does what select said one connection is ready for. Errors (a reset, a
/// vanished client) end only this connection: `Conn` moves itself to `Done`.
fn handle(conn: &mut Conn, ready: Ready, scratch: &mut [u8]) {
    if ready.read {
        conn.read(scratch);
    }
    // After a read there may be replies to send, or a state change (quit,
    // EOF) that only needs the write side to finish: try at once. Not if the
    // read ended the connection (an error, the EOF of a lingering close).
    if (ready.read || ready.write) && !conn.is_done() {
        conn.write();
    }
}
