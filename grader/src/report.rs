//! Reports: the human checklist, a stable JSON format, Gradescope's results.json.

use crate::check::Check;
use crate::harness::text::indent;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "OK",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }

    fn json(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// How every check after the first begins when the program never started
/// (the first carries the start failure): the human report shows them as
/// one line ([`LabReport::footer`]), the other formats one entry each.
pub const NEVER_STARTED: &str = "not run: the program never started";

#[derive(Clone, Debug)]
pub struct CheckReport {
    pub name: String,
    pub description: String,
    pub status: Status,
    pub points: u32,
    pub max: u32,
    pub seconds: f64,
    /// Why it failed or was skipped; empty on a pass.
    pub message: String,
    /// Measurements, shown with `--verbose`.
    pub notes: Vec<String>,
    /// What to try when this check fails (the `hints.txt` of its suite).
    pub hint: Option<String>,
    /// The check failed, was run again and passed: the program is flaky.
    pub flaky: bool,
}

/// How the human report looks: plain, or coloured for a terminal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Style {
    #[default]
    Plain,
    Colour,
}

impl Style {
    /// Colour on a terminal, unless NO_COLOR is set (https://no-color.org).
    pub fn for_stdout() -> Style {
        use std::io::IsTerminal;
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        if std::io::stdout().is_terminal() && !no_colour {
            Style::Colour
        } else {
            Style::Plain
        }
    }

    /// `text` in an ANSI colour (`code`: 31 red, 32 green, 33 yellow, 2 dim, 1 bold).
    pub fn paint(self, code: &str, text: &str) -> String {
        match self {
            Style::Plain => text.to_string(),
            Style::Colour => format!("\x1b[{code}m{text}\x1b[0m"),
        }
    }

    /// The first difference between « » (see `transcript::first_difference`):
    /// in reverse video on a terminal, the marks kept when plain.
    pub fn marks(self, text: &str) -> String {
        use crate::harness::text::{MARK_END, MARK_START};
        match self {
            Style::Plain => text.to_string(),
            Style::Colour => text
                .replace(MARK_START, "\x1b[1;7m")
                .replace(MARK_END, "\x1b[0m"),
        }
    }

    fn status(self, status: Status) -> String {
        let word = format!("{:<5}", status.word());
        let code = match status {
            Status::Pass => "32",
            Status::Fail => "1;31",
            Status::Skip => "33",
        };
        self.paint(code, &word)
    }
}

impl CheckReport {
    /// `basic_echo          OK     0.3s   5/5`, then the message, indented.
    pub fn human(&self, verbose: bool) -> String {
        self.styled(verbose, Style::Plain)
    }

    /// Not run because the program never started: shown only in the
    /// footer's one line in the human report.
    pub fn never_started(&self) -> bool {
        self.message.starts_with(NEVER_STARTED)
    }

    /// The one line of a check, without its message.
    pub fn line(&self, style: Style) -> String {
        format!(
            "{:<22} {} {:>6.1}s  {:>3}/{}",
            self.name,
            style.status(self.status),
            self.seconds,
            self.points,
            self.max
        )
    }

    /// [`CheckReport::human`], coloured if `style` says so.
    pub fn styled(&self, verbose: bool, style: Style) -> String {
        let mut text = self.line(style);
        if verbose {
            text += &format!("\n{}", indent(&self.description, "      "));
        }
        if !self.message.is_empty() {
            text += &format!("\n{}", indent(&style.marks(&self.message), "    "));
        }
        if self.status == Status::Fail
            && let Some(hint) = &self.hint
        {
            let hint = style.paint("36", &format!("hint: {hint}"));
            text += &format!("\n{}", indent(&hint, "    "));
        }
        if verbose && !self.notes.is_empty() {
            text += &format!("\n{}", indent(&self.notes.join("\n"), "      measured: "));
        }
        text
    }
}

#[derive(Clone, Debug)]
pub struct LabReport {
    pub lab: String,
    pub bin: String,
    pub checks: Vec<CheckReport>,
    /// Opt-in measurements of a program that passed every check (round
    /// trips per second, p99), for a platform's leaderboard: never part of
    /// the score. Empty unless asked for.
    pub leaderboard: Vec<Entry>,
}

/// One leaderboard column: its name, the measured value, and which way is
/// better.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub name: String,
    pub value: f64,
    pub order: Order,
}

impl Entry {
    /// One of Gradescope's `leaderboard` quantities (its `order` defaults to
    /// `desc`; it is always written).
    pub fn json(&self) -> Value {
        json!({
            "name": self.name,
            "value": self.value,
            "order": match self.order {
                Order::Descending => "desc",
                Order::Ascending => "asc",
            },
        })
    }

    fn from_json(value: &Value) -> Option<Entry> {
        Some(Entry {
            name: value["name"].as_str()?.to_string(),
            value: value["value"].as_f64()?,
            order: match value["order"].as_str() {
                Some("asc") => Order::Ascending,
                _ => Order::Descending,
            },
        })
    }
}

/// Which way a leaderboard column ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Bigger is better (round trips per second).
    Descending,
    /// Smaller is better (a latency).
    Ascending,
}

impl LabReport {
    pub fn score(&self) -> u32 {
        self.checks.iter().map(|c| c.points).sum()
    }

    pub fn max_score(&self) -> u32 {
        self.checks.iter().map(|c| c.max).sum()
    }

    pub fn all_passed(&self) -> bool {
        self.checks.iter().all(|c| c.status == Status::Pass)
    }

    pub fn seconds(&self) -> f64 {
        self.checks.iter().map(|c| c.seconds).sum()
    }

    pub fn header(lab: &str, bin: &str) -> String {
        format!("== grading {lab}: {bin} ==")
    }

    /// The last of the human report: the checks not run because the
    /// program never started, in one line, then the score.
    pub fn footer(&self) -> String {
        let never: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.never_started())
            .map(|c| c.name.as_str())
            .collect();
        if never.is_empty() {
            return self.score_line();
        }
        format!(
            "not run: {} (the program never started)\n{}",
            never.join(", "),
            self.score_line()
        )
    }

    /// `Score: 5/19  (not passed: quit, scale)`.
    pub fn score_line(&self) -> String {
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.status != Status::Pass)
            .map(|c| c.name.as_str())
            .collect();
        let mut text = format!("Score: {}/{}", self.score(), self.max_score());
        let skipped = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Skip)
            .count();
        if skipped == self.checks.len() && skipped > 0 {
            text += "  (every check skipped: this machine cannot run them; the first one says why)";
        } else if failed.len() > 6 {
            text += &format!(
                "  ({} of {} checks not passed)",
                failed.len(),
                self.checks.len()
            );
        } else if !failed.is_empty() {
            text += &format!("  (not passed: {})", failed.join(", "));
        }
        text
    }

    /// The stable machine-readable format (`--format json`).
    pub fn json(&self) -> Value {
        let mut report = json!({
            "lab": self.lab,
            "bin": self.bin,
            "score": self.score(),
            "max_score": self.max_score(),
            "passed": self.all_passed(),
            "seconds": round(self.seconds()),
            "checks": self.checks.iter().map(|c| json!({
                "name": c.name,
                "description": c.description,
                "status": c.status.json(),
                "points": c.points,
                "max_points": c.max,
                "seconds": round(c.seconds),
                "message": c.message,
                "notes": c.notes,
                "hint": c.hint,
                "flaky": c.flaky,
            })).collect::<Vec<_>>(),
        });
        self.add_leaderboard(&mut report);
        report
    }

    /// The report back from its [`LabReport::json`] (a grading run in
    /// another process); `None` if it is not one.
    pub fn from_json(value: &Value) -> Option<LabReport> {
        let text = |v: &Value| v.as_str().map(str::to_string);
        let checks = value["checks"].as_array()?;
        let checks = checks
            .iter()
            .map(|c| {
                Some(CheckReport {
                    name: text(&c["name"])?,
                    description: text(&c["description"])?,
                    status: match c["status"].as_str()? {
                        "pass" => Status::Pass,
                        "skip" => Status::Skip,
                        _ => Status::Fail,
                    },
                    points: c["points"].as_u64()? as u32,
                    max: c["max_points"].as_u64()? as u32,
                    seconds: c["seconds"].as_f64()?,
                    message: text(&c["message"])?,
                    notes: c["notes"].as_array()?.iter().filter_map(text).collect(),
                    hint: text(&c["hint"]),
                    flaky: c["flaky"].as_bool()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(LabReport {
            lab: text(&value["lab"])?,
            bin: text(&value["bin"])?,
            checks,
            leaderboard: value["leaderboard"]
                .as_array()
                .map(|entries| entries.iter().filter_map(Entry::from_json).collect())
                .unwrap_or_default(),
        })
    }

    /// Gradescope's results.json: one test per check. Checks named in
    /// `hidden` (instructor-only) are shown to students only once the
    /// instructor publishes the grades.
    pub fn gradescope(&self, hidden: &[String]) -> Value {
        let mut results = json!({
            "score": self.score(),
            "max_score": self.max_score(),
            "execution_time": self.seconds().round() as u64,
            "output": format!("{}: {}", self.lab, self.score_line()),
            "tests": self.checks.iter().map(|c| {
                let mut output = c.description.clone();
                if c.status == Status::Skip {
                    output += "\nSKIPPED (worth 0 points until it can run):";
                }
                if !c.message.is_empty() {
                    output += &format!("\n\n{}", c.message);
                }
                if c.status != Status::Pass && let Some(hint) = &c.hint {
                    output += &format!("\n\nhint: {hint}");
                }
                let visibility = if hidden.contains(&c.name) { "after_published" } else { "visible" };
                json!({
                    "name": c.name,
                    "score": c.points,
                    "max_score": c.max,
                    "status": if c.status == Status::Pass { "passed" } else { "failed" },
                    "visibility": visibility,
                    "output": output,
                })
            }).collect::<Vec<_>>(),
        });
        self.add_leaderboard(&mut results);
        results
    }

    /// The leaderboard's entries under `leaderboard`, when there are any
    /// (Gradescope's format, which `--format json` shares).
    fn add_leaderboard(&self, results: &mut Value) {
        if !self.leaderboard.is_empty() {
            results["leaderboard"] = self.leaderboard.iter().map(Entry::json).collect();
        }
    }
}

/// Gradescope's results.json for a program that could not be graded at all
/// (it does not compile, or the grader itself failed): every check 0.
pub fn gradescope_zero(lab: &str, checks: &[&Check], why: &str) -> Value {
    let max: u32 = checks.iter().map(|c| c.points).sum();
    json!({
        "score": 0,
        "max_score": max,
        "output": format!("{lab}: 0/{max}: {why}"),
        "tests": checks.iter().map(|c| json!({
            "name": c.name,
            "score": 0,
            "max_score": c.points,
            "status": "failed",
            "output": format!("{}\n\nnot run: {why}", c.title),
        })).collect::<Vec<_>>(),
    })
}

fn round(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// A check's report for the formats' unit tests: `failure` is its message
/// unless it passed.
#[cfg(test)]
pub(crate) fn sample_check(
    name: &str,
    status: Status,
    points: u32,
    max: u32,
    failure: &str,
) -> CheckReport {
    CheckReport {
        name: name.into(),
        description: format!("{name} does things"),
        status,
        points,
        max,
        seconds: 0.25,
        message: if status == Status::Pass {
            String::new()
        } else {
            failure.into()
        },
        notes: vec!["cpu 0.01 s".into()],
        hint: Some("look closer".into()),
        flaky: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> LabReport {
        let check =
            |name, status, points, max| sample_check(name, status, points, max, "it broke\n  here");
        LabReport {
            lab: "poll_echo".into(),
            bin: "target/x".into(),
            checks: vec![
                check("basic_echo", Status::Pass, 5, 5),
                check("quit", Status::Fail, 0, 6),
                check("scale", Status::Skip, 0, 8),
            ],
            leaderboard: Vec::new(),
        }
    }

    #[test]
    fn human_lines_and_total() {
        let r = report();
        assert_eq!(
            r.checks[0].human(false),
            "basic_echo             OK       0.2s    5/5"
        );
        assert_eq!(
            r.checks[1].human(false),
            "quit                   FAIL     0.2s    0/6\n    it broke\n      here\n    hint: look closer"
        );
        assert!(
            r.checks[1]
                .styled(false, Style::Colour)
                .contains("\x1b[1;31mFAIL \x1b[0m")
        );
        assert_eq!(
            Style::Colour.marks("got \"ab«c»d\""),
            "got \"ab\x1b[1;7mc\x1b[0md\""
        );
        assert_eq!(Style::Plain.marks("«c»"), "«c»");
        assert_eq!(r.footer(), "Score: 5/19  (not passed: quit, scale)");
        assert!(!r.all_passed());
        assert!(r.checks[0].human(true).contains("measured: cpu 0.01 s"));
    }

    #[test]
    fn json_formats() {
        let r = report();
        let json = r.json();
        assert_eq!(json["score"], 5);
        assert_eq!(json["max_score"], 19);
        assert_eq!(json["checks"][2]["status"], "skip");
        let gs = r.gradescope(&["scale".to_string()]);
        assert_eq!(gs["tests"][2]["visibility"], "after_published");
        assert_eq!(gs["tests"][0]["visibility"], "visible");
        assert_eq!(gs["score"], 5);
        assert_eq!(gs["tests"][0]["status"], "passed");
        assert_eq!(gs["tests"][2]["status"], "failed");
        assert_eq!(gs["tests"][2]["score"], 0);
        assert_eq!(gs["tests"][1]["max_score"], 6);
        assert!(
            gs["tests"][1]["output"]
                .as_str()
                .unwrap()
                .contains("it broke")
        );
        assert!(gs.get("leaderboard").is_none() && json.get("leaderboard").is_none());
    }

    #[test]
    fn the_leaderboard_is_gradescopes_and_round_trips_through_json() {
        let mut r = report();
        r.leaderboard = vec![
            Entry {
                name: "round trips/s".into(),
                value: 41_000.0,
                order: Order::Descending,
            },
            Entry {
                name: "p99 latency (ms)".into(),
                value: 1.25,
                order: Order::Ascending,
            },
        ];
        let gs = r.gradescope(&[]);
        assert_eq!(
            gs["leaderboard"],
            json!([
                {"name": "round trips/s", "value": 41_000.0, "order": "desc"},
                {"name": "p99 latency (ms)", "value": 1.25, "order": "asc"},
            ])
        );
        // Never part of the score.
        assert_eq!(gs["score"], 5);
        let back = LabReport::from_json(&r.json()).unwrap();
        assert_eq!(back.leaderboard, r.leaderboard);
    }

    #[test]
    fn checks_not_run_because_the_program_never_started_are_one_line() {
        let mut r = report();
        for (check, name) in r.checks.iter_mut().zip(["basic_echo", "quit", "scale"]) {
            check.status = Status::Fail;
            check.points = 0;
            check.message = format!("{NEVER_STARTED} (see `x`)");
            check.name = name.into();
        }
        r.checks[0].message =
            "the program never started properly, so no check was run:\nboom".into();
        assert!(!r.checks[0].never_started() && r.checks[1].never_started());
        assert_eq!(
            r.footer(),
            "not run: quit, scale (the program never started)\nScore: 0/19  (not passed: basic_echo, quit, scale)"
        );
        assert_eq!(r.gradescope(&[])["tests"].as_array().unwrap().len(), 3);
        assert_eq!(
            r.gradescope(&[])["output"],
            "poll_echo: Score: 0/19  (not passed: basic_echo, quit, scale)"
        );
    }
}
