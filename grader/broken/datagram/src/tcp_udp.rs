//! The `tcp_udp` lab: one loop serving line echo over TCP and datagram echo over UDP on
//! the same port, correct or with one mistake.
//!
//! [`run`] is one single-threaded server written from scratch to the contract in
//! `CONTRACT.md` ("tcp_udp" and "Echo servers"). With [`Fault::None`] it is a correct
//! implementation (`correct_tcp_udp`); every other [`Fault`] adds exactly one classic
//! mistake, marked `FAULT(<name>)` in the code, so that each grader check can be shown to
//! fail on a program that is wrong in just that way.
//!
//! How the correct server works, and where it chose what the contract leaves open:
//! - It waits in plain `poll`, its `pollfd` array rebuilt before every call from a slab of
//!   connections (a `Vec` of slots with a free list): the listener, the UDP socket, then
//!   every client with the events its state wants.
//! - Fairness is a cap per source and round: at most 16 lines and one `write` per client,
//!   at most 64 datagrams, at most 64 accepts. Every ready source is served in every
//!   round, so the UDP socket waits for at most one round of bounded work. A client's
//!   `read` (at most 16 KiB) happens only once the lines of its previous read are all
//!   echoed; while some are left, the next `poll` does not sleep (timeout 0).
//! - Replies are written at once after a read (no round trip through `poll` for a socket
//!   that is almost always writable); `POLLOUT` is asked for only while bytes are unsent.
//! - A connection's input is framed by scanning each read for `\n`; only the unfinished
//!   line is kept between reads, complete lines go straight to the output buffer.
//! - A datagram's reply is sent with `sendto` from the receive buffer and never queued:
//!   one the kernel refuses is dropped, as UDP allows.

use crate::MAX_DATAGRAM;
use broken_common::{
    MAX_LINE, Next, Phase, TOO_LONG, announce, is_out_of_fds, is_quit, listen_or_exit,
    port_or_exit, program_name, raise_nofile_limit,
};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socket2::Socket;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process;
use std::thread;

/// The shared receive buffer: room for the largest datagram.
const BUF_LEN: usize = 64 * 1024;
/// The most one client's `read` takes.
const TCP_READ: usize = 16 * 1024;
/// The most lines of one client echoed in one round.
const LINES_PER_ROUND: usize = 16;
/// The most datagrams served in one round.
const UDP_BATCH: usize = 64;
/// The most connections accepted in one round.
const ACCEPT_BATCH: usize = 64;
/// With port 0, how many TCP ports to try before giving up on finding one whose UDP twin
/// is free.
const BIND_ATTEMPTS: usize = 100;

/// The one mistake a server makes; [`Fault::None`] is a correct server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Correct per the contract.
    None,
    /// The UDP socket bound to a port of its own (the system's pick), not the TCP port.
    OtherPort,
    /// The UDP socket skipped in any round where a TCP client is readable: under steady
    /// TCP load, datagrams wait until the load stops.
    UdpStarved,
    /// Client sockets left blocking, and a client's line read byte by byte until its
    /// `\n`: a client that sends half a line stalls the whole loop.
    BlockingLine,
    /// Replies written in full before the loop goes on, waiting for the socket to take
    /// them: a client that does not read stalls the whole loop.
    BlockingWrite,
    /// UDP served by a second thread blocking in `recvfrom`.
    UdpThread,
    /// Each datagram's reply sent to the sender of the datagram before it.
    WrongAddress,
    /// A datagram's reply written to the most recently accepted TCP client while one is
    /// connected.
    CrossedReplies,
}

/// Runs the server with the given fault, exiting 2 on a usage error and 1 on a fatal
/// error. Never returns.
pub fn run(fault: Fault) -> ! {
    let prog = program_name("tcp_udp");
    let port = port_or_exit(&prog);
    raise_nofile_limit();
    let (listener, udp, port) = bind_both_or_exit(&prog, port, fault);
    let udp = if fault == Fault::UdpThread {
        // FAULT(UdpThread): "UDP is simple, give it a thread of its own".
        thread::spawn(move || serve_udp_blocking(&udp));
        None
    } else {
        // Non-blocking so that the drain of a round ends with EAGAIN, never in a sleep.
        udp.set_nonblocking(true)
            .unwrap_or_else(|e| fail(&prog, "cannot set O_NONBLOCK on the UDP socket", e));
        Some(udp)
    };
    announce(port);
    Server {
        listener,
        udp,
        conns: Vec::new(),
        free: Vec::new(),
        buf: vec![0; BUF_LEN],
        last_peer: None,
        last_client: None,
        fault,
    }
    .serve()
}

/// Prints what failed and exits 1.
fn fail(prog: &str, what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("{prog}: {what}: {e}");
    process::exit(1);
}

/// The TCP listener first, then the UDP socket on the port it got. With port 0 the UDP
/// twin of the system's pick may be taken (TCP and UDP ports are separate spaces): then
/// it starts over with a new TCP port. Returns both and the port.
fn bind_both_or_exit(prog: &str, port: u16, fault: Fault) -> (Socket, UdpSocket, u16) {
    for _ in 0..BIND_ATTEMPTS {
        let (listener, tcp_port) = listen_or_exit(prog, Ipv4Addr::LOCALHOST, port, true);
        // FAULT(OtherPort): "the UDP socket needs a port too: let the system pick one".
        let udp_port = if fault == Fault::OtherPort {
            0
        } else {
            tcp_port
        };
        match UdpSocket::bind((Ipv4Addr::LOCALHOST, udp_port)) {
            Ok(udp) => return (listener, udp, tcp_port),
            Err(e) if e.kind() == ErrorKind::AddrInUse && port == 0 => continue,
            Err(e) => fail(prog, &format!("cannot bind UDP 127.0.0.1:{udp_port}"), e),
        }
    }
    eprintln!("{prog}: no free port for both TCP and UDP after {BIND_ATTEMPTS} attempts");
    process::exit(1);
}

/// FAULT(UdpThread): a blocking receive loop, run in its own thread.
fn serve_udp_blocking(udp: &UdpSocket) {
    let mut buf = vec![0; BUF_LEN];
    loop {
        if let Ok((len, peer)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..len], peer);
        }
    }
}

/// One TCP client.
struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet framed: `input[taken..]`, from one `read` at most.
    input: Vec<u8>,
    taken: usize,
    /// The line being received: never a `\n`, never more than [`MAX_LINE`] bytes.
    line: Vec<u8>,
    /// Replies; `out[sent..]` is still to be written.
    out: Vec<u8>,
    sent: usize,
    phase: Phase,
    /// The client has shut down its writing half.
    peer_eof: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            input: Vec::new(),
            taken: 0,
            line: Vec::new(),
            out: Vec::new(),
            sent: 0,
            phase: Phase::Open,
            peer_eof: false,
        }
    }

    fn unsent(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Reads only once the previous read is framed: input waits in the socket, where
    /// the client's flow control sees it, not in our memory.
    fn wants_read(&self) -> bool {
        self.taken == self.input.len() && self.phase.wants_read(self.unsent(), self.peer_eof)
    }

    /// Whether lines already read wait to be framed, and may be now (not while
    /// backpressure holds).
    fn runnable(&self) -> bool {
        self.phase == Phase::Open
            && self.taken < self.input.len()
            && self.unsent() < broken_common::HIGH_WATER
    }

    /// The `poll` events this connection waits for.
    fn events(&self) -> PollFlags {
        let mut events = PollFlags::empty();
        if self.wants_read() {
            events |= PollFlags::POLLIN;
        }
        if self.unsent() > 0 {
            events |= PollFlags::POLLOUT;
        }
        events
    }

    /// Serves one round: at most one read, at most [`LINES_PER_ROUND`] lines, then at
    /// most one write.
    fn serve(&mut self, revents: PollFlags, buf: &mut [u8], fault: Fault) -> Next {
        let trouble = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
        if self.wants_read() && revents.intersects(trouble) {
            let read = match (fault, self.phase) {
                // FAULT(BlockingLine): "read until the end of the line".
                (Fault::BlockingLine, Phase::Open) => self.read_line_blocking(),
                _ => self.read_some(&mut buf[..TCP_READ]),
            };
            if read == Next::Close {
                return Next::Close;
            }
        }
        self.frame(LINES_PER_ROUND);
        if self.unsent() > 0 {
            let written = match fault {
                // FAULT(BlockingWrite): "write the reply, then go on".
                Fault::BlockingWrite => self.write_all_blocking(),
                _ => self.write_some(),
            };
            if written == Next::Close {
                return Next::Close;
            }
        }
        self.settle()
    }

    /// One `read`, its bytes framed into lines.
    fn read_some(&mut self, buf: &mut [u8]) -> Next {
        match self.stream.read(buf) {
            Ok(0) => self.end_of_input(),
            Ok(len) => {
                self.input.extend_from_slice(&buf[..len]);
                Next::Keep
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                Next::Keep
            }
            // Reset or vanished: only this connection ends.
            Err(_) => Next::Close,
        }
    }

    /// FAULT(BlockingLine): one byte at a time from a blocking socket until `\n`.
    fn read_line_blocking(&mut self) -> Next {
        let mut byte = [0; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) => return self.end_of_input(),
                Ok(_) => {
                    self.input.push(byte[0]);
                    if byte[0] == b'\n' || self.input.len() > MAX_LINE {
                        return Next::Keep;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
    }

    /// The client shut down its writing half (`read` returned 0).
    fn end_of_input(&mut self) -> Next {
        self.peer_eof = true;
        match self.phase {
            Phase::Open => {
                // The unterminated fragment is echoed as it is.
                self.out.append(&mut self.line);
                self.phase = Phase::Closing;
                Next::Keep
            }
            // The lingering close is over: the client has closed.
            Phase::Lingering => Next::Close,
            Phase::Ending | Phase::Closing => Next::Keep,
        }
    }

    /// Frames up to `lines` lines of the input read: each complete line goes to the
    /// replies, an unfinished one is kept. Input after `quit` or a too-long line is
    /// discarded.
    fn frame(&mut self, mut lines: usize) {
        while self.runnable() && lines > 0 {
            let data = &self.input[self.taken..];
            let end = data.iter().position(|&b| b == b'\n').map(|at| at + 1);
            let piece = &data[..end.unwrap_or(data.len())];
            self.taken += piece.len();
            lines -= 1;
            // Too long as soon as byte 8193 of the line is here, whatever it is.
            if self.line.len() + piece.len() > MAX_LINE {
                self.line.clear();
                self.out.extend_from_slice(TOO_LONG);
                self.phase = Phase::Ending;
            } else if end.is_none() {
                self.line.extend_from_slice(piece);
            } else if is_quit(&self.line, piece) {
                self.line.clear();
                self.phase = Phase::Ending;
            } else {
                self.out.append(&mut self.line);
                self.out.extend_from_slice(piece);
            }
        }
        if self.phase != Phase::Open || self.taken == self.input.len() {
            self.input.clear();
            self.taken = 0;
        }
    }

    /// One `write` of whatever is unsent.
    fn write_some(&mut self) -> Next {
        match self.stream.write(&self.out[self.sent..]) {
            Ok(len) => {
                self.sent += len;
                self.compact();
                Next::Keep
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                Next::Keep
            }
            // EPIPE (Rust ignores SIGPIPE) or a reset: this connection is over.
            Err(_) => Next::Close,
        }
    }

    /// FAULT(BlockingWrite): writes until nothing is unsent, sleeping in `poll` on this
    /// socket alone whenever it is full.
    fn write_all_blocking(&mut self) -> Next {
        while self.unsent() > 0 {
            if self.write_some() == Next::Close {
                return Next::Close;
            }
            if self.unsent() > 0 {
                let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::NONE);
            }
        }
        Next::Keep
    }

    /// Drops the bytes already sent once they are all sent, or once they are the larger
    /// part of the buffer, so the buffer never grows past what is unsent.
    fn compact(&mut self) {
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        } else if self.sent > self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// What a connection whose replies are all sent does next.
    fn settle(&mut self) -> Next {
        if self.unsent() > 0 {
            return Next::Keep;
        }
        match self.phase {
            Phase::Closing => Next::Close,
            Phase::Ending => {
                // Only our writing half: the client still sees every reply, then EOF,
                // and we read what it still sends until it closes (no reset).
                if self.stream.shutdown(Shutdown::Write).is_err() || self.peer_eof {
                    return Next::Close;
                }
                self.phase = Phase::Lingering;
                Next::Keep
            }
            Phase::Open | Phase::Lingering => Next::Keep,
        }
    }
}

/// The server: its sockets, its connections, one buffer.
struct Server {
    listener: Socket,
    /// `None` when another thread serves UDP (FAULT(UdpThread)).
    udp: Option<UdpSocket>,
    /// Connections by slot; a closed one leaves `None`, and its slot goes to `free`.
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    buf: Vec<u8>,
    /// FAULT(WrongAddress): the sender of the datagram before.
    last_peer: Option<SocketAddr>,
    /// FAULT(CrossedReplies): the slot of the most recently accepted client.
    last_client: Option<usize>,
    fault: Fault,
}

/// What one `poll` said.
struct Ready {
    listener: bool,
    udp: bool,
    /// Each client slot that had events or has lines to echo, and the events.
    clients: Vec<(usize, PollFlags)>,
}

impl Server {
    fn serve(mut self) -> ! {
        loop {
            let ready = self.wait();
            // Input in the socket or read and not yet echoed.
            let tcp_readable = ready.clients.iter().any(|&(slot, revents)| {
                revents.contains(PollFlags::POLLIN)
                    || self.conns[slot].as_ref().is_some_and(Conn::runnable)
            });
            for &(slot, revents) in &ready.clients {
                self.serve_client(slot, revents);
            }
            // FAULT(UdpStarved): "TCP clients are waiting, datagrams can wait".
            let starved = self.fault == Fault::UdpStarved && tcp_readable;
            if ready.udp && !starved {
                self.serve_udp();
            }
            if ready.listener {
                self.accept_some();
            }
        }
    }

    /// Sleeps in `poll` until some source is ready; returns which.
    fn wait(&self) -> Ready {
        let mut fds = vec![PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        if let Some(udp) = &self.udp {
            fds.push(PollFd::new(udp.as_fd(), PollFlags::POLLIN));
        }
        let first_client = fds.len();
        let mut slots = Vec::new();
        let mut runnable = false;
        for (slot, conn) in self.conns.iter().enumerate() {
            if let Some(conn) = conn {
                fds.push(PollFd::new(conn.stream.as_fd(), conn.events()));
                slots.push(slot);
                runnable |= conn.runnable();
            }
        }
        // Lines already read and not yet echoed are work to do now: only look.
        let timeout = if runnable {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        loop {
            match poll(&mut fds, timeout) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => fail(&program_name("tcp_udp"), "poll", e),
            }
        }
        let revents = |at: usize| fds[at].revents().unwrap_or(PollFlags::empty());
        let runnable = |slot: usize| self.conns[slot].as_ref().is_some_and(Conn::runnable);
        Ready {
            listener: !revents(0).is_empty(),
            udp: self.udp.is_some() && !revents(1).is_empty(),
            clients: slots
                .iter()
                .enumerate()
                .map(|(at, &slot)| (slot, revents(first_client + at)))
                .filter(|&(slot, revents)| !revents.is_empty() || runnable(slot))
                .collect(),
        }
    }

    fn serve_client(&mut self, slot: usize, revents: PollFlags) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        if conn.serve(revents, &mut self.buf, self.fault) == Next::Close {
            // Dropping the stream closes it.
            self.conns[slot] = None;
            self.free.push(slot);
        }
    }

    /// Receives and echoes up to [`UDP_BATCH`] datagrams.
    fn serve_udp(&mut self) {
        for _ in 0..UDP_BATCH {
            let Some(udp) = &self.udp else {
                return;
            };
            match udp.recv_from(&mut self.buf) {
                Ok((len, peer)) => {
                    debug_assert!(len <= MAX_DATAGRAM);
                    self.reply(len, peer);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // An error reported once for an earlier send: the datagrams behind it are
                // still there.
                Err(_) => {}
            }
        }
    }

    /// Sends `buf[..len]` back to `peer`.
    fn reply(&mut self, len: usize, peer: SocketAddr) {
        if self.fault == Fault::CrossedReplies {
            // FAULT(CrossedReplies): "reply to the client we are talking to".
            let client = self.last_client.and_then(|slot| self.conns[slot].as_mut());
            if let Some(conn) = client {
                conn.out.extend_from_slice(&self.buf[..len]);
                return;
            }
        }
        let to = match self.fault {
            // FAULT(WrongAddress): the address kept from the datagram before.
            Fault::WrongAddress => self.last_peer.replace(peer).unwrap_or(peer),
            _ => peer,
        };
        if let Some(udp) = &self.udp {
            // A reply the kernel will not take now is dropped: UDP promises no delivery.
            let _ = udp.send_to(&self.buf[..len], to);
        }
    }

    /// Accepts up to [`ACCEPT_BATCH`] waiting connections.
    fn accept_some(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            let sock = match self.listener.accept() {
                Ok((sock, _)) => sock,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // Out of fds: the rest wait in the backlog until clients leave.
                Err(e) if is_out_of_fds(&e) => return,
                // A connection reset while queued, or interrupted: try the next one.
                Err(_) => continue,
            };
            // FAULT(BlockingLine): the accepted socket keeps its blocking default.
            if self.fault != Fault::BlockingLine && sock.set_nonblocking(true).is_err() {
                continue;
            }
            let conn = Some(Conn::new(sock.into()));
            let slot = match self.free.pop() {
                Some(slot) => {
                    self.conns[slot] = conn;
                    slot
                }
                None => {
                    self.conns.push(conn);
                    self.conns.len() - 1
                }
            };
            self.last_client = Some(slot);
        }
    }
}
