//! Deliberately broken servers for the `async_echo` lab.
//!
//! [`run`] is one line echo server written as one `async fn` per connection
//! on a runtime of its own (`runtime/`: a single-threaded executor and an
//! epoll reactor, no tokio), with idle timeouts, written to `CONTRACT.md`
//! ("Echo servers", the idle rule of "timeouts, in addition", and
//! "async_echo, in addition"). With [`Fault::None`] it is correct; every other
//! [`Fault`] adds exactly one classic mistake of a hand-written runtime, so
//! that each check of the lab can be shown to fail on a program that is wrong
//! in just that way. `on_tokio.rs` is the same protocol on tokio: it is compiled
//! into `broken_async_echo_uses_tokio` only (not a module of this library), so
//! that no other binary contains a line of tokio.
//!
//! It differs from the reference solution in every way the contract allows:
//! a `RawWakerVTable` waker that is the task's id (no `Arc`, no `Wake`), a
//! slab of tasks and a `VecDeque` run queue; level-triggered one-shot epoll
//! re-armed with `EPOLL_CTL_MOD` on every wait, instead of one edge-triggered
//! registration; timers in a `BTreeSet`, moved eagerly whenever a deadline
//! changes; sockets accepted non-blocking with `accept4`; and a connection
//! that reads while its replies are being written (up to the 64 KiB of
//! backpressure) with `writev`, 2 KiB at a time, yielding to the other tasks
//! after a run of work, instead of reading and writing in lockstep.
//!
//! Every fault is a small branch marked `FAULT(<name>)` in the code.

mod runtime;

use broken_common::{
    ACCEPT_PAUSE, BYE, Flag, MAX_LINE, Next, PORT, Phase, TOO_LONG, announce, flags_or_exit,
    is_out_of_fds, is_quit, listen_or_exit, program_name, raise_nofile_limit,
};
use runtime::executor::{self, yield_now};
use runtime::io::{Io, Woke};
use runtime::reactor::{READABLE, WRITABLE};
use runtime::timer::{Timer, sleep};
use socket2::Socket;
use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::net::{Ipv4Addr, Shutdown};
use std::process;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bytes read at a time.
const READ_BUF: usize = 2 * 1024;
/// Rounds of work (a read or a write) a connection does before it lets the
/// other woken tasks run.
const BUDGET: u32 = 32;
/// Connections accepted in a row before the accepting task yields.
const ACCEPT_BUDGET: u32 = 64;
const DEFAULT_IDLE_MS: u64 = 10_000;

/// The one mistake a server makes; [`Fault::None`] is a correct server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Correct per the contract.
    None,
    /// The executor polls every task on each wake-up, not only the woken ones.
    PollsAll,
    /// The executor polls only the woken tasks, but finds them by scanning
    /// every task's "woken" flag on each wake-up instead of keeping a queue.
    ScansAll,
    /// A helper thread sleeps in `epoll_wait` and hands the events to the main
    /// thread over a channel.
    ReactorThread,
    /// The reactor waits with a fixed timeout of `ms` (10 ms, or a slower
    /// 150 ms) and scans every timer on each wake-up, instead of sleeping
    /// until the earliest deadline.
    FixedTick { ms: u64 },
    /// Sockets registered edge-triggered, and a connection reads only once per
    /// wake-up: the next read waits for a new edge without trying first, so
    /// bytes left in the socket wait for ever.
    LostWakeup,
    /// Idle timers keyed by fd and never cancelled when a connection ends: a
    /// closed connection's timer fires on the next one that gets its fd.
    StaleTimer,
    /// An idle connection is closed without `BYE idle`.
    NoBye,
    /// The idle deadline restarts only when a read ends a line: a line that
    /// trickles in a byte at a time is closed as idle.
    IdlePerLine,
    /// `BYE idle` is written in full, waiting for room, before the close: a
    /// client that floods the server and never reads is never closed.
    WaitsForBye,
    /// `--idle-timeout-ms 0` is accepted instead of refused as a usage error.
    ZeroTimeout,
}

static FAULT: OnceLock<Fault> = OnceLock::new();

/// The fault this program runs with.
pub(crate) fn fault() -> Fault {
    FAULT.get().copied().unwrap_or(Fault::None)
}

pub struct Config {
    pub port: u16,
    pub idle: Duration,
}

const USAGE: &str = "[--port PORT] [--idle-timeout-ms N]";

/// The command line, or the usage message and exit status 2.
pub fn config_or_exit(prog: &str) -> Config {
    let idle = Flag {
        name: "--idle-timeout-ms",
        // FAULT(zero_timeout): 0 is accepted (and every connection closed at once).
        min: if fault() == Fault::ZeroTimeout { 0 } else { 1 },
        max: u64::from(u32::MAX),
    };
    let values = flags_or_exit(prog, USAGE, &[PORT, idle]);
    Config {
        port: values[0].unwrap_or(0) as u16,
        idle: Duration::from_millis(values[1].unwrap_or(DEFAULT_IDLE_MS)),
    }
}

/// Runs the server with `fault`, exiting 2 on a usage error and 1 on a fatal
/// error. Never returns.
pub fn run(fault: Fault) -> ! {
    let _ = FAULT.set(fault);
    let prog = program_name("broken_async_echo");
    let config = config_or_exit(&prog);
    raise_nofile_limit();
    let (listener, port) = listen_or_exit(&prog, Ipv4Addr::LOCALHOST, config.port, true);
    let listener = Io::new(listener).unwrap_or_else(|err| {
        eprintln!("{prog}: cannot add the listening socket to epoll: {err}");
        process::exit(1)
    });
    announce(port);
    executor::run(accept_clients(prog, listener, config.idle))
}

/// Accepts connections for ever, a task each.
async fn accept_clients(prog: String, listener: Io, idle: Duration) {
    let mut in_a_row = 0;
    loop {
        match listener.accept() {
            Ok(socket) => {
                executor::spawn(client(socket, idle));
                in_a_row += 1;
                if in_a_row >= ACCEPT_BUDGET {
                    in_a_row = 0;
                    yield_now().await;
                }
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                in_a_row = 0;
                listener.ready(READABLE).await;
            }
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                ) => {}
            // Out of fds: the client waits in the backlog; try again a little
            // later instead of spinning on a listener that stays readable.
            Err(err) if is_out_of_fds(&err) => sleep(ACCEPT_PAUSE).await,
            Err(err) => {
                eprintln!("{prog}: accept: {err}");
                sleep(ACCEPT_PAUSE).await;
            }
        }
    }
}

/// One connection's protocol state: the line being read, the replies not yet
/// sent, where it is in its life, and when a byte last moved.
pub struct Session {
    line: Vec<u8>,
    pub out: VecDeque<u8>,
    pub phase: Phase,
    pub peer_eof: bool,
    pub last_moved: Instant,
}

impl Session {
    /// Timed from accept: a client that never sends is idle too.
    pub fn accepted() -> Session {
        Session {
            line: Vec::new(),
            out: VecDeque::new(),
            phase: Phase::Open,
            peer_eof: false,
            last_moved: Instant::now(),
        }
    }

    pub fn wants_read(&self) -> bool {
        self.phase.wants_read(self.out.len(), self.peer_eof)
    }

    /// `n` reply bytes went out.
    pub fn sent(&mut self, n: usize) {
        self.out.drain(..n);
        self.last_moved = Instant::now();
    }

    /// Bytes read from the client.
    pub fn received(&mut self, mut data: &[u8]) {
        // FAULT(IdlePerLine): a read of an open connection counts only if it ends a line.
        if fault() != Fault::IdlePerLine || self.phase != Phase::Open || data.contains(&b'\n') {
            self.last_moved = Instant::now();
        }
        if self.phase != Phase::Open {
            return; // ending or lingering: discarded
        }
        while !data.is_empty() {
            let Some(end) = data.iter().position(|&b| b == b'\n') else {
                if self.line.len() + data.len() > MAX_LINE {
                    return self.too_long();
                }
                self.line.extend_from_slice(data);
                return;
            };
            let (piece, rest) = data.split_at(end + 1);
            data = rest;
            if self.line.len() + piece.len() > MAX_LINE {
                return self.too_long();
            }
            if is_quit(&self.line, piece) {
                self.line.clear();
                self.phase = Phase::Ending;
                return;
            }
            self.out.extend(self.line.drain(..));
            self.out.extend(piece);
        }
    }

    fn too_long(&mut self) {
        self.line.clear();
        self.out.extend(TOO_LONG);
        self.phase = Phase::Ending;
    }

    /// The client shut down its writing half.
    pub fn received_eof(&mut self) -> Next {
        self.peer_eof = true;
        match self.phase {
            Phase::Open => {
                // The unterminated fragment is echoed as it is.
                self.out.extend(self.line.drain(..));
                self.phase = Phase::Closing;
                Next::Keep
            }
            Phase::Lingering => Next::Close,
            Phase::Ending | Phase::Closing => Next::Keep,
        }
    }
}

/// One connection, from accept to close. Each round writes what it can,
/// moves the phase on, reads if it may, and only when neither call made
/// progress waits for readiness or the idle deadline.
async fn client(socket: Socket, idle: Duration) {
    let Ok(io) = Io::new(socket) else {
        return;
    };
    let mut timer = if fault() == Fault::StaleTimer {
        // FAULT(StaleTimer): keyed by fd, and not cancelled when this ends.
        Timer::keyed_by_fd(io.raw_fd())
    } else {
        Timer::new()
    };
    let mut session = Session::accepted();
    let mut buf = vec![0; READ_BUF];
    // FAULT(LostWakeup) only: the last wake-up said the socket was readable.
    let mut woken_readable = false;
    let mut budget = BUDGET;
    loop {
        if budget == 0 {
            budget = BUDGET;
            yield_now().await;
        }
        let mut progress = false;
        if !session.out.is_empty() {
            let (front, back) = session.out.as_slices();
            match io.write_vectored(&[IoSlice::new(front), IoSlice::new(back)]) {
                Ok(n) => {
                    session.sent(n);
                    progress = true;
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == ErrorKind::Interrupted => progress = true,
                Err(_) => return, // reset or gone: drop this connection only
            }
        }
        if session.out.is_empty() {
            match session.phase {
                Phase::Closing => return,
                Phase::Ending => {
                    if io.socket().shutdown(Shutdown::Write).is_err() || session.peer_eof {
                        return;
                    }
                    session.phase = Phase::Lingering;
                }
                Phase::Open | Phase::Lingering => {}
            }
        }
        let wants_read = session.wants_read();
        // FAULT(LostWakeup): read only when woken readable, once per wake-up.
        let try_read =
            wants_read && (fault() != Fault::LostWakeup || std::mem::take(&mut woken_readable));
        if try_read {
            match io.read(&mut buf) {
                Ok(0) => {
                    if session.received_eof() == Next::Close {
                        return;
                    }
                    progress = true;
                }
                Ok(n) => {
                    session.received(&buf[..n]);
                    progress = true;
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == ErrorKind::Interrupted => progress = true,
                Err(_) => return,
            }
        }
        if progress {
            budget -= 1;
            continue;
        }
        budget = BUDGET;
        let mut want = 0;
        if wants_read {
            want |= READABLE;
        }
        if !session.out.is_empty() {
            want |= WRITABLE;
        }
        let deadline = session.last_moved + idle;
        match io.ready_or_deadline(want, &mut timer, deadline).await {
            Woke::Ready(bits) => woken_readable = bits & READABLE != 0,
            Woke::Deadline if fault() == Fault::WaitsForBye => {
                // FAULT(WaitsForBye): `BYE idle` goes out like a reply, after
                // the replies still waiting, and the connection closes only
                // once all of it is sent: never, if the client does not read.
                // (Written alone, the 9 bytes could slip into the little room
                // left in a send buffer that poll already calls full.)
                session.out.extend(BYE);
                let pending: Vec<u8> = session.out.iter().copied().collect();
                return write_all(&io, &pending).await;
            }
            Woke::Deadline => {
                if fault() != Fault::NoBye {
                    // One attempt, not waited for: an idle client may not read.
                    let _ = io.write_vectored(&[IoSlice::new(BYE)]);
                }
                // FAULT(NoBye) is skipping the line above.
                return;
            }
        }
    }
}

/// FAULT(WaitsForBye): writes all of `data`, waiting for room as long as it
/// takes.
async fn write_all(io: &Io, mut data: &[u8]) {
    while !data.is_empty() {
        match io.write_vectored(&[IoSlice::new(data)]) {
            Ok(n) => data = &data[n..],
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                io.ready(WRITABLE).await;
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(chunks: &[&[u8]]) -> Session {
        let mut session = Session::accepted();
        for chunk in chunks {
            session.received(chunk);
        }
        session
    }

    fn out(session: &Session) -> Vec<u8> {
        session.out.iter().copied().collect()
    }

    #[test]
    fn lines_are_echoed_across_reads() {
        let session = fed(&[b"ab", b"c\nd\r\ne", b"f"]);
        assert_eq!(out(&session), b"abc\nd\r\n");
        assert_eq!(session.phase, Phase::Open);
    }

    #[test]
    fn quit_ends_and_later_lines_are_dropped() {
        let session = fed(&[b"a\nqu", b"it\r\nb\n"]);
        assert_eq!(out(&session), b"a\n");
        assert_eq!(session.phase, Phase::Ending);
    }

    #[test]
    fn the_line_limit_counts_the_newline() {
        let mut longest = vec![b'x'; MAX_LINE - 1];
        longest.push(b'\n');
        assert_eq!(out(&fed(&[&longest])), longest);
        let mut over = vec![b'x'; MAX_LINE];
        over.push(b'\n');
        let session = fed(&[&over[..100], &over[100..]]);
        assert_eq!(out(&session), TOO_LONG);
        let session = fed(&[&over[..MAX_LINE]]);
        assert!(out(&session).is_empty());
        let session = fed(&[&over[..MAX_LINE], b"y"]);
        assert_eq!(out(&session), TOO_LONG);
    }

    #[test]
    fn eof_echoes_the_fragment() {
        let mut session = fed(&[b"a\nfrag"]);
        assert_eq!(session.received_eof(), Next::Keep);
        assert_eq!(out(&session), b"a\nfrag");
        assert_eq!(session.phase, Phase::Closing);
    }
}
