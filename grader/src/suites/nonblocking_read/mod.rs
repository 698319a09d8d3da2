//! Checks of the nonblocking_read lab: a copier from a pipe, FIFO or file to
//! stdout, non-blocking by default.
//!
//! The grader owns every pipe the program touches. It keeps its own reference
//! to the read end it gives the program as stdin: that is the same open file
//! description, so `fcntl(F_GETFL)` on the grader's end shows the flags the
//! program set (what `flags:` in /proc/PID/fdinfo/0 shows), during the run and
//! after the program has exited. The program's stdout is a pipe read by a
//! thread of the grader, which can be told to read slowly.

use crate::check::{Check, Ctx, Failure, Outcome, Suite, Verdict, broken, ensure, secs};
use crate::check::{grader_error, within};
use crate::harness::proc::{self, SyscallState, nr};
use crate::harness::process::{Program, SpawnOptions};
use crate::harness::text::{bytes, first_difference, quote, thousands};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::{dup, mkfifo, pipe2};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the writer pauses in the middle of the stream.
const PAUSE: Duration = Duration::from_millis(500);
/// The `--retry-ms` the pause checks pass.
const RETRY_MS: u64 = 10;
/// Each half of the stream around the pause: less than a pipe holds, so the
/// grader's writes never block.
const HALF: usize = 48 * 1024;
/// Most output kept from a program (more is counted, not stored).
const KEEP: usize = 32 << 20;

pub static SUITE: Suite = Suite {
    name: "nonblocking_read",
    checks: &[
        PIPE_COPY,
        SHORT_WRITES,
        PAUSE_EAGAIN,
        NONBLOCKING_FLAGS,
        RESTORES_FLAGS,
        BLOCKING_MODE,
        FIFO,
        REGULAR_FILE,
        ERRORS,
    ],
    hints: include_str!("hints.txt"),
};

/// A pipe whose both ends are close-on-exec in the grader: the program gets
/// only the end it is handed, so end of input and EPIPE behave as expected.
fn pipe() -> Result<(OwnedFd, OwnedFd), Verdict> {
    pipe2(OFlag::O_CLOEXEC).map_err(|err| grader_error(format!("pipe2: {err}")))
}

fn get_flags(fd: impl AsFd) -> Result<i32, Verdict> {
    fcntl(fd, FcntlArg::F_GETFL).map_err(|err| grader_error(format!("F_GETFL: {err}")))
}

fn set_flags(fd: impl AsFd, flags: i32) -> Result<(), Verdict> {
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_retain(flags)))
        .map(drop)
        .map_err(|err| grader_error(format!("F_SETFL: {err}")))
}

/// Flags as a student reads them: `0o4002 (O_RDWR|O_NONBLOCK)`.
fn show_flags(flags: i32) -> String {
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

fn is_nonblocking(flags: i32) -> bool {
    flags & OFlag::O_NONBLOCK.bits() != 0
}

/// Reproducible binary data: every byte value, `\0` and `\n` included.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
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
struct Collector {
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
    fn start(read_end: OwnedFd, slow: bool) -> Collector {
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

    fn total(&self) -> usize {
        self.shared.total.load(Ordering::Relaxed)
    }

    fn fast(&self) {
        self.shared.slow.store(false, Ordering::Relaxed);
    }

    /// Waits until `n` bytes have arrived (or the pipe ended, or `deadline`).
    fn wait_for(&self, n: usize, deadline: Instant) -> bool {
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
fn feed(write_end: OwnedFd, data: Arc<Vec<u8>>, pauses: Vec<(usize, Duration)>) {
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
struct Report {
    reads: u64,
    bytes: u64,
    eagain: u64,
}

fn parse_report(stderr: &str) -> Option<Report> {
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
struct Ran {
    /// `None`: still running at the deadline.
    status: Option<ExitStatus>,
    output: Vec<u8>,
    /// Bytes that arrived (more than `output` holds past KEEP).
    total: usize,
    report: Option<Report>,
}

/// Waits for the program to end and its stdout to close.
fn finish(program: &mut Program, collector: &Collector, within_: Duration) -> Ran {
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
fn judge_copy(program: &Program, ran: &Ran, expected: &[u8], input: &str) -> Outcome {
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

fn spawn(
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

pub const PIPE_COPY: Check = Check {
    name: "pipe_copy",
    points: 15,
    title: "8 MiB of binary data through a pipe on stdin (stdout a pipe too) arrive byte for byte; the report line says reads=R bytes=B eagain=E with B the bytes that arrived",
    limit: secs(40),
    run: pipe_copy,
    proven_by: &[
        broken(
            "broken_nonblocking_read_whole_buffer",
            "not the whole buffer",
        ),
        broken(
            "broken_nonblocking_read_miscounts_bytes",
            "the report says bytes=",
        ),
    ],
};

fn pipe_copy(ctx: &Ctx) -> Outcome {
    let data = Arc::new(pattern(8 << 20, 1));
    let (input, feeder) = pipe()?;
    let capacity = fcntl(&input, FcntlArg::F_GETPIPE_SZ).unwrap_or(65_536) as u64;
    let (out_read, out_write) = pipe()?;
    let collector = Collector::start(out_read, false);
    let mut program = spawn(ctx, &[], Some(input), out_write)?;
    feed(feeder, data.clone(), Vec::new());
    let ran = finish(&mut program, &collector, Duration::from_secs(30));
    let input = "8 MiB of binary data on a stdin pipe";
    judge_copy(&program, &ran, &data, input)?;
    let report = ran.report.unwrap();
    ctx.note(format!(
        "reads={} bytes={} eagain={}",
        report.reads, report.bytes, report.eagain
    ));
    let fewest = report.bytes.div_ceil(capacity);
    ensure(report.reads >= fewest, || {
        Failure::new(format!(
            "with {input}, the report says reads={} for bytes={}; a pipe holds at most {} so no read returns more, and {} bytes need at least {} reads",
            report.reads,
            report.bytes,
            bytes(capacity as usize),
            thousands(report.bytes as usize),
            thousands(fewest as usize)
        ))
        .expected("R = the read() calls that returned data (not counting EAGAIN results nor the final 0)")
    })
}

pub const SHORT_WRITES: Check = Check {
    name: "short_writes",
    points: 10,
    title: "stdout is a small pipe read slowly, and the program is stopped and continued (Ctrl-Z, fg) while it waits in write(): write() returns short counts and no byte is lost",
    limit: secs(40),
    run: short_writes,
    proven_by: &[broken(
        "broken_nonblocking_read_ignore_write_count",
        "write() may write fewer bytes than asked",
    )],
};

fn short_writes(ctx: &Ctx) -> Outcome {
    const STOPS: usize = 20;
    let data = Arc::new(pattern(2 << 20, 2));
    let (input, feeder) = pipe()?;
    let (out_read, out_write) = pipe()?;
    // One page: a write of more than PIPE_BUF bytes then waits part-way.
    let _ = fcntl(&out_read, FcntlArg::F_SETPIPE_SZ(4096));
    let collector = Collector::start(out_read, true);
    let mut program = spawn(ctx, &[], Some(input), out_write)?;
    feed(feeder, data.clone(), Vec::new());
    let pid = program.pid;
    let mut stops = 0;
    let phase = within(Duration::from_secs(8));
    while stops < STOPS && Instant::now() < phase && program.exit_status().is_none() {
        let in_write = matches!(
            proc::syscall(pid),
            Some(SyscallState::Blocked(nr::WRITE | nr::WRITEV))
        );
        if in_write {
            // What Ctrl-Z then `fg` does: a stop signal interrupts the
            // write, which returns what it had written so far.
            program.signal(Signal::SIGSTOP);
            std::thread::sleep(Duration::from_millis(5));
            program.signal(Signal::SIGCONT);
            stops += 1;
            std::thread::sleep(Duration::from_millis(10));
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    collector.fast();
    ctx.note(format!("stopped and continued it {stops} times in write()"));
    let ran = finish(&mut program, &collector, Duration::from_secs(30));
    let input = format!(
        "2 MiB on a stdin pipe, stdout a 4 KiB pipe read slowly, and the program stopped and continued {stops} times while it waited in write()"
    );
    judge_copy(&program, &ran, &data, &input)
}

/// What one run with a pause in the middle of the stream showed.
struct PauseRun {
    program: Program,
    /// Flags of the input's open file description before the program started.
    original: i32,
    /// ... in the middle of the pause.
    during: i32,
    /// ... after the program exited.
    after: i32,
    /// How long the pipe stayed empty, as the grader saw it.
    pause: Duration,
    /// CPU time the program used during the pause.
    cpu: Option<Duration>,
    /// Where the program was, sampled during the pause.
    samples: Vec<Option<SyscallState>>,
    /// The program exited while the writer was pausing.
    ended_early: bool,
    expected: Vec<u8>,
    ran: Ran,
}

/// Runs the program on a stdin pipe opened with O_APPEND (a flag a program
/// that overwrites the flags loses): 48 KiB waiting, a 500 ms pause, 48 KiB,
/// end of input.
fn pause_run(ctx: &Ctx, args: &[&str]) -> Result<PauseRun, Verdict> {
    let expected = pattern(2 * HALF, 3);
    let (input, mut feeder) = pipe().map(|(r, w)| (r, File::from(w)))?;
    set_flags(&input, get_flags(&input)? | OFlag::O_APPEND.bits())?;
    let original = get_flags(&input)?;
    feeder
        .write_all(&expected[..HALF])
        .map_err(|err| grader_error(format!("writing the first half: {err}")))?;
    let (out_read, out_write) = pipe()?;
    let collector = Collector::start(out_read, false);
    let theirs = dup(&input).map_err(|err| grader_error(format!("dup: {err}")))?;
    let mut program = spawn(ctx, args, Some(theirs), out_write)?;
    let pid = program.pid;
    if !collector.wait_for(HALF, within(Duration::from_secs(10))) {
        let ending = program
            .wait_exit(Duration::from_millis(200))
            .map(|status| format!("; {}", program.describe_exit(status)))
            .unwrap_or_default();
        return Err(Failure::new(format!(
            "{} were waiting in the stdin pipe; within 10 s only {} came out on stdout{ending}",
            bytes(HALF),
            bytes(collector.total())
        ))
        .expected("the bytes copied to stdout as soon as they can be read")
        .into());
    }
    // The program has copied the first half: from now on the pipe is empty.
    let started = Instant::now();
    let cpu_before = proc::cpu_time(pid);
    std::thread::sleep(PAUSE / 2);
    let during = get_flags(&input)?;
    let mut samples = Vec::new();
    for _ in 0..5 {
        samples.push(proc::syscall(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(PAUSE.saturating_sub(started.elapsed()));
    let cpu_after = proc::cpu_time(pid);
    let ended_early = program.exit_status().is_some();
    let pause = started.elapsed();
    // Our own read end keeps the pipe open: this write cannot fail with
    // EPIPE nor block (the pipe holds 64 KiB), even if the program is gone.
    feeder
        .write_all(&expected[HALF..])
        .map_err(|err| grader_error(format!("writing the second half: {err}")))?;
    drop(feeder);
    let ran = finish(&mut program, &collector, Duration::from_secs(10));
    let after = get_flags(&input)?;
    let cpu = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    Ok(PauseRun {
        program,
        original,
        during,
        after,
        pause,
        cpu,
        samples,
        ended_early,
        expected,
        ran,
    })
}

const PAUSE_INPUT: &str = "48 KiB on a stdin pipe, a 500 ms pause, 48 KiB more";

impl PauseRun {
    /// The program gave up while the writer was only pausing.
    fn ended_early(&self) -> Outcome {
        ensure(!self.ended_early, || {
            Failure::new(format!(
                "the program ended during the writer's 500 ms pause, after copying {} of {}: {}",
                bytes(self.ran.total.min(HALF)),
                bytes(self.expected.len()),
                self.ran
                    .status
                    .map(|s| self.program.describe_exit(s))
                    .unwrap_or_default()
            ))
            .expected("keep retrying: the writer still has the pipe open, more data will come")
            .cause("EAGAIN is not end of input: it means no data yet; only read() returning 0 is the end")
        })
    }

    fn judge_copy(&self) -> Outcome {
        judge_copy(&self.program, &self.ran, &self.expected, PAUSE_INPUT)
    }

    fn report(&self) -> Report {
        self.ran.report.expect("judge_copy checked it")
    }
}

pub const PAUSE_EAGAIN: Check = Check {
    name: "pause_eagain",
    points: 20,
    title: "the writer pauses 500 ms mid-stream, --retry-ms 10: every byte arrives, eagain is consistent with the pause (about 50), and the program uses almost no CPU while it waits",
    limit: secs(30),
    run: pause_eagain,
    proven_by: &[
        broken("broken_nonblocking_read_no_sleep", "busy-waiting"),
        broken("broken_nonblocking_read_long_sleep", "too few retries"),
        broken(
            "broken_nonblocking_read_eagain_is_eof",
            "EAGAIN is not end of input",
        ),
        broken("broken_nonblocking_read_never_nonblock", "eagain=0"),
    ],
};

fn pause_eagain(ctx: &Ctx) -> Outcome {
    let retry = RETRY_MS.to_string();
    let run = pause_run(ctx, &["--retry-ms", &retry])?;
    run.ended_early()?;
    run.judge_copy()?;
    let report = run.report();
    let pause_ms = run.pause.as_millis() as u64;
    ctx.note(format!(
        "pause {pause_ms} ms, cpu {:?}, eagain={}",
        run.cpu, report.eagain
    ));
    // About one EAGAIN per retry period while the pipe is empty. A loaded
    // machine makes sleeps longer, never shorter: wide margin below.
    let most = pause_ms * 12 / 10 / RETRY_MS + 5;
    let fewest = pause_ms * 4 / 10 / RETRY_MS;
    // Spinning shows as CPU time, or (on a machine so loaded that a spinning
    // program gets little CPU) as thousands of failed reads.
    let cpu_ms = run.cpu.map_or(0, |cpu| cpu.as_millis() as u64);
    let spinning = cpu_ms >= pause_ms / 5 || report.eagain > most * 10;
    ensure(!spinning, || {
        Failure::new(format!(
            "busy-waiting: during the writer's {pause_ms} ms pause the program used {cpu_ms} ms of CPU and {} reads failed with EAGAIN",
            thousands(report.eagain as usize)
        ))
        .expected(format!(
            "almost no CPU: one read and a {RETRY_MS} ms sleep per retry, about {} retries",
            pause_ms / RETRY_MS
        ))
        .cause("after EAGAIN, sleep --retry-ms milliseconds before the next read")
    })?;
    ensure(report.eagain <= most, || {
        Failure::new(format!(
            "eagain={} for a {pause_ms} ms pause with --retry-ms {RETRY_MS}: it retried more often than every {RETRY_MS} ms",
            report.eagain
        ))
        .expected(format!(
            "about {} (one failed read per {RETRY_MS} ms of pause), at most {most}",
            pause_ms / RETRY_MS
        ))
        .cause("after each EAGAIN, sleep the --retry-ms period (milliseconds) before reading again")
    })?;
    ensure(report.eagain >= fewest, || {
        let why = if report.eagain == 0 {
            "eagain=0: no read failed with EAGAIN while the pipe was empty, so the input was not non-blocking or EAGAIN was not counted"
        } else {
            "too few retries: it slept much longer than --retry-ms between them"
        };
        Failure::new(format!(
            "eagain={} for a {pause_ms} ms pause with --retry-ms {RETRY_MS}; {why}",
            report.eagain
        ))
        .expected(format!(
            "about {} (one failed read per {RETRY_MS} ms of pause), at least {fewest}",
            pause_ms / RETRY_MS
        ))
        .cause("set O_NONBLOCK on the input, count each read that fails with EAGAIN, sleep exactly --retry-ms ms")
    })
}

pub const NONBLOCKING_FLAGS: Check = Check {
    name: "nonblocking_flags",
    points: 15,
    title: "during the pause, the input pipe (opened by the grader with O_APPEND) is O_NONBLOCK and still O_APPEND: F_GETFL, then F_SETFL with O_NONBLOCK added",
    limit: secs(30),
    run: nonblocking_flags,
    proven_by: &[
        broken(
            "broken_nonblocking_read_never_nonblock",
            "was not non-blocking",
        ),
        broken("broken_nonblocking_read_overwrite_flags", "F_GETFL"),
    ],
};

fn nonblocking_flags(ctx: &Ctx) -> Outcome {
    let run = pause_run(ctx, &[])?;
    ctx.note(format!(
        "flags before {}, during {}, after {}",
        show_flags(run.original),
        show_flags(run.during),
        show_flags(run.after)
    ));
    let asleep_in = run
        .samples
        .iter()
        .flatten()
        .find_map(|s| match s {
            SyscallState::Blocked(n) => {
                Some(format!("; it was asleep in {}", proc::syscall_name(*n)))
            }
            SyscallState::Running => None,
        })
        .unwrap_or_default();
    ensure(is_nonblocking(run.during), || {
        Failure::new(format!(
            "while the writer paused, the input pipe was not non-blocking: its flags were {}{asleep_in}",
            show_flags(run.during)
        ))
        .expected("O_NONBLOCK set on the input fd in the default mode (`flags:` in /proc/PID/fdinfo/0 shows it too)")
        .cause("set it with fcntl(fd, F_GETFL), then fcntl(fd, F_SETFL, flags | O_NONBLOCK)")
    })?;
    let lost = run.original & !run.during & !OFlag::O_NONBLOCK.bits();
    ensure(lost == 0, || {
        Failure::new(format!(
            "O_NONBLOCK was set, but other flags were lost: the pipe was opened with {} and during the run it was {}",
            show_flags(run.original),
            show_flags(run.during)
        ))
        .expected(format!(
            "{}: the original flags plus O_NONBLOCK",
            show_flags(run.original | OFlag::O_NONBLOCK.bits())
        ))
        .cause("F_SETFL replaces every status flag: read them first with F_GETFL and set flags | O_NONBLOCK")
    })
}

pub const RESTORES_FLAGS: Check = Check {
    name: "restores_flags",
    points: 10,
    title: "after the program exits, at the end of input and on an error (stdout's reader gone), the input's open file description has its original flags again",
    limit: secs(30),
    run: restores_flags,
    proven_by: &[
        broken("broken_nonblocking_read_no_restore", "at the end of input"),
        broken(
            "broken_nonblocking_read_restore_on_success_only",
            "exited on an error",
        ),
    ],
};

fn restores_flags(ctx: &Ctx) -> Outcome {
    let run = pause_run(ctx, &[])?;
    ensure(run.ran.status.is_some(), || {
        Failure::new("the program did not exit at end of input, so its flags could not be checked")
            .expected("exit 0 at end of input, the input's flags restored")
    })?;
    ensure(run.after == run.original, || {
        Failure::new(format!(
            "at the end of input the program exited, and the input pipe was left with flags {}; before it started they were {}",
            show_flags(run.after),
            show_flags(run.original)
        ))
        .expected("the original flags back before exiting")
        .cause("stdin's open file description is shared with whoever started you (a shell whose terminal is left non-blocking breaks): save F_GETFL's result and F_SETFL it back before exiting")
    })?;

    // Now a fatal error: stdout's reader is gone, the first write fails with
    // EPIPE, while the input still has a writer (no end of input).
    let (input, mut feeder) = pipe().map(|(r, w)| (r, File::from(w)))?;
    set_flags(&input, get_flags(&input)? | OFlag::O_APPEND.bits())?;
    let original = get_flags(&input)?;
    feeder
        .write_all(&pattern(16 * 1024, 4))
        .map_err(|err| grader_error(format!("writing the input: {err}")))?;
    let (out_read, out_write) = pipe()?;
    drop(out_read);
    let theirs = dup(&input).map_err(|err| grader_error(format!("dup: {err}")))?;
    let mut program = spawn(ctx, &[], Some(theirs), out_write)?;
    let status = program.wait_exit(Duration::from_secs(5));
    let after = get_flags(&input)?;
    drop(feeder);
    let Some(status) = status else {
        return Err(Failure::new(
            "stdout was a pipe whose reader had closed; 5 s later the program was still running (write fails with EPIPE there)",
        )
        .expected("a write error on stdout is fatal: restore the input's flags, print the error, exit 1")
        .into());
    };
    ensure(status.signal().is_none(), || {
        Failure::new(format!(
            "stdout was a pipe whose reader had closed: {}",
            program.describe_exit(status)
        ))
        .expected("write fails with EPIPE (SIGPIPE ignored): restore the flags, print the error, exit 1")
        .cause("a program killed by a signal cannot restore anything: ignore SIGPIPE (Rust does by default) and handle EPIPE")
    })?;
    ensure(after == original, || {
        Failure::new(format!(
            "when the program exited on an error (stdout's reader gone, write failed with EPIPE), it left the input pipe with flags {}; before it started they were {} ({})",
            show_flags(after),
            show_flags(original),
            program.describe_exit(status)
        ))
        .expected("the original flags back on every way out, errors included")
        .cause("restore the flags on the error path too, not only at the normal end: e.g. restore right after the copy loop returns, whatever it returned")
    })
}

pub const BLOCKING_MODE: Check = Check {
    name: "blocking_mode",
    points: 10,
    title: "with --blocking and the writer pausing 500 ms: the fd stays blocking, the program sleeps in read() during the pause, eagain=0, every byte arrives",
    limit: secs(30),
    run: blocking_mode,
    proven_by: &[broken(
        "broken_nonblocking_read_ignores_blocking",
        "with --blocking",
    )],
};

fn blocking_mode(ctx: &Ctx) -> Outcome {
    let retry = RETRY_MS.to_string();
    let run = pause_run(ctx, &["--blocking", "--retry-ms", &retry])?;
    run.ended_early()?;
    ensure(!is_nonblocking(run.during), || {
        Failure::new(format!(
            "with --blocking, the input pipe was non-blocking during the writer's pause (flags {})",
            show_flags(run.during)
        ))
        .expected("with --blocking, the fd left as it was: blocking")
        .cause("set O_NONBLOCK only when --blocking is not given")
    })?;
    let in_read = run
        .samples
        .iter()
        .filter(|s| matches!(s, Some(SyscallState::Blocked(nr::READ | nr::READV))))
        .count();
    ensure(in_read * 2 > run.samples.len(), || {
        let seen: Vec<String> = run
            .samples
            .iter()
            .map(|s| match s {
                Some(SyscallState::Blocked(n)) => proc::syscall_name(*n),
                Some(SyscallState::Running) => "running".into(),
                None => "gone".into(),
            })
            .collect();
        Failure::new(format!(
            "with --blocking, during the writer's pause the program was asleep in read() in only {in_read} of {} samples of /proc/PID/syscall: {}",
            run.samples.len(),
            seen.join(", ")
        ))
        .expected("with --blocking, a read() that sleeps in the kernel until data or end of input arrives")
        .cause("in blocking mode do not sleep nor poll: just call read()")
    })?;
    run.judge_copy()?;
    let report = run.report();
    ensure(report.eagain == 0, || {
        Failure::new(format!(
            "with --blocking, the report says eagain={}",
            report.eagain
        ))
        .expected("eagain=0: a blocking read() never fails with EAGAIN")
        .cause("with --blocking, leave the fd blocking and count nothing but real EAGAIN results")
    })
}

/// A directory of the grader's, removed with what it holds when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, Verdict> {
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

pub const FIFO: Check = Check {
    name: "fifo",
    points: 8,
    title: "PATH is a FIFO whose writer comes late and pauses: the program waits for it and copies every byte",
    limit: secs(30),
    run: fifo,
    proven_by: &[broken(
        "broken_nonblocking_read_open_nonblock",
        "without O_NONBLOCK",
    )],
};

fn fifo(ctx: &Ctx) -> Outcome {
    let dir = TempDir::new()?;
    let path = dir.0.join("fifo");
    mkfifo(&path, Mode::from_bits_truncate(0o600))
        .map_err(|err| grader_error(format!("mkfifo: {err}")))?;
    let data = Arc::new(pattern(512 * 1024, 5));
    let (out_read, out_write) = pipe()?;
    let collector = Collector::start(out_read, false);
    let arg = path.to_string_lossy().into_owned();
    let mut program = spawn(ctx, &[&arg], None, out_write)?;
    let pid = program.pid;
    // The writer comes late: wait until the program sleeps in open(), as
    // opening a FIFO without O_NONBLOCK does while it has no writer.
    let deadline = within(Duration::from_secs(3));
    while Instant::now() < deadline && program.exit_status().is_none() {
        if matches!(
            proc::syscall(pid),
            Some(SyscallState::Blocked(nr::OPEN | nr::OPENAT))
        ) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(50));
    // Non-blocking open for writing fails with ENXIO while no reader has the
    // FIFO open; it never waits.
    let writer = loop {
        if let Some(status) = program.exit_status() {
            return Err(Failure::new(format!(
                "PATH was a FIFO with no writer yet; the program did not wait for one: {} (it copied {})",
                program.describe_exit(status),
                bytes(collector.total())
            ))
            .expected("open the FIFO without O_NONBLOCK: open() then waits for a writer; set O_NONBLOCK afterwards with fcntl")
            .cause("a FIFO opened with O_NONBLOCK and no writer reads as end of input (read() returns 0) at once")
            .into());
        }
        let flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        match open(&path, flags, Mode::empty()) {
            Ok(fd) => break fd,
            Err(Errno::ENXIO) if Instant::now() < deadline + Duration::from_secs(3) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(err) => {
                return Err(Failure::new(format!(
                    "PATH was a FIFO; after 6 s the program had still not opened it for reading (the grader's open for writing: {err})"
                ))
                .expected("open(PATH) for reading at start")
                .into());
            }
        }
    };
    set_flags(&writer, get_flags(&writer)? & !OFlag::O_NONBLOCK.bits())?;
    feed(
        writer,
        data.clone(),
        vec![(data.len() / 2, Duration::from_millis(100))],
    );
    let ran = finish(&mut program, &collector, Duration::from_secs(15));
    let input = "a FIFO as PATH (512 KiB, with a 100 ms pause)";
    judge_copy(&program, &ran, &data, input)?;
    if let Some(report) = ran.report {
        ctx.note(format!(
            "reads={} bytes={} eagain={}",
            report.reads, report.bytes, report.eagain
        ));
    }
    Ok(())
}

pub const REGULAR_FILE: Check = Check {
    name: "regular_file",
    points: 7,
    title: "PATH is a 3 MiB regular file: every byte arrives, and eagain=0 (O_NONBLOCK does not apply to regular files)",
    limit: secs(30),
    run: regular_file,
    proven_by: &[broken(
        "broken_nonblocking_read_zero_is_would_block",
        "no effect on regular files",
    )],
};

fn regular_file(ctx: &Ctx) -> Outcome {
    let dir = TempDir::new()?;
    let path = dir.0.join("input.bin");
    let data = pattern((3 << 20) + 321, 6);
    std::fs::write(&path, &data).map_err(|err| grader_error(format!("write file: {err}")))?;
    let (out_read, out_write) = pipe()?;
    let collector = Collector::start(out_read, false);
    let arg = path.to_string_lossy().into_owned();
    let mut program = spawn(ctx, &[&arg], None, out_write)?;
    let ran = finish(&mut program, &collector, Duration::from_secs(15));
    let input = "a 3 MiB regular file as PATH";
    judge_copy(&program, &ran, &data, input)?;
    let report = ran.report.unwrap();
    ensure(report.eagain == 0, || {
        Failure::new(format!(
            "with {input}, the report says eagain={}",
            report.eagain
        ))
        .expected("eagain=0: O_NONBLOCK has no effect on regular files, read() never fails with EAGAIN there")
        .cause("count a would-block only when read() fails with EAGAIN; read() returning 0 is the end of the file, not \"no data yet\"")
    })
}

/// Runs the program with `args` (stdin /dev/null) until it exits.
fn run_to_exit(ctx: &Ctx, args: &[&str]) -> Result<(Program, Option<ExitStatus>), Verdict> {
    let (out_read, out_write) = pipe()?;
    let _collector = Collector::start(out_read, false);
    let mut program = spawn(ctx, args, None, out_write)?;
    let status = program.wait_exit(Duration::from_secs(5));
    Ok((program, status))
}

pub const ERRORS: Check = Check {
    name: "errors",
    points: 5,
    title: "a missing PATH: exit 1 and one line on stderr naming it; an unknown flag or a bad --retry-ms: a usage message and exit 2",
    limit: secs(30),
    run: errors,
    proven_by: &[broken(
        "broken_nonblocking_read_unwrap_open",
        "exited with code 101",
    )],
};

fn errors(ctx: &Ctx) -> Outcome {
    let missing = format!("/nonexistent-iomux-{}/no-such-file", std::process::id());
    let (program, status) = run_to_exit(ctx, &[&missing])?;
    let tail = program.stderr_tail();
    let how = status
        .map(|s| program.describe_exit(s))
        .unwrap_or_else(|| "it was still running 5 s later".into());
    ensure(status.and_then(|s| s.code()) == Some(1), || {
        Failure::new(format!("PATH {missing} does not exist: {how}"))
            .expected("exit code 1 and one line on stderr naming the path and the reason, no panic")
            .cause("report a failed open with the path and the error, then exit 1 (labkit's or_fail does both)")
    })?;
    ensure(
        tail.contains(&missing) && !tail.contains("panicked"),
        || {
            Failure::new(format!(
                "PATH {missing} does not exist: exit code 1, but stderr does not name the path in a message: {}",
                quote(tail.as_bytes())
            ))
            .expected("one line on stderr naming the path and the reason")
        },
    )?;
    for args in [&["--no-such-flag"][..], &["--retry-ms", "soon"][..]] {
        let (program, status) = run_to_exit(ctx, args)?;
        let shown = args.join(" ");
        let how = status
            .map(|s| program.describe_exit(s))
            .unwrap_or_else(|| "it was still running 5 s later".into());
        ensure(status.and_then(|s| s.code()) == Some(2), || {
            Failure::new(format!("with arguments `{shown}`: {how}"))
                .expected("a usage message on stderr and exit code 2")
        })?;
        let tail = program.stderr_tail().to_lowercase();
        ensure(tail.contains("usage"), || {
            Failure::new(format!(
                "with arguments `{shown}`: exit code 2, but no usage message on stderr: {}",
                quote(tail.as_bytes())
            ))
            .expected("a usage message on stderr (`usage: nonblocking_read [--blocking] [--retry-ms MS] [PATH]`)")
        })?;
    }
    Ok(())
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
