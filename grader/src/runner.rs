//! The runner: grades a program lab by lab, check by check, each check in
//! its own thread with a deadline. A check that panics, overruns or fails is
//! reported, never propagated; whatever a check started is killed when it
//! ends.

use crate::check::{Check, Ctx, Failure, Verdict};
use crate::course::Lab;
use crate::harness::process;
use crate::report::{CheckReport, LabReport, Status};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::Instant;

/// Grades `bin` as `lab`, running every check (or only those named in
/// `only`). `on_check` sees each result as soon as it is known.
pub fn grade(
    lab: &'static Lab,
    bin: &Path,
    only: &[String],
    mut on_check: impl FnMut(&CheckReport),
) -> LabReport {
    process::raise_own_fd_limit();
    let mut checks = Vec::new();
    for check in lab
        .checks()
        .filter(|c| only.is_empty() || only.iter().any(|o| o == c.name))
    {
        let mut result = run_check(lab, check, bin.to_path_buf());
        if result.status == Status::Fail && result.seconds < check.limit.as_secs_f64() {
            result = run_again(lab, check, bin, result);
        }
        on_check(&result);
        checks.push(result);
    }
    LabReport {
        lab: lab.name.to_string(),
        bin: bin.display().to_string(),
        checks,
    }
}

/// A failed check is run once more (unless it ran into its time limit): if
/// the second run passes, the program behaves differently from run to run,
/// and the student should hear that rather than see a plain fail. It still
/// counts as a fail.
fn run_again(lab: &'static Lab, check: &Check, bin: &Path, first: CheckReport) -> CheckReport {
    let second = run_check(lab, check, bin.to_path_buf());
    let mut result = first;
    result.seconds += second.seconds;
    if second.status == Status::Pass {
        result.flaky = true;
        result.message = format!(
            "failed 1 of 2 runs: your program behaves differently from run to run, often a race or an unhandled EAGAIN. The failing run:\n{}",
            result.message
        );
    }
    result
}

/// Runs one check in its own thread with a deadline; kills whatever it
/// started if it overruns. Never panics, never hangs.
pub fn run_check(lab: &'static Lab, check: &Check, bin: PathBuf) -> CheckReport {
    let started = Instant::now();
    let ctx = Arc::new(Ctx::new(lab, bin));
    let (tx, rx) = channel();
    let runner = ctx.clone();
    let run = check.run;
    let thread = std::thread::Builder::new()
        .name(check.name.to_string())
        .spawn(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(&runner)));
            let _ = tx.send(result);
        });
    let (status, message) = match thread {
        Err(err) => (
            Status::Fail,
            format!("grader error: cannot start the check: {err}"),
        ),
        Ok(_) => match rx.recv_timeout(check.limit) {
            Ok(Ok(Ok(()))) => (Status::Pass, String::new()),
            Ok(Ok(Err(Verdict::Fail(failure)))) => (Status::Fail, ctx.render(&failure)),
            Ok(Ok(Err(Verdict::Skip(why)))) => (Status::Skip, why),
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                (
                    Status::Fail,
                    format!("grader error (please report it): the check panicked: {what}"),
                )
            }
            Err(_) => {
                ctx.registry.kill_all();
                let failure = Failure::new(format!(
                    "the check did not finish within {} s and was stopped",
                    check.limit.as_secs()
                ))
                .cause("the program stopped responding in a way the check did not expect (a deadlock, or blocking in a read or write)")
                .transcript(&[]);
                (Status::Fail, ctx.render(&failure))
            }
        },
    };
    ctx.registry.kill_all();
    let notes = ctx.notes.lock().unwrap().clone();
    CheckReport {
        name: check.name.to_string(),
        description: check.title.to_string(),
        max: check.points,
        points: if status == Status::Pass {
            check.points
        } else {
            0
        },
        status,
        seconds: started.elapsed().as_secs_f64(),
        message,
        notes,
        hint: crate::course::hint(lab, check),
        flaky: false,
    }
}
