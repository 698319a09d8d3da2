//! Deliberately broken line echo servers for the `uring_echo` lab, and an independent
//! correct one.
//!
//! [`run`] is one single-threaded io_uring line echo server written from scratch to the
//! contract in `CONTRACT.md` ("Echo servers", "uring_echo, in addition"): accepting,
//! receiving, sending and closing are all submitted to the ring, and the thread sleeps in
//! `io_uring_enter` until a completion arrives. With [`Fault::None`] it is a correct
//! implementation (`correct_uring_echo`); every other [`Fault`] adds exactly one classic
//! mistake, marked `FAULT(<name>)` in the code, so that each grader check can be shown to
//! fail on a program that is wrong in just that way.
//!
//! It is also, on purpose, unlike the reference solution wherever the contract allows:
//! - one single-shot `IORING_OP_ACCEPT` in flight, armed again by each completion (no
//!   multishot accept); out of descriptors, accepting pauses on an `IORING_OP_TIMEOUT`;
//! - a ring of 128 submission entries and 16,384 completion entries; submissions that do
//!   not fit wait in a backlog of the server's own until the next `io_uring_enter`;
//! - a blocking listener and blocking client sockets: the kernel waits for them, never
//!   the thread;
//! - a 16 KiB receive buffer per connection, and replies double-buffered: one `Vec` takes
//!   new replies while the kernel sends from the other;
//! - connections in a `Vec<Option<Conn>>` slab, `user_data` = slot << 2 | operation;
//! - a connection closed with `IORING_OP_CLOSE` once none of its operations is in flight
//!   (`shutdown(SHUT_RDWR)` first ends one that is), and `shutdown(SHUT_WR)` called directly.
//!
//! The buffer rule io_uring adds to epoll's: memory handed to the kernel in a submission
//! (a receive buffer, the bytes of a send) belongs to the kernel until that operation's
//! completion arrives. It must not be written, moved or freed before, so a connection is
//! freed only after its close completes, and its buffers live on the heap (moving a `Conn`
//! in the slab moves no buffer).

use broken_common::{
    ACCEPT_PAUSE, HIGH_WATER, MAX_LINE, Phase, TOO_LONG, announce, is_quit, listen_or_exit,
    port_or_exit, program_name, raise_nofile_limit,
};
use io_uring::{IoUring, opcode, squeue, types};
use nix::errno::Errno;
use nix::libc;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::Shutdown;
use socket2::Socket;
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::process;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

/// Submission queue entries.
const SQ_ENTRIES: u32 = 128;
/// Completion queue entries: room for a completion of every connection's receive and
/// send at once in the common case (the kernel keeps any overflow, IORING_FEAT_NODROP).
const CQ_ENTRIES: u32 = 16 * 1024;
/// A connection's receive buffer.
const RECV_BUF: usize = 16 * 1024;
/// FAULT(ReusedBuffer): the one reply buffer's fixed capacity, more than backpressure
/// ever lets it hold (64 KiB, one receive's replies, a line carried over, the ERR line),
/// so that it never moves.
const REUSED_CAPACITY: usize = 128 * 1024;
/// FAULT(Sqpoll): how long the kernel's polling thread spins before it sleeps.
const SQPOLL_IDLE_MS: u32 = 1000;

/// `user_data` of a connection's operations: slot << 2 | one of these.
const OP_RECV: u64 = 0;
const OP_SEND: u64 = 1;
const OP_CLOSE: u64 = 2;
/// `user_data` of the server's own operations, above any slot's.
const ACCEPT: u64 = u64::MAX;
const ACCEPT_RESUME: u64 = u64::MAX - 1;
const HELPER_DONE: u64 = u64::MAX - 2;

fn token(slot: usize, op: u64) -> u64 {
    (slot as u64) << 2 | op
}

/// The one mistake a server makes; [`Fault::None`] is a correct server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Correct per the contract.
    None,
    /// The lab written with level-triggered epoll, non-blocking sockets, read and write:
    /// no ring at all.
    UsesEpoll,
    /// The ring's setup is not checked (`IoUring::new(..).unwrap()`): where io_uring is
    /// refused, the server panics instead of saying so in one line and exiting 1.
    UncheckedSetup,
    /// Each connection's receives are plain blocking `read`s in a helper thread of its
    /// own; their results reach the ring loop through an eventfd read on the ring.
    ThreadRecv,
    /// A receive is always submitted, whatever is unsent: no backpressure.
    Unbounded,
    /// A short send is taken for a whole one: the rest of the buffer is dropped.
    ShortSend,
    /// No lingering close: after `quit` (or a line too long) the connection is closed right
    /// after its last reply, while the client may still be sending.
    NoLinger,
    /// Never waits for a completion: submits without waiting and polls the completion
    /// queue in a loop.
    Spin,
    /// A reply buffer reused while its send is in flight: the submission is taken for a
    /// finished `write(2)`, so the next replies are written over bytes the kernel has not
    /// sent yet.
    ReusedBuffer,
    /// Panics on a completion with `-ECONNRESET` (a client that reset its connection).
    ResetCrash,
    /// The ring set up with `IORING_SETUP_SQPOLL`: a kernel thread polls the submission
    /// queue.
    Sqpoll,
    /// The next accept is submitted only when the previous client's connection is closed:
    /// one client at a time.
    AcceptSerial,
    /// io_uring used as a better epoll: a poll request (`IORING_OP_POLL_ADD`) on a
    /// non-blocking socket, then a plain `read` or `write` when it completes.
    PollThenRead,
    /// As [`Fault::PollThenRead`], with `recv` and `send` (`recvfrom`, `sendto`) instead
    /// of `read` and `write`.
    PollThenRecv,
}

/// Runs the echo server with the given fault, exiting 2 on a usage error and 1 on a fatal
/// error (io_uring unavailable among them). Never returns.
pub fn run(fault: Fault) -> ! {
    if fault == Fault::UsesEpoll {
        // FAULT(UsesEpoll): the course's correct epoll_lt server, not a ring in sight.
        broken_epoll::run(broken_epoll::Mode::Level, broken_epoll::Fault::None);
    }
    let prog = program_name("broken_uring");
    let port = port_or_exit(&prog);
    raise_nofile_limit();
    // Blocking: with io_uring the kernel waits for the socket, the thread never does.
    let (listener, port) = listen_or_exit(&prog, Ipv4Addr::LOCALHOST, port, false);
    // The ring exists before the listening line: a server that cannot have one says so
    // and exits instead of taking clients it cannot serve.
    let ring = new_ring(&prog, fault);
    let server = Server::new(prog, listener, ring, fault);
    announce(port);
    server.run()
}

/// The ring, or one line on stderr and exit status 1 if the kernel refuses it.
fn new_ring(prog: &str, fault: Fault) -> IoUring {
    let mut builder = IoUring::builder();
    builder.setup_cqsize(CQ_ENTRIES);
    if fault == Fault::Sqpoll {
        // FAULT(Sqpoll): a kernel thread (iou-sqp-PID) polls the submission queue, busy
        // for a second after every submission.
        builder.setup_sqpoll(SQPOLL_IDLE_MS);
    }
    if fault == Fault::UncheckedSetup {
        // FAULT(UncheckedSetup): "io_uring is always there": a refused io_uring_setup
        // (EPERM under a container's seccomp profile, ENOSYS) panics.
        return builder.build(SQ_ENTRIES).unwrap();
    }
    builder.build(SQ_ENTRIES).unwrap_or_else(|e| {
        eprintln!(
            "{prog}: io_uring is not available: io_uring_setup failed: {e} (blocked by seccomp, kernel.io_uring_disabled, or a kernel without io_uring)"
        );
        process::exit(1);
    })
}

/// The ring and the submissions waiting for room in it.
struct Queue {
    ring: IoUring,
    /// Submissions that did not fit in the submission queue, oldest first.
    backlog: VecDeque<squeue::Entry>,
}

impl Queue {
    /// Queues one submission. Every submission's memory (a buffer, the timespec, the
    /// eventfd counter) is owned by the server or a connection that stays put until
    /// that submission's completion.
    fn push(&mut self, sqe: squeue::Entry) {
        if self.backlog.is_empty() {
            // SAFETY: see above: what the entry points at outlives its completion.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return;
            }
        }
        self.backlog.push_back(sqe);
    }

    /// Moves backlogged submissions into the submission queue while it has room.
    fn refill(&mut self) {
        let mut sq = self.ring.submission();
        while let Some(sqe) = self.backlog.front() {
            // SAFETY: as in `push`.
            if unsafe { sq.push(sqe) }.is_err() {
                break;
            }
            self.backlog.pop_front();
        }
    }
}

/// One client connection.
struct Conn {
    fd: RawFd,
    /// The receive buffer: the kernel's from a receive's submission to its completion.
    inbuf: Box<[u8]>,
    /// The current line so far: never a `\n`, never more than [`MAX_LINE`] bytes.
    line: Vec<u8>,
    /// Replies not yet handed to the kernel.
    out: Vec<u8>,
    /// Replies handed to the kernel: untouched until the last of them is sent.
    sending: Vec<u8>,
    /// Where the bytes handed to the kernel start, how many there are, and how many of
    /// them the kernel has sent.
    kernel: *const u8,
    kernel_len: usize,
    kernel_done: usize,
    phase: Phase,
    /// The client has shut down its writing half.
    peer_eof: bool,
    recv_busy: bool,
    send_busy: bool,
    /// The connection is over: it is closed once no operation of its is in flight.
    dying: bool,
    /// `shutdown(SHUT_RDWR)` was called to end an operation in flight.
    shut: bool,
    close_submitted: bool,
    /// FAULT(ThreadRecv): asks this connection's helper thread for one receive.
    helper: Option<mpsc::Sender<usize>>,
    /// FAULT(PollThenRead, PollThenRecv): receives and sends are polls, then plain calls.
    poll_first: bool,
}

impl Conn {
    fn new(fd: RawFd, fault: Fault) -> Self {
        let out = if fault == Fault::ReusedBuffer {
            Vec::with_capacity(REUSED_CAPACITY)
        } else {
            Vec::new()
        };
        Conn {
            fd,
            inbuf: vec![0; RECV_BUF].into_boxed_slice(),
            line: Vec::new(),
            out,
            sending: Vec::new(),
            kernel: std::ptr::null(),
            kernel_len: 0,
            kernel_done: 0,
            phase: Phase::Open,
            peer_eof: false,
            recv_busy: false,
            send_busy: false,
            dying: false,
            shut: false,
            close_submitted: false,
            helper: None,
            poll_first: matches!(fault, Fault::PollThenRead | Fault::PollThenRecv),
        }
    }

    /// Reply bytes not yet sent, whether handed to the kernel or not.
    fn unsent(&self) -> usize {
        self.out.len() + self.kernel_len - self.kernel_done
    }

    fn wants_recv(&self, fault: Fault) -> bool {
        if fault == Fault::Unbounded && self.phase == Phase::Open {
            // FAULT(Unbounded): receives whatever is unsent; a client that does not read
            // makes the replies pile up in memory.
            return true;
        }
        self.phase.wants_read(self.unsent(), self.peer_eof)
    }

    /// Submits what the connection needs next: the rest of a send or new replies, a
    /// receive, or its close.
    fn progress(&mut self, slot: usize, q: &mut Queue, fault: Fault) {
        if !self.dying {
            self.send_more(slot, q, fault);
            self.advance_phase(fault);
        }
        if !self.dying && !self.recv_busy && self.wants_recv(fault) {
            self.start_recv(slot, q);
        }
        if self.dying {
            self.wind_down(slot, q);
        }
    }

    /// At most one send in flight per connection: two could complete out of order.
    fn send_more(&mut self, slot: usize, q: &mut Queue, fault: Fault) {
        if self.send_busy {
            return;
        }
        if self.kernel_done < self.kernel_len {
            // A short send: the rest goes again.
            return self.submit_send(slot, q);
        }
        if self.out.is_empty() {
            return;
        }
        if fault == Fault::ReusedBuffer {
            // FAULT(ReusedBuffer): `out` itself goes to the kernel and is emptied at once,
            // as if the send were a write(2) that had copied it: the next replies are
            // written into the bytes the kernel has not sent yet.
            self.kernel = self.out.as_ptr();
            self.kernel_len = self.out.len();
            self.out.clear();
        } else {
            // The filled buffer goes to the kernel; the empty one takes the next replies.
            std::mem::swap(&mut self.out, &mut self.sending);
            self.kernel = self.sending.as_ptr();
            self.kernel_len = self.sending.len();
        }
        self.kernel_done = 0;
        self.submit_send(slot, q);
    }

    fn submit_send(&mut self, slot: usize, q: &mut Queue) {
        let rest = self.kernel_len - self.kernel_done;
        let sqe = if self.poll_first {
            // FAULT(PollThenRead): asks to be told when the socket is writable.
            opcode::PollAdd::new(types::Fd(self.fd), libc::POLLOUT as u32).build()
        } else {
            // MSG_NOSIGNAL: a client gone is an EPIPE completion, not a SIGPIPE.
            opcode::Send::new(
                types::Fd(self.fd),
                self.kernel.wrapping_add(self.kernel_done),
                rest as u32,
            )
            .flags(libc::MSG_NOSIGNAL)
            .build()
        };
        self.send_busy = true;
        q.push(sqe.user_data(token(slot, OP_SEND)));
    }

    fn start_recv(&mut self, slot: usize, q: &mut Queue) {
        self.recv_busy = true;
        if let Some(helper) = &self.helper {
            // FAULT(ThreadRecv): the receive is a blocking read in the helper thread.
            if helper.send(self.inbuf.len()).is_err() {
                self.recv_busy = false;
                self.dying = true;
            }
            return;
        }
        let sqe = if self.poll_first {
            // FAULT(PollThenRead): asks to be told when the socket is readable.
            opcode::PollAdd::new(types::Fd(self.fd), libc::POLLIN as u32).build()
        } else {
            opcode::Recv::new(
                types::Fd(self.fd),
                self.inbuf.as_mut_ptr(),
                self.inbuf.len() as u32,
            )
            .build()
        };
        q.push(sqe.user_data(token(slot, OP_RECV)));
    }

    /// Ends the connection once its replies are out: `quit` or a line too long leads to
    /// the lingering close, the client's EOF to a plain close.
    fn advance_phase(&mut self, fault: Fault) {
        if self.unsent() > 0 {
            return;
        }
        match self.phase {
            Phase::Closing => self.dying = true,
            Phase::Ending if fault == Fault::NoLinger => {
                // FAULT(NoLinger): closed right after the last reply; input the client is
                // still sending then meets a closed socket, and the kernel answers it with
                // a reset.
                self.dying = true;
            }
            Phase::Ending => {
                // Called directly: shutdown is neither a receive nor a send, and it never
                // blocks. The client sees EOF; its later bytes are still received and
                // discarded until it closes too.
                let _ = nix::sys::socket::shutdown(self.fd, Shutdown::Write);
                if self.peer_eof {
                    self.dying = true;
                } else {
                    self.phase = Phase::Lingering;
                }
            }
            Phase::Open | Phase::Lingering => {}
        }
    }

    /// Closes the connection once none of its operations is in flight: the kernel may
    /// still be writing its receive buffer or reading its send buffer until then.
    fn wind_down(&mut self, slot: usize, q: &mut Queue) {
        if self.recv_busy || self.send_busy {
            if !self.shut {
                // A receive waiting for input would wait forever: shutting the socket down
                // completes it (with 0), and a send waiting for room (with EPIPE).
                self.shut = true;
                let _ = nix::sys::socket::shutdown(self.fd, Shutdown::Both);
            }
            return;
        }
        if !self.close_submitted {
            self.close_submitted = true;
            let sqe = opcode::Close::new(types::Fd(self.fd))
                .build()
                .user_data(token(slot, OP_CLOSE));
            q.push(sqe);
        }
    }

    /// A completion of this connection's receive or send.
    fn on_done(&mut self, op: u64, mut res: i32, fault: Fault) {
        if self.poll_first && !self.dying {
            match self.after_poll(op, res, fault) {
                Some(done) => res = done,
                None => {
                    // Would block: `progress` polls again.
                    self.recv_busy &= op != OP_RECV;
                    self.send_busy &= op != OP_SEND;
                    return;
                }
            }
        }
        match op {
            OP_RECV => self.on_recv(res, fault),
            _ => self.on_send(res, fault),
        }
    }

    /// A completion of this connection's receive: `res` bytes are in `inbuf`, or 0 for
    /// EOF, or `-errno`.
    fn on_recv(&mut self, res: i32, fault: Fault) {
        self.recv_busy = false;
        if self.dying {
            return;
        }
        if res < 0 {
            return self.failed("receive", res, fault);
        }
        if res == 0 {
            return self.on_eof();
        }
        if self.phase == Phase::Open {
            let inbuf = std::mem::take(&mut self.inbuf);
            self.take_input(&inbuf[..res as usize]);
            self.inbuf = inbuf;
        }
        // Ending or Lingering: the input is discarded.
    }

    /// A completion of this connection's send: `res` bytes were sent, or `-errno`.
    fn on_send(&mut self, res: i32, fault: Fault) {
        self.send_busy = false;
        if self.dying {
            return;
        }
        if res <= 0 {
            return self.failed("send", res, fault);
        }
        self.kernel_done += res as usize;
        if self.kernel_done < self.kernel_len && fault == Fault::ShortSend {
            // FAULT(ShortSend): a short send taken for a whole one: the rest is dropped.
            self.kernel_done = self.kernel_len;
        }
        if self.kernel_done == self.kernel_len {
            // All sent: the buffer is the program's again.
            self.kernel_len = 0;
            self.kernel_done = 0;
            self.sending.clear();
            if self.sending.capacity() > 2 * HIGH_WATER {
                self.sending = Vec::new();
            }
        }
    }

    /// FAULT(PollThenRead, PollThenRecv): the poll of operation `op` completed with
    /// `polled` (the events, or `-errno`): now the plain call it was for (`read` or
    /// `write`; `recv` or `send` with PollThenRecv). Returns that call's result as a
    /// completion's (bytes or `-errno`), or `None` if it would block.
    fn after_poll(&mut self, op: u64, polled: i32, fault: Fault) -> Option<i32> {
        if polled < 0 {
            return Some(polled);
        }
        let out = &self.sending[self.kernel_done..self.kernel_len];
        let done = if fault == Fault::PollThenRecv {
            use nix::sys::socket::{MsgFlags, recv, send};
            if op == OP_RECV {
                recv(self.fd, &mut self.inbuf, MsgFlags::empty())
            } else {
                send(self.fd, out, MsgFlags::MSG_NOSIGNAL)
            }
        } else {
            // SAFETY: the connection owns the socket until its close completes.
            let sock = unsafe { BorrowedFd::borrow_raw(self.fd) };
            if op == OP_RECV {
                nix::unistd::read(sock, &mut self.inbuf)
            } else {
                nix::unistd::write(sock, out)
            }
        };
        match done {
            Ok(n) => Some(n as i32),
            Err(Errno::EAGAIN) => None,
            Err(e) => Some(-(e as i32)),
        }
    }

    /// A receive or send failed (a reset, a client gone): this connection is over.
    fn failed(&mut self, what: &str, res: i32, fault: Fault) {
        if fault == Fault::ResetCrash && res == -libc::ECONNRESET {
            // FAULT(ResetCrash): "a reset cannot happen" takes the whole server down.
            panic!("{what} failed: {}", std::io::Error::from_raw_os_error(-res));
        }
        self.dying = true;
    }

    fn on_eof(&mut self) {
        self.peer_eof = true;
        match self.phase {
            Phase::Open => {
                // The unterminated trailing fragment goes back as it is.
                self.out.append(&mut self.line);
                self.phase = Phase::Closing;
            }
            Phase::Lingering => self.dying = true,
            Phase::Ending | Phase::Closing => {}
        }
    }

    /// Splits input into lines and queues their replies.
    fn take_input(&mut self, mut data: &[u8]) {
        while self.phase == Phase::Open && !data.is_empty() {
            // Bytes the current line may still take, its `\n` included.
            let room = MAX_LINE - self.line.len();
            let window = &data[..data.len().min(room)];
            if let Some(at) = window.iter().position(|&b| b == b'\n') {
                let (tail, rest) = data.split_at(at + 1);
                self.end_line(tail);
                data = rest;
            } else if data.len() > room {
                // The 8193rd byte of a line has arrived: too long, whatever it is.
                self.line.clear();
                self.out.extend_from_slice(TOO_LONG);
                self.phase = Phase::Ending;
            } else {
                self.line.extend_from_slice(data);
                return;
            }
        }
    }

    /// The current line ends with `tail` (which ends with `\n`).
    fn end_line(&mut self, tail: &[u8]) {
        if is_quit(&self.line, tail) {
            self.line.clear();
            self.phase = Phase::Ending;
            return;
        }
        self.out.append(&mut self.line);
        self.out.extend_from_slice(tail);
    }
}

/// FAULT(ThreadRecv): a helper's finished read: slot, result (bytes or `-errno`), the bytes.
type HelperRead = (usize, i32, Vec<u8>);

/// FAULT(ThreadRecv): what the helper threads share with the ring loop.
struct Helpers {
    /// Written by a helper after each read; the ring loop has a read of it in flight.
    wake: Arc<EventFd>,
    /// The eventfd read's buffer.
    counter: Box<u64>,
    done: Arc<Mutex<Vec<HelperRead>>>,
}

/// The single-threaded completion loop.
struct Server {
    prog: String,
    fault: Fault,
    queue: Queue,
    listener: Socket,
    /// Clients, indexed by the slot in their `user_data`.
    conns: Vec<Option<Conn>>,
    /// Slots free to reuse: a slot is freed when its close completes, after the last
    /// completion that names it.
    free: Vec<usize>,
    /// Completions of one wake-up: `user_data`, result.
    completions: Vec<(u64, i32)>,
    /// The accept pause's timespec, read by the kernel until the timeout completes.
    pause: Box<types::Timespec>,
    helpers: Option<Helpers>,
}

impl Server {
    fn new(prog: String, listener: Socket, ring: IoUring, fault: Fault) -> Self {
        let helpers = (fault == Fault::ThreadRecv).then(|| {
            let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).unwrap_or_else(|e| {
                eprintln!("{prog}: cannot create an eventfd: {e}");
                process::exit(1);
            });
            Helpers {
                wake: Arc::new(wake),
                counter: Box::new(0),
                done: Arc::default(),
            }
        });
        Server {
            prog,
            fault,
            queue: Queue {
                ring,
                backlog: VecDeque::new(),
            },
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            completions: Vec::new(),
            pause: Box::new(types::Timespec::from(ACCEPT_PAUSE)),
            helpers,
        }
    }

    fn run(mut self) -> ! {
        self.arm_accept();
        self.arm_helper_wake();
        loop {
            self.enter();
            let mut completions = std::mem::take(&mut self.completions);
            completions.extend(
                self.queue
                    .ring
                    .completion()
                    .map(|cqe| (cqe.user_data(), cqe.result())),
            );
            for &(user_data, res) in &completions {
                self.dispatch(user_data, res);
            }
            completions.clear();
            self.completions = completions;
        }
    }

    /// Hands every queued submission to the kernel and sleeps until a completion arrives:
    /// one `io_uring_enter` for the whole batch.
    fn enter(&mut self) {
        loop {
            self.queue.refill();
            if self.queue.backlog.is_empty() {
                break;
            }
            // More than the submission queue holds: hand over this much, then the rest.
            if let Err(e) = self.queue.ring.submit() {
                return self.enter_failed(e);
            }
        }
        let entered = if self.fault == Fault::Spin {
            // FAULT(Spin): submits but never waits: the loop polls the completion queue,
            // at full speed while nothing happens.
            self.queue.ring.submit()
        } else {
            self.queue.ring.submit_and_wait(1)
        };
        if let Err(e) = entered {
            self.enter_failed(e);
        }
    }

    /// A signal (EINTR) or a full completion queue (EBUSY, EAGAIN) is not fatal: the
    /// loop reaps the completions and enters again.
    fn enter_failed(&self, e: std::io::Error) {
        if !matches!(
            e.raw_os_error(),
            Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
        ) {
            eprintln!("{}: io_uring_enter: {e}", self.prog);
            process::exit(1);
        }
    }

    fn dispatch(&mut self, user_data: u64, res: i32) {
        match user_data {
            ACCEPT => self.on_accept(res),
            ACCEPT_RESUME => self.arm_accept(),
            HELPER_DONE => self.on_helpers_done(),
            _ => {
                let slot = (user_data >> 2) as usize;
                match user_data & 3 {
                    OP_CLOSE => self.release(slot),
                    op => self.on_conn(slot, |conn, fault| conn.on_done(op, res, fault)),
                }
            }
        }
    }

    /// Applies a completion to its connection, then submits what it needs next.
    fn on_conn(&mut self, slot: usize, apply: impl FnOnce(&mut Conn, Fault)) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        apply(conn, self.fault);
        conn.progress(slot, &mut self.queue, self.fault);
    }

    /// A single-shot accept: one connection per completion, so it is armed again each
    /// time.
    fn arm_accept(&mut self) {
        let sqe = opcode::Accept::new(
            types::Fd(self.listener.as_raw_fd()),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(self.accept_flags())
        .build()
        .user_data(ACCEPT);
        self.queue.push(sqe);
    }

    fn accept_flags(&self) -> i32 {
        if matches!(self.fault, Fault::PollThenRead | Fault::PollThenRecv) {
            // FAULT(PollThenRead, PollThenRecv): non-blocking sockets, as for epoll.
            return libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        }
        libc::SOCK_CLOEXEC
    }

    fn on_accept(&mut self, res: i32) {
        if res >= 0 {
            self.add(res);
            if self.fault == Fault::AcceptSerial {
                // FAULT(AcceptSerial): the next accept waits until this client is gone
                // (see `release`); everyone else waits in the backlog.
                return;
            }
            return self.arm_accept();
        }
        match -res {
            // Out of descriptors: armed again at once, the accept would fail at once,
            // again and again. Try again after a pause.
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                let sqe = opcode::Timeout::new(&*self.pause)
                    .build()
                    .user_data(ACCEPT_RESUME);
                self.queue.push(sqe);
            }
            // A connection aborted before it was accepted, a signal: the next one.
            _ => self.arm_accept(),
        }
    }

    fn add(&mut self, fd: RawFd) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let mut conn = Conn::new(fd, self.fault);
        if let Some(helpers) = &self.helpers {
            conn.helper = spawn_helper(fd, slot, helpers);
            if conn.helper.is_none() {
                conn.dying = true;
            }
        }
        let conn = self.conns[slot].insert(conn);
        conn.progress(slot, &mut self.queue, self.fault);
    }

    /// The connection's close completed: nothing of the kernel's refers to it any more.
    fn release(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) {
            drop(conn);
            self.free.push(slot);
            if self.fault == Fault::AcceptSerial {
                // FAULT(AcceptSerial): only now is the next client accepted.
                self.arm_accept();
            }
        }
    }

    /// FAULT(ThreadRecv): a read of the eventfd the helpers write after each read.
    fn arm_helper_wake(&mut self) {
        let Some(helpers) = &mut self.helpers else {
            return;
        };
        let counter: *mut u64 = &mut *helpers.counter;
        let sqe = opcode::Read::new(types::Fd(helpers.wake.as_raw_fd()), counter.cast(), 8)
            .build()
            .user_data(HELPER_DONE);
        self.queue.push(sqe);
    }

    /// FAULT(ThreadRecv): hands the helpers' finished reads to their connections as if
    /// they were receive completions.
    fn on_helpers_done(&mut self) {
        let Some(helpers) = &self.helpers else {
            return;
        };
        let done = std::mem::take(&mut *helpers.done.lock().unwrap());
        for (slot, res, bytes) in done {
            self.on_conn(slot, |conn, fault| {
                conn.inbuf[..bytes.len()].copy_from_slice(&bytes);
                conn.on_recv(res, fault);
            });
        }
        self.arm_helper_wake();
    }
}

/// FAULT(ThreadRecv): a thread that does one blocking `read` of the connection's socket
/// per request and posts the result to the ring loop. Exits when the connection is
/// released (its request channel closes).
fn spawn_helper(fd: RawFd, slot: usize, helpers: &Helpers) -> Option<mpsc::Sender<usize>> {
    let (requests, asked) = mpsc::channel::<usize>();
    let wake = Arc::clone(&helpers.wake);
    let done = Arc::clone(&helpers.done);
    let reader = move || {
        let mut buf = Vec::new();
        while let Ok(len) = asked.recv() {
            buf.resize(len, 0);
            // SAFETY: the ring loop closes the socket only after this read has returned
            // and been reported (it is a receive in flight until then).
            let sock = unsafe { BorrowedFd::borrow_raw(fd) };
            let res = match nix::unistd::read(sock, &mut buf) {
                Ok(n) => n as i32,
                Err(e) => -(e as i32),
            };
            let bytes = buf[..res.max(0) as usize].to_vec();
            done.lock().unwrap().push((slot, res, bytes));
            let _ = wake.write(1);
        }
    };
    thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(reader)
        .ok()
        .map(|_| requests)
}
