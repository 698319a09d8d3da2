//! The runner: grades a program lab by lab, check by check, each check in
//! its own thread with a deadline. A check that panics, overruns or fails is
//! reported, never propagated; whatever a check started is killed when it
//! ends.
//!
//! Two rules bound a grade whatever the program does. Its start is probed
//! once: a program that never starts properly fails that one probe and no
//! check is run. And a lab's whole grade has a time budget: a check gets at
//! most what is left of it, and checks not started when it runs out are not
//! run.

use crate::check::{Check, Ctx, Failure, Outcome, Verdict};
use crate::course::Lab;
use crate::harness::{contain, process};
use crate::report::{CheckReport, LabReport, NEVER_STARTED, Status};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

/// The start probe's time limit.
const START_LIMIT: Duration = Duration::from_secs(20);

/// A check is not started with less than this left of the budget.
const LEAST: Duration = Duration::from_secs(1);

/// Grades `bin` as `lab`, running every check (or only those named in
/// `only`). `on_check` sees each result as soon as it is known, except the
/// checks not run because the program never started: the human report
/// lists those in one line ([`LabReport::footer`]).
pub fn grade(
    lab: &'static Lab,
    bin: &Path,
    only: &[String],
    on_check: impl FnMut(&CheckReport),
) -> LabReport {
    grade_with(lab, bin, only, Rerun::Failures, on_check)
}

/// Whether a failed check is run a second time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rerun {
    /// Once more, to tell a flaky program from a wrong one (every real grade).
    Failures,
    /// Never: a proof that a broken program fails a check needs one run, and
    /// the proofs run a hundred of them.
    Never,
}

/// [`grade`], choosing whether failed checks are run again.
pub fn grade_with(
    lab: &'static Lab,
    bin: &Path,
    only: &[String],
    rerun: Rerun,
    mut on_check: impl FnMut(&CheckReport),
) -> LabReport {
    process::raise_own_fd_limit();
    let shown = bin;
    // As root the program runs as another user, who may not reach `bin`.
    let runnable = contain::runnable(bin);
    let bin = runnable.path.as_path();
    let selected: Vec<&'static Check> = lab
        .checks()
        .filter(|c| only.is_empty() || only.iter().any(|o| o == c.name))
        .collect();
    if let Some(why) = lab.unavailable() {
        let first = selected.first().map_or("", |check| check.name);
        let see = format!("skipped: this machine cannot run the lab (see `{first}`)");
        return LabReport {
            lab: lab.name.to_string(),
            bin: shown.display().to_string(),
            checks: selected
                .iter()
                .enumerate()
                .map(|(i, check)| {
                    skipped(lab, check, if i == 0 { &why } else { &see }, &mut on_check)
                })
                .collect(),
            leaderboard: Vec::new(),
        };
    }
    let budget = Budget::new(budget_of(lab));
    let never_started = lab.start().and_then(|probe| probe_start(lab, probe, bin));
    let mut checks: Vec<CheckReport> = Vec::new();
    for check in selected {
        let result = match (&never_started, checks.first()) {
            (Some(why), None) => not_started(lab, check, why),
            (Some(_), Some(first)) => {
                let see = format!("{NEVER_STARTED} (see `{}`)", first.name);
                checks.push(not_run(lab, check, see));
                continue;
            }
            (None, _) => graded(lab, check, bin, &budget, rerun),
        };
        on_check(&result);
        checks.push(result);
    }
    LabReport {
        lab: lab.name.to_string(),
        bin: shown.display().to_string(),
        checks,
        leaderboard: Vec::new(),
    }
}

/// The environment variable that sets every lab's budget, in seconds
/// (a slow machine may need more; the tests need less).
pub const BUDGET: &str = "GRADER_BUDGET_SECS";

/// The lab's budget, or `$GRADER_BUDGET_SECS`.
fn budget_of(lab: &Lab) -> Duration {
    std::env::var(BUDGET)
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(lab.budget, Duration::from_secs)
}

/// What is left of a lab's time budget.
struct Budget {
    total: Duration,
    ends: Instant,
}

impl Budget {
    fn new(total: Duration) -> Budget {
        Budget {
            total,
            ends: Instant::now() + total,
        }
    }

    fn left(&self) -> Duration {
        self.ends.saturating_duration_since(Instant::now())
    }

    fn used_up(&self) -> String {
        format!(
            "not run: the grade's time limit of {} s was used up by the checks before it (a program that stops answering makes each check wait for its deadlines)",
            self.total.as_secs()
        )
    }
}

/// Runs a check within the budget; a failed check that did not run into
/// its time limit is run once more to tell a flaky program from a wrong one.
fn graded(
    lab: &'static Lab,
    check: &'static Check,
    bin: &Path,
    budget: &Budget,
    rerun: Rerun,
) -> CheckReport {
    let Some(limit) = limit_within(check, budget) else {
        return not_run(lab, check, budget.used_up());
    };
    let mut first = run_check(lab, check, bin.to_path_buf(), limit);
    let overran = first.seconds + 0.05 >= limit.as_secs_f64();
    if overran && limit < check.limit {
        first.message += &format!(
            "\n(the grade's time limit of {} s ran out during this check)",
            budget.total.as_secs()
        );
    }
    if first.status != Status::Fail || overran || rerun == Rerun::Never {
        return first;
    }
    match limit_within(check, budget) {
        Some(limit) => run_again(lab, check, bin, first, limit),
        None => first,
    }
}

/// The check's own time limit, or less if less of the budget is left; none
/// when too little is left to start it.
fn limit_within(check: &Check, budget: &Budget) -> Option<Duration> {
    let left = budget.left();
    (left >= LEAST).then(|| check.limit.min(left))
}

/// A failed check is run once more: if the second run passes, the program
/// behaves differently from run to run, and the student should hear that
/// rather than see a plain fail. It still counts as a fail.
fn run_again(
    lab: &'static Lab,
    check: &'static Check,
    bin: &Path,
    first: CheckReport,
    limit: Duration,
) -> CheckReport {
    let second = run_check(lab, check, bin.to_path_buf(), limit);
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

/// Probes the program's start once; the rendered failure when it never
/// starts properly.
fn probe_start(lab: &'static Lab, probe: fn(&Ctx) -> Outcome, bin: &Path) -> Option<Run> {
    let run = run_body(lab, "start", probe, bin.to_path_buf(), START_LIMIT);
    (run.status == Status::Fail).then_some(run)
}

/// The first check of a grade whose program never started: it carries the
/// probe's failure.
fn not_started(lab: &'static Lab, check: &'static Check, probe: &Run) -> CheckReport {
    let mut result = not_run(
        lab,
        check,
        format!(
            "the program never started properly, so no check was run:\n{}",
            probe.message
        ),
    );
    result.seconds = probe.seconds;
    result
}

/// A check this machine cannot run (the lab's [`Lab::unavailable`]): SKIP,
/// 0 points, and the reason with its fix; the program is never started.
fn skipped(
    lab: &'static Lab,
    check: &'static Check,
    why: &str,
    on_check: &mut impl FnMut(&CheckReport),
) -> CheckReport {
    let mut result = not_run(lab, check, why.to_string());
    result.status = Status::Skip;
    on_check(&result);
    result
}

/// A check reported failed at once, with 0 points.
fn not_run(lab: &'static Lab, check: &'static Check, message: String) -> CheckReport {
    let mut result = report(
        lab,
        check,
        Run {
            status: Status::Fail,
            message,
            notes: Vec::new(),
            seconds: 0.0,
        },
    );
    // The check's own hint is about a mistake it did not get to see.
    result.hint = None;
    result
}

/// Runs one check with a deadline of `limit`; kills whatever it started.
/// Never panics, never hangs.
pub fn run_check(
    lab: &'static Lab,
    check: &'static Check,
    bin: PathBuf,
    limit: Duration,
) -> CheckReport {
    let run = run_body(lab, check.name, check.run, bin, limit);
    report(lab, check, run)
}

/// How one run of a check body ended.
struct Run {
    status: Status,
    message: String,
    notes: Vec<String>,
    seconds: f64,
}

/// Runs `body` in its own thread with a deadline of `limit`, kills whatever
/// it started when it ends or overruns.
fn run_body(
    lab: &'static Lab,
    name: &str,
    body: fn(&Ctx) -> Outcome,
    bin: PathBuf,
    limit: Duration,
) -> Run {
    let started = Instant::now();
    let ctx = Arc::new(Ctx::new(lab, bin));
    let (tx, rx) = channel();
    let runner = ctx.clone();
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| body(&runner)));
            let _ = tx.send(result);
        });
    let (status, message) = match thread {
        Err(err) => (
            Status::Fail,
            format!("grader error: cannot start the check: {err}"),
        ),
        Ok(_) => match rx.recv_timeout(limit) {
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
                    "the check did not finish within {:.0} s and was stopped",
                    limit.as_secs_f64()
                ))
                .cause("the program stopped responding in a way the check did not expect (a deadlock, or blocking in a read or write)")
                .transcript(&[]);
                (Status::Fail, ctx.render(&failure))
            }
        },
    };
    ctx.registry.kill_all();
    let notes = ctx.notes.lock().unwrap().clone();
    Run {
        status,
        message,
        notes,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn report(lab: &'static Lab, check: &'static Check, run: Run) -> CheckReport {
    CheckReport {
        name: check.name.to_string(),
        description: check.title.to_string(),
        max: check.points,
        points: if run.status == Status::Pass {
            check.points
        } else {
            0
        },
        status: run.status,
        seconds: run.seconds,
        message: run.message,
        notes: run.notes,
        hint: crate::course::hint(lab, check),
        flaky: false,
    }
}
