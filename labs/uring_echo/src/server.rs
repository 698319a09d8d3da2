//! The completion loop: submit, wait, dispatch each completion on its
//! `user_data`, decide what to submit next.
//!
//! Compare with epoll: there, one wake-up says "these sockets are ready" and
//! the server then makes one `read` or `write` call per socket. Here every
//! receive, send and accept is already submitted; a wake-up brings their
//! results, and the next operations are only queued in the submission
//! ring, in memory. One `io_uring_enter` then hands the kernel all of them
//! and waits for the next completions: one system call per round, however
//! many connections the round served.

use crate::conn::Conn;
use crate::given::Slab;
use crate::op::{ConnOp, Op};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use nix::libc;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

/// How long accepting pauses after an error such as EMFILE. A static: the
/// kernel may read it at any time until the timer's completion.
static ACCEPT_RETRY: types::Timespec = types::Timespec::new().nsec(100_000_000);

/// The most submissions one completion leads to: a connection's send and
/// receive, or an accepted connection's receive and the accept re-armed.
const OPS_PER_COMPLETION: usize = 2;

pub struct Server {
    ring: IoUring,
    listener: TcpListener,
    conns: Slab<Conn>,
    /// Multishot accept, until the kernel says it does not have it.
    multishot: bool,
    /// The completions of one round, copied out of the ring.
    batch: Vec<cqueue::Entry>,
}

impl Server {
    pub fn new(ring: IoUring, listener: TcpListener) -> Server {
        Server {
            ring,
            listener,
            conns: Slab::default(),
            multishot: true,
            batch: Vec::new(),
        }
    }

    pub fn run(mut self) -> ! {
        // TODO 4: the completion loop. Arm the accept once (TODO 3), then
        //    for ever: `enter(&self.ring, 1)`, the one system call of a
        //    round (it submits everything queued and sleeps until a
        //    completion is there), then `self.reap()`.
        todo!("TODO 4: the completion loop in Server::run, src/server.rs")
    }

    /// Handles the completions waiting in the ring.
    fn reap(&mut self) {
        // TODO 4: copy at most `capacity of the submission ring /
        //    OPS_PER_COMPLETION` completions out of `self.ring.completion()`
        //    into `self.batch` (so that the round's submissions always fit
        //    in the submission ring), then `self.complete` each one.
        todo!("TODO 4: Server::reap")
    }

    fn complete(&mut self, cqe: &cqueue::Entry) {
        // TODO 4: dispatch on `Op::from_user_data(cqe.user_data())`: an
        //    accept (`accepted`, TODO 5), the accept's retry timer
        //    (`arm_accept`), or a connection's operation (`conn_completed`).
        todo!("TODO 4: Server::complete")
    }

    fn conn_completed(&mut self, token: usize, op: ConnOp, result: i32) {
        // TODO 4: find the connection by its token (it is always there: a
        //    connection stays in the slab until its last completion), hand
        //    it the result (`Conn::complete`), `push` what `next_ops` gives,
        //    then remove it from the slab once `is_finished` (TODO 10):
        //    dropping it frees its buffers and closes its socket.
        todo!("TODO 4: Server::conn_completed")
    }

    fn arm_accept(&mut self) {
        // TODO 3: push an accept on the listener, `user_data` Op::Accept:
        //    `opcode::AcceptMulti` while `self.multishot` (one submission,
        //    one completion per client, Linux 5.19+), else a single-shot
        //    `opcode::Accept` (null address pointers). SOCK_CLOEXEC flags.
        todo!("TODO 3: Server::arm_accept")
    }

    fn accepted(&mut self, result: i32, flags: u32) {
        // TODO 5: `result` is the new socket's fd (`add_conn`) or -errno.
        //    Unless `cqueue::more(flags)` (the multishot accept is still
        //    armed), accept again: at once, but after -EINVAL with
        //    multishot, switch to single-shot first (an old kernel); after
        //    EMFILE, ENFILE, ENOMEM... (not ECONNABORTED or EINTR), push an
        //    `opcode::Timeout` on ACCEPT_RETRY (Op::AcceptRetry) instead:
        //    an accept re-armed now would fail again at once, for ever.
        todo!("TODO 5: Server::accepted")
    }

    fn add_conn(&mut self, fd: i32) {
        // TODO 5: wrap the fd (`TcpStream::from_raw_fd`: it is ours now),
        //    insert a `Conn` in the slab, push what its `next_ops` gives.
        todo!("TODO 5: Server::add_conn")
    }
}

/// Queues one submission in the ring's memory; the kernel sees it at the
/// next `io_uring_enter`.
fn push(ring: &mut IoUring, entry: &squeue::Entry) {
    // TODO 2: `unsafe { ring.submission().push(entry) }`. The unsafe is
    //    your promise that every buffer the entry points to stays where it
    //    is, untouched, until the entry's completion (see conn.rs). If the
    //    ring is full, `enter(ring, 0)` and push again.
    todo!("TODO 2: push, src/server.rs")
}

/// `io_uring_enter`: submits every queued entry, then waits until `want`
/// completions are there.
fn enter(ring: &IoUring, want: usize) {
    // TODO 2: `ring.submit_and_wait(want)`. EINTR (a signal), EAGAIN and
    //    EBUSY (the kernel short of room or memory for now): return, the
    //    loop enters again soon. Any other error: `labkit::fail`.
    todo!("TODO 2: enter, src/server.rs")
}
