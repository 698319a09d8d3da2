//! select_telnet (reference solution): a telnet-like client that copies stdin
//! to a TCP socket and the socket to stdout, both directions at once, from
//! one `select(2)` loop.
//!
//! `select_telnet HOST PORT`. See docs/labs/select_telnet.md and the
//! select_telnet section of CONTRACT.md.

use labkit::{Args, OrFail};
use nix::errno::Errno;
use nix::sys::select::{FdSet, select};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::exit;

const USAGE: &str = "HOST PORT";
/// Bytes asked for per read, from stdin or from the socket.
const CHUNK: usize = 64 * 1024;
/// Stop reading stdin while this many bytes wait to go to the socket: a peer
/// that does not read must not make us buffer the whole of stdin.
const HIGH_WATER: usize = 64 * 1024;

fn main() {
    let args = Args::parse(USAGE, &[], &[]);
    let [host, port] = args.positional(2, 2) else {
        unreachable!("positional(2, 2) returns exactly two arguments")
    };
    let port: u16 = port
        .parse()
        .unwrap_or_else(|_| labkit::usage_error(format!("bad port '{port}'"), USAGE));
    let socket =
        TcpStream::connect((host.as_str(), port)).or_fail(format_args!("connect to {host}:{port}"));
    Telnet::new(socket).run()
}

/// What the loop knows between two calls to `select`.
struct Telnet {
    socket: TcpStream,
    /// False once stdin has reached end of file.
    stdin_open: bool,
    /// Bytes read from stdin that the socket has not taken yet.
    to_socket: Vec<u8>,
    /// True once the socket's writing half is shut down.
    shut_down: bool,
}

/// Which fds `select` reported ready.
struct Ready {
    stdin: bool,
    socket_readable: bool,
    socket_writable: bool,
}

impl Telnet {
    fn new(socket: TcpStream) -> Telnet {
        // Non-blocking: select says the socket is writable when *some* room is
        // free, not room for everything we hold. A blocking write of the rest
        // would sleep until the peer reads, and a peer that is itself busy
        // sending to us would never read: both sides stuck, a deadlock. A
        // non-blocking write takes what fits and returns at once.
        socket.set_nonblocking(true).or_fail("set O_NONBLOCK");
        Telnet {
            socket,
            stdin_open: true,
            to_socket: Vec::new(),
            shut_down: false,
        }
    }

    fn run(mut self) -> ! {
        let stdin = io::stdin();
        loop {
            let ready = self.wait(stdin.as_fd());
            // The socket first: what the peer says is shown at once, whatever
            // stdin is doing.
            if ready.socket_readable {
                self.socket_to_stdout();
            }
            if ready.socket_writable {
                self.flush_to_socket();
            }
            if ready.stdin {
                self.stdin_to_buffer(stdin.as_fd());
            }
        }
    }

    /// Sleeps in `select` until one of the fds we care about *now* is ready.
    fn wait(&self, stdin: BorrowedFd) -> Ready {
        let socket = self.socket.as_fd();
        loop {
            // The sets are rebuilt on every iteration, for two reasons.
            // select() overwrites each set with the subset that is ready, so
            // the sets from the last call no longer say what we want. And what
            // we want changes: stdin only while it is open and the buffer has
            // room, the socket for writing only while bytes wait to be sent
            // (an empty send buffer is always writable: asking for it then
            // would wake us at once, for ever, a busy loop).
            let mut readable = FdSet::new();
            let mut writable = FdSet::new();
            readable.insert(socket);
            if self.stdin_open && self.to_socket.len() < HIGH_WATER {
                readable.insert(stdin);
            }
            if !self.to_socket.is_empty() {
                writable.insert(socket);
            }
            // nfds is the highest fd plus one: select looks at fds 0..nfds of
            // each bitmap, it does not know which bits we set. The kernel
            // stops there, which also makes the call cheaper.
            let nfds = socket.as_raw_fd().max(stdin.as_raw_fd()) + 1;
            // No timeout (None): sleep until something is ready.
            match select(nfds, &mut readable, &mut writable, None, None) {
                Ok(_) => {
                    return Ready {
                        stdin: readable.contains(stdin),
                        socket_readable: readable.contains(socket),
                        socket_writable: writable.contains(socket),
                    };
                }
                // A signal interrupted the wait: nothing is ready, wait again.
                Err(Errno::EINTR) => continue,
                Err(err) => labkit::fail(format_args!("select: {err}")),
            }
        }
    }

    /// One read from the socket, written to stdout at once.
    fn socket_to_stdout(&mut self) {
        let mut buf = vec![0u8; CHUNK];
        match (&self.socket).read(&mut buf) {
            Ok(0) => closed_by_foreign_host(),
            Ok(n) => {
                // stdout may stay blocking: if it is slow, we are slow, and
                // nothing is lost. Rust's stdout is line-buffered: flush, or a
                // prompt without a newline would sit in the buffer.
                let mut out = io::stdout().lock();
                out.write_all(&buf[..n])
                    .and_then(|()| out.flush())
                    .or_fail("write to stdout");
            }
            Err(err) if retry(&err) => {}
            Err(err) if peer_gone(&err) => closed_by_foreign_host(),
            Err(err) => labkit::fail(format_args!("read from socket: {err}")),
        }
    }

    /// Writes what the socket takes now; the rest waits for the next time
    /// select says it is writable.
    fn flush_to_socket(&mut self) {
        match (&self.socket).write(&self.to_socket) {
            // A partial write is normal on a non-blocking socket: drop only
            // what was written.
            Ok(n) => {
                self.to_socket.drain(..n);
            }
            Err(err) if retry(&err) => {}
            Err(err) if peer_gone(&err) => closed_by_foreign_host(),
            Err(err) => labkit::fail(format_args!("write to socket: {err}")),
        }
        self.shut_down_if_done();
    }

    /// One read from stdin into the buffer for the socket.
    fn stdin_to_buffer(&mut self, stdin: BorrowedFd) {
        let mut buf = vec![0u8; CHUNK];
        // nix's read, not io::stdin().read(): Rust's Stdin has a buffer of its
        // own, and bytes hidden in it are bytes select cannot see.
        match nix::unistd::read(stdin, &mut buf) {
            Ok(0) => {
                // End of input. No more reads of stdin (it would be "ready"
                // for ever, returning 0 each time), and once the buffer is
                // sent, tell the peer with a half-close.
                self.stdin_open = false;
                self.shut_down_if_done();
            }
            Ok(n) => self.to_socket.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(err) => labkit::fail(format_args!("read from stdin: {err}")),
        }
    }

    /// After stdin's end, once every byte is sent: shutdown(SHUT_WR). The
    /// peer reads end of file, and can still answer: we keep reading until it
    /// closes.
    fn shut_down_if_done(&mut self) {
        if self.stdin_open || self.shut_down || !self.to_socket.is_empty() {
            return;
        }
        self.shut_down = true;
        match self.socket.shutdown(Shutdown::Write) {
            Ok(()) => {}
            // Already reset by the peer: the next read reports it.
            Err(err) if err.kind() == ErrorKind::NotConnected => {}
            Err(err) => labkit::fail(format_args!("shutdown: {err}")),
        }
    }
}

/// Errors that only mean "not now".
fn retry(err: &io::Error) -> bool {
    matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

/// Errors that mean the peer is gone: a reset, or a write after one (EPIPE:
/// Rust ignores SIGPIPE, so it arrives as an error, not as a signal).
fn peer_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

/// The peer closed (or reset) the connection: say so, like telnet, and exit 0.
fn closed_by_foreign_host() -> ! {
    eprintln!("Connection closed by foreign host.");
    exit(0)
}
