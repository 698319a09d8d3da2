//! The suite's harness: pipes and their flags, test data, the thread that
//! collects the program's stdout, the one that feeds its stdin, running the
//! program, parsing its `reads=R bytes=B eagain=E` report line, and the
//! verdict every copying run shares.

use crate::check::{Ctx, Failure, Outcome, Verdict, ensure, grader_error, within};
use crate::harness::process::{Program, SpawnOptions};
use crate::harness::text::{bytes, first_difference};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::unistd::pipe2;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most output kept from a program (more is counted, not stored).
const KEEP: usize = 32 << 20;

/// A pipe whose both ends are close-on-exec in the grader: the program gets
/// only the end it is handed, so end of input and EPIPE behave as expected.
pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd), Verdict> {
    pipe2(OFlag::O_CLOEXEC).map_err(|err| grader_error(format!("pipe2: {err}")))
}

pub(super) fn get_flags(fd: impl AsFd) -> Result<i32, Verdict> {
    fcntl(fd, FcntlArg::F_GETFL).map_err(|err| grader_error(format!("F_GETFL: {err}")))
}

pub(super) fn set_flags(fd: impl AsFd, flags: i32) -> Result<(), Verdict> {
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_retain(flags)))
        .map(drop)
        .map_err(|err| grader_error(format!("F_SETFL: {err}")))
}

/// Flags as a student reads them: `0o4002 (O_RDWR|O_NONBLOCK)`.
pub(super) fn show_flags(flags: i32) -> String {
    let mut names = vec![match flags & OFlag::O_ACCMODE.bits() {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        _ => "O_RDWR",
    }];
    for (bit, name) in [
        (OFlag::O_APPEND, "O_APPEND"),
        (OFlag::O_NONBLOCK, "O_NONBLOCK"),
        (OFlag::O_DIRECT, "O_DIRECT"),
        (OFlag::O_NOATIME, "O_NOATIME"),
    ] {
        if flags & bit.bits() != 0 {
            names.push(name);
        }
    }
    format!("{flags:#o} ({})", names.join("|"))
}

pub(super) fn is_nonblocking(flags: i32) -> bool {
    flags & OFlag::O_NONBLOCK.bits() != 0
}

/// Reproducible binary data: every byte value, `\0` and `\n` included.
pub(super) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The program's stdout, read by a thread of the grader.
pub(super) struct Collector {
    shared: Arc<Collected>,
}

#[derive(Default)]
struct Collected {
    data: Mutex<Vec<u8>>,
    total: AtomicUsize,
    eof: AtomicBool,
    /// Read 4 KiB at a time with a pause after each, so that the pipe stays full.
    slow: AtomicBool,
}

impl Collector {
    pub(super) fn start(read_end: OwnedFd, slow: bool) -> Collector {
        let shared = Arc::new(Collected::default());
        shared.slow.store(slow, Ordering::Relaxed);
        let sink = shared.clone();
        std::thread::spawn(move || {
            let mut pipe = File::from(read_end);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let slow = sink.slow.load(Ordering::Relaxed);
                let want = if slow { 4096 } else { buf.len() };
                match pipe.read(&mut buf[..want]) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut data = sink.data.lock().unwrap();
                        let room = KEEP.saturating_sub(data.len()).min(n);
                        data.extend_from_slice(&buf[..room]);
                        sink.total.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
                if slow {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            sink.eof.store(true, Ordering::Release);
        });
        Collector { shared }
    }

    pub(super) fn total(&self) -> usize {
        self.shared.total.load(Ordering::Relaxed)
    }

    pub(super) fn fast(&self) {
        self.shared.slow.store(false, Ordering::Relaxed);
    }

    /// Waits until `n` bytes have arrived (or the pipe ended, or `deadline`).
    pub(super) fn wait_for(&self, n: usize, deadline: Instant) -> bool {
        loop {
            if self.total() >= n {
                return true;
            }
            if self.shared.eof.load(Ordering::Acquire) || Instant::now() >= deadline {
                return self.total() >= n;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn wait_eof(&self, deadline: Instant) -> bool {
        while !self.shared.eof.load(Ordering::Acquire) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    fn output(&self) -> Vec<u8> {
        self.shared.data.lock().unwrap().clone()
    }
}

/// Writes `data` to a blocking pipe in a thread: chunks of varied sizes, with
/// the given pauses (after how many bytes, how long), then closes it. A write
/// error (the program is gone) just ends the feeding.
pub(super) fn feed(write_end: OwnedFd, data: Arc<Vec<u8>>, pauses: Vec<(usize, Duration)>) {
    std::thread::spawn(move || {
        let mut pipe = File::from(write_end);
        let sizes = [65_536, 1, 4096, 100_000, 777, 32_768, 250_000, 8191];
        let mut at = 0;
        let mut pauses = pauses.into_iter().peekable();
        for size in sizes.iter().cycle() {
            if at >= data.len() {
                break;
            }
            let mut end = (at + size).min(data.len());
            if let Some(&(pause_at, pause)) = pauses.peek() {
                if at == pause_at {
                    std::thread::sleep(pause);
                    pauses.next();
                } else if end > pause_at && at < pause_at {
                    end = pause_at;
                }
            }
            if pipe.write_all(&data[at..end]).is_err() {
                return;
            }
            at = end;
        }
    });
}

/// `reads=R bytes=B eagain=E`, the report line on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Report {
    pub(super) reads: u64,
    pub(super) bytes: u64,
    pub(super) eagain: u64,
}

pub(super) fn parse_report(stderr: &str) -> Option<Report> {
    stderr.lines().rev().find_map(|line| {
        let mut words = line.split_whitespace();
        let mut field = |key: &str| -> Option<u64> {
            words
                .next()?
                .strip_prefix(key)?
                .strip_prefix('=')?
                .parse()
                .ok()
        };
        let report = Report {
            reads: field("reads")?,
            bytes: field("bytes")?,
            eagain: field("eagain")?,
        };
        words.next().is_none().then_some(report)
    })
}

/// How a run ended.
pub(super) struct Ran {
    /// `None`: still running at the deadline.
    pub(super) status: Option<ExitStatus>,
    output: Vec<u8>,
    /// Bytes that arrived (more than `output` holds past KEEP).
    pub(super) total: usize,
    pub(super) report: Option<Report>,
}

/// Runs the program on `data` written into a pipe on its stdin (stdout a
/// pipe read as fast as it comes) and waits up to `limit` for its end. Also
/// gives the stdin pipe's capacity: no read of it returns more.
pub(super) fn copy_pipe(
    ctx: &Ctx,
    data: Arc<Vec<u8>>,
    limit: Duration,
) -> Result<(Program, Ran, u64), Verdict> {
    let (input, feeder) = pipe()?;
    let capacity = fcntl(&input, FcntlArg::F_GETPIPE_SZ).unwrap_or(65_536) as u64;
    let (out_read, out_write) = pipe()?;
    let collector = Collector::start(out_read, false);
    let mut program = spawn(ctx, &[], Some(input), out_write)?;
    feed(feeder, data, Vec::new());
    let ran = finish(&mut program, &collector, limit);
    Ok((program, ran, capacity))
}

/// Waits for the program to end and its stdout to close.
pub(super) fn finish(program: &mut Program, collector: &Collector, within_: Duration) -> Ran {
    let status = program.wait_exit(within_);
    if status.is_some() {
        collector.fast();
        collector.wait_eof(within(Duration::from_secs(3)));
    }
    let report = parse_report(&program.stderr_tail());
    Ran {
        status,
        output: collector.output(),
        total: collector.total(),
        report,
    }
}

/// The verdict every copying run shares: it ended by itself with exit 0,
/// stdout holds exactly the input, and the report matches what arrived.
pub(super) fn judge_copy(program: &Program, ran: &Ran, expected: &[u8], input: &str) -> Outcome {
    let Some(status) = ran.status else {
        return Err(Failure::new(format!(
            "after {input} had been written and the writing end closed, the program was still running (it had copied {} of {})",
            bytes(ran.total),
            bytes(expected.len())
        ))
        .expected("read() returns 0 once every writer has closed: that is end of input, print the report and exit 0")
        .cause("a loop that never sees read() return 0, or a program stuck in a read or write")
        .into());
    };
    if status.signal().is_some() || status.code() != Some(0) {
        return Err(
            Failure::new(format!("with {input}: {}", program.describe_exit(status)))
                .expected("exit code 0 at end of input")
                .into(),
        );
    }
    if ran.output != expected {
        let got = &ran.output;
        let difference = first_difference(expected, got).unwrap_or_default();
        let (summary, cause) = if got.len() < expected.len() {
            (
                format!(
                    "with {input}, stdout got {} of {}: {} were lost; {difference}",
                    bytes(got.len()),
                    bytes(expected.len()),
                    bytes(expected.len() - got.len())
                ),
                "bytes were read but not all written: write() may write fewer bytes than asked (it returns how many it took), and the rest must be written again",
            )
        } else if got.len() > expected.len() {
            let extra = got.len() - expected.len();
            let summary = format!(
                "with {input}, stdout got {} more than the {} sent; {difference}",
                bytes(extra),
                bytes(expected.len())
            );
            let cause = if got.ends_with(b"\n") && got[expected.len()..].starts_with(b"reads=") {
                "the report line goes to stderr, not stdout"
            } else {
                "write exactly the bytes read() returned (&buf[..n]), not the whole buffer"
            };
            (summary, cause)
        } else {
            (
                format!(
                    "with {input}, stdout got as many bytes as were sent, but different ones; {difference}"
                ),
                "write exactly the bytes read() returned, in the order they came",
            )
        };
        return Err(Failure::new(summary)
            .expected("stdout is the input, byte for byte")
            .cause(cause)
            .into());
    }
    let Some(report) = ran.report else {
        let tail = program.stderr_tail();
        return Err(Failure::new(format!(
            "with {input}, the copy was right but stderr has no `reads=R bytes=B eagain=E` line; {}",
            if tail.is_empty() {
                "stderr was empty".to_string()
            } else {
                format!(
                    "its stderr ends with:\n{}",
                    crate::harness::text::indent(&tail, "    | ")
                )
            }
        ))
        .expected("one line `reads=R bytes=B eagain=E` on stderr at end of input")
        .into());
    };
    ensure(report.bytes == expected.len() as u64, || {
        Failure::new(format!(
            "with {input}, the report says bytes={} but {} arrived on stdout",
            report.bytes,
            bytes(expected.len())
        ))
        .expected("bytes=B: the sum of what the reads returned, which is what was copied")
        .cause("add n, the count read() returned, not the size of the buffer")
    })?;
    ensure(
        report.reads <= report.bytes && (report.bytes == 0 || report.reads >= 1),
        || {
            Failure::new(format!(
                "with {input}, the report says reads={} for bytes={}",
                report.reads, report.bytes
            ))
            .expected("R = the read() calls that returned data: at least 1, at most one per byte")
        },
    )
}

pub(super) fn spawn(
    ctx: &Ctx,
    args: &[&str],
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
) -> Result<Program, Verdict> {
    ctx.spawn(SpawnOptions {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: stdin.map(Stdio::from),
        stdout: Some(Stdio::from(stdout)),
        ..SpawnOptions::default()
    })
}

/// A directory of the grader's, removed with what it holds when dropped.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new() -> Result<TempDir, Verdict> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "iomux-nonblocking-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path)
            .map_err(|err| grader_error(format!("mkdir {}: {err}", path.display())))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the program with `args` (stdin /dev/null) until it exits.
pub(super) fn run_to_exit(
    ctx: &Ctx,
    args: &[&str],
) -> Result<(Program, Option<ExitStatus>), Verdict> {
    let (out_read, out_write) = pipe()?;
    let _collector = Collector::start(out_read, false);
    let mut program = spawn(ctx, args, None, out_write)?;
    let status = program.wait_exit(Duration::from_secs(5));
    Ok((program, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines() {
        let text = "warming up\nreads=12 bytes=4096 eagain=3\n";
        assert_eq!(
            parse_report(text),
            Some(Report {
                reads: 12,
                bytes: 4096,
                eagain: 3
            })
        );
        assert_eq!(parse_report("reads=1 bytes=2\n"), None);
        assert_eq!(parse_report("reads=1 bytes=2 eagain=x\n"), None);
        assert_eq!(parse_report("bytes=2 reads=1 eagain=0\n"), None);
        assert_eq!(parse_report("reads=1 bytes=2 eagain=0 extra\n"), None);
    }

    #[test]
    fn flags_are_named() {
        assert_eq!(show_flags(0o4000), "0o4000 (O_RDONLY|O_NONBLOCK)");
        assert_eq!(show_flags(0o2001), "0o2001 (O_WRONLY|O_APPEND)");
    }

    #[test]
    fn pattern_is_binary_and_reproducible() {
        let data = pattern(100_000, 1);
        assert_eq!(data, pattern(100_000, 1));
        assert_ne!(data, pattern(100_000, 2));
        assert!(data.contains(&0) && data.contains(&b'\n') && data.contains(&255));
    }
}
