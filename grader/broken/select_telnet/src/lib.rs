//! Deliberately broken telnet-like clients for the `select_telnet` lab.
//!
//! [`run`] is a `select_telnet` client (CONTRACT.md, "select_telnet") written from
//! scratch. With [`Fault::None`] it is correct, and on purpose unlike the reference
//! solution in ways the contract allows: it sleeps in `pselect` (not `select`), reads
//! 4 KiB at a time, keeps at most 16 KiB waiting for the socket, and writes stdout with
//! blocking `write(2)` calls on fd 1. Every other [`Fault`] adds exactly one classic
//! mistake, so that each grader check can be shown to fail on a program that is wrong
//! in just that way. Each fault is a small branch marked `FAULT(<name>)`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::process::exit;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::select::{FdSet, pselect, select};
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::time::TimeVal;

/// Bytes per read, from stdin or the socket.
const CHUNK: usize = 4096;
/// Stop reading stdin while this many bytes wait for the socket.
const HIGH_WATER: usize = 16 * 1024;
const NAME: &str = "select_telnet";

/// The one mistake a client makes; [`Fault::None`] is a correct client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Correct per the contract.
    None,
    /// Reads stdin with a blocking read, and looks at the socket only after
    /// each line typed: a notification waits for the user.
    BlockingStdinFirst,
    /// A blocking socket, and everything read from stdin written with
    /// `write_all` before the socket is read again: deadlocks a peer that
    /// talks while it is spoken to.
    BlockingWrites,
    /// Writes what it reads from stdin to the (non-blocking) socket at once, and
    /// forgets whatever `write` did not take (a partial write, or EAGAIN).
    IgnorePartialWrites,
    /// Exits 0 as soon as stdin ends, without waiting for the peer.
    ExitAtStdinEof,
    /// `select` with a zero timeout, in a loop.
    ZeroTimeout,
    /// Keeps stdin in the read set after its end: select returns at once, for ever.
    StdinStaysInSet,
    /// Sleeps in `poll` instead of `select`.
    UsesPoll,
    /// Sends `\r\n` for every `\n` typed, like real telnet.
    Crlf,
    /// Copies the socket to stdout as text, through `String::from_utf8_lossy`.
    Lossy,
    /// Writes stdout through Rust's line-buffered `Stdout` without flushing.
    NoFlush,
    /// Treats a reset from the peer as an error, on a read or a write of the
    /// socket: exit 1.
    ResetIsError,
    /// Restores the default action of SIGPIPE (as a C program has it).
    SigpipeDefault,
    /// `.unwrap()` on the port and on connect: panics (exit 101).
    Unwraps,
    /// A bad command line exits 1, like a fatal error, instead of 2.
    UsageExitsOne,
}

pub fn run(fault: Fault) -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if fault == Fault::Unwraps {
        // FAULT(Unwraps)
        let port: u16 = args.get(1).unwrap().parse().unwrap();
        let socket = TcpStream::connect((args[0].as_str(), port)).unwrap();
        Client::new(socket, fault).run()
    }
    if fault == Fault::UsageExitsOne && (args.len() != 2 || args[1].parse::<u16>().is_err()) {
        // FAULT(UsageExitsOne): a usage error reported like a fatal error.
        fatal("usage", "expected HOST and PORT");
    }
    if args.len() != 2 {
        usage("expected HOST and PORT");
    }
    let Ok(port) = args[1].parse::<u16>() else {
        usage(&format!("bad port: {}", args[1]));
    };
    let socket = match TcpStream::connect((args[0].as_str(), port)) {
        Ok(socket) => socket,
        Err(err) => {
            eprintln!("{NAME}: connect to {}:{port}: {err}", args[0]);
            exit(1)
        }
    };
    if fault == Fault::SigpipeDefault {
        // FAULT(SigpipeDefault)
        // SAFETY: no other thread exists; SIG_DFL installs no handler code.
        unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.expect("signal");
    }
    if fault == Fault::BlockingStdinFirst {
        blocking_stdin_first(socket)
    }
    Client::new(socket, fault).run()
}

fn usage(message: &str) -> ! {
    eprintln!("{NAME}: {message}\nusage: {NAME} HOST PORT");
    exit(2)
}

fn closed() -> ! {
    eprintln!("Connection closed by foreign host.");
    exit(0)
}

fn fatal(what: &str, err: impl std::fmt::Display) -> ! {
    eprintln!("{NAME}: {what}: {err}");
    exit(1)
}

fn gone(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

/// Writes all of `data` to fd 1 with blocking writes.
fn to_stdout(data: &[u8]) {
    let stdout = std::io::stdout();
    let mut rest = data;
    while !rest.is_empty() {
        match nix::unistd::write(stdout.as_fd(), rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(err) => fatal("write to stdout", err),
        }
    }
}

struct Client {
    socket: TcpStream,
    fault: Fault,
    stdin_open: bool,
    pending: Vec<u8>,
    shut: bool,
}

struct Ready {
    stdin: bool,
    readable: bool,
    writable: bool,
}

impl Client {
    fn new(socket: TcpStream, fault: Fault) -> Client {
        // FAULT(BlockingWrites): the socket stays blocking.
        if fault != Fault::BlockingWrites {
            socket
                .set_nonblocking(true)
                .unwrap_or_else(|e| fatal("fcntl", e));
        }
        Client {
            socket,
            fault,
            stdin_open: true,
            pending: Vec::with_capacity(HIGH_WATER),
            shut: false,
        }
    }

    fn run(mut self) -> ! {
        let stdin = std::io::stdin();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let ready = self.wait(stdin.as_fd());
            if ready.stdin {
                self.read_stdin(stdin.as_fd(), &mut buf);
            }
            if ready.writable {
                self.write_socket();
            }
            if ready.readable {
                self.read_socket(&mut buf);
            }
        }
    }

    fn wait(&self, stdin: BorrowedFd) -> Ready {
        let socket = self.socket.as_fd();
        // FAULT(StdinStaysInSet): stdin is asked for even after its end.
        let want_stdin = (self.stdin_open || self.fault == Fault::StdinStaysInSet)
            && self.pending.len() < HIGH_WATER;
        let want_write = !self.pending.is_empty();
        loop {
            if self.fault == Fault::UsesPoll {
                // FAULT(UsesPoll)
                let mut fds = vec![PollFd::new(
                    socket,
                    if want_write {
                        PollFlags::POLLIN | PollFlags::POLLOUT
                    } else {
                        PollFlags::POLLIN
                    },
                )];
                if want_stdin {
                    fds.push(PollFd::new(stdin, PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(err) => fatal("poll", err),
                }
                let has = |i: usize, f: PollFlags| {
                    fds.get(i)
                        .and_then(|p| p.revents())
                        .is_some_and(|r| r.intersects(f))
                };
                let any_in = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
                return Ready {
                    stdin: want_stdin && has(1, any_in),
                    readable: has(0, any_in),
                    writable: want_write && has(0, PollFlags::POLLOUT | PollFlags::POLLERR),
                };
            }
            let mut read = FdSet::new();
            let mut write = FdSet::new();
            read.insert(socket);
            if want_stdin {
                read.insert(stdin);
            }
            if want_write {
                write.insert(socket);
            }
            let result = if self.fault == Fault::ZeroTimeout {
                // FAULT(ZeroTimeout): returns at once, ready or not.
                let mut zero = TimeVal::new(0, 0);
                select(None, &mut read, &mut write, None, &mut zero)
            } else {
                // nfds left to nix: the highest fd in the sets plus one.
                pselect(None, &mut read, &mut write, None, None, None)
            };
            match result {
                Ok(_) => {
                    return Ready {
                        stdin: read.contains(stdin),
                        readable: read.contains(socket),
                        writable: write.contains(socket),
                    };
                }
                Err(Errno::EINTR) => continue,
                Err(err) => fatal("select", err),
            }
        }
    }

    fn read_stdin(&mut self, stdin: BorrowedFd, buf: &mut [u8]) {
        match nix::unistd::read(stdin, buf) {
            Ok(0) => {
                if self.fault == Fault::ExitAtStdinEof {
                    // FAULT(ExitAtStdinEof)
                    exit(0);
                }
                self.stdin_open = false;
                self.maybe_shut();
            }
            Ok(n) => {
                let data = &buf[..n];
                if self.fault == Fault::Crlf {
                    // FAULT(Crlf)
                    for &b in data {
                        if b == b'\n' {
                            self.pending.push(b'\r');
                        }
                        self.pending.push(b);
                    }
                } else {
                    self.pending.extend_from_slice(data);
                }
                if self.fault == Fault::IgnorePartialWrites {
                    // FAULT(IgnorePartialWrites): one write, its count ignored.
                    let _ = self.socket.write(&self.pending);
                    self.pending.clear();
                }
                if self.fault == Fault::BlockingWrites {
                    // FAULT(BlockingWrites): all of it, now, blocking.
                    if let Err(err) = self.socket.write_all(&self.pending) {
                        if gone(err.kind()) {
                            closed();
                        }
                        fatal("write to socket", err);
                    }
                    self.pending.clear();
                }
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(err) => fatal("read from stdin", err),
        }
    }

    fn write_socket(&mut self) {
        match self.socket.write(&self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if self.fault == Fault::ResetIsError => {
                // FAULT(ResetIsError): on whichever call sees the reset first.
                fatal("write to socket", err)
            }
            Err(err) if gone(err.kind()) => closed(),
            Err(err) => fatal("write to socket", err),
        }
        self.maybe_shut();
    }

    fn maybe_shut(&mut self) {
        if !self.stdin_open && !self.shut && self.pending.is_empty() {
            self.shut = true;
            let _ = self.socket.shutdown(Shutdown::Write);
        }
    }

    fn read_socket(&mut self, buf: &mut [u8]) {
        match self.socket.read(buf) {
            Ok(0) => closed(),
            Ok(n) => match self.fault {
                Fault::Lossy => {
                    // FAULT(Lossy)
                    to_stdout(String::from_utf8_lossy(&buf[..n]).as_bytes());
                }
                Fault::NoFlush => {
                    // FAULT(NoFlush): LineWriter keeps what follows the last \n.
                    let _ = std::io::stdout().write_all(&buf[..n]);
                }
                _ => to_stdout(&buf[..n]),
            },
            Err(err) if err.kind() == ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if self.fault == Fault::ResetIsError => {
                // FAULT(ResetIsError)
                fatal("read from socket", err)
            }
            Err(err) if gone(err.kind()) => closed(),
            Err(err) => fatal("read from socket", err),
        }
    }
}

/// FAULT(BlockingStdinFirst): the loop of a client written without select.
/// It reads stdin (sleeping there while the user types nothing), sends what
/// it read, and only then peeks at the socket.
fn blocking_stdin_first(mut socket: TcpStream) -> ! {
    let mut buf = vec![0u8; CHUNK];
    let stdin = std::io::stdin();
    let mut stdin_open = true;
    loop {
        if stdin_open {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) => {
                    stdin_open = false;
                    let _ = socket.shutdown(Shutdown::Write);
                }
                Ok(n) => {
                    if let Err(err) = socket.write_all(&buf[..n]) {
                        if gone(err.kind()) {
                            closed();
                        }
                        fatal("write to socket", err);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(err) => fatal("read from stdin", err),
            }
        }
        // Then whatever the socket has, without waiting (or waiting, once
        // stdin has ended).
        socket
            .set_nonblocking(stdin_open)
            .unwrap_or_else(|e| fatal("fcntl", e));
        loop {
            match socket.read(&mut buf) {
                Ok(0) => closed(),
                Ok(n) => to_stdout(&buf[..n]),
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) if gone(err.kind()) => closed(),
                Err(err) => fatal("read from socket", err),
            }
        }
    }
}
