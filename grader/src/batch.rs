//! `grader batch LAB DIR`: grades every submission under DIR (one folder
//! each) and writes a CSV of points per check, plus each student's report.
//!
//! A submission is either a program (an executable named like the lab, in
//! any language) or the lab's Rust sources (the lab folder with Cargo.toml
//! and src/, or src/ alone, or bare .rs files). Sources are built one at a
//! time in a scratch workspace that shares one target directory, so only the
//! student's crate is compiled each time. Gradings run one at a time by
//! default: checks measure CPU time and latency, and two gradings at once
//! would disturb each other.

use crate::course::Lab;
use crate::report::{LabReport, Status};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

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
    let mut programs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        eprintln!("[{}/{}] {name}: preparing", i + 1, names.len());
        programs.push(prepare(batch, name));
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
                        Ok(bin) => {
                            Outcome::Graded(crate::grade(batch.lab, &bin, &batch.only, |_| {}))
                        }
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
    lines.extend(report.checks.iter().map(|c| c.human(false)));
    lines.push(report.footer());
    lines.join("\n") + "\n"
}

/// The program to grade for one submission, built if it is source code.
fn prepare(batch: &Batch, name: &str) -> Result<PathBuf, String> {
    let lab = batch.lab.name;
    let mut folder = batch.dir.join(name);
    for inner in [format!("labs/{lab}"), lab.to_string()] {
        if folder.join(&inner).is_dir() {
            folder = folder.join(inner);
            break;
        }
    }
    let exe = folder.join(lab);
    if exe.is_file() && is_executable(&exe) {
        return Ok(exe.canonicalize().unwrap_or(exe));
    }
    build(batch, name, &folder)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// Builds Rust sources in a scratch workspace: the course's manifest with
/// only this lab as a member, its path dependencies made absolute.
fn build(batch: &Batch, name: &str, folder: &Path) -> Result<PathBuf, String> {
    let lab = batch.lab.name;
    let ws = batch.scratch.join("ws");
    let lab_dir = ws.join("labs").join(lab);
    let _ = std::fs::remove_dir_all(&lab_dir);
    std::fs::create_dir_all(lab_dir.join("src")).map_err(|e| e.to_string())?;
    let given_manifest = batch.workspace.join("labs").join(lab).join("Cargo.toml");
    if folder.join("Cargo.toml").is_file() && folder.join("src").is_dir() {
        copy_dir(&folder.join("src"), &lab_dir.join("src"))?;
        copy(&folder.join("Cargo.toml"), &lab_dir.join("Cargo.toml"))?;
    } else if folder.join("src").is_dir() {
        copy_dir(&folder.join("src"), &lab_dir.join("src"))?;
        copy(&given_manifest, &lab_dir.join("Cargo.toml"))?;
    } else if has_rust_files(folder) {
        copy_dir(folder, &lab_dir.join("src"))?;
        copy(&given_manifest, &lab_dir.join("Cargo.toml"))?;
    } else {
        return Err(format!(
            "no program: neither an executable `{lab}` nor Rust sources in {}",
            folder.display()
        ));
    }
    let manifest = std::fs::read_to_string(batch.workspace.join("Cargo.toml"))
        .map_err(|err| format!("cannot read the course's Cargo.toml: {err}"))?;
    let root = batch
        .workspace
        .canonicalize()
        .unwrap_or_else(|_| batch.workspace.clone());
    std::fs::write(
        ws.join("Cargo.toml"),
        scratch_manifest(&manifest, lab, &root),
    )
    .map_err(|e| e.to_string())?;
    let _ = std::fs::copy(batch.workspace.join("Cargo.lock"), ws.join("Cargo.lock"));
    let target = batch.scratch.join("target");
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&ws)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--quiet", "--release", "-p", lab])
        .output()
        .map_err(|err| format!("cannot run cargo: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "does not compile:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let bins = batch.scratch.join("bins").join(name);
    std::fs::create_dir_all(&bins).map_err(|e| e.to_string())?;
    let bin = bins.join(lab);
    copy(&target.join("release").join(lab), &bin)?;
    Ok(bin)
}

/// The course manifest with `members = ["labs/<lab>"]` and absolute paths.
fn scratch_manifest(manifest: &str, lab: &str, root: &Path) -> String {
    let mut out = String::new();
    let mut in_members = false;
    for line in manifest.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("members") {
            out += &format!("members = [\"labs/{lab}\"]\n");
            in_members = !trimmed.contains(']');
            continue;
        }
        if in_members {
            in_members = !trimmed.starts_with(']');
            continue;
        }
        out += &line.replace("path = \"", &format!("path = \"{}/", root.display()));
        out.push('\n');
    }
    out
}

fn has_rust_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "rs"))
    })
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|err| format!("cannot copy {}: {err}", from.display()))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    let entries = std::fs::read_dir(from).map_err(|e| e.to_string())?;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_dir(&path, &to.join(entry.file_name()))?;
        } else {
            copy(&path, &to.join(entry.file_name()))?;
        }
    }
    Ok(())
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
    fn the_scratch_manifest_has_one_member_and_absolute_paths() {
        let manifest = "[workspace]\nmembers = [\n    \"grader\",\n    \"labs/labkit\",\n]\n\n[workspace.dependencies]\nlabkit = { path = \"labs/labkit\" }\n";
        let out = scratch_manifest(manifest, "poll_echo", Path::new("/course"));
        assert_eq!(
            out,
            "[workspace]\nmembers = [\"labs/poll_echo\"]\n\n[workspace.dependencies]\nlabkit = { path = \"/course/labs/labkit\" }\n"
        );
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(field("alice"), "alice");
        assert_eq!(field("o'brien, k"), "\"o'brien, k\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
