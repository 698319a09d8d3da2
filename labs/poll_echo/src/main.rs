//! poll_echo: a line echo server that serves many clients from one thread
//! with poll(2).
//!
//! Read the handout first: docs/labs/poll_echo.md. The exact rules are in its
//! "Specification" section. Grade your work with `make grade LAB=poll_echo`.
//!
//! The scaffolding below (command line, fd limit, the listening socket and the
//! `listening on` line) is done for you. Your job is everything after it.

use labkit::{EchoArgs, OrFail};
use std::net::TcpListener;

fn main() {
    let args = EchoArgs::parse();
    labkit::raise_fd_limit();
    let listener = labkit::bind_loopback(args.port);
    labkit::announce(&listener);
    serve(listener).or_fail("poll_echo");
}

/// Serves clients forever.
fn serve(listener: TcpListener) -> std::io::Result<()> {
    let _ = listener;
    // TODO 1. Make the listener non-blocking (TcpListener::set_nonblocking),
    //    and every accepted socket too: accepted sockets do not inherit it.
    //
    // TODO 2. Keep one state per client: its socket, the bytes of the line it
    //    has not finished yet, and the replies not yet written. Think about how
    //    a connection ends (`quit`, a line over 8192 bytes, the client's EOF)
    //    and what it must still do before it is closed (the lingering close).
    //
    // TODO 3. The loop: build a Vec<nix::poll::PollFd> with the listener
    //    (POLLIN) and each client (POLLIN unless 64 KiB of replies are unsent,
    //    POLLOUT only while replies are unsent), call nix::poll::poll with no
    //    timeout, then for each fd with revents:
    //      - listener: accept until WouldBlock;
    //      - client readable: read once, split the bytes into lines, queue the
    //        echoes (or end the connection);
    //      - client writable: write pending replies until WouldBlock;
    //      - on EOF or an error: finish or drop that client only.
    todo!("write the poll loop: see the TODOs in labs/poll_echo/src/main.rs")
}
