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
        self.phase == Phase::Closing && !self.receiving && !self.writing
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
        match result {
            0 => self.end_of_input(),
            n if n > 0 && self.phase == Phase::Open => {
                let data = &self.recv_buf[..n as usize];
                if self.lines.echo(data, &mut self.queued) != Fed::All {
                    self.phase = Phase::Lingering { shut: false };
                }
            }
            // Lingering: the bytes are read and thrown away.
            n if n > 0 => {}
            // A signal interrupted it: nothing arrived, receive again.
            err if err == -libc::EINTR => {}
            // ECONNRESET and the like: this connection ends, no other.
            _ => self.phase = Phase::Closing,
        }
    }

    fn end_of_input(&mut self) {
        self.phase = match self.phase {
            Phase::Open => {
                // An unterminated last fragment is echoed as it is.
                let fragment = self.lines.take_fragment();
                self.queued.extend_from_slice(&fragment);
                Phase::Draining
            }
            // Our FIN went out first: the lingering close is over.
            Phase::Lingering { shut: true } => Phase::Closing,
            // Still sending the last replies: finish them, then close.
            Phase::Lingering { shut: false } => Phase::Draining,
            phase => phase,
        };
    }

    fn sent_some(&mut self, result: i32) {
        match usize::try_from(result) {
            Ok(n) => {
                // A short send is normal once the client reads slowly: the
                // rest, `out[sent..]`, is submitted again by `next_write`.
                self.sent += n;
                if self.sent == self.out.len() {
                    self.out.clear(); // keeps the allocation
                    self.sent = 0;
                }
            }
            Err(_) if result == -libc::EINTR => {}
            // EPIPE, ECONNRESET: the client is gone.
            Err(_) => self.phase = Phase::Closing,
        }
    }

    /// Replies not yet sent, in both buffers: what backpressure counts.
    fn unsent(&self) -> usize {
        self.out.len() - self.sent + self.queued.len()
    }

    fn next_recv(&mut self, token: usize) -> Option<squeue::Entry> {
        let wanted = match self.phase {
            // Backpressure: no receive while 64 KiB wait to be sent. The
            // client's bytes wait in the kernel, and its sends block.
            Phase::Open => self.unsent() < BACKPRESSURE_LIMIT,
            Phase::Lingering { .. } => true,
            Phase::Draining | Phase::Closing => false,
        };
        if self.receiving || !wanted {
            return None;
        }
        self.receiving = true;
        let buf = self.recv_buf.as_mut_ptr();
        let recv = opcode::Recv::new(self.fd(), buf, RECV_BUF as u32).build();
        Some(recv.user_data(Op::Conn(token, ConnOp::Recv).user_data()))
    }

    fn next_write(&mut self, token: usize) -> Option<squeue::Entry> {
        if self.writing {
            return None;
        }
        if self.out.is_empty() {
            // No send in flight, so `out` is ours again: the replies queued
            // meanwhile go next. Swapping moves the two `Vec`s' headers,
            // not the bytes.
            std::mem::swap(&mut self.out, &mut self.queued);
        }
        let (op, entry) = match self.phase {
            Phase::Closing if self.receiving && !self.cancelled => {
                // A failed send: the receive still posted would wait for a
                // client that is gone. Ask the kernel to end it now.
                self.cancelled = true;
                let recv = Op::Conn(token, ConnOp::Recv).user_data();
                (ConnOp::Cancel, opcode::AsyncCancel::new(recv).build())
            }
            Phase::Closing => return None,
            _ if self.sent < self.out.len() => (ConnOp::Send, self.send_rest()),
            Phase::Lingering { shut: false } => {
                self.phase = Phase::Lingering { shut: true };
                let shutdown = opcode::Shutdown::new(self.fd(), libc::SHUT_WR);
                (ConnOp::Shutdown, shutdown.build())
            }
            Phase::Draining => {
                self.phase = Phase::Closing;
                return None;
            }
            Phase::Open | Phase::Lingering { shut: true } => return None,
        };
        self.writing = true;
        Some(entry.user_data(Op::Conn(token, op).user_data()))
    }

    /// A send of everything in `out` not sent yet.
    fn send_rest(&self) -> squeue::Entry {
        let rest = &self.out[self.sent..];
        // MSG_NOSIGNAL: a send to a client that reset the connection fails
        // with EPIPE instead of raising SIGPIPE, which would kill the whole
        // server. `out` holds at most about 64 KiB + 8 KiB, so the length
        // fits a u32.
        opcode::Send::new(self.fd(), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
    }

    fn fd(&self) -> types::Fd {
        types::Fd(self.socket.as_raw_fd())
    }
}

#[cfg(test)]
mod tests;
