//! Copying through pipes: a large stream, short writes on a slow stdout, and
//! a writer that pauses (EAGAIN, retries, no busy-waiting).

use super::harness::{Collector, copy_pipe, feed, finish, judge_copy, pattern, pipe, spawn};
use super::pause::{RETRY_MS, pause_run};
use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, secs, within};
use crate::harness::proc::{self, SyscallState, nr};
use crate::harness::text::{bytes, thousands};
use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::signal::Signal;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) const PIPE_COPY: Check = Check {
    name: "pipe_copy",
    points: 15,
    title: "8 MiB of binary data through a pipe on stdin (stdout a pipe too) arrive byte for byte; the report line says reads=R bytes=B eagain=E with B the bytes that arrived and R the reads that returned data; an empty input reports reads=0 bytes=0",
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
        broken(
            "broken_nonblocking_read_counts_eof_read",
            "the final read(), the one that returned 0",
        ),
    ],
};

fn pipe_copy(ctx: &Ctx) -> Outcome {
    let data = Arc::new(pattern(8 << 20, 1));
    let (program, ran, capacity) = copy_pipe(ctx, data.clone(), Duration::from_secs(30))?;
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
    })?;
    empty_input(ctx)
}

/// An input that ends at once: no read returns data, so `reads=0 bytes=0`.
fn empty_input(ctx: &Ctx) -> Outcome {
    let (program, ran, _) = copy_pipe(ctx, Arc::new(Vec::new()), Duration::from_secs(10))?;
    let input = "an empty stdin pipe (its writer closed at once)";
    // Before the general judgement, which would only say R is out of range.
    if let Some(report) = ran.report {
        ensure(report.reads == 0 && report.bytes == 0, || {
            let failure = Failure::new(format!(
                "with {input}, the report says reads={} bytes={}",
                report.reads, report.bytes
            ))
            .expected(
                "`reads=0 bytes=0`: R counts the read() calls that returned data, and none did",
            );
            if report.reads == 1 && report.bytes == 0 {
                failure.cause("the final read(), the one that returned 0, was counted: 0 is end of input, not data; count a read only when it returned bytes")
            } else {
                failure.cause(
                    "count a read only when it returned bytes, and add to bytes= what it returned",
                )
            }
        })?;
    }
    judge_copy(&program, &ran, &[], input)
}

pub(super) const SHORT_WRITES: Check = Check {
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

pub(super) const PAUSE_EAGAIN: Check = Check {
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
