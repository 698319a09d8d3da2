//! async_echo: the line echo server as one `async fn` per connection, on a
//! runtime you write yourself (src/runtime/): a single-threaded executor and
//! an epoll reactor. No tokio, no mio, no futures-executor: the runtime is
//! the lab.
//!
//! Read the handout first: docs/labs/async_echo.md, and build in the order
//! of its section "Build it in this order", grading each step:
//!
//! 1. runtime/executor.rs, the timers of runtime/reactor.rs and `sleep` in
//!    runtime/time.rs: `cargo test -p async_echo -- --ignored` runs the
//!    tests of runtime/tests.rs on them.
//! 2. the sockets (the rest of reactor.rs, runtime/net.rs) and the
//!    conversation below (`Conn`, `converse`, `linger`): the echo checks.
//! 3. the runtime's own checks (`own_runtime`, `per_wakeup_cost`, ...).
//! 4. `idle_timeout` in runtime/time.rs and the TODO in `chat_with_client`.
//!
//! The scaffolding (command line, fd limit, the listening socket, the
//! `listening on` line, the accept loop) is done for you, and given.rs has
//! the line framing of the earlier labs (`LineReader`) and a `Slab`.

// Remove once you have written the runtime: the skeleton's parameters are
// unused until then.
#![allow(unused_variables, dead_code, unused_imports)]

mod given;
mod runtime;

use given::{Fed, LineReader};
use labkit::{Args, OrFail};
use runtime::executor;
use runtime::net::Async;
use runtime::time::{idle_timeout, sleep};
use std::cell::Cell;
use std::io::{self, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const USAGE: &str = "[--port PORT] [--idle-timeout-ms N]";
const BYE: &[u8] = b"BYE idle\n";
/// Bytes read at a time. Each connection owns its buffer across awaits, so
/// it is small: 10,000 connections hold 40 MiB of them.
const CHUNK: usize = 4096;

fn main() {
    let args = Args::parse(USAGE, &["--port", "--idle-timeout-ms"], &[]);
    args.positional(0, 0);
    let idle: u64 = args.value("--idle-timeout-ms", 10_000);
    if idle == 0 {
        labkit::usage_error("--idle-timeout-ms must be at least 1", USAGE);
    }
    labkit::raise_fd_limit();
    let listener = labkit::bind_loopback(args.value("--port", 0));
    listener
        .set_nonblocking(true)
        .or_fail("cannot make the listening socket non-blocking");
    // Registered before the line is printed: everything the server needs
    // exists once it says it is listening.
    let listener = Async::new(listener).or_fail("cannot register the listener");
    labkit::announce(listener.get_ref());
    executor::run(serve(listener, Duration::from_millis(idle)))
}

/// Accepts connections for ever, one task each.
async fn serve(listener: Async<TcpListener>, idle: Duration) {
    loop {
        match listener.accept().await {
            Ok(stream) => executor::spawn(chat_with_client(stream, idle)),
            // The client gave up while in the backlog: take the next one.
            Err(err) if err.kind() == ErrorKind::ConnectionAborted => {}
            // Out of fds (EMFILE, ENFILE), of memory (ENOBUFS, ENOMEM): the
            // pending client waits in the backlog and the listener stays
            // ready, so trying again at once would fail again without ever
            // yielding, starving every other task and the reactor. Wait.
            Err(_) => sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One connection and the instant a byte last moved on it.
struct Conn {
    stream: Async<TcpStream>,
    last_activity: Cell<Instant>,
}

impl Conn {
    /// One read; sets `last_activity` when it returns bytes or EOF.
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        todo!("Conn::read (step 2): self.stream.read(buf).await, then set last_activity")
    }

    /// Writes all of `data`: a loop of `self.stream.write(..).await` (a
    /// write may take only part of it), setting `last_activity` after each.
    /// Awaiting here is the backpressure: this task reads nothing more until
    /// its replies are out.
    async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        todo!("Conn::write_all (step 2)")
    }
}

/// The protocol of one connection.
async fn chat_with_client(stream: Async<TcpStream>, idle: Duration) {
    let conn = Conn {
        stream,
        // Timed from accept: a client that never sends is idle too.
        last_activity: Cell::new(Instant::now()),
    };
    // TODO (step 4, the idle timeout): run the conversation inside
    // `idle_timeout(idle, &conn.last_activity, converse(&conn))`; when it
    // returns `Err(Idle)`, one `conn.stream.try_write(BYE)`, result ignored
    // (one attempt, not waited for: an idle client may not be reading).
    converse(&conn).await;
    // Dropping `conn` closes the socket (and deregisters it).
}

/// Echo lines until `quit`, a too-long line, the client's EOF or an error.
async fn converse(conn: &Conn) {
    // TODO (step 2), with a `LineReader` and a buffer of CHUNK bytes:
    //   loop: read a chunk (an error: return, this connection only);
    //   EOF (0 bytes): write_all the unterminated fragment
    //   (`lines.take_fragment()`) and return;
    //   `lines.echo(chunk, &mut replies)` queues the echoes (and
    //   `ERR line too long\n`); write_all them, then read again;
    //   when `echo` returns anything but `Fed::All` (`quit`, a too-long
    //   line): `linger`, and return.
    todo!("converse (step 2): see src/main.rs")
}

/// The lingering close: our FIN, then read and discard until the client's
/// EOF, so that its unread bytes never turn our close into a reset.
async fn linger(conn: &Conn, buf: &mut [u8]) {
    todo!("linger (step 2): shutdown_write, then read until 0 or an error")
}
