//! `grader <lab> --bin PATH [--only CHECK[,CHECK...]] [--format human|json|gradescope] [--verbose]`
//! `grader all --dir DIR [--suffix S] [--not-built LAB,...]`
//! `grader hint <lab> [CHECK]`
//! `grader --list [LAB]`
//!
//! Any grading command takes `--run-as USER`: as root, programs under test
//! run as USER (default `nobody`).
//!
//! Exit status: 0 when every check passed, 1 when any did not, 2 for a usage
//! error (unknown lab or check, missing program).

use grader::course::{self, LABS};
use grader::harness::contain;
use grader::harness::process::resolve_bin;
use grader::platforms;
use grader::report::{LabReport, Style};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: grader <lab> --bin PATH [--only CHECK[,CHECK...]] [--format human|json|gradescope|classroom|prairielearn|autolab [--hidden C,...]] [--verbose] [--run-as USER] [--leaderboard]
       grader all --dir DIR [--suffix S] [--labs A,B] [--not-built LAB,...]
                                                                 grade DIR/<lab>S for every lab, then a summary
       grader hint <lab> [CHECK]                                 the hints for a lab's checks
       grader watch <lab> --src DIR --bin PATH [--only C,...] -- BUILD COMMAND...
                                                                 rebuild and re-grade on every change
       grader batch <lab> DIR [--out CSV] [--jobs N] [--only C,...] [--workspace DIR]
                                                                 grade every submission folder under DIR into a CSV
       grader zero <lab> WHY [--format F]                        results scoring 0 (build failed...), Gradescope's by default
       grader build <lab> SUBMISSION --workspace DIR --scratch DIR --out FILE
                                                                 build a submission's sources without trusting them
       grader --list [LAB]

As root, the grader runs the program under test as USER (--run-as, or
$GRADER_RUN_AS; default nobody; `root` to keep root, unprotected).
Each lab's whole grade has a time budget; GRADER_BUDGET_SECS=N sets another.
--leaderboard (or GRADER_LEADERBOARD=1): an echo server that passed every check
is measured once more under load for a leaderboard, never part of the score.";

#[derive(PartialEq)]
enum Format {
    Human,
    Json,
    Gradescope,
    Classroom,
    PrairieLearn,
    Autolab,
}

struct Options {
    lab: String,
    bin: String,
    only: Vec<String>,
    format: Format,
    verbose: bool,
    hidden: Vec<String>,
    leaderboard: bool,
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("grader: {message}\n{USAGE}");
    ExitCode::from(2)
}

fn lab_list() -> String {
    LABS.iter()
        .map(|lab| format!("  {:<18} {}", lab.name, lab.summary))
        .collect::<Vec<_>>()
        .join("\n")
}

fn list(lab: Option<&str>) -> ExitCode {
    match lab {
        None => {
            println!("labs:\n{}", lab_list());
            ExitCode::SUCCESS
        }
        Some(name) => match course::find(name) {
            None => usage_error(&format!(
                "unknown lab '{name}'; the labs are:\n{}",
                lab_list()
            )),
            Some(lab) => {
                let max: u32 = lab.max_points();
                println!("{} ({} points): {}", lab.name, max, lab.summary);
                for check in lab.checks() {
                    println!("  {:<22} {:>3}  {}", check.name, check.points, check.title);
                }
                ExitCode::SUCCESS
            }
        },
    }
}

fn parse(args: Vec<String>) -> Result<Options, ExitCode> {
    let mut lab = None;
    let mut bin = None;
    let mut only = Vec::new();
    let mut format = Format::Human;
    let mut verbose = false;
    let mut leaderboard = false;
    let mut hidden = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| usage_error(&format!("{what} needs a value")))
        };
        match name.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}\n\nlabs:\n{}", lab_list());
                return Err(ExitCode::SUCCESS);
            }
            "--list" => {
                let rest: Vec<String> = args.collect();
                return Err(list(rest.first().map(String::as_str).or(lab.as_deref())));
            }
            "--bin" => bin = Some(value("--bin")?),
            "--only" => only.extend(value("--only")?.split(',').map(str::to_string)),
            "--format" => {
                format = match value("--format")?.as_str() {
                    "human" => Format::Human,
                    "json" => Format::Json,
                    "gradescope" => Format::Gradescope,
                    "classroom" => Format::Classroom,
                    "prairielearn" => Format::PrairieLearn,
                    "autolab" => Format::Autolab,
                    other => return Err(usage_error(&format!("unknown format '{other}'"))),
                }
            }
            "-v" | "--verbose" => verbose = true,
            "--leaderboard" => leaderboard = true,
            "--hidden" => hidden.extend(
                value("--hidden")?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            flag if flag.starts_with('-') => {
                return Err(usage_error(&format!("unknown option '{flag}'")));
            }
            _ if lab.is_none() => lab = Some(arg),
            _ => return Err(usage_error(&format!("unexpected argument '{arg}'"))),
        }
    }
    let Some(lab) = lab else {
        return Err(usage_error(&format!(
            "which lab? the labs are:\n{}",
            lab_list()
        )));
    };
    let Some(bin) = bin else {
        return Err(usage_error("--bin PATH is required: the program to grade"));
    };
    Ok(Options {
        lab,
        bin,
        only,
        format,
        verbose,
        hidden,
        leaderboard,
    })
}

/// Prints a line and flushes it; a reader that went away (`| head`) ends the
/// grader quietly instead of with a panic.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        std::process::exit(1);
    }
}

/// Takes `--run-as USER` out of the arguments and settles who programs run
/// as (it matters only when the grader is root).
fn run_as(args: &mut Vec<String>) -> Result<(), ExitCode> {
    let mut user = None;
    let mut i = 0;
    while i < args.len() {
        if let Some(name) = args[i].strip_prefix("--run-as=") {
            user = Some(name.to_string());
            args.remove(i);
        } else if args[i] == "--run-as" {
            args.remove(i);
            if i >= args.len() {
                return Err(usage_error("--run-as needs a user name"));
            }
            user = Some(args.remove(i));
        } else {
            i += 1;
        }
    }
    contain::choose_user(user.as_deref())
        .map(|_| ())
        .map_err(|err| {
            eprintln!("grader: {err}");
            ExitCode::from(2)
        })
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().cloned().unwrap_or_default();
    if !matches!(command.as_str(), "hint" | "zero")
        && let Err(code) = run_as(&mut args)
    {
        return code;
    }
    // A grading process grades and nothing else: every process below it
    // is the program under test's, and the end of each check kills them
    // all. `watch` builds while it grades and `batch` runs graders, so
    // they only kill what each check started.
    if !matches!(command.as_str(), "watch" | "batch" | "build") {
        contain::dedicate();
    }
    match command.as_str() {
        "hint" => return hint(&args[1..]),
        "all" => return all(args[1..].to_vec()),
        "watch" => return watch(args[1..].to_vec()),
        "zero" => return zero(&args[1..]),
        "batch" => return batch(args[1..].to_vec()),
        "build" => return build(&args[1..]),
        _ => {}
    }
    let options = match parse(args) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let Some(lab) = course::find(&options.lab) else {
        return usage_error(&format!(
            "'{}' is not a lab; the labs are:\n{}",
            options.lab,
            lab_list()
        ));
    };
    let names: Vec<&str> = lab.checks().map(|c| c.name).collect();
    if let Some(unknown) = options.only.iter().find(|o| !names.contains(&o.as_str())) {
        return usage_error(&format!(
            "{} has no check '{unknown}'; its checks: {}",
            lab.name,
            names.join(", ")
        ));
    }
    let bin = match resolve_bin(&options.bin) {
        Ok(bin) => bin,
        Err(err) => return usage_error(&err),
    };
    let human = options.format == Format::Human;
    let style = Style::for_stdout();
    if human {
        emit(&LabReport::header(lab.name, &options.bin));
    }
    let mut report = grader::grade(lab, &bin, &options.only, |check| {
        if human {
            emit(&check.styled(options.verbose, style));
        }
    });
    let board = grader::leaderboard::wanted(options.leaderboard)
        .then(|| grader::leaderboard::add(lab, &bin, &mut report));
    match &board {
        Some(line) if !human => eprintln!("{line}"),
        _ => {}
    }
    match options.format {
        Format::Human => {
            emit(&report.footer());
            board.iter().for_each(|line| emit(line));
        }
        Format::Json => emit(&serde_json::to_string_pretty(&report.json()).unwrap()),
        Format::Gradescope => {
            emit(&serde_json::to_string_pretty(&report.gradescope(&options.hidden)).unwrap())
        }
        Format::Classroom => emit(&platforms::classroom::results(&report)),
        Format::PrairieLearn => emit(&platforms::prairielearn::results(&report)),
        Format::Autolab => emit(&platforms::autolab::results(&report)),
    }
    // Classroom: the points are in the result; a failing step would stop
    // the workflow before the reporter.
    if report.all_passed() || options.format == Format::Classroom {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `grader hint LAB [CHECK]`: what to try when a check fails.
fn hint(args: &[String]) -> ExitCode {
    let (Some(name), rest) = (args.first(), args.get(1..).unwrap_or_default()) else {
        return usage_error("usage: grader hint <lab> [CHECK]");
    };
    let Some(lab) = course::find(name) else {
        return usage_error(&format!(
            "unknown lab '{name}'; the labs are:\n{}",
            lab_list()
        ));
    };
    let checks: Vec<&grader::check::Check> = match rest.first() {
        None => lab.checks().collect(),
        Some(wanted) => match lab.check(wanted) {
            Some(check) => vec![check],
            None => {
                let names: Vec<&str> = lab.checks().map(|c| c.name).collect();
                return usage_error(&format!(
                    "{} has no check '{wanted}'; its checks: {}",
                    lab.name,
                    names.join(", ")
                ));
            }
        },
    };
    let mut text = Vec::new();
    for check in checks {
        let hint = course::hint(lab, check).unwrap_or_else(|| "(no hint written yet)".to_string());
        text.push(format!(
            "{} ({} points): {}\n{}",
            check.name,
            check.points,
            check.title,
            grader::harness::text::indent(&hint, "    ")
        ));
    }
    emit(&text.join("\n\n"));
    ExitCode::SUCCESS
}

/// `grader all --dir DIR [--suffix S] [--not-built A,B]`: every lab, then a
/// summary table. A lab listed in `--not-built` (its build failed) or whose
/// program is missing scores 0.
fn all(args: Vec<String>) -> ExitCode {
    let mut dir = None;
    let mut suffix = String::new();
    let mut not_built = Vec::new();
    let mut only_labs: Vec<String> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match arg.as_str() {
            "--dir" => dir = Some(value()),
            "--suffix" => suffix = value(),
            "--not-built" => not_built.extend(
                value()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            "--labs" => only_labs.extend(
                value()
                    .split([',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            other => return usage_error(&format!("grader all: unexpected argument '{other}'")),
        }
    }
    let Some(dir) = dir else {
        return usage_error("grader all needs --dir DIR (where the programs are)");
    };
    let style = Style::for_stdout();
    let mut rows = Vec::new();
    if let Some(unknown) = only_labs.iter().find(|l| course::find(l).is_none()) {
        return usage_error(&format!(
            "unknown lab '{unknown}'; the labs are:\n{}",
            lab_list()
        ));
    }
    let chosen = LABS
        .iter()
        .filter(|lab| only_labs.is_empty() || only_labs.iter().any(|l| l == lab.name));
    for lab in chosen {
        let max: u32 = lab.max_points();
        let path = std::path::Path::new(&dir).join(format!("{}{suffix}", lab.name));
        emit("");
        if not_built.iter().any(|n| n == lab.name) {
            emit(&format!(
                "== {}: does not compile (the compiler's messages are above): 0/{max} ==",
                lab.name
            ));
            rows.push((lab.name, 0, max, 0.0, "does not compile"));
            continue;
        }
        if !path.exists() {
            emit(&format!(
                "== {}: no program at {}: 0/{max} ==",
                lab.name,
                path.display()
            ));
            rows.push((lab.name, 0, max, 0.0, "no program"));
            continue;
        }
        emit(&LabReport::header(lab.name, &path.display().to_string()));
        let report = grader::grade(lab, &path, &[], |check| {
            emit(&check.styled(false, style));
        });
        emit(&report.footer());
        let note = if report.all_passed() {
            ""
        } else {
            "not all passed"
        };
        rows.push((lab.name, report.score(), max, report.seconds(), note));
    }
    emit("");
    emit(&summary(&rows, style));
    if rows.iter().all(|(_, score, max, _, _)| score == max) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn summary(rows: &[(&str, u32, u32, f64, &str)], style: Style) -> String {
    let mut lines = vec![style.paint("1", "== summary ==")];
    lines.push(format!("{:<18} {:>9} {:>8}", "lab", "points", "time"));
    for (lab, score, max, seconds, note) in rows {
        let points = format!("{score}/{max}");
        let points = if score == max {
            style.paint("32", &format!("{points:>9}"))
        } else {
            style.paint("31", &format!("{points:>9}"))
        };
        let note = if note.is_empty() {
            String::new()
        } else {
            format!("  ({note})")
        };
        lines.push(format!("{lab:<18} {points} {seconds:>7.1}s{note}"));
    }
    let score: u32 = rows.iter().map(|r| r.1).sum();
    let max: u32 = rows.iter().map(|r| r.2).sum();
    let seconds: f64 = rows.iter().map(|r| r.3).sum();
    lines.push(format!(
        "{:<18} {:>9} {seconds:>7.1}s",
        "total",
        format!("{score}/{max}")
    ));
    lines.join("\n")
}

/// `grader watch LAB --src DIR --bin PATH [--only A,B] -- BUILD...`
fn watch(args: Vec<String>) -> ExitCode {
    let (ours, build) = match args.iter().position(|a| a == "--") {
        Some(at) => (args[..at].to_vec(), args[at + 1..].to_vec()),
        None => (args, Vec::new()),
    };
    let mut lab = None;
    let mut src = None;
    let mut bin = None;
    let mut only = Vec::new();
    let mut rest = ours.into_iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--src" => src = rest.next(),
            "--bin" => bin = rest.next(),
            "--only" => only.extend(
                rest.next()
                    .unwrap_or_default()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            ),
            _ if lab.is_none() && !arg.starts_with('-') => lab = Some(arg),
            other => return usage_error(&format!("grader watch: unexpected argument '{other}'")),
        }
    }
    let (Some(lab), Some(src), Some(bin)) = (lab, src, bin) else {
        return usage_error("grader watch needs LAB, --src DIR, --bin PATH and -- BUILD COMMAND");
    };
    if build.is_empty() {
        return usage_error("grader watch needs a build command after --");
    }
    let Some(lab) = course::find(&lab) else {
        return usage_error(&format!(
            "unknown lab '{lab}'; the labs are:\n{}",
            lab_list()
        ));
    };
    let watch = grader::watch::Watch {
        lab,
        src: src.into(),
        bin: bin.into(),
        build,
        only,
    };
    match grader::watch::run(&watch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("grader watch: {err}");
            ExitCode::from(1)
        }
    }
}

/// `grader zero LAB WHY`: Gradescope's results.json for a submission that
/// could not be graded (WHY: a message, or @FILE to read it from a file).
fn zero(args: &[String]) -> ExitCode {
    let usage =
        "usage: grader zero <lab> WHY|@FILE [--format gradescope|classroom|prairielearn|autolab]";
    let (Some(name), Some(why)) = (args.first(), args.get(1)) else {
        return usage_error(usage);
    };
    let format = match &args[2..] {
        [] => "gradescope",
        [flag, format] if flag == "--format" => format.as_str(),
        _ => return usage_error(usage),
    };
    let Some(lab) = course::find(name) else {
        return usage_error(&format!("unknown lab '{name}'"));
    };
    let why = match why.strip_prefix('@') {
        Some(path) => std::fs::read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|err| format!("(cannot read {path}: {err})")),
        None => why.clone(),
    };
    // Keep the tail: a compiler's last messages are its summary.
    let why = if why.len() > 20_000 {
        let mut cut = why.len() - 20_000;
        while !why.is_char_boundary(cut) {
            cut += 1;
        }
        format!("...{}", &why[cut..])
    } else {
        why
    };
    let why = why.trim_end();
    let text = match format {
        "gradescope" => {
            let checks = lab.checks().collect::<Vec<_>>();
            let json = grader::report::gradescope_zero(lab.name, &checks, why);
            serde_json::to_string_pretty(&json).unwrap()
        }
        "classroom" => platforms::classroom::zero(lab, why),
        "prairielearn" => platforms::prairielearn::zero(lab, why),
        "autolab" => platforms::autolab::zero(lab, why),
        other => return usage_error(&format!("unknown format '{other}'\n{usage}")),
    };
    emit(&text);
    ExitCode::SUCCESS
}

/// `grader batch LAB DIR [--out CSV] [--jobs N] [--only A,B] [--workspace W]`
fn batch(args: Vec<String>) -> ExitCode {
    let mut positional = Vec::new();
    let mut out = None;
    let mut jobs = 1;
    let mut only = Vec::new();
    let mut workspace = PathBuf::from(".");
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |what: &str| {
            args.next()
                .ok_or_else(|| usage_error(&format!("{what} needs a value")))
        };
        match arg.as_str() {
            "--out" => match value("--out") {
                Ok(v) => out = Some(PathBuf::from(v)),
                Err(code) => return code,
            },
            "--jobs" => match value("--jobs").map(|v| v.parse::<usize>()) {
                Ok(Ok(n)) if n >= 1 => jobs = n,
                Ok(_) => return usage_error("--jobs needs a number of at least 1"),
                Err(code) => return code,
            },
            "--only" => match value("--only") {
                Ok(v) => only.extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_string)),
                Err(code) => return code,
            },
            "--workspace" => match value("--workspace") {
                Ok(v) => workspace = PathBuf::from(v),
                Err(code) => return code,
            },
            flag if flag.starts_with('-') => {
                return usage_error(&format!("grader batch: unknown option '{flag}'"));
            }
            _ => positional.push(arg),
        }
    }
    let [lab, dir] = positional.as_slice() else {
        return usage_error("usage: grader batch <lab> DIR [--out CSV] [--jobs N] [--only C,...]");
    };
    let Some(lab) = course::find(lab) else {
        return usage_error(&format!(
            "unknown lab '{lab}'; the labs are:\n{}",
            lab_list()
        ));
    };
    let names: Vec<&str> = lab.checks().map(|c| c.name).collect();
    if let Some(unknown) = only.iter().find(|o| !names.contains(&o.as_str())) {
        return usage_error(&format!("{} has no check '{unknown}'", lab.name));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let batch = grader::batch::Batch {
        out: out.unwrap_or_else(|| PathBuf::from(format!("{}-grades.csv", lab.name))),
        scratch: target.join("batch").join(lab.name),
        lab,
        dir: PathBuf::from(dir),
        workspace,
        only,
        jobs,
    };
    match grader::batch::run(&batch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("grader batch: {err}");
            ExitCode::from(1)
        }
    }
}

/// `grader build LAB SUBMISSION --workspace W --scratch S --out FILE`: builds
/// a submission's sources as `grader batch` does (only its `.rs` files, the
/// lab's own manifest, unprivileged as root) and copies the program to
/// FILE. Exit status 1 with the reason on stdout when it cannot be built.
fn build(args: &[String]) -> ExitCode {
    let mut positional = Vec::new();
    let (mut workspace, mut scratch, mut out) = (None, None, None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--workspace" => workspace = args.next().map(PathBuf::from),
            "--scratch" => scratch = args.next().map(PathBuf::from),
            "--out" => out = args.next().map(PathBuf::from),
            flag if flag.starts_with('-') => {
                return usage_error(&format!("grader build: unknown option '{flag}'"));
            }
            _ => positional.push(arg.clone()),
        }
    }
    let ([lab, submission], Some(workspace), Some(scratch), Some(out)) =
        (positional.as_slice(), workspace, scratch, out)
    else {
        return usage_error(
            "usage: grader build <lab> SUBMISSION --workspace DIR --scratch DIR --out FILE",
        );
    };
    let Some(lab) = course::find(lab) else {
        return usage_error(&format!("unknown lab '{lab}'"));
    };
    let built = grader::submission::Builder::new(lab, &workspace, &scratch)
        .map_err(|why| format!("grader error: cannot set up the build: {why}"))
        .and_then(|builder| builder.build("submission", std::path::Path::new(submission)))
        .and_then(|bin| {
            std::fs::copy(&bin, &out).map(|_| ()).map_err(|err| {
                format!(
                    "grader error: cannot copy the program to {}: {err}",
                    out.display()
                )
            })
        });
    match built {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            emit(&why);
            ExitCode::from(1)
        }
    }
}
