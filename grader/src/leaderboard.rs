//! The opt-in leaderboard: after a grade in which every check passed, one
//! short fixed load point measures an echo server (round trips per second,
//! p99 latency) for a platform's leaderboard. It is never part of the score:
//! the grade is over when it runs, and a server it cannot measure only gets
//! no leaderboard entries, with a note saying why.
//!
//! The load is the bench's ([`crate::harness::pingpong`]): idle connections
//! held open and silent while active clients ping-pong one line each.

use crate::course::Lab;
use crate::harness::contain;
use crate::harness::pingpong::{self, IdlePool, LoadSpec, Measure, Target};
use crate::harness::proc;
use crate::harness::process::{Program, Registry, SpawnOptions};
use crate::harness::text::thousands;
use crate::report::{Entry, LabReport, Order};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

/// Set to 1 to ask for the leaderboard without `--leaderboard` (the
/// platforms' scripts turn it on from their configuration).
pub const ENV: &str = "GRADER_LEADERBOARD";

/// Active clients of the load point, each with one line in flight.
pub const ACTIVE: usize = 50;
/// Idle connections held open during it (fewer if the lab's contract asks
/// for fewer simultaneous clients: select_echo's 1,000 fit in FD_SETSIZE).
pub const IDLE: usize = 1000;
/// Bytes per line, counting the `\n`.
const LINE_BYTES: usize = 64;
/// Round trips before this are not counted (buffers, caches warm up).
const WARMUP: Duration = Duration::from_millis(500);
/// How long round trips are counted.
pub const MEASURED: Duration = Duration::from_secs(2);
/// The whole measurement, start to kill: a server that passed every check
/// needs a fraction of it (the load generator gives up on a stuck server
/// after 5 s by itself).
const LIMIT: Duration = Duration::from_secs(30);

/// The leaderboard columns.
pub const ROUND_TRIPS: &str = "round trips/s";
pub const P99: &str = "p99 latency (ms)";

/// Whether the leaderboard was asked for: `--leaderboard`, or
/// `GRADER_LEADERBOARD` set to anything but empty or 0.
pub fn wanted(flag: bool) -> bool {
    flag || std::env::var(ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether `lab` has a leaderboard: its echo servers are what the bench
/// compares.
pub fn applies(lab: &Lab) -> bool {
    lab.bench && lab.echo.is_some()
}

/// Measures `bin` and fills `report.leaderboard` if the lab has one and
/// every check of the grade passed (with `--only`, every check that was
/// run). Returns one line saying what it measured, or why nothing.
pub fn add(lab: &'static Lab, bin: &Path, report: &mut LabReport) -> String {
    if !applies(lab) {
        return format!(
            "leaderboard: none for {} (only the echo servers have one)",
            lab.name
        );
    }
    if report.checks.is_empty() || !report.all_passed() {
        return "leaderboard: not measured (it needs every check passed)".into();
    }
    match measure(lab, bin) {
        Ok(measure) => {
            report.leaderboard = entries(&measure);
            format!(
                "leaderboard: {} round trips/s, p99 {:.2} ms ({ACTIVE} active clients, {} idle connections, {} s; not part of the score)",
                thousands(measure.per_second().round() as usize),
                ms(measure.p99),
                thousands(idle_for(lab)),
                MEASURED.as_secs()
            )
        }
        Err(why) => format!("leaderboard: not measured: {why}"),
    }
}

/// The entries of one measurement.
pub fn entries(measure: &Measure) -> Vec<Entry> {
    vec![
        Entry {
            name: ROUND_TRIPS.into(),
            value: measure.per_second().round(),
            order: Order::Descending,
        },
        Entry {
            name: P99.into(),
            value: (ms(measure.p99) * 1000.0).round() / 1000.0,
            order: Order::Ascending,
        },
    ]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Idle connections of the load point for `lab`.
fn idle_for(lab: &Lab) -> usize {
    let clients = lab.echo.as_ref().map_or(0, |echo| echo.clients);
    IDLE.min(clients.saturating_sub(ACTIVE))
}

/// Starts the program afresh, runs the load point against it and kills it,
/// all within [`LIMIT`].
pub fn measure(lab: &'static Lab, bin: &Path) -> Result<Measure, String> {
    let registry = Arc::new(Registry::default());
    let (tx, rx) = channel();
    let (bin, inner) = (bin.to_path_buf(), registry.clone());
    std::thread::Builder::new()
        .name("leaderboard".into())
        .spawn(move || {
            let _ = tx.send(load_point(lab, &bin, &inner));
        })
        .map_err(|err| format!("grader error: cannot start the measurement: {err}"))?;
    let result = rx.recv_timeout(LIMIT).unwrap_or_else(|_| {
        Err(format!(
            "the measurement did not finish within {} s",
            LIMIT.as_secs()
        ))
    });
    // Killing the server also ends a measurement still waiting on it.
    registry.kill_all();
    result
}

fn load_point(lab: &'static Lab, bin: &Path, registry: &Arc<Registry>) -> Result<Measure, String> {
    // As root the program runs as another user, who may not reach `bin`.
    let runnable = contain::runnable(bin);
    let args = lab.echo().args.iter().map(|a| a.to_string()).collect();
    let options = SpawnOptions {
        args,
        ..SpawnOptions::default()
    };
    let mut program = Program::spawn(&runnable.path, options, registry)?;
    let port = program.wait_listening(Duration::from_secs(10))?;
    let target = Target {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        source: source_address(),
    };
    let idle = idle_for(lab);
    let base = proc::open_fds(program.pid);
    let mut pool = IdlePool::new(target);
    pool.grow_to(idle)?;
    if let Some(base) = base {
        wait_held(&mut program, base, idle)?;
    }
    let spec = LoadSpec {
        active: ACTIVE,
        line_bytes: LINE_BYTES,
        warmup: WARMUP,
        duration: MEASURED,
    };
    let measured = pingpong::ping_pong(&target, &spec);
    drop(pool);
    measured.map_err(|err| match program.check_alive() {
        Ok(()) => err,
        Err(ending) => format!("{err}; {ending}"),
    })
}

/// Waits until the server holds every idle connection (an fd each), so
/// the point measures a server watching them all, not a kernel queue.
fn wait_held(program: &mut Program, base: usize, idle: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = proc::open_fds(program.pid)
            .unwrap_or(0)
            .saturating_sub(base);
        if held >= idle {
            return Ok(());
        }
        program.check_alive()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "the server holds {held} of the {idle} idle connections opened, 10 s later"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The load's clients come from a loopback address of their own, apart
/// from the checks' (127.x.0-249.y, see `Ctx::new`).
fn source_address() -> Ipv4Addr {
    let pid = std::process::id() as usize;
    Ipv4Addr::new(127, 20 + (pid % 200) as u8, 250, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_rank_throughput_down_and_latency_up() {
        let measure = Measure {
            round_trips: 20_001,
            seconds: 2.0,
            p50: Duration::from_micros(400),
            p99: Duration::from_micros(1_234_567),
        };
        let entries = entries(&measure);
        assert_eq!(entries[0].name, ROUND_TRIPS);
        assert_eq!(entries[0].value, 10_001.0);
        assert_eq!(entries[0].order, Order::Descending);
        assert_eq!(entries[1].name, P99);
        assert_eq!(entries[1].value, 1234.567);
        assert_eq!(entries[1].order, Order::Ascending);
    }
}
