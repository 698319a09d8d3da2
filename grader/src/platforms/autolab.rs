//! Autolab (`--format autolab`): what the autograder prints is the
//! student's feedback, and its very last line is the *autoresult*, the JSON
//! Autolab parses for the scores:
//!
//! ```text
//! {"scores": {"basic_echo": 5, "quit": 0, ...}, "scoreboard": [5, 1234.5, 0.8]}
//! ```
//!
//! - `scores`: one problem per check, named as the check, worth its points.
//!   The instructor defines the same problems in Autolab (`make autolab`
//!   writes their list); a score for a problem Autolab does not know is
//!   logged but not posted.
//! - `scoreboard`: always present, `[total, leaderboard values...]`. Autolab
//!   ignores it unless the instructor gives the assessment a custom
//!   scoreboard (a column spec); then it takes this array as the row, and a
//!   row without one is an error. So the total comes first (a submission
//!   without leaderboard values still ranks by its score), and the
//!   leaderboard's values, when it ran, follow in the order the leaderboard
//!   gives them, the same for every submission of a lab.

use crate::check::Lab;
use crate::report::{Entry, LabReport};
use serde_json::{Map, Value, json};

/// What the grader prints for `--format autolab`: the checklist as the
/// human report has it (plain: Autolab shows text as it is), then the
/// autoresult line.
pub fn results(report: &LabReport) -> String {
    let mut lines = vec![LabReport::header(&report.lab, "your handin")];
    lines.extend(report.checks.iter().map(|check| check.human(false)));
    lines.push(report.footer());
    if !report.leaderboard.is_empty() {
        lines.push(leaderboard(&report.leaderboard));
    }
    let scores = report
        .checks
        .iter()
        .map(|check| (check.name.clone(), json!(check.points)));
    let mut scoreboard = vec![json!(report.score())];
    scoreboard.extend(report.leaderboard.iter().map(|entry| json!(entry.value)));
    lines.push(autoresult(scores, scoreboard));
    lines.join("\n")
}

/// What it prints for a submission that could not be graded (`why`: the
/// compiler's messages, the reason it was refused): the reason, then every
/// check at 0.
pub fn zero(lab: &Lab, why: &str) -> String {
    let max = lab.max_points();
    let names: Vec<&str> = lab.checks().map(|check| check.name).collect();
    let scores = names.iter().map(|name| (name.to_string(), json!(0)));
    [
        format!("{}: 0/{max}: {why}", lab.name),
        format!("not run: {} (nothing was graded)", names.join(", ")),
        autoresult(scores, vec![json!(0)]),
    ]
    .join("\n")
}

/// The leaderboard's measurements, for the student to read: they are on
/// the scoreboard, not in the score.
fn leaderboard(entries: &[Entry]) -> String {
    let values: Vec<String> = entries
        .iter()
        .map(|entry| format!("{} {}", entry.name, entry.value))
        .collect();
    format!("leaderboard (not part of the score): {}", values.join(", "))
}

/// The one-line JSON Autolab reads from the last line of the output.
fn autoresult(scores: impl Iterator<Item = (String, Value)>, scoreboard: Vec<Value>) -> String {
    let scores: Map<String, Value> = scores.collect();
    json!({"scores": scores, "scoreboard": scoreboard}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Order, Status, sample_check};

    fn report(leaderboard: Vec<Entry>) -> LabReport {
        let check = |name, status, points, max| {
            sample_check(name, status, points, max, "sent \"hi\\n\", got nothing")
        };
        LabReport {
            lab: "poll_echo".into(),
            bin: "/tmp/x/poll_echo".into(),
            checks: vec![
                check("basic_echo", Status::Pass, 5, 5),
                check("quit", Status::Fail, 0, 6),
            ],
            leaderboard,
        }
    }

    fn last_line(text: &str) -> Value {
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    }

    #[test]
    fn the_feedback_is_the_checklist_and_the_last_line_the_scores() {
        let text = results(&report(Vec::new()));
        assert!(text.contains("quit                   FAIL"), "{text}");
        assert!(text.contains("got nothing") && text.contains("hint: look closer"));
        assert!(text.contains("Score: 5/11"), "{text}");
        assert!(!text.contains('\x1b'), "no colour: {text:?}");
        assert_eq!(
            last_line(&text),
            json!({"scores": {"basic_echo": 5, "quit": 0}, "scoreboard": [5]})
        );
    }

    #[test]
    fn the_leaderboard_follows_the_total_on_the_scoreboard() {
        let entries = vec![
            Entry {
                name: "round trips/s".into(),
                value: 41000.5,
                order: Order::Descending,
            },
            Entry {
                name: "p99 ms".into(),
                value: 0.75,
                order: Order::Ascending,
            },
        ];
        let text = results(&report(entries));
        assert_eq!(last_line(&text)["scoreboard"], json!([5, 41000.5, 0.75]));
        assert!(text.contains("leaderboard (not part of the score): round trips/s 41000.5"));
    }

    #[test]
    fn a_zero_gives_the_reason_and_every_check_of_the_lab() {
        let lab = crate::course::find("select_telnet").unwrap();
        let text = zero(lab, "does not compile; the compiler said:\n\nerror[E0308]");
        assert!(
            text.starts_with("select_telnet: 0/100: does not compile"),
            "{text}"
        );
        let result = last_line(&text);
        let scores = result["scores"].as_object().unwrap();
        let names: Vec<&str> = lab.checks().map(|c| c.name).collect();
        assert_eq!(scores.keys().count(), names.len());
        assert!(names.iter().all(|n| scores[*n] == 0), "{result}");
        assert_eq!(result["scoreboard"], json!([0]));
    }
}
