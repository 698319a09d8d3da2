//! The epoll labs' checks, proven: both reference solutions and independently
//! written correct servers pass, the stubs score zero, and each classic epoll mistake
//! fails the check written for it. (The echo checks they share with poll_echo
//! are proven in poll_echo.rs.)

mod common;

use common::{explain, grade};
use grader::report::Status;
use rstest::rstest;

#[rstest]
#[case::lt_solution("epoll_lt", "epoll_lt_solution")]
#[case::et_solution("epoll_et", "epoll_et_solution")]
#[case::lt_independent("epoll_lt", "broken_lt_correct")]
#[case::et_independent("epoll_et", "broken_et_correct")]
#[case::lt_from_the_poll_crate("epoll_lt", "broken_uses_epoll")]
fn correct_servers_score_full_marks(#[case] lab: &str, #[case] bin: &str) {
    let report = grade(lab, bin, &[]);
    assert!(report.all_passed(), "{}", explain(&report));
    assert_eq!(report.score(), 132);
}

/// A correct level-triggered server passes the edge-triggered behaviour
/// checks too: they catch servers that do not drain, nothing else.
#[test]
fn a_level_triggered_server_passes_the_draining_checks() {
    let report = grade(
        "epoll_et",
        "epoll_lt_solution",
        &["burst", "accept_storm", "big_replies"],
    );
    assert!(report.all_passed(), "{}", explain(&report));
}

#[rstest]
#[case::lt("epoll_lt")]
#[case::et("epoll_et")]
fn the_stubs_score_zero(#[case] lab: &str) {
    let report = grade(lab, lab, &[]);
    assert_eq!(report.score(), 0, "{}", explain(&report));
    assert!(report.checks.iter().all(|c| c.status == Status::Fail));
}

#[rstest]
#[case::read_once("epoll_et", "broken_et_read_once", "burst", "read until EAGAIN")]
#[case::accept_once(
    "epoll_et",
    "broken_et_accept_once",
    "accept_storm",
    "accept until EAGAIN"
)]
#[case::write_once("epoll_et", "broken_et_write_once", "big_replies", "wait for EPOLLOUT")]
#[case::et_registered_lt(
    "epoll_et",
    "broken_et_registered_lt",
    "registration",
    "without EPOLLET"
)]
#[case::lt_registered_et("epoll_lt", "broken_lt_registered_et", "registration", "with EPOLLET")]
#[case::keeps_closed(
    "epoll_lt",
    "broken_epoll_keeps_closed",
    "registration",
    "still registered"
)]
#[case::busy("epoll_lt", "broken_epoll_busy", "idle_cpu", "busy-waiting")]
#[case::threads("epoll_et", "broken_epoll_threads", "api", "threads")]
#[case::poll_instead("epoll_lt", "broken_correct", "api", "ppoll")]
fn each_mistake_fails_its_check(
    #[case] lab: &str,
    #[case] bin: &str,
    #[case] check: &str,
    #[case] hint: &str,
) {
    common::assert_mistake(lab, bin, check, hint);
}

#[test]
fn every_epoll_check_is_proven_by_a_broken_server() {
    // Keep the case list above complete: a check nobody can fail is worthless.
    common::assert_every_check_proven(
        include_str!("epoll.rs"),
        &grader::epoll::checks(),
        "broken server",
    );
}
