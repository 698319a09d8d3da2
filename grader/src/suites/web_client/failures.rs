//! Fetches that fail, each without disturbing the others: a refused
//! connect, a connect that never completes, a server that stalls or
//! trickles, a reset in the middle of the body; and the deadline counted
//! per fetch, not for the whole program.

use super::fetch::only_files;
use super::run::{self, Fetched, OutDir, Run};
use super::site::{self, BlackHole, Refusing, Reply, Step};
use super::{numbered, start_site, urls};
use crate::check::{Check, Ctx, Failure, Outcome, Verdict, broken, grader_error, secs};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

fn ok(body: &[u8]) -> Fetched {
    Fetched::Status {
        code: 200,
        bytes: body.len() as u64,
    }
}

fn error(reason: &str) -> Fetched {
    Fetched::Error(reason.into())
}

pub(super) const REFUSED: Check = Check {
    name: "refused",
    points: 8,
    title: "URL 2 of 3 is a port that refuses connections: `2 URL error=refused`, fetches 1 and 3 succeed, `done ok=2 failed=1`, exit 1",
    limit: secs(20),
    run: refused,
    proven_by: &[broken(
        "broken_web_client_writable_connected",
        "writable only says",
    )],
};

fn refused(ctx: &Ctx) -> Outcome {
    let (first, third) = (b"first\n".to_vec(), b"third\n".to_vec());
    let site = start_site(vec![
        ("/r/1".into(), Reply::ok(&first)),
        ("/r/3".into(), Reply::ok(&third)),
    ])?;
    let refusing =
        Refusing::new().map_err(|err| grader_error(format!("cannot bind a port: {err}")))?;
    let urls = vec![
        site.url("/r/1"),
        format!("http://{}/r/2", refusing.addr),
        site.url("/r/3"),
    ];
    let dir = OutDir::new()?;
    let mut run = run::start(ctx, &dir.path, &[], &urls)?;
    let status = run.finish(Duration::from_secs(15));
    run.expect(2, &error("refused"), status).map_err(|failure| {
        failure.cause("writable only says the connect finished, not that it succeeded: when the socket becomes writable, read getsockopt(SO_ERROR); ECONNREFUSED there is error=refused")
    })?;
    run.expect_all(&[ok(&first), error("refused"), ok(&third)], status)?;
    only_files(&dir, &["1", "3"], &mut run)
}

/// How late after its deadline a timed-out fetch's line may come on a
/// loaded machine, and how early (a timer rounded down).
const LATE: Duration = Duration::from_millis(1500);
const EARLY: Duration = Duration::from_millis(50);

/// Fetch `i` failed with `timeout` about `deadline` after the start: not
/// before (less a rounding), not much after.
pub(super) fn timed_out_on_time(
    run: &mut Run,
    i: usize,
    deadline: Duration,
    status: Option<std::process::ExitStatus>,
) -> Outcome {
    run.expect(i, &error("timeout"), status)?;
    let at = run.ended(i).map(|(heard, _)| heard.at).unwrap_or_default();
    let url = run.urls[i - 1].clone();
    if at + EARLY < deadline {
        return Err(Failure::new(format!(
            "fetch {i} ({url}) failed with timeout after {:.2} s, before its deadline\n{}",
            at.as_secs_f64(),
            run.story(status)
        ))
        .expected(format!(
            "error=timeout {:.1} s after its connect started",
            deadline.as_secs_f64()
        ))
        .cause("the deadline is --timeout-ms milliseconds after the fetch's connect started")
        .into());
    }
    if at > deadline + LATE {
        return Err(Failure::new(format!(
            "fetch {i} ({url}) failed with timeout only after {:.2} s\n{}",
            at.as_secs_f64(),
            run.story(status)
        ))
        .expected(format!(
            "error=timeout {:.1} s after its connect started (at most {:.1} s late)",
            deadline.as_secs_f64(),
            LATE.as_secs_f64()
        ))
        .cause("the readiness call's timeout must be the time left until the earliest deadline, and an expired fetch fails as soon as the call returns")
        .into());
    }
    Ok(())
}

pub(super) const BLACK_HOLE: Check = Check {
    name: "black_hole",
    points: 10,
    title: "--timeout-ms 1500, URL 1 a host whose connect never completes, URLs 2-4 answered at once: 2-4 succeed within 1 s; fetch 1 fails with `timeout` between 1.5 s and 3 s",
    limit: secs(30),
    run: black_hole,
    proven_by: &[broken(
        "broken_web_client_blocking_connect",
        "a blocking connect",
    )],
};

fn black_hole(ctx: &Ctx) -> Outcome {
    let hole = BlackHole::new().map_err(grader_error)?;
    let bodies: Vec<Vec<u8>> = (0..=4)
        .map(|i| format!("fast {i}\n").into_bytes())
        .collect();
    let site = start_site(numbered("/h/", 4, |i| Reply::ok(&bodies[i])))?;
    let mut urls = vec![format!("http://{}/h/1", hole.addr)];
    urls.extend((2..=4).map(|i| site.url(&format!("/h/{i}"))));
    let dir = OutDir::new()?;
    let mut run = run::start(ctx, &dir.path, &["--timeout-ms", "1500"], &urls)?;
    // The fast ones first: their lines must come while fetch 1 still
    // waits for its connect.
    let fast_by = run.started + Duration::from_secs(1);
    while (2..=4).any(|i| run.ended(i).is_none()) && run.next_line(fast_by).is_some() {}
    let missing: Vec<usize> = (2..=4).filter(|&i| run.ended(i).is_none()).collect();
    if !missing.is_empty() {
        return Err(Failure::new(format!(
            "fetches {missing:?}, answered at once, had no line 1 s after the start, while fetch 1's connect (to a host that never answers) was in progress\n{}",
            run.story(None)
        ))
        .expected("fetches 2-4 end within a few ms; only fetch 1 waits")
        .cause("a blocking connect: one host that never answers stalls everything until the kernel gives up (minutes). Make each socket non-blocking before connect; EINPROGRESS means in progress")
        .into());
    }
    let status = run.finish(Duration::from_secs(8));
    timed_out_on_time(&mut run, 1, Duration::from_millis(1500), status)?;
    run.expect_all(
        &[
            error("timeout"),
            ok(&bodies[2]),
            ok(&bodies[3]),
            ok(&bodies[4]),
        ],
        status,
    )?;
    only_files(&dir, &["2", "3", "4"], &mut run)
}

pub(super) const DEADLINE_PER_FETCH: Check = Check {
    name: "deadline_per_fetch",
    points: 8,
    title: "--parallel 1 --timeout-ms 1500 with 4 URLs each answered after 600 ms: all succeed (2.4 s in all: each fetch's deadline counts from its own connect)",
    limit: secs(30),
    run: deadline_per_fetch,
    proven_by: &[broken(
        "broken_web_client_global_deadline",
        "one deadline for the whole program",
    )],
};

fn deadline_per_fetch(ctx: &Ctx) -> Outcome {
    let bodies: Vec<Vec<u8>> = (0..=4)
        .map(|i| format!("answer {i}\n").into_bytes())
        .collect();
    let site = start_site(numbered("/d/", 4, |i| {
        Reply::ok(&bodies[i]).after(Duration::from_millis(600))
    }))?;
    let urls = urls(&site, "/d/", 4);
    let dir = OutDir::new()?;
    let mut run = run::start(
        ctx,
        &dir.path,
        &["--parallel", "1", "--timeout-ms", "1500"],
        &urls,
    )?;
    let status = run.finish(Duration::from_secs(15));
    let want: Vec<Fetched> = (1..=4).map(|i| ok(&bodies[i])).collect();
    run.expect_all(&want, status).map_err(|failure| {
        let timed_out = (1..=4).find(|&i| matches!(run.ended(i), Some((_, Fetched::Error(r))) if r == "timeout"));
        match timed_out {
            Some(i) => failure.cause(format!(
                "fetch {i} was in progress for well under 1.5 s when it failed: one deadline for the whole program (or counted from an earlier moment); each fetch's deadline is T ms after its own connect started"
            )),
            None => failure,
        }
    })?;
    Ok(())
}

pub(super) const STALLED: Check = Check {
    name: "stalled",
    points: 8,
    title: "--timeout-ms 1500: a server that stops in the middle of its header and one that trickles its body a byte every 100 ms for ever both fail with `timeout` about 1.5 s after their connect (no file left); a third fetch succeeds",
    limit: secs(30),
    run: stalled,
    proven_by: &[broken(
        "broken_web_client_connect_deadline",
        "the whole fetch",
    )],
};

fn stalled(ctx: &Ctx) -> Outcome {
    let third = b"third\n".to_vec();
    let site = start_site(vec![
        (
            "/s/1".into(),
            Reply(vec![
                Step::Send(Arc::new(b"HTTP/1.0 200 OK\r\nContent-Ty".to_vec())),
                Step::Hold,
            ]),
        ),
        (
            "/s/2".into(),
            Reply(vec![
                Step::Send(Arc::new(site::head(200, "OK"))),
                Step::Trickle(Duration::from_millis(100)),
            ]),
        ),
        ("/s/3".into(), Reply::ok(&third)),
    ])?;
    let urls = urls(&site, "/s/", 3);
    let dir = OutDir::new()?;
    let mut run = run::start(ctx, &dir.path, &["--timeout-ms", "1500"], &urls)?;
    let status = run.finish(Duration::from_secs(5));
    let whole = |failure: Failure| {
        failure.cause("the deadline covers the whole fetch, T ms after its connect started, whether it is still connecting, sending or receiving (a deadline on the connect only, or one pushed back by each read, never fires here)")
    };
    for i in 1..=2 {
        timed_out_on_time(&mut run, i, Duration::from_millis(1500), status).map_err(
            |v| match v {
                Verdict::Fail(failure) => Verdict::Fail(whole(failure)),
                other => other,
            },
        )?;
    }
    run.expect_all(&[error("timeout"), error("timeout"), ok(&third)], status)?;
    only_files(&dir, &["3"], &mut run)
}

pub(super) const RESET: Check = Check {
    name: "reset",
    points: 8,
    title: "a server resets the connection after 64 KiB of body: `error=reset`, and neither DIR/1 nor DIR/1.part remains (a DIR/1 left by an earlier run is gone too); fetch 2 succeeds; exit 1",
    limit: secs(20),
    run: reset,
    proven_by: &[broken(
        "broken_web_client_partial_file",
        "partial file was left behind",
    )],
};

fn reset(ctx: &Ctx) -> Outcome {
    let partial = site::Pattern::bytes(5, 64 << 10);
    let second = b"second\n".to_vec();
    let site = start_site(vec![
        (
            "/x/1".into(),
            Reply(vec![
                Step::Send(Arc::new([site::head(200, "OK"), partial].concat())),
                Step::Wait(Duration::from_millis(200)),
                Step::Reset,
            ]),
        ),
        ("/x/2".into(), Reply::ok(&second)),
    ])?;
    let dir = OutDir::new()?;
    // What an earlier run left: it must not pass for this run's body.
    // Writable by the program (which may run as another user), as its own
    // earlier run's file would be.
    let stale = dir.body(1);
    std::fs::write(&stale, b"an earlier run's body\n")
        .and_then(|()| std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o666)))
        .map_err(|err| grader_error(format!("cannot write DIR/1: {err}")))?;
    let urls = vec![site.url("/x/1"), site.url("/x/2")];
    let mut run = run::start(ctx, &dir.path, &[], &urls)?;
    let status = run.finish(Duration::from_secs(15));
    run.expect_all(&[error("reset"), ok(&second)], status)?;
    only_files(&dir, &["2"], &mut run)
}
