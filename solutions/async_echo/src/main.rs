//! async_echo: the line echo server written as one `async fn` per
//! connection, on a runtime of our own (`runtime/`): a single-threaded
//! executor and an epoll reactor, no tokio.
//!
//! Compare `chat_with_client` below with the state machines of the earlier
//! labs: the protocol reads top to bottom, as in a thread per client, and
//! where a thread would block the function awaits, handing the thread back
//! to the executor. The state machine is still there; the compiler writes it.

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
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf).await?;
        self.last_activity.set(Instant::now());
        Ok(n)
    }

    /// Writes all of `data`. Awaiting here is the backpressure: while the
    /// client does not read, this task does not read either, so its bytes
    /// wait in the kernel's buffers and its own writes block.
    async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.stream.write(data).await?;
            data = &data[n..];
            // Writing is activity too: a slow reader of a long reply is not idle.
            self.last_activity.set(Instant::now());
        }
        Ok(())
    }
}

/// The protocol of one connection, idle timeout included.
async fn chat_with_client(stream: Async<TcpStream>, idle: Duration) {
    let conn = Conn {
        stream,
        // Timed from accept: a client that never sends is idle too.
        last_activity: Cell::new(Instant::now()),
    };
    if idle_timeout(idle, &conn.last_activity, converse(&conn))
        .await
        .is_err()
    {
        // One attempt, not waited for: an idle client may not be reading.
        let _ = conn.stream.try_write(BYE);
    }
    // Dropping `conn` closes the socket (and deregisters it).
}

/// Echo lines until `quit`, a too-long line, the client's EOF or an error.
async fn converse(conn: &Conn) {
    let mut lines = LineReader::default();
    let mut buf = vec![0; CHUNK];
    let mut replies = Vec::new();
    loop {
        let n = match conn.read(&mut buf).await {
            Ok(0) => {
                // End of input: the unterminated fragment is echoed as it is.
                let _ = conn.write_all(&lines.take_fragment()).await;
                return;
            }
            Ok(n) => n,
            Err(_) => return, // a reset: drop this connection only
        };
        replies.clear();
        let fed = lines.echo(&buf[..n], &mut replies);
        if conn.write_all(&replies).await.is_err() {
            return;
        }
        if fed != Fed::All {
            return linger(conn, &mut buf).await;
        }
    }
}

/// The lingering close: our FIN, then read and discard until the client's
/// EOF, so that its unread bytes never turn our close into a reset.
async fn linger(conn: &Conn, buf: &mut [u8]) {
    if conn.stream.shutdown_write().is_err() {
        return;
    }
    while let Ok(n) = conn.read(buf).await {
        if n == 0 {
            return;
        }
    }
}
