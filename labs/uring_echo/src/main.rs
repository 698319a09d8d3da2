//! uring_echo: the line echo server on io_uring.
//!
//! Read the handout first: docs/labs/uring_echo.md. Grade your work with
//! `make grade LAB=uring_echo`.
//!
//! epoll says when a socket is *ready*, and the server then makes the call.
//! io_uring takes the call itself: the server writes "receive into this
//! buffer" or "send these bytes" as an entry (SQE) in the submission ring,
//! a memory area shared with the kernel, and later finds the result as an
//! entry (CQE) in the completion ring. One `io_uring_enter` submits every
//! entry queued and waits for completions.
//!
//! Given: the command line, the fd limit, the listening socket and the
//! `listening on` line (below), the `user_data` encoding (`op.rs`), the line
//! framing and a slab (`given.rs`), and the skeleton of `server.rs` and
//! `conn.rs`. Yours: the TODOs, numbered in the order to write them.
//!
//! 1. `setup_ring` below.
//! 2. to 5. `server.rs`: submitting, accepting, the completion loop.
//! 6. to 10. `conn.rs`: receiving, echoing, sending, the lingering close,
//!    and when a connection may be freed.

// Remove once you have written the TODOs: the skeleton's parameters and
// fields are unused until then.
#![allow(unused_variables, unused_mut, dead_code, unused_imports)]

mod conn;
mod given;
mod op;
mod server;

use io_uring::{IoUring, opcode};
use labkit::{EchoArgs, OrFail};
use nix::errno::Errno;
use std::io;

/// Submission ring entries: room for a round's submissions (see
/// `Server::reap`).
const SQ_ENTRIES: u32 = 4096;
/// Completion ring entries. Every idle connection has a receive in flight,
/// so 10,000 clients leaving at once complete 10,000 receives together; the
/// ring holds them all. (Past its size the kernel keeps the extra
/// completions in a list and hands them over as the ring drains, at the cost
/// of extra work, since Linux 5.5's IORING_FEAT_NODROP.)
const CQ_ENTRIES: u32 = 16384;

fn main() {
    let args = EchoArgs::parse();
    labkit::raise_fd_limit();
    // The ring comes first: a server that says it is listening can serve, and
    // where io_uring is unavailable it says so before anything else.
    let ring = setup_ring();
    require_ops(&ring);
    let listener = labkit::bind_loopback(args.port);
    labkit::announce(&listener);
    server::Server::new(ring, listener).run()
}

/// Creates the rings, or ends the program with one line saying why not.
fn setup_ring() -> IoUring {
    // TODO 1: the rings. `IoUring::builder()`, with a completion ring of
    //    CQ_ENTRIES (`setup_cqsize`), `build(SQ_ENTRIES)`. No SQPOLL
    //    (`setup_sqpoll`): its kernel thread polls the ring, a busy CPU.
    //    If it fails (EPERM: blocked by a container's seccomp profile or
    //    the sysctl kernel.io_uring_disabled; ENOSYS: no io_uring in this
    //    kernel), `labkit::fail` with one line that says what failed and
    //    why (`why_unavailable` below): exit 1, no panic, and no
    //    `listening on` line.
    todo!("TODO 1: set up the ring in setup_ring, src/main.rs")
}

/// What a failed `io_uring_setup` most likely means, for the error line.
fn why_unavailable(err: &io::Error) -> &'static str {
    match err.raw_os_error().map(Errno::from_raw) {
        Some(Errno::EPERM) => {
            ": blocked here (a container's seccomp profile, or the sysctl kernel.io_uring_disabled)"
        }
        Some(Errno::ENOSYS) => ": this kernel has no io_uring (Linux 5.1 or later, built with it)",
        _ => "",
    }
}

/// Ends the program, with one line, on a kernel whose io_uring lacks an
/// operation the server submits; otherwise every connection would fail with
/// EINVAL later. (SHUTDOWN, the newest, came with Linux 5.11.)
fn require_ops(ring: &IoUring) {
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .or_fail("cannot ask io_uring which operations it has");
    let needed = [
        (opcode::Accept::CODE, "ACCEPT"),
        (opcode::Recv::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::Shutdown::CODE, "SHUTDOWN"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::Timeout::CODE, "TIMEOUT"),
    ];
    for (code, name) in needed {
        if !probe.is_supported(code) {
            labkit::fail(format_args!(
                "this kernel's io_uring has no IORING_OP_{name} (Linux 5.11 or later needed)"
            ));
        }
    }
}
