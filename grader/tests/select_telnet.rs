//! The select_telnet checks, proven: the reference solution and independent
//! correct clients pass every one, the stub passes none, and each classic
//! mistake fails the check written for it.

mod common;

use common::{explain, grade};
use grader::report::Status;
use rstest::rstest;

#[test]
fn reference_solution_scores_full_marks() {
    let report = grade("select_telnet", "select_telnet_solution", &[]);
    assert!(report.all_passed(), "{}", explain(&report));
    assert_eq!(report.score(), 100);
}

#[test]
fn an_independent_correct_client_scores_full_marks() {
    // Written apart from the reference: pselect, 4 KiB reads, a 16 KiB
    // buffer, blocking write(2) on stdout. Allowed differences cost nothing.
    let report = grade("select_telnet", "broken_telnet_correct", &[]);
    assert!(report.all_passed(), "{}", explain(&report));
}

#[test]
fn a_python_client_scores_full_marks() {
    // The grader grades the contract, not our Rust: a correct client in
    // another language (Python's select.select) must score full marks too.
    let script = common::workspace().join("grader/tests/impls/select_telnet.py");
    let lab = grader::labs::find("select_telnet").unwrap();
    let _lock = common::exclusive();
    let report = grader::grade(&lab, &script, &[], |_| {});
    assert!(report.all_passed(), "{}", explain(&report));
}

#[test]
fn the_stub_scores_zero_and_says_why() {
    let report = grade("select_telnet", "select_telnet", &[]);
    assert_eq!(report.score(), 0, "{}", explain(&report));
    assert!(report.checks.iter().all(|c| c.status == Status::Fail));
    let first = &report.checks[0].message;
    assert!(first.contains("exited with code 101"), "{first}");
    assert!(first.contains("not yet implemented"), "{first}");
}

/// Each broken client makes one classic mistake; the check written for that
/// mistake must fail, and its message must point at the cause.
#[rstest]
#[case::crlf("broken_telnet_crlf", "round_trip", "real telnet sends CRLF")]
#[case::blocking_stdin(
    "broken_telnet_blocking_stdin",
    "notification",
    "only after the grader typed a line"
)]
#[case::no_flush("broken_telnet_no_flush", "notification", "flush stdout")]
#[case::blocking_writes("broken_telnet_blocking_writes", "full_duplex", "deadlock")]
#[case::partial_writes("broken_telnet_partial_writes", "full_duplex", "partial write")]
#[case::exit_at_eof("broken_telnet_exit_at_eof", "stdin_eof", "do not exit")]
#[case::unwraps("broken_telnet_unwraps", "exit_codes", "exited with code 101")]
#[case::reset_is_error("broken_telnet_reset_is_error", "peer_reset", "not an error")]
#[case::zero_timeout("broken_telnet_zero_timeout", "idle", "busy-waiting")]
#[case::stdin_in_set("broken_telnet_stdin_in_set", "idle", "stdin stays in the read set")]
#[case::uses_poll("broken_telnet_uses_poll", "idle", "poll (7)")]
#[case::lossy("broken_telnet_lossy", "binary", "from_utf8_lossy")]
#[case::sigpipe("broken_telnet_sigpipe", "stdout_closed", "SIGPIPE")]
fn each_mistake_fails_its_check(#[case] bin: &str, #[case] check: &str, #[case] hint: &str) {
    common::assert_mistake("select_telnet", bin, check, hint);
}

#[test]
fn every_check_is_proven_by_a_broken_client() {
    // Keep the case list above complete: a check nobody can fail is worthless.
    common::assert_every_check_proven(
        include_str!("select_telnet.rs"),
        &grader::select_telnet::checks(),
        "broken client",
    );
}

#[test]
fn points_add_up_to_100() {
    let total: u32 = grader::select_telnet::checks()
        .iter()
        .map(|c| c.points)
        .sum();
    assert_eq!(total, 100);
}
