//! A machine without io_uring: the server says so in one line and exits 1.

use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, secs};
use crate::harness::proc::nr;
use crate::harness::process::SpawnOptions;
use crate::harness::seccomp::Refusal;
use crate::suites::echo::command_line::exit_or_listening;
use nix::errno::Errno;
use std::time::Duration;

pub(super) const NO_RING: Check = Check {
    name: "no_ring",
    points: 5,
    title: "when io_uring_setup fails (EPERM, as under Docker's seccomp profile, then ENOSYS, as on an old kernel) the server prints one line on stderr and exits 1, without listening",
    limit: secs(30),
    run: no_ring,
    proven_by: &[broken(
        "broken_uring_echo_unchecked_setup",
        "the ring's setup failed",
    )],
};

fn no_ring(ctx: &Ctx) -> Outcome {
    for errno in [Errno::EPERM, Errno::ENOSYS] {
        refused_a_ring(ctx, errno)?;
    }
    Ok(())
}

/// Starts the server with io_uring_setup refused with `errno` (a seccomp
/// filter) and expects one line on stderr and exit code 1.
fn refused_a_ring(ctx: &Ctx, errno: Errno) -> Outcome {
    let mut program = ctx.spawn(SpawnOptions {
        args: ctx.lab.echo().args.iter().map(|a| a.to_string()).collect(),
        refuse: Some(Refusal {
            syscalls: &[nr::IO_URING_SETUP as u32],
            errno,
        }),
        ..SpawnOptions::default()
    })?;
    let (status, listened) = exit_or_listening(&mut program, Duration::from_secs(5));
    let code = status.and_then(|s| s.code());
    if code == Some(1) {
        program.expect_exit();
    }
    let stderr = program.stderr_tail();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let setting = format!(
        "with io_uring_setup failing with {errno} ({})",
        errno.desc()
    );
    let how = match status {
        Some(status) => program.describe_exit(status),
        None if listened => "it printed `listening on` and kept running".to_string(),
        None => "it was still running 5 s later".to_string(),
    };
    ensure(code == Some(1) && !listened, || {
        let failure = Failure::new(format!("started {setting}: {how}")).expected(
            "one line on stderr naming what failed and why, and exit code 1, before listening",
        );
        if listened || status.is_none() {
            failure.cause("the ring's setup failed and the server went on without it: check what IoUring::new returns (in C, liburing's io_uring_queue_init returns -errno: a check for == -1 catches -EPERM by accident and misses -ENOSYS; check for < 0), and set the ring up before the listening line")
        } else if stderr.contains("panicked") {
            failure.cause("the ring's setup failed and the program panicked (an unwrap or expect on IoUring::new): an unavailable io_uring is an expected error, reported in one line with exit code 1 (labkit::fail does that)")
        } else {
            failure.cause("the ring's setup failed: report it in one line on stderr and exit with code 1, the contract's code for a fatal error")
        }
    })?;
    ensure(lines.len() == 1, || {
        Failure::new(format!(
            "started {setting}: exit code 1, with {} lines on stderr:\n{}",
            lines.len(),
            stderr.trim_end()
        ))
        .expected("exactly one line on stderr, naming what failed and why (e.g. `uring_echo: cannot set up io_uring: Operation not permitted`)")
        .cause("print one line for a fatal error: what failed (the io_uring setup) and why (the error)")
    })
}
