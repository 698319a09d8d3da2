//! uring_echo: the line echo server on io_uring.
//!
//! epoll says when a socket is *ready*, and the server then makes the call.
//! io_uring takes the call itself: the server writes "receive into this
//! buffer" or "send these bytes" as an entry (SQE) in the submission ring,
//! a memory area shared with the kernel, and later finds the result as an
//! entry (CQE) in the completion ring. One `io_uring_enter` submits every
//! entry queued and waits for completions: that is where the system calls
//! go, and why there are fewer of them.
//!
//! The files: `main.rs` (start-up: the ring, the listener), `server.rs` (the
//! completion loop), `conn.rs` (one connection, and the rule on buffers the
//! kernel is using), `op.rs` (what a completion's `user_data` says),
//! `given.rs` (the line framing of the earlier labs).

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
///
/// No SQPOLL (`setup_sqpoll`): a kernel thread would poll the submission
/// ring for us, saving the `io_uring_enter` calls by keeping a CPU busy.
fn setup_ring() -> IoUring {
    IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES)
        .unwrap_or_else(|err| {
            let why = why_unavailable(&err);
            labkit::fail(format_args!("cannot set up io_uring: {err}{why}"))
        })
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
