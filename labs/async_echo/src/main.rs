//! async_echo: the line echo server as one `async fn` per connection, on a
//! runtime you write yourself (src/runtime/): a single-threaded executor and
//! an epoll reactor. No tokio, no mio, no futures-executor: the runtime is
//! the lab.
//!
//! Read the handout first: docs/labs/async_echo.md. Grade your work with
//! `make grade LAB=async_echo`. Suggested order: runtime/reactor.rs,
//! runtime/executor.rs, runtime/net.rs, runtime/time.rs, then the protocol
//! below.
//!
//! The scaffolding (command line, fd limit, the listening socket and the
//! `listening on` line) is done for you.

// Remove once you have written the runtime: the skeleton's parameters are
// unused until then.
#![allow(unused_variables, dead_code)]

mod runtime;

use labkit::{Args, OrFail};
use runtime::executor;
use runtime::net::Async;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const USAGE: &str = "[--port PORT] [--idle-timeout-ms N]";

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
    labkit::announce(&listener);
    executor::run(serve(listener, Duration::from_millis(idle)))
}

/// Accepts connections for ever, one task each.
async fn serve(listener: TcpListener, idle: Duration) {
    let listener = Async::new(listener).or_fail("cannot register the listener");
    loop {
        match listener.accept().await {
            Ok(stream) => executor::spawn(chat_with_client(stream, idle)),
            // Out of fds (EMFILE), say: the listener stays ready, so wait a
            // little instead of spinning (and never yielding to the others).
            Err(err) => {
                eprintln!("accept: {err}");
                runtime::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The protocol of one connection, written top to bottom as if it had a
/// thread of its own.
async fn chat_with_client(stream: Async<TcpStream>, idle: Duration) {
    // TODO (last, once the runtime works):
    //   - keep the instant the last byte moved (read or written), starting now;
    //   - wrap the conversation in runtime::time::idle_timeout: on timeout,
    //     one try_write of `BYE idle\n`, then drop the stream (it closes);
    //   - the conversation: read a chunk, cut it into lines (8192 bytes at
    //     most), write each echo with a loop of `write().await` (awaiting the
    //     write is the backpressure), `quit` or a too-long line
    //     (`ERR line too long\n`) end it with the lingering close
    //     (shutdown_write, then read and discard until EOF); on EOF echo the
    //     unterminated fragment and return.
    todo!("write chat_with_client: see src/main.rs")
}
