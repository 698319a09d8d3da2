//! timeouts: the level-triggered epoll echo server, plus idle timeouts and a
//! periodic tick, with no extra thread and no fixed short tick.
//!
//! Read the handout first: docs/labs/timeouts.md. Grade your work with
//! `make grade LAB=timeouts`.
//!
//! Given, working: the command line, the listening socket, and a complete
//! level-triggered echo server (the shape of the epoll_lt solution; the
//! protocol is in `conn.rs`). Yours: the deadline bookkeeping, the wait's
//! timeout, closing idle connections and the tick. The TODOs say where.
//! As given, the server panics at its first wait (TODO 3).

mod conn;

use conn::{Connection, READ_CHUNK, Slab};
use labkit::{Args, OrFail};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::net::TcpListener;
use std::time::{Duration, Instant};

const USAGE: &str = "[--port PORT] [--idle-timeout-ms N] [--tick-ms T]";
/// The `data` of the listener's registration; clients use their slab token.
const LISTENER: u64 = u64::MAX;
/// How many ready sockets one `epoll_wait` may return.
const MAX_EVENTS: usize = 1024;

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

/// A connection and the events it is registered for right now.
///
/// TODO 1. Add what you need to know when this connection goes idle (when a
///    byte last moved on it), and, if your deadline structure needs it, a way
///    to recognise this connection in it (tokens are reused after a close).
struct Client {
    conn: Connection,
    registered: EpollFlags,
}

struct Server {
    epoll: Epoll,
    listener: TcpListener,
    clients: Slab<Client>,
    scratch: Vec<u8>,
    /// N: a connection with no byte moved for this long is closed.
    idle: Duration,
    /// T: the period of the `tick connections=C` line.
    tick: Duration,
    // TODO 2. Add the timer state: when the next tick is due (the first one
    //    T after start), and a structure that gives the earliest idle deadline
    //    cheaply with 10,000 connections (a min-heap, e.g. BinaryHeap of
    //    Reverse((deadline, token)), a timer wheel, or a BTreeMap). Scanning
    //    every connection on every wakeup is what this lab replaces.
    //    Use Instant (monotonic), never SystemTime.
}

impl Server {
    fn new(listener: TcpListener, config: Config) -> Server {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).or_fail("epoll_create1");
        epoll
            .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
            .or_fail("epoll_ctl(ADD, listener)");
        Server {
            epoll,
            listener,
            clients: Slab::default(),
            scratch: vec![0; READ_CHUNK],
            idle: config.idle,
            tick: config.tick,
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
            // TODO 4. Do the timed work that is due, after EVERY wait, not
            //    only when the wait returned 0 (under constant traffic it never
            //    does):
            //    - close each connection whose idle deadline has passed: write
            //      `BYE idle\n` to it once (ignore the result, do not wait for
            //      it), then close it (self.close(token));
            //    - if the tick is due, print `tick connections=C` (C =
            //      self.clients.len()), flush stdout, and move the next tick
            //      past now: a period missed entirely is skipped.
        }
    }

    /// How long the next wait may sleep.
    fn timeout(&self, now: Instant) -> EpollTimeout {
        let _ = (now, self.idle, self.tick);
        // TODO 3. Sleep until the earliest of the next tick and the earliest
        //    idle deadline: timeout = that instant - now, never negative, in
        //    whole milliseconds ROUNDED UP (rounding down wakes you just before
        //    the deadline with nothing to do). EpollTimeout::try_from(ms).
        todo!(
            "compute the wait's timeout from the earliest deadline: see the TODOs in labs/timeouts/src/main.rs"
        )
    }

    fn accept_all(&mut self) {
        let (epoll, clients) = (&self.epoll, &mut self.clients);
        conn::accept_all(&self.listener, |stream| {
            let conn = Connection::new(stream);
            let registered = interest(&conn);
            let token = clients.insert(Client { conn, registered });
            let client = clients.get_mut(token).expect("just inserted");
            let event = EpollEvent::new(registered, token as u64);
            if epoll.add(client.conn.stream(), event).is_err() {
                clients.remove(token);
            }
            // TODO 5. A new connection is timed from its accept: record its
            //    first deadline (now + N).
        });
    }

    /// Handles one ready client: one read, then as much writing as fits.
    fn serve(&mut self, token: usize, events: EpollFlags) {
        let Some(client) = self.clients.get_mut(token) else {
            return; // already closed earlier in this batch of events
        };
        let readable = EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
        let mut ok = true;
        if events.intersects(readable) && client.conn.wants_read() {
            ok = client.conn.read_once(&mut self.scratch).is_ok();
        }
        if ok && client.conn.wants_write() {
            ok = client.conn.flush().is_ok();
        }
        // TODO 6. If a byte moved in either direction (compare
        //    client.conn.bytes_moved() before and after), the connection was
        //    active: its deadline becomes now + N. Keep this cheap: with a heap,
        //    record the time here and re-file the heap entry when it comes due.
        if !ok || client.conn.is_done() {
            self.close(token);
            return;
        }
        self.update_interest(token);
    }

    fn close(&mut self, token: usize) {
        if let Some(client) = self.clients.remove(token) {
            let _ = self.epoll.delete(client.conn.stream());
        }
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
