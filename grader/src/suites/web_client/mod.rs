//! Checks of the web_client lab: an HTTP/1.0 client fetching many URLs at
//! once, with non-blocking connects, one readiness loop and a deadline per
//! fetch.
//!
//! The program is a client, so the grader is the servers: `site.rs` (small
//! HTTP/1.0 servers answering by path with scripted replies, a port that
//! refuses, a black hole), `run.rs` (the output folder, running the client,
//! its lines and the verdicts most checks share), and the checks by theme:
//! `fetch.rs` (what one fetch gets right), `window.rs` (many at once, the
//! limit, the sliding window, completion order, fds, 1,000 at once), `failures.rs`
//! (refused, never connected, stalled, reset, the deadline per fetch) and
//! `process.rs` (how it waits, its threads, bad command lines and folders,
//! a stdout nobody reads).

use crate::check::{Ctx, Failure, Outcome, Suite, Verdict, ensure, grader_error, start_cause};
use std::time::Duration;

mod failures;
mod fetch;
mod process;
mod run;
mod site;
mod window;

pub static SUITE: Suite = Suite {
    name: "web_client",
    checks: &[
        fetch::ONE_FETCH,
        fetch::STATUS_CODES,
        window::PARALLEL,
        window::LIMIT,
        window::SLIDING_WINDOW,
        window::COMPLETION_ORDER,
        failures::REFUSED,
        failures::BLACK_HOLE,
        failures::DEADLINE_PER_FETCH,
        failures::STALLED,
        failures::RESET,
        fetch::BAD_RESPONSE,
        fetch::LARGE_BODY,
        window::FD_BOUND,
        window::SCALE,
        process::IDLE,
        process::SINGLE_THREAD,
        process::USAGE,
        process::BAD_DIR,
        process::STDOUT_GONE,
        fetch::SHORT_REQUEST,
    ],
    hints: include_str!("hints.txt"),
    start: Some(started),
    needs: None,
};

/// The start every check relies on: given one URL of a server that answers
/// at once, the program does not crash (a stub reaches its todo!() at
/// once). What it prints and how it exits, the checks judge.
fn started(ctx: &Ctx) -> Outcome {
    let site = start_site(vec![("/hello".into(), site::Reply::ok(b"hello\n"))])?;
    let dir = run::OutDir::new()?;
    let mut run = run::start(ctx, &dir.path, &[], &[site.url("/hello")])?;
    let Some(status) = run.finish(Duration::from_secs(5)) else {
        return Ok(());
    };
    let ending = run.program.describe_exit(status);
    let crashed = status.code().is_none() || ending.contains("panicked");
    ensure(!crashed, || {
        Failure::new(format!(
            "given one URL of a server that answers at once, {ending}"
        ))
        .expected("`1 URL status=200 bytes=6`, `done ok=1 failed=0`, exit code 0")
        .cause(start_cause(&ending))
    })
}

/// A site of the grader's, or a grader error.
fn start_site(routes: Vec<(String, site::Reply)>) -> Result<site::Site, Verdict> {
    site::Site::start(routes)
        .map_err(|err| grader_error(format!("cannot start an HTTP server: {err}")))
}

/// `n` routes `{prefix}{i}` for i in 1..=n, each with the reply `reply(i)`.
fn numbered(
    prefix: &str,
    n: usize,
    reply: impl Fn(usize) -> site::Reply,
) -> Vec<(String, site::Reply)> {
    (1..=n)
        .map(|i| (format!("{prefix}{i}"), reply(i)))
        .collect()
}

/// The URLs of [`numbered`]'s routes: `{prefix}1` to `{prefix}{n}` on `site`.
fn urls(site: &site::Site, prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| site.url(&format!("{prefix}{i}"))).collect()
}
