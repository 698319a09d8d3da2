//! The iomux-labs grader: runs a lab program as a black box and checks it
//! against CONTRACT.md through processes, sockets, pipes and /proc.

pub mod check;
pub mod client;
pub mod echo;
pub mod epoll;
pub mod labs;
pub mod nonblocking_read;
pub mod proc;
pub mod process;
pub mod report;
pub mod select_telnet;
pub mod timeouts;
pub mod transcript;

use report::LabReport;
use std::path::Path;

/// Grades `bin` as `lab`, running every check (or only those named in
/// `only`). `on_check` sees each result as soon as it is known.
pub fn grade(
    lab: &labs::Lab,
    bin: &Path,
    only: &[String],
    mut on_check: impl FnMut(&report::CheckReport),
) -> LabReport {
    process::raise_own_fd_limit();
    let mut checks = Vec::new();
    for check in lab
        .checks
        .iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| o == c.name))
    {
        let result = check::run_check(lab.name, check, bin.to_path_buf());
        on_check(&result);
        checks.push(result);
    }
    LabReport {
        lab: lab.name.to_string(),
        bin: bin.display().to_string(),
        checks,
    }
}
