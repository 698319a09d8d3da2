//! Deliberately broken line echo servers for the epoll labs (`epoll_lt`, `epoll_et`).
//!
//! [`run`] is one single-threaded, `epoll(7)`-based line echo server written from scratch
//! to the contract in `CONTRACT.md` ("Echo servers"), in one of two [`Mode`]s: level-triggered
//! (the `epoll_lt` lab) or edge-triggered (the `epoll_et` lab). With [`Fault::None`] it is a
//! correct implementation of that lab; every other [`Fault`] adds exactly one classic
//! mistake, so that each grader check can be shown to fail on a program that is wrong in
//! just that way.
//!
//! It is also, on purpose, unlike the reference solutions in ways the contract allows: it
//! asks `epoll_wait` for at most 64 events per call, reads into a 32 KiB buffer, and keeps
//! its connections in a `Vec<Option<Conn>>` slab indexed by the epoll `data` token. The
//! level-triggered mode reads once and accepts once per readiness report; the
//! edge-triggered mode drains (accepts, reads and writes until `EAGAIN`) on every wakeup.
//!
//! Every fault is a small branch marked `FAULT(<name>)` in the code.

use broken_common::{
    ACCEPT_PAUSE, HIGH_WATER, MAX_LINE, Next, Phase, TOO_LONG, accept_blocking, announce,
    is_out_of_fds, is_quit, listen_or_exit, port_or_exit, program_name, raise_nofile_limit,
};
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, Shutdown};
use std::process;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use socket2::Socket;

/// Size of the read buffer.
const READ_BUF: usize = 32 * 1024;
/// FAULT(ReadOnce) reads at most this much per wakeup.
const READ_ONCE_BUF: usize = 4096;
/// Most events one `epoll_wait` call returns.
const MAX_EVENTS: usize = 64;
/// The epoll `data` token of the listening socket; a client's token is its slab index.
const LISTENER: u64 = u64::MAX;

/// Which epoll lab the server implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `epoll_lt`: no `EPOLLET`; one read per report; a connection's interest moves
    /// between `EPOLLIN` and `EPOLLIN|EPOLLOUT` (`EPOLLOUT` alone while 64 KiB or more
    /// are unsent) with `EPOLL_CTL_MOD`.
    Level,
    /// `epoll_et`: everything registered once with `EPOLLET`
    /// (`EPOLLIN|EPOLLOUT|EPOLLRDHUP` for clients); accepts, reads and writes until
    /// `EAGAIN` on every wakeup.
    Edge,
}

/// The one mistake a server makes; [`Fault::None`] is a correct server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Correct per the contract.
    None,
    /// (Edge) Reads only once per wakeup, at most 4096 bytes, even if more is waiting.
    ReadOnce,
    /// (Edge) Stops reading at a short read instead of at `EAGAIN`: a FIN that
    /// arrived with the last bytes is never seen.
    ShortReadDrained,
    /// (Edge) Accepts only one connection per wakeup of the listener.
    AcceptOnce,
    /// (Edge) Registers clients for `EPOLLIN` only (no `EPOLLOUT`) and writes once per
    /// wakeup: what does not fit waits for a wakeup that never comes.
    WriteOnceNoRearm,
    /// The edge-triggered loop (drains until `EAGAIN`), registered without `EPOLLET`.
    RegisteredLt,
    /// The level-triggered loop (one read per wakeup, interest changes), with `EPOLLET`
    /// added to every registration.
    RegisteredEt,
    /// A connection that ends is never closed nor deregistered: its socket stays open
    /// and registered, and its events are ignored.
    KeepsClosedFds,
    /// `epoll_wait` with a zero timeout in a loop: spins while idle.
    BusyWait,
    /// Blocking accept in the main thread, one blocking thread per client, no epoll.
    ThreadPerClient,
}

/// Runs the echo server in the given mode with the given fault, exiting 2 on a usage
/// error and 1 on a fatal error. Never returns.
pub fn run(mode: Mode, fault: Fault) -> ! {
    let prog = program_name("broken_epoll");

    let port = port_or_exit(&prog);

    raise_nofile_limit();

    let threads = fault == Fault::ThreadPerClient;
    let (listener, port) = listen_or_exit(&prog, Ipv4Addr::LOCALHOST, port, !threads);

    // Everything the server keeps open while idle exists before it reports listening.
    let server = if threads {
        Serving::Threads(listener)
    } else {
        match Server::new(prog.clone(), listener, mode, fault) {
            Ok(server) => Serving::Epoll(Box::new(server)),
            Err(msg) => {
                eprintln!("{prog}: {msg}");
                process::exit(1);
            }
        }
    };

    announce(port);

    match server {
        Serving::Epoll(server) => server.run(),
        Serving::Threads(listener) => serve_with_threads(&listener),
    }
}

/// How the server waits for clients.
enum Serving {
    /// One thread, one epoll loop (every fault but one).
    Epoll(Box<Server>),
    /// FAULT(ThreadPerClient).
    Threads(Socket),
}

/// What one `read` brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Got {
    /// `EAGAIN`: nothing more to read until the next report.
    Drained,
    /// Data (or end of input that keeps the connection), or `EINTR`.
    More,
    /// Data that did not fill the buffer (the receive queue was emptied).
    Short,
    /// End of input that ends the connection.
    Close,
}

struct Conn {
    sock: Socket,
    /// The current line so far, never more than [`MAX_LINE`] bytes and never a `\n`.
    line: Vec<u8>,
    /// Unsent replies.
    out: VecDeque<u8>,
    phase: Phase,
    /// The client has shut down its writing half.
    peer_eof: bool,
    /// The events this socket is registered for.
    registered: EpollFlags,
}

impl Conn {
    fn new(sock: Socket, registered: EpollFlags) -> Self {
        Conn {
            sock,
            line: Vec::new(),
            out: VecDeque::new(),
            phase: Phase::Open,
            peer_eof: false,
            registered,
        }
    }

    fn wants_read(&self) -> bool {
        self.phase.wants_read(self.out.len(), self.peer_eof)
    }

    /// The level-triggered interest: `EPOLLIN` while it wants input, `EPOLLOUT` while
    /// replies are unsent.
    fn level_interest(&self) -> EpollFlags {
        let mut want = EpollFlags::empty();
        want.set(EpollFlags::EPOLLIN, self.wants_read());
        want.set(EpollFlags::EPOLLOUT, !self.out.is_empty());
        want
    }

    /// One read, then whatever it calls for.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<Got> {
        let n = match nix::unistd::read(&self.sock, buf) {
            Ok(n) => n,
            Err(Errno::EAGAIN) => return Ok(Got::Drained),
            Err(Errno::EINTR) => return Ok(Got::More),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(match self.on_eof() {
                Next::Keep => Got::More,
                Next::Close => Got::Close,
            });
        }
        if self.phase == Phase::Open {
            self.on_data(&buf[..n]);
        }
        // Ending or Lingering: input is read and discarded.
        Ok(if n < buf.len() { Got::Short } else { Got::More })
    }

    fn on_eof(&mut self) -> Next {
        self.peer_eof = true;
        match self.phase {
            Phase::Open => {
                // The unterminated trailing fragment goes back as it is.
                self.out.extend(self.line.drain(..));
                self.phase = Phase::Closing;
                Next::Keep
            }
            Phase::Lingering => Next::Close,
            Phase::Ending | Phase::Closing => Next::Keep,
        }
    }

    /// Splits input into lines and queues the replies.
    fn on_data(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.phase == Phase::Open {
            // Bytes this line may still take, counting its `\n`; byte `room` would be
            // the 8193rd byte of the line.
            let room = MAX_LINE - self.line.len();
            let window = &data[..data.len().min(room)];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                let (rest_of_line, after) = data.split_at(i + 1);
                self.complete_line(rest_of_line);
                data = after;
            } else if data.len() <= room {
                self.line.extend_from_slice(data);
                return;
            } else {
                // The 8193rd byte of a line has arrived: the line is too long.
                self.line.clear();
                self.out.extend(TOO_LONG);
                self.phase = Phase::Ending;
            }
        }
    }

    /// The current line ends with `rest_of_line` (which ends with `\n`).
    fn complete_line(&mut self, rest_of_line: &[u8]) {
        if is_quit(&self.line, rest_of_line) {
            self.line.clear();
            self.phase = Phase::Ending;
            return;
        }
        self.out.extend(self.line.drain(..));
        self.out.extend(rest_of_line);
    }

    /// Writes until `EAGAIN`, until nothing is left, or until `writes_left` write calls
    /// are used up.
    fn flush(&mut self, writes_left: &mut usize) -> io::Result<()> {
        while !self.out.is_empty() && *writes_left > 0 {
            *writes_left -= 1;
            let (front, _) = self.out.as_slices();
            match nix::unistd::write(&self.sock, front) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if self.out.is_empty() && self.out.capacity() > 2 * HIGH_WATER {
            self.out.shrink_to(READ_BUF);
        }
        Ok(())
    }

    /// Sends what it can and moves the connection on when its replies are out.
    fn advance(&mut self, writes_left: &mut usize) -> io::Result<Next> {
        self.flush(writes_left)?;
        match self.phase {
            Phase::Open | Phase::Lingering => Ok(Next::Keep),
            Phase::Closing if self.out.is_empty() => Ok(Next::Close),
            Phase::Closing => Ok(Next::Keep),
            Phase::Ending if !self.out.is_empty() => Ok(Next::Keep),
            Phase::Ending => {
                self.sock.shutdown(Shutdown::Write)?;
                if self.peer_eof {
                    Ok(Next::Close)
                } else {
                    self.phase = Phase::Lingering;
                    Ok(Next::Keep)
                }
            }
        }
    }

    /// Level-triggered: one read if input was reported and is wanted, then writes until
    /// `EAGAIN` or nothing is left.
    fn serve_level(&mut self, events: EpollFlags, buf: &mut [u8]) -> io::Result<Next> {
        let input = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLHUP
            | EpollFlags::EPOLLERR;
        if events.intersects(input) && self.wants_read() && self.read_some(buf)? == Got::Close {
            return Ok(Next::Close);
        }
        let mut unlimited = usize::MAX;
        self.advance(&mut unlimited)
    }

    /// Edge-triggered: reads until `EAGAIN` (or until backpressure stops it), writes until
    /// `EAGAIN` or nothing is left, and goes back to reading as long as input it stopped
    /// short of may still be waiting: no new edge will come for it.
    fn serve_edge(&mut self, buf: &mut [u8], fault: Fault) -> io::Result<Next> {
        let mut writes_left = if fault == Fault::WriteOnceNoRearm {
            // FAULT(WriteOnceNoRearm): one write call per wakeup, whatever is left.
            1
        } else {
            usize::MAX
        };
        loop {
            let mut drained = false;
            if fault == Fault::ReadOnce {
                // FAULT(ReadOnce): one small read per wakeup; the rest of the input
                // waits for an edge that does not come.
                if self.wants_read() && self.read_some(&mut buf[..READ_ONCE_BUF])? == Got::Close {
                    return Ok(Next::Close);
                }
                return self.advance(&mut writes_left);
            }
            while self.wants_read() {
                match self.read_some(buf)? {
                    Got::Short if fault == Fault::ShortReadDrained => {
                        // FAULT(ShortReadDrained): a short read taken for "drained".
                        // For data it is (a byte arriving later raises a new edge),
                        // but a FIN that came with the last bytes raises none: the
                        // end of input is never read.
                        drained = true;
                        break;
                    }
                    Got::More | Got::Short => {}
                    Got::Drained => {
                        drained = true;
                        break;
                    }
                    Got::Close => return Ok(Next::Close),
                }
            }
            if self.advance(&mut writes_left)? == Next::Close {
                return Ok(Next::Close);
            }
            // Reading stopped at 64 KiB unsent and the writes made room (or a phase
            // change wants input again): resume by itself.
            if drained || !self.wants_read() {
                return Ok(Next::Keep);
            }
        }
    }
}

/// What one `accept` brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Accepted {
    /// A connection (or a failure worth trying again at once).
    One,
    /// `EAGAIN`, or an error not worth retrying now.
    Drained,
    /// Out of file descriptors: accepting is paused.
    Paused,
}

/// The single-threaded epoll loop.
struct Server {
    prog: String,
    mode: Mode,
    fault: Fault,
    listener: Socket,
    epoll: Epoll,
    /// The events the listener is registered for (level-triggered: none while paused).
    listener_events: EpollFlags,
    /// Clients, indexed by their epoll `data` token.
    conns: Vec<Option<Conn>>,
    /// Slots free to reuse.
    free: Vec<usize>,
    /// Slots freed while serving the current batch of events: reused only after it, so
    /// that a stale event of a closed connection cannot reach a new one.
    freed: Vec<usize>,
    /// Not accepting until then, after running out of file descriptors.
    accept_paused_until: Option<Instant>,
    /// Edge-triggered: the listener reported an edge not yet accepted until `EAGAIN`.
    accept_pending: bool,
    buf: Vec<u8>,
    events: Vec<EpollEvent>,
    /// FAULT(KeepsClosedFds) in level-triggered mode only: see [`Server::close`].
    graveyard: Option<Epoll>,
}

impl Server {
    fn new(prog: String, listener: Socket, mode: Mode, fault: Fault) -> Result<Self, String> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| format!("cannot create an epoll instance: {e}"))?;
        let graveyard = if fault == Fault::KeepsClosedFds && mode == Mode::Level {
            let graveyard = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
                .map_err(|e| format!("cannot create an epoll instance: {e}"))?;
            Some(graveyard)
        } else {
            None
        };
        let mut server = Server {
            prog,
            mode,
            fault,
            listener,
            epoll,
            listener_events: EpollFlags::empty(),
            conns: Vec::new(),
            free: Vec::new(),
            freed: Vec::new(),
            accept_paused_until: None,
            accept_pending: false,
            buf: vec![0; READ_BUF],
            events: vec![EpollEvent::empty(); MAX_EVENTS],
            graveyard,
        };
        server.listener_events = EpollFlags::EPOLLIN | server.edge_flag();
        server
            .epoll
            .add(
                &server.listener,
                EpollEvent::new(server.listener_events, LISTENER),
            )
            .map_err(|e| format!("cannot register the listener with epoll: {e}"))?;
        Ok(server)
    }

    /// `EPOLLET`, or nothing, for every registration.
    fn edge_flag(&self) -> EpollFlags {
        match (self.mode, self.fault) {
            // FAULT(RegisteredEt): the level-triggered loop, registered edge-triggered.
            (Mode::Level, Fault::RegisteredEt) => EpollFlags::EPOLLET,
            // FAULT(RegisteredLt): the edge-triggered loop, registered level-triggered.
            (Mode::Edge, Fault::RegisteredLt) => EpollFlags::empty(),
            (Mode::Edge, _) => EpollFlags::EPOLLET,
            (Mode::Level, _) => EpollFlags::empty(),
        }
    }

    /// What a new client is registered for.
    fn client_events(&self) -> EpollFlags {
        match self.mode {
            Mode::Level => EpollFlags::EPOLLIN | self.edge_flag(),
            // FAULT(WriteOnceNoRearm): no EPOLLOUT, so no wakeup when room appears.
            Mode::Edge if self.fault == Fault::WriteOnceNoRearm => {
                EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | self.edge_flag()
            }
            Mode::Edge => {
                EpollFlags::EPOLLIN
                    | EpollFlags::EPOLLOUT
                    | EpollFlags::EPOLLRDHUP
                    | self.edge_flag()
            }
        }
    }

    fn run(mut self) -> ! {
        loop {
            let n = self.wait();
            // Connections first, the listener last; slots freed in this batch are reused
            // only after it.
            let mut listener_ready = false;
            for i in 0..n {
                let event = self.events[i];
                if event.data() == LISTENER {
                    listener_ready = true;
                } else {
                    self.serve(event.data() as usize, event.events());
                }
            }
            self.free.append(&mut self.freed);
            self.accept(listener_ready);
        }
    }

    /// The remaining pause of accepting, if any (clearing it once over).
    fn accept_pause(&mut self) -> Option<Duration> {
        let until = self.accept_paused_until?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.accept_paused_until = None;
            None
        } else {
            Some(left)
        }
    }

    /// Waits for events; returns how many are in `self.events`.
    fn wait(&mut self) -> usize {
        let pause = self.accept_pause();
        if self.mode == Mode::Level {
            // A level-triggered listener with connections it cannot accept would be
            // reported on every call: watch it only while accepting.
            let want = match pause {
                Some(_) => EpollFlags::empty(),
                None => EpollFlags::EPOLLIN | self.edge_flag(),
            };
            if want != self.listener_events {
                let mut event = EpollEvent::new(want, LISTENER);
                if let Err(e) = self.epoll.modify(&self.listener, &mut event) {
                    eprintln!("{}: epoll_ctl on the listener: {e}", self.prog);
                    process::exit(1);
                }
                self.listener_events = want;
            }
        }
        let timeout = if self.fault == Fault::BusyWait {
            // FAULT(BusyWait): never sleeps.
            EpollTimeout::ZERO
        } else {
            // Infinite, unless accepting is paused for lack of file descriptors.
            match pause {
                None => EpollTimeout::NONE,
                Some(t) => EpollTimeout::try_from(t + Duration::from_micros(999))
                    .unwrap_or(EpollTimeout::MAX),
            }
        };
        match self.epoll.wait(&mut self.events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => {
                eprintln!("{}: epoll_wait: {e}", self.prog);
                process::exit(1);
            }
        }
    }

    fn serve(&mut self, slot: usize, events: EpollFlags) {
        // A slot that is empty: a connection closed earlier in this batch, or
        // FAULT(KeepsClosedFds)'s forgotten ones, whose events are dropped here.
        let edge_flag = self.edge_flag();
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        let served = match self.mode {
            Mode::Level => conn.serve_level(events, &mut self.buf),
            Mode::Edge => conn.serve_edge(&mut self.buf, self.fault),
        };
        match served {
            Ok(Next::Keep) => {}
            Ok(Next::Close) | Err(_) => return self.close(slot),
        }
        if self.mode == Mode::Level {
            let want = conn.level_interest() | edge_flag;
            if want != conn.registered {
                let mut event = EpollEvent::new(want, slot as u64);
                if self.epoll.modify(&conn.sock, &mut event).is_err() {
                    return self.close(slot);
                }
                conn.registered = want;
            }
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if self.fault == Fault::KeepsClosedFds {
            // FAULT(KeepsClosedFds): the socket is neither closed nor deregistered, and
            // its slot is never reused: its later events find nothing and are dropped.
            if let Some(graveyard) = &self.graveyard {
                // Level-triggered, a finished socket (end of input, hang-up) would be
                // reported by every epoll_wait, and spin the loop: its registration moves,
                // unchanged, to a second epoll instance that is never waited on. It stays
                // registered there, visible in /proc/PID/fdinfo like any other.
                let _ = self.epoll.delete(&conn.sock);
                let _ = graveyard.add(&conn.sock, EpollEvent::new(conn.registered, slot as u64));
            }
            std::mem::forget(conn.sock);
            return;
        }
        let _ = self.epoll.delete(&conn.sock);
        self.freed.push(slot);
        // Dropping `conn` closes the socket; a descriptor is free again.
        self.accept_paused_until = None;
    }

    /// Accepts after a batch: level-triggered, one connection per report of the
    /// listener; edge-triggered, until `EAGAIN` after each edge (and after a pause for
    /// lack of descriptors, since no new edge comes for connections already waiting).
    fn accept(&mut self, listener_ready: bool) {
        let paused = self.accept_pause().is_some();
        match self.mode {
            Mode::Level => {
                if listener_ready && !paused {
                    self.accept_one();
                }
            }
            Mode::Edge => {
                if listener_ready {
                    self.accept_pending = true;
                }
                if !self.accept_pending || paused {
                    return;
                }
                if self.fault == Fault::AcceptOnce {
                    // FAULT(AcceptOnce): one connection per edge; the others wait in the
                    // backlog for an edge that does not come.
                    self.accept_pending = false;
                    self.accept_one();
                    return;
                }
                loop {
                    match self.accept_one() {
                        Accepted::One => {}
                        Accepted::Drained => {
                            self.accept_pending = false;
                            return;
                        }
                        // Still pending: tried again when the pause ends or a
                        // connection closes.
                        Accepted::Paused => return,
                    }
                }
            }
        }
    }

    fn accept_one(&mut self) -> Accepted {
        match self.listener.accept() {
            Ok((sock, _)) => {
                self.add_client(sock);
                Accepted::One
            }
            Err(e) if is_out_of_fds(&e) => {
                self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                Accepted::Paused
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Accepted::Drained,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) =>
            {
                Accepted::One
            }
            Err(e) => {
                eprintln!("{}: accept: {e}", self.prog);
                Accepted::Drained
            }
        }
    }

    fn add_client(&mut self, sock: Socket) {
        if let Err(e) = sock.set_nonblocking(true) {
            eprintln!(
                "{}: cannot make a client socket non-blocking: {e}",
                self.prog
            );
            return;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let events = self.client_events();
        // Input that arrived before this is reported at once: epoll_ctl checks readiness.
        if let Err(e) = self.epoll.add(&sock, EpollEvent::new(events, slot as u64)) {
            eprintln!("{}: cannot register a client with epoll: {e}", self.prog);
            self.free.push(slot);
            return;
        }
        self.conns[slot] = Some(Conn::new(sock, events));
    }
}

/// FAULT(ThreadPerClient): blocking accept, one blocking thread per client.
fn serve_with_threads(listener: &Socket) -> ! {
    loop {
        let sock = accept_blocking(listener);
        let spawned = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || serve_blocking(sock));
        // If the thread cannot start, the closure and its socket are dropped: closed.
        drop(spawned);
    }
}

/// Serves one client on a blocking socket with the same protocol code.
fn serve_blocking(sock: Socket) {
    let mut conn = Conn::new(sock, EpollFlags::empty());
    let mut buf = vec![0; READ_BUF];
    // On a blocking socket every flush sends everything, so the connection always either
    // wants to read or is done.
    while conn.wants_read() {
        match conn.serve_level(EpollFlags::EPOLLIN, &mut buf) {
            Ok(Next::Keep) => {}
            Ok(Next::Close) | Err(_) => return,
        }
    }
}
