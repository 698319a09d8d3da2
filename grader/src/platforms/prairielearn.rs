//! PrairieLearn's external grading results (`/grade/results/results.json`):
//! `score` is a fraction in [0, 1], and `tests` (one per check, with its
//! points) is what the `<pl-external-grader-results>` element shows the
//! student: each check's message and hint, the failure's transcript.
//!
//! `gradable` is always true: a submission that does not compile, or that
//! was refused (a build script, another manifest), is a graded attempt
//! worth 0, as on Gradescope, with the reason as its message.
//! (`"gradable": false` would mark it "invalid, not gradable" and not count
//! the attempt: PrairieLearn means it for answers in the wrong format, not
//! for programs that fail.)

use crate::check::Lab;
use crate::report::{LabReport, Status};
use serde_json::{Value, json};

/// What the grader prints for `--format prairielearn`.
pub fn results(report: &LabReport) -> String {
    let max = report.max_score();
    let json = json!({
        "gradable": true,
        "score": fraction(report.score(), max),
        "message": format!("{}: {}", report.lab, report.score_line()),
        "output": output(report),
        "tests": report.checks.iter().map(|c| {
            let mut message = c.message.clone();
            if c.status == Status::Skip {
                message = format!("SKIPPED (worth 0 points until it can run): {message}");
            }
            let mut output = Vec::new();
            if c.status != Status::Pass && let Some(hint) = &c.hint {
                output.push(format!("hint: {hint}"));
            }
            if c.flaky {
                output.push("flaky: it failed once, then passed when run again".to_string());
            }
            output.extend(c.notes.iter().map(|n| format!("measured: {n}")));
            test(&c.name, &c.description, c.points, c.max, &message, &output.join("\n"))
        }).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&json).unwrap()
}

/// The checklist as the terminal shows it, then the leaderboard's
/// measurement if it ran (PrairieLearn has no leaderboard to put it in).
fn output(report: &LabReport) -> String {
    let mut lines: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.never_started())
        .map(|c| c.human(false))
        .chain([report.footer()])
        .collect();
    if !report.leaderboard.is_empty() {
        let entries: Vec<String> = report
            .leaderboard
            .iter()
            .map(|e| format!("{} {}", e.name, e.value))
            .collect();
        lines.push(format!(
            "leaderboard (not part of the score): {}",
            entries.join(", ")
        ));
    }
    lines.join("\n")
}

/// What it prints for a submission that could not be graded (`why`: the
/// compiler's messages, or why it was refused): 0, every check not run.
pub fn zero(lab: &Lab, why: &str) -> String {
    let max = lab.max_points();
    let first = why.lines().next().unwrap_or("not graded");
    let json = json!({
        "gradable": true,
        "score": 0.0,
        "message": format!("{}: 0/{max}: {first}", lab.name),
        "output": why,
        "tests": lab.checks().map(|c| {
            test(c.name, c.title, 0, c.points, &format!("not run: {first}"), "")
        }).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&json).unwrap()
}

fn test(
    name: &str,
    description: &str,
    points: u32,
    max: u32,
    message: &str,
    output: &str,
) -> Value {
    json!({
        "name": name,
        "description": description,
        "points": points,
        "max_points": max,
        "message": message,
        "output": output,
    })
}

/// `score / max` in [0, 1] (0 when there is nothing to score).
fn fraction(score: u32, max: u32) -> f64 {
    if max == 0 {
        0.0
    } else {
        f64::from(score) / f64::from(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CheckReport, sample_check};

    fn check(name: &str, status: Status, points: u32, max: u32) -> CheckReport {
        sample_check(name, status, points, max, "sent \"hi\\n\", got nothing")
    }

    #[test]
    fn a_report_is_a_fraction_with_one_test_per_check() {
        let report = LabReport {
            lab: "poll_echo".into(),
            bin: "x".into(),
            checks: vec![
                check("basic_echo", Status::Pass, 5, 5),
                check("quit", Status::Fail, 0, 6),
                check("scale", Status::Skip, 0, 9),
            ],
            leaderboard: Vec::new(),
        };
        let json: Value = serde_json::from_str(&results(&report)).unwrap();
        assert_eq!(json["gradable"], true);
        assert_eq!(json["score"], 0.25);
        assert_eq!(
            json["message"],
            "poll_echo: Score: 5/20  (not passed: quit, scale)"
        );
        let tests = json["tests"].as_array().unwrap();
        assert_eq!(tests.len(), 3);
        assert_eq!(tests[1]["points"], 0);
        assert_eq!(tests[1]["max_points"], 6);
        assert_eq!(tests[1]["message"], "sent \"hi\\n\", got nothing");
        assert_eq!(
            tests[1]["output"],
            "hint: look closer\nmeasured: cpu 0.01 s"
        );
        assert_eq!(tests[0]["output"], "measured: cpu 0.01 s");
        assert!(tests[2]["message"].as_str().unwrap().starts_with("SKIPPED"));
        assert!(json["output"].as_str().unwrap().contains("quit"));
        assert!(!json["output"].as_str().unwrap().contains("leaderboard"));
    }

    #[test]
    fn the_leaderboard_measurement_is_shown_in_the_output() {
        use crate::report::{Entry, Order};
        let report = LabReport {
            lab: "poll_echo".into(),
            bin: "x".into(),
            checks: vec![check("basic_echo", Status::Pass, 5, 5)],
            leaderboard: vec![
                Entry {
                    name: "round trips/s".into(),
                    value: 41000.0,
                    order: Order::Descending,
                },
                Entry {
                    name: "p99 latency (ms)".into(),
                    value: 2.25,
                    order: Order::Ascending,
                },
            ],
        };
        let json: Value = serde_json::from_str(&results(&report)).unwrap();
        assert_eq!(json["score"], 1.0);
        assert!(
            json["output"].as_str().unwrap().ends_with(
                "leaderboard (not part of the score): round trips/s 41000, p99 latency (ms) 2.25"
            ),
            "{json:#}"
        );
    }

    #[test]
    fn a_submission_not_graded_is_zero_with_the_reason() {
        let lab = crate::course::find("poll_echo").unwrap();
        let why = "does not compile; the compiler said:\n\nerror[E0308]: mismatched types";
        let json: Value = serde_json::from_str(&zero(lab, why)).unwrap();
        assert_eq!(json["gradable"], true);
        assert_eq!(json["score"], 0.0);
        assert_eq!(json["output"], why);
        let tests = json["tests"].as_array().unwrap();
        assert_eq!(tests.len(), lab.checks().count());
        assert!(tests.iter().all(|t| t["points"] == 0));
        let max: u64 = tests
            .iter()
            .map(|t| t["max_points"].as_u64().unwrap())
            .sum();
        assert_eq!(max, u64::from(lab.max_points()));
        assert_eq!(
            tests[0]["message"],
            "not run: does not compile; the compiler said:"
        );
    }
}
