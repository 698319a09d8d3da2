//! select_echo: a line echo server that serves many clients from one thread
//! with select(2), each connection a small state machine.
//!
//! Read the handout first: docs/labs/select_echo.md. The exact rules are in
//! its "Specification" section. Grade your work with `make grade LAB=select_echo`.
//!
//! The scaffolding below (command line, fd limit, the listening socket and the
//! `listening on` line) is done for you. Your job is everything after it.

use labkit::{EchoArgs, OrFail};
use std::net::TcpListener;

/// select's fd sets hold fds 0..FD_SETSIZE (1024) and nothing above.
#[allow(dead_code)]
const FD_SETSIZE: i32 = nix::libc::FD_SETSIZE as i32;

fn main() {
    let args = EchoArgs::parse();
    // The soft fd limit goes up to the hard limit, so that accept() hands
    // you fds of 1024 and more to refuse instead of failing with EMFILE.
    labkit::raise_fd_limit();
    let listener = labkit::bind_loopback(args.port);
    labkit::announce(&listener);
    serve(listener).or_fail("select_echo");
}

/// Serves clients forever.
fn serve(listener: TcpListener) -> std::io::Result<()> {
    let _ = listener;
    // TODO 1. Make the listener non-blocking, and every accepted socket too.
    //
    // TODO 2. The state machine: an enum of the states a connection can be in
    //    (reading lines, closing after `quit` or a too-long line, lingering
    //    until the client's EOF, flushing after the client's EOF, done), and a
    //    struct per connection holding its state, its unfinished line and its
    //    unsent replies. Put every state change in one function.
    //
    // TODO 3. The loop: before every call build two fresh
    //    nix::sys::select::FdSet values from the connections' states: the read
    //    set (the listener; a client unless 64 KiB of its replies are unsent),
    //    the write set (a client with unsent replies). Compute nfds (highest fd
    //    + 1) each round, call select with no timeout, then:
    //      - listener readable: accept until WouldBlock; a socket whose fd is
    //        FD_SETSIZE or more never goes in a set: write `ERR server full\n`,
    //        shutdown(Write), and close it;
    //      - client readable: read once, cut lines, queue the echoes;
    //      - client writable: write pending replies until WouldBlock;
    //      - on EOF or an error: finish or drop that client only.
    todo!("write the select loop: see the TODOs in labs/select_echo/src/main.rs")
}
