//! Other inputs and the command line: PATH a FIFO or a regular file, and
//! the errors (a missing PATH, bad arguments).

use super::harness::{
    Collector, TempDir, feed, finish, get_flags, judge_copy, pattern, pipe, run_to_exit, set_flags,
    spawn,
};
use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, grader_error, secs, within};
use crate::harness::proc::{self, SyscallState, nr};
use crate::harness::text::{bytes, quote};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::unistd::mkfifo;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) const FIFO: Check = Check {
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
    // Readable by everyone: as root, the program runs as another user.
    mkfifo(&path, Mode::from_bits_truncate(0o644))
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

pub(super) const REGULAR_FILE: Check = Check {
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

pub(super) const ERRORS: Check = Check {
    name: "errors",
    points: 5,
    title: "a missing PATH: exit 1 and one line on stderr naming it; an unknown flag or a bad --retry-ms: a usage message and exit 2",
    limit: secs(30),
    run: errors,
    proven_by: &[
        broken(
            "broken_nonblocking_read_unwrap_open",
            "exited with code 101",
        ),
        broken(
            "broken_nonblocking_read_usage_exits_one",
            "exit 2 for a bad command line",
        ),
    ],
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
        let code = status.and_then(|s| s.code());
        ensure(code == Some(2), || {
            let failure = Failure::new(format!("with arguments `{shown}`: {how}"))
                .expected("a usage message on stderr and exit code 2");
            match code {
                Some(1) => failure.cause(
                    "a usage error is not a fatal error: exit 2 for a bad command line (1 is for errors such as a missing file)",
                ),
                Some(0) | None => failure.cause(
                    "the bad argument was not refused: check every argument before starting to copy",
                ),
                _ => failure,
            }
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
