//! Deliberately broken line echo servers for the `poll_echo` lab.
//!
//! [`run`] is one single-threaded, `ppoll(2)`-based line echo server written from scratch
//! to the contract in `CONTRACT.md` ("Echo servers"). With [`Fault::None`] it is a correct
//! implementation; every other [`Fault`] adds exactly one classic mistake, so that each
//! grader check can be shown to fail on a program that is wrong in just that way.
//!
//! It is also, on purpose, unlike the reference solution in ways the contract allows: it
//! waits with `ppoll` instead of `poll`, accepts one connection per wakeup of the listener,
//! writes replies at most 1000 bytes per `write` call and keeps its connections in a
//! `HashMap` keyed by file descriptor.
//!
//! Every fault is a small branch marked `FAULT(<name>)` in the code.

use broken_common::{
    ACCEPT_PAUSE, HIGH_WATER, MAX_LINE, Next, Phase, TOO_LONG, accept_blocking, announce,
    is_out_of_fds, is_quit, listen_or_exit, parse_port_args, port_or_exit, program_name,
    raise_nofile_limit,
};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, Shutdown};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::process;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::time::TimeSpec;
use socket2::Socket;

mod select;
use select::Select;
pub use select::SelectFault;

/// Largest write per `write(2)` call.
const WRITE_CHUNK: usize = 1000;
/// Size of the read buffer.
const READ_BUF: usize = 16 * 1024;

/// The one mistake a server makes; [`Fault::None`] is a correct server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Correct per the contract.
    None,
    /// Shuts down the writing half only right after a write: `quit` with no
    /// reply pending never ends the connection.
    ShutdownAfterWriteOnly,
    /// Polls with a zero timeout in a loop: spins while idle.
    BusyPoll,
    /// Waits with level-triggered `epoll_wait` instead of `poll`.
    UsesEpoll,
    /// Blocking accept in the main thread, one blocking thread per client.
    ThreadPerClient,
    /// Closes at once on end of input: drops pending replies and the trailing fragment.
    CloseOnEof,
    /// No backpressure: keeps reading and buffering however much is unsent.
    Unbounded,
    /// Any read or write error on a connection ends the whole process (exit 1).
    ExitOnError,
    /// Never closes the sockets of ended connections.
    LeakFds,
    /// Echoes every chunk as soon as it is read, before its line is complete.
    EchoEachRead,
    /// Echoes the `quit` line before ending the connection.
    EchoQuit,
    /// Cuts a too-long line to 8192 bytes plus `\n` and keeps the connection open.
    TruncateLongLines,
    /// Drops the `\r` before the `\n` when echoing.
    StripCr,
    /// Echoes only the first complete line of each read and discards the rest of it.
    OneLinePerRead,
    /// Iterative blocking server: serves one client at a time until it disconnects.
    SerialBlocking,
    /// Ending a connection closes it right away: no `shutdown(SHUT_WR)`, no lingering.
    NoLinger,
    /// Binds 0.0.0.0 instead of 127.0.0.1.
    BindAny,
    /// Leaves accepted client sockets blocking.
    BlockingSockets,
    /// Does not raise the soft `RLIMIT_NOFILE`.
    NoRlimit,
    /// Restores the default SIGPIPE action, so a write to a reset socket kills it.
    SigpipeDefault,
    /// Lets a `\n` as the 8193rd byte end the line: an 8193-byte line is echoed.
    NewlineAfterLimit,
    /// A bad command line exits 1, like a fatal error, instead of 2.
    UsageExitsOne,
    /// Ignores what it does not understand on the command line and starts anyway.
    IgnoresBadArguments,
}

/// Runs the echo server with the given fault, exiting 2 on a usage error and 1 on a
/// fatal error. Never returns.
pub fn run(fault: Fault) -> ! {
    start(fault, None)
}

/// Runs the server as a `select_echo` server (it waits in `select`, refuses
/// fds of 1024 and more) with the given select fault.
pub fn run_select(fault: SelectFault) -> ! {
    let common = match fault {
        // FAULT(select BlockingRead): client sockets left blocking.
        SelectFault::BlockingRead => Fault::BlockingSockets,
        SelectFault::NoRlimit => Fault::NoRlimit,
        _ => Fault::None,
    };
    start(common, Some(fault))
}

fn start(fault: Fault, select: Option<SelectFault>) -> ! {
    let prog = program_name("broken");

    if fault == Fault::SigpipeDefault {
        // FAULT(SigpipeDefault): undo the SIG_IGN that the Rust runtime installs before main.
        // SAFETY: no other thread exists yet, and SIG_DFL runs no handler code.
        let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    }

    let port = match fault {
        // FAULT(UsageExitsOne): a usage error reported like a fatal error.
        Fault::UsageExitsOne => parse_port_args().unwrap_or_else(|msg| {
            eprintln!("{prog}: {msg}");
            std::process::exit(1)
        }),
        // FAULT(IgnoresBadArguments): whatever the arguments, port 0.
        Fault::IgnoresBadArguments => parse_port_args().unwrap_or(0),
        _ => port_or_exit(&prog),
    };

    if fault != Fault::NoRlimit {
        // FAULT(NoRlimit) is skipping this.
        raise_nofile_limit();
    }

    let blocking_server = matches!(fault, Fault::SerialBlocking | Fault::ThreadPerClient);
    let ip = if fault == Fault::BindAny {
        // FAULT(BindAny): every interface instead of loopback only.
        Ipv4Addr::UNSPECIFIED
    } else {
        Ipv4Addr::LOCALHOST
    };
    let (listener, port) = listen_or_exit(&prog, ip, port, !blocking_server);

    // Everything the server keeps open while idle exists before it reports listening.
    let mode = match fault {
        Fault::SerialBlocking => Mode::Serial(listener),
        Fault::ThreadPerClient => Mode::Threads(listener),
        _ => Mode::Readiness(Box::new(Server::new(prog, listener, fault, select))),
    };

    announce(port);

    match mode {
        Mode::Readiness(server) => server.run(),
        Mode::Serial(listener) => serve_serially(&listener, fault),
        Mode::Threads(listener) => serve_with_threads(&listener, fault),
    }
}

/// How the server waits for clients.
enum Mode {
    /// One thread, one readiness loop (every fault but two).
    Readiness(Box<Server>),
    /// FAULT(SerialBlocking).
    Serial(Socket),
    /// FAULT(ThreadPerClient).
    Threads(Socket),
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
    /// FAULT(TruncateLongLines) only: dropping the rest of a cut line.
    skipping: bool,
    /// FAULT(UsesEpoll) only: the events this socket is registered for.
    registered: Option<EpollFlags>,
}

impl Conn {
    fn new(sock: Socket) -> Self {
        Conn {
            sock,
            line: Vec::new(),
            out: VecDeque::new(),
            phase: Phase::Open,
            peer_eof: false,
            skipping: false,
            registered: None,
        }
    }

    fn wants_read(&self, fault: Fault) -> bool {
        // FAULT(Unbounded): an open connection reads on however much is unsent.
        (fault == Fault::Unbounded && self.phase == Phase::Open)
            || self.phase.wants_read(self.out.len(), self.peer_eof)
    }

    /// (read, write) interest.
    fn interest(&self, fault: Fault) -> (bool, bool) {
        (self.wants_read(fault), !self.out.is_empty())
    }

    /// One read, then whatever it calls for.
    fn on_readable(&mut self, buf: &mut [u8], fault: Fault) -> io::Result<Next> {
        let n = match nix::unistd::read(&self.sock, buf) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(Next::Keep),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(self.on_eof(fault));
        }
        if self.phase == Phase::Open {
            self.on_data(&buf[..n], fault);
        }
        // Ending or Lingering: input is read and discarded.
        Ok(Next::Keep)
    }

    fn on_eof(&mut self, fault: Fault) -> Next {
        self.peer_eof = true;
        match self.phase {
            Phase::Open => {
                if fault == Fault::CloseOnEof {
                    // FAULT(CloseOnEof): drops pending replies and the trailing fragment.
                    return Next::Close;
                }
                if fault != Fault::EchoEachRead {
                    // (FAULT(EchoEachRead) has sent the fragment already.)
                    self.out.extend(self.line.drain(..));
                }
                self.phase = Phase::Closing;
                Next::Keep
            }
            Phase::Lingering => Next::Close,
            Phase::Ending | Phase::Closing => Next::Keep,
        }
    }

    /// Splits input into lines and queues the replies.
    fn on_data(&mut self, mut data: &[u8], fault: Fault) {
        while !data.is_empty() && self.phase == Phase::Open {
            if self.skipping {
                // FAULT(TruncateLongLines): drop the rest of a line that was cut.
                match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.skipping = false;
                        data = &data[i + 1..];
                        continue;
                    }
                    None => return,
                }
            }
            // Bytes this line may still take, counting its `\n`; byte `room` would be
            // the 8193rd byte of the line.
            let room = MAX_LINE - self.line.len();
            // FAULT(NewlineAfterLimit): the 8193rd byte may still end the line.
            let limit = room + usize::from(fault == Fault::NewlineAfterLimit);
            let window = &data[..data.len().min(limit)];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                let (rest_of_line, after) = data.split_at(i + 1);
                self.complete_line(rest_of_line, fault);
                data = after;
                if fault == Fault::OneLinePerRead {
                    // FAULT(OneLinePerRead): the rest of this read is lost.
                    return;
                }
            } else if data.len() <= room {
                if fault == Fault::EchoEachRead {
                    // FAULT(EchoEachRead): echo bytes before their line is complete.
                    self.out.extend(data);
                }
                self.line.extend_from_slice(data);
                return;
            } else if fault == Fault::TruncateLongLines {
                // FAULT(TruncateLongLines): echo the first 8192 bytes as a line, go on.
                self.out.extend(self.line.drain(..));
                self.out.extend(&data[..room]);
                self.out.push_back(b'\n');
                self.skipping = data[room] != b'\n';
                data = &data[room + 1..];
            } else {
                // The 8193rd byte of a line has arrived: the line is too long.
                self.line.clear();
                self.out.extend(TOO_LONG);
                self.phase = Phase::Ending;
            }
        }
    }

    /// The current line ends with `rest_of_line` (which ends with `\n`).
    fn complete_line(&mut self, rest_of_line: &[u8], fault: Fault) {
        let quit = is_quit(&self.line, rest_of_line);
        if quit && fault != Fault::EchoQuit {
            // (FAULT(EchoQuit) is not ending here, before the echo.)
            self.line.clear();
            self.phase = Phase::Ending;
            return;
        }
        let crlf = match rest_of_line {
            [.., b'\r', b'\n'] => true,
            [b'\n'] => self.line.last() == Some(&b'\r'),
            _ => false,
        };
        if fault == Fault::EchoEachRead {
            // FAULT(EchoEachRead): the start of the line was echoed when it arrived.
            self.line.clear();
        } else {
            self.out.extend(self.line.drain(..));
        }
        self.out.extend(rest_of_line);
        if fault == Fault::StripCr && crlf {
            // FAULT(StripCr): "...\r\n" goes back as "...\n".
            self.out.pop_back();
            self.out.pop_back();
            self.out.push_back(b'\n');
        }
        if quit {
            // FAULT(EchoQuit): `quit` was echoed; end now.
            self.phase = Phase::Ending;
        }
    }

    /// Writes what it can, at most [`WRITE_CHUNK`] bytes per call; returns
    /// how many bytes went out.
    fn flush(&mut self) -> io::Result<usize> {
        let mut written = 0;
        while !self.out.is_empty() {
            let (front, _) = self.out.as_slices();
            let chunk = &front[..front.len().min(WRITE_CHUNK)];
            match nix::unistd::write(&self.sock, chunk) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out.drain(..n);
                    written += n;
                }
                Err(Errno::EAGAIN) => return Ok(written),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if self.out.capacity() > 2 * HIGH_WATER {
            self.out.shrink_to(READ_BUF);
        }
        Ok(written)
    }

    /// Sends what it can and moves the connection on when its replies are out.
    fn advance(&mut self, fault: Fault) -> io::Result<Next> {
        let written = self.flush()?;
        match self.phase {
            Phase::Open | Phase::Lingering => Ok(Next::Keep),
            Phase::Closing if self.out.is_empty() => Ok(Next::Close),
            Phase::Closing => Ok(Next::Keep),
            // FAULT(NoLinger): close with replies possibly unsent and input unread.
            Phase::Ending if fault == Fault::NoLinger => Ok(Next::Close),
            Phase::Ending if !self.out.is_empty() => Ok(Next::Keep),
            // FAULT(ShutdownAfterWriteOnly): the shutdown is done only right
            // after writing the last reply, so a `quit` that arrives when every
            // reply is already sent leaves the connection open forever.
            Phase::Ending if fault == Fault::ShutdownAfterWriteOnly && written == 0 => {
                Ok(Next::Keep)
            }
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

    /// Serves one readiness report: one read if it has input to take, then writes.
    fn step(&mut self, input_ready: bool, buf: &mut [u8], fault: Fault) -> io::Result<Next> {
        if input_ready && self.wants_read(fault) && self.on_readable(buf, fault)? == Next::Close {
            return Ok(Next::Close);
        }
        self.advance(fault)
    }
}

/// The single-threaded readiness loop (ppoll, or epoll for FAULT(UsesEpoll)).
struct Server {
    prog: String,
    fault: Fault,
    listener: Socket,
    conns: HashMap<RawFd, Conn>,
    /// Not accepting until then, after running out of file descriptors.
    accept_paused_until: Option<Instant>,
    buf: Vec<u8>,
    /// FAULT(UsesEpoll) only.
    epoll: Option<EpollState>,
    /// The select_echo servers only.
    select: Option<Select>,
}

struct EpollState {
    epoll: Epoll,
    events: Vec<EpollEvent>,
    listener_registered: Option<EpollFlags>,
}

impl Server {
    fn new(prog: String, listener: Socket, fault: Fault, select: Option<SelectFault>) -> Self {
        let epoll = if fault == Fault::UsesEpoll {
            // FAULT(UsesEpoll): wait in epoll_wait instead of poll.
            match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) {
                Ok(epoll) => Some(EpollState {
                    epoll,
                    events: vec![EpollEvent::empty(); 1024],
                    listener_registered: None,
                }),
                Err(e) => {
                    eprintln!("{prog}: epoll_create1: {e}");
                    process::exit(1);
                }
            }
        } else {
            None
        };
        let listener_fd = listener.as_raw_fd();
        Server {
            prog,
            fault,
            listener,
            conns: HashMap::new(),
            accept_paused_until: None,
            buf: vec![0; READ_BUF],
            epoll,
            select: select.map(|fault| Select::new(fault, listener_fd)),
        }
    }

    fn run(mut self) -> ! {
        let listener_fd = self.listener.as_raw_fd();
        loop {
            let ready = self.wait();
            // Connections first, the listener last: a descriptor closed in this round
            // cannot be reused by a new connection before its stale report is served.
            let mut accept = false;
            for (fd, input_ready) in ready {
                if fd == listener_fd {
                    accept = true;
                } else {
                    self.serve(fd, input_ready);
                }
            }
            if accept {
                self.accept_one();
            }
        }
    }

    /// Whether to watch the listener now; `Some` remaining pause otherwise.
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

    /// Waits for readiness; returns (fd, input ready) for every descriptor reported.
    fn wait(&mut self) -> Vec<(RawFd, bool)> {
        let pause = self.accept_pause();
        let timeout = if self.fault == Fault::BusyPoll {
            // FAULT(BusyPoll): never sleeps.
            Some(Duration::ZERO)
        } else {
            // Infinite, unless accepting is paused for lack of file descriptors.
            pause
        };
        if self.epoll.is_some() {
            return self.wait_epoll(pause.is_none(), timeout);
        }
        if let Some(select) = &mut self.select {
            let conns = self
                .conns
                .iter()
                .map(|(&fd, conn)| (fd, conn.interest(self.fault)));
            return select.wait(&self.prog, pause.is_none(), conns, timeout);
        }

        let fault = self.fault;
        let mut fds = Vec::with_capacity(self.conns.len() + 1);
        if pause.is_none() {
            fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        }
        for conn in self.conns.values() {
            let (read, write) = conn.interest(fault);
            let mut events = PollFlags::empty();
            events.set(PollFlags::POLLIN, read);
            events.set(PollFlags::POLLOUT, write);
            fds.push(PollFd::new(conn.sock.as_fd(), events));
        }
        match ppoll(&mut fds, timeout.map(TimeSpec::from), None) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("{}: ppoll: {e}", self.prog);
                process::exit(1);
            }
        }
        let input =
            PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
        fds.iter()
            .filter_map(|pfd| {
                let revents = pfd.revents().filter(|r| !r.is_empty())?;
                Some((pfd.as_fd().as_raw_fd(), revents.intersects(input)))
            })
            .collect()
    }

    /// FAULT(UsesEpoll): the same wait with a level-triggered epoll set.
    fn wait_epoll(
        &mut self,
        watch_listener: bool,
        timeout: Option<Duration>,
    ) -> Vec<(RawFd, bool)> {
        let Some(state) = self.epoll.as_mut() else {
            return Vec::new();
        };
        let listener_fd = self.listener.as_raw_fd();
        let want = if watch_listener {
            EpollFlags::EPOLLIN
        } else {
            EpollFlags::empty()
        };
        if state.listener_registered != Some(want) {
            let mut event = EpollEvent::new(want, listener_fd as u64);
            let done = match state.listener_registered {
                None => state.epoll.add(&self.listener, event),
                Some(_) => state.epoll.modify(&self.listener, &mut event),
            };
            if let Err(e) = done {
                eprintln!("{}: epoll_ctl on the listener: {e}", self.prog);
                process::exit(1);
            }
            state.listener_registered = Some(want);
        }
        let mut failed = Vec::new();
        for (&fd, conn) in &mut self.conns {
            let (read, write) = conn.interest(self.fault);
            let mut want = EpollFlags::empty();
            want.set(EpollFlags::EPOLLIN, read);
            want.set(EpollFlags::EPOLLOUT, write);
            if conn.registered == Some(want) {
                continue;
            }
            let mut event = EpollEvent::new(want, fd as u64);
            let done = match conn.registered {
                None => state.epoll.add(&conn.sock, event),
                Some(_) => state.epoll.modify(&conn.sock, &mut event),
            };
            match done {
                Ok(()) => conn.registered = Some(want),
                Err(_) => failed.push(fd),
            }
        }
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(t) => {
                EpollTimeout::try_from(t + Duration::from_micros(999)).unwrap_or(EpollTimeout::MAX)
            }
        };
        let n = match state.epoll.wait(&mut state.events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => {
                eprintln!("{}: epoll_wait: {e}", self.prog);
                process::exit(1);
            }
        };
        let input = EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
        let ready = state.events[..n]
            .iter()
            .map(|ev| (ev.data() as RawFd, ev.events().intersects(input)))
            .collect();
        for fd in failed {
            self.close(fd);
        }
        ready
    }

    fn accept_one(&mut self) {
        match self.listener.accept() {
            Ok((sock, _)) => {
                if self.fault != Fault::BlockingSockets {
                    // FAULT(BlockingSockets) is skipping this.
                    if let Err(e) = sock.set_nonblocking(true) {
                        eprintln!(
                            "{}: cannot make a client socket non-blocking: {e}",
                            self.prog
                        );
                        return;
                    }
                }
                let fd = sock.as_raw_fd();
                if let Some(select) = &mut self.select
                    && !select.admit(&sock, self.conns.len())
                {
                    return; // refused: dropping `sock` closes it
                }
                self.conns.insert(fd, Conn::new(sock));
            }
            Err(e) if is_out_of_fds(&e) => {
                self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => eprintln!("{}: accept: {e}", self.prog),
        }
    }

    fn serve(&mut self, fd: RawFd, input_ready: bool) {
        let Some(conn) = self.conns.get_mut(&fd) else {
            return;
        };
        match conn.step(input_ready, &mut self.buf, self.fault) {
            Ok(Next::Keep) => {}
            Ok(Next::Close) => self.close(fd),
            Err(e) => {
                if self.fault == Fault::ExitOnError {
                    // FAULT(ExitOnError): one client's error ends the server.
                    eprintln!("{}: connection on fd {fd}: {e}", self.prog);
                    process::exit(1);
                }
                self.close(fd);
            }
        }
    }

    fn close(&mut self, fd: RawFd) {
        let Some(conn) = self.conns.remove(&fd) else {
            return;
        };
        if let Some(state) = &self.epoll {
            let _ = state.epoll.delete(&conn.sock);
        }
        if self.fault == Fault::LeakFds {
            // FAULT(LeakFds): out of the poll set, but the descriptor stays open.
            std::mem::forget(conn.sock);
        }
        // Otherwise dropping `conn` closes the socket.
        self.accept_paused_until = None;
    }
}

/// FAULT(SerialBlocking): one client at a time, with blocking I/O.
fn serve_serially(listener: &Socket, fault: Fault) -> ! {
    loop {
        serve_blocking(accept_blocking(listener), fault);
    }
}

/// FAULT(ThreadPerClient): blocking accept, one blocking thread per client.
fn serve_with_threads(listener: &Socket, fault: Fault) -> ! {
    loop {
        let sock = accept_blocking(listener);
        let spawned = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || serve_blocking(sock, fault));
        // If the thread cannot start, the closure and its socket are dropped: closed.
        drop(spawned);
    }
}

/// Serves one client on a blocking socket with the same protocol code.
fn serve_blocking(sock: Socket, fault: Fault) {
    let mut conn = Conn::new(sock);
    let mut buf = vec![0; READ_BUF];
    // On a blocking socket every flush sends everything, so the connection always either
    // wants to read or is done.
    while conn.wants_read(fault) {
        match conn.step(true, &mut buf, fault) {
            Ok(Next::Keep) => {}
            Ok(Next::Close) | Err(_) => return,
        }
    }
}
