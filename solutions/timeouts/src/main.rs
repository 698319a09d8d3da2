//! timeouts: the level-triggered epoll echo server, plus idle timeouts and a
//! periodic tick, with no timer thread and no fixed short tick.
//!
//! A single-threaded server already has a timer: the timeout argument of the
//! wait. Before each `epoll_wait` we compute when the next thing is due (the
//! next tick, or the earliest idle deadline) and sleep at most until then.
//! After each wait, whatever woke us (sockets, the timeout, a signal), we do
//! the timed work that is due. Ticks therefore keep their cadence under
//! constant traffic too, and an idle server wakes only when something is due.
//!
//! Time is measured with `Instant`, a monotonic clock: wall-clock time can
//! jump (NTP, an administrator), and a deadline must not.

mod deadlines;

use deadlines::{Deadlines, Owner};
use echo_core::epoll::{LISTENER, MAX_EVENTS};
use echo_core::{Connection, READ_CHUNK, Slab};
use labkit::{Args, OrFail};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags, EpollTimeout};
use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

const USAGE: &str = "[--port PORT] [--idle-timeout-ms N] [--tick-ms T]";
const BYE: &[u8] = b"BYE idle\n";

fn main() {
    let config = Config::parse();
    labkit::raise_fd_limit();
    let listener = labkit::bind_loopback(config.port);
    listener
        .set_nonblocking(true)
        .or_fail("cannot make the listening socket non-blocking");
    labkit::announce(&listener);
    Server::new(listener, config).run()
}

struct Config {
    port: u16,
    idle: Duration,
    tick: Duration,
}

impl Config {
    fn parse() -> Config {
        let args = Args::parse(USAGE, &["--port", "--idle-timeout-ms", "--tick-ms"], &[]);
        args.positional(0, 0);
        let idle: u64 = args.value("--idle-timeout-ms", 10_000);
        let tick: u64 = args.value("--tick-ms", 1_000);
        if idle == 0 || tick == 0 {
            labkit::usage_error("--idle-timeout-ms and --tick-ms must be at least 1", USAGE);
        }
        Config {
            port: args.value("--port", 0),
            idle: Duration::from_millis(idle),
            tick: Duration::from_millis(tick),
        }
    }
}

/// A connection, the events it is registered for, and its idle bookkeeping.
struct Client {
    conn: Connection,
    registered: EpollFlags,
    serial: u64,
    /// When a byte last moved on this connection, either way.
    last_active: Instant,
}

struct Server {
    epoll: Epoll,
    listener: TcpListener,
    clients: Slab<Client>,
    scratch: Vec<u8>,
    idle: Duration,
    tick: Duration,
    next_tick: Instant,
    deadlines: Deadlines,
    next_serial: u64,
}

impl Server {
    fn new(listener: TcpListener, config: Config) -> Server {
        Server {
            epoll: echo_core::epoll::with_listener(&listener, EpollFlags::EPOLLIN),
            listener,
            clients: Slab::default(),
            scratch: vec![0; READ_CHUNK],
            idle: config.idle,
            tick: config.tick,
            next_tick: Instant::now() + config.tick,
            deadlines: Deadlines::default(),
            next_serial: 0,
        }
    }

    fn run(mut self) -> ! {
        let mut events = vec![EpollEvent::empty(); MAX_EVENTS];
        loop {
            let timeout = self.timeout(Instant::now());
            let ready = wait(&self.epoll, &mut events, timeout);
            for event in &events[..ready] {
                match event.data() {
                    LISTENER => self.accept_all(),
                    token => self.serve(token as usize, event.events()),
                }
            }
            // Timed work runs after *every* wait, not only when the wait timed
            // out: under constant traffic the wait never times out, and ticks
            // and idle closes would starve.
            let now = Instant::now();
            self.close_idle(now);
            self.maybe_tick(now);
        }
    }

    /// How long the next wait may sleep: until the earliest of the next tick
    /// and the earliest idle deadline. Rounded *up* to whole milliseconds
    /// (epoll_wait's unit): rounding down would wake us just before the
    /// deadline, with nothing to do, and make us spin until it passes.
    fn timeout(&self, now: Instant) -> EpollTimeout {
        let due = match self.deadlines.earliest() {
            Some(deadline) => deadline.min(self.next_tick),
            None => self.next_tick,
        };
        let left = due.saturating_duration_since(now);
        let ms = left.as_nanos().div_ceil(1_000_000);
        EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
    }

    /// Prints the tick if it is due. A period missed entirely (the process
    /// was stopped, or the machine busy) is skipped: one line now, and the
    /// next on the original cadence, not a burst of late ticks.
    fn maybe_tick(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        // A closed stdout is no reason to stop serving: ignore write errors.
        let _ = writeln!(stdout, "tick connections={}", self.clients.len());
        let _ = stdout.flush();
        let late = now.duration_since(self.next_tick);
        let periods = late.as_nanos() / self.tick.as_nanos() + 1;
        self.next_tick += self.tick * periods as u32;
    }

    /// Closes every connection whose deadline has passed and that has stayed
    /// idle; re-files the deadlines of those that were active since.
    fn close_idle(&mut self, now: Instant) {
        while let Some(owner) = self.deadlines.pop_due(now) {
            let Some(client) = self.clients.get_mut(owner.token) else {
                continue; // closed earlier: a stale entry
            };
            if client.serial != owner.serial {
                continue; // the token now belongs to a newer connection
            }
            let due = client.last_active + self.idle;
            if due > now {
                self.deadlines.push(due, owner);
                continue;
            }
            // One attempt, not waited for: a client that does not read it
            // must not keep the connection (and its fd) alive.
            let mut stream = client.conn.stream();
            let _ = stream.write(BYE);
            self.close(owner.token);
        }
    }

    fn accept_all(&mut self) {
        let now = Instant::now();
        let (epoll, clients) = (&self.epoll, &mut self.clients);
        let (deadlines, next_serial, idle) =
            (&mut self.deadlines, &mut self.next_serial, self.idle);
        echo_core::accept_all(&self.listener, |stream| {
            let conn = Connection::new(stream);
            let registered = interest(&conn);
            let serial = *next_serial;
            *next_serial += 1;
            let client = Client {
                conn,
                registered,
                serial,
                last_active: now,
            };
            let token = clients.insert(client);
            let client = clients.get_mut(token).expect("just inserted");
            let event = EpollEvent::new(registered, token as u64);
            if epoll.add(client.conn.stream(), event).is_err() {
                clients.remove(token);
                return;
            }
            // A silent client is timed from its accept.
            deadlines.push(now + idle, Owner { serial, token });
        });
    }

    /// Handles one ready client: one read, then as much writing as fits.
    fn serve(&mut self, token: usize, events: EpollFlags) {
        let Some(client) = self.clients.get_mut(token) else {
            return; // already closed earlier in this batch of events
        };
        let moved_before = client.conn.bytes_moved();
        let readable = EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
        let mut ok = true;
        if events.intersects(readable) && client.conn.wants_read() {
            ok = client.conn.read_once(&mut self.scratch).is_ok();
        }
        if ok && client.conn.wants_write() {
            ok = client.conn.flush().is_ok();
        }
        if client.conn.bytes_moved() != moved_before {
            // O(1): the heap entry is refreshed lazily, when it comes due.
            client.last_active = Instant::now();
        }
        if !ok || client.conn.is_done() {
            self.close(token);
            return;
        }
        self.update_interest(token);
    }

    fn close(&mut self, token: usize) {
        if let Some(client) = self.clients.remove(token) {
            // Closing the socket also removes it from the interest set (it is
            // the last reference to the file); deleting first says so plainly.
            let _ = self.epoll.delete(client.conn.stream());
        }
        // Its deadline stays in the heap and is dropped when it comes due.
    }

    /// EPOLLOUT only while replies are pending, EPOLLIN only below the
    /// backpressure limit; unchanged needs cost no system call.
    fn update_interest(&mut self, token: usize) {
        let Some(client) = self.clients.get_mut(token) else {
            return;
        };
        let wanted = interest(&client.conn);
        if wanted == client.registered {
            return;
        }
        let mut event = EpollEvent::new(wanted, token as u64);
        if self.epoll.modify(client.conn.stream(), &mut event).is_ok() {
            client.registered = wanted;
        }
    }
}

/// Sleeps until a registered socket is ready or `timeout` passes; returns how
/// many entries of `events` were filled (0: the timeout, or a signal).
fn wait(epoll: &Epoll, events: &mut [EpollEvent], timeout: EpollTimeout) -> usize {
    match epoll.wait(events, timeout) {
        Ok(n) => n,
        // Interrupted by a signal: return to the loop, which recomputes the
        // timeout from the clock (the time slept so far is not lost).
        Err(Errno::EINTR) => 0,
        Err(err) => labkit::fail(format_args!("epoll_wait: {err}")),
    }
}

/// The events to wait for on one client (level-triggered: no EPOLLET).
fn interest(conn: &Connection) -> EpollFlags {
    let mut events = EpollFlags::empty();
    if conn.wants_read() {
        events |= EpollFlags::EPOLLIN;
    }
    if conn.wants_write() {
        events |= EpollFlags::EPOLLOUT;
    }
    events
}
