//! Shared by the grader's integration tests: building the programs under
//! test, running one grading at a time, and running the instructors' tools.

#![allow(dead_code)]

use grader::report::{LabReport, Status};
use grader::runner::Rerun;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// The packages whose release binaries the tests run: every lab's stub,
/// solution and broken programs, from the registry.
fn packages() -> Vec<&'static str> {
    let mut packages: Vec<&str> = grader::course::LABS
        .iter()
        .flat_map(|lab| [lab.stub, lab.solution, lab.broken])
        .collect();
    packages.sort();
    packages.dedup();
    packages
}

/// Path of a release binary, built (once per test process) if needed.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .current_dir(workspace())
            .args(["build", "--quiet", "--release"]);
        for package in packages() {
            cargo.args(["-p", package]);
        }
        let status = cargo.status().expect("run cargo build");
        assert!(status.success(), "cargo build --release failed");
    });
    let path = target_dir().join("release").join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Grading measures CPU time, memory and timing: one grading at a time on
/// the whole machine, across test threads, test processes and checkouts
/// (hence a lock file outside the target directory).
pub fn exclusive() -> Flock<File> {
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

/// Grades the release binary `name` as `lab`, only the checks in `only` (all
/// if empty).
pub fn grade(lab: &str, name: &str, only: &[&str]) -> LabReport {
    grade_path(lab, &program(name), only)
}

/// A correct or broken program: a binary of the workspace by name, or a
/// script by its path from the workspace root.
pub fn program(name: &str) -> PathBuf {
    if name.contains('/') {
        workspace().join(name)
    } else {
        bin(name)
    }
}

/// Grades the program at `bin` as `lab`.
pub fn grade_path(lab: &str, bin: &Path, only: &[&str]) -> LabReport {
    grade_path_with(lab, bin, only, Rerun::Failures)
}

/// Grades the program at `bin` as `lab`, with or without second runs of
/// failed checks.
pub fn grade_path_with(lab: &str, bin: &Path, only: &[&str], rerun: Rerun) -> LabReport {
    let lab = grader::course::find(lab).expect("known lab");
    let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
    let _lock = exclusive();
    let started = std::time::Instant::now();
    let report = grader::runner::grade_with(lab, bin, &only, rerun, |_| {});
    log_time(started.elapsed(), lab.name, bin, &only);
    report
}

/// With `$GRADING_TIMES` set to a file, appends a line per grading to it:
/// seconds, lab, program, checks. `sort -rn` on it shows where the test
/// suite's time goes.
fn log_time(took: std::time::Duration, lab: &str, bin: &Path, only: &[String]) {
    use std::io::Write;
    let Ok(path) = std::env::var("GRADING_TIMES") else {
        return;
    };
    let name = bin.file_name().unwrap_or_default().to_string_lossy();
    let checks = if only.is_empty() {
        "all".to_string()
    } else {
        only.join(",")
    };
    if let Ok(mut file) = File::options().append(true).create(true).open(path) {
        let _ = writeln!(file, "{:6.1} {lab} {name} {checks}", took.as_secs_f64());
    }
}

/// Every check's line and message, for assertion messages.
pub fn explain(report: &LabReport) -> String {
    report
        .checks
        .iter()
        .map(|c| c.human(true))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn statuses(report: &LabReport) -> Vec<(String, Status)> {
    report
        .checks
        .iter()
        .map(|c| (c.name.clone(), c.status))
        .collect()
}

/// The teaching part of the grader's report of `report`, normalised so that
/// it is the same from run to run: each check's line (without its time), and
/// under a failure its `expected:` and `likely cause:` lines and the first
/// line of its hint, with numbers (ports, sizes, timings) as `N`. The
/// summary line and the transcript report what was measured, which varies
/// (how bytes were split, a reset or a broken pipe); they are left out.
pub fn normalised(report: &LabReport) -> String {
    let mut out = Vec::new();
    for check in &report.checks {
        out.push(format!(
            "{} {} {}/{}",
            check.name,
            check.status.word(),
            check.points,
            check.max
        ));
        for line in check.message.lines() {
            if line.starts_with("expected: ") || line.starts_with("likely cause: ") {
                out.push(format!("    {line}"));
            }
        }
        if check.status == Status::Fail
            && let Some(hint) = &check.hint
        {
            out.push(format!(
                "    hint: {}",
                hint.lines().next().unwrap_or_default()
            ));
        }
    }
    let text: Vec<char> = (out.join("\n") + "\n").chars().collect();
    // 12, 1.5, 12,345: one `N` each.
    let mut normal = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_digit() {
            while i < text.len()
                && (text[i].is_ascii_digit()
                    || (matches!(text[i], '.' | ',')
                        && text.get(i + 1).is_some_and(|c| c.is_ascii_digit())))
            {
                i += 1;
            }
            normal.push('N');
        } else {
            normal.push(text[i]);
            i += 1;
        }
    }
    normal
}

/// Compares the normalised report with `grader/tests/fixtures/<name>.txt`:
/// a change to a message is a reviewed change to a fixture. With
/// UPDATE_FIXTURES=1 the fixture is (re)written instead.
pub fn pin(name: &str, report: &LabReport) -> Result<(), String> {
    let path = workspace()
        .join("grader/tests/fixtures")
        .join(format!("{name}.txt"));
    let actual = normalised(report);
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return Ok(());
    }
    let Ok(expected) = std::fs::read_to_string(&path) else {
        return Err(format!(
            "no fixture {}; run UPDATE_FIXTURES=1 cargo test -p grader to write it, then review it.\nthe report:\n{actual}",
            path.display()
        ));
    };
    if expected != actual {
        return Err(format!(
            "the grader's report differs from {}:\n--- fixture\n{expected}\n--- now\n{actual}\n(if the change is intended: UPDATE_FIXTURES=1 cargo test -p grader, and review the diff)",
            path.display()
        ));
    }
    Ok(())
}

/// Grades `program` as `lab` on `check` alone: the check must fail, its
/// message must contain `cause` (the mistake named), and the report must
/// match its pinned fixture, `<lab>/<program>-<check>.txt`.
pub fn mistake(lab: &str, program: &str, check: &str, cause: &str) -> Result<(), String> {
    // One run is enough to see the check fail (and a second would double
    // the proofs' time): a broken program that passes now and then is
    // caught by its proof failing, in CI, the runs it passes.
    let report = grade_path_with(lab, &self::program(program), &[check], Rerun::Never);
    let result = &report.checks[0];
    if result.status != Status::Fail {
        return Err(format!(
            "{program} did not fail {lab}/{check}:\n{}",
            explain(&report)
        ));
    }
    if !result.message.contains(cause) {
        return Err(format!(
            "{program} failed {lab}/{check}, but the message does not say {cause:?}:\n{}",
            result.message
        ));
    }
    pin(&format!("{lab}/{program}-{check}"), &report)
}

/// The `make grade ...` commands of a text, each as its line number and its
/// `KEY=VALUE` words (`LAB=epoll_et`, `CHECK=burst,big_replies`, ...). A
/// command may wrap onto the next line; it ends at the first word that is
/// not `KEY=VALUE` (a `#` comment, prose) or at a closing backtick.
pub fn grade_commands(text: &str) -> Vec<(usize, Vec<(&str, &str)>)> {
    text.match_indices("make grade ")
        .map(|(at, command)| {
            let line = text[..at].matches('\n').count() + 1;
            let mut words = Vec::new();
            for word in text[at + command.len()..].split_whitespace() {
                let Some((key, value)) = word.split_once('=') else {
                    break;
                };
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_uppercase()) {
                    break;
                }
                let name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ',';
                let end = value.find(|c: char| !name(c)).unwrap_or(value.len());
                words.push((key, &value[..end]));
                if end < value.len() {
                    break; // `CHECK=a,b`. or LAB=x` ends the command
                }
            }
            (line, words)
        })
        .collect()
}

/// Scratch space for the tests of the instructors' tools (`make handout`
/// and the platforms' exports); its own target directory, since the
/// exported copies are workspaces of their own.
pub fn scratch(name: &str) -> PathBuf {
    let dir = target_dir()
        .join("instructor-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    dir
}

pub fn copies_target() -> PathBuf {
    target_dir().join("instructor-tests").join("target")
}

pub fn run(command: &mut Command) -> Output {
    command
        .env("CARGO_TARGET_DIR", copies_target())
        .env("NO_COLOR", "1")
        .output()
        .expect("run command")
}

pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn make(dir: &Path, args: &[&str]) -> Output {
    run(Command::new("make")
        .arg("--no-print-directory")
        .arg("-C")
        .arg(dir)
        .args(args))
}
