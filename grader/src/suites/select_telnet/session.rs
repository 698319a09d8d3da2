//! The suite's harness: a [`Session`] starts the program against a listener
//! the grader runs (small kernel buffers), holds our ends of its stdin and
//! stdout pipes and the server's socket, and pumps bytes both ways with
//! deadlines; plus the test data and the failure text shared by the checks.

use crate::check::{Ctx, Failure, Verdict, grader_error};
// The kernel buffers of the grader's server socket: small, so that a client
// that stops reading the socket makes the server's writes block for real.
use crate::harness::client::SMALL_BUFFER;
use crate::harness::proc::{nr, syscall_name};
use crate::harness::process::{Program, SpawnOptions};
use crate::harness::text::{bytes, first_difference};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// No byte moved for this long: the program is stuck.
pub(super) const STALL: Duration = Duration::from_secs(2);

/// How the server reads its socket.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerReads {
    Always,
    /// Only once everything queued for the client has been sent: a peer that
    /// talks first and listens after.
    AfterSending,
}

/// Why `pump` returned.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stop {
    Done,
    Stalled,
    Deadline,
}

pub(super) struct Session {
    pub(super) program: Program,
    /// Our end of the program's stdin; `None` once closed.
    stdin: Option<OwnedFd>,
    /// Our end of the program's stdout; `None` once closed.
    pub(super) stdout: Option<OwnedFd>,
    /// The server's side of the connection.
    peer: Option<Socket>,
    to_stdin: Vec<u8>,
    pub(super) stdin_written: usize,
    /// Close stdin once everything queued is written.
    close_stdin: bool,
    pub(super) stdin_closed_at: Option<Instant>,
    pub(super) stdin_error: Option<String>,
    to_peer: Vec<u8>,
    pub(super) peer_sent: usize,
    pub(super) peer_reads: PeerReads,
    pub(super) from_stdout: Vec<u8>,
    pub(super) stdout_eof: bool,
    pub(super) from_peer: Vec<u8>,
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
    pub(super) fn start(ctx: &Ctx) -> Result<Session, Verdict> {
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

    pub(super) fn pid(&self) -> i32 {
        self.program.pid
    }

    /// Queues bytes for the program's stdin (the user types them).
    pub(super) fn type_in(&mut self, data: &[u8]) {
        self.to_stdin.extend_from_slice(data);
    }

    /// Queues bytes for the server to send.
    pub(super) fn send(&mut self, data: &[u8]) {
        self.to_peer.extend_from_slice(data);
    }

    /// Closes stdin once everything typed so far is written.
    pub(super) fn end_stdin(&mut self) {
        self.close_stdin = true;
    }

    /// Everything typed is written (or can never be: stdin is closed).
    pub(super) fn stdin_flushed(&self) -> bool {
        self.stdin_written == self.to_stdin.len() || self.stdin.is_none()
    }

    pub(super) fn peer_flushed(&self) -> bool {
        self.peer_sent == self.to_peer.len()
    }

    pub(super) fn peer_done(&self) -> bool {
        self.peer_eof || self.peer_error.is_some()
    }

    /// Closes the server's socket: a FIN, or with `reset` a RST.
    pub(super) fn close_peer(&mut self, reset: bool) {
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
    pub(super) fn pump(
        &mut self,
        within: Duration,
        stall: Duration,
        done: impl Fn(&Session) -> bool,
    ) -> Stop {
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
    pub(super) fn pump_for(&mut self, time: Duration) {
        self.pump(time, time + STALL, |_| false);
    }

    /// Waits until the server has received `n` more bytes than `mark` (or the
    /// connection ended), then a little longer to see anything extra.
    pub(super) fn await_peer(&mut self, mark: usize, n: usize, within: Duration) -> Vec<u8> {
        self.pump(within, within, |s| {
            s.from_peer.len() >= mark + n || s.peer_done()
        });
        self.pump_for(Duration::from_millis(100));
        self.from_peer[mark.min(self.from_peer.len())..].to_vec()
    }

    /// Same for the program's stdout.
    pub(super) fn await_stdout(&mut self, mark: usize, n: usize, within: Duration) -> Vec<u8> {
        self.pump(within, within, |s| {
            s.from_stdout.len() >= mark + n || s.stdout_eof
        });
        self.pump_for(Duration::from_millis(100));
        self.from_stdout[mark.min(self.from_stdout.len())..].to_vec()
    }

    /// Waits for the program to exit, keeping its output flowing.
    pub(super) fn await_exit(&mut self, within: Duration) -> Option<ExitStatus> {
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
    pub(super) fn asleep_in(&self) -> String {
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
pub(super) fn pattern(len: usize, tag: &str) -> Vec<u8> {
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
pub(super) fn mismatch(what: &str, expected: &[u8], got: &[u8]) -> Option<String> {
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
