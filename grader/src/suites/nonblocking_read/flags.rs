//! The input's status flags: O_NONBLOCK added to the others, the original
//! flags restored on every way out, and --blocking leaving the fd blocking.

use super::harness::{get_flags, is_nonblocking, pattern, pipe, set_flags, show_flags, spawn};
use super::pause::{RETRY_MS, pause_run};
use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, grader_error, secs};
use crate::harness::proc::{self, SyscallState, nr};
use nix::fcntl::OFlag;
use nix::unistd::dup;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

pub(super) const NONBLOCKING_FLAGS: Check = Check {
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

pub(super) const RESTORES_FLAGS: Check = Check {
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

pub(super) const BLOCKING_MODE: Check = Check {
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
