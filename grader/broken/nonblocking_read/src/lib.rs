//! Deliberately broken copiers for the `nonblocking_read` lab.
//!
//! [`run`] is a copier written from scratch to the contract in `CONTRACT.md`
//! ("nonblocking_read"). With [`Fault::None`] it is a correct implementation;
//! every other [`Fault`] adds exactly one classic mistake, so that each grader
//! check can be shown to fail on a program that is wrong in just that way.
//!
//! It is also, on purpose, unlike the reference solution in every way the
//! contract allows: its own argument parser (no labkit), 1000-byte reads, a
//! `File` made from a dup of stdout and `write_all`, the flags kept as a raw
//! `c_int`, and a sleep through `std::thread::sleep` measured in microseconds.
//!
//! Every fault is a small branch marked `FAULT(<name>)` in the code.

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::exit;
use std::time::Duration;

/// Bytes asked for per read.
const SMALL_BUF: usize = 1000;
/// FAULT(IgnoreWriteCount) reads this much, so that its writes are longer
/// than PIPE_BUF and can be cut short.
const BIG_BUF: usize = 64 * 1024;
/// FAULT(ZeroIsWouldBlock) gives up after this many zero-byte reads.
const ZEROS: u32 = 3;

/// The one mistake a copier makes; [`Fault::None`] is a correct copier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Correct per the contract.
    None,
    /// Never sets O_NONBLOCK: reads block, EAGAIN never happens.
    NeverNonblock,
    /// `F_SETFL(O_NONBLOCK)` without `F_GETFL` first: every other flag is lost.
    OverwriteFlags,
    /// On EAGAIN, tries again at once: busy-polling.
    NoSleep,
    /// Sleeps ten times `--retry-ms` after EAGAIN.
    LongSleep,
    /// Takes EAGAIN for the end of input.
    EagainIsEof,
    /// Ignores the count write() returns, with 64 KiB writes.
    IgnoreWriteCount,
    /// Never puts the input's original flags back.
    NoRestore,
    /// Puts the flags back at a normal end, not when it exits on an error.
    RestoreOnSuccessOnly,
    /// Sets O_NONBLOCK even with `--blocking`.
    IgnoresBlocking,
    /// Opens PATH with O_NONBLOCK: a FIFO without a writer reads as empty.
    OpenNonblock,
    /// Takes a read of 0 for "no data yet" a few times before believing it.
    ZeroIsWouldBlock,
    /// Writes the whole buffer instead of the bytes the read returned.
    WholeBuffer,
    /// Adds the buffer size, not the bytes read, to `bytes=`.
    MiscountsBytes,
    /// `File::open(path).unwrap()`: a missing file is a panic.
    UnwrapOpen,
    /// Counts the final read, the one that returned 0, in `reads=`.
    CountsEofRead,
    /// A bad command line exits 1, like a fatal error, instead of 2.
    UsageExitsOne,
}

struct Config {
    blocking: bool,
    retry_us: u64,
    path: Option<String>,
}

fn usage(message: &str, fault: Fault) -> ! {
    eprintln!("nonblocking_read: {message}");
    eprintln!("usage: nonblocking_read [--blocking] [--retry-ms MS] [PATH]");
    if fault == Fault::UsageExitsOne {
        exit(1) // FAULT(UsageExitsOne)
    }
    exit(2)
}

fn parse(fault: Fault) -> Config {
    let mut config = Config {
        blocking: false,
        retry_us: 10_000,
        path: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--blocking" => config.blocking = true,
            "--retry-ms" => {
                let value = args
                    .next()
                    .unwrap_or_else(|| usage("--retry-ms needs a value", fault));
                let ms: u64 = value
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("bad --retry-ms value '{value}'"), fault));
                config.retry_us = ms * 1000;
            }
            flag if flag.starts_with('-') && flag != "-" => {
                usage(&format!("unknown option '{flag}'"), fault)
            }
            path if config.path.is_none() => config.path = Some(path.to_string()),
            extra => usage(&format!("unexpected argument '{extra}'"), fault),
        }
    }
    config
}

fn open(path: &str, fault: Fault) -> File {
    if fault == Fault::UnwrapOpen {
        return File::open(path).unwrap(); // FAULT(UnwrapOpen)
    }
    let mut options = OpenOptions::new();
    options.read(true);
    if fault == Fault::OpenNonblock {
        options.custom_flags(OFlag::O_NONBLOCK.bits()); // FAULT(OpenNonblock)
    }
    options.open(path).unwrap_or_else(|err| {
        eprintln!("nonblocking_read: {path}: {err}");
        exit(1)
    })
}

struct Tally {
    reads: u64,
    bytes: u64,
    eagain: u64,
}

pub fn run(fault: Fault) -> ! {
    let config = parse(fault);
    let file = config.path.as_deref().map(|path| open(path, fault));
    let stdin = std::io::stdin();
    let fd = file.as_ref().map_or(stdin.as_fd(), |f| f.as_fd());

    let saved = match fcntl(fd, FcntlArg::F_GETFL) {
        Ok(flags) => flags,
        Err(err) => {
            eprintln!("nonblocking_read: F_GETFL: {err}");
            exit(1)
        }
    };
    let nonblocking = !config.blocking || fault == Fault::IgnoresBlocking; // FAULT(IgnoresBlocking)
    if nonblocking && fault != Fault::NeverNonblock {
        // FAULT(NeverNonblock) skips this
        let flags = if fault == Fault::OverwriteFlags {
            OFlag::O_NONBLOCK // FAULT(OverwriteFlags)
        } else {
            OFlag::from_bits_retain(saved) | OFlag::O_NONBLOCK
        };
        if let Err(err) = fcntl(fd, FcntlArg::F_SETFL(flags)) {
            eprintln!("nonblocking_read: F_SETFL: {err}");
            exit(1)
        }
    }
    let restore = || {
        let _ = fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_retain(saved)));
    };

    match pump(fd, &config, fault) {
        Ok(tally) => {
            if fault != Fault::NoRestore {
                restore(); // FAULT(NoRestore) skips this
            }
            eprintln!(
                "reads={} bytes={} eagain={}",
                tally.reads, tally.bytes, tally.eagain
            );
            exit(0)
        }
        Err(message) => {
            if fault != Fault::NoRestore && fault != Fault::RestoreOnSuccessOnly {
                restore(); // FAULT(NoRestore, RestoreOnSuccessOnly) skip this
            }
            eprintln!("nonblocking_read: {message}");
            exit(1)
        }
    }
}

fn pump(fd: BorrowedFd, config: &Config, fault: Fault) -> Result<Tally, String> {
    let stdout = std::io::stdout();
    let mut out =
        File::from(nix::unistd::dup(stdout.as_fd()).map_err(|err| format!("dup(stdout): {err}"))?);
    let mut buf = vec![
        0u8;
        if fault == Fault::IgnoreWriteCount {
            BIG_BUF
        } else {
            SMALL_BUF
        }
    ];
    let mut tally = Tally {
        reads: 0,
        bytes: 0,
        eagain: 0,
    };
    let mut nap = Duration::from_micros(config.retry_us);
    if fault == Fault::LongSleep {
        nap *= 10; // FAULT(LongSleep)
    }
    let mut zeros = 0;
    loop {
        let got = match nix::unistd::read(fd, &mut buf) {
            Ok(0) if fault == Fault::ZeroIsWouldBlock && zeros < ZEROS => {
                // FAULT(ZeroIsWouldBlock)
                zeros += 1;
                tally.eagain += 1;
                std::thread::sleep(nap);
                continue;
            }
            Ok(0) => {
                if fault == Fault::CountsEofRead {
                    tally.reads += 1; // FAULT(CountsEofRead)
                }
                return Ok(tally);
            }
            Ok(n) => n,
            Err(Errno::EAGAIN) if fault == Fault::EagainIsEof => return Ok(tally), // FAULT(EagainIsEof)
            Err(Errno::EAGAIN) => {
                tally.eagain += 1;
                if fault != Fault::NoSleep {
                    std::thread::sleep(nap); // FAULT(NoSleep) skips this
                }
                continue;
            }
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(format!("read: {err}")),
        };
        tally.reads += 1;
        tally.bytes += if fault == Fault::MiscountsBytes {
            buf.len() as u64 // FAULT(MiscountsBytes)
        } else {
            got as u64
        };
        let result = match fault {
            Fault::WholeBuffer => out.write_all(&buf), // FAULT(WholeBuffer)
            Fault::IgnoreWriteCount => {
                nix::unistd::write(&out, &buf[..got]) // FAULT(IgnoreWriteCount)
                    .map(drop)
                    .map_err(std::io::Error::from)
            }
            _ => out.write_all(&buf[..got]),
        };
        result.map_err(|err| format!("write to stdout: {err}"))?;
    }
}
