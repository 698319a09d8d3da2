//! The runner runs a failed check once more: a program that fails once and
//! passes the second time still fails, and the report says it is flaky.

mod common;

use common::{explain, grade};
use grader::report::Status;

#[test]
fn a_flaky_program_is_reported_as_flaky() {
    let report = grade(
        "poll_echo",
        "broken_poll_echo_flaky_strip_cr",
        &["basic_echo"],
    );
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
