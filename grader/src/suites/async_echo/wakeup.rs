//! `per_wakeup_cost`: the server CPU one round trip costs, with 5,000 idle
//! connections and without, in one run.
//!
//! Each round trip is followed by a pause of 0.3 ms, so that each one is one
//! wake-up of the server: without it, when the grader and the server share a
//! CPU, one wake-up serves several round trips and an executor that polls
//! every task looks only a few times worse instead of a hundred. CPU time is
//! read from `/proc/PID/task/*/schedstat` (nanoseconds). The cost is measured
//! with 0 idle connections, then 5,000, then 0 again; a correct runtime stays
//! near 1x, one that polls every task on every wake-up lands far above.

use crate::check::{Check, Ctx, Failure, Outcome, Server, Verdict, broken, need_fds, secs, within};
use crate::harness::client::{Client, End};
use crate::harness::proc;
use crate::harness::process::SpawnOptions;
use crate::harness::text::thousands;
use crate::suites::echo::discard_all;
use std::time::{Duration, Instant};

const IDLE: usize = 5000;
/// A correct runtime measures 0.3x to 2.5x on a busy 2-core machine; one
/// that polls every task, 100x and more.
const MAX_RATIO: f64 = 10.0;

pub(super) const PER_WAKEUP_COST: Check = Check {
    name: "per_wakeup_cost",
    points: 10,
    title: "one active client's round trips cost about as much server CPU with 5,000 idle connections as with none (measured with 0, 5,000, then 0 idle): the executor polls only the tasks that were woken",
    limit: secs(90),
    run: per_wakeup_cost,
    proven_by: &[broken("broken_async_echo_polls_all", "polls every task")],
};

fn per_wakeup_cost(ctx: &Ctx) -> Outcome {
    need_fds(IDLE + 10)?;
    let args = ctx.lab.echo().args.iter().map(|a| a.to_string()).collect();
    let mut server = ctx.start_server(SpawnOptions {
        args,
        ..SpawnOptions::default()
    })?;
    let pid = server.pid();
    let mut active = ctx.connect(&server)?;
    cost(&mut active, pid, 100)?; // warm-up
    let before = cost(&mut active, pid, 600)?;
    let base_fds = proc::open_fds(pid).unwrap_or(0);
    let idle = open_idle(ctx, &mut server, base_fds)?;
    let loaded = cost(&mut active, pid, 600);
    discard_all(idle);
    let loaded = loaded?;
    wait_for_fds(pid, base_fds + 5);
    let after = cost(&mut active, pid, 600)?;
    server.alive("during the check")?;
    let baseline = (before + after) / 2.0;
    let ratio = loaded / baseline.max(1.0);
    ctx.note(format!(
        "server CPU per round trip: {:.1} µs with no idle connections, {:.1} µs with {}, {:.1} µs with none again ({ratio:.1}x)",
        before / 1000.0,
        loaded / 1000.0,
        thousands(IDLE),
        after / 1000.0
    ));
    if ratio <= MAX_RATIO {
        return Ok(());
    }
    Err(Failure::new(format!(
        "one client's round trip cost the server {:.1} µs of CPU with no other connection, {:.1} µs with {} idle ones ({ratio:.0}x), {:.1} µs once they had left",
        before / 1000.0,
        loaded / 1000.0,
        thousands(IDLE),
        after / 1000.0
    ))
    .expected(format!(
        "about the same cost (at most {MAX_RATIO}x): idle connections' tasks are not touched when another connection is ready"
    ))
    .cause("the executor polls every task on each wake-up instead of only the woken ones (or something per wake-up walks all connections): queue a task's id when its waker is called and poll only the queued tasks")
    .into())
}

/// Server CPU nanoseconds per round trip of `client`, over `rounds` round
/// trips (or 2 s, whichever ends first).
fn cost(client: &mut Client, pid: i32, rounds: usize) -> Result<f64, Verdict> {
    let line = b"a line of 24 bytes, ok\n\n";
    let start_cpu = proc::cpu_ns(pid);
    let started = Instant::now();
    let mut done = 0;
    while done < rounds && started.elapsed() < Duration::from_secs(2) {
        client
            .send_all(line, within(secs(3)))
            .map_err(|(_, end)| lost(client, end))?;
        let got = client.recv_exact(line.len(), within(secs(3)));
        if got.end != End::Complete || got.data != line {
            return Err(lost(client, got.end));
        }
        done += 1;
        // One round trip, one wake-up (see the module's comment).
        std::thread::sleep(Duration::from_micros(300));
    }
    let (Some(start_cpu), Some(end_cpu)) = (start_cpu, proc::cpu_ns(pid)) else {
        return Err(Failure::new(
            "could not read the server's CPU time in /proc/PID/task/*/schedstat",
        )
        .into());
    };
    Ok(end_cpu.saturating_sub(start_cpu) as f64 / done.max(1) as f64)
}

fn lost(client: &Client, end: End) -> Verdict {
    Failure::new(format!(
        "c{} was echoing one line at a time; a round trip failed: {}",
        client.id,
        end.describe()
    ))
    .expected("every line echoed, with or without idle connections")
    .transcript(&[client.id])
    .into()
}

/// Opens the idle connections and waits until the server holds them all.
fn open_idle(ctx: &Ctx, server: &mut Server, base_fds: usize) -> Result<Vec<Client>, Verdict> {
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        match ctx.connect(server) {
            Ok(client) => idle.push(client),
            Err(verdict) => {
                discard_all(idle);
                return Err(verdict);
            }
        }
    }
    let deadline = within(secs(20));
    while proc::open_fds(server.pid()).unwrap_or(0) < base_fds + IDLE {
        if Instant::now() > deadline {
            discard_all(idle);
            return Err(Failure::new(format!(
                "{} clients connected; 20 s later the server held only {} fds",
                thousands(IDLE),
                thousands(proc::open_fds(server.pid()).unwrap_or(0))
            ))
            .expected("every connection accepted")
            .cause("accept every pending connection, and raise the soft fd limit to the hard limit at start")
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(idle)
}

/// Waits (at most 10 s) until the server's open fds are down to `at_most`.
fn wait_for_fds(pid: i32, at_most: usize) {
    let deadline = within(secs(10));
    while proc::open_fds(pid).unwrap_or(0) > at_most && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}
