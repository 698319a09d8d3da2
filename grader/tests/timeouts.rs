//! The timeouts lab's checks, proven: the reference solution and an
//! independently written correct server score full marks, the stub scores
//! zero, and each classic timer mistake fails the check written for it.
//! (The echo checks it shares with the other labs are proven in poll_echo.rs.)

mod common;

use common::{explain, grade};
use grader::report::Status;
use rstest::rstest;

/// The echo suite (100) and the timeouts checks.
const FULL_MARKS: u32 = 139;

#[rstest]
#[case::solution("timeouts_solution")]
// Written apart from the reference: epoll_pwait, a BTreeMap of deadlines
// updated eagerly, 64 events per wait, 16 KiB reads.
#[case::independent("broken_timeouts_correct")]
fn correct_servers_score_full_marks(#[case] bin: &str) {
    let report = grade("timeouts", bin, &[]);
    assert!(report.all_passed(), "{}", explain(&report));
    assert_eq!(report.score(), FULL_MARKS);
}

#[test]
fn the_stub_scores_zero_and_says_why() {
    let report = grade("timeouts", "timeouts", &[]);
    assert_eq!(report.score(), 0, "{}", explain(&report));
    assert!(report.checks.iter().all(|c| c.status == Status::Fail));
    // The stub panics right after `listening on`: a client that connected
    // just before may see a reset before the exit is known, so not every
    // message can quote the panic; most do.
    let quoted = report
        .checks
        .iter()
        .filter(|c| {
            c.message.contains("exited with code 101") && c.message.contains("not yet implemented")
        })
        .count();
    assert!(quoted * 2 > report.checks.len(), "{}", explain(&report));
}

#[rstest]
#[case::late_close("broken_timeouts_late_close", "idle_close", "closed late")]
#[case::not_refreshed_early("broken_timeouts_not_refreshed", "idle_close", "closed too early")]
#[case::not_refreshed(
    "broken_timeouts_not_refreshed",
    "active_kept",
    "not refreshed on activity"
)]
#[case::tick_burst("broken_timeouts_tick_burst", "tick_cadence", "ticks at once")]
#[case::timers_only_on_timeout(
    "broken_timeouts_timers_only_on_timeout",
    "tick_under_traffic",
    "only when the wait times out"
)]
#[case::fixed_short_tick(
    "broken_timeouts_fixed_short_tick",
    "few_wakeups",
    "fixed short interval"
)]
#[case::latest_deadline(
    "broken_timeouts_latest_deadline",
    "many_deadlines",
    "EARLIEST idle deadline"
)]
fn each_mistake_fails_its_check(#[case] bin: &str, #[case] check: &str, #[case] hint: &str) {
    common::assert_mistake("timeouts", bin, check, hint);
}

#[test]
fn every_timeouts_check_is_proven_by_a_broken_server() {
    // Keep the case list above complete: a check nobody can fail is worthless.
    common::assert_every_check_proven(
        include_str!("timeouts.rs"),
        &grader::timeouts::checks(),
        "broken server",
    );
}

#[test]
fn timeouts_checks_add_up_to_the_full_marks() {
    let lab = grader::labs::find("timeouts").unwrap();
    assert_eq!(lab.checks.iter().map(|c| c.points).sum::<u32>(), FULL_MARKS);
}
