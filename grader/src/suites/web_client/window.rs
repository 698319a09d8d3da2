//! Many fetches at once: in parallel, never more than N, the next one
//! started as soon as one ends (a sliding window, not batches), lines in
//! the order fetches end, and fds bounded by N whatever the number of URLs.

use super::run::{self, Fetched, OutDir};
use super::site::Reply;
use super::{numbered, start_site, urls};
use crate::check::{Check, Ctx, Failure, Outcome, Verdict, broken, need_fds, secs};
use crate::harness::proc;
use crate::harness::process::SpawnOptions;
use std::time::Duration;

/// The body of fetch `i` in these checks: short, and its own.
fn body(i: usize) -> Vec<u8> {
    format!("body of fetch {i}\n").into_bytes()
}

fn all_ok(n: usize) -> Vec<Fetched> {
    (1..=n)
        .map(|i| Fetched::Status {
            code: 200,
            bytes: body(i).len() as u64,
        })
        .collect()
}

pub(super) const PARALLEL: Check = Check {
    name: "parallel",
    points: 10,
    title: "--parallel 8 with 8 URLs each answered after 1 s: every fetch succeeds, and all are done in well under 8 s (at most 3.5 s)",
    limit: secs(30),
    run: parallel,
    proven_by: &[broken(
        "broken_web_client_one_at_a_time",
        "one after another",
    )],
};

fn parallel(ctx: &Ctx) -> Outcome {
    const N: usize = 8;
    let site = start_site(numbered("/p/", N, |i| {
        Reply::ok(&body(i)).after(Duration::from_secs(1))
    }))?;
    let dir = OutDir::new()?;
    let mut run = run::start(ctx, &dir.path, &["--parallel", "8"], &urls(&site, "/p/", N))?;
    // No need to wait 8 s to see that the fetches went one after another.
    let by = run.started + ENOUGH;
    while run.done().is_none() && run.next_line(by).is_some() {}
    if run.done().is_none() {
        let ended = run.heard.len();
        return Err(Failure::new(format!(
            "8 fetches, each answered after 1 s: after {:.1} s only {ended} had ended; the server saw at most {} connections at once\n{}",
            ENOUGH.as_secs_f64(),
            site.most_open(),
            run.story(None)
        ))
        .expected("all done after about 1 s: with --parallel 8 all eight wait for their answer at the same time")
        .cause("the fetches were made one after another: start up to N fetches (non-blocking connects), then wait for all their sockets at once in one poll/epoll/select")
        .into());
    }
    let status = run.finish(ENOUGH + Duration::from_secs(2));
    ctx.note(format!("most open at once: {}", site.most_open()));
    run.expect_all(&all_ok(N), status).map_err(Verdict::from)
}

/// By when 8 fetches of 1 s each, made at the same time, have long ended.
const ENOUGH: Duration = Duration::from_millis(3500);

pub(super) const LIMIT: Check = Check {
    name: "limit",
    points: 10,
    title: "--parallel 3 with 12 URLs answered after 300 ms: the server never sees more than 3 connections open at once, and sees 3",
    limit: secs(30),
    run: limit,
    proven_by: &[broken("broken_web_client_no_limit", "more than 3 at once")],
};

fn limit(ctx: &Ctx) -> Outcome {
    const N: usize = 12;
    let site = start_site(numbered("/l/", N, |i| {
        Reply::ok(&body(i)).after(Duration::from_millis(300))
    }))?;
    let dir = OutDir::new()?;
    let mut run = run::start(ctx, &dir.path, &["--parallel", "3"], &urls(&site, "/l/", N))?;
    let status = run.finish(Duration::from_secs(20));
    let most = site.most_open();
    ctx.note(format!("most open at once: {most}"));
    if most > 3 {
        return Err(Failure::new(format!(
            "with --parallel 3 the server saw {most} connections open at once\n{}",
            run.story(status)
        ))
        .expected("never more than 3 at once")
        .cause("more than 3 at once: start a fetch only while fewer than N are in progress, and the next one when one ends")
        .into());
    }
    run.expect_all(&all_ok(N), status)?;
    if most < 3 {
        return Err(Failure::new(format!(
            "with --parallel 3 and 12 slow URLs the server never saw more than {most} connections at once\n{}",
            run.story(status)
        ))
        .expected("3 at once: N fetches in progress whenever N URLs are left")
        .cause("fewer fetches in progress than --parallel allows: start N at the beginning, and a new one each time one ends")
        .into());
    }
    Ok(())
}

pub(super) const SLIDING_WINDOW: Check = Check {
    name: "sliding_window",
    points: 8,
    title: "--parallel 3, URL 1 answered after 2 s and URLs 2-9 after 200 ms: fetch 4 starts as soon as fetch 2 or 3 ends, long before fetch 1 ends (a sliding window, not batches)",
    limit: secs(30),
    run: sliding_window,
    proven_by: &[broken("broken_web_client_batches", "in batches")],
};

fn sliding_window(ctx: &Ctx) -> Outcome {
    const N: usize = 9;
    let site = start_site(numbered("/w/", N, |i| {
        let delay = if i == 1 { 2000 } else { 200 };
        Reply::ok(&body(i)).after(Duration::from_millis(delay))
    }))?;
    let dir = OutDir::new()?;
    let mut run = run::start(ctx, &dir.path, &["--parallel", "3"], &urls(&site, "/w/", N))?;
    let status = run.finish(Duration::from_secs(20));
    run.expect_all(&all_ok(N), status)?;
    let slow = site.visit("/w/1").and_then(|v| v.ended);
    let fourth = site.visit("/w/4").map(|v| v.opened);
    let (Some(slow), Some(fourth)) = (slow, fourth) else {
        return Err(Failure::new(format!(
            "the server did not see fetches 1 and 4 both\n{}",
            run.story(status)
        ))
        .into());
    };
    let early = fourth + Duration::from_millis(700) < slow;
    let gap = if fourth < slow {
        format!("{:.2} s before", (slow - fourth).as_secs_f64())
    } else {
        format!("{:.2} s after", (fourth - slow).as_secs_f64())
    };
    ctx.note(format!("fetch 4 connected {gap} fetch 1's answer"));
    if early {
        return Ok(());
    }
    Err(Failure::new(format!(
        "fetch 4 connected {gap} fetch 1 (answered after 2 s) ended, although fetches 2 and 3 (answered after 200 ms) had ended long before\n{}",
        run.story(status)
    ))
    .expected("fetch 4 starts as soon as one of fetches 1-3 ends, at about 0.2 s")
    .cause("the fetches were started in batches of N, each batch waiting for its slowest: keep N in progress, starting the next URL as soon as any fetch ends")
    .into())
}

pub(super) const COMPLETION_ORDER: Check = Check {
    name: "completion_order",
    points: 6,
    title: "URL 1 answered after 1.5 s, URLs 2-4 at once: the lines of 2, 3 and 4 reach stdout (printed and flushed) before fetch 1 ends, and 1's line comes last",
    limit: secs(30),
    run: completion_order,
    proven_by: &[broken("broken_web_client_unflushed", "not flushed")],
};

fn completion_order(ctx: &Ctx) -> Outcome {
    const N: usize = 4;
    let site = start_site(numbered("/o/", N, |i| {
        let delay = if i == 1 { 1500 } else { 0 };
        Reply::ok(&body(i)).after(Duration::from_millis(delay))
    }))?;
    let dir = OutDir::new()?;
    let mut run = run::start(ctx, &dir.path, &[], &urls(&site, "/o/", N))?;
    let status = run.finish(Duration::from_secs(20));
    run.expect_all(&all_ok(N), status)?;
    let at = |i| run.ended(i).map(|(heard, _)| heard.at).unwrap_or_default();
    let slow = at(1);
    let late: Vec<usize> = (2..=N)
        .filter(|&i| at(i) + Duration::from_millis(700) > slow)
        .collect();
    if late.is_empty() {
        return Ok(());
    }
    let in_order = (2..=N).all(|i| at(i) >= slow);
    let cause = if in_order {
        "the lines came in command-line order: print each fetch's line when it ends, in the order fetches end"
    } else {
        "the lines were printed but not flushed (they all arrived together at the end): flush stdout after each line (to a pipe, C's and Python's stdout are block-buffered, and so is a Rust BufWriter)"
    };
    Err(Failure::new(format!(
        "the lines of fetches {late:?} (answered at once) reached the grader only when fetch 1 (answered after 1.5 s) ended\n{}",
        run.story(status)
    ))
    .expected("each line on stdout, flushed, as soon as its fetch ends: 2, 3 and 4 at about 0 s, 1 at about 1.5 s")
    .cause(cause)
    .into())
}

pub(super) const FD_BOUND: Check = Check {
    name: "fd_bound",
    points: 8,
    title: "1,000 URLs with --parallel 50, each answered after 50 ms: all succeed, and the program's open fds, sampled throughout, never exceed 2N + 10 = 110",
    limit: secs(60),
    run: fd_bound,
    proven_by: &[broken("broken_web_client_keeps_sockets", "kept open")],
};

fn fd_bound(ctx: &Ctx) -> Outcome {
    const N: usize = 1000;
    const MOST: usize = 2 * 50 + 10;
    let site = start_site(numbered("/f/", N, |i| {
        Reply::ok(&body(i)).after(Duration::from_millis(50))
    }))?;
    let dir = OutDir::new()?;
    let mut run = run::start(
        ctx,
        &dir.path,
        &["--parallel", "50"],
        &urls(&site, "/f/", N),
    )?;
    // About 1 s of work (20 rounds of 50 ms): a client far slower than
    // that fails here, not after a minute.
    let mut peak = (0, Duration::ZERO);
    run.watch(
        Duration::from_secs(15),
        Duration::from_millis(10),
        |pid, at| {
            if let Some(fds) = proc::open_fds(pid)
                && fds > peak.0
            {
                peak = (fds, at);
            }
        },
    );
    let status = run.finish(Duration::from_secs(16));
    ctx.note(format!(
        "peak open fds {} at {:.2} s",
        peak.0,
        peak.1.as_secs_f64()
    ));
    if peak.0 > MOST {
        return Err(Failure::new(format!(
            "with --parallel 50 the program had {} fds open at {:.2} s ({} fetches had ended by then)\n{}",
            peak.0,
            peak.1.as_secs_f64(),
            run.heard.iter().filter(|h| h.at <= peak.1).count(),
            run.story(status)
        ))
        .expected(format!("at most {MOST}: a socket and a body file per fetch in progress, stdin, stdout, stderr and a few more"))
        .cause("sockets or files of finished fetches were kept open: close a fetch's socket and file as soon as it ends")
        .into());
    }
    run.expect_all(&all_ok(N), status).map_err(Verdict::from)
}

pub(super) const SCALE: Check = Check {
    name: "scale",
    points: 6,
    title: "1,000 URLs with --parallel 1000, each answered after 1 s, the program started with a soft fd limit of 1,024: all 1,000 succeed, in a few seconds (up to 2,000 fds at once: raise the soft limit; a select loop must keep every fd it watches below FD_SETSIZE, 1024)",
    limit: secs(60),
    run: scale,
    proven_by: &[
        broken("broken_web_client_select", "FD_SETSIZE"),
        broken("broken_web_client_no_fd_limit", "too many open files"),
    ],
};

fn scale(ctx: &Ctx) -> Outcome {
    const N: usize = 1000;
    need_fds(N)?;
    let site = start_site(numbered("/n/", N, |i| {
        Reply::ok(&body(i)).after(Duration::from_secs(1))
    }))?;
    let dir = OutDir::new()?;
    // Started with the usual soft fd limit, 1,024 (the hard one higher):
    // 1,000 fetches need about 2,000 fds, so the program must raise it.
    let options = SpawnOptions {
        nofile_soft: Some(1024),
        ..SpawnOptions::default()
    };
    let urls = urls(&site, "/n/", N);
    let mut run = run::start_with(ctx, &dir.path, &["--parallel", "1000"], &urls, options)?;
    let (mut most_fds, mut soft_limit) = (0, None);
    run.watch(
        Duration::from_secs(15),
        Duration::from_millis(10),
        |pid, _| {
            most_fds = most_fds.max(proc::open_fds(pid).unwrap_or(0));
            if let Some(soft) = proc::nofile_soft(pid) {
                soft_limit = Some(soft);
            }
        },
    );
    let status = run.finish(Duration::from_secs(16));
    ctx.note(format!(
        "most open at once: {}; most fds: {most_fds}",
        site.most_open()
    ));
    // Its soft limit never raised, and used up: some fetches got no fd.
    let at_limit = soft_limit.is_some_and(|soft| soft <= 1024) && most_fds + 4 >= 1024;
    let took = run.heard.last().map_or(Duration::ZERO, |h| h.at);
    run.expect_all(&all_ok(N), status).map_err(|failure| {
        let said = format!(
            "{} {}",
            run.program.stderr_tail(),
            run.heard.iter().map(|h| h.text.as_str()).collect::<Vec<_>>().join(" ")
        );
        if at_limit || said.contains("Too many open files") || said.contains("EMFILE") {
            failure.cause("too many open files: the program started with a soft fd limit of 1,024, and 1,000 fetches need about 2,000 fds; raise the soft limit to the hard one at start (setrlimit(RLIMIT_NOFILE), labkit::raise_fd_limit)")
        } else if said.contains("FD_SETSIZE") || run.heard.len() < N / 2 {
            failure.cause("with N = 1,000 the program holds up to 2,000 fds, and select() cannot watch an fd of 1024 or more (FD_SETSIZE): use poll or epoll, which have no such limit")
        } else {
            failure
        }
    })?;
    if took > Duration::from_secs(8) {
        return Err(Failure::new(format!(
            "1,000 fetches answered after 1 s each, with --parallel 1000, took {:.1} s; the server saw at most {} at once\n{}",
            took.as_secs_f64(),
            site.most_open(),
            run.story(status)
        ))
        .expected("a few seconds at most: all 1,000 in progress at once")
        .cause("fewer fetches in progress than --parallel allows, or a loop that slows down with many sockets")
        .into());
    }
    Ok(())
}
