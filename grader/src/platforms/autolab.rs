//! autolab: work in progress (issue 27).

use crate::check::Lab;
use crate::report::LabReport;

/// What the grader prints for `--format autolab`.
pub fn results(report: &LabReport) -> String {
    serde_json::to_string_pretty(&report.json()).unwrap()
}

/// What it prints for a submission that could not be graded (`why`).
pub fn zero(lab: &Lab, why: &str) -> String {
    format!("{}: 0 points: {why}", lab.name)
}
