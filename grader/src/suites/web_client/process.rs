//! The program as a process: how it waits (asleep in its readiness call
//! until the earliest deadline), its one thread, the command lines and
//! folders it refuses before any connection, and a stdout nobody reads.

use super::failures::timed_out_on_time;
use super::run::{self, OutDir};
use super::site::Reply;
use super::{numbered, start_site, urls};
use crate::check::{Check, Ctx, Failure, Outcome, Verdict, broken, grader_error, secs};
use crate::harness::proc::{self, SyscallState, syscall_name};
use crate::harness::process::SpawnOptions;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

pub(super) const IDLE: Check = Check {
    name: "idle",
    points: 8,
    title: "--parallel 6 --timeout-ms 4000, six servers that never answer: while the fetches wait, the program sleeps in its readiness call, uses almost no CPU and wakes only a few times; then all six fail with timeout on time",
    limit: secs(30),
    run: idle,
    proven_by: &[broken(
        "broken_web_client_short_tick",
        "a fixed short timeout",
    )],
};

/// The window, after the start, in which every fetch is waiting.
const QUIET_FROM: Duration = Duration::from_millis(800);
const QUIET_TO: Duration = Duration::from_millis(3200);
/// Wake-ups allowed in that window (a program that sleeps until the
/// earliest deadline has none; a 10 ms tick has about 240).
const WAKEUPS: u64 = 25;

fn idle(ctx: &Ctx) -> Outcome {
    let site = start_site(numbered("/i/", 6, |_| Reply::silent()))?;
    let urls = urls(&site, "/i/", 6);
    let dir = OutDir::new()?;
    let mut run = run::start(
        ctx,
        &dir.path,
        &["--parallel", "6", "--timeout-ms", "4000"],
        &urls,
    )?;
    let pid = run.program.pid;
    std::thread::sleep(QUIET_FROM.saturating_sub(run.started.elapsed()));
    let before = (proc::cpu_time(pid), proc::voluntary_ctxt_switches(pid));
    let mut asleep = Vec::new();
    let mut samples = 0;
    while run.started.elapsed() < QUIET_TO {
        samples += 1;
        if let Some(SyscallState::Blocked(number)) = proc::syscall(pid) {
            asleep.push(number);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = (proc::cpu_time(pid), proc::voluntary_ctxt_switches(pid));
    let window = QUIET_TO - QUIET_FROM;
    if let Some(status) = run.program.exit_status() {
        return Err(Failure::new(format!(
            "the program ended while its six fetches should still be waiting\n{}",
            run.story(Some(status))
        ))
        .expected("six fetches in progress until their deadline, 4 s after their connect")
        .into());
    }
    let cpu = match (before.0, after.0) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    let wakeups = match (before.1, after.1) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => 0,
    };
    let idle = &ctx.lab.idle;
    let in_idle = asleep.iter().filter(|n| idle.syscalls.contains(n)).count();
    ctx.note(format!(
        "{:.1} s of waiting: cpu {} ms, {wakeups} wake-ups, asleep in {} {in_idle}/{samples} samples",
        window.as_secs_f64(),
        cpu.as_millis(),
        idle.names
    ));
    if cpu > window / 10 {
        return Err(Failure::new(format!(
            "while all six fetches waited for {:.1} s, the program used {} ms of CPU\n{}",
            window.as_secs_f64(),
            cpu.as_millis(),
            run.story(None)
        ))
        .expected("almost none: asleep in the readiness call until a socket is ready or the earliest deadline comes")
        .cause("busy-waiting: a readiness call with a zero timeout, or a loop that tries every socket again and again")
        .into());
    }
    if wakeups > WAKEUPS {
        return Err(Failure::new(format!(
            "while all six fetches waited for {:.1} s (nothing to do until their deadline), the program woke up {wakeups} times\n{}",
            window.as_secs_f64(),
            run.story(None)
        ))
        .expected(format!("at most {WAKEUPS}: one sleep until the earliest deadline, 4 s after the connects"))
        .cause("a fixed short timeout in the readiness call: give it the time left until the earliest deadline instead")
        .into());
    }
    if in_idle * 10 < samples * 8 {
        let other = asleep
            .iter()
            .find(|n| !idle.syscalls.contains(n))
            .map_or("running".to_string(), |n| {
                format!("asleep in {}", syscall_name(*n))
            });
        return Err(Failure::new(format!(
            "while the fetches waited, the program was in {} in only {in_idle} of {samples} samples (otherwise {other})\n{}",
            idle.names,
            run.story(None)
        ))
        .expected(format!("asleep in {} while every fetch waits", idle.names))
        .cause(format!("wait in one readiness call: {}", idle.how))
        .into());
    }
    let status = run.finish(Duration::from_secs(10));
    for i in 1..=6 {
        timed_out_on_time(&mut run, i, Duration::from_millis(4000), status)?;
    }
    Ok(())
}

pub(super) const SINGLE_THREAD: Check = Check {
    name: "single_thread",
    points: 4,
    title: "one thread and no child process throughout a run of four fetches answered after 600 ms",
    limit: secs(20),
    run: single_thread,
    proven_by: &[broken(
        "broken_web_client_thread_per_fetch",
        "a thread per fetch",
    )],
};

fn single_thread(ctx: &Ctx) -> Outcome {
    let site = start_site(numbered("/t/", 4, |i| {
        Reply::ok(format!("{i}\n").as_bytes()).after(Duration::from_millis(600))
    }))?;
    let urls = urls(&site, "/t/", 4);
    let dir = OutDir::new()?;
    let mut run = run::start(ctx, &dir.path, &[], &urls)?;
    let (mut threads, mut children) = (0, Vec::new());
    run.watch(
        Duration::from_secs(10),
        Duration::from_millis(10),
        |pid, _| {
            threads = threads.max(proc::threads(pid).unwrap_or(0));
            if children.is_empty() {
                children = proc::children(pid);
            }
        },
    );
    let status = run.finish(Duration::from_secs(11));
    ctx.note(format!("most threads: {threads}"));
    if threads > 1 || !children.is_empty() {
        let what = if threads > 1 {
            format!("{threads} threads")
        } else {
            format!("child processes {children:?}")
        };
        return Err(Failure::new(format!(
            "while four fetches were in progress the program had {what}\n{}",
            run.story(status)
        ))
        .expected("one thread, one process: every socket in one readiness loop")
        .cause("a thread per fetch (or a process per fetch) is what this lab replaces: make every socket non-blocking and wait for all of them in one poll/epoll/select")
        .into());
    }
    let want: Vec<run::Fetched> = (1..=4)
        .map(|_| run::Fetched::Status {
            code: 200,
            bytes: 2,
        })
        .collect();
    run.expect_all(&want, status).map_err(Verdict::from)
}

pub(super) const USAGE: Check = Check {
    name: "usage",
    points: 6,
    title: "bad command lines (another scheme, HTTP:// in capitals, a host name, ports 0 and 70000, a bad IPv4 address, `#` or a space in the URL, --parallel 0, --timeout-ms x or -5, no URL, an option after a URL): exit 2 with a usage message, and no connection to a valid URL placed before the bad one",
    limit: secs(30),
    run: usage,
    proven_by: &[broken(
        "broken_web_client_lazy_urls",
        "before the first connection",
    )],
};

fn usage(ctx: &Ctx) -> Outcome {
    let site = start_site(vec![("/u".into(), Reply::ok(b"u\n"))])?;
    let good = site.url("/u");
    let port = site.addr.port();
    let bad_urls = [
        format!("ftp://127.0.0.1:{port}/u"),
        format!("HTTP://127.0.0.1:{port}/u"),
        format!("http://localhost:{port}/u"),
        "http://127.0.0.1:0/u".to_string(),
        "http://127.0.0.1:70000/u".to_string(),
        format!("http://127.0.0.256:{port}/u"),
        format!("http://127.0.0:{port}/u"),
        format!("http://127.0.0.1:{port}/u#part"),
        format!("http://127.0.0.1:{port}/a b"),
    ];
    let mut lines: Vec<Vec<String>> = bad_urls
        .iter()
        .map(|bad| vec![good.clone(), bad.clone()])
        .collect();
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    lines.push([words(&["--parallel", "0"]), vec![good.clone()]].concat());
    lines.push([words(&["--timeout-ms", "x"]), vec![good.clone()]].concat());
    lines.push([words(&["--timeout-ms", "-5"]), vec![good.clone()]].concat());
    lines.push(Vec::new());
    lines.push(vec![
        good.clone(),
        "--parallel".into(),
        "2".into(),
        good.clone(),
    ]);
    let dir = OutDir::new()?;
    for urls in &lines {
        let mut run = run::start(ctx, &dir.path, &[], urls)?;
        let status = run.finish(Duration::from_secs(5));
        let connected = site.connections() > 0;
        let stderr = run.program.stderr_tail();
        let refused =
            matches!(status.map(|s| s.code()), Some(Some(2))) && !stderr.trim().is_empty();
        if refused && !connected {
            continue;
        }
        let story = run.story(status);
        let failure = if refused {
            Failure::new(format!(
                "exit code 2 as expected, but the server of the first (valid) URL saw a connection first\n{story}"
            ))
            .cause("validate the whole command line before the first connection: a bad URL later in the list is still a usage error, and nothing is fetched")
        } else {
            Failure::new(format!("this command line was not refused as a usage error\n{story}")).cause(
                "a URL is exactly http://A.B.C.D[:PORT][/PATH]: lower-case scheme, four numbers 0-255, port 1-65535, no `#` or space; N and T positive integers; options before the URLs; at least one URL",
            )
        };
        return Err(failure
            .expected("a usage message on stderr and exit code 2, before any connection")
            .into());
    }
    Ok(())
}

pub(super) const BAD_DIR: Check = Check {
    name: "bad_dir",
    points: 4,
    title: "--out a regular file, a missing folder, a path through a file: exit 1 with one line on stderr, and no connection",
    limit: secs(20),
    run: bad_dir,
    proven_by: &[broken(
        "broken_web_client_lazy_dir",
        "before any connection",
    )],
};

fn bad_dir(ctx: &Ctx) -> Outcome {
    let site = start_site(vec![("/d".into(), Reply::ok(b"d\n"))])?;
    let url = site.url("/d");
    let root = OutDir::new()?;
    let file = root.path.join("a-file");
    std::fs::write(&file, b"not a folder\n")
        .map_err(|err| grader_error(format!("cannot write {}: {err}", file.display())))?;
    let cases = [
        (file.clone(), "a regular file"),
        (root.path.join("missing"), "a folder that does not exist"),
        (file.join("below"), "a path through a regular file"),
    ];
    for (path, what) in &cases {
        let mut run = run::start(ctx, path, &[], std::slice::from_ref(&url))?;
        let status = run.finish(Duration::from_secs(5));
        let stderr = run.program.stderr_tail();
        let one_line = stderr.trim().lines().count() == 1;
        let exit_1 = matches!(status.map(|s| s.code()), Some(Some(1)));
        let connected = site.connections() > 0;
        if exit_1 && one_line && !connected {
            continue;
        }
        let story = run.story(status);
        let cause = if connected {
            "check DIR before any connection: it must be a writable folder (try creating a file in it), or one line on stderr and exit 1"
        } else {
            "one line on stderr naming DIR and why it cannot be used, then exit 1 (never a panic)"
        };
        return Err(
            Failure::new(if connected {
                format!(
                    "--out {} ({what}): the server saw a connection before the program gave up\n{story}",
                    path.display()
                )
            } else {
                format!("--out {} ({what}):\n{story}", path.display())
            })
                .expected("one line on stderr and exit code 1, before any connection")
                .cause(cause)
                .into(),
        );
    }
    Ok(())
}

pub(super) const STDOUT_GONE: Check = Check {
    name: "stdout_gone",
    points: 6,
    title: "stdout is a pipe whose reader is gone: the program stops and exits 1 (no death by SIGPIPE, no panic)",
    limit: secs(20),
    run: stdout_gone,
    proven_by: &[broken("broken_web_client_sigpipe", "killed by SIGPIPE")],
};

fn stdout_gone(ctx: &Ctx) -> Outcome {
    let site = start_site(numbered("/g/", 3, |i| {
        Reply::ok(format!("{i}\n").as_bytes())
    }))?;
    let urls = urls(&site, "/g/", 3);
    let dir = OutDir::new()?;
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|err| grader_error(format!("pipe2: {err}")))?;
    // Nobody will read: the first line's write fails with EPIPE.
    drop(read_end);
    let options = SpawnOptions {
        stdout: Some(Stdio::from(write_end)),
        ..SpawnOptions::default()
    };
    let mut run = run::start_with(ctx, &dir.path, &[], &urls, options)?;
    let status = run.finish(Duration::from_secs(10));
    let story = run.story(status);
    let Some(status) = status else {
        return Err(Failure::new(format!(
            "stdout's reader was gone, and the program did not stop\n{story}"
        ))
        .expected("exit code 1 as soon as a write to stdout fails with EPIPE")
        .cause("a failed write to stdout must end the program: check every write's result")
        .into());
    };
    if status.code() == Some(1) && !story.contains("panicked") {
        return Ok(());
    }
    let cause = if status.signal() == Some(nix::libc::SIGPIPE) {
        "killed by SIGPIPE: a write to a pipe with no reader raises SIGPIPE, whose default action kills; ignore it (Rust does so before main) and handle the EPIPE error instead"
    } else if story.contains("panicked") {
        "println! panics when stdout's reader is gone: write with writeln! on stdout, and on an error print one line on stderr and exit 1"
    } else {
        "when a write to stdout fails (EPIPE), print one line on stderr and exit 1"
    };
    Err(
        Failure::new(format!("stdout's reader was gone, and\n{story}"))
            .expected("exit code 1, with at most a line on stderr")
            .cause(cause)
            .into(),
    )
}
