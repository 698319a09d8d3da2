//! epoll_et: the line echo server on edge-triggered epoll, for 10,000
//! simultaneous clients. Each wakeup drains: accept, read and write until
//! EAGAIN.
//!
//! Read the handout first: docs/labs/epoll_et.md. Grade your work with
//! `make grade LAB=epoll_et`.
//!
//! The scaffolding below (command line, fd limit, the listening socket and the
//! `listening on` line) is done for you. Your job is everything after it. You
//! may start from your epoll_lt: the protocol is the same.

use labkit::{EchoArgs, OrFail};
use std::net::TcpListener;

fn main() {
    let args = EchoArgs::parse();
    labkit::raise_fd_limit();
    let listener = labkit::bind_loopback(args.port);
    labkit::announce(&listener);
    serve(listener).or_fail("epoll_et");
}

/// Serves clients forever.
fn serve(listener: TcpListener) -> std::io::Result<()> {
    let _ = listener;
    // TODO 1. Make the listener and every accepted socket non-blocking:
    //    draining until EAGAIN is impossible with blocking fds.
    //
    // TODO 2. Create the epoll instance and register the listener with
    //    EPOLLIN | EPOLLET.
    //
    // TODO 3. Register each accepted client once, with EPOLLET (for example
    //    EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET), keyed by a token that
    //    finds its state.
    //
    // TODO 4. The loop: epoll.wait(&mut events, EpollTimeout::NONE); on each
    //    event, finish the job, because the same bytes are never reported twice:
    //      - listener: accept until WouldBlock;
    //      - client: read until WouldBlock (or until 64 KiB of replies are
    //        pending: then write, and go back to reading as soon as there is
    //        room, since no new edge will come for bytes already waiting);
    //      - write until WouldBlock or nothing is pending.
    //    When a connection ends, epoll.delete it and drop the socket.
    todo!("write the edge-triggered epoll loop: see the TODOs in labs/epoll_et/src/main.rs")
}
