//! select_echo: a line echo server that serves many clients from one thread
//! with select(2), each connection a small state machine.
//!
//! Read the handout first: docs/labs/select_echo.md. The exact rules are in
//! its "Specification" section. Grade your work with `make grade LAB=select_echo`.
//!
//! The scaffolding below (command line, fd limit, the listening socket and the
//! `listening on` line) is done for you. Your job is `serve`.

use labkit::EchoArgs;
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
    serve(listener)
}

/// Serves clients forever: it never returns, and nothing a client does
/// (a reset, a read or write error) may end it. Handle each error where it
/// happens: `?` on a client's read or write, or on `accept`, would stop the
/// whole server for one client. Only a failed `select` is fatal:
/// `labkit::fail`, one line on stderr and exit 1.
fn serve(listener: TcpListener) -> ! {
    let _ = listener;
    // TODO 1. Make the listener non-blocking, and every accepted socket too.
    //
    // TODO 2. The state machine: an enum of the states a connection can be in
    //    (reading lines, closing after `quit` or a too-long line, lingering
    //    until the client's EOF, flushing after the client's EOF, done), and a
    //    struct per connection holding its socket, its state, its unfinished
    //    line and its unsent replies. Put every state change in one function,
    //    and give it `wants_read()` and `wants_write()`: which sets it joins,
    //    from its state and its unsent replies alone (TODO 3).
    //
    // TODO 3. The loop: before every call build two fresh
    //    nix::sys::select::FdSet values from the connections' states: the read
    //    set (the listener; a client unless 64 KiB of its replies are unsent
    //    or it has already sent EOF: a socket at EOF is readable forever, and
    //    asking again would busy-loop), the write set (a client with unsent
    //    replies). Compute nfds (highest fd + 1) each round, call select with
    //    no timeout, then:
    //      - listener readable: accept until WouldBlock; a socket whose fd is
    //        FD_SETSIZE or more never goes in a set: write `ERR server full\n`,
    //        shutdown(Write), and close it;
    //      - client readable: read once, cut lines, queue the echoes;
    //      - client writable, and right after a read: write pending replies
    //        until WouldBlock;
    //      - on EOF or an error: finish or drop that client only.
    //
    // Replace this todo!() with the loop (`loop { ... }` never returns, as
    // `-> !` asks).
    todo!("write the select loop: see the TODOs in labs/select_echo/src/main.rs")
}
