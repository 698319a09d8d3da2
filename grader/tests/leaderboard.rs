//! The opt-in leaderboard (`--leaderboard`, GRADER_LEADERBOARD=1) and the
//! human report of a program that never started (one line for the checks
//! not run). Cheap: two checks of a fast lab, one load point of 2.5 s.

mod common;

use assert_cmd::Command;
use serde_json::Value;

fn grader() -> Command {
    Command::cargo_bin("grader").unwrap()
}

/// The solution passes the checks it was graded on, then the load point
/// measures it: two entries with sane values, in Gradescope's format, and
/// the score is the checks' alone.
#[test]
fn a_passing_echo_server_gets_two_leaderboard_entries_never_scored() {
    let bin = common::bin("poll_echo_solution");
    let _lock = common::exclusive();
    let output = grader()
        .args([
            "poll_echo",
            "--only",
            "basic_echo,quit",
            "--format",
            "gradescope",
        ])
        .arg("--bin")
        .arg(&bin)
        .env("GRADER_LEADERBOARD", "1")
        .assert()
        .success()
        .get_output()
        .clone();
    let results: Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    let note = String::from_utf8_lossy(&output.stderr);
    assert_eq!(results["score"], 11, "{results:#}");
    assert_eq!(results["tests"].as_array().unwrap().len(), 2);
    let board = results["leaderboard"]
        .as_array()
        .unwrap_or_else(|| panic!("no leaderboard ({note}): {results:#}"));
    assert_eq!(board.len(), 2, "{board:?}");
    assert_eq!(board[0]["name"], "round trips/s");
    assert_eq!(board[0]["order"], "desc");
    assert_eq!(board[1]["name"], "p99 latency (ms)");
    assert_eq!(board[1]["order"], "asc");
    let per_second = board[0]["value"].as_f64().unwrap();
    let p99 = board[1]["value"].as_f64().unwrap();
    // Sane, not fast: 50 clients on loopback make thousands of round
    // trips a second even on a loaded machine; a p99 is above 0 and far
    // below the load generator's 5 s stall limit.
    assert!(per_second >= 500.0, "{per_second} round trips/s ({note})");
    assert!(p99 > 0.0 && p99 < 5000.0, "p99 {p99} ms ({note})");
    assert!(note.starts_with("leaderboard: "), "{note}");
}

/// A program that fails a check gets no leaderboard, and the flag changes
/// nothing else; the stub never starts, so the other checks are one line.
#[test]
fn a_stub_gets_no_leaderboard_and_one_line_for_the_checks_not_run() {
    let bin = common::bin("poll_echo");
    let _lock = common::exclusive();
    let output = grader()
        .args(["poll_echo", "--leaderboard", "--bin"])
        .arg(&bin)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&output);
    let lines: Vec<&str> = text.lines().collect();
    let not_run: Vec<&&str> = lines.iter().filter(|l| l.contains("not run")).collect();
    assert_eq!(not_run.len(), 1, "{text}");
    assert!(
        not_run[0].starts_with("not run: quit, concurrent_clients, ")
            && not_run[0].ends_with(", usage (the program never started)"),
        "{text}"
    );
    // The first check still carries the start failure in full.
    assert!(text.contains("never started properly"), "{text}");
    assert!(text.contains("not yet implemented"), "{text}");
    assert!(
        text.contains("leaderboard: not measured (it needs every check passed)"),
        "{text}"
    );
    assert!(lines.len() < 30, "{} lines:\n{text}", lines.len());

    // The machine formats keep one entry per check.
    let output = grader()
        .args(["poll_echo", "--format", "json", "--bin"])
        .arg(&bin)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let json: Value = serde_json::from_slice(&output).expect("valid JSON");
    let checks = json["checks"].as_array().unwrap();
    assert!(checks.len() > 10);
    for check in &checks[1..] {
        assert_eq!(
            check["message"],
            "not run: the program never started (see `basic_echo`)"
        );
        assert_eq!(check["points"], 0);
    }
    assert!(json.get("leaderboard").is_none());
}

/// `make gradescope LAB=x LEADERBOARD=1` (tools/gradescope.sh's fourth
/// argument) puts `LEADERBOARD=1` in the zip's autograder.conf, which
/// run_autograder turns into GRADER_LEADERBOARD; anything but 0 or 1 is
/// refused. (A full grade through run_autograder would cost a minute: the
/// grader's side is tested above.)
#[test]
fn the_gradescope_zip_turns_the_leaderboard_on_from_its_config() {
    let script = common::workspace().join("tools/gradescope.sh");
    let zip = common::scratch("leaderboard").with_extension("zip");
    let built = common::run(
        std::process::Command::new(&script)
            .args(["poll_echo"])
            .arg(&zip)
            .args(["", "1"]),
    );
    assert!(built.status.success(), "{}", common::text(&built));
    let conf = common::run(
        std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read('autograder.conf').decode())",
            ])
            .arg(&zip),
    );
    let conf = String::from_utf8_lossy(&conf.stdout);
    assert!(conf.lines().any(|l| l == "LEADERBOARD=1"), "{conf}");
    let runner =
        std::fs::read_to_string(common::workspace().join("tools/gradescope/run_autograder"))
            .unwrap();
    assert!(runner.contains("export GRADER_LEADERBOARD=${LEADERBOARD:-0}"));

    let refused = common::run(
        std::process::Command::new(&script)
            .args(["poll_echo"])
            .arg(&zip)
            .args(["", "yes"]),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", common::text(&refused));
    let _ = std::fs::remove_file(&zip);
}
