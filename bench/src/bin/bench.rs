//! bench: runs the sweep and writes the table (stdout), a CSV and an SVG plot.
//! `make bench` builds everything and runs it; see docs/bench.md.

use bench::report;
use bench::sweep::{self, Pinning, Plan, Server, Step};
use grader::harness::text::thousands;
use labkit::{Args, OrFail, fail, usage_error};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const USAGE: &str = "[--idle LIST] [--active LIST] [--duration-ms MS] [--warmup-ms MS] \
[--line-bytes L] [--servers LIST] [--bin PATH --lab LAB] [--pin same|split|off] [--no-syscalls]
[--out DIR]
  --idle LIST        idle connections held open, e.g. 0,100,1000,10000 (the default)
  --active LIST      active ping-pong clients, e.g. 1,50 (the default)
  --duration-ms MS   how long each point is measured (default 2000)
  --warmup-ms MS     round trips before counting starts (default 250)
  --line-bytes L     bytes per line, counting the \\n, 1 to 8192 (default 64)
  --servers LIST     of select_echo,poll_echo,epoll_lt,epoll_et,uring_echo,
                     async_echo,tcp_udp,threads,tokio (default: all)
  --bin PATH --lab LAB  also measure your own server for LAB (select_echo,
                     poll_echo, epoll_lt, epoll_et, uring_echo, timeouts,
                     async_echo or tcp_udp)
  --pin same|split|off  the generator and the server on the same CPU (default),
                     on two CPUs, or wherever the scheduler puts them
  --no-syscalls      do not attach perf to count the servers' system calls
                     (to see what counting costs: compare round trips/s)
  --out DIR          where the CSV and the SVG go (default: target/bench)";

/// The servers the bench knows: name in the output, binary next to ours.
const KNOWN: &[(&str, &str)] = &[
    ("select_echo", "select_echo_solution"),
    ("poll_echo", "poll_echo_solution"),
    ("epoll_lt", "epoll_lt_solution"),
    ("epoll_et", "epoll_et_solution"),
    ("uring_echo", "uring_echo_solution"),
    ("async_echo", "async_echo_solution"),
    ("tcp_udp", "tcp_udp_solution"),
    ("threads", "bench_threads_echo"),
    ("tokio", "bench_tokio_echo"),
];
/// fds the generator needs besides its connections (stdio, epoll, pipes).
const FD_SLACK: u64 = 64;

fn main() {
    // The servers are the course's own baselines and your own program: they
    // run as you (as root too: the grader's switch to `nobody` would hold a
    // thread-per-client baseline to 256 threads).
    let _ = grader::harness::contain::choose_user(Some("root"));
    let args = Args::parse(
        USAGE,
        &[
            "--idle",
            "--active",
            "--duration-ms",
            "--warmup-ms",
            "--line-bytes",
            "--servers",
            "--bin",
            "--lab",
            "--out",
            "--pin",
        ],
        &["--no-syscalls"],
    );
    args.positional(0, 0);
    let mut plan = Plan {
        idle: list(&args, "--idle", "0,100,1000,10000"),
        active: list(&args, "--active", "1,50"),
        line_bytes: args.value("--line-bytes", 64usize),
        warmup: Duration::from_millis(args.value("--warmup-ms", 250u64)),
        duration: Duration::from_millis(args.value("--duration-ms", 2000u64)),
        pinning: Pinning::parse(&args.value::<String>("--pin", "same".into()))
            .unwrap_or_else(|| usage_error("--pin takes same, split or off", USAGE)),
        syscalls: Err("not counted (--no-syscalls)".into()),
    };
    if !(1..=bench::load::MAX_LINE).contains(&plan.line_bytes) {
        usage_error("--line-bytes must be 1 to 8192", USAGE);
    }
    if plan.duration.is_zero() {
        usage_error("--duration-ms must be more than 0", USAGE);
    }
    if plan.active.contains(&0) {
        usage_error("--active values must be at least 1", USAGE);
    }
    let servers = servers(&args);
    let notes = cap_idle(&mut plan);
    if !args.flag("--no-syscalls") {
        plan.syscalls = bench::syscalls::probe();
    }
    let out: String = args.value("--out", String::new());
    let out_dir = if out.is_empty() {
        default_out_dir()
    } else {
        PathBuf::from(out)
    };

    let total = servers.len() * plan.points_per_server();
    let per_point = plan.duration + plan.warmup;
    // Opening idle connections and waiting for the server to hold them all
    // costs about a second per 5,000 connections and server.
    let setup = servers.len() as f64 * plan.idle.last().copied().unwrap_or(0) as f64 / 5000.0;
    eprintln!(
        "bench: {} servers x {} idle counts x {} active counts = {total} points of {:.1} s each \
         (about {:.0} s in all)",
        servers.len(),
        plan.idle.len(),
        plan.active.len(),
        per_point.as_secs_f64(),
        per_point.as_secs_f64() * total as f64 + setup + 1.0
    );
    for note in &notes {
        eprintln!("note: {note}");
    }
    // Before the sweep pins us to one CPU: this counts the machine's.
    let machine = machine();
    let mut progress = Progress::new();
    let points = sweep::run(&servers, &plan, |step| progress.show(step));
    progress.finish();

    let placement = match plan.pinning {
        Pinning::Same => "bench and server pinned to one CPU",
        Pinning::Split => "bench and server pinned to two CPUs",
        Pinning::Off => "not pinned",
    };
    let subtitle = format!(
        "{}-byte lines, {:.1} s per point, {placement}; {machine}; lower is better",
        plan.line_bytes,
        plan.duration.as_secs_f64()
    );
    println!("{}", report::table(&points));
    print!("{}", report::findings(&points, &plan));
    for note in &notes {
        println!("note: {note}");
    }
    std::fs::create_dir_all(&out_dir).or_fail(format_args!("cannot create {}", out_dir.display()));
    let csv_path = out_dir.join("bench.csv");
    let svg_path = out_dir.join("bench.svg");
    write(&csv_path, &report::csv(&points, &plan));
    write(&svg_path, &bench::svg::plot(&points, &plan, &subtitle));
    println!("wrote {}", csv_path.display());
    println!("wrote {}", svg_path.display());
    // A point a server cannot hold by design (its fds per connection) is a
    // finding under the table, not a failure.
    let failed = points.iter().filter(|p| p.failed()).count();
    if failed > 0 {
        eprintln!("bench: {failed} of {total} points failed (see the notes under the table)");
        std::process::exit(1);
    }
}

fn list(args: &Args, flag: &str, default: &str) -> Vec<usize> {
    let text: String = args.value(flag, default.to_string());
    let mut values: Vec<usize> = text
        .split(',')
        .map(|v| {
            v.trim().parse().unwrap_or_else(|_| {
                usage_error(
                    format!("{flag} takes numbers like {default}, not '{v}'"),
                    USAGE,
                )
            })
        })
        .collect();
    values.sort_unstable();
    values.dedup();
    values
}

/// The servers to measure: the known ones asked for, then `--bin`.
/// Every usage error is reported before a missing binary is, so that a
/// mistyped command line gets exit status 2 whatever has been built.
fn servers(args: &Args) -> Vec<Server> {
    let default: Vec<&str> = KNOWN.iter().map(|(name, _)| *name).collect();
    let names: String = args.value("--servers", default.join(","));
    let mut known = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(&(name, bin_name)) = KNOWN.iter().find(|(known, _)| *known == name) else {
            usage_error(
                format!("unknown server '{name}' (known: {})", default.join(", ")),
                USAGE,
            );
        };
        known.push((name, bin_name));
    }
    let yours = your_server(args);
    if known.is_empty() && yours.is_none() {
        usage_error("no server to measure", USAGE);
    }

    let here = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut servers = Vec::new();
    for (name, bin_name) in known {
        let bin = here.join(bin_name);
        if !bin.exists() {
            let package = bin_name
                .strip_prefix("bench_")
                .map_or(bin_name, |_| "bench");
            fail(format_args!(
                "{} is missing: build it first (cargo build --release -p {package}), or use `make bench`",
                bin.display()
            ));
        }
        servers.push(Server {
            name: name.to_string(),
            bin,
            args: lab_args(name),
            max_fd: fd_limit_of(name),
            unavailable: unavailable(name),
        });
    }
    if let Some((lab, bin)) = yours {
        let path = grader::harness::process::resolve_bin(&bin).unwrap_or_else(|err| fail(err));
        servers.push(Server {
            name: format!("yours ({lab})"),
            bin: path,
            max_fd: fd_limit_of(&lab),
            unavailable: unavailable(&lab),
            args: lab_args(&lab),
        });
    }
    servers
}

/// The timeouts and async_echo labs close idle connections after 10 s by
/// default: idle here means silent, not abandoned.
fn lab_args(lab: &str) -> Vec<String> {
    if matches!(lab, "timeouts" | "async_echo") {
        vec!["--idle-timeout-ms".to_string(), "3600000".to_string()]
    } else {
        Vec::new()
    }
}

/// The highest fd (plus one) a lab's server can watch: select's FD_SETSIZE.
fn fd_limit_of(lab: &str) -> Option<usize> {
    (lab == "select_echo").then_some(1024)
}

/// Why a lab's server cannot run on this machine at all: io_uring blocked
/// (a container's seccomp profile, `kernel.io_uring_disabled`).
fn unavailable(lab: &str) -> Option<String> {
    if lab != "uring_echo" {
        return None;
    }
    // The grader's reason, up to what it says about grading.
    grader::harness::uring::available().err().map(|why| {
        let first = why
            .split_once(". Every check")
            .map_or(why.as_str(), |(first, _)| first);
        first.replace("the grader's own", "the bench's own")
    })
}

/// `--bin PATH --lab LAB`, checked: (lab, path) or nothing.
fn your_server(args: &Args) -> Option<(String, String)> {
    let bin: String = args.value("--bin", String::new());
    let lab: String = args.value("--lab", String::new());
    match (bin.is_empty(), lab.is_empty()) {
        (true, true) => None,
        (false, false) => {
            let echo_labs: Vec<&str> = grader::course::LABS
                .iter()
                .filter(|l| l.bench)
                .map(|l| l.name)
                .collect();
            if !echo_labs.contains(&lab.as_str()) {
                usage_error(
                    format!("--lab must be one of {}, not '{lab}'", echo_labs.join(", ")),
                    USAGE,
                );
            }
            Some((lab, bin))
        }
        _ => usage_error("--bin and --lab go together", USAGE),
    }
}

/// Keeps every idle count within the fd limit (ours and the servers', which
/// start at our hard limit); says so when it had to.
fn cap_idle(plan: &mut Plan) -> Vec<String> {
    let limit = grader::harness::process::raise_own_fd_limit();
    let most_active = plan.active.iter().copied().max().unwrap_or(1) as u64;
    let room = limit.saturating_sub(most_active + FD_SLACK) as usize;
    let mut notes = Vec::new();
    for idle in plan.idle.iter_mut() {
        if *idle > room {
            notes.push(format!(
                "{} idle connections do not fit the fd limit ({} open files, `ulimit -Hn`): \
                 measuring {} instead",
                thousands(*idle),
                thousands(limit as usize),
                thousands(room)
            ));
            *idle = room;
        }
    }
    plan.idle.dedup();
    notes
}

/// `target/bench`, next to the `release` directory this binary is in.
fn default_out_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("bench")))
        .unwrap_or_else(|| PathBuf::from("target/bench"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).or_fail(format_args!("cannot write {}", path.display()));
}

/// `2 CPUs, AMD EPYC`.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    format!("{cpus} CPUs, {model}")
}

/// The progress line on stderr: rewritten in place on a terminal, one line
/// per step otherwise (a log stays readable).
struct Progress {
    started: Instant,
    tty: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, step: &Step) {
        let what = match (step.active, step.slice) {
            (Some(active), Some((0, _))) => {
                format!("{active} active, warm-up (servers interleaved)")
            }
            (Some(active), Some((k, n))) => {
                format!("{active} active, slice {k}/{n} (servers interleaved)")
            }
            (Some(active), None) => format!("{active} active"),
            (None, _) => "opening idle connections".to_string(),
        };
        let secs = self.started.elapsed().as_secs();
        let line = format!(
            "[{:>2}/{}] {:<16} {:>6} idle, {what}  ({}:{:02} elapsed)",
            step.done,
            step.total,
            step.server,
            thousands(step.idle),
            secs / 60,
            secs % 60
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r\x1b[K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    fn finish(&self) {
        let secs = self.started.elapsed().as_secs();
        if self.tty {
            eprint!("\r\x1b[K");
        }
        eprintln!("bench: done in {}:{:02}", secs / 60, secs % 60);
    }
}
