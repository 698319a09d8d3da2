//! epoll_lt: the line echo server of poll_echo, on level-triggered epoll,
//! for 10,000 simultaneous clients.
//!
//! Read the handout first: docs/labs/epoll_lt.md. Grade your work with
//! `make grade LAB=epoll_lt`.
//!
//! The scaffolding below (command line, fd limit, the listening socket and the
//! `listening on` line) is done for you. Your job is everything after it. You
//! may start from your poll_echo: the protocol is the same.

use labkit::{EchoArgs, OrFail};
use std::net::TcpListener;

fn main() {
    let args = EchoArgs::parse();
    labkit::raise_fd_limit();
    let listener = labkit::bind_loopback(args.port);
    labkit::announce(&listener);
    serve(listener).or_fail("epoll_lt");
}

/// Serves clients forever.
fn serve(listener: TcpListener) -> std::io::Result<()> {
    let _ = listener;
    // TODO 1. Make the listener non-blocking, and every accepted socket too.
    //
    // TODO 2. Create the epoll instance (nix::sys::epoll::Epoll::new) and
    //    register the listener for EPOLLIN with a `data` token of its own.
    //
    // TODO 3. Keep each client's state (its socket, the unfinished line, the
    //    unsent replies, how the connection ends) somewhere you can find from
    //    the u64 `data` of an event: a Vec/slab index is a good token.
    //    Register each accepted client: EPOLLIN, no EPOLLET (level-triggered).
    //
    // TODO 4. The loop: epoll.wait(&mut events, EpollTimeout::NONE), then for
    //    each event: accept until WouldBlock, or read once / write what is
    //    pending for that client. Change its registration with epoll.modify
    //    when what it waits for changes: EPOLLOUT only while replies are
    //    pending, EPOLLIN only while fewer than 64 KiB are. When a connection
    //    ends, epoll.delete it and drop the socket.
    todo!("write the epoll loop: see the TODOs in labs/epoll_lt/src/main.rs")
}
