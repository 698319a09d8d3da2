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
        self.arm_accept();
        loop {
            // The one system call of a round: it submits everything queued
            // since the last round and sleeps until a completion is there.
            enter(&self.ring, 1);
            self.reap();
        }
    }

    /// Handles the completions waiting in the ring.
    ///
    /// At most half the submission ring's size per round: each completion
    /// queues at most two submissions, so the ring never fills mid-round
    /// and the round's submissions all go in the next `enter`.
    fn reap(&mut self) {
        let room = self.ring.submission().capacity() / OPS_PER_COMPLETION;
        let mut batch = std::mem::take(&mut self.batch);
        // Copying the entries out and dropping the queue hands their slots
        // back to the kernel at once.
        batch.extend(self.ring.completion().take(room));
        for cqe in &batch {
            self.complete(cqe);
        }
        batch.clear();
        self.batch = batch;
    }

    fn complete(&mut self, cqe: &cqueue::Entry) {
        match Op::from_user_data(cqe.user_data()) {
            Op::Accept => self.accepted(cqe.result(), cqe.flags()),
            Op::AcceptRetry => self.arm_accept(),
            Op::Conn(token, op) => self.conn_completed(token, op, cqe.result()),
        }
    }

    fn conn_completed(&mut self, token: usize, op: ConnOp, result: i32) {
        let conn = self
            .conns
            .get_mut(token)
            .expect("a connection stays in the slab until its last completion");
        conn.complete(op, result);
        for entry in conn.next_ops(token) {
            push(&mut self.ring, &entry);
        }
        if conn.is_finished() {
            // Nothing in flight: dropping the connection frees its buffers
            // and closes its socket.
            self.conns.remove(token);
        }
    }

    fn arm_accept(&mut self) {
        let fd = types::Fd(self.listener.as_raw_fd());
        let entry = if self.multishot {
            // One submission, one completion per client for as long as it
            // stays armed (Linux 5.19 and later).
            opcode::AcceptMulti::new(fd)
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            // No address wanted: null pointers, nothing for the kernel to
            // write to.
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        push(&mut self.ring, &entry.user_data(Op::Accept.user_data()));
    }

    fn accepted(&mut self, result: i32, flags: u32) {
        if result >= 0 {
            self.add_conn(result);
        }
        // A multishot accept stays armed while its completions say MORE;
        // one without it has ended. A single-shot accept always ends.
        if cqueue::more(flags) {
            return;
        }
        match result {
            err if err == -libc::EINVAL && self.multishot => {
                // A kernel before 5.19 does not know multishot accept: one
                // accept per client, re-armed at each completion.
                self.multishot = false;
                self.arm_accept();
            }
            // Out of fds (EMFILE, ENFILE) or memory: the client waits in the
            // backlog, and an accept re-armed now would fail again at once,
            // round after round. The clients already connected are served
            // meanwhile; accepting resumes after a pause. (ECONNABORTED: the
            // client gave up while in the backlog; accept the next one.)
            err if err < 0 && err != -libc::ECONNABORTED && err != -libc::EINTR => {
                let timer = opcode::Timeout::new(&ACCEPT_RETRY).build();
                let timer = timer.user_data(Op::AcceptRetry.user_data());
                push(&mut self.ring, &timer);
            }
            _ => self.arm_accept(),
        }
    }

    fn add_conn(&mut self, fd: i32) {
        // SAFETY: the kernel has just created this fd for us; nothing else
        // owns it. Blocking mode is fine: the server never calls recv or
        // send itself, and io_uring never lets a socket operation block.
        let socket = unsafe { TcpStream::from_raw_fd(fd) };
        let token = self.conns.insert(Conn::new(socket));
        let conn = self.conns.get_mut(token).expect("just inserted");
        for entry in conn.next_ops(token) {
            push(&mut self.ring, &entry);
        }
    }
}

/// Queues one submission in the ring's memory; the kernel sees it at the
/// next `io_uring_enter`.
fn push(ring: &mut IoUring, entry: &squeue::Entry) {
    loop {
        // SAFETY: every buffer an entry points to is a connection's, and the
        // connection keeps it, unmoved and untouched, until the entry's
        // completion has arrived (see conn.rs); ACCEPT_RETRY is a static.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return;
        }
        // The ring is full (`reap` makes that rare): submit it now.
        enter(ring, 0);
    }
}

/// `io_uring_enter`: submits every queued entry, then waits until `want`
/// completions are there.
fn enter(ring: &IoUring, want: usize) {
    let Err(err) = ring.submit_and_wait(want) else {
        return;
    };
    match err.raw_os_error() {
        // A signal, or the kernel short of memory for now: the caller goes
        // on, and enters again soon.
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY) => {}
        // The completion ring overflowed and the kernel had no memory to
        // keep the extra completions (it normally keeps them and hands them
        // over as the ring drains): some operations will never be reported,
        // so their buffers can never safely be freed or reused.
        Some(libc::EBADR) => labkit::fail("io_uring_enter: completions were lost (EBADR)"),
        _ => labkit::fail(format_args!("io_uring_enter: {err}")),
    }
}
