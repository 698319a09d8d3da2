//! The command lines: the grader's and the lab programs' usage errors.

mod common;

use assert_cmd::Command;
use predicates::prelude::*;
use std::net::TcpListener;

fn grader() -> Command {
    Command::cargo_bin("grader").unwrap()
}

#[test]
fn list_names_every_lab_and_the_checks_of_one() {
    grader().arg("--list").assert().success().stdout(
        predicate::str::contains("poll_echo").and(predicate::str::contains("select_telnet")),
    );
    let max = grader::course::find("poll_echo").unwrap().max_points();
    grader()
        .args(["--list", "poll_echo"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(format!("poll_echo ({max} points)"))
                .and(predicate::str::contains("backpressure")),
        );
}

#[test]
fn usage_errors_exit_2_with_a_reason() {
    grader()
        .assert()
        .code(2)
        .stderr(predicate::str::contains("which lab?"));
    grader()
        .args(["nope", "--bin", "/bin/true"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("'nope' is not a lab")
                .and(predicate::str::contains("poll_echo")),
        );
    grader()
        .arg("poll_echo")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--bin PATH is required"));
    grader()
        .args(["poll_echo", "--bin", "/no/such/program"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/no/such/program"));
    grader()
        .args(["poll_echo", "--bin", "/bin/true", "--only", "no_such_check"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no check 'no_such_check'")
                .and(predicate::str::contains("basic_echo")),
        );
    grader()
        .args(["poll_echo", "--bin", "/bin/true", "--format", "xml"])
        .assert()
        .code(2);
    grader()
        .args(["poll_echo", "--frobnicate"])
        .assert()
        .code(2);
}

/// Runs the grader on a release binary with `--format`, expecting `code`,
/// and parses what it printed.
fn grade_json(name: &str, only: &str, format: &str, code: i32) -> serde_json::Value {
    let bin = common::bin(name);
    let _lock = common::exclusive();
    let output = grader()
        .args(["poll_echo", "--only", only, "--format", format, "--bin"])
        .arg(&bin)
        .assert()
        .code(code)
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&output).expect("valid JSON")
}

#[test]
fn gradescope_format_is_valid_results_json() {
    let json = grade_json("poll_echo_solution", "basic_echo,quit", "gradescope", 0);
    assert_eq!(json["score"], 11);
    let tests = json["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 2);
    assert_eq!(tests[0]["name"], "basic_echo");
    assert_eq!(tests[0]["max_score"], 5);
    assert_eq!(tests[1]["status"], "passed");
}

#[test]
fn a_failing_program_exits_1_with_zero_points_in_json() {
    let json = grade_json("poll_echo", "basic_echo", "json", 1);
    assert_eq!(json["score"], 0);
    assert_eq!(json["max_score"], 5);
    assert_eq!(json["passed"], false);
    assert_eq!(json["checks"][0]["status"], "fail");
    let message = json["checks"][0]["message"].as_str().unwrap();
    assert!(message.contains("not yet implemented"), "{message}");
}

#[test]
fn the_human_report_is_a_checklist_with_a_total() {
    let bin = common::bin("poll_echo_solution");
    let _lock = common::exclusive();
    grader()
        .args(["poll_echo", "--only", "basic_echo", "--bin"])
        .arg(&bin)
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(r"(?m)^basic_echo +OK +\d+\.\ds +5/5$")
                .unwrap()
                .and(predicate::str::contains("Score: 5/5")),
        );
}

/// Both the stub and the solution get the scaffolding right: usage errors
/// exit 2, a port in use exits 1 with one line, never a panic.
#[test]
fn lab_programs_report_bad_input_without_panicking() {
    for name in ["poll_echo", "poll_echo_solution"] {
        let bin = common::bin(name);
        Command::new(&bin).arg("--bogus").assert().code(2).stderr(
            predicate::str::contains("unknown option '--bogus'")
                .and(predicate::str::contains("usage:")),
        );
        Command::new(&bin)
            .args(["--port", "seventy"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("bad value for --port"));
        Command::new(&bin).arg("extra").assert().code(2);
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port().to_string();
        Command::new(&bin)
            .args(["--port", &port])
            .timeout(std::time::Duration::from_secs(10))
            .assert()
            .code(1)
            .stderr(
                predicate::str::contains(format!("cannot listen on 127.0.0.1:{port}"))
                    .and(predicate::str::contains("panicked").not())
                    .and(predicate::function(|s: &str| s.lines().count() == 1)),
            );
    }
}

/// A check the machine cannot run is a SKIP worth 0 points, with the fix,
/// never a pass.
#[test]
fn a_check_that_cannot_run_is_skipped_with_the_fix() {
    use std::os::unix::process::CommandExt;
    let bin = common::bin("poll_echo_solution");
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("grader"));
    command
        .args(["poll_echo", "--only", "scale", "--format", "json", "--bin"])
        .arg(&bin);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 600, 600)
                .map_err(std::io::Error::from)
        });
    }
    let output = Command::from_std(command)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&output).expect("valid JSON");
    assert_eq!(json["checks"][0]["status"], "skip");
    assert_eq!(json["score"], 0);
    let message = json["checks"][0]["message"].as_str().unwrap();
    assert!(message.contains("ulimit -n"), "{message}");
}

/// `make grade` without LAB: every lab, then a summary table; a lab that
/// does not compile is reported as such and scores 0.
#[test]
fn grading_every_lab_ends_with_a_summary() {
    // The stubs, one per lab, in a folder of their own.
    let dir = common::target_dir().join(format!("all-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for lab in grader::course::LABS {
        if lab.name != "epoll_et" {
            std::fs::copy(common::bin(lab.name), dir.join(lab.name)).unwrap();
        }
    }
    let _lock = common::exclusive();
    let assert = grader()
        .args(["all", "--dir"])
        .arg(&dir)
        .args(["--not-built", "epoll_et"])
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .code(1);
    let out = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.contains("== summary =="), "{out}");
    let epoll_et = grader::course::find("epoll_et").unwrap().max_points();
    assert!(
        out.contains(&format!(
            "== epoll_et: does not compile (the compiler's messages are above): 0/{epoll_et} =="
        )),
        "{out}"
    );
    for lab in grader::course::LABS {
        let max = lab.max_points();
        let row = format!("{:<18} {:>9}", lab.name, format!("0/{max}"));
        assert!(out.contains(&row), "no row {row:?} in:\n{out}");
    }
    assert!(out.contains("(does not compile)"), "{out}");
}
