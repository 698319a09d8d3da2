//! select_telnet: a telnet-like client. It copies stdin to a TCP socket and
//! the socket to stdout, both directions at once, from one select() loop.
//!
//! Read the handout first: docs/labs/select_telnet.md. Grade your work with
//! `make grade LAB=select_telnet`.
//!
//! The command line, the connection and the exit messages are done for you.
//! Your job is `run`: the select loop, the fd sets, partial writes and the
//! end of the conversation.

use labkit::{Args, OrFail};
use std::net::TcpStream;
use std::process::exit;

const USAGE: &str = "HOST PORT";

fn main() {
    let args = Args::parse(USAGE, &[], &[]);
    let [host, port] = args.positional(2, 2) else {
        unreachable!("positional(2, 2) returns exactly two arguments")
    };
    let port: u16 = port
        .parse()
        .unwrap_or_else(|_| labkit::usage_error(format!("bad port '{port}'"), USAGE));
    // On failure: "select_telnet: connect to HOST:PORT: REASON", exit 1.
    let socket =
        TcpStream::connect((host.as_str(), port)).or_fail(format_args!("connect to {host}:{port}"));
    run(socket)
}

/// Copies stdin to `socket` and `socket` to stdout until the peer closes.
fn run(socket: TcpStream) -> ! {
    let _ = socket;
    // TODO 1. Make the socket non-blocking (socket.set_nonblocking(true)).
    //    Why: select says "writable" when *some* room is free, not room for
    //    everything you hold.
    //
    // TODO 2. Keep the loop's state: is stdin still open? the bytes read from
    //    stdin that the socket has not taken yet (a Vec<u8>)? has the socket's
    //    writing half been shut down?
    //
    // TODO 3. The loop. On EVERY iteration build fresh sets
    //    (nix::sys::select::FdSet::new()) because select overwrites them:
    //      - read set: the socket always; stdin while it is open and the
    //        buffer is not too full (say under 64 KiB);
    //      - write set: the socket only while the buffer is not empty (an
    //        empty socket is always writable: asking anyway is a busy loop).
    //    Then nix::sys::select::select(nfds, &mut read, &mut write, None, None)
    //    where nfds is the highest fd plus one, and no timeout. Retry on EINTR.
    //
    // TODO 4. After select, with set.contains(fd):
    //      - socket readable: read once; 0 bytes means the peer closed:
    //        closed_by_foreign_host(). Otherwise write the bytes to stdout and
    //        flush (Rust's stdout is line-buffered: a prompt without a newline
    //        would wait). ConnectionReset also means the peer is gone.
    //      - socket writable: write the buffer once; remove only the n bytes
    //        written (a partial write is normal). WouldBlock: try next time.
    //      - stdin readable: read once (nix::unistd::read on stdin's fd, not
    //        io::stdin().read(): Rust's stdin buffers bytes select cannot see).
    //        0 bytes: stdin ended. Stop reading it, and once the buffer is
    //        empty, socket.shutdown(Shutdown::Write). Keep reading the socket
    //        until the peer closes.
    //
    // Errors that are not "would block", "interrupted" or "the peer is gone":
    // labkit::fail(...) (one line on stderr, exit 1).
    todo!("write the select loop: see the TODOs in labs/select_telnet/src/main.rs")
}

/// The peer closed (or reset) the connection: say so, like telnet, and exit 0.
#[allow(dead_code)]
fn closed_by_foreign_host() -> ! {
    eprintln!("Connection closed by foreign host.");
    exit(0)
}
