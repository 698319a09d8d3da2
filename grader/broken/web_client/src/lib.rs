//! Deliberately broken web clients for the `web_client` lab, one classic mistake each,
//! and an independent correct one ([`Fault::None`], the bin `correct_web_client`).
//!
//! Written from the contract alone, and different from the reference where the
//! contract allows: level-triggered epoll instead of `poll`, deadlines kept in a
//! `BTreeSet` ordered by time (the earliest is the readiness call's timeout), a header
//! parser of its own, one read per readiness report so that a fast body never starves
//! the other fetches. What is shared by every variant lives here: the command line, the
//! URL rules, the output and the exit code; [`fetch`] is one fetch's state machine,
//! [`event_loop`] the readiness loop ([`poller`] its readiness call), [`threads`] the one variant that uses threads.

mod args;
mod event_loop;
mod fetch;
mod poller;
mod threads;

use std::io::{self, BufWriter, Write};
use std::process;

pub use args::{Config, Url};

/// The one mistake a program makes, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The correct client.
    None,
    /// The header ends at the first `\r\n` instead of the first `\r\n\r\n`.
    HeaderCrlf,
    /// A status other than 2xx is reported as `error=status`.
    Non2xxFails,
    /// One fetch at a time, whatever N.
    OneAtATime,
    /// Every fetch starts at once, whatever N.
    NoLimit,
    /// Batches of N: starts N, waits for all N to end, then starts the next N.
    Batches,
    /// Output lines in a `BufWriter` flushed only at exit.
    Unflushed,
    /// Writability taken for a successful connect: `SO_ERROR` never read, a failed
    /// send or receive reported as `reset`.
    WritableConnected,
    /// `connect` in blocking mode, `O_NONBLOCK` set only afterwards.
    BlockingConnect,
    /// One deadline for the whole program: T ms after it started.
    GlobalDeadline,
    /// The deadline enforced only while connecting.
    ConnectDeadline,
    /// The body written straight to `DIR/i`, never removed on failure.
    PartialFile,
    /// A stream that ends before the empty line is a success with an empty body.
    EofIsSuccess,
    /// The whole body kept in memory, written to the file at the end.
    BodyInMemory,
    /// Finished sockets kept open until the end.
    KeepsSockets,
    /// The readiness call wakes every 10 ms, whatever the deadlines.
    ShortTick,
    /// Each fetch in a thread of its own, blocking I/O with socket timeouts.
    ThreadPerFetch,
    /// Each URL parsed only when its fetch starts.
    LazyUrls,
    /// DIR never checked up front: the first file it creates finds out.
    LazyDir,
    /// SIGPIPE reset to its default action: a write to a stdout whose reader is gone kills.
    Sigpipe,
    /// One write of the request, its count ignored.
    ShortWrite,
    /// select(2) as the readiness call: no fd of FD_SETSIZE (1024) or more.
    Select,
    /// The soft fd limit left as it was (1,024 on most systems): N = 1,000
    /// fetches need about 2,000 fds.
    NoFdLimit,
}

/// The result of one fetch, as its output line reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Fetched { status: u16, bytes: u64 },
    Failed(&'static str),
}

/// Where the output lines go: stdout, each line flushed at once (the Unflushed fault
/// keeps them in a buffer of its own until exit).
pub struct Output {
    out: Box<dyn Write>,
    flush_each: bool,
}

impl Output {
    fn new(fault: Fault) -> Self {
        if fault == Fault::Unflushed {
            let out = BufWriter::with_capacity(1 << 16, io::stdout());
            return Output {
                out: Box::new(out),
                flush_each: false,
            };
        }
        Output {
            out: Box::new(io::stdout()),
            flush_each: true,
        }
    }

    /// Writes the line reporting fetch `index` of `url`.
    pub fn report(&mut self, index: usize, url: &str, outcome: &Outcome) -> io::Result<()> {
        match outcome {
            Outcome::Fetched { status, bytes } => {
                self.line(&format!("{index} {url} status={status} bytes={bytes}"))
            }
            Outcome::Failed(reason) => self.line(&format!("{index} {url} error={reason}")),
        }
    }

    fn line(&mut self, text: &str) -> io::Result<()> {
        // One write per line (the newline included), so a line is never split.
        self.out.write_all(format!("{text}\n").as_bytes())?;
        if self.flush_each {
            self.out.flush()
        } else {
            Ok(())
        }
    }
}

fn stdout_error(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot write to stdout: {e}"))
}

/// How many fetches succeeded and failed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub ok: usize,
    pub failed: usize,
}

impl Tally {
    pub fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Fetched { .. } => self.ok += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }
}

/// Runs the web client with `fault`; never returns.
pub fn run(fault: Fault) -> ! {
    let prog = broken_common::program_name("web_client");
    if fault == Fault::Sigpipe {
        // The mistake: Rust ignores SIGPIPE at startup; this puts the default
        // (death) back, so the first line written to a gone reader kills.
        // SAFETY: no other thread exists yet and SIG_DFL is not a handler.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            );
        }
    }
    let config = args::parse_or_exit(&prog, fault);
    if fault != Fault::LazyDir {
        args::check_dir_or_exit(&prog, &config.dir);
    }
    // Up to N fetches, each a socket and a file: 2N + a few fds, N up to 1,000.
    if fault != Fault::NoFdLimit {
        broken_common::raise_nofile_limit();
    }
    let mut out = Output::new(fault);
    let result = if fault == Fault::ThreadPerFetch {
        threads::run(&prog, &config, fault, &mut out)
    } else {
        event_loop::run(&prog, &config, fault, &mut out)
    };
    let tally = result.and_then(|tally| {
        out.line(&format!("done ok={} failed={}", tally.ok, tally.failed))?;
        out.out.flush().map_err(stdout_error)?;
        Ok(tally)
    });
    match tally {
        Ok(tally) => process::exit(if tally.failed == 0 { 0 } else { 1 }),
        Err(e) => {
            eprintln!("{prog}: {e}");
            process::exit(1)
        }
    }
}
