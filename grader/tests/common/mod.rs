//! Shared by the grader's integration tests: building the programs under
//! test, and running one grading at a time.

#![allow(dead_code)]

use grader::report::{LabReport, Status};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// The packages whose release binaries the tests run.
const PACKAGES: &[&str] = &[
    "poll_echo",
    "poll_echo_solution",
    "epoll_lt",
    "epoll_lt_solution",
    "epoll_et",
    "epoll_et_solution",
    "broken",
    "broken_epoll",
    "nonblocking_read",
    "nonblocking_read_solution",
    "broken_nonblocking",
    "timeouts",
    "timeouts_solution",
    "broken_timeouts",
    "select_telnet",
    "select_telnet_solution",
    "broken_telnet",
];

/// Path of a release binary, built (once per test process) if needed.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .current_dir(workspace())
            .args(["build", "--quiet", "--release"]);
        for package in PACKAGES {
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
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("open the lock file");
    Flock::lock(file, FlockArg::LockExclusive).expect("lock")
}

/// Grades the release binary `name` as `lab`, only the checks in `only` (all
/// if empty).
pub fn grade(lab: &str, name: &str, only: &[&str]) -> LabReport {
    let bin = bin(name);
    let lab = grader::labs::find(lab).expect("known lab");
    let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
    let _lock = exclusive();
    grader::grade(&lab, &bin, &only, |_| {})
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
