//! Checks of the nonblocking_read lab: a copier from a pipe, FIFO or file to
//! stdout, non-blocking by default.
//!
//! The grader owns every pipe the program touches. It keeps its own reference
//! to the read end it gives the program as stdin: that is the same open file
//! description, so `fcntl(F_GETFL)` on the grader's end shows the flags the
//! program set (what `flags:` in /proc/PID/fdinfo/0 shows), during the run and
//! after the program has exited. The program's stdout is a pipe read by a
//! thread of the grader, which can be told to read slowly.
//!
//! The files: `harness.rs` (pipes, the stdout collector and stdin feeder,
//! running the program, the report line, the verdict on a copy), `pause.rs`
//! (the run with a paused writer that several checks share), and the checks
//! by theme: `copy.rs`, `flags.rs`, `inputs.rs`.

use crate::check::{Ctx, Failure, Outcome, Suite, ensure, start_cause};

mod copy;
mod flags;
mod harness;
mod inputs;
mod pause;

pub static SUITE: Suite = Suite {
    name: "nonblocking_read",
    checks: &[
        copy::PIPE_COPY,
        copy::SHORT_WRITES,
        copy::PAUSE_EAGAIN,
        flags::NONBLOCKING_FLAGS,
        flags::RESTORES_FLAGS,
        flags::BLOCKING_MODE,
        inputs::FIFO,
        inputs::REGULAR_FILE,
        inputs::ERRORS,
    ],
    hints: include_str!("hints.txt"),
    start: Some(started),
    needs: None,
};

/// The start every check relies on: on an empty stdin the program does
/// not crash (a stub reaches its todo!() at once). Whether it exits, and
/// what it prints, the checks judge.
fn started(ctx: &Ctx) -> Outcome {
    let (program, status) = harness::run_to_exit(ctx, &[])?;
    let Some(status) = status else {
        return Ok(());
    };
    let ending = program.describe_exit(status);
    let crashed = status.code().is_none() || ending.contains("panicked");
    ensure(!crashed, || {
        Failure::new(format!("on an empty stdin, {ending}"))
            .expected("`reads=0 bytes=0 eagain=E` on stderr and exit code 0")
            .cause(start_cause(&ending))
    })
}
