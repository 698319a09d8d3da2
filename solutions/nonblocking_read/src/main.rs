//! nonblocking_read, reference solution: copy a pipe, FIFO or file to stdout,
//! in non-blocking mode (retrying after a sleep on EAGAIN) or, with
//! `--blocking`, in ordinary blocking mode; then report on stderr what the
//! reads did.
//!
//! The point of the lab is what `O_NONBLOCK` changes: only the first phase of
//! a read (waiting for data) turns into an immediate `EAGAIN`; the second phase
//! (copying the data) is the same in both modes.

use labkit::{Args, OrFail};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::unistd::{read, write};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

const USAGE: &str = "[--blocking] [--retry-ms MS] [PATH]";
/// Bytes asked for per read: a pipe holds 64 KiB by default, so one read can
/// empty it.
const BUF_SIZE: usize = 64 * 1024;

struct Options {
    blocking: bool,
    retry: Duration,
    path: Option<String>,
}

/// What the reads did, for the report line.
#[derive(Default)]
struct Counts {
    /// read() calls that returned data.
    reads: u64,
    /// Bytes copied.
    bytes: u64,
    /// read() calls that failed with EAGAIN (EWOULDBLOCK is the same value on Linux).
    eagain: u64,
}

fn parse_options() -> Options {
    let args = Args::parse(USAGE, &["--retry-ms"], &["--blocking"]);
    Options {
        blocking: args.flag("--blocking"),
        retry: Duration::from_millis(args.value("--retry-ms", 10u64)),
        path: args.positional(0, 1).first().cloned(),
    }
}

fn main() {
    let options = parse_options();
    // A FIFO is opened without O_NONBLOCK: open() then waits for a writer,
    // and a first read can never mistake "no writer yet" for end of input.
    let file = options
        .path
        .as_ref()
        .map(|path| File::open(path).or_fail(format_args!("cannot open {path}")));
    let stdin = std::io::stdin();
    let input = match &file {
        Some(file) => file.as_fd(),
        None => stdin.as_fd(),
    };

    // O_NONBLOCK lives in the open file description, which our stdin shares
    // with whoever started us (a shell, its terminal): remember the flags to
    // put them back, and add to them rather than overwrite them.
    let original = fcntl(input, FcntlArg::F_GETFL).or_fail("fcntl(F_GETFL) on the input");
    let original = OFlag::from_bits_retain(original);
    if !options.blocking {
        fcntl(input, FcntlArg::F_SETFL(original | OFlag::O_NONBLOCK))
            .or_fail("fcntl(F_SETFL, O_NONBLOCK) on the input");
    }

    let result = copy(input, options.retry);

    // Restore before anything else, on success and on error alike: exiting
    // does not undo F_SETFL on a description someone else still uses.
    let restored = fcntl(input, FcntlArg::F_SETFL(original));
    let counts = result.or_fail("copy");
    restored.or_fail("fcntl(F_SETFL) restoring the input's flags");
    eprintln!(
        "reads={} bytes={} eagain={}",
        counts.reads, counts.bytes, counts.eagain
    );
}

/// Copies `input` to stdout until end of input.
fn copy(input: BorrowedFd, retry: Duration) -> Result<Counts, String> {
    let stdout = std::io::stdout();
    let output = stdout.as_fd();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut counts = Counts::default();
    loop {
        match read(input, &mut buf) {
            // 0 is the only end of input: every writer has closed the pipe,
            // or the file has no more bytes.
            Ok(0) => return Ok(counts),
            Ok(n) => {
                counts.reads += 1;
                counts.bytes += n as u64;
                write_all(output, &buf[..n], retry)?;
            }
            // No data *yet*: a writer still has the pipe open. Sleeping is
            // what keeps this loop from burning a CPU; it also delays data
            // that arrives during the sleep by up to `retry`.
            Err(Errno::EAGAIN) => {
                counts.eagain += 1;
                std::thread::sleep(retry);
            }
            // A signal arrived before any data: nothing was read, try again.
            Err(Errno::EINTR) => {}
            Err(err) => return Err(format!("read: {err}")),
        }
    }
}

/// Writes all of `data`: write() may take only part of it (a signal during a
/// long write to a pipe, a non-blocking stdout that is full).
fn write_all(output: BorrowedFd, mut data: &[u8], retry: Duration) -> Result<(), String> {
    while !data.is_empty() {
        match write(output, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            // Our stdout may be non-blocking too (for instance a terminal
            // shared with a program that set O_NONBLOCK on it): wait for room.
            Err(Errno::EAGAIN) => std::thread::sleep(retry.max(Duration::from_millis(1))),
            Err(err) => return Err(format!("write to stdout: {err}")),
        }
    }
    Ok(())
}
