//! Deliberately broken servers for the `timeouts` lab.
//!
//! [`run`] is one single-threaded, level-triggered `epoll(7)` line echo server with idle
//! timeouts and a periodic tick, written to `CONTRACT.md` ("Echo servers" and "timeouts,
//! in addition") apart from the reference solution. With [`Fault::None`] it is correct;
//! every other [`Fault`] adds exactly one classic timer mistake, so that each grader check
//! of the lab can be shown to fail on a program that is wrong in just that way.
//!
//! It differs from the reference solution in ways the contract allows: it waits with
//! `epoll_pwait` (through libc), asks for at most 64 events per call, reads into a 16 KiB
//! buffer, keeps its idle deadlines in a sorted map (`BTreeMap`) that is updated eagerly on
//! every activity instead of a lazily refreshed heap, and starts its tick cadence before
//! it prints `listening on`.
//!
//! Every fault is a small branch marked `FAULT(<name>)` in the code.

use broken_common::{
    BYE, Flag, MAX_LINE, Next, PORT, Phase, TOO_LONG, announce, flags_or_exit, listen_or_exit,
    program_name, raise_nofile_limit,
};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::net::{Ipv4Addr, Shutdown};
use std::os::fd::AsRawFd;
use std::process;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use socket2::Socket;

const READ_BUF: usize = 16 * 1024;
const MAX_EVENTS: usize = 64;
const LISTENER: u64 = u64::MAX;
/// FAULT(LateClose): how often idle connections are looked for.
const IDLE_SCAN: Duration = Duration::from_secs(1);

/// The one mistake a server makes; [`Fault::None`] is a correct server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Correct per the contract.
    None,
    /// `epoll_wait` with a fixed timeout of `ms` (5 ms, or a slower 150 ms); every wakeup
    /// scans every connection for idleness and looks at the clock for the tick.
    FixedTick { ms: u64 },
    /// The tick and the idle check run only when the wait returns 0 (timed out): under
    /// constant traffic it never does, and ticks starve.
    TimersOnlyOnTimeout,
    /// The idle deadline is set at accept and never refreshed on activity: active
    /// connections are closed N ms after they connected.
    NotRefreshed,
    /// Idle connections are looked for once a second (a coarse periodic scan), so closes
    /// come up to 1 s late.
    LateClose,
    /// After a stall, every missed tick is printed at once (catching up in a burst)
    /// instead of skipping the missed periods.
    TickBurst,
    /// The wait's timeout is computed from the *latest* idle deadline instead of the
    /// earliest: with staggered deadlines, the early ones are closed late.
    LatestDeadline,
    /// The idle deadline restarts only when a read ends a line: a line that trickles in a
    /// byte at a time is closed as idle.
    IdlePerLine,
    /// `BYE idle` is queued like a reply and the connection closed once it is all sent: a
    /// client that floods the server and never reads is never closed.
    WaitsForBye,
}

struct Config {
    port: u16,
    idle: Duration,
    tick: Duration,
}

/// Runs the server with `fault`, exiting 2 on a usage error and 1 on a fatal error.
pub fn run(fault: Fault) -> ! {
    let prog = program_name("broken_timeouts");
    let config = config_or_exit(&prog);
    raise_nofile_limit();
    let (listener, port) = listen_or_exit(&prog, Ipv4Addr::LOCALHOST, config.port, true);
    let server = match Server::new(prog.clone(), listener, config, fault) {
        Ok(server) => server,
        Err(msg) => {
            eprintln!("{prog}: {msg}");
            process::exit(1);
        }
    };
    announce(port);
    server.run()
}

/// The command line, or the usage message and exit status 2. A timeout of 0
/// is taken as 1 ms.
fn config_or_exit(prog: &str) -> Config {
    let flags = [
        PORT,
        Flag {
            name: "--idle-timeout-ms",
            min: 0,
            max: 1 << 40,
        },
        Flag {
            name: "--tick-ms",
            min: 0,
            max: 1 << 40,
        },
    ];
    let values = flags_or_exit(prog, USAGE, &flags);
    let millis =
        |value: Option<u64>, default| Duration::from_millis(value.unwrap_or(default).max(1));
    Config {
        port: values[0].unwrap_or(0) as u16,
        idle: millis(values[1], 10_000),
        tick: millis(values[2], 1_000),
    }
}

const USAGE: &str = "[--port PORT] [--idle-timeout-ms N] [--tick-ms T]";

struct Conn {
    sock: Socket,
    line: Vec<u8>,
    out: VecDeque<u8>,
    phase: Phase,
    peer_eof: bool,
    registered: EpollFlags,
    /// When the idle deadline of this connection falls: its key in the deadline map.
    deadline: Instant,
    /// Set when a byte moved during the current serve.
    active: bool,
    /// FAULT(IdlePerLine): only a read that ends a line counts as activity.
    idle_per_line: bool,
    /// FAULT(WaitsForBye): `BYE idle` is queued; the connection closes once it is sent.
    bye_queued: bool,
}

impl Conn {
    fn wants_read(&self) -> bool {
        self.phase.wants_read(self.out.len(), self.peer_eof)
    }

    fn interest(&self) -> EpollFlags {
        let mut want = EpollFlags::empty();
        want.set(EpollFlags::EPOLLIN, self.wants_read());
        want.set(EpollFlags::EPOLLOUT, !self.out.is_empty());
        want
    }

    /// One read; `Close` when the connection is over.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<Next> {
        let n = match nix::unistd::read(&self.sock, buf) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(Next::Keep),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            self.peer_eof = true;
            return Ok(match self.phase {
                Phase::Open => {
                    self.out.extend(self.line.drain(..));
                    self.phase = Phase::Closing;
                    Next::Keep
                }
                Phase::Lingering => Next::Close,
                Phase::Ending | Phase::Closing => Next::Keep,
            });
        }
        // Bytes discarded while lingering count as activity too.
        // FAULT(IdlePerLine): a read of an open connection counts only if it ends a line.
        let ends_line = buf[..n].contains(&b'\n');
        self.active |= !self.idle_per_line || self.phase != Phase::Open || ends_line;
        if self.phase == Phase::Open {
            self.on_data(&buf[..n]);
        }
        Ok(Next::Keep)
    }

    fn on_data(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.phase == Phase::Open {
            let room = MAX_LINE - self.line.len();
            let window = &data[..data.len().min(room)];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                let (rest, after) = data.split_at(i + 1);
                self.line.extend_from_slice(rest);
                let text = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                if text == b"quit" {
                    self.phase = Phase::Ending;
                } else {
                    self.out.extend(self.line.iter());
                }
                self.line.clear();
                data = after;
            } else if data.len() <= room {
                self.line.extend_from_slice(data);
                return;
            } else {
                self.line.clear();
                self.out.extend(TOO_LONG);
                self.phase = Phase::Ending;
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            let (front, _) = self.out.as_slices();
            match nix::unistd::write(&self.sock, front) {
                Ok(n) => {
                    self.out.drain(..n);
                    self.active = true;
                }
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn serve(&mut self, events: EpollFlags, buf: &mut [u8]) -> io::Result<Next> {
        let input = EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
        if events.intersects(input) && self.wants_read() && self.read_some(buf)? == Next::Close {
            return Ok(Next::Close);
        }
        self.flush()?;
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
}

struct Server {
    prog: String,
    fault: Fault,
    listener: Socket,
    epoll: Epoll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Idle deadlines, earliest first: (deadline, slot). Kept exact: a connection's key
    /// is removed and inserted again whenever it is active.
    deadlines: BTreeMap<(Instant, usize), ()>,
    idle: Duration,
    tick: Duration,
    next_tick: Instant,
    next_scan: Instant,
    buf: Vec<u8>,
    events: Vec<EpollEvent>,
}

impl Server {
    fn new(prog: String, listener: Socket, config: Config, fault: Fault) -> Result<Self, String> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| format!("cannot create an epoll instance: {e}"))?;
        epoll
            .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
            .map_err(|e| format!("cannot register the listener: {e}"))?;
        let now = Instant::now();
        Ok(Server {
            prog,
            fault,
            listener,
            epoll,
            conns: Vec::new(),
            free: Vec::new(),
            deadlines: BTreeMap::new(),
            idle: config.idle,
            tick: config.tick,
            next_tick: now + config.tick,
            next_scan: now + IDLE_SCAN,
            buf: vec![0; READ_BUF],
            events: vec![EpollEvent::empty(); MAX_EVENTS],
        })
    }

    fn run(mut self) -> ! {
        loop {
            let timeout = self.timeout_ms();
            let n = self.wait(timeout);
            for i in 0..n {
                let event = self.events[i];
                if event.data() == LISTENER {
                    self.accept();
                } else {
                    self.serve(event.data() as usize, event.events());
                }
            }
            if self.fault == Fault::TimersOnlyOnTimeout && n > 0 {
                // FAULT(TimersOnlyOnTimeout): timed work only after a wait that timed out.
                continue;
            }
            let now = Instant::now();
            self.expire(now);
            self.tick(now);
        }
    }

    /// Milliseconds until the next thing is due, rounded up.
    fn timeout_ms(&self) -> i32 {
        if let Fault::FixedTick { ms } = self.fault {
            // FAULT(FixedTick): wake every `ms`, whatever is due.
            return ms as i32;
        }
        let idle_due = if self.fault == Fault::LatestDeadline {
            // FAULT(LatestDeadline): the last deadline of the map, not the first.
            self.deadlines.last_key_value().map(|((at, _), ())| *at)
        } else if self.fault == Fault::LateClose {
            // FAULT(LateClose): idle connections are looked for once a second.
            Some(self.next_scan)
        } else {
            self.deadlines.first_key_value().map(|((at, _), ())| *at)
        };
        let due = idle_due.map_or(self.next_tick, |at| at.min(self.next_tick));
        let left = due.saturating_duration_since(Instant::now());
        left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
    }

    fn wait(&mut self, timeout_ms: i32) -> usize {
        // SAFETY: `events` is a valid buffer of MAX_EVENTS entries, and a null signal
        // mask makes epoll_pwait behave as epoll_wait.
        let n = unsafe {
            nix::libc::epoll_pwait(
                self.epoll.0.as_raw_fd(),
                self.events.as_mut_ptr().cast(),
                MAX_EVENTS as i32,
                timeout_ms,
                std::ptr::null(),
            )
        };
        if n >= 0 {
            return n as usize;
        }
        match Errno::last() {
            Errno::EINTR => 0,
            e => {
                eprintln!("{}: epoll_pwait: {e}", self.prog);
                process::exit(1);
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        let open = self.conns.iter().filter(|c| c.is_some()).count();
        let mut stdout = io::stdout().lock();
        if self.fault == Fault::TickBurst {
            // FAULT(TickBurst): one line per period, missed ones included, all at once.
            while self.next_tick <= now {
                let _ = writeln!(stdout, "tick connections={open}");
                self.next_tick += self.tick;
            }
        } else {
            let _ = writeln!(stdout, "tick connections={open}");
            while self.next_tick <= now {
                self.next_tick += self.tick;
            }
        }
        let _ = stdout.flush();
    }

    fn expire(&mut self, now: Instant) {
        if matches!(self.fault, Fault::FixedTick { .. }) {
            // FAULT(FixedTick): a scan of every connection on every wakeup.
            for slot in 0..self.conns.len() {
                if matches!(&self.conns[slot], Some(conn) if conn.deadline <= now) {
                    self.bye(slot);
                }
            }
            return;
        }
        if self.fault == Fault::LateClose {
            if now < self.next_scan {
                return;
            }
            self.next_scan += IDLE_SCAN;
        }
        while let Some((&(at, slot), ())) = self.deadlines.first_key_value() {
            if at > now {
                break;
            }
            self.bye(slot);
        }
    }

    fn bye(&mut self, slot: usize) {
        if self.fault == Fault::WaitsForBye {
            return self.queue_bye(slot);
        }
        if let Some(Some(conn)) = self.conns.get(slot) {
            let _ = nix::unistd::write(&conn.sock, BYE);
        }
        self.close(slot);
    }

    /// FAULT(WaitsForBye): `BYE idle` goes out like a reply, and the connection is closed
    /// only once it is all sent, however long that takes.
    fn queue_bye(&mut self, slot: usize) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        self.deadlines.remove(&(conn.deadline, slot));
        if !conn.bye_queued {
            conn.bye_queued = true;
            conn.out.extend(BYE);
            conn.phase = Phase::Closing;
        }
        self.serve(slot, EpollFlags::empty());
    }

    fn serve(&mut self, slot: usize, events: EpollFlags) {
        let Some(Some(conn)) = self.conns.get_mut(slot) else {
            return;
        };
        conn.active = false;
        let served = conn.serve(events, &mut self.buf);
        if conn.active && self.fault != Fault::NotRefreshed {
            // FAULT(NotRefreshed) skips this: the deadline stays accept + N.
            self.deadlines.remove(&(conn.deadline, slot));
            conn.deadline = Instant::now() + self.idle;
            self.deadlines.insert((conn.deadline, slot), ());
        }
        match served {
            Ok(Next::Keep) => {}
            Ok(Next::Close) | Err(_) => return self.close(slot),
        }
        let want = conn.interest();
        if want != conn.registered {
            let mut event = EpollEvent::new(want, slot as u64);
            if self.epoll.modify(&conn.sock, &mut event).is_err() {
                return self.close(slot);
            }
            conn.registered = want;
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.deadlines.remove(&(conn.deadline, slot));
        let _ = self.epoll.delete(&conn.sock);
        self.free.push(slot);
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => self.add(sock),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    eprintln!("{}: accept: {e}", self.prog);
                    return;
                }
            }
        }
    }

    fn add(&mut self, sock: Socket) {
        if sock.set_nonblocking(true).is_err() {
            return;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let events = EpollFlags::EPOLLIN;
        if self
            .epoll
            .add(&sock, EpollEvent::new(events, slot as u64))
            .is_err()
        {
            self.free.push(slot);
            return;
        }
        let deadline = Instant::now() + self.idle;
        self.deadlines.insert((deadline, slot), ());
        self.conns[slot] = Some(Conn {
            sock,
            line: Vec::new(),
            out: VecDeque::new(),
            phase: Phase::Open,
            peer_eof: false,
            registered: events,
            deadline,
            active: false,
            idle_per_line: self.fault == Fault::IdlePerLine,
            bye_queued: false,
        });
    }
}
