//! nonblocking_read: copy a pipe, FIFO or file to stdout, in non-blocking mode
//! by default, and report what the reads did.
//!
//! Read the handout first: docs/labs/nonblocking_read.md. Grade your work
//! with `make grade LAB=nonblocking_read`.
//!
//! The command line and the report line are done for you. Opening the input,
//! O_NONBLOCK, the read loop and the write to stdout are yours: see the TODOs.

use labkit::Args;
use std::time::Duration;

const USAGE: &str = "[--blocking] [--retry-ms MS] [PATH]";

/// The command line: `nonblocking_read [--blocking] [--retry-ms MS] [PATH]`.
struct Options {
    /// `--blocking`: leave the input blocking.
    blocking: bool,
    /// `--retry-ms MS`: how long to sleep after EAGAIN (default 10 ms).
    retry: Duration,
    /// The file or FIFO to read; `None`: stdin.
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
    // Unknown flags and bad values end the program with a usage message and exit code 2.
    let args = Args::parse(USAGE, &["--retry-ms"], &["--blocking"]);
    Options {
        blocking: args.flag("--blocking"),
        retry: Duration::from_millis(args.value("--retry-ms", 10u64)),
        path: args.positional(0, 1).first().cloned(),
    }
}

/// The line the grader reads on stderr at the end.
fn report(counts: &Counts) {
    eprintln!(
        "reads={} bytes={} eagain={}",
        counts.reads, counts.bytes, counts.eagain
    );
}

fn main() {
    let options = parse_options();
    let counts = run(&options);
    report(&counts);
}

/// Copies the input to stdout and returns the counts.
fn run(options: &Options) -> Counts {
    let _ = (options.blocking, options.retry, &options.path);
    // TODO 1. The input: with a PATH, open it for reading with
    //    std::fs::File::open (a FIFO: open it normally, without O_NONBLOCK; it
    //    then waits for a writer). A failure ends the program with exit code
    //    1 and a line naming the path: `File::open(path).or_fail(format_args!(
    //    "cannot open {path}"))` (labkit::OrFail) does both. Without PATH, the
    //    input is stdin: `std::io::stdin().as_fd()` (std::os::fd::AsFd).
    //
    // TODO 2. Unless --blocking: save the input's flags with
    //    nix::fcntl::fcntl(fd, FcntlArg::F_GETFL), then F_SETFL them with
    //    O_NONBLOCK added (OFlag::from_bits_retain(saved) | OFlag::O_NONBLOCK).
    //    F_SETFL replaces all the flags: do not lose the others.
    //
    // TODO 3. The loop, with nix::unistd::read into a buffer (64 KiB is good):
    //    - Ok(0): end of input, stop;
    //    - Ok(n): count a read and n bytes, write buf[..n] to stdout, all of
    //      it: write() may take fewer bytes than asked (loop, or write_all);
    //    - Err(Errno::EAGAIN): no data *yet*: count it, sleep options.retry,
    //      try again (never treat it as the end);
    //    - Err(Errno::EINTR): try again;
    //    - any other error: fatal.
    //
    // TODO 4. Before returning, and on every error path before exiting: put
    //    the saved flags back with F_SETFL. The open file description is
    //    shared with whoever started you (a shell's terminal).
    todo!("copy the input: see the TODOs in labs/nonblocking_read/src/main.rs")
}
