//! The sweep: every server, every number of idle connections, every number
//! of active clients.
//!
//! Each server is one process, started the way the grader starts programs
//! (own process group, soft fd limit at the hard limit, killed when done).
//! The points without idle connections come first, for all servers at once,
//! measured in interleaved slices: servers are compared with each other there
//! (epoll_lt against tokio), and a machine whose load changes during the
//! sweep then disturbs every server alike. The points with idle connections
//! follow, one server at a time (10,000 idle connections per server would not
//! all fit in our fd limit at once); each server's idle connections grow from
//! one point to the next instead of being opened anew.

use crate::load::{self, ActiveSet, IdlePool, Measure, Target};
use crate::syscalls::{self, Syscalls, Window};
use grader::harness::proc;
use grader::harness::process::{Program, Registry, SpawnOptions};
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
    /// The server watches only fds below this (select's `FD_SETSIZE`):
    /// points that need higher fds are a finding, not measured.
    pub max_fd: Option<usize>,
    /// Why this machine cannot run the server at all (io_uring blocked):
    /// its points are a finding, not measured.
    pub unavailable: Option<String>,
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
    pub pinning: Pinning,
    /// Whether perf can count the servers' system calls here (`Err`: why
    /// the column says n/a).
    pub syscalls: Result<(), String>,
}

/// Where the generator and the servers run.
///
/// Left to the scheduler, the generator and the server land sometimes on
/// the same CPU and sometimes on two, and a round trip across CPUs costs a
/// wake-up of the other CPU (on a virtual machine, tens of microseconds):
/// the RTT of a single client then jumps between two values from one run to
/// the next. Pinning makes the placement the same for every point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinning {
    /// Both on one CPU: every cycle spent shows in the RTT, and the two never
    /// run in parallel (the most reproducible numbers).
    Same,
    /// The generator on one CPU, the server on another.
    Split,
    /// Wherever the scheduler puts them.
    Off,
}

impl Pinning {
    pub fn parse(text: &str) -> Option<Pinning> {
        match text {
            "same" => Some(Pinning::Same),
            "split" => Some(Pinning::Split),
            "off" => Some(Pinning::Off),
            _ => None,
        }
    }
}

/// Pins this process as `pinning` says; returns the CPU for servers, if any.
/// Falls back to `Same` on a single CPU.
fn pin_self(pinning: Pinning) -> Option<usize> {
    use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
    use nix::unistd::Pid;
    let allowed = sched_getaffinity(Pid::from_raw(0)).ok()?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    let (&last, _) = cpus.split_last()?;
    let (ours, theirs) = match pinning {
        Pinning::Off => return None,
        Pinning::Split if cpus.len() >= 2 => (cpus[cpus.len() - 2], last),
        _ => (last, last),
    };
    let mut set = CpuSet::new();
    set.set(ours).ok()?;
    sched_setaffinity(Pid::from_raw(0), &set).ok()?;
    Some(theirs)
}

/// Puts a server (its main thread, and the threads it starts later) on `cpu`.
fn pin_server(pid: i32, cpu: usize) {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = sched_setaffinity(nix::unistd::Pid::from_raw(pid), &set);
    }
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
    /// The server's system calls in the measured window (`Err`: why not
    /// counted).
    pub syscalls: Result<Syscalls, String>,
    /// Which system calls, counted in a window of their own after the
    /// measured ones (counting by name slows the server: see [`syscalls`]).
    pub by_call: Option<Syscalls>,
    /// The server's resident memory with the idle connections held (before
    /// the point's active clients connect), and what that adds per idle
    /// connection to its memory with none.
    pub rss_kib: Option<u64>,
    pub kib_per_idle: Option<f64>,
}

/// How a point not measured because the server cannot hold it (a limit of
/// its design, such as its fds per connection) begins: a finding about the
/// server, not a failure of the bench.
pub const BEYOND: &str = "beyond this server's limits: ";

impl Point {
    /// Whether the point failed (a finding is not a failure).
    pub fn failed(&self) -> bool {
        matches!(&self.outcome, Err(err) if !err.starts_with(BEYOND))
    }
}

/// Where the sweep is, for a progress line.
#[derive(Debug)]
pub struct Step<'a> {
    /// Points finished so far, and in all.
    pub done: usize,
    pub total: usize,
    pub server: &'a str,
    pub idle: usize,
    /// `None` while idle connections are being opened.
    pub active: Option<usize>,
    /// Which slice of an interleaved point, and of how many.
    pub slice: Option<(usize, usize)>,
}

/// How long the server may take to hold every idle connection we opened.
const ACCEPT_WITHIN: Duration = Duration::from_secs(30);
/// Interleaved points are measured in this many slices per server.
const SLICES: usize = 8;

/// A started server and what the sweep knows about it.
struct Running<'a> {
    server: &'a Server,
    program: Option<Program>,
    target: Target,
    /// fds the server held before any client.
    base_fds: usize,
    /// fds each idle connection costs the server, once measured (one for
    /// most servers; two for a thread that clones its socket).
    per_connection: Option<usize>,
    /// The server's fd limit (its soft limit starts at our hard limit).
    fd_limit: usize,
    pool: Option<IdlePool>,
    /// After a failure the server's remaining points are not measured: a
    /// stuck server would cost a timeout each.
    failure: Option<String>,
    /// Its resident memory before the first idle connection (KiB).
    rss_base: Option<u64>,
}

impl Running<'_> {
    fn fail(&mut self, err: String) -> String {
        let err = match self.program.as_mut() {
            Some(program) => with_exit(program, err),
            None => err,
        };
        self.failure = Some(err.clone());
        err
    }

    /// Ends the server, then closes our side of its idle connections: its
    /// side closes first, so the TIME_WAIT states are its, not our source
    /// address's.
    fn stop(&mut self) {
        self.program = None;
        self.pool = None;
    }
}

/// Runs the whole plan; `progress` hears before each step.
pub fn run(servers: &[Server], plan: &Plan, mut progress: impl FnMut(&Step)) -> Vec<Point> {
    let registry = Arc::new(Registry::default());
    let server_cpu = pin_self(plan.pinning);
    let mut running: Vec<Running> = servers
        .iter()
        .enumerate()
        .map(|(index, server)| start(server, &registry, source_address(index), server_cpu))
        .collect();
    let most_active = plan.active.iter().copied().max().unwrap_or(1);
    // A server that cannot watch high fds (select) is also measured at the
    // most idle connections it can hold, so its curve goes as far as it can.
    let at_capacity: Vec<Option<usize>> = running
        .iter()
        .map(|server| capacity(server, plan, most_active))
        .collect();
    let total = servers.len() * plan.points_per_server()
        + at_capacity.iter().flatten().count() * plan.active.len();
    let mut points = Vec::with_capacity(total);
    let mut report = |step: Step| progress(&Step { total, ..step });
    let mut idle_counts = plan.idle.as_slice();
    if let [0, rest @ ..] = idle_counts {
        interleaved(&mut running, plan, &mut points, &mut report);
        idle_counts = rest;
    }
    for (server, capacity) in running.iter_mut().zip(at_capacity) {
        for &idle in idle_counts {
            // Before the first point it cannot hold: the most it can.
            if let Some(most) = capacity
                && most < idle
                && !points_at(&points, server, most)
            {
                one_idle_count(server, most, plan, &mut points, &mut report);
            }
            one_idle_count(server, idle, plan, &mut points, &mut report);
        }
        server.stop();
    }
    // Table order: by server, then idle, then active.
    let order = |p: &Point| {
        let server = servers.iter().position(|s| s.name == p.server);
        (server, p.idle, p.active)
    };
    points.sort_by_key(order);
    points
}

/// Each server's clients come from their own loopback address, distinct from
/// the grader's (127.x.0-199.y), so ports never run short.
fn source_address(index: usize) -> Ipv4Addr {
    let pid = std::process::id() as usize;
    Ipv4Addr::new(127, 20 + (pid % 200) as u8, 200 + (index % 50) as u8, 1)
}

fn start<'a>(
    server: &'a Server,
    registry: &Arc<Registry>,
    source: Ipv4Addr,
    cpu: Option<usize>,
) -> Running<'a> {
    let hard = |resource| nix::sys::resource::getrlimit(resource).map_or(0, |(_, hard)| hard);
    let options = SpawnOptions {
        args: server.args.clone(),
        // The hard limit: every idle connection costs the server an fd.
        nofile_soft: None,
        // A thread per client needs a task per client: as many as allowed.
        processes: Some(hard(nix::sys::resource::Resource::RLIMIT_NPROC)),
        ..SpawnOptions::default()
    };
    let mut running = Running {
        server,
        program: None,
        target: Target {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            source,
        },
        base_fds: 0,
        per_connection: None,
        fd_limit: usize::try_from(hard(nix::sys::resource::Resource::RLIMIT_NOFILE))
            .unwrap_or(usize::MAX),
        pool: None,
        failure: None,
        rss_base: None,
    };
    if let Some(why) = &server.unavailable {
        running.failure = Some(format!("{BEYOND}{why}"));
        return running;
    }
    let mut program = match Program::spawn(&server.bin, options, registry) {
        Ok(program) => program,
        Err(err) => {
            running.failure = Some(err);
            return running;
        }
    };
    if let Some(cpu) = cpu {
        pin_server(program.pid, cpu);
    }
    match program.wait_listening(Duration::from_secs(10)) {
        Ok(port) => {
            running.target.addr.set_port(port);
            running.base_fds = proc::open_fds(program.pid).unwrap_or(0);
            running.pool = Some(IdlePool::new(running.target));
        }
        Err(err) => running.failure = Some(err),
    }
    running.program = Some(program);
    running
}

/// The points without idle connections, every server in turn, slice by slice.
fn interleaved(
    running: &mut [Running],
    plan: &Plan,
    points: &mut Vec<Point>,
    progress: &mut dyn FnMut(Step),
) {
    let slice = plan.duration / SLICES as u32;
    for &active in &plan.active {
        let mut sets: Vec<Option<ActiveSet>> = Vec::new();
        let mut rtts: Vec<Vec<u64>> = vec![Vec::new(); running.len()];
        let mut windows: Vec<Window> = Vec::new();
        for server in running.iter_mut() {
            let set = match &server.failure {
                Some(_) => None,
                None => ActiveSet::connect(&server.target, active, plan.line_bytes)
                    .map_err(|err| server.fail(err))
                    .ok(),
            };
            sets.push(set);
            // After the clients connect: a thread per client is there.
            windows.push(Window::new(counter(server, plan, false)));
        }
        // Warm up every server once, then rotate who goes first in each
        // slice so that no server always follows the same one.
        for round in 0..=SLICES {
            for k in 0..running.len() {
                let i = (k + round) % running.len();
                let Some(set) = sets[i].as_mut() else {
                    continue;
                };
                progress(Step {
                    done: points.len(),
                    total: 0,
                    server: &running[i].server.name,
                    idle: 0,
                    active: Some(active),
                    slice: Some((round, SLICES)),
                });
                let (warmup, counted) = match round {
                    0 => (plan.warmup, Duration::ZERO),
                    _ => (Duration::ZERO, slice),
                };
                // Counting covers the slices exactly, not the warm-up.
                if round > 0 {
                    windows[i].open();
                }
                match set.run(warmup, counted, &mut rtts[i]) {
                    Ok(completed) if round > 0 => windows[i].close(completed),
                    Ok(_) => {}
                    Err(err) => {
                        running[i].fail(err);
                        sets[i] = None;
                    }
                }
            }
        }
        // Then one more slice each, not measured, to see which calls.
        let mut by_call = Vec::new();
        for (server, set) in running.iter().zip(sets.iter_mut()) {
            by_call.push(match set {
                Some(set) if server.failure.is_none() => calls(server, set, slice, plan),
                _ => None,
            });
        }
        for (((server, samples), window), by_call) in
            running.iter().zip(rtts).zip(windows).zip(by_call)
        {
            let outcome = match &server.failure {
                Some(err) => Err(err.clone()),
                None => load::summarize(samples, slice * SLICES as u32),
            };
            points.push(Point {
                server: server.server.name.clone(),
                idle: 0,
                active,
                outcome,
                syscalls: window.finish(),
                by_call,
                rss_kib: server.program.as_ref().and_then(|p| proc::rss_kib(p.pid)),
                kib_per_idle: None,
            });
        }
    }
}

/// The points of one server with `idle` idle connections.
fn one_idle_count(
    server: &mut Running,
    idle: usize,
    plan: &Plan,
    points: &mut Vec<Point>,
    progress: &mut dyn FnMut(Step),
) {
    let most_active = plan.active.iter().copied().max().unwrap_or(1);
    let beyond = beyond_limits(server, idle, most_active);
    let mut memory = (None, None);
    if server.failure.is_none() && beyond.is_none() {
        progress(Step {
            done: points.len(),
            total: 0,
            server: &server.server.name,
            idle,
            active: None,
            slice: None,
        });
        match open_idle(server, idle) {
            Ok(()) => memory = resident(server, idle),
            Err(err) => {
                server.fail(err);
            }
        }
    }
    for &active in &plan.active {
        let mut syscalls = Err(String::new());
        let outcome = match (&server.failure, &beyond) {
            (_, Some(why)) => Err(why.clone()),
            (Some(err), None) => Err(skipped(err)),
            (None, None) => {
                progress(Step {
                    done: points.len(),
                    total: 0,
                    server: &server.server.name,
                    idle,
                    active: Some(active),
                    slice: None,
                });
                measure(server, active, plan, &mut syscalls).map_err(|err| server.fail(err))
            }
        };
        points.push(Point {
            server: server.server.name.clone(),
            idle,
            active,
            outcome,
            syscalls,
            by_call: None,
            rss_kib: memory.0,
            kib_per_idle: memory.1,
        });
    }
}

/// One point of one server: `active` clients warm up, then round trips are
/// counted, and the server's system calls with them.
fn measure(
    server: &Running,
    active: usize,
    plan: &Plan,
    syscalls: &mut Result<Syscalls, String>,
) -> Result<Measure, String> {
    let mut clients = ActiveSet::connect(&server.target, active, plan.line_bytes)?;
    clients.run(plan.warmup, Duration::ZERO, &mut Vec::new())?;
    let mut window = Window::new(counter(server, plan, false));
    let mut rtts = Vec::new();
    window.open();
    let completed = clients.run(Duration::ZERO, plan.duration, &mut rtts)?;
    window.close(completed);
    *syscalls = window.finish();
    load::summarize(rtts, plan.duration)
}

/// Which system calls the server makes, by name, over one more `slice` of
/// round trips (not measured: counting by name slows it).
fn calls(server: &Running, set: &mut ActiveSet, slice: Duration, plan: &Plan) -> Option<Syscalls> {
    let mut window = Window::new(counter(server, plan, true));
    window.open();
    let completed = set.run(Duration::ZERO, slice, &mut Vec::new()).ok()?;
    window.close(completed);
    window.finish().ok().filter(|s| !s.by_name.is_empty())
}

/// A perf counter on the server, counting off until a window opens;
/// `named`: by call too.
fn counter(server: &Running, plan: &Plan, named: bool) -> Result<syscalls::Counter, String> {
    plan.syscalls.clone()?;
    let pid = match (&server.failure, &server.program) {
        (None, Some(program)) => program.pid,
        _ => return Err(String::new()),
    };
    // Every task perf attaches to, the kernel's io_uring workers included.
    let tasks = proc::thread_names(pid).map_or(1, |names| names.len());
    syscalls::Counter::attach(pid, tasks, named)
}

/// The server's resident memory with `idle` connections held, and what each
/// adds to its memory before the first (KiB). The first call, before any
/// idle connection, takes that baseline.
fn resident(server: &Running, idle: usize) -> (Option<u64>, Option<f64>) {
    let Some(pid) = server.program.as_ref().map(|p| p.pid) else {
        return (None, None);
    };
    // The last connections accepted may still be getting their buffers.
    std::thread::sleep(Duration::from_millis(100));
    let rss = proc::rss_kib(pid);
    let per = match (rss, server.rss_base) {
        (Some(rss), Some(base)) if idle > 0 => Some((rss as f64 - base as f64) / idle as f64),
        _ => None,
    };
    (rss, per)
}

/// The message of a point not measured because an earlier one failed.
fn skipped(err: &str) -> String {
    if err.starts_with("not measured: ") || err.starts_with(BEYOND) {
        err.to_string()
    } else {
        format!("not measured: an earlier point failed ({err})")
    }
}

/// Why the server cannot hold `idle` idle connections (and `active`
/// clients), if it cannot: its fds per connection (measured at its first
/// idle point) times `idle` do not fit its fd limit, or go past the highest
/// fd it can watch.
fn beyond_limits(server: &Running, idle: usize, active: usize) -> Option<String> {
    let per = server.per_connection.unwrap_or(1);
    let needed = server.base_fds + idle * per + FD_SLACK;
    if let Some(max) = server.server.max_fd {
        let highest = server.base_fds + (idle + active) * per;
        if idle > 0 && highest >= max {
            return Some(format!(
                "{BEYOND}it can watch only fds below {max} (select's FD_SETSIZE), \
                 and {idle} idle connections with {active} active clients need fds up to about {highest}"
            ));
        }
    }
    (needed > server.fd_limit).then(|| {
        format!(
            "{BEYOND}{idle} idle connections at {per} fd{} each need about {needed} fds, \
             more than its fd limit of {}",
            if per == 1 { "" } else { "s" },
            server.fd_limit
        )
    })
}

/// The most idle connections a server with a highest watchable fd holds
/// alongside `active` clients, when the plan asks for more (rounded down to
/// a multiple of 50).
fn capacity(server: &Running, plan: &Plan, active: usize) -> Option<usize> {
    let max = server.server.max_fd?;
    let most = max.checked_sub(server.base_fds + active + 1)? / 50 * 50;
    (most > 0 && plan.idle.iter().any(|&idle| idle > most)).then_some(most)
}

fn points_at(points: &[Point], server: &Running, idle: usize) -> bool {
    points
        .iter()
        .any(|p| p.server == server.server.name && p.idle == idle)
}

/// fds a server may need besides its connections and those at its start.
const FD_SLACK: usize = 16;

/// Grows the pool to `idle` and waits until the server holds them all (at
/// least one fd each), so that a point never measures connections still in
/// the kernel's accept queue. At the first idle point it also learns how
/// many fds each connection costs the server.
fn open_idle(server: &mut Running, idle: usize) -> Result<(), String> {
    let (Some(program), Some(pool)) = (server.program.as_mut(), server.pool.as_mut()) else {
        return Err("the server is not running".into());
    };
    if server.rss_base.is_none() && pool.is_empty() {
        server.rss_base = proc::rss_kib(program.pid);
    }
    pool.grow_to(idle)
        .map_err(|err| format!("{err} (holding {} already)", pool.len()))?;
    let deadline = Instant::now() + ACCEPT_WITHIN;
    loop {
        let held = proc::open_fds(program.pid)
            .unwrap_or(0)
            .saturating_sub(server.base_fds);
        if held >= idle {
            if server.per_connection.is_none() && idle > 0 {
                let held = settled_fds(program.pid).saturating_sub(server.base_fds);
                // Rounded: a server may open an fd or two of its own on
                // the way (an epoll instance, a log file).
                server.per_connection = Some(((held + idle / 2) / idle).max(1));
            }
            return Ok(());
        }
        if program.check_alive().is_err() {
            return Err(format!(
                "the server ended while holding {held} of {idle} idle connections"
            ));
        }
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

/// The server's open fds once they stop growing (200 ms without change,
/// 3 s at most): a server that costs two fds per connection passes `idle`
/// halfway through accepting.
fn settled_fds(pid: i32) -> usize {
    let mut held = proc::open_fds(pid).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut stable_since = Instant::now();
    while Instant::now() < deadline && stable_since.elapsed() < Duration::from_millis(200) {
        std::thread::sleep(Duration::from_millis(20));
        let now = proc::open_fds(pid).unwrap_or(held);
        if now != held {
            held = now;
            stable_since = Instant::now();
        }
    }
    held
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

#[cfg(test)]
mod tests {
    use super::*;

    fn running(server: &Server, per_connection: Option<usize>, fd_limit: usize) -> Running<'_> {
        Running {
            server,
            program: None,
            target: Target {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                source: Ipv4Addr::LOCALHOST,
            },
            base_fds: 8,
            per_connection,
            fd_limit,
            pool: None,
            failure: None,
            rss_base: None,
        }
    }

    #[test]
    fn select_beyond_fd_setsize_is_a_finding() {
        let server = Server {
            name: "select_echo".into(),
            bin: PathBuf::from("/bin/false"),
            args: Vec::new(),
            max_fd: Some(1024),
            unavailable: None,
        };
        let fits = running(&server, Some(1), 20_000);
        assert_eq!(beyond_limits(&fits, 100, 50), None);
        assert_eq!(beyond_limits(&fits, 0, 50), None);
        let why = beyond_limits(&fits, 1000, 50).unwrap();
        assert!(
            why.starts_with(BEYOND) && why.contains("FD_SETSIZE"),
            "{why}"
        );
    }

    #[test]
    fn a_point_beyond_a_servers_fds_per_connection_is_a_finding_not_a_failure() {
        let server = Server {
            name: "clones".into(),
            bin: PathBuf::from("/bin/false"),
            args: Vec::new(),
            max_fd: None,
            unavailable: None,
        };
        // One fd per connection: 10,000 fit a limit of 20,000; two do not.
        assert_eq!(
            beyond_limits(&running(&server, Some(1), 20_000), 10_000, 50),
            None
        );
        let why = beyond_limits(&running(&server, Some(2), 20_000), 10_000, 50).unwrap();
        assert!(
            why.starts_with(BEYOND) && why.contains("2 fds each"),
            "{why}"
        );
        let point = Point {
            server: server.name.clone(),
            idle: 10_000,
            active: 1,
            outcome: Err(why),
            syscalls: Err(String::new()),
            by_call: None,
            rss_kib: None,
            kib_per_idle: None,
        };
        assert!(!point.failed());
        let broken = Point {
            outcome: Err("connection reset".into()),
            ..point
        };
        assert!(broken.failed());
    }
}
