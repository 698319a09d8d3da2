//! The grader against hostile and naive programs (`tests/hostile/`): each
//! grade ends within its bound, reports what was earned (nothing, mostly),
//! and leaves nothing running or changed.
//!
//! Every program the grader starts inherits `HOSTILE_TOKEN`, unique to the
//! test; after the grade, no process in the machine may still carry it.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// How one grade went.
struct Grade {
    report: Value,
    seconds: f64,
    token: String,
    /// The most processes of the grade alive at once (sampled).
    peak: usize,
}

impl Grade {
    fn score(&self) -> u64 {
        self.report["score"].as_u64().unwrap_or(0)
    }

    fn max(&self) -> u64 {
        self.report["max_score"].as_u64().unwrap_or(0)
    }

    fn checks(&self) -> &[Value] {
        self.report["checks"].as_array().map_or(&[], |v| v)
    }

    fn message(&self, index: usize) -> &str {
        self.checks()
            .get(index)
            .and_then(|c| c["message"].as_str())
            .unwrap_or("")
    }

    /// The first check carries the start probe's failure; the others are
    /// not run.
    fn never_started(&self, because: &str) {
        assert_eq!(self.score(), 0);
        let first = self.message(0);
        assert!(first.contains("never started properly"), "{first}");
        assert!(first.contains(because), "expected {because:?} in:\n{first}");
        for check in &self.checks()[1..] {
            let message = check["message"].as_str().unwrap_or("");
            assert!(
                message.starts_with("not run: the program never started"),
                "{message}"
            );
        }
    }

    fn within(&self, seconds: f64) {
        assert!(
            self.seconds < seconds,
            "the grade took {:.1} s, more than its bound of {seconds} s",
            self.seconds
        );
    }
}

fn hostile(name: &str) -> PathBuf {
    common::workspace().join("grader/tests/hostile").join(name)
}

/// Grades `program` as poll_echo with the grader binary, `env` added.
fn grade(program: &str, env: &[(&str, &str)]) -> Grade {
    grade_only(program, env, &[])
}

/// The checks a contained-mischief program is graded on: enough to start it
/// a few times (each check starts it afresh) and exercise it.
const A_FEW: &[&str] = &["basic_echo", "quit", "concurrent_clients", "pipelined"];

/// Grades the hostile program `name` on the checks in `only` (all if empty).
fn grade_only(name: &str, env: &[(&str, &str)], only: &[&str]) -> Grade {
    grade_path(&hostile(name), env, only)
}

/// Grades the program at `path`, with a fresh token.
fn grade_path(path: &Path, env: &[(&str, &str)], only: &[&str]) -> Grade {
    let _lock = common::exclusive();
    let program = path.file_name().unwrap_or_default().to_string_lossy();
    let token = format!("{program}-{}-{:?}", std::process::id(), Instant::now());
    let started = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (done, token) = (done.clone(), token.clone());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(carrying(&token).len());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            peak
        })
    };
    let output = Command::new(env!("CARGO_BIN_EXE_grader"))
        .args(["poll_echo", "--format", "json", "--bin"])
        .arg(path)
        .args(if only.is_empty() {
            vec![]
        } else {
            vec!["--only".to_string(), only.join(",")]
        })
        .env("HOSTILE_TOKEN", &token)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Python's stdout to a pipe is block-buffered, unless this is set.
        .env_remove("PYTHONUNBUFFERED")
        .envs(env.iter().copied())
        .output()
        .expect("run the grader");
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let grade = Grade {
        report: serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "the grader's JSON did not parse ({err}); stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        }),
        seconds,
        token,
        peak,
    };
    eprintln!(
        "{program}: {}/{} in {seconds:.1} s, at most {peak} processes at once",
        grade.score(),
        grade.max()
    );
    nothing_left_running(&grade.token);
    grade
}

/// The live processes that carry the test's token.
fn carrying(token: &str) -> Vec<String> {
    let wanted = format!("HOSTILE_TOKEN={token}");
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if !environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        if !zombie {
            found.push(format!("{pid}: {}", stat.trim()));
        }
    }
    found
}

/// No process still carries the test's token.
fn nothing_left_running(token: &str) {
    let left = carrying(token);
    assert!(
        left.is_empty(),
        "left running after the grade:\n{}",
        left.join("\n")
    );
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[test]
fn a_line_never_flushed_fails_fast_and_says_flush() {
    let grade = grade("never_flushes.py", &[]);
    grade.never_started("not flushed");
    grade.within(10.0);
}

#[test]
fn a_program_that_never_prints_fails_fast() {
    let grade = grade("never_prints.py", &[]);
    grade.never_started("printed no `listening on");
    grade.within(15.0);
}

#[test]
fn a_program_that_exits_at_once_fails_fast() {
    let grade = grade("exits_at_once.py", &[]);
    grade.never_started("main() returned");
    grade.within(5.0);
}

#[test]
fn a_program_that_crashes_at_start_fails_fast_and_quotes_it() {
    let grade = grade("crashes_at_start.py", &[]);
    grade.never_started("boom: the hostile program crashed at start");
    grade.within(5.0);
}

#[test]
fn a_rust_program_that_panics_at_start_fails_fast_and_quotes_it() {
    // The poll_echo stub: it prints its line, then panics at its todo!().
    let grade = grade_path(&common::bin("poll_echo"), &[], &[]);
    grade.never_started("panicked");
    grade.never_started("not yet implemented");
    grade.within(5.0);
}

/// A correct server with mischief on the side still earns its points: the
/// mischief is contained, not graded.
fn full_marks(grade: &Grade) {
    assert_eq!(
        grade.score(),
        grade.max(),
        "{}",
        serde_json::to_string_pretty(&grade.report).unwrap()
    );
}

#[test]
fn a_daemon_started_with_setsid_dies_with_its_check() {
    let grade = grade_only("escapes_with_setsid.py", &[], A_FEW);
    full_marks(&grade);
    grade.within(30.0);
}

#[test]
fn a_fork_bomb_is_contained_and_the_grade_goes_on() {
    let grade = grade_only("fork_bomb.py", &[], A_FEW);
    assert!(grade.score() > 0, "the grade went on past the bomb");
    grade.within(60.0);
    if is_root() {
        // As nobody, RLIMIT_NPROC (256) stops the tree of 1,024 early.
        assert!(grade.peak <= 300, "{} processes at once", grade.peak);
    }
}

#[test]
fn a_program_that_ignores_sigterm_sigint_and_sighup_is_still_stopped() {
    let grade = grade_only("ignores_signals.py", &[], A_FEW);
    full_marks(&grade);
    // Killed with SIGKILL at every check's end: no grace period to wait out.
    grade.within(15.0);
}

#[test]
fn the_program_gets_no_fd_the_grader_inherited() {
    // An fd the grader inherits, as from a shell that opened one: std opens
    // files close-on-exec, so clear the flag for the grader to get it.
    let file = std::fs::File::open(hostile("README.md")).unwrap();
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFD).unwrap();
    let keep = nix::fcntl::FdFlag::from_bits_truncate(flags) - nix::fcntl::FdFlag::FD_CLOEXEC;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFD(keep)).unwrap();
    let grade = grade_only("counts_fds.py", &[], &["basic_echo"]);
    drop(file);
    full_marks(&grade);
}

#[test]
fn a_program_cannot_change_the_graders_files() {
    let folder = std::env::temp_dir().join(format!("iomux-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir(&folder).unwrap();
    let victim = folder.join("results.json");
    std::fs::write(&victim, "the grader's own file\n").unwrap();
    let grade = grade_only(
        "writes_outside.py",
        &[
            ("HOSTILE_VICTIM", victim.to_str().unwrap()),
            ("HOSTILE_DIR", folder.to_str().unwrap()),
        ],
        &["basic_echo"],
    );
    full_marks(&grade);
    grade.within(15.0);
    let unchanged =
        std::fs::read_to_string(&victim).ok().as_deref() == Some("the grader's own file\n");
    let planted = folder.join("planted").exists();
    let _ = std::fs::remove_dir_all(&folder);
    if is_root() {
        assert!(unchanged, "the program changed a file of the grader's");
        assert!(
            !planted,
            "the program created a file in the grader's folder"
        );
    } else {
        // Not root: the program runs as the grader's own user, by design.
        eprintln!("not root: the program may write as the grader's user (unchanged={unchanged})");
    }
}

/// The bound on a whole grade, lowered for the test: whatever the program
/// does, the grade ends within it and the checks it had no time for are
/// reported as not run.
fn ends_within_its_budget(program: &str) {
    let budget = 12;
    let grade = grade(program, &[("GRADER_BUDGET_SECS", &budget.to_string())]);
    assert_eq!(grade.score(), 0);
    grade.within(budget as f64 + 5.0);
    let not_run = grade
        .checks()
        .iter()
        .filter(|c| {
            c["message"]
                .as_str()
                .is_some_and(|m| m.contains("time limit of 12 s was used up"))
        })
        .count();
    assert!(
        not_run > 0,
        "{}",
        serde_json::to_string_pretty(&grade.report).unwrap()
    );
}

#[test]
fn a_program_that_never_accepts_is_graded_within_the_budget() {
    ends_within_its_budget("never_accepts.py");
}

#[test]
fn a_program_that_accepts_never_reads_and_spins_is_graded_within_the_budget() {
    ends_within_its_budget("accepts_and_spins.py");
}
