//! `grader batch LAB DIR`: grades every submission under DIR (one folder
//! each) and writes a CSV of points per check, plus each student's report.
//!
//! A submission is either a program (an executable named like the lab, in
//! any language) or the lab's Rust sources (the lab folder with Cargo.toml
//! and src/, or src/ alone, or bare .rs files). Sources are built one at a
//! time by [`crate::submission`] (only the `.rs` files, the lab's own
//! manifest, unprivileged as root), in a scratch workspace that shares one
//! target directory, so only the student's crate is compiled each time.
//! Each program is graded by a grader process of its own, one at a time by
//! default: checks measure CPU time and latency, and two gradings at once
//! would disturb each other.

use crate::course::Lab;
use crate::harness::{contain, process};
use crate::report::{LabReport, Status};
use crate::submission::{self, Builder};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub struct Batch {
    pub lab: &'static Lab,
    /// One folder per submission.
    pub dir: PathBuf,
    /// The course workspace (for building Rust submissions).
    pub workspace: PathBuf,
    /// Where scratch workspaces and binaries go.
    pub scratch: PathBuf,
    /// The CSV to write; reports go in `<csv without .csv>-reports/`.
    pub out: PathBuf,
    pub only: Vec<String>,
    /// Gradings at once.
    pub jobs: usize,
}

/// What became of one submission.
enum Outcome {
    Graded(LabReport),
    NotGraded(String),
}

pub fn run(batch: &Batch) -> Result<(), String> {
    let names = submissions(&batch.dir)?;
    if names.is_empty() {
        return Err(format!("no submission folders in {}", batch.dir.display()));
    }
    let reports_dir = reports_dir(&batch.out);
    std::fs::create_dir_all(&reports_dir)
        .map_err(|err| format!("cannot create {}: {err}", reports_dir.display()))?;
    // Build (or find) every program first, one build at a time.
    let builder = OnceLock::new();
    let mut programs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        eprintln!("[{}/{}] {name}: preparing", i + 1, names.len());
        programs.push(prepare(batch, &builder, name));
    }
    // Then grade, at most `jobs` at once.
    let mut pending: Vec<_> = names.iter().zip(programs).enumerate().collect();
    pending.reverse(); // popped from the end: first submission first
    let queue = Mutex::new(pending);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..batch.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some((i, (name, program))) = next else {
                        break;
                    };
                    let outcome = match program {
                        Ok(bin) => grade_apart(batch, &bin),
                        Err(why) => Outcome::NotGraded(why),
                    };
                    eprintln!("[{}/{}] {name}: {}", i + 1, names.len(), summary(&outcome));
                    results.lock().unwrap().push((i, name.clone(), outcome));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _, _)| *i);
    for (_, name, outcome) in &results {
        let text = match outcome {
            Outcome::Graded(report) => human(report),
            Outcome::NotGraded(why) => format!("{name}: not graded: {why}\n"),
        };
        let path = reports_dir.join(format!("{name}.txt"));
        std::fs::write(&path, text)
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    }
    let csv = csv(batch, &results);
    std::fs::write(&batch.out, csv)
        .map_err(|err| format!("cannot write {}: {err}", batch.out.display()))?;
    eprintln!(
        "batch: {} submissions; scores in {}, reports in {}",
        results.len(),
        batch.out.display(),
        reports_dir.display()
    );
    Ok(())
}

fn reports_dir(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "grades".into());
    out.with_file_name(format!("{stem}-reports"))
}

fn submissions(dir: &Path) -> Result<Vec<String>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|err| format!("cannot read {}: {err}", dir.display()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

fn summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Graded(report) => format!(
            "{}/{} ({:.1} s)",
            report.score(),
            report.max_score(),
            report.seconds()
        ),
        Outcome::NotGraded(why) => format!("0: {}", why.lines().next().unwrap_or_default()),
    }
}

fn human(report: &LabReport) -> String {
    let mut lines = vec![LabReport::header(&report.lab, &report.bin)];
    // The checks not run because the program never started are one line
    // of the footer.
    let shown = report.checks.iter().filter(|c| !c.never_started());
    lines.extend(shown.map(|c| c.human(false)));
    lines.push(report.footer());
    lines.join("\n") + "\n"
}

/// Grades one program in a grader process of its own: whatever the program
/// does, it cannot reach the batch or another submission's grading, and the
/// process kills everything the program started before it exits.
fn grade_apart(batch: &Batch, bin: &Path) -> Outcome {
    let me = match std::env::current_exe() {
        Ok(me) => me,
        Err(err) => {
            return Outcome::NotGraded(format!("grader error: cannot find the grader: {err}"));
        }
    };
    let mut grader = Command::new(me);
    grader
        .arg(batch.lab.name)
        .arg("--bin")
        .arg(bin)
        .args(["--format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own group, so that the backstop kills all of it; and it dies
        // with the batch (Ctrl-C no longer reaches it through the terminal).
        .process_group(0);
    // SAFETY: one prctl between fork and exec.
    unsafe {
        grader.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            Ok(())
        });
    }
    if !batch.only.is_empty() {
        grader.arg("--only").arg(batch.only.join(","));
    }
    if let Ok(user) = contain::credentials() {
        let name = user.map_or("root".to_string(), |u| u.name);
        grader.env(contain::RUN_AS, name);
    }
    let mut child = match grader.spawn() {
        Ok(child) => child,
        Err(err) => {
            return Outcome::NotGraded(format!("grader error: cannot start the grader: {err}"));
        }
    };
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    // The grade is bounded by the lab's budget; this is the backstop.
    let backstop = batch.lab.budget * 2 + Duration::from_secs(60);
    if process::wait_or_kill(&mut child, backstop).is_none() {
        return Outcome::NotGraded("grader error: the grading did not end in time".into());
    }
    let text = reader.join().unwrap_or_default();
    serde_json::from_slice(&text)
        .ok()
        .and_then(|json| LabReport::from_json(&json))
        .map_or_else(
            || Outcome::NotGraded("grader error: the grading's report did not parse".into()),
            Outcome::Graded,
        )
}

/// The program to grade for one submission: its executable, or its Rust
/// sources built without trusting them. Either way a copy only the grader
/// can write.
fn prepare(
    batch: &Batch,
    builder: &OnceLock<Result<Builder, String>>,
    name: &str,
) -> Result<PathBuf, String> {
    let lab = batch.lab.name;
    let folder = submission::lab_folder(&batch.dir.join(name), lab);
    let exe = folder.join(lab);
    if exe.is_file() && is_executable(&exe) {
        let bins = batch.scratch.join("bins").join(name);
        std::fs::create_dir_all(&bins).map_err(|e| e.to_string())?;
        let bin = bins.join(lab);
        let _ = std::fs::remove_file(&bin);
        std::fs::copy(&exe, &bin).map_err(|err| format!("cannot copy {}: {err}", exe.display()))?;
        return Ok(bin);
    }
    let builder = builder.get_or_init(|| Builder::new(batch.lab, &batch.workspace, &batch.scratch));
    match builder {
        Ok(builder) => builder.build(name, &folder),
        Err(why) => Err(format!("grader error: cannot set up the build: {why}")),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// `submission,status,<check>...,total,max`, one row per submission.
fn csv(batch: &Batch, results: &[(usize, String, Outcome)]) -> String {
    let checks: Vec<&str> = batch
        .lab
        .checks()
        .map(|c| c.name)
        .filter(|n| batch.only.is_empty() || batch.only.iter().any(|o| o == n))
        .collect();
    let max: u32 = batch
        .lab
        .checks()
        .filter(|c| checks.contains(&c.name))
        .map(|c| c.points)
        .sum();
    let mut rows = vec![format!("submission,status,{},total,max", checks.join(","))];
    for (_, name, outcome) in results {
        let mut row = vec![field(name)];
        match outcome {
            Outcome::Graded(report) => {
                let status = if report.all_passed() {
                    "passed"
                } else if report.checks.iter().any(|c| c.flaky) {
                    "failed (flaky)"
                } else {
                    "failed"
                };
                row.push(status.into());
                for check in &checks {
                    let points = report
                        .checks
                        .iter()
                        .find(|c| c.name == *check)
                        .filter(|c| c.status == Status::Pass)
                        .map_or(0, |c| c.points);
                    row.push(points.to_string());
                }
                row.push(report.score().to_string());
            }
            Outcome::NotGraded(why) => {
                let status = if why.starts_with("does not compile") {
                    "does not compile"
                } else if why.starts_with("refused") {
                    "refused"
                } else if why.starts_with("grader error") {
                    "grader error"
                } else {
                    "no program"
                };
                row.push(status.into());
                row.extend(checks.iter().map(|_| "0".to_string()));
                row.push("0".into());
            }
        }
        row.push(max.to_string());
        rows.push(row.join(","));
    }
    rows.join("\n") + "\n"
}

/// A CSV field, quoted if it needs to be.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(field("alice"), "alice");
        assert_eq!(field("o'brien, k"), "\"o'brien, k\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
