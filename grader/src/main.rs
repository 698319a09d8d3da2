//! `grader <lab> --bin PATH [--only CHECK[,CHECK...]] [--format human|json|gradescope] [--verbose]`
//! `grader --list [LAB]`
//!
//! Exit status: 0 when every check passed, 1 when any did not, 2 for a usage
//! error (unknown lab or check, missing program).

use grader::labs::{self, COURSE};
use grader::process::resolve_bin;
use grader::report::LabReport;
use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "usage: grader <lab> --bin PATH [--only CHECK[,CHECK...]] [--format human|json|gradescope] [--verbose]
       grader --list [LAB]";

#[derive(PartialEq)]
enum Format {
    Human,
    Json,
    Gradescope,
}

struct Options {
    lab: String,
    bin: String,
    only: Vec<String>,
    format: Format,
    verbose: bool,
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("grader: {message}\n{USAGE}");
    ExitCode::from(2)
}

fn lab_list() -> String {
    let graded: Vec<&str> = labs::all().iter().map(|lab| lab.name).collect();
    COURSE
        .iter()
        .map(|(name, summary)| {
            let state = if graded.contains(name) {
                ""
            } else {
                " (not gradable yet)"
            };
            format!("  {name:<18} {summary}{state}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn list(lab: Option<&str>) -> ExitCode {
    match lab {
        None => {
            println!("labs:\n{}", lab_list());
            ExitCode::SUCCESS
        }
        Some(name) => match labs::find(name) {
            None => usage_error(&format!(
                "unknown lab '{name}'; the labs are:\n{}",
                lab_list()
            )),
            Some(lab) => {
                let max: u32 = lab.checks.iter().map(|c| c.points).sum();
                println!("{} ({} points): {}", lab.name, max, lab.summary);
                for check in &lab.checks {
                    println!(
                        "  {:<22} {:>3}  {}",
                        check.name, check.points, check.description
                    );
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
                    other => return Err(usage_error(&format!("unknown format '{other}'"))),
                }
            }
            "-v" | "--verbose" => verbose = true,
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

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1).collect()) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let Some(lab) = labs::find(&options.lab) else {
        let known = COURSE.iter().any(|(name, _)| *name == options.lab);
        let why = if known {
            "has no checks yet"
        } else {
            "is not a lab"
        };
        return usage_error(&format!(
            "'{}' {why}; the labs are:\n{}",
            options.lab,
            lab_list()
        ));
    };
    let names: Vec<&str> = lab.checks.iter().map(|c| c.name).collect();
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
    if human {
        emit(&LabReport::header(lab.name, &options.bin));
    }
    let report = grader::grade(&lab, &bin, &options.only, |check| {
        if human {
            emit(&check.human(options.verbose));
        }
    });
    match options.format {
        Format::Human => emit(&report.footer()),
        Format::Json => emit(&serde_json::to_string_pretty(&report.json()).unwrap()),
        Format::Gradescope => emit(&serde_json::to_string_pretty(&report.gradescope()).unwrap()),
    }
    if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
