//! GitHub Classroom: the result of one runner step, as
//! `classroom-resources/autograding-grading-reporter@v1` reads it.
//!
//! Each lab is one step of the workflow that `make classroom` writes; the
//! step's output `result` is this JSON in base64, and the reporter step
//! gets it in the environment variable `<STEP ID>_RESULTS`. The reporter
//! sends Classroom the sum of `tests[].score` out of the sum of each
//! runner's `max_score`: one test per check gives partial credit, where the
//! stock command grader gives all or nothing.
//!
//! The field types are the runners' (autograding-command-grader):
//! `max_score` and `score` are numbers, `duration` is in milliseconds,
//! `line_no` 0 and `filename` empty (the reporter prints " - line N" unless
//! it is 0). What the reporter prints in the job's log: `✅ name` or
//! `❌ name` then, if not empty, `test_code` (never `message`), or for a
//! test whose status is `error`, `Error: message`. So a failed check's
//! explanation goes in `test_code` as well as in `message`.

use crate::check::Lab;
use crate::report::{CheckReport, LabReport, Status};
use serde_json::{Value, json};
use std::io::Write;

/// The most a runner's JSON may hold, in bytes: the reporter gets it in an
/// environment variable, in base64 (4/3 as long), and Linux refuses to start
/// a program with a variable over 128 KiB; every lab's is in the same
/// environment. Longer failure messages are cut in the middle.
const MAX_JSON: usize = 48_000;

/// What the grader prints for `--format classroom`; it also writes the
/// step's `result` output when `$GITHUB_OUTPUT` is set.
pub fn results(report: &LabReport) -> String {
    let room = MAX_JSON / (2 * report.checks.len().max(1));
    let tests: Vec<Value> = report
        .checks
        .iter()
        .map(|check| test(&report.lab, check, room))
        .collect();
    let status = if report.all_passed() { "pass" } else { "fail" };
    let rows: Vec<Row> = report
        .checks
        .iter()
        .zip(&tests)
        .map(|(check, test)| Row {
            name: &check.name,
            points: check.points,
            max: check.max,
            why: test["message"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    let summary = summary(&report.lab, &rows);
    publish(
        json!({
            "version": 1,
            "status": status,
            "max_score": report.max_score(),
            "tests": tests,
        }),
        &summary,
    )
}

/// What it prints for a submission that could not be graded (`why`): every
/// check 0, with the status `error`, which the reporter prints as `Error:
/// <message>`. The first check's message has the whole reason, the others
/// refer to it, so that the log shows the compiler's messages once.
pub fn zero(lab: &Lab, why: &str) -> String {
    let room = MAX_JSON / 2;
    let reason = format!("{} was not graded, 0 points: {}", lab.name, cut(why, room));
    let tests: Vec<Value> = lab
        .checks()
        .enumerate()
        .map(|(i, check)| {
            let message = if i == 0 {
                format!("{}: {reason}", check.name)
            } else {
                format!("{}: not run, 0 points (see above)", check.name)
            };
            json!({
                "name": check.name,
                "status": "error",
                "score": 0,
                "message": message,
                "test_code": "",
                "filename": "",
                "line_no": 0,
                "duration": 0,
            })
        })
        .collect();
    let rows: Vec<Row> = lab
        .checks()
        .zip(&tests)
        .map(|(check, test)| Row {
            name: check.name,
            points: 0,
            max: check.points,
            why: test["message"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    let summary = summary(lab.name, &rows);
    publish(
        json!({
            "version": 1,
            "status": "error",
            "max_score": lab.max_points(),
            "tests": tests,
        }),
        &summary,
    )
}

/// A check's line in the run's summary page.
struct Row<'a> {
    name: &'a str,
    points: u32,
    max: u32,
    /// Why it lost points (empty if it did not).
    why: String,
}

/// The lab's part of the workflow run's summary page (Markdown): a table
/// of the checks' points with the first line of why each lost points, then
/// each longer explanation, folded.
fn summary(lab: &str, rows: &[Row]) -> String {
    let total: u32 = rows.iter().map(|r| r.points).sum();
    let max: u32 = rows.iter().map(|r| r.max).sum();
    let mut text =
        format!("### {lab}: {total}/{max}\n\n| check | points | |\n| --- | --- | --- |\n");
    for row in rows {
        let mark = if row.points == row.max { "✅" } else { "❌" };
        let first = row.why.lines().next().unwrap_or_default();
        text += &format!(
            "| {mark} `{}` | {}/{} | {} |\n",
            row.name,
            row.points,
            row.max,
            first.replace('|', "\\|")
        );
    }
    for row in rows.iter().filter(|r| r.why.lines().nth(1).is_some()) {
        text += &format!(
            "\n<details><summary>{}</summary>\n\n````text\n{}\n````\n\n</details>\n",
            row.name,
            row.why.replace("````", "''''")
        );
    }
    text + "\n"
}

/// One check as one test: its points out of its max (the runner's
/// `max_score` is the sum of the tests' maxima), its failure message and
/// hint, and the command that runs it alone.
fn test(lab: &str, check: &CheckReport, room: usize) -> Value {
    let passed = check.status == Status::Pass;
    let mut explained = String::new();
    if check.status == Status::Skip {
        explained += "SKIPPED (worth 0 points until it can run): ";
    }
    explained += &check.message;
    if !passed && let Some(hint) = &check.hint {
        explained += &format!("\n\nhint: {hint}");
    }
    let explained = cut(explained.trim(), room);
    let test_code = if passed {
        String::new()
    } else {
        format!(
            "{}: {}/{}\n{explained}\n\nrun it yourself: make grade LAB={lab} CHECK={}",
            check.description, check.points, check.max, check.name
        )
    };
    json!({
        "name": check.name,
        "status": if passed { "pass" } else { "fail" },
        "score": check.points,
        "message": explained,
        "test_code": test_code,
        "filename": "",
        "line_no": 0,
        "duration": (check.seconds * 1000.0).round() as u64,
    })
}

/// The JSON's text. In a workflow step, also the line `result=<base64>`
/// appended to `$GITHUB_OUTPUT`, which sets the step's output `result`, and
/// `summary` to `$GITHUB_STEP_SUMMARY`, the run's summary page.
fn publish(result: Value, summary: &str) -> String {
    let text = serde_json::to_string(&result).unwrap();
    append(
        "GITHUB_OUTPUT",
        &format!("result={}\n", base64(text.as_bytes())),
    );
    append("GITHUB_STEP_SUMMARY", summary);
    serde_json::to_string_pretty(&result).unwrap()
}

/// Appends `text` to the file named by the variable `var`, if it is set.
/// A file that cannot be written is said on stderr (for `GITHUB_OUTPUT`,
/// the workflow step then writes a zero saying the grader stopped).
fn append(var: &str, text: &str) {
    let Some(path) = std::env::var_os(var) else {
        return;
    };
    let written = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    if let Err(err) = written {
        eprintln!(
            "grader: cannot write to ${var} ({}): {err}",
            std::path::Path::new(&path).display()
        );
    }
}

/// `text`, at most about `room` bytes: its start and its end, with the
/// middle cut and said to be.
fn cut(text: &str, room: usize) -> String {
    if text.len() <= room {
        return text.to_string();
    }
    let boundary = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    let head = boundary(room * 2 / 3);
    let tail = boundary(text.len() - room / 3);
    format!(
        "{}\n[... {} bytes cut: `make grade` shows them all ...]\n{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

/// Standard base64 with padding (RFC 4648 §4), as GitHub's runners and the
/// reporter's `Buffer.from(s, "base64")` read it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64("é\u{1F680}".as_bytes()), "w6nwn5qA");
    }

    #[test]
    fn the_summary_has_a_line_per_check_and_folds_long_explanations() {
        let row = |name, points, why: &str| Row {
            name,
            points,
            max: 5,
            why: why.to_string(),
        };
        let text = summary(
            "poll_echo",
            &[
                row("basic_echo", 5, ""),
                row("quit", 0, "sent a|b\nexpected: c"),
                row("api", 0, "not run"),
            ],
        );
        assert!(text.starts_with("### poll_echo: 5/15\n"), "{text}");
        assert!(text.contains("| ✅ `basic_echo` | 5/5 |  |\n"), "{text}");
        assert!(
            text.contains("| ❌ `quit` | 0/5 | sent a\\|b |\n"),
            "{text}"
        );
        assert!(text.contains("| ❌ `api` | 0/5 | not run |\n"), "{text}");
        assert_eq!(text.matches("<details>").count(), 1, "{text}");
        assert!(text.contains("<summary>quit</summary>"), "{text}");
    }

    #[test]
    fn a_long_message_keeps_its_start_and_end() {
        let text = format!("start {} end", "é".repeat(10_000));
        let short = cut(&text, 900);
        assert!(short.len() < 1000, "{}", short.len());
        assert!(short.starts_with("start ") && short.ends_with(" end"));
        assert!(short.contains("bytes cut"));
        assert_eq!(cut("short", 900), "short");
    }
}
