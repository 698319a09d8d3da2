//! The poll_echo checks, proven: the reference solution and an independent
//! correct server pass every one, the stub passes none, and each classic
//! mistake fails the check written for it.

mod common;

use common::{explain, grade};
use grader::report::Status;
use rstest::rstest;

#[test]
fn reference_solution_scores_full_marks() {
    let report = grade("poll_echo", "poll_echo_solution", &[]);
    assert!(report.all_passed(), "{}", explain(&report));
    assert_eq!(report.score(), 100);
}

#[test]
fn an_independent_correct_server_scores_full_marks() {
    // Written apart from the reference: ppoll, one accept per wakeup, small
    // writes, a HashMap of connections. Allowed differences must not cost points.
    let report = grade("poll_echo", "broken_correct", &[]);
    assert!(report.all_passed(), "{}", explain(&report));
}

#[test]
fn a_python_server_scores_full_marks() {
    // The grader grades the contract, not our Rust: a correct server in
    // another language (Python's select.poll) must score full marks too.
    let script = common::workspace().join("grader/tests/impls/poll_echo.py");
    let lab = grader::labs::find("poll_echo").unwrap();
    let _lock = common::exclusive();
    let report = grader::grade(&lab, &script, &[], |_| {});
    assert!(report.all_passed(), "{}", explain(&report));
}

#[test]
fn the_stub_scores_zero_and_says_why() {
    let report = grade("poll_echo", "poll_echo", &[]);
    assert_eq!(report.score(), 0, "{}", explain(&report));
    assert!(report.checks.iter().all(|c| c.status == Status::Fail));
    let first = &report.checks[0].message;
    assert!(first.contains("exited with code 101"), "{first}");
    assert!(first.contains("not yet implemented"), "{first}");
}

/// Each broken server makes one classic mistake; the check written for that
/// mistake must fail, and its message must point at the cause.
#[rstest]
#[case::strip_cr("broken_strip_cr", "basic_echo", "\\r before the \\n was dropped")]
#[case::echo_quit("broken_echo_quit", "quit", "`quit` was echoed")]
#[case::shutdown_after_write_only(
    "broken_shutdown_after_write_only",
    "quit",
    "even when there is nothing left to send"
)]
#[case::serial_blocking(
    "broken_serial_blocking",
    "concurrent_clients",
    "only one client at a time"
)]
#[case::echo_each_read("broken_echo_each_read", "byte_at_a_time", "a read is not a line")]
#[case::one_line_per_read(
    "broken_one_line_per_read",
    "pipelined",
    "one read can return many lines"
)]
#[case::truncate_long_lines("broken_truncate_long_lines", "long_line", "the long line was echoed")]
#[case::close_on_eof("broken_close_on_eof", "half_close", "fragment")]
#[case::no_linger(
    "broken_no_linger",
    "lingering_close",
    "shutdown(SHUT_WR), keep reading and discarding"
)]
#[case::exit_on_error("broken_exit_on_error", "client_reset", "exited with code")]
#[case::sigpipe_default("broken_sigpipe_default", "client_reset", "SIGPIPE")]
#[case::unbounded("broken_unbounded", "backpressure", "no backpressure")]
#[case::no_rlimit("broken_no_rlimit", "scale", "RLIMIT_NOFILE")]
#[case::busy_poll("broken_busy_poll", "idle_cpu", "busy-waiting")]
#[case::uses_epoll("broken_uses_epoll", "api", "epoll_wait")]
#[case::thread_per_client("broken_thread_per_client", "api", "threads")]
#[case::blocking_sockets(
    "broken_blocking_sockets",
    "nonblocking_sockets",
    "do not inherit O_NONBLOCK"
)]
#[case::bind_any("broken_bind_any", "loopback_only", "0.0.0.0")]
#[case::leak_fds("broken_leak_fds", "fd_hygiene", "were never closed")]
fn each_mistake_fails_its_check(#[case] bin: &str, #[case] check: &str, #[case] hint: &str) {
    common::assert_mistake("poll_echo", bin, check, hint);
}

/// A check that fails once and passes when run again still fails, and the
/// report says the program is flaky.
#[test]
fn a_flaky_program_is_reported_as_flaky() {
    let report = grade("poll_echo", "broken_flaky_strip_cr", &["basic_echo"]);
    let result = &report.checks[0];
    assert_eq!(result.status, Status::Fail, "{}", explain(&report));
    assert_eq!(result.points, 0);
    assert!(result.flaky, "{}", explain(&report));
    assert!(
        result.message.starts_with("failed 1 of 2 runs"),
        "{}",
        result.message
    );
    assert!(result.message.contains("\\r before the \\n was dropped"));
}

#[test]
fn every_check_is_proven_by_a_broken_server() {
    // Keep the case list above complete: a check nobody can fail is worthless.
    common::assert_every_check_proven(
        include_str!("poll_echo.rs"),
        &grader::echo::checks(),
        "broken server",
    );
}
