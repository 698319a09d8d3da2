//! GitHub Classroom, run for real: `make classroom` writes the autograding
//! workflow into a student copy; its YAML parses and has the shape Classroom
//! generates; each lab step's commands (the exact `run:` strings) run here
//! with `$GITHUB_OUTPUT` set, and what they leave in the step's `result` is
//! read as Classroom's reporter reads it (base64 of JSON, from the variable
//! `<ID>_RESULTS`): 0 for a stub, full marks for a correct program, and 0 on
//! every check with the compiler's messages for a lab that does not compile.

mod common;

use common::{copies_target, make, scratch, text};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use yaml_rust2::{Yaml, YamlLoader};

/// The labs of the workflow under test: a stub, a build that fails, a
/// correct program (the fastest full grade).
const LABS: [&str; 3] = ["nonblocking_read", "poll_echo", "select_telnet"];

/// A student copy with the workflow, made once for these tests by `make
/// classroom` (which makes the copy too), its grader built by the
/// workflow's own step. Its `target` is the instructor tests' target
/// directory, so that the builds are shared.
fn copy() -> &'static Path {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    COPY.get_or_init(|| {
        forget_old_copies();
        let copy = scratch("classroom");
        let out = make(
            &common::workspace(),
            &[
                "classroom",
                &format!("DEST={}", copy.display()),
                &format!("LABS={}", LABS.join(" ")),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        std::fs::create_dir_all(copies_target()).unwrap();
        std::os::unix::fs::symlink(copies_target(), copy.join("target")).unwrap();
        let build = step(&workflow(&copy), "Build the grader");
        let ran = run_step(&copy, &build);
        assert!(ran.out.status.success(), "{}", text(&ran.out));
        copy
    })
}

/// Removes the copies of earlier test runs (`classroom-<pid>` of a process
/// that has ended): these tests cannot tell which of them ends last.
fn forget_old_copies() {
    let dir = common::target_dir().join("instructor-tests");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("classroom-")
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn workflow(copy: &Path) -> Yaml {
    let path = copy.join(".github/workflows/classroom.yml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let mut docs = YamlLoader::load_from_str(&yaml)
        .unwrap_or_else(|err| panic!("{} does not parse: {err}\n{yaml}", path.display()));
    assert_eq!(docs.len(), 1, "{yaml}");
    docs.remove(0)
}

fn steps(workflow: &Yaml) -> &[Yaml] {
    workflow["jobs"]["run-autograding-tests"]["steps"]
        .as_vec()
        .expect("the job's steps")
}

fn str_of<'a>(yaml: &'a Yaml, key: &str) -> &'a str {
    yaml[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {yaml:?}"))
}

/// The `run:` of the step called `name`.
fn step(workflow: &Yaml, name: &str) -> String {
    let step = steps(workflow)
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no step '{name}'"));
    str_of(step, "run").to_string()
}

/// The `run:` of the step whose id is `id`.
fn step_with_id(workflow: &Yaml, id: &str) -> String {
    let step = steps(workflow)
        .iter()
        .find(|s| s["id"].as_str() == Some(id))
        .unwrap_or_else(|| panic!("no step with id '{id}'"));
    str_of(step, "run").to_string()
}

/// What a step left: how it ended, the outputs it set, what it added to
/// the run's summary page.
struct Ran {
    out: Output,
    outputs: HashMap<String, String>,
    summary: String,
}

/// Runs a step's `run:` text in the copy as a runner does (`bash -e`, the
/// default shell), with its own `$GITHUB_OUTPUT` and `$GITHUB_STEP_SUMMARY`.
fn run_step(copy: &Path, run: &str) -> Ran {
    let temp = copy.join("runner-temp");
    std::fs::create_dir_all(&temp).unwrap();
    let suffix = rand_suffix();
    let outputs = temp.join(format!("output-{suffix}"));
    let summary = temp.join(format!("summary-{suffix}"));
    std::fs::write(&outputs, "").unwrap();
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-e", "-c", run])
        .current_dir(copy)
        .env_remove("CARGO_TARGET_DIR")
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("RUNNER_TEMP", &temp)
        .env("NO_COLOR", "1")
        .output()
        .expect("run bash");
    let outputs = std::fs::read_to_string(&outputs)
        .unwrap()
        .lines()
        .map(|line| {
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not a name=value output line: {line}"));
            (name.to_string(), value.to_string())
        })
        .collect();
    let summary = std::fs::read_to_string(&summary).unwrap_or_default();
    Ran {
        out,
        outputs,
        summary,
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The step id of a lab's runner.
fn id(lab: &str) -> String {
    lab.replace('_', "")
}

/// What the reporter reads for the runner `id`: the value of its variable
/// `<ID>_RESULTS`, which the workflow takes from the step's `result`
/// output; base64-decoded and parsed as JSON.
fn reporter_reads(workflow: &Yaml, id: &str, outputs: &HashMap<String, String>) -> Value {
    let reporter = steps(workflow).last().unwrap();
    let var = format!("{}_RESULTS", id.to_uppercase());
    assert_eq!(
        reporter["env"][var.as_str()].as_str(),
        Some(format!("${{{{ steps.{id}.outputs.result }}}}").as_str()),
        "the reporter's {var}"
    );
    let encoded = outputs.get("result").expect("the step set its result");
    let mut decode = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run base64");
    use std::io::Write;
    decode
        .stdin
        .take()
        .unwrap()
        .write_all(encoded.as_bytes())
        .unwrap();
    let decoded = decode.wait_with_output().unwrap();
    assert!(decoded.status.success(), "not base64: {encoded}");
    serde_json::from_slice(&decoded.stdout).expect("the result is JSON")
}

/// The points the reporter sends Classroom for one runner: the sum of its
/// tests' scores, out of its max_score.
fn points(result: &Value) -> (u64, u64) {
    let tests = result["tests"].as_array().unwrap();
    let sum = tests.iter().map(|t| t["score"].as_u64().unwrap()).sum();
    (sum, result["max_score"].as_u64().unwrap())
}

/// Every test has the runners' fields, with their types, and the tests are
/// the lab's checks in order.
fn assert_shape(lab: &str, result: &Value) {
    assert_eq!(result["version"], 1, "{result:#}");
    let lab = grader::course::find(lab).unwrap();
    assert_eq!(result["max_score"], lab.max_points(), "{result:#}");
    let tests = result["tests"].as_array().unwrap();
    let names: Vec<&str> = tests.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let checks: Vec<&str> = lab.checks().map(|c| c.name).collect();
    assert_eq!(names, checks);
    for test in tests {
        for text in ["message", "test_code", "filename"] {
            assert!(test[text].is_string(), "{text} in {test:#}");
        }
        for number in ["score", "line_no", "duration"] {
            assert!(test[number].is_u64(), "{number} in {test:#}");
        }
        assert_eq!(test["line_no"], 0);
    }
}

/// Grades one lab with its workflow step, as the runner would; returns
/// what the reporter reads for it, and the step's part of the summary page
/// (which says the same points).
fn grade_step(lab: &str) -> (Value, String) {
    let copy = copy();
    let workflow = workflow(copy);
    let run = step_with_id(&workflow, &id(lab));
    let ran = {
        let _lock = common::exclusive();
        run_step(copy, &run)
    };
    assert!(
        ran.out.status.success(),
        "the step failed: {}",
        text(&ran.out)
    );
    let result = reporter_reads(&workflow, &id(lab), &ran.outputs);
    assert_shape(lab, &result);
    let (score, max) = points(&result);
    let title = format!("### {lab}: {score}/{max}\n");
    assert!(ran.summary.starts_with(&title), "{}", ran.summary);
    (result, ran.summary)
}

#[test]
fn the_workflow_is_the_one_classroom_generates_with_a_runner_per_lab() {
    let workflow = workflow(copy());
    assert_eq!(str_of(&workflow, "name"), "Autograding Tests");
    let on: Vec<&str> = workflow["on"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(on, ["push", "repository_dispatch"]);
    let permissions = &workflow["permissions"];
    assert_eq!(permissions.as_hash().unwrap().len(), 3);
    assert_eq!(str_of(permissions, "checks"), "write");
    assert_eq!(str_of(permissions, "actions"), "read");
    assert_eq!(str_of(permissions, "contents"), "read");
    let jobs = workflow["jobs"].as_hash().unwrap();
    assert_eq!(jobs.len(), 1);
    let job = &workflow["jobs"]["run-autograding-tests"];
    assert_eq!(str_of(job, "runs-on"), "ubuntu-latest");
    assert!(job["timeout-minutes"].as_i64().unwrap() > 0);

    let steps = steps(&workflow);
    assert_eq!(str_of(&steps[0], "uses"), "actions/checkout@v4");
    let reporter = steps.last().unwrap();
    assert_eq!(
        str_of(reporter, "uses"),
        "classroom-resources/autograding-grading-reporter@v1"
    );
    let ids: Vec<&str> = steps
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect::<Vec<_>>();
    let expected: Vec<String> = LABS.iter().map(|lab| id(lab)).collect();
    assert_eq!(ids, expected);
    let runners = str_of(&reporter["with"], "runners");
    assert_eq!(runners, expected.join(","));
    // The reporter's own check of `runners` (on an error it says they are
    // not "a comma-separated list of strings" unless they match this).
    assert!(
        runners
            .split(',')
            .all(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric()))
    );
    let env = reporter["env"].as_hash().unwrap();
    assert_eq!(env.len(), LABS.len(), "one variable per runner: {env:?}");
    for lab in LABS {
        let run = step_with_id(&workflow, &id(lab));
        assert!(
            run.contains(&format!("cargo build --release -p {lab} ")),
            "{run}"
        );
        assert!(run.contains("--format classroom"), "{run}");
    }

    // A lab the copy does not have is refused, saying why.
    let out = common::run(
        Command::new(common::workspace().join("tools/classroom.sh"))
            .arg(copy())
            .arg("timeouts"),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("no labs/timeouts"), "{}", text(&out));
}

#[test]
fn a_stub_scores_zero_with_each_checks_message() {
    let (result, summary) = grade_step("nonblocking_read");
    let max = u64::from(
        grader::course::find("nonblocking_read")
            .unwrap()
            .max_points(),
    );
    assert_eq!(points(&result), (0, max), "{result:#}");
    assert_eq!(result["status"], "fail");
    for test in result["tests"].as_array().unwrap() {
        assert_eq!(test["status"], "fail", "{test:#}");
        let message = test["message"].as_str().unwrap();
        assert!(!message.is_empty(), "{test:#}");
        // The reporter prints test_code, not message, under a failed test.
        let code = test["test_code"].as_str().unwrap();
        assert!(code.contains(message), "{test:#}");
        let rerun = format!(
            "make grade LAB=nonblocking_read CHECK={}",
            test["name"].as_str().unwrap()
        );
        assert!(code.contains(&rerun), "{test:#}");
    }
    let first = result["tests"][0]["message"].as_str().unwrap();
    assert!(first.contains("not yet implemented"), "{first}");
    assert!(summary.contains("not yet implemented"), "{summary}");
}

#[test]
fn a_lab_that_does_not_compile_scores_zero_on_every_check_with_the_compilers_messages() {
    let main = copy().join("labs/poll_echo/src/main.rs");
    std::fs::write(&main, "fn main() { let x: u32 = \"no\"; }\n").unwrap();
    let (result, summary) = grade_step("poll_echo");
    assert!(summary.contains("mismatched types"), "{summary}");
    let max = u64::from(grader::course::find("poll_echo").unwrap().max_points());
    assert_eq!(points(&result), (0, max), "{result:#}");
    assert_eq!(result["status"], "error");
    let tests = result["tests"].as_array().unwrap();
    assert!(tests.iter().all(|t| t["status"] == "error"), "{result:#}");
    let first = tests[0]["message"].as_str().unwrap();
    assert!(
        first.contains("poll_echo was not graded, 0 points")
            && first.contains("does not compile")
            && first.contains("mismatched types"),
        "{first}"
    );
    assert!(!first.contains("Compiling "), "{first}");
    for test in &tests[1..] {
        let message = test["message"].as_str().unwrap();
        assert!(message.contains("not run, 0 points"), "{test:#}");
    }
}

#[test]
fn a_correct_program_gets_full_marks() {
    // The reference solution's source, committed the way a student would.
    let solution =
        std::fs::read_to_string(common::workspace().join("solutions/select_telnet/src/main.rs"))
            .unwrap();
    std::fs::write(copy().join("labs/select_telnet/src/main.rs"), solution).unwrap();
    let (result, summary) = grade_step("select_telnet");
    assert!(!summary.contains("<details>"), "{summary}");
    let max = u64::from(grader::course::find("select_telnet").unwrap().max_points());
    assert_eq!(points(&result), (max, max), "{result:#}");
    assert_eq!(result["status"], "pass");
    for test in result["tests"].as_array().unwrap() {
        assert_eq!(test["status"], "pass", "{test:#}");
        assert_eq!(test["test_code"], "", "{test:#}");
    }
}
