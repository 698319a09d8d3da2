//! System calls per round trip, counted by `perf stat` on the kernel's
//! system-call tracepoints.
//!
//! The kernel counts each system call as the server's thread enters it, in
//! the server's own context: nothing stops the server the way `strace`
//! does (ptrace makes every system call a round trip through the tracer).
//! One `perf stat` per server is attached to it (`-p PID`), started with
//! its counters disabled and switched on and off through its control fifo
//! (`--control`), exactly around the stretches in which the bench counts
//! round trips; so syscalls divided by round trips covers the same window.
//!
//! The total comes from `raw_syscalls:sys_enter`, the one tracepoint every
//! system call passes (the sum of all `syscalls:sys_enter_*`, for one event
//! instead of 350 per thread). Which calls they were takes an event per
//! named call, and perf's work at each system call and each context switch
//! grows with its events: with the 19 of the breakdown attached, a lone
//! client's round trip took 22 µs instead of 15, with the one total 17. So
//! the measured windows count the total only, and the breakdown is counted
//! in a window of its own whose round trips are not in the table.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The calls named in the breakdown: the ones an echo server's round trip
/// is made of, under every interface of the course.
const NAMED: &[&str] = &[
    "io_uring_enter",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "recvfrom",
    "read",
    "recvmsg",
    "sendto",
    "write",
    "sendmsg",
    "writev",
    "epoll_ctl",
    "accept4",
    "futex",
];
/// A thread costs perf one event (an fd) per tracepoint: past this many
/// threads only the total is counted, past [`MOST_THREADS`] nothing.
const NAMED_UP_TO_THREADS: usize = 64;
const MOST_THREADS: usize = 16_000;
/// How long perf may take to attach, or to answer a command.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
const TRACEFS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// What the server did in the counted windows.
#[derive(Clone, Debug, PartialEq)]
pub struct Syscalls {
    /// Every system call its threads entered.
    pub total: u64,
    /// The round trips the bench completed in those windows.
    pub round_trips: u64,
    /// The named calls among them, most frequent first (empty when only
    /// the total was counted).
    pub by_name: Vec<(String, u64)>,
}

impl Syscalls {
    pub fn per_round_trip(&self) -> f64 {
        self.total as f64 / self.round_trips.max(1) as f64
    }

    /// `1.00 recvfrom + 1.00 sendto + 0.04 epoll_wait`: the named calls
    /// of at least 0.01 per round trip, and the rest as `other`.
    pub fn breakdown(&self) -> String {
        let per = |n: u64| n as f64 / self.round_trips.max(1) as f64;
        let mut parts: Vec<String> = self
            .by_name
            .iter()
            .filter(|(_, n)| per(*n) >= 0.005)
            .map(|(name, n)| format!("{:.2} {name}", per(*n)))
            .collect();
        let named: u64 = self.by_name.iter().map(|(_, n)| n).sum();
        let other = self.total.saturating_sub(named);
        if per(other) >= 0.005 || parts.is_empty() {
            parts.push(format!("{:.2} other", per(other)));
        }
        parts.join(" + ")
    }
}

/// Whether perf can count system calls here: attaches to this process and
/// counts a few of its own. `Err` says why not, in one sentence.
pub fn probe() -> Result<(), String> {
    let mut counter = Counter::attach(std::process::id() as i32, 1, false)?;
    counter.enable()?;
    let _ = fs::metadata("/");
    counter.disable()?;
    let counts = counter.finish(1)?;
    if counts.total == 0 {
        return Err("perf attached but counted no system call".into());
    }
    Ok(())
}

/// One `perf stat` attached to one process, counting while enabled.
pub struct Counter {
    perf: Child,
    dir: PathBuf,
    ctl: File,
    ack: File,
    named: bool,
}

impl Counter {
    /// Starts perf on `pid` (which runs `threads` threads), counters off;
    /// `named`: the breakdown by call too.
    pub fn attach(pid: i32, threads: usize, named: bool) -> Result<Counter, String> {
        if threads > MOST_THREADS {
            return Err(format!(
                "the server runs {threads} threads, and perf needs an event per thread: \
                 counted up to {MOST_THREADS} threads"
            ));
        }
        let tracefs = TRACEFS
            .iter()
            .map(Path::new)
            .find(|dir| dir.join("events/raw_syscalls").exists())
            .ok_or(
                "no tracefs: /sys/kernel/tracing/events/raw_syscalls is missing \
                 (mount -t tracefs nodev /sys/kernel/tracing, as root)",
            )?;
        let mut events = vec!["raw_syscalls:sys_enter".to_string()];
        let named = named && threads <= NAMED_UP_TO_THREADS;
        if named {
            events.extend(
                NAMED
                    .iter()
                    .filter(|n| {
                        tracefs
                            .join(format!("events/syscalls/sys_enter_{n}"))
                            .exists()
                    })
                    .map(|n| format!("syscalls:sys_enter_{n}")),
            );
        }
        let dir = scratch_dir()?;
        let (ctl_path, ack_path) = (dir.join("ctl"), dir.join("ack"));
        for fifo in [&ctl_path, &ack_path] {
            nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::S_IRWXU)
                .map_err(|err| format!("mkfifo {}: {err}", fifo.display()))?;
        }
        // Both ends read-write: opening a fifo never waits for perf then.
        let open = |path: &Path| {
            File::options()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|err| format!("open {}: {err}", path.display()))
        };
        let (ctl, ack) = (open(&ctl_path)?, open(&ack_path)?);
        let spawned = Command::new("perf")
            .args(["stat", "-x", ",", "-D", "-1", "--control"])
            .arg(format!(
                "fifo:{},{}",
                ctl_path.display(),
                ack_path.display()
            ))
            .arg("-o")
            .arg(dir.join("counts"))
            .args(["-e", &events.join(","), "-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.join("stderr")).map_err(|err| err.to_string())?)
            .spawn();
        let perf = match spawned {
            Ok(perf) => perf,
            Err(err) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(if err.kind() == std::io::ErrorKind::NotFound {
                    "perf is not installed (Debian: apt-get install linux-perf)".to_string()
                } else {
                    format!("cannot start perf: {err}")
                });
            }
        };
        Ok(Counter {
            perf,
            dir,
            ctl,
            ack,
            named,
        })
    }

    /// Switches counting on; returns once perf has.
    pub fn enable(&mut self) -> Result<(), String> {
        self.command("enable")
    }

    /// Switches counting off; returns once perf has.
    pub fn disable(&mut self) -> Result<(), String> {
        self.command("disable")
    }

    fn command(&mut self, what: &str) -> Result<(), String> {
        self.ctl
            .write_all(format!("{what}\n").as_bytes())
            .map_err(|err| format!("perf's control fifo: {err}"))?;
        let deadline = Instant::now() + ANSWER_WITHIN;
        let mut answer = Vec::new();
        while !answer.ends_with(b"\n") {
            if let Ok(Some(_)) = self.perf.try_wait() {
                return Err(self.why_perf_ended());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "perf did not answer '{what}' within {} s",
                    ANSWER_WITHIN.as_secs()
                ));
            }
            let mut fds = [nix::poll::PollFd::new(
                self.ack.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let wait = nix::poll::PollTimeout::try_from(left.min(Duration::from_millis(100)))
                .unwrap_or(nix::poll::PollTimeout::MAX);
            if nix::poll::poll(&mut fds, wait).unwrap_or(0) > 0 {
                let mut byte = [0u8; 1];
                if self.ack.read(&mut byte).map_err(|err| err.to_string())? == 1 {
                    answer.push(byte[0]);
                }
            }
        }
        Ok(())
    }

    /// Ends perf and reads its counts; `round_trips` are those the bench
    /// completed while counting was on.
    pub fn finish(mut self, round_trips: u64) -> Result<Syscalls, String> {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.perf.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let deadline = Instant::now() + ANSWER_WITHIN;
        while matches!(self.perf.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = fs::read_to_string(self.dir.join("counts")).unwrap_or_default();
        let mut counts = parse(&text).ok_or_else(|| self.why_perf_ended())?;
        if !self.named {
            counts.by_name.clear();
        }
        counts.round_trips = round_trips;
        Ok(counts)
    }

    /// perf's own error, as one sentence with the likely fix.
    fn why_perf_ended(&mut self) -> String {
        let _ = self.perf.kill();
        let _ = self.perf.wait();
        let stderr = fs::read_to_string(self.dir.join("stderr")).unwrap_or_default();
        classify(&stderr)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = self.perf.kill();
        let _ = self.perf.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A counter over one or more windows, and the round trips of those
/// windows; a counter that fails is remembered as the reason for `n/a`.
pub struct Window {
    counter: Result<Counter, String>,
    round_trips: u64,
}

impl Window {
    pub fn new(counter: Result<Counter, String>) -> Window {
        Window {
            counter,
            round_trips: 0,
        }
    }

    /// Counting on, just before the bench starts a stretch of round trips.
    pub fn open(&mut self) {
        if let Ok(counter) = &mut self.counter
            && let Err(err) = counter.enable()
        {
            self.counter = Err(err);
        }
    }

    /// Counting off, once the `round_trips` of the stretch are all back.
    pub fn close(&mut self, round_trips: u64) {
        if let Ok(counter) = &mut self.counter
            && let Err(err) = counter.disable()
        {
            self.counter = Err(err);
        }
        self.round_trips += round_trips;
    }

    pub fn finish(self) -> Result<Syscalls, String> {
        self.counter?.finish(self.round_trips)
    }
}

/// A fresh directory for one perf's fifos and output.
fn scratch_dir() -> Result<PathBuf, String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "iomux-bench-perf-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|err| format!("create {}: {err}", dir.display()))?;
    Ok(dir)
}

/// perf's `-x ,` output: `COUNT,UNIT,EVENT,...` per event.
pub fn parse(text: &str) -> Option<Syscalls> {
    let mut total = None;
    let mut by_name = Vec::new();
    for line in text.lines() {
        let mut fields = line.split(',');
        let (Some(count), Some(_unit), Some(event)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // `<not counted>` when the event was never enabled: none.
        let count: u64 = count.trim().parse().unwrap_or(0);
        if event == "raw_syscalls:sys_enter" {
            total = Some(count);
        } else if let Some(name) = event.strip_prefix("syscalls:sys_enter_")
            && count > 0
        {
            by_name.push((name.to_string(), count));
        }
    }
    by_name.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Some(Syscalls {
        total: total?,
        round_trips: 0,
        by_name,
    })
}

/// Why perf could not count, from what it printed.
pub fn classify(stderr: &str) -> String {
    let paranoid = fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    if stderr.contains("paranoid")
        || stderr.contains("ermission")
        || stderr.contains("Access to performance monitoring")
    {
        format!(
            "perf may not count this process's system calls: kernel.perf_event_paranoid is {paranoid} \
             (run the bench as root, or `sysctl kernel.perf_event_paranoid=-1`)"
        )
    } else if stderr.contains("unknown tracepoint") || stderr.contains("tracefs") {
        "perf cannot read the syscall tracepoints (is tracefs mounted at /sys/kernel/tracing?)"
            .into()
    } else {
        let first = stderr
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or("no message");
        format!("perf stat failed: {first}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_output_is_summed_and_named() {
        let text = "# started on Mon Dec  7 00:25:35 2026\n\n\
            2005,,raw_syscalls:sys_enter,80294238,100.00,,\n\
            1002,,syscalls:sys_enter_epoll_wait,80294238,100.00,,\n\
            1001,,syscalls:sys_enter_recvfrom,80294238,100.00,,\n\
            0,,syscalls:sys_enter_futex,80294238,100.00,,\n\
            <not counted>,,syscalls:sys_enter_ppoll,0,0.00,,\n\
            Events disabled\n";
        let mut counts = parse(text).unwrap();
        counts.round_trips = 1000;
        assert_eq!(counts.total, 2005);
        assert_eq!(
            counts.by_name,
            vec![("epoll_wait".into(), 1002), ("recvfrom".into(), 1001)]
        );
        assert_eq!(counts.per_round_trip(), 2.005);
        assert_eq!(counts.breakdown(), "1.00 epoll_wait + 1.00 recvfrom");
        assert_eq!(parse("Events enabled\n"), None);
    }

    #[test]
    fn perf_failures_name_the_fix() {
        let why = classify(
            "Error:\nAccess to performance monitoring and observability operations is limited.\n",
        );
        assert!(why.contains("perf_event_paranoid"), "{why}");
        let why = classify("event syntax error: 'raw_syscalls:sys_enter'\n  unknown tracepoint\n");
        assert!(why.contains("tracefs"), "{why}");
    }

    /// Counting works where perf does; elsewhere the reason is one line.
    #[test]
    fn the_probe_counts_or_says_why() {
        match probe() {
            Ok(()) => {}
            Err(why) => assert!(!why.contains('\n') && !why.is_empty(), "{why}"),
        }
    }
}
