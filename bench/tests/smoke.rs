//! A short run of the bench, so that it cannot rot: it must run every server
//! it is given, measure something, and write a sane table, CSV and plot.
//! Speed is never asserted (the machine may be busy); the full sweep is
//! `make bench`, never a test.

use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The release bench with every server it knows built next to it, as
/// `make bench` runs it (the test build has no solution binaries).
fn release_bench() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&workspace)
        .args(["build", "--quiet", "--release", "-p", "bench"]);
    for solution in [
        "select_echo_solution",
        "poll_echo_solution",
        "epoll_lt_solution",
        "epoll_et_solution",
        "uring_echo_solution",
        "async_echo_solution",
        "tcp_udp_solution",
    ] {
        cargo.args(["-p", solution]);
    }
    assert!(
        cargo.status().expect("run cargo").success(),
        "cargo build failed"
    );
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("release/bench")
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .output()
        .expect("run bench")
}

/// The grader's tests measure time and CPU: they take this machine-wide lock
/// (grader/tests/common), and so does this load.
fn exclusive() -> Flock<File> {
    let path = std::env::temp_dir().join("iomux-labs-grader-tests.lock");
    // Read-only is enough for flock, and works on a lock file another user
    // created.
    let file = File::open(&path)
        .or_else(|_| {
            File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        })
        .expect("open the lock file");
    Flock::lock(file, FlockArg::LockExclusive).expect("lock")
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iomux-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_short_sweep_measures_every_server_and_writes_its_files() {
    let dir = out_dir("smoke");
    let _lock = exclusive();
    let output = bench(&[
        "--servers",
        "threads,tokio",
        "--bin",
        env!("CARGO_BIN_EXE_bench_tokio_echo"),
        "--lab",
        "epoll_lt",
        "--idle",
        "0,20",
        "--active",
        "1,3",
        "--duration-ms",
        "150",
        "--warmup-ms",
        "50",
        // Counting system calls has a test of its own (perf costs a
        // second or so per point here).
        "--no-syscalls",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("round trips/s"), "{stdout}");
    assert!(stdout.contains("RTT p50 from 0 to 20 idle"), "{stdout}");
    assert!(stderr.contains("0/12]"), "no progress line: {stderr}");

    let csv = std::fs::read_to_string(dir.join("bench.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 3 * 2 * 2, "{csv}");
    for row in &rows {
        let round_trips: u64 = row[5].parse().unwrap_or(0);
        let p50: f64 = row[7].parse().unwrap_or(0.0);
        let p99: f64 = row[8].parse().unwrap_or(0.0);
        assert!(round_trips > 0 && p50 > 0.0 && p99 >= p50, "{csv}");
        assert_eq!(row[13], "", "{csv}");
        // Memory with idle connections held, from /proc.
        assert!(row[11].parse::<u64>().unwrap_or(0) > 0, "{csv}");
    }
    let servers: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert!(servers.contains(&"yours (epoll_lt)"), "{csv}");

    let svg = std::fs::read_to_string(dir.join("bench.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<polyline fill=\"none\" stroke=\"#").count(),
        3 * 2
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The default sweep's largest point (10,000 idle connections, 50 active)
/// for every server the bench knows: each must hold it where the machine's
/// limits allow (issue 13: the threads baseline used two fds per connection
/// and lost its clients to EMFILE there).
#[test]
fn the_default_sweeps_largest_point_holds_for_every_server() {
    let dir = out_dir("largest");
    let bench = release_bench();
    let _lock = exclusive();
    let output = Command::new(bench)
        .args([
            // Each server's fds per connection are learnt at its first idle
            // point, as in the default sweep.
            "--idle",
            "100,10000",
            "--active",
            "50",
            "--duration-ms",
            "200",
            "--warmup-ms",
            "50",
            // Holding the point is the test; perf would add its start-up
            // to every point.
            "--no-syscalls",
            "--out",
            dir.to_str().unwrap(),
        ])
        .output()
        .expect("run bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let (_, fds) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let (_, tasks) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC).unwrap();
    if fds >= 12_000 && tasks >= 12_000 {
        let csv = std::fs::read_to_string(dir.join("bench.csv")).unwrap();
        for row in csv.lines().skip(1) {
            let fields: Vec<&str> = row.split(',').collect();
            if fields[0] == "select_echo" && fields[1] == "10000" {
                // select cannot watch 10,000 fds: a finding, said as such.
                assert!(row.contains("FD_SETSIZE"), "{row}\n{stdout}");
                continue;
            }
            assert!(
                fields[5].parse::<u64>().unwrap_or(0) > 0,
                "not measured: {row}\n{stdout}"
            );
        }
    } else {
        eprintln!("fd limit {fds}, task limit {tasks}: a point a server cannot hold is a finding");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_server_that_fails_is_reported_not_fatal() {
    let dir = out_dir("fail");
    let output = bench(&[
        "--servers",
        "",
        "--bin",
        "/bin/false",
        "--lab",
        "poll_echo",
        "--idle",
        "0,10",
        "--active",
        "1",
        "--duration-ms",
        "100",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("failed [1]"), "{stdout}");
    assert!(stdout.contains("listening on"), "{stdout}");
    assert!(dir.join("bench.svg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where perf can count, a server's system calls per round trip are in the
/// table and the CSV, and which calls they were under it; elsewhere the
/// column says n/a and why (perf is not required).
#[test]
fn system_calls_are_counted_per_round_trip_or_said_na() {
    let dir = out_dir("perf");
    let output = bench(&[
        "--servers",
        "tokio",
        "--idle",
        "0",
        "--active",
        "1",
        "--duration-ms",
        "200",
        "--warmup-ms",
        "20",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let csv = std::fs::read_to_string(dir.join("bench.csv")).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    if row[10].is_empty() {
        assert!(stdout.contains("syscalls/rt n/a: "), "{stdout}");
    } else {
        // tokio: an epoll_wait, a recvfrom and a sendto per round trip.
        let per_rt: f64 = row[10].parse().unwrap();
        assert!((1.5..10.0).contains(&per_rt), "{csv}");
        assert!(stdout.contains("recvfrom"), "{stdout}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without perf the syscall column says n/a, and why, once; the rest of the
/// bench is unaffected.
#[test]
fn without_perf_the_syscall_column_says_why() {
    let dir = out_dir("noperf");
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "--servers",
            "tokio",
            "--idle",
            "0",
            "--active",
            "1",
            "--duration-ms",
            "100",
            "--warmup-ms",
            "20",
            "--out",
            dir.to_str().unwrap(),
        ])
        .env("PATH", "/nonexistent")
        .output()
        .expect("run bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(
        stdout
            .matches("syscalls/rt n/a: perf is not installed")
            .count(),
        1,
        "{stdout}"
    );
    let row = stdout.lines().find(|l| l.starts_with("tokio ")).unwrap();
    assert!(row.contains("n/a"), "{row}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where io_uring is blocked (a container's seccomp profile: `EPERM`), a
/// uring_echo server's points are a finding with the reason, not a failure,
/// and the other servers are measured as usual.
#[test]
fn without_io_uring_the_uring_rows_say_why() {
    use grader::harness::seccomp::{Filter, Refusal};
    use std::os::unix::process::CommandExt;
    const SETUP: &[u32] = &[nix::libc::SYS_io_uring_setup as u32];
    let dir = out_dir("nouring");
    let filter = Filter::new(Refusal {
        syscalls: SETUP,
        errno: nix::errno::Errno::EPERM,
    });
    let mut command = Command::new(env!("CARGO_BIN_EXE_bench"));
    command.args([
        "--servers",
        "tokio",
        "--lab",
        "uring_echo",
        "--bin",
        env!("CARGO_BIN_EXE_bench_tokio_echo"),
        "--idle",
        "0",
        "--active",
        "1",
        "--duration-ms",
        "100",
        "--warmup-ms",
        "20",
        "--no-syscalls",
        "--out",
        dir.to_str().unwrap(),
    ]);
    // SAFETY: installing the filter makes two prctl calls and allocates
    // nothing (the filter was built before the fork).
    unsafe {
        command.pre_exec(move || filter.install());
    }
    let output = command.output().expect("run bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("yours (uring_echo)"))
        .unwrap_or_default();
    assert!(row.contains("n/a [1]"), "{stdout}");
    assert!(
        stdout.contains("[1] beyond this server's limits: io_uring is not available"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--idle", "x"][..],
        &["--servers", "nginx"],
        &["--bin", "/bin/true"],
        &["--line-bytes", "9000"],
    ] {
        let output = bench(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
    }
}

/// A baseline server, started and its port read from `listening on`.
struct Baseline(Child, u16);

impl Baseline {
    fn start(bin: &str) -> Baseline {
        let mut child = Command::new(bin)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start baseline");
        let mut line = Vec::new();
        let mut out = child.stdout.take().unwrap();
        let mut byte = [0u8];
        while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let line = String::from_utf8(line).unwrap();
        let port = grader::harness::process::parse_listening(&line).expect(&line);
        Baseline(child, port)
    }

    /// Sends `input`, shuts down our writing half, returns all it sent back.
    fn exchange(&self, input: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.1)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(input).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        got
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_baselines_speak_the_echo_protocol() {
    for bin in [
        env!("CARGO_BIN_EXE_bench_threads_echo"),
        env!("CARGO_BIN_EXE_bench_tokio_echo"),
    ] {
        let server = Baseline::start(bin);
        assert_eq!(server.exchange(b"hello\nwor"), b"hello\nwor", "{bin}");
        assert_eq!(server.exchange(b"a\r\nquit\r\nb\n"), b"a\r\n", "{bin}");
        let long = vec![b'x'; 9000];
        assert_eq!(server.exchange(&long), b"ERR line too long\n", "{bin}");
    }
}
