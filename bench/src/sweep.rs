//! The sweep: every server, every number of idle connections, every number
//! of active clients. One server process per server, started the way the
//! grader starts programs (own process group, soft fd limit at the hard
//! limit, killed when done); its idle connections grow from one point to
//! the next.

use crate::load::{self, IdlePool, LoadSpec, Measure, Target};
use grader::process::{Program, Registry, SpawnOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A server to measure.
#[derive(Clone, Debug)]
pub struct Server {
    /// Its name in the table, the CSV and the plot.
    pub name: String,
    pub bin: PathBuf,
    pub args: Vec<String>,
}

/// What to measure for each server.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Idle connections, ascending.
    pub idle: Vec<usize>,
    /// Active clients.
    pub active: Vec<usize>,
    pub line_bytes: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

impl Plan {
    pub fn points_per_server(&self) -> usize {
        self.idle.len() * self.active.len()
    }
}

/// One measurement (or why there is none).
#[derive(Clone, Debug)]
pub struct Point {
    pub server: String,
    pub idle: usize,
    pub active: usize,
    pub outcome: Result<Measure, String>,
}

/// Where the sweep is, for a progress line.
#[derive(Debug)]
pub struct Step<'a> {
    /// Points finished so far, and in all.
    pub done: usize,
    pub total: usize,
    pub server: &'a str,
    pub idle: usize,
    pub active: Option<usize>,
}

/// How long the server may take to hold every idle connection we opened.
const ACCEPT_WITHIN: Duration = Duration::from_secs(30);

/// Runs the whole plan; `progress` hears before each step.
pub fn run(servers: &[Server], plan: &Plan, mut progress: impl FnMut(&Step)) -> Vec<Point> {
    let total = servers.len() * plan.points_per_server();
    let mut points = Vec::with_capacity(total);
    for (index, server) in servers.iter().enumerate() {
        let source = source_address(index);
        run_server(server, plan, source, &mut points, &mut |step: Step| {
            progress(&Step { total, ..step })
        });
    }
    points
}

/// Each server's clients come from their own loopback address, distinct from
/// the grader's (127.x.0-199.y), so ports never run short.
fn source_address(index: usize) -> Ipv4Addr {
    let pid = std::process::id() as usize;
    Ipv4Addr::new(127, 20 + (pid % 200) as u8, 200 + (index % 50) as u8, 1)
}

fn run_server(
    server: &Server,
    plan: &Plan,
    source: Ipv4Addr,
    points: &mut Vec<Point>,
    progress: &mut dyn FnMut(Step),
) {
    let record = |points: &mut Vec<Point>, idle, active, outcome| {
        points.push(Point {
            server: server.name.clone(),
            idle,
            active,
            outcome,
        })
    };
    let registry = Arc::new(Registry::default());
    let started = start(server, &registry);
    let (mut program, port) = match started {
        Ok(started) => started,
        Err(err) => {
            for &idle in &plan.idle {
                for &active in &plan.active {
                    record(points, idle, active, Err(err.clone()));
                }
            }
            return;
        }
    };
    let target = Target {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        source,
    };
    // What the server holds before any client: each idle connection adds one.
    let base_fds = grader::proc::open_fds(program.pid).unwrap_or(0);
    let mut pool = IdlePool::new(target);
    // After a failure the remaining points of this server are not measured:
    // a stuck server would cost a timeout each.
    let mut failure: Option<String> = None;
    for &idle in &plan.idle {
        if failure.is_none() {
            progress(Step {
                done: points.len(),
                total: 0,
                server: &server.name,
                idle,
                active: None,
            });
            if let Err(err) = open_idle(&mut program, &mut pool, idle, base_fds) {
                failure = Some(err);
            }
        }
        for &active in &plan.active {
            let outcome = match &failure {
                Some(err) => Err(skipped(err)),
                None => {
                    progress(Step {
                        done: points.len(),
                        total: 0,
                        server: &server.name,
                        idle,
                        active: Some(active),
                    });
                    let spec = LoadSpec {
                        active,
                        line_bytes: plan.line_bytes,
                        warmup: plan.warmup,
                        duration: plan.duration,
                    };
                    let outcome =
                        load::ping_pong(&target, &spec).map_err(|err| with_exit(&mut program, err));
                    if let Err(err) = &outcome {
                        failure = Some(err.clone());
                    }
                    outcome
                }
            };
            record(points, idle, active, outcome);
        }
    }
    // The server goes first: its side of each connection closes first, so
    // the TIME_WAIT states are its, not our source address's.
    drop(program);
    drop(pool);
}

/// The message of a point not measured because an earlier one failed.
fn skipped(err: &str) -> String {
    if err.starts_with("not measured: ") {
        err.to_string()
    } else {
        format!("not measured: an earlier point failed ({err})")
    }
}

fn start(server: &Server, registry: &Arc<Registry>) -> Result<(Program, u16), String> {
    let options = SpawnOptions {
        args: server.args.clone(),
        // The hard limit: every idle connection costs the server one fd.
        nofile_soft: None,
        ..SpawnOptions::default()
    };
    let mut program = Program::spawn(&server.bin, options, registry)?;
    let port = program.wait_listening(Duration::from_secs(10))?;
    Ok((program, port))
}

/// Grows the pool to `idle` and waits until the server holds them all (one
/// fd each), so that a point never measures connections still in the
/// kernel's accept queue.
fn open_idle(
    program: &mut Program,
    pool: &mut IdlePool,
    idle: usize,
    base_fds: usize,
) -> Result<(), String> {
    pool.grow_to(idle)
        .map_err(|err| with_exit(program, format!("{err} (holding {} already)", pool.len())))?;
    let deadline = Instant::now() + ACCEPT_WITHIN;
    loop {
        let held = grader::proc::open_fds(program.pid)
            .unwrap_or(0)
            .saturating_sub(base_fds);
        if held >= idle {
            return Ok(());
        }
        program.check_alive()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "the server holds only {held} of the {idle} idle connections opened, {} s \
                 later (does it accept every pending connection? see its stderr for EMFILE)",
                ACCEPT_WITHIN.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Adds how the server ended, if it did, to a failure.
fn with_exit(program: &mut Program, err: String) -> String {
    // A dying server resets its connections a moment before it is reaped.
    std::thread::sleep(Duration::from_millis(50));
    match program.check_alive() {
        Ok(()) => err,
        Err(ending) => format!("{err}; {ending}"),
    }
}
