//! One client connection: its socket, its buffers, the operations it has in
//! flight, and what it should submit next.
//!
//! THE OWNERSHIP RULE, the one thing io_uring asks that epoll never did.
//! With epoll the kernel says "ready" and *we* copy the bytes, into whatever
//! buffer we like at that moment. With io_uring we hand the kernel a pointer
//! when we submit, and it reads or writes through that pointer at some time
//! before the completion arrives. Until then the buffer is the kernel's: we
//! must not touch it, move it, grow it (a `Vec` that reallocates moves its
//! bytes), or free it. The borrow checker cannot see this (the kernel holds
//! a raw pointer), so this file keeps the rule by hand:
//!
//! - `recv_buf` is a `Box`: the slab moves a `Conn` when it grows, the boxed
//!   bytes stay where they are. While `receiving`, nothing reads them.
//! - `out` is what a send sends from. While `writing`, nothing is appended
//!   to it: replies made meanwhile go to `queued`, and the two change places
//!   only when no send is in flight.
//! - A connection leaves the slab (freeing its buffers, closing its socket)
//!   only once no operation is in flight: even a connection that failed
//!   waits for the completions of what it submitted.

use crate::given::{Fed, LineReader};
use crate::op::{ConnOp, Op};
use io_uring::{opcode, squeue, types};
use nix::libc;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// Bytes one receive may bring. Every idle connection has a receive posted,
/// so every idle connection pins this buffer: 10,000 idle clients hold
/// 40 MiB. An epoll server reads into one shared buffer once a socket is
/// ready; io_uring's answer is a provided buffer ring (a pool the kernel
/// picks a buffer from only when data arrives), which this lab leaves out.
pub const RECV_BUF: usize = 4096;
/// Stop receiving while this many reply bytes wait to be sent.
pub const BACKPRESSURE_LIMIT: usize = 64 * 1024;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Echoing lines.
    Open,
    /// `quit` or a too-long line: send what is pending, shut down our
    /// writing half (`shut`), then receive and discard until the client's
    /// EOF: closing with its bytes unread would send a reset, and a reset
    /// can destroy replies it has not read yet.
    Lingering { shut: bool },
    /// The client's EOF: send what is pending, then close.
    Draining,
    /// Finished or failed: submit nothing more, wait for what is in flight.
    Closing,
}

pub struct Conn {
    socket: TcpStream,
    phase: Phase,
    lines: LineReader,
    recv_buf: Box<[u8]>,
    /// A Recv is in flight: `recv_buf` is the kernel's.
    receiving: bool,
    /// The replies being sent: `out[sent..]` is not sent yet.
    out: Vec<u8>,
    sent: usize,
    /// Replies made while a send is in flight.
    queued: Vec<u8>,
    /// A Send, Shutdown or Cancel is in flight, one at a time. While it is a
    /// Send, `out` is the kernel's.
    writing: bool,
    /// The pending receive has been cancelled (once is enough).
    cancelled: bool,
}

impl Conn {
    pub fn new(socket: TcpStream) -> Conn {
        Conn {
            socket,
            phase: Phase::Open,
            lines: LineReader::default(),
            recv_buf: vec![0; RECV_BUF].into_boxed_slice(),
            receiving: false,
            out: Vec::new(),
            sent: 0,
            queued: Vec::new(),
            writing: false,
            cancelled: false,
        }
    }

    /// True once nothing is left to do and no operation is in flight: the
    /// kernel holds no pointer into this connection any more, so it may be
    /// dropped.
    pub fn is_finished(&self) -> bool {
        // TODO 10: in the Closing phase, with no receive and nothing on the
        //    writing side in flight.
        todo!("TODO 10: Conn::is_finished, src/conn.rs")
    }

    /// Handles the completion of one of this connection's operations:
    /// `result` is what the syscall would have returned, or `-errno`.
    pub fn complete(&mut self, op: ConnOp, result: i32) {
        match op {
            ConnOp::Recv => {
                self.receiving = false;
                self.received(result);
            }
            ConnOp::Send => {
                self.writing = false;
                self.sent_some(result);
            }
            ConnOp::Shutdown => {
                self.writing = false;
                if result < 0 {
                    self.phase = Phase::Closing;
                }
            }
            // Cancelled, or too late to (ENOENT, EALREADY): either way the
            // receive's own completion comes too.
            ConnOp::Cancel => self.writing = false,
        }
    }

    /// The operations to submit now: at most one on the writing side and
    /// one receive.
    pub fn next_ops(&mut self, token: usize) -> impl Iterator<Item = squeue::Entry> {
        [self.next_write(token), self.next_recv(token)]
            .into_iter()
            .flatten()
    }

    fn received(&mut self, result: i32) {
        // TODO 7: `result` bytes arrived in `recv_buf` (0: the client's
        //    EOF, `end_of_input`; negative: -errno). While Open, echo them
        //    with `self.lines.echo(.., &mut self.queued)` (never onto `out`:
        //    a send may be reading it); anything but Fed::All starts the
        //    lingering close (TODO 9). -EINTR: nothing arrived. Any other
        //    error (a reset): Closing, for this connection only.
        // TODO 9: while Lingering, received bytes are thrown away.
        todo!("TODO 7: Conn::received, src/conn.rs")
    }

    fn end_of_input(&mut self) {
        // TODO 7: Open: queue the unterminated fragment
        //    (`lines.take_fragment()`), then Draining.
        // TODO 9: Lingering after our shutdown: Closing. Lingering before
        //    it: Draining (send what is left, then close).
        todo!("TODO 7: Conn::end_of_input")
    }

    fn sent_some(&mut self, result: i32) {
        // TODO 8: `result` bytes of `out[sent..]` went out: a short send is
        //    normal, `next_write` sends the rest. Once all of `out` is sent,
        //    clear it. -EINTR: send again. Any other error: Closing.
        todo!("TODO 8: Conn::sent_some")
    }

    /// Replies not yet sent, in both buffers: what backpressure counts.
    fn unsent(&self) -> usize {
        self.out.len() - self.sent + self.queued.len()
    }

    fn next_recv(&mut self, token: usize) -> Option<squeue::Entry> {
        // TODO 6: unless a receive is already in flight, and if one is
        //    wanted (Open: fewer than BACKPRESSURE_LIMIT bytes unsent;
        //    Lingering: always; otherwise never), set `receiving` and return
        //    an `opcode::Recv` into `recv_buf` (RECV_BUF bytes), `user_data`
        //    Op::Conn(token, ConnOp::Recv).
        todo!("TODO 6: Conn::next_recv, src/conn.rs")
    }

    fn next_write(&mut self, token: usize) -> Option<squeue::Entry> {
        // Nothing while the writing side has an operation in flight. Then:
        // TODO 8: with `out` empty, swap `out` and `queued` (this moves the
        //    `Vec` headers, not the bytes). Unsent bytes in `out`: a send of
        //    them (`send_rest`). Draining with nothing left: Closing.
        // TODO 9: Lingering, everything sent, not yet shut: an
        //    `opcode::Shutdown` (libc::SHUT_WR), and remember it.
        // TODO 10: Closing with a receive still in flight (a send failed):
        //    once, an `opcode::AsyncCancel` of that receive's `user_data`.
        // Set `writing` for what you return, with its Op::Conn user_data.
        todo!("TODO 8: Conn::next_write, src/conn.rs")
    }

    /// A send of everything in `out` not sent yet.
    fn send_rest(&self) -> squeue::Entry {
        // TODO 8: an `opcode::Send` of `out[sent..]`, with MSG_NOSIGNAL (a
        //    send to a client that reset the connection must fail with
        //    EPIPE, not kill the whole server with SIGPIPE).
        todo!("TODO 8: Conn::send_rest")
    }

    fn fd(&self) -> types::Fd {
        types::Fd(self.socket.as_raw_fd())
    }
}
