//! The nonblocking_read checks, proven: the reference solution, an
//! independently written copier and a Python one score full marks, the stub
//! scores zero, and each classic mistake fails the check written for it.

mod common;

use common::{explain, grade};
use grader::report::Status;
use rstest::rstest;

const LAB: &str = "nonblocking_read";

#[test]
fn reference_solution_scores_full_marks() {
    let report = grade(LAB, "nonblocking_read_solution", &[]);
    assert!(report.all_passed(), "{}", explain(&report));
    assert_eq!(report.score(), 100);
}

#[test]
fn an_independent_correct_copier_scores_full_marks() {
    // Written apart from the reference: its own argument parser, 1000-byte
    // reads, write_all on a dup of stdout, flags kept as a raw int.
    let report = grade(LAB, "broken_nb_correct", &[]);
    assert!(report.all_passed(), "{}", explain(&report));
}

#[test]
fn a_python_copier_scores_full_marks() {
    // The grader grades the contract, not our Rust.
    let script = common::workspace().join("grader/tests/impls/nonblocking_read.py");
    let lab = grader::labs::find(LAB).unwrap();
    let _lock = common::exclusive();
    let report = grader::grade(&lab, &script, &[], |_| {});
    assert!(report.all_passed(), "{}", explain(&report));
}

#[test]
fn the_stub_scores_zero_and_says_why() {
    let report = grade(LAB, LAB, &[]);
    assert_eq!(report.score(), 0, "{}", explain(&report));
    assert!(report.checks.iter().all(|c| c.status == Status::Fail));
    let first = &report.checks[0].message;
    assert!(first.contains("exited with code 101"), "{first}");
    assert!(first.contains("not yet implemented"), "{first}");
}

/// Each broken copier makes one classic mistake; the check written for that
/// mistake must fail, and its message must point at the cause.
#[rstest]
#[case::whole_buffer("broken_nb_whole_buffer", "pipe_copy", "not the whole buffer")]
#[case::miscounts_bytes("broken_nb_miscounts_bytes", "pipe_copy", "the report says bytes=")]
#[case::ignore_write_count(
    "broken_nb_ignore_write_count",
    "short_writes",
    "write() may write fewer bytes than asked"
)]
#[case::no_sleep("broken_nb_no_sleep", "pause_eagain", "busy-waiting")]
#[case::long_sleep("broken_nb_long_sleep", "pause_eagain", "too few retries")]
#[case::eagain_is_eof(
    "broken_nb_eagain_is_eof",
    "pause_eagain",
    "EAGAIN is not end of input"
)]
#[case::never_nonblock("broken_nb_never_nonblock", "pause_eagain", "eagain=0")]
#[case::never_nonblock_flags(
    "broken_nb_never_nonblock",
    "nonblocking_flags",
    "was not non-blocking"
)]
#[case::overwrite_flags("broken_nb_overwrite_flags", "nonblocking_flags", "F_GETFL")]
#[case::no_restore("broken_nb_no_restore", "restores_flags", "at the end of input")]
#[case::restore_on_success_only(
    "broken_nb_restore_on_success_only",
    "restores_flags",
    "exited on an error"
)]
#[case::ignores_blocking("broken_nb_ignores_blocking", "blocking_mode", "with --blocking")]
#[case::open_nonblock("broken_nb_open_nonblock", "fifo", "without O_NONBLOCK")]
#[case::zero_is_would_block(
    "broken_nb_zero_is_would_block",
    "regular_file",
    "no effect on regular files"
)]
#[case::unwrap_open("broken_nb_unwrap_open", "errors", "exited with code 101")]
fn each_mistake_fails_its_check(#[case] bin: &str, #[case] check: &str, #[case] hint: &str) {
    common::assert_mistake(LAB, bin, check, hint);
}

#[test]
fn every_check_is_proven_by_a_broken_copier() {
    // Keep the case list above complete: a check nobody can fail is worthless.
    common::assert_every_check_proven(
        include_str!("nonblocking_read.rs"),
        &grader::nonblocking_read::checks(),
        "broken copier",
    );
}
