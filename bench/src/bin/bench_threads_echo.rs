//! bench_threads_echo: the line echo server the classic way, one blocking
//! thread per connection. A baseline for `make bench`, not a lab solution
//! (the labs are single-threaded by contract).
//!
//! Each thread blocks in read() and write() on its own socket, so no
//! readiness API is needed at all: the kernel's scheduler is the event loop.
//! The price is a thread (a stack, a kernel task, a context switch per
//! wakeup) for every client, idle or not.
//!
//! The protocol is echo_core's `Connection`, the same state machine the
//! reference solutions use: on a blocking socket `read_once` waits for
//! bytes and `flush` writes everything, and a blocking write is the
//! backpressure.

use echo_core::Connection;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Each thread's stack. The default (2 MiB of address space) times 10,000
/// idle clients would not fit the address-space limit the bench runs under;
/// a connection's loop needs very little.
const STACK: usize = 128 * 1024;
/// One read's buffer, per thread.
const READ_CHUNK: usize = 16 * 1024;

fn main() {
    let args = labkit::EchoArgs::parse();
    labkit::raise_fd_limit();
    let listener = labkit::bind_loopback(args.port);
    labkit::announce(&listener);
    accept_loop(&listener)
}

fn accept_loop(listener: &TcpListener) -> ! {
    let mut spawn_failures = 0u64;
    loop {
        let stream = match listener.accept() {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // EMFILE and friends: say so, and give the clients time to leave.
                eprintln!("accept: {err}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let spawned = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || serve(stream));
        if let Err(err) = spawned {
            // Out of threads (RLIMIT_NPROC, pid_max, memory): this client is
            // dropped (the closure owning its socket is dropped), the others go on.
            spawn_failures += 1;
            if spawn_failures.is_power_of_two() {
                eprintln!("cannot start a thread ({spawn_failures} so far): {err}");
            }
        }
    }
}

/// Serves one client until its connection ends; errors end only this client.
fn serve(stream: TcpStream) {
    let mut conn = Connection::new(stream);
    let mut scratch = vec![0u8; READ_CHUNK];
    while !conn.is_done() {
        // Write first: after `quit` the replies and our shutdown must go out
        // before we block reading until the client's EOF.
        if conn.wants_write() && conn.flush().is_err() {
            return;
        }
        if conn.wants_read() && conn.read_once(&mut scratch).is_err() {
            return;
        }
    }
}
