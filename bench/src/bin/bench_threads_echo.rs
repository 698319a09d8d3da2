//! bench_threads_echo: the line echo server the classic way, one blocking
//! thread per connection. A baseline for `make bench`, not a lab solution
//! (the labs are single-threaded by contract).
//!
//! Each thread blocks in read() and write() on its own socket, so no
//! readiness API is needed at all: the kernel's scheduler is the event loop.
//! The price is a thread (a stack, a kernel task, a context switch per
//! wakeup) for every client, idle or not.
//!
//! With blocking sockets the protocol needs no state machine: read a line
//! (waiting as long as it takes), write it back (waiting until the client
//! takes it: that wait is the backpressure), repeat.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

/// Each thread's stack. The default (2 MiB of address space) times 10,000
/// idle clients would not fit the address-space limit the bench runs under;
/// a connection's loop needs very little.
const STACK: usize = 128 * 1024;
/// One read's buffer, per thread.
const READ_CHUNK: usize = 16 * 1024;
/// Longest line, counting the `\n` (CONTRACT.md).
const MAX_LINE: usize = 8192;

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
    let _ = serve_lines(stream);
}

/// Reads and writes through `&TcpStream`: one fd per connection (a
/// `try_clone` for the writer would cost a second one, and halve the idle
/// connections the fd limit allows).
fn serve_lines(stream: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(READ_CHUNK, &stream);
    let mut writer = &stream;
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        // At most one byte past the limit: enough to know a line is too long.
        (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            if line.len() > MAX_LINE {
                writer.write_all(b"ERR line too long\n")?;
                return linger(reader, writer);
            }
            // End of input: echo the unterminated fragment, then close.
            return writer.write_all(&line);
        }
        let text = &line[..line.len() - 1];
        if text.strip_suffix(b"\r").unwrap_or(text) == b"quit" {
            return linger(reader, writer);
        }
        writer.write_all(&line)?;
    }
}

/// The lingering close: no more replies, then discard the client's input
/// until it closes, so that closing never resets the connection.
fn linger(mut reader: BufReader<&TcpStream>, writer: &TcpStream) -> io::Result<()> {
    writer.shutdown(Shutdown::Write)?;
    io::copy(&mut reader, &mut io::sink())?;
    Ok(())
}
