//! Checks of the select_telnet lab.
//!
//! The grader plays both ends of the client: the server (a listener it
//! controls, with small kernel buffers so that nothing hides in them) and the
//! user (pipes for the program's stdin and stdout, driven non-blocking with
//! deadlines). Every wait is bounded; a stuck program fails with what moved
//! before it got stuck.

use crate::check::grader_error;
use crate::check::{Check, Ctx, Failure, Outcome, Suite, Verdict, broken, ensure, secs};
use crate::harness::client::SMALL_BUFFER;
use crate::harness::proc::{self, SyscallState, nr, syscall_name};
use crate::harness::process::{Program, SpawnOptions};
use crate::harness::text::{bytes, first_difference, quote};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Kernel buffers of the grader's server socket: small, so that a client that
/// stops reading the socket makes the server's writes block for real.
/// Bytes each way in the full-duplex check. More than the client's socket
/// buffers can absorb (see `full_duplex`).
const DUPLEX_BYTES: usize = 16 << 20;
/// No byte moved for this long: the program is stuck.
const STALL: Duration = Duration::from_secs(2);
/// The contract's "at once", in the notification check.
const PROMPT_LATENCY: Duration = Duration::from_millis(200);
const CLOSED_MESSAGE: &str = "Connection closed by foreign host.";

pub static SUITE: Suite = Suite {
    name: "select_telnet",
    checks: &[
        ROUND_TRIP,
        NOTIFICATION,
        FULL_DUPLEX,
        STDIN_EOF,
        EXIT_CODES,
        PEER_RESET,
        IDLE,
        BINARY,
        STDOUT_CLOSED,
    ],
    hints: include_str!("hints.txt"),
};

// ---------------------------------------------------------------------------
// The harness: the program, its stdin and stdout pipes, the server's socket.

/// How the server reads its socket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PeerReads {
    Always,
    /// Only once everything queued for the client has been sent: a peer that
    /// talks first and listens after.
    AfterSending,
}

/// Why `pump` returned.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    Done,
    Stalled,
    Deadline,
}

struct Session {
    program: Program,
    /// Our end of the program's stdin; `None` once closed.
    stdin: Option<OwnedFd>,
    /// Our end of the program's stdout; `None` once closed.
    stdout: Option<OwnedFd>,
    /// The server's side of the connection.
    peer: Option<Socket>,
    to_stdin: Vec<u8>,
    stdin_written: usize,
    /// Close stdin once everything queued is written.
    close_stdin: bool,
    stdin_closed_at: Option<Instant>,
    stdin_error: Option<String>,
    to_peer: Vec<u8>,
    peer_sent: usize,
    peer_reads: PeerReads,
    from_stdout: Vec<u8>,
    stdout_eof: bool,
    from_peer: Vec<u8>,
    peer_eof: bool,
    peer_error: Option<String>,
    last_progress: Instant,
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), Verdict> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(grader_error)?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(grader_error)?;
    Ok(())
}

/// The server's listening socket: small buffers, set before listen() so that
/// the accepted socket inherits them.
fn listener() -> Result<(Socket, u16), Verdict> {
    let socket =
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(grader_error)?;
    socket
        .set_recv_buffer_size(SMALL_BUFFER)
        .and_then(|()| socket.set_send_buffer_size(SMALL_BUFFER))
        .and_then(|()| socket.bind(&SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))))
        .and_then(|()| socket.listen(1))
        .and_then(|()| socket.set_nonblocking(true))
        .map_err(grader_error)?;
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .ok_or_else(|| grader_error("no local address"))?;
    Ok((socket, port))
}

impl Session {
    /// Starts `select_telnet 127.0.0.1 PORT` with piped stdin and stdout and
    /// accepts its connection.
    fn start(ctx: &Ctx) -> Result<Session, Verdict> {
        let (listener, port) = listener()?;
        let (stdin_read, stdin_write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(grader_error)?;
        let (stdout_read, stdout_write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(grader_error)?;
        // Only our ends: the program's ends stay blocking, as a terminal's would.
        set_nonblocking(&stdin_write)?;
        set_nonblocking(&stdout_read)?;
        let mut program = ctx.spawn(SpawnOptions {
            args: vec!["127.0.0.1".into(), port.to_string()],
            stdin: Some(Stdio::from(stdin_read)),
            stdout: Some(Stdio::from(stdout_write)),
            ..SpawnOptions::default()
        })?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let peer = loop {
            match listener.accept() {
                Ok((peer, _)) => break peer,
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) => return Err(grader_error(format!("accept: {err}"))),
            }
            if let Err(ending) = program.check_alive() {
                return Err(Failure::new(format!(
                    "`{} 127.0.0.1 {port}` ended before connecting to the server: {ending}",
                    ctx.lab.name
                ))
                .expected("the program connects to HOST:PORT and keeps running")
                .into());
            }
            if Instant::now() >= deadline {
                return Err(Failure::new(format!(
                    "`{} 127.0.0.1 {port}` did not connect to the server within 5 s",
                    ctx.lab.name
                ))
                .expected("a TCP connection to 127.0.0.1:PORT right after start")
                .into());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        peer.set_nonblocking(true).map_err(grader_error)?;
        Ok(Session {
            program,

            stdin: Some(stdin_write),
            stdout: Some(stdout_read),
            peer: Some(peer),
            to_stdin: Vec::new(),
            stdin_written: 0,
            close_stdin: false,
            stdin_closed_at: None,
            stdin_error: None,
            to_peer: Vec::new(),
            peer_sent: 0,
            peer_reads: PeerReads::Always,
            from_stdout: Vec::new(),
            stdout_eof: false,
            from_peer: Vec::new(),
            peer_eof: false,
            peer_error: None,
            last_progress: Instant::now(),
        })
    }

    fn pid(&self) -> i32 {
        self.program.pid
    }

    /// Queues bytes for the program's stdin (the user types them).
    fn type_in(&mut self, data: &[u8]) {
        self.to_stdin.extend_from_slice(data);
    }

    /// Queues bytes for the server to send.
    fn send(&mut self, data: &[u8]) {
        self.to_peer.extend_from_slice(data);
    }

    /// Closes stdin once everything typed so far is written.
    fn end_stdin(&mut self) {
        self.close_stdin = true;
    }

    /// Everything typed is written (or can never be: stdin is closed).
    fn stdin_flushed(&self) -> bool {
        self.stdin_written == self.to_stdin.len() || self.stdin.is_none()
    }

    fn peer_flushed(&self) -> bool {
        self.peer_sent == self.to_peer.len()
    }

    fn peer_done(&self) -> bool {
        self.peer_eof || self.peer_error.is_some()
    }

    /// Closes the server's socket: a FIN, or with `reset` a RST.
    fn close_peer(&mut self, reset: bool) {
        if let Some(peer) = self.peer.take() {
            if reset {
                let _ = peer.set_linger(Some(Duration::ZERO));
            } else {
                let _ = peer.shutdown(Shutdown::Write);
            }
        }
    }

    /// One wait (at most `timeout`) and whatever I/O can be done without blocking.
    fn step(&mut self, timeout: Duration) {
        let mut progress = false;
        if self.close_stdin && self.stdin_flushed() && self.stdin.is_some() {
            self.stdin = None;
            self.stdin_closed_at = Some(Instant::now());
            progress = true;
        }
        let want_stdin = self.stdin.is_some() && !self.stdin_flushed();
        let want_stdout = self.stdout.is_some() && !self.stdout_eof;
        let peer_ok = self.peer.is_some() && self.peer_error.is_none();
        let want_send = peer_ok && !self.peer_flushed();
        let want_recv = peer_ok
            && !self.peer_eof
            && (self.peer_reads == PeerReads::Always || self.peer_flushed());
        {
            let mut fds = Vec::new();
            if want_stdin && let Some(fd) = &self.stdin {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
            }
            if want_stdout && let Some(fd) = &self.stdout {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            if let Some(peer) = &self.peer
                && (want_send || want_recv)
            {
                let mut events = PollFlags::empty();
                events.set(PollFlags::POLLOUT, want_send);
                events.set(PollFlags::POLLIN, want_recv);
                fds.push(PollFd::new(peer.as_fd(), events));
            }
            let ms = timeout.as_millis().clamp(0, 50) as u16;
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
        if want_stdout {
            progress |= self.read_stdout();
        }
        if want_recv {
            progress |= self.recv_peer();
        }
        if want_stdin {
            progress |= self.write_stdin();
        }
        if want_send {
            progress |= self.send_peer();
        }
        if progress {
            self.last_progress = Instant::now();
        }
    }

    fn read_stdout(&mut self) -> bool {
        let Some(fd) = &self.stdout else { return false };
        let mut buf = vec![0u8; 256 * 1024];
        let mut progress = false;
        for _ in 0..8 {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => {
                    self.stdout_eof = true;
                    return true;
                }
                Ok(n) => {
                    self.from_stdout.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(_) => break,
            }
        }
        progress
    }

    fn recv_peer(&mut self) -> bool {
        let Some(peer) = &self.peer else { return false };
        let mut buf = vec![0u8; 256 * 1024];
        let mut progress = false;
        for _ in 0..8 {
            match (&*peer).read(&mut buf) {
                Ok(0) => {
                    self.peer_eof = true;
                    return true;
                }
                Ok(n) => {
                    self.from_peer.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => {
                    self.peer_error = Some(err.to_string());
                    return true;
                }
            }
        }
        progress
    }

    fn write_stdin(&mut self) -> bool {
        let Some(fd) = &self.stdin else { return false };
        let mut progress = false;
        while !self.stdin_flushed() {
            match nix::unistd::write(fd, &self.to_stdin[self.stdin_written..]) {
                Ok(n) => {
                    self.stdin_written += n;
                    progress = true;
                }
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => {}
                Err(err) => {
                    // EPIPE: the program closed its stdin (or exited).
                    self.stdin_error = Some(err.desc().to_string());
                    self.stdin = None;
                    return true;
                }
            }
        }
        progress
    }

    fn send_peer(&mut self) -> bool {
        let Some(peer) = &self.peer else { return false };
        let mut progress = false;
        while !self.peer_flushed() {
            match (&*peer).write(&self.to_peer[self.peer_sent..]) {
                Ok(n) => {
                    self.peer_sent += n;
                    progress = true;
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => {
                    self.peer_error = Some(err.to_string());
                    return true;
                }
            }
        }
        progress
    }

    /// Drives every pipe and the socket until `done`, for at most `within`,
    /// or until nothing has moved for `stall`.
    fn pump(&mut self, within: Duration, stall: Duration, done: impl Fn(&Session) -> bool) -> Stop {
        let deadline = Instant::now() + within;
        self.last_progress = Instant::now();
        loop {
            if done(self) {
                return Stop::Done;
            }
            let now = Instant::now();
            if now >= deadline {
                return Stop::Deadline;
            }
            if now - self.last_progress >= stall {
                return Stop::Stalled;
            }
            self.step(deadline - now);
        }
    }

    /// Keeps everything moving for `time`.
    fn pump_for(&mut self, time: Duration) {
        self.pump(time, time + STALL, |_| false);
    }

    /// Waits until the server has received `n` more bytes than `mark` (or the
    /// connection ended), then a little longer to see anything extra.
    fn await_peer(&mut self, mark: usize, n: usize, within: Duration) -> Vec<u8> {
        self.pump(within, within, |s| {
            s.from_peer.len() >= mark + n || s.peer_done()
        });
        self.pump_for(Duration::from_millis(100));
        self.from_peer[mark.min(self.from_peer.len())..].to_vec()
    }

    /// Same for the program's stdout.
    fn await_stdout(&mut self, mark: usize, n: usize, within: Duration) -> Vec<u8> {
        self.pump(within, within, |s| {
            s.from_stdout.len() >= mark + n || s.stdout_eof
        });
        self.pump_for(Duration::from_millis(100));
        self.from_stdout[mark.min(self.from_stdout.len())..].to_vec()
    }

    /// Waits for the program to exit, keeping its output flowing.
    fn await_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.program.exit_status() {
                // Its last bytes may still be in the pipe.
                self.pump(Duration::from_millis(200), STALL, |s| s.stdout_eof);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.step(Duration::from_millis(5));
        }
    }

    /// Where the program is asleep, in words, for messages about a stall.
    fn asleep_in(&self) -> String {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{}/syscall", self.pid())) else {
            return String::new();
        };
        let mut words = text.split_whitespace();
        let Some(Ok(number)) = words.next().map(str::parse::<u64>) else {
            return String::new();
        };
        let fd = words
            .next()
            .and_then(|w| i64::from_str_radix(w.trim_start_matches("0x"), 16).ok());
        let on = match (number, fd) {
            (nr::READ | nr::WRITE | nr::SENDTO | nr::RECVFROM, Some(fd)) => match fd {
                0 => " on stdin (fd 0)".to_string(),
                1 => " on stdout (fd 1)".to_string(),
                fd => format!(" on fd {fd} (the socket)"),
            },
            _ => String::new(),
        };
        format!(" It is asleep in {}{on}.", syscall_name(number))
    }
}

/// `len` bytes of numbered lines, `tag` in each: a lost or repeated chunk
/// shows as a difference at a precise place.
fn pattern(len: usize, tag: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 80);
    let mut i = 0usize;
    while out.len() < len {
        let filler = 10 + (i * 7) % 40;
        out.extend_from_slice(format!("{tag} {i:08} ").as_bytes());
        out.extend((0..filler).map(|k| b'a' + ((i + k) % 26) as u8));
        out.push(b'\n');
        i += 1;
    }
    out.truncate(len);
    out
}

/// Compares what arrived with what was sent, for a failure message.
fn mismatch(what: &str, expected: &[u8], got: &[u8]) -> Option<String> {
    if got == expected {
        return None;
    }
    let mut text = format!(
        "{what}: sent {}, received {}",
        bytes(expected.len()),
        bytes(got.len())
    );
    if let Some(diff) = first_difference(expected, got) {
        text += &format!("; {diff}");
    }
    Some(text)
}

// ---------------------------------------------------------------------------
// The checks.

pub const ROUND_TRIP: Check = Check {
    name: "round_trip",
    points: 10,
    title: "a line typed on stdin reaches the server byte for byte, and the server's reply appears on stdout; then the same without a final newline",
    limit: secs(40),
    run: round_trip,
    proven_by: &[broken(
        "broken_select_telnet_crlf",
        "real telnet sends CRLF",
    )],
};

fn round_trip(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    let rounds: [(&[u8], &[u8]); 2] = [
        (
            b"hello, server: this line was typed on stdin\n",
            b"hello, client: this is the server's reply\n",
        ),
        (b"no newline at the end", b"prompt> "),
    ];
    for (i, (typed, reply)) in rounds.into_iter().enumerate() {
        let mark = s.from_peer.len();
        s.type_in(typed);
        let got = s.await_peer(mark, typed.len(), Duration::from_secs(3));
        if got.is_empty() {
            return Err(Failure::new(format!(
                "{} were typed on stdin ({}); the server received nothing within 3 s",
                bytes(typed.len()),
                quote(typed)
            ))
            .expected("the bytes on the socket as soon as they are read from stdin")
            .cause(if i == 0 {
                "stdin is not in the read set, or what is read is not written to the socket (check the write set and the buffer)"
            } else {
                "the bytes are held until a newline: read stdin with one read() of whatever is there (BufRead::lines/read_line wait for \\n)"
            })
            .into());
        }
        if let Some(text) = mismatch("stdin to the server", typed, &got) {
            let cause = if got.windows(2).any(|w| w == b"\r\n") {
                "a \\r was added before the \\n: real telnet sends CRLF, this lab copies bytes unchanged"
            } else {
                "the bytes must be copied unchanged: no translation, no added or dropped bytes"
            };
            return Err(Failure::new(format!("{text}; got {}", quote(&got)))
                .expected(format!("exactly {}", quote(typed)))
                .cause(cause)
                .into());
        }
        let mark = s.from_stdout.len();
        s.send(reply);
        let got = s.await_stdout(mark, reply.len(), Duration::from_secs(3));
        if let Some(text) = mismatch("the server to stdout", reply, &got) {
            let cause = if got.is_empty() && i == 1 {
                "stdout is line-buffered: flush it after each write (a prompt has no newline)"
            } else {
                "the socket is not in the read set, or what is read is not written to stdout unchanged"
            };
            return Err(Failure::new(format!(
                "the server sent {}; on stdout: {}",
                quote(reply),
                if got.is_empty() {
                    "nothing within 3 s".to_string()
                } else {
                    format!("{} ({text})", quote(&got))
                }
            ))
            .expected(format!("exactly {} on stdout", quote(reply)))
            .cause(cause)
            .into());
        }
    }
    Ok(())
}

pub const NOTIFICATION: Check = Check {
    name: "notification",
    points: 14,
    title: "while stdin is idle, a message from the server (a line, then a prompt without a newline) appears on stdout within 200 ms",
    limit: secs(40),
    run: notification,
    proven_by: &[
        broken(
            "broken_select_telnet_blocking_stdin_first",
            "only after the grader typed a line",
        ),
        broken("broken_select_telnet_no_flush", "flush stdout"),
    ],
};

fn notification(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    // Let it settle into its wait, with stdin open and silent.
    s.pump_for(Duration::from_millis(300));
    let messages: [&[u8]; 3] = [
        b"NOTICE: you have new mail\n",
        b"NOTICE: the system goes down in 5 minutes\n",
        b"login: ",
    ];
    let mut latencies = Vec::new();
    for message in messages {
        let mark = s.from_stdout.len();
        s.send(message);
        let sent = Instant::now();
        s.pump(Duration::from_secs(1), STALL, |s| {
            s.from_stdout.len() >= mark + message.len() || s.stdout_eof
        });
        let latency = sent.elapsed();
        let got = s.from_stdout[mark..].to_vec();
        if got.len() < message.len() {
            // Does typing something release it? Then stdin blocked the loop.
            let asleep = s.asleep_in();
            s.type_in(b"\n");
            s.pump(Duration::from_millis(500), STALL, |s| {
                s.from_stdout.len() >= mark + message.len()
            });
            let released = s.from_stdout.len() >= mark + message.len();
            let (after, cause) = if released {
                (
                    " It appeared only after the grader typed a line on stdin.",
                    "the program sleeps in a blocking read of stdin and looks at the socket only after it: put stdin AND the socket in select's read set and sleep in select",
                )
            } else if !message.ends_with(b"\n") {
                (
                    "",
                    "this message has no newline: flush stdout after each write (Rust's stdout and C's stdio buffer until a newline)",
                )
            } else {
                (
                    "",
                    "the socket is not in select's read set while stdin is idle, or what is read is not written to stdout",
                )
            };
            return Err(Failure::new(format!(
                "with stdin idle, the server sent {}; after 1 s stdout had {}.{asleep}{after}",
                quote(message),
                if got.is_empty() {
                    "nothing".to_string()
                } else {
                    quote(&got)
                }
            ))
            .expected("the message on stdout at once, while the user types nothing (within 200 ms)")
            .cause(cause)
            .into());
        }
        if got != message {
            return Err(Failure::new(format!(
                "the server sent {}; stdout showed {}",
                quote(message),
                quote(&got)
            ))
            .expected("the bytes unchanged")
            .into());
        }
        latencies.push(latency);
        s.pump_for(Duration::from_millis(100));
    }
    let worst = latencies.iter().max().copied().unwrap_or_default();
    ctx.note(format!(
        "latencies: {:?}",
        latencies.iter().map(|l| l.as_millis()).collect::<Vec<_>>()
    ));
    ensure(worst <= PROMPT_LATENCY, || {
        Failure::new(format!(
            "with stdin idle, a message from the server took {} ms to appear on stdout",
            worst.as_millis()
        ))
        .expected("within 200 ms")
        .cause("the program wakes up on a timer instead of when the socket is readable: select with no timeout (None) and the socket in the read set")
    })
}

/// What full_duplex expects upstream, and the usual cause when bytes are
/// missing. The same words whether the dropped bytes were in the middle
/// (seen as altered data) or at the end (seen as a short stream): which one
/// a program hits depends on timing, the lesson does not.
const EVERY_BYTE_TYPED: &str = "every byte typed reaches the server, unchanged, in order";
const PARTIAL_WRITE_IGNORED: &str = "a partial write ignored: on a non-blocking socket write() may take only part of the bytes (or fail with EAGAIN when the socket is full) and returns how many it took; keep the rest in a buffer and write it when select says the socket is writable again";

pub const FULL_DUPLEX: Check = Check {
    name: "full_duplex",
    points: 20,
    title: "the server sends 16 MiB before reading anything while 16 MiB are fed on stdin: everything arrives both ways, byte for byte, without a deadlock",
    limit: secs(40),
    run: full_duplex,
    proven_by: &[
        broken("broken_select_telnet_blocking_writes", "deadlock"),
        broken(
            "broken_select_telnet_ignore_partial_writes",
            "partial write",
        ),
    ],
};

fn full_duplex(ctx: &Ctx) -> Outcome {
    // The server talks first and reads only once it has said everything;
    // meanwhile the user types as much. The grader's socket buffers are
    // 64 KiB, but the program's side autotunes (its receive buffer can grow
    // to several MiB here): 16 MiB each way, so that a program that stops
    // reading the socket while it writes really gets stuck.
    let mut s = Session::start(ctx)?;
    let typed = pattern(DUPLEX_BYTES, "stdin");
    let spoken = pattern(DUPLEX_BYTES, "server");
    s.peer_reads = PeerReads::AfterSending;
    s.type_in(&typed);
    s.send(&spoken);
    let stop = s.pump(Duration::from_secs(20), STALL, |s| {
        (s.from_peer.len() >= typed.len() || s.peer_done())
            && (s.from_stdout.len() >= spoken.len() || s.stdout_eof)
    });
    s.pump_for(Duration::from_millis(100));
    let up_ok = s.from_peer == typed;
    let down_ok = s.from_stdout == spoken;
    if up_ok && down_ok {
        return Ok(());
    }
    let mut counts = format!(
        "the server sent {} of {} (it reads nothing before it has sent everything) and received {} of {}; \
         stdin took {} of {}, stdout gave {} of {}",
        bytes(s.peer_sent),
        bytes(spoken.len()),
        bytes(s.from_peer.len()),
        bytes(typed.len()),
        bytes(s.stdin_written),
        bytes(typed.len()),
        bytes(s.from_stdout.len()),
        bytes(spoken.len()),
    );
    if let Some(err) = &s.stdin_error {
        counts += &format!(" (writing to its stdin failed: {err})");
    }
    // Lost or altered bytes, seen in what did arrive.
    let up_prefix = &typed[..s.from_peer.len().min(typed.len())];
    if s.from_peer.len() > typed.len() || s.from_peer != up_prefix {
        let diff = first_difference(&typed, &s.from_peer).unwrap_or_default();
        return Err(Failure::new(format!(
            "the bytes typed on stdin reached the server altered: {diff}. ({counts})"
        ))
        .expected(EVERY_BYTE_TYPED)
        .cause(if s.from_peer.len() > typed.len() {
            "bytes were added: copy stdin to the socket unchanged (no CRLF or UTF-8 translation)"
        } else {
            PARTIAL_WRITE_IGNORED
        })
        .into());
    }
    let down_prefix = &spoken[..s.from_stdout.len().min(spoken.len())];
    if s.from_stdout.len() > spoken.len() || s.from_stdout != down_prefix {
        let diff = first_difference(&spoken, &s.from_stdout).unwrap_or_default();
        return Err(Failure::new(format!(
            "the server's bytes reached stdout altered: {diff}. ({counts})"
        ))
        .expected("every byte the server sent, unchanged, in order")
        .cause("a partial write to stdout, or a lost buffer: write everything read from the socket")
        .into());
    }
    if s.program.exit_status().is_some() {
        return Err(Failure::new(format!(
            "the program ended before the exchange was complete: {counts}"
        ))
        .expected("both directions copied completely; the program runs until the server closes")
        .into());
    }
    let asleep = s.asleep_in();
    if s.from_peer == typed && s.from_stdout.len() < spoken.len() && stop == Stop::Stalled {
        return Err(Failure::new(format!(
            "the last {} the server sent never reached stdout ({counts}).{asleep}",
            bytes(spoken.len() - s.from_stdout.len())
        ))
        .expected("every byte on stdout as soon as it is read from the socket")
        .cause("stdout is buffered: flush it after each write (the end of the data has no newline)")
        .into());
    }
    if s.stdin_written == typed.len() && s.peer_flushed() && s.from_peer.len() < typed.len() {
        return Err(Failure::new(format!(
            "bytes lost: the program took all {} from stdin, but once the server was reading it received only {}, and then nothing for {} s. ({counts}).{asleep}",
            bytes(typed.len()),
            bytes(s.from_peer.len()),
            STALL.as_secs()
        ))
        .expected(EVERY_BYTE_TYPED)
        .cause(PARTIAL_WRITE_IGNORED)
        .into());
    }
    let how = match stop {
        Stop::Stalled => format!("nothing moved for {} s", STALL.as_secs()),
        _ => "the time ran out".to_string(),
    };
    Err(Failure::new(format!("deadlock: {how}. {counts}.{asleep}"))
    .expected("both directions at once: while the socket cannot take more, the program keeps reading it and writing stdout, so the server can finish and start reading")
    .cause("a blocking write to the socket (or writing everything read from stdin before reading the socket again): the program waits for the server to read while the server waits for it to read. Make the socket non-blocking, keep unsent bytes in a buffer, put the socket in the write set only while the buffer is not empty, and stop reading stdin while the buffer is full")
    .into())
}

pub const STDIN_EOF: Check = Check {
    name: "stdin_eof",
    points: 12,
    title: "at stdin's end the server sees the half-close (read returns 0), then what the server sends still appears on stdout; when the server closes, the program exits 0",
    limit: secs(40),
    run: stdin_eof,
    proven_by: &[broken(
        "broken_select_telnet_exit_at_stdin_eof",
        "do not exit",
    )],
};

fn stdin_eof(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    let last: &[u8] = b"the last line before the end of input\n";
    s.type_in(last);
    s.end_stdin();
    s.pump(Duration::from_secs(3), Duration::from_secs(3), |s| {
        s.peer_done()
    });
    // A program that exits closes its socket too: the server's end of file
    // may be that. Give a quick exit the time to be seen.
    if let Some(status) = s.program.wait_exit(Duration::from_millis(150)) {
        let got = s.from_peer.clone();
        let ending = s.program.describe_exit(status);
        return Err(Failure::new(format!(
            "stdin got {} then ended (the grader closed it); the server received {}, and {ending}",
            quote(last),
            quote(&got)
        ))
        .expected("the line, then end of file (the half-close), and the program still running: the server may still answer")
        .cause("at stdin's end, do not exit: send what is buffered, shut down the writing half (shutdown(Shutdown::Write)) and keep copying the socket to stdout until the peer closes")
        .into());
    }
    if !s.peer_done() {
        let got = s.from_peer.clone();
        let asleep = s.asleep_in();
        return Err(Failure::new(format!(
            "stdin got {} then ended (the grader closed it); in 3 s the server received {} but no end of file.{asleep}",
            quote(last),
            quote(&got)
        ))
        .expected("the line, then end of file (read returns 0): the program shuts down its writing half")
        .cause("at stdin's end (read returns 0), call socket.shutdown(Shutdown::Write) once the buffer is sent, and take stdin out of the read set")
        .into());
    }
    if let Some(text) = mismatch("stdin to the server", last, &s.from_peer) {
        return Err(Failure::new(text)
            .expected(format!("exactly {}, then end of file", quote(last)))
            .into());
    }
    let eof_at = s.stdin_closed_at.unwrap_or_else(Instant::now);
    // The half-close ends only the program's side: the server still talks.
    let tail = pattern(256 * 1024, "after your end of input");
    s.send(&tail);
    s.pump(Duration::from_secs(5), STALL, |s| {
        s.from_stdout.len() >= tail.len() || s.stdout_eof
    });
    s.pump_for(Duration::from_millis(50));
    if s.from_stdout != tail {
        let exited = s.program.exit_status();
        let got = s.from_stdout.len();
        let summary = match exited {
            Some(_) => format!(
                "after stdin ended the server sent {} more; only {} reached stdout before the program ended",
                bytes(tail.len()),
                bytes(got)
            ),
            None => format!(
                "after stdin ended the server sent {} more; {} reached stdout{}",
                bytes(tail.len()),
                bytes(got),
                first_difference(&tail, &s.from_stdout)
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
        };
        return Err(Failure::new(summary)
            .expected("every byte on stdout: stdin's end only closes the program's sending side")
            .cause("at stdin's end, shut down the writing half and keep copying the socket to stdout until the peer closes; do not exit (or close the socket) yet")
            .into());
    }
    s.close_peer(false);
    let status = s.await_exit(Duration::from_secs(3));
    let stderr = s.program.stderr_tail();
    ctx.note(format!(
        "stdin closed {} ms before the server did",
        eof_at.elapsed().as_millis()
    ));
    expect_closed_exit(
        &mut s,
        status,
        &stderr,
        "after stdin had ended, the server closed the connection",
    )
}

/// Exit 0 and the closing message, after the peer closed.
fn expect_closed_exit(
    s: &mut Session,
    status: Option<ExitStatus>,
    stderr: &str,
    situation: &str,
) -> Outcome {
    let Some(status) = status else {
        let asleep = s.asleep_in();
        return Err(Failure::new(format!(
            "{situation}; 3 s later the program was still running.{asleep}"
        ))
        .expected(format!("`{CLOSED_MESSAGE}` on stderr and exit 0 at once"))
        .cause("a read of 0 bytes from the socket means the peer closed: print the message and exit(0)")
        .into());
    };
    if status.code() != Some(0) {
        let ending = s.program.describe_exit(status);
        return Err(Failure::new(format!("{situation}; {ending}"))
            .expected(format!("`{CLOSED_MESSAGE}` on stderr and exit code 0"))
            .cause(if status.signal() == Some(Signal::SIGPIPE as i32) {
                "it wrote to the closed connection and SIGPIPE killed it: ignore SIGPIPE (Rust does by default) and treat EPIPE/ECONNRESET as the peer closing"
            } else {
                "a connection closed or reset by the peer is the normal end of a session, not an error: exit 0"
            })
            .into());
    }
    ensure(stderr.contains(CLOSED_MESSAGE), || {
        Failure::new(format!(
            "{situation}; the program exited 0 but its stderr has no `{CLOSED_MESSAGE}`: {}",
            if stderr.is_empty() {
                "(empty)".to_string()
            } else {
                quote(stderr.as_bytes())
            }
        ))
        .expected(format!("`{CLOSED_MESSAGE}` on stderr"))
    })
}

pub const EXIT_CODES: Check = Check {
    name: "exit_codes",
    points: 10,
    title: "the server closes first: its last line on stdout, `Connection closed by foreign host.` on stderr, exit 0; bad arguments: exit 2; connection refused: `select_telnet: connect to HOST:PORT: REASON`, exit 1",
    limit: secs(40),
    run: exit_codes,
    proven_by: &[broken(
        "broken_select_telnet_unwraps",
        "exited with code 101",
    )],
};

fn exit_codes(ctx: &Ctx) -> Outcome {
    // 1. The server says goodbye and closes, while the user types nothing.
    let mut s = Session::start(ctx)?;
    s.pump_for(Duration::from_millis(200));
    let goodbye: &[u8] = b"the server says goodbye\n";
    s.send(goodbye);
    s.pump(Duration::from_secs(2), STALL, |s| s.peer_flushed());
    s.close_peer(false);
    let status = s.await_exit(Duration::from_secs(3));
    let stderr = s.program.stderr_tail();
    if !s.from_stdout.starts_with(goodbye) {
        return Err(Failure::new(format!(
            "the server sent {} and closed; stdout had {}",
            quote(goodbye),
            if s.from_stdout.is_empty() {
                "nothing".to_string()
            } else {
                quote(&s.from_stdout)
            }
        ))
        .expected("the line on stdout, then the closing message and exit 0")
        .into());
    }
    expect_closed_exit(
        &mut s,
        status,
        &stderr,
        "the server sent a line and closed, with stdin idle",
    )?;
    drop(s);

    // 2. Usage errors.
    for args in [
        vec![],
        vec!["127.0.0.1"],
        vec!["127.0.0.1", "not-a-port"],
        vec!["127.0.0.1", "80", "extra"],
    ] {
        let shown = format!("{} {}", ctx.lab.name, args.join(" "))
            .trim_end()
            .to_string();
        let mut program = ctx.spawn(SpawnOptions {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..SpawnOptions::default()
        })?;
        let Some(status) = program.wait_exit(Duration::from_secs(5)) else {
            return Err(
                Failure::new(format!("`{shown}` was still running after 5 s"))
                    .expected("a usage message on stderr and exit code 2")
                    .into(),
            );
        };
        if status.code() != Some(2) {
            return Err(Failure::new(format!("`{shown}`: {}", program.describe_exit(status)))
                .expected("a usage message on stderr and exit code 2 (usage error)")
                .cause("check the number of arguments and that PORT is a number before connecting; exit(2) with a usage line")
                .into());
        }
    }

    // 3. Nobody listens: a port that is bound but not listening refuses.
    let closed =
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(grader_error)?;
    closed
        .bind(&SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .map_err(grader_error)?;
    let port = closed
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .ok_or_else(|| grader_error("no local address"))?;
    let shown = format!("{} 127.0.0.1 {port}", ctx.lab.name);
    let mut program = ctx.spawn(SpawnOptions {
        args: vec!["127.0.0.1".into(), port.to_string()],
        ..SpawnOptions::default()
    })?;
    let Some(status) = program.wait_exit(Duration::from_secs(5)) else {
        return Err(Failure::new(format!(
            "`{shown}` (nothing listens there) was still running after 5 s"
        ))
        .expected("exit code 1 at once: the connection is refused")
        .into());
    };
    let stderr = program.stderr_tail();
    let wanted = format!("connect to 127.0.0.1:{port}: ");
    let line_ok = stderr.lines().any(|l| {
        l.split_once(&wanted)
            .is_some_and(|(_, reason)| !reason.trim().is_empty())
    });
    if status.code() != Some(1) || !line_ok {
        return Err(Failure::new(format!(
            "`{shown}` (nothing listens there): {}",
            program.describe_exit(status)
        ))
        .expected(format!(
            "one line `{}: {wanted}REASON` on stderr (e.g. Connection refused) and exit code 1",
            ctx.lab.name
        ))
        .cause("report a failed connect with the address and the reason and exit(1), no panic (`.unwrap()` on connect exits 101 with a backtrace hint)")
        .into());
    }
    Ok(())
}

pub const PEER_RESET: Check = Check {
    name: "peer_reset",
    points: 6,
    title: "the server resets the connection while input is waiting on stdin: `Connection closed by foreign host.`, exit 0, no death by SIGPIPE",
    limit: secs(40),
    run: peer_reset,
    proven_by: &[broken(
        "broken_select_telnet_reset_is_error",
        "not an error",
    )],
};

fn peer_reset(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    let hello: &[u8] = b"hello before the reset\n";
    s.type_in(hello);
    let got = s.await_peer(0, hello.len(), Duration::from_secs(3));
    ensure(got == hello, || {
        Failure::new(format!(
            "typed {}; the server received {}",
            quote(hello),
            quote(&got)
        ))
        .expected("the line unchanged")
    })?;
    // While the program cannot run: input waits on stdin, and the server
    // resets the connection. When it runs again, both are ready at once.
    s.program.signal(Signal::SIGSTOP);
    s.type_in(&pattern(16 * 1024, "typed while the server resets"));
    s.pump(Duration::from_millis(300), STALL, |s| s.stdin_flushed());
    s.close_peer(true);
    std::thread::sleep(Duration::from_millis(50));
    s.program.signal(Signal::SIGCONT);
    let status = s.await_exit(Duration::from_secs(3));
    let stderr = s.program.stderr_tail();
    expect_closed_exit(
        &mut s,
        status,
        &stderr,
        "the server reset the connection (RST) while input waited on stdin",
    )
}

/// Samples where the program sleeps: (syscall numbers seen, running count,
/// most threads seen).
fn sample(pid: i32, n: usize) -> (Vec<u64>, usize, usize) {
    let mut blocked = Vec::new();
    let mut running = 0;
    let mut threads = 0;
    for _ in 0..n {
        match proc::syscall(pid) {
            Some(SyscallState::Blocked(number)) => blocked.push(number),
            Some(SyscallState::Running) => running += 1,
            None => {}
        }
        threads = threads.max(proc::threads(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    (blocked, running, threads)
}

pub const IDLE: Check = Check {
    name: "idle",
    points: 12,
    title: "with nothing to do the program sleeps in select or pselect6, has one thread, a non-blocking socket and uses almost no CPU, also after stdin has ended",
    limit: secs(40),
    run: idle,
    proven_by: &[
        broken("broken_select_telnet_zero_timeout", "busy-waiting"),
        broken(
            "broken_select_telnet_stdin_stays_in_set",
            "stdin stays in the read set",
        ),
        broken("broken_select_telnet_uses_poll", "poll (7)"),
    ],
};

fn idle(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    let pid = s.pid();
    let hello: &[u8] = b"hello, then silence\n";
    s.type_in(hello);
    s.await_peer(0, hello.len(), Duration::from_secs(2));
    s.pump_for(Duration::from_millis(300));

    // 1. Connected, stdin open, nobody says anything.
    let before = proc::cpu_time(pid);
    let (blocked, running, threads) = sample(pid, 25);
    std::thread::sleep(Duration::from_millis(500));
    let after = proc::cpu_time(pid);
    let socket_fds: Vec<i32> = proc::fd_targets(pid)
        .into_iter()
        .filter(|(_, t)| t.starts_with("socket:"))
        .map(|(fd, _)| fd)
        .collect();
    let blocking_sockets: Vec<i32> = socket_fds
        .iter()
        .copied()
        .filter(|&fd| proc::fd_flags(pid, fd).is_some_and(|f| f & proc::O_NONBLOCK == 0))
        .collect();
    s.program
        .check_alive()
        .map_err(|e| Failure::new(format!("the program stopped while idle: {e}")))?;
    let used = after.zip(before).map(|(a, b)| a.saturating_sub(b));
    ctx.note(format!(
        "idle: cpu {used:?}, asleep in {} of 25 samples ({}), running {running}, threads {threads}",
        blocked.len(),
        blocked
            .first()
            .map(|n| syscall_name(*n))
            .unwrap_or_default()
    ));
    if let Some(used) = used {
        ensure(used < Duration::from_millis(100), || {
            Failure::new(format!(
                "connected, with stdin and the server silent, the program used {:.2} s of CPU in 1 s",
                used.as_secs_f64()
            ))
            .expected("almost none (under 0.1 s): with nothing to do it sleeps in select")
            .cause("busy-waiting: select called with a zero (or tiny) timeout in a loop, or the socket always in the write set (an idle socket is always writable); pass no timeout (None) and ask for writability only while bytes wait")
        })?;
    }
    ensure(threads <= 1, || {
        Failure::new(format!("the program has {threads} threads"))
            .expected("one thread: select lets one thread wait for stdin and the socket at once")
            .cause("a thread per direction is what this lab replaces with select")
    })?;
    let idle_calls = ctx.lab.idle.syscalls;
    if let Some(&other) = blocked.iter().find(|n| !idle_calls.contains(n)) {
        return Err(Failure::new(format!(
            "idle, the program sleeps in {} (seen in {} of 25 samples of /proc/PID/syscall)",
            syscall_name(other),
            blocked.iter().filter(|&&n| n == other).count()
        ))
        .expected("asleep in select (23) or pselect6 (270)")
        .cause(match other {
            nr::POLL | nr::PPOLL => "this lab is about select: wait with nix::sys::select::select (poll comes in the next lab)",
            nr::READ => "a blocking read of stdin or of the socket: wait in select for both, then read only what is ready",
            _ => "wait for stdin and the socket together in select",
        })
        .into());
    }
    ensure(blocked.len() >= 12, || {
        Failure::new(format!(
            "idle, the program was asleep in select in only {} of 25 samples (running in {running})",
            blocked.len()
        ))
        .expected("asleep in select (23) or pselect6 (270) nearly all the time")
        .cause("busy-waiting: select with a zero timeout in a loop")
    })?;
    ensure(blocking_sockets.is_empty(), || {
        Failure::new(format!(
            "the socket (fd {blocking_sockets:?}) is in blocking mode (no O_NONBLOCK in /proc/PID/fdinfo)"
        ))
        .expected("a non-blocking socket (the contract)")
        .cause("select says writable when some room is free, not room for all you hold: a blocking write of the rest can sleep for ever. socket.set_nonblocking(true)")
    })?;

    // 2. stdin has ended; the server still has the connection open.
    s.end_stdin();
    s.pump(Duration::from_secs(2), STALL, |s| s.peer_done());
    s.pump_for(Duration::from_millis(200));
    let before = proc::cpu_time(pid);
    let (blocked, running, _) = sample(pid, 15);
    std::thread::sleep(Duration::from_millis(400));
    let after = proc::cpu_time(pid);
    s.program.check_alive().map_err(|e| {
        Failure::new(format!(
            "stdin ended and the server kept the connection open; the program stopped: {e}"
        ))
        .expected("it keeps waiting for the server, asleep in select")
        .cause("at stdin's end, shut down the writing half and keep reading the socket until the peer closes")
    })?;
    let used = after.zip(before).map(|(a, b)| a.saturating_sub(b));
    ctx.note(format!(
        "after stdin ended: cpu {:?}, asleep {} of 15, running {running}",
        used,
        blocked.len()
    ));
    let busy = used.is_some_and(|u| u >= Duration::from_millis(70)) || blocked.len() < 7;
    ensure(!busy, || {
        Failure::new(format!(
            "after stdin ended (the server silent), the program used {:.2} s of CPU in 0.7 s and was asleep in only {} of 15 samples",
            used.unwrap_or_default().as_secs_f64(),
            blocked.len()
        ))
        .expected("asleep in select, almost no CPU")
        .cause("stdin stays in the read set after its end: at end of file a fd is always readable (read returns 0 again and again); take stdin out of the set once read returns 0")
    })
}

pub const BINARY: Check = Check {
    name: "binary",
    points: 8,
    title: "all 256 byte values (NUL, \\r, 0xff...) pass unchanged both ways",
    limit: secs(40),
    run: binary,
    proven_by: &[broken("broken_select_telnet_lossy", "from_utf8_lossy")],
};

fn binary(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    let mut up: Vec<u8> = (0..=255u8).collect();
    up.extend((0..=255u8).rev());
    up.extend_from_slice(b"\xff\xfd\x18\xff\xfb\x01\r\n\r\0\x04\x03\x1b[0m\n\xef\xbb\xbf");
    up.extend(
        (0..16).flat_map(|k: u8| (0..=255u8).map(move |b| b.wrapping_mul(31).wrapping_add(k))),
    );
    let mut down: Vec<u8> = up.iter().rev().copied().collect();
    down.extend((0..=255u8).collect::<Vec<_>>());
    s.type_in(&up);
    s.send(&down);
    s.pump(Duration::from_secs(3), STALL, |s| {
        (s.from_peer.len() >= up.len() || s.peer_done())
            && (s.from_stdout.len() >= down.len() || s.stdout_eof)
    });
    s.pump_for(Duration::from_millis(150));
    let cause = "copy bytes, not text: no String/UTF-8 conversion (from_utf8_lossy turns bytes >= 0x80 into U+FFFD), no line reading, no CRLF translation";
    if let Some(text) = mismatch(
        "all 256 byte values, stdin to the server",
        &up,
        &s.from_peer,
    ) {
        return Err(Failure::new(text)
            .expected("every byte unchanged")
            .cause(cause)
            .into());
    }
    if let Some(text) = mismatch(
        "all 256 byte values, the server to stdout",
        &down,
        &s.from_stdout,
    ) {
        return Err(Failure::new(text)
            .expected("every byte unchanged")
            .cause(cause)
            .into());
    }
    Ok(())
}

pub const STDOUT_CLOSED: Check = Check {
    name: "stdout_closed",
    points: 8,
    title: "stdout's reader goes away and the server sends a line: the program reports the error and exits 1, it is not killed by SIGPIPE",
    limit: secs(40),
    run: stdout_closed,
    proven_by: &[broken("broken_select_telnet_sigpipe_default", "SIGPIPE")],
};

fn stdout_closed(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    let hello: &[u8] = b"still there?\n";
    s.send(hello);
    let got = s.await_stdout(0, hello.len(), Duration::from_secs(3));
    ensure(got == hello, || {
        Failure::new(format!(
            "the server sent {}; stdout showed {}",
            quote(hello),
            quote(&got)
        ))
        .expected("the line unchanged")
    })?;
    // The reader of stdout goes away (like `select_telnet ... | head -1`).
    s.stdout = None;
    for i in 0..10 {
        s.send(format!("line {i} for a reader that is gone\n").as_bytes());
        s.pump_for(Duration::from_millis(20));
    }
    let status = s.await_exit(Duration::from_secs(3));
    let Some(status) = status else {
        let asleep = s.asleep_in();
        return Err(Failure::new(format!(
            "stdout's reader went away and the server sent 10 lines; 3 s later the program was still running.{asleep}"
        ))
        .expected("write() to stdout fails with EPIPE: one line on stderr, exit code 1")
        .cause("an error writing stdout is fatal: report it and exit(1), do not ignore it")
        .into());
    };
    let ending = s.program.describe_exit(status);
    if status.signal() == Some(Signal::SIGPIPE as i32) {
        return Err(Failure::new(format!(
            "stdout's reader went away and the server sent a line: {ending}"
        ))
        .expected("write() to stdout fails with EPIPE: one line on stderr, exit code 1")
        .cause("SIGPIPE killed it: keep SIGPIPE ignored (Rust's default; C and some runtimes must set SIG_IGN) and handle EPIPE as an error")
        .into());
    }
    ensure(status.code() == Some(1), || {
        Failure::new(format!(
            "stdout's reader went away and the server sent a line: {ending}"
        ))
        .expected("write() to stdout fails with EPIPE: one line on stderr, exit code 1")
        .cause(if status.code() == Some(101) {
            "a panic: println!/print! panic when stdout is closed; write with write_all and handle the error"
        } else {
            "a failed write to stdout is a fatal error: one line on stderr and exit(1)"
        })
    })
}
