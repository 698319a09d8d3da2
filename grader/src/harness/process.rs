//! Running the program under test: its own process group, resource limits,
//! an unprivileged user when the grader is root, its output collected by
//! threads, and a kill of everything it started when done ([`contain`]).

use super::contain;
use super::text::indent;
use nix::sys::resource::{Resource, getrlimit, rlim_t, setrlimit};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Limits the program runs under. The fd limit is set per check.
const CPU_SECONDS: rlim_t = 120;
const ADDRESS_SPACE: rlim_t = 8 << 30;
const PROCESSES: rlim_t = 4096;
/// Processes (and threads) the unprivileged user may have, when the grader
/// is root: a fork bomb stops here.
const PROCESSES_UNPRIVILEGED: rlim_t = 256;
/// How many unread stdout lines are kept; later ones are dropped.
const LINES_KEPT: usize = 4096;
/// How long a program may listen without printing its line before the
/// grader says the line was not flushed.
pub const UNFLUSHED: Duration = Duration::from_secs(3);
/// How much of the program's stderr is kept for messages.
const STDERR_KEEP: usize = 4096;

/// What a check asks of the program's start.
#[derive(Debug, Default)]
pub struct SpawnOptions {
    pub args: Vec<String>,
    /// Soft RLIMIT_NOFILE to start with; `None`: the hard limit.
    pub nofile_soft: Option<u64>,
    /// Give the program this as stdin (a pipe end, a file); `None`: /dev/null.
    pub stdin: Option<Stdio>,
    /// Give the program this as stdout instead of the grader's line reader.
    pub stdout: Option<Stdio>,
    /// RLIMIT_NPROC (processes and threads of its user) when it runs as the
    /// grader's own user; `None`: 4,096. (As the unprivileged user under
    /// root it is always 256.) The bench's thread-per-client baseline needs
    /// more.
    pub processes: Option<u64>,
    /// System calls the program is refused, and the errno they get: a
    /// seccomp filter installed just before exec ([`super::seccomp`]).
    pub refuse: Option<super::seccomp::Refusal>,
}

/// A line the program printed on stdout, with when it arrived.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Instant,
    pub text: String,
}

/// Shared record of every program a check started, so the runner can kill them
/// (and whatever they started) and can say how they ended.
pub struct Registry {
    groups: Mutex<Vec<i32>>,
    endings: Mutex<Vec<String>>,
    /// Put in the programs' environment, so that their descendants can be
    /// found wherever they went.
    tag: String,
    /// The check's cgroup, made at its first program, if one can be.
    cgroup: std::sync::OnceLock<Option<contain::Cgroup>>,
}

impl Default for Registry {
    fn default() -> Registry {
        static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Registry {
            groups: Mutex::default(),
            endings: Mutex::default(),
            tag: format!("{}.{n}", std::process::id()),
            cgroup: std::sync::OnceLock::new(),
        }
    }
}

impl Registry {
    /// Kills every program started under this registry and every process
    /// they started, also those that left the process group. Returns how
    /// many processes besides the programs' groups had to be killed.
    pub fn kill_all(&self) -> usize {
        let groups = self.groups.lock().unwrap().clone();
        for &pgid in &groups {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        if let Some(Some(cgroup)) = self.cgroup.get() {
            cgroup.end();
        }
        contain::sweep(&self.tag, &groups.into_iter().collect())
    }

    /// Puts a process group the grader started itself (a load generator)
    /// among those [`Registry::kill_all`] ends.
    pub fn adopt(&self, pgid: i32) {
        self.groups.lock().unwrap().push(pgid);
    }

    /// How programs ended on their own during the check (crash, exit, signal).
    pub fn endings(&self) -> Vec<String> {
        self.endings.lock().unwrap().clone()
    }
}

/// A running program under test. Dropping it kills its process group.
pub struct Program {
    child: Child,
    pub pid: i32,
    started: Instant,
    lines: Option<Receiver<Line>>,
    seen_lines: Vec<Line>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: std::thread::JoinHandle<()>,
    registry: Arc<Registry>,
    name: String,
    /// Its ending is what the check asked for, not news for the student.
    exit_expected: bool,
}

impl Program {
    pub fn spawn(
        bin: &Path,
        options: SpawnOptions,
        registry: &Arc<Registry>,
    ) -> Result<Program, String> {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
        let user = contain::credentials()?;
        contain::become_subreaper();
        let soft = options.nofile_soft.map_or(hard, |soft| soft.min(hard));
        let mut command = Command::new(bin);
        command
            .args(&options.args)
            .stdin(options.stdin.unwrap_or_else(Stdio::null))
            .stderr(Stdio::piped())
            // A panic in a student's program shows its message, not a backtrace.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .env(contain::TAG, &registry.tag)
            // Its own process group: one killpg() ends it and anything it started.
            .process_group(0);
        let own_stdout = options.stdout.is_none();
        command.stdout(options.stdout.unwrap_or_else(Stdio::piped));
        // SAFETY: between fork and exec only async-signal-safe calls are made:
        // write, setrlimit, set*id and prctl are plain system calls.
        let run_as = user.clone();
        let processes = options.processes.unwrap_or(PROCESSES);
        let filter = options.refuse.map(super::seccomp::Filter::new);
        let cgroup = registry
            .cgroup
            .get_or_init(|| contain::Cgroup::create(&registry.tag))
            .as_ref()
            .map(contain::Cgroup::procs_fd);
        unsafe {
            command.pre_exec(move || {
                // Into the check's cgroup first, while still root: nothing
                // it starts can leave it. A refusal changes nothing else.
                if let Some(fd) = cgroup {
                    let _ = nix::unistd::write(std::os::fd::BorrowedFd::borrow_raw(fd), b"0");
                }
                // Only stdin, stdout and stderr reach the program: any other
                // fd the grader inherited (a shell's, a CI runner's) is
                // closed at exec, so the program's fds, and the fd numbers
                // its messages show, are the same wherever it is graded.
                // (Marked close-on-exec rather than closed: std reports a
                // failed exec through a pipe of its own.)
                let _ = nix::libc::syscall(
                    nix::libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    nix::libc::CLOSE_RANGE_CLOEXEC,
                );
                let limit = |resource, soft, hard| {
                    setrlimit(resource, soft, hard).map_err(std::io::Error::from)
                };
                limit(Resource::RLIMIT_NOFILE, soft, hard)?;
                limit(Resource::RLIMIT_CPU, CPU_SECONDS, CPU_SECONDS)?;
                limit(Resource::RLIMIT_AS, ADDRESS_SPACE, ADDRESS_SPACE)?;
                match &run_as {
                    None => {
                        let _ = limit(Resource::RLIMIT_NPROC, processes, processes);
                    }
                    Some(user) => {
                        let nproc = PROCESSES_UNPRIVILEGED;
                        limit(Resource::RLIMIT_NPROC, nproc, nproc)?;
                        contain::drop_privileges(user)?;
                    }
                }
                // If the grader dies, the program dies with it. (After the
                // change of user, which clears it.)
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                // Last: the filter would refuse nothing the steps above
                // need, but it is the program's, not the grader's.
                if let Some(filter) = &filter {
                    filter.install()?;
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|err| match &user {
            Some(user) if err.kind() == std::io::ErrorKind::PermissionDenied => format!(
                "cannot run {} as the user {} (the grader runs as root and runs programs unprivileged): {err}; \
                 make the program and its folders readable by everyone, or choose the user with --run-as",
                bin.display(),
                user.name
            ),
            _ => format!("cannot run {}: {err}", bin.display()),
        })?;
        let pid = child.id() as i32;
        registry.groups.lock().unwrap().push(pid);

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err_pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || keep_tail(err_pipe, sink));
        let lines = own_stdout.then(|| {
            let (tx, rx) = sync_channel(LINES_KEPT);
            let out_pipe = child.stdout.take().expect("stdout is piped");
            std::thread::spawn(move || forward_lines(out_pipe, tx));
            rx
        });
        Ok(Program {
            child,
            pid,
            started: Instant::now(),
            lines,
            seen_lines: Vec::new(),
            stderr,
            stderr_reader,
            registry: registry.clone(),
            name: bin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            exit_expected: false,
        })
    }

    /// The next stdout line, waiting until `deadline`.
    pub fn next_line(&mut self, deadline: Instant) -> Result<Line, LineError> {
        let Some(rx) = &self.lines else {
            return Err(LineError::Closed);
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(line) => {
                self.seen_lines.push(line.clone());
                Ok(line)
            }
            Err(RecvTimeoutError::Timeout) => Err(LineError::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(LineError::Closed),
        }
    }

    /// Every stdout line received so far (including ones not yet asked for).
    pub fn drain_lines(&mut self) -> Vec<Line> {
        if let Some(rx) = &self.lines {
            // At most one channel's worth: a program writing faster than we
            // read must not keep this loop (or this Vec) going for ever.
            self.seen_lines.extend(rx.try_iter().take(LINES_KEPT));
        }
        self.seen_lines.clone()
    }

    /// Waits for `listening on 127.0.0.1:PORT` and returns the port. A
    /// program that listens but has printed nothing for [`UNFLUSHED`] is
    /// told so at once: its line is most likely sitting in a buffer.
    pub fn wait_listening(&mut self, within: Duration) -> Result<u16, String> {
        let deadline = Instant::now() + within;
        let mut listening_since: Option<(Instant, u16)> = None;
        loop {
            let slice = (Instant::now() + Duration::from_millis(25)).min(deadline);
            match self.next_line(slice) {
                Ok(line) => {
                    if let Some(port) = parse_listening(&line.text) {
                        return Ok(port);
                    }
                }
                Err(LineError::Timeout) if Instant::now() < deadline => {
                    let printed = !self.seen_lines.is_empty();
                    match listening_since {
                        None if !printed => {
                            listening_since = super::proc::listening_ports(self.pid)
                                .first()
                                .map(|&port| (Instant::now(), port));
                        }
                        Some((since, port)) if since.elapsed() >= UNFLUSHED => {
                            return Err(format!(
                                "the program listens on port {port} but printed nothing on stdout for {:.0} s: \
                                 the `listening on` line was never printed, or (most likely) printed but not flushed \
                                 (stdout to a pipe is block-buffered: flush it after printing)",
                                UNFLUSHED.as_secs_f64()
                            ));
                        }
                        _ => {}
                    }
                }
                Err(LineError::Timeout) => {
                    return Err(format!(
                        "the program printed no `listening on 127.0.0.1:PORT` line within {} s{}",
                        within.as_secs(),
                        self.hint_from_output()
                    ));
                }
                Err(LineError::Closed) => {
                    // Give the exit status a moment to be collected.
                    std::thread::sleep(Duration::from_millis(50));
                    return Err(format!(
                        "the program closed its stdout without printing `listening on 127.0.0.1:PORT`{}",
                        self.hint_from_output()
                    ));
                }
            }
        }
    }

    fn hint_from_output(&mut self) -> String {
        let mut hint = String::new();
        let lines = self.drain_lines();
        if !lines.is_empty() {
            let shown: Vec<&str> = lines.iter().take(3).map(|l| l.text.as_str()).collect();
            hint += &format!(
                "; it printed {:?} (expected exactly `listening on 127.0.0.1:PORT`, then a flush)",
                shown
            );
        }
        if let Some(status) = self.exit_status() {
            hint += &format!("; {}", self.describe_exit(status));
        }
        hint
    }

    /// True once the main process has exited (its stderr is then closing).
    fn child_has_ended(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map(|stat| stat.contains(") Z") || stat.contains(") X"))
            .unwrap_or(true)
    }

    /// The exit status, if the program has ended.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Ok while the program runs; a message saying how it ended otherwise.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => Err(self.describe_exit(status)),
        }
    }

    /// "the program exited with code 1 after 0.3 s; its stderr ends with: ..."
    pub fn describe_exit(&self, status: ExitStatus) -> String {
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => {
                let name = Signal::try_from(sig)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {sig}"));
                let why = match sig {
                    13 => {
                        " (it wrote to a connection or pipe whose reader was gone: ignore SIGPIPE, handle EPIPE)"
                    }
                    9 => " (SIGKILL: the CPU or memory limit, or the grader)",
                    24 => " (SIGXCPU: it used more than its CPU time limit)",
                    11 => " (SIGSEGV: a crash)",
                    6 => " (SIGABRT: an abort, e.g. a failed allocation)",
                    _ => "",
                };
                format!("was killed by {name}{why}")
            }
            _ => format!("ended ({status})"),
        };
        let mut text = format!(
            "the program ({}) {how} after {:.1} s",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
        let tail = self.stderr_tail();
        if !tail.is_empty() {
            text += &format!("; its stderr ends with:\n{}", indent(&tail, "    | "));
        }
        text
    }

    /// The last lines the program wrote to stderr. Once the program has
    /// ended, waits (briefly) until its last words have been read.
    pub fn stderr_tail(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !self.stderr_reader.is_finished() && Instant::now() < deadline {
            if self.child_has_ended() {
                std::thread::sleep(Duration::from_millis(5));
            } else {
                break;
            }
        }
        let bytes = self.stderr.lock().unwrap().clone();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    pub fn signal(&self, signal: Signal) {
        let _ = killpg(Pid::from_raw(self.pid), signal);
    }

    /// The program's ending is what the check wanted (a usage error, the
    /// end of its input): it is not reported in the notes of a failure.
    pub fn expect_exit(&mut self) {
        self.exit_expected = true;
    }

    /// Waits for the program to end on its own, up to `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let ended_before = self.exit_status();
        self.signal(Signal::SIGKILL);
        // Reap it, but never wait long: a process stuck in the kernel is not
        // worth hanging the grader for.
        let status = ended_before.or_else(|| self.wait_exit(Duration::from_secs(2)));
        // Anything but our own SIGKILL means it ended by itself (it may have
        // been exiting while we looked): worth telling the student.
        if self.exit_expected {
            return;
        }
        if let Some(status) = status
            && (ended_before.is_some() || status.signal() != Some(Signal::SIGKILL as i32))
        {
            let ending = self.describe_exit(status);
            self.registry.endings.lock().unwrap().push(ending);
        } else if status.is_some() {
            // Our SIGKILL may have caught a program that was already on its
            // way out after a panic (unwinding closes its sockets first, which
            // is what made the check fail): the panic is what to show.
            let tail = self.stderr_tail();
            if tail.contains("panicked at") {
                let ending = format!(
                    "the program ({}) panicked after {:.1} s; its stderr ends with:\n{}",
                    self.name,
                    self.started.elapsed().as_secs_f64(),
                    indent(&tail, "    | ")
                );
                self.registry.endings.lock().unwrap().push(ending);
            }
        }
    }
}

/// Waits for `child` (started as the leader of its own process group) to
/// end, up to `within`; past it, kills the whole group, reaps the child and
/// returns `None`.
pub fn wait_or_kill(child: &mut std::process::Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum LineError {
    Timeout,
    Closed,
}

/// The port in `listening on 127.0.0.1:PORT`.
pub fn parse_listening(line: &str) -> Option<u16> {
    line.trim_end()
        .strip_prefix("listening on 127.0.0.1:")?
        .parse()
        .ok()
}

/// Forwards the program's stdout line by line. Lines are cut at 64 KiB and,
/// past 4096 unread lines, dropped: a program that floods its stdout cannot
/// exhaust the grader's memory.
fn forward_lines(pipe: impl Read, tx: SyncSender<Line>) {
    let mut reader = BufReader::new(pipe);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match (&mut reader).take(64 * 1024).read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&raw)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                let line = Line {
                    at: Instant::now(),
                    text,
                };
                if let Err(TrySendError::Disconnected(_)) = tx.try_send(line) {
                    return;
                }
            }
        }
    }
}

fn keep_tail(mut pipe: impl Read, sink: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            return;
        }
        let mut kept = sink.lock().unwrap();
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * STDERR_KEEP {
            let cut = kept.len() - STDERR_KEEP;
            kept.drain(..cut);
        }
    }
}

/// Raises the grader's own soft fd limit to its hard limit, so that checks
/// can open thousands of client sockets. Returns the resulting soft limit.
/// The hard limit is left alone: a check that needs more says so (SKIP).
pub fn raise_own_fd_limit() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// Resolves a program path given on the command line.
pub fn resolve_bin(path: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(path);
    let meta = std::fs::metadata(&path).map_err(|err| {
        format!(
            "cannot use {} as the program to grade: {err}",
            path.display()
        )
    })?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", path.display()));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line() {
        assert_eq!(parse_listening("listening on 127.0.0.1:4242"), Some(4242));
        assert_eq!(parse_listening("listening on 127.0.0.1:4242\r"), Some(4242));
        assert_eq!(parse_listening("listening on 0.0.0.0:4242"), None);
        assert_eq!(parse_listening("listening on 127.0.0.1:"), None);
    }

    #[test]
    fn program_output_and_exit_are_collected() {
        let registry = Arc::new(Registry::default());
        let sh = Path::new("/bin/sh");
        let options = SpawnOptions {
            args: vec![
                "-c".into(),
                "echo hello; echo listening on 127.0.0.1:99; echo oops >&2; exit 3".into(),
            ],
            ..SpawnOptions::default()
        };
        let mut program = Program::spawn(sh, options, &registry).unwrap();
        assert_eq!(program.wait_listening(Duration::from_secs(5)), Ok(99));
        let status = program.wait_exit(Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let text = program.describe_exit(status);
        assert!(text.contains("exited with code 3"), "{text}");
        assert!(text.contains("oops"), "{text}");
        drop(program);
        assert_eq!(registry.endings().len(), 1);
    }

    #[test]
    fn a_silent_program_times_out_and_its_group_is_killed() {
        let registry = Arc::new(Registry::default());
        let options = SpawnOptions {
            args: vec!["-c".into(), "sleep 30 & sleep 30".into()],
            ..SpawnOptions::default()
        };
        let mut program = Program::spawn(Path::new("/bin/sh"), options, &registry).unwrap();
        let pid = program.pid;
        let started = Instant::now();
        let err = program
            .wait_listening(Duration::from_millis(300))
            .unwrap_err();
        assert!(err.contains("no `listening on"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(100));
        let grandchildren = crate::harness::proc::children(pid);
        assert_eq!(grandchildren.len(), 2, "the shell's two sleeps");
        drop(program);
        std::thread::sleep(Duration::from_millis(100));
        for child in grandchildren {
            let alive = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .map(|s| !s.contains(") Z"))
                .unwrap_or(false);
            assert!(!alive, "grandchild {child} outlived the group kill");
        }
    }

    #[test]
    fn a_flood_on_stdout_is_bounded() {
        let registry = Arc::new(Registry::default());
        let options = SpawnOptions {
            args: vec![
                "-c".into(),
                "echo listening on 127.0.0.1:5; exec yes".into(),
            ],
            ..SpawnOptions::default()
        };
        let mut program = Program::spawn(Path::new("/bin/sh"), options, &registry).unwrap();
        assert_eq!(program.wait_listening(Duration::from_secs(5)), Ok(5));
        std::thread::sleep(Duration::from_millis(300));
        let kept = program.drain_lines().len();
        assert!(kept <= LINES_KEPT + 1, "{kept} lines kept");
    }

    #[test]
    fn limits_are_applied() {
        let registry = Arc::new(Registry::default());
        let options = SpawnOptions {
            args: vec![
                "-c".into(),
                "ulimit -Sn; ulimit -t; echo listening on 127.0.0.1:1".into(),
            ],
            nofile_soft: Some(256),
            ..SpawnOptions::default()
        };
        let mut program = Program::spawn(Path::new("/bin/sh"), options, &registry).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(program.next_line(deadline).unwrap().text, "256");
        assert_eq!(
            program.next_line(deadline).unwrap().text,
            CPU_SECONDS.to_string()
        );
    }
}
