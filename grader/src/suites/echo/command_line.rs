//! The command line: bad ones are refused the contract's way, before the
//! server listens.

use super::{echo, start};
use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, secs};
use crate::harness::process::{Program, SpawnOptions};
use crate::harness::text::quote;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

pub(super) const USAGE: Check = Check {
    name: "usage",
    points: 4,
    title: "bad command lines (an unknown flag, a port that is not a number, --port without its value, an extra argument, and the lab's own flags without a value or with a bad one) get a usage message on stderr and exit code 2, without listening; a good one starts and echoes",
    limit: secs(40),
    run: usage,
    proven_by: &[
        broken(
            "broken_poll_echo_usage_exits_one",
            "exit 2 for a bad command line",
        ),
        broken(
            "broken_poll_echo_ignores_bad_arguments",
            "the bad argument was not refused",
        ),
        broken(
            "broken_async_echo_zero_timeout",
            "the contract makes --idle-timeout-ms 0 a usage error",
        ),
    ],
};

/// Command lines the contract calls usage errors.
/// Command lines every server refuses (its own flags aside).
pub(crate) const BAD: &[&[&str]] = &[
    &["--no-such-flag"],
    &["--port", "http"],
    &["--port"],
    &["--port", "0", "extra"],
];

const NO_VALUE: &str =
    "a flag without its value is a usage error: check that each flag has one before using it";
const NOT_A_NUMBER: &str = "a value that is not a number is a usage error: parse it and refuse it, do not fall back to the default";

fn usage(ctx: &Ctx) -> Outcome {
    // The points are for a server that works: a good command line first.
    let mut server = start(ctx)?;
    let mut client = ctx.connect(&server)?;
    echo(&mut client, b"hello\n")?;
    server.alive("after one line")?;
    drop(client);
    drop(server);
    for args in BAD {
        refused(ctx, args, None)?;
    }
    for flag in ctx.lab.echo().flags {
        refused(ctx, &[flag], Some(NO_VALUE))?;
        refused(ctx, &[flag, "soon"], Some(NOT_A_NUMBER))?;
    }
    for bad in ctx.lab.echo().bad_args {
        refused(ctx, bad.args, Some(bad.why))?;
    }
    Ok(())
}

/// `args` must end the program with exit code 2 and a message on stderr,
/// and no `listening on` line; `why` is the likely cause if they are taken.
pub(crate) fn refused(ctx: &Ctx, args: &[&str], why: Option<&str>) -> Outcome {
    let shown = args.join(" ");
    let mut program = ctx.spawn(SpawnOptions {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..SpawnOptions::default()
    })?;
    // It should end at once; one that listens has already failed.
    let (status, listened) = exit_or_listening(&mut program, Duration::from_secs(5));
    let code = status.and_then(|s| s.code());
    if code == Some(2) {
        program.expect_exit();
    }
    let how = match status {
        Some(status) => program.describe_exit(status),
        None if listened => "it kept running".to_string(),
        None => "it was still running 5 s later".to_string(),
    };
    ensure(code == Some(2) && !listened, || {
        let failure = Failure::new(format!(
            "started with `{shown}`: {how}{}",
            if listened {
                ", after printing `listening on`"
            } else {
                ""
            }
        ))
        .expected("a usage message on stderr and exit code 2, before listening");
        match code {
            Some(1) => failure.cause(
                "a usage error is not a fatal error: exit 2 for a bad command line (1 is for errors such as a port already in use)",
            ),
            _ if listened || status.is_none() => failure.cause(why.unwrap_or(
                "the bad argument was not refused: check every argument, and refuse what you do not know, before listening",
            )),
            _ => failure,
        }
    })?;
    let stderr = program.stderr_tail();
    ensure(!stderr.trim().is_empty(), || {
        Failure::new(format!(
            "started with `{shown}`: exit code 2, but nothing on stderr"
        ))
        .expected(format!(
            "a usage message on stderr, e.g. {}",
            quote(format!("usage: {} [--port PORT]", ctx.lab.name).as_bytes())
        ))
    })
}

/// Waits until the program exits or prints `listening on`, for at most
/// `within`: how it ended (if it did), and whether it listened.
pub(crate) fn exit_or_listening(
    program: &mut Program,
    within: Duration,
) -> (Option<ExitStatus>, bool) {
    let deadline = Instant::now() + within;
    loop {
        let status = program.exit_status();
        let listened = program
            .drain_lines()
            .iter()
            .any(|line| line.text.starts_with("listening on"));
        if status.is_some() || listened || Instant::now() >= deadline {
            return (status, listened);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
