//! The instructors' tools, run for real: the student copy (`make handout`)
//! builds and grades a stub without the solutions, and the Gradescope
//! autograder zip (`make gradescope`) writes results.json for a submission.

mod common;

use common::{copies_target, make, run, scratch, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn the_student_copy_has_no_solutions_and_grades_a_stub() {
    let copy = scratch("handout");
    let export = make(
        &common::workspace(),
        &["handout", &format!("DEST={}", copy.display())],
    );
    assert!(export.status.success(), "{}", text(&export));
    for gone in [
        "solutions",
        "grader/tests",
        "grader/broken",
        "docs/instructors.md",
        "docs/instructors",
        "tools",
        ".ci",
    ] {
        assert!(!copy.join(gone).exists(), "{gone} is in the student copy");
    }
    let manifest = std::fs::read_to_string(copy.join("Cargo.toml")).unwrap();
    assert!(!manifest.contains("solutions/") && !manifest.contains("broken"));
    for kept in [
        "labs/poll_echo/src/main.rs",
        "docs/labs/poll_echo.md",
        "Makefile",
    ] {
        assert!(copy.join(kept).exists(), "{kept} is missing from the copy");
    }

    let _lock = common::exclusive();
    let graded = make(&copy, &["grade", "LAB=poll_echo", "CHECK=basic_echo"]);
    let out = text(&graded);
    assert!(!graded.status.success(), "{out}");
    assert!(out.contains("basic_echo") && out.contains("FAIL"), "{out}");
    assert!(out.contains("Score: 0/5"), "{out}");
    assert!(out.contains("not yet implemented"), "{out}");

    let solutions = make(&copy, &["grade-solutions"]);
    assert!(solutions.status.success(), "{}", text(&solutions));
    assert!(text(&solutions).contains("student copy"));
    let _ = std::fs::remove_dir_all(&copy);
}

/// Unzips the autograder into `root/source`, as Gradescope does.
fn unpack(zip: &Path, root: &Path) {
    let source = root.join("source");
    std::fs::create_dir_all(&source).unwrap();
    let unzip = run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(zip)
        .arg(&source));
    assert!(unzip.status.success(), "{}", text(&unzip));
}

/// Builds `lab`'s autograder zip (with `hidden` checks), unpacks it into a
/// scratch root and runs its setup.sh, as Gradescope does once per image
/// (Rust is already here, so it installs nothing). Returns (root, zip).
fn autograder(name: &str, lab: &str, hidden: &[&str]) -> (PathBuf, PathBuf) {
    let root = scratch(name);
    let zip = root.with_extension("zip");
    let built = run(
        Command::new(common::workspace().join("tools/gradescope.sh"))
            .arg(lab)
            .arg(&zip)
            .args(hidden),
    );
    assert!(built.status.success(), "{}", text(&built));
    unpack(&zip, &root);
    let out = run(Command::new("bash").arg(root.join("source/setup.sh")));
    assert!(out.status.success(), "{}", text(&out));
    (root, zip)
}

/// Runs the zip's run_autograder on `submission` (files to put under
/// `submission/`) and returns results.json.
fn autograde(root: &Path, submission: &[(&str, &str)]) -> Value {
    let sub = root.join("submission");
    let _ = std::fs::remove_dir_all(&sub);
    for (path, content) in submission {
        let path = sub.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let _ = std::fs::remove_file(root.join("results/results.json"));
    let runner = root.join("source/run_autograder");
    let out = run(Command::new("bash")
        .arg(&runner)
        .env("AUTOGRADER_ROOT", root));
    assert!(out.status.success(), "{}", text(&out));
    let json = std::fs::read_to_string(root.join("results/results.json"))
        .unwrap_or_else(|err| panic!("no results.json ({err}); {}", text(&out)));
    serde_json::from_str(&json).unwrap_or_else(|err| panic!("bad results.json: {err}\n{json}"))
}

/// The full marks of `lab`, from the registry.
fn max(lab: &str) -> u64 {
    grader::course::find(lab).unwrap().max_points().into()
}

fn score(results: &Value) -> (u64, u64) {
    (
        results["score"].as_u64().unwrap(),
        results["max_score"].as_u64().unwrap(),
    )
}

#[test]
fn the_gradescope_autograder_scores_a_stub_zero_and_a_build_error_zero() {
    let (root, zip) = autograder("gradescope", "poll_echo", &["scale"]);

    let stub =
        std::fs::read_to_string(common::workspace().join("labs/poll_echo/src/main.rs")).unwrap();
    let results = {
        let _lock = common::exclusive();
        autograde(&root, &[("src/main.rs", &stub)])
    };
    assert_eq!(score(&results), (0, max("poll_echo")), "{results:#}");
    let tests = results["tests"].as_array().unwrap();
    assert_eq!(
        tests.len(),
        grader::course::find("poll_echo").unwrap().checks().count()
    );
    assert!(
        tests
            .iter()
            .all(|t| t["status"] == "failed" && t["score"] == 0)
    );
    let scale = tests.iter().find(|t| t["name"] == "scale").unwrap();
    assert_eq!(scale["visibility"], "after_published");
    assert!(
        tests[0]["output"]
            .as_str()
            .unwrap()
            .contains("not yet implemented")
    );

    let broken = autograde(
        &root,
        &[("main.rs", "fn main() { let x: u32 = \"no\"; }\n")],
    );
    assert_eq!(score(&broken), (0, max("poll_echo")), "{broken:#}");
    assert!(
        broken["output"]
            .as_str()
            .unwrap()
            .contains("does not compile")
    );
    assert!(
        broken["output"]
            .as_str()
            .unwrap()
            .contains("mismatched types")
    );

    let empty = autograde(&root, &[("README.txt", "oops")]);
    assert_eq!(score(&empty), (0, max("poll_echo")), "{empty:#}");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_file(&zip);
}

#[test]
fn batch_grading_writes_a_csv_row_per_submission() {
    let root = scratch("batch");
    let subs = root.join("submissions");
    let stub = common::workspace().join("labs/poll_echo");
    let write = |path: &str, content: &[u8]| {
        let path = subs.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    };
    write(
        "alice/Cargo.toml",
        &std::fs::read(stub.join("Cargo.toml")).unwrap(),
    );
    write(
        "alice/src/main.rs",
        &std::fs::read(stub.join("src/main.rs")).unwrap(),
    );
    write("bob/main.rs", b"fn main() { let x: u32 = \"no\"; }\n");
    // A program in any language: here the reference solution's binary.
    let carol = subs.join("carol/poll_echo");
    std::fs::create_dir_all(carol.parent().unwrap()).unwrap();
    std::fs::copy(common::bin("poll_echo_solution"), &carol).unwrap();
    std::fs::create_dir_all(subs.join("dave")).unwrap();
    // A build script: refused, whatever it would have done.
    write(
        "eve/Cargo.toml",
        &std::fs::read(stub.join("Cargo.toml")).unwrap(),
    );
    write("eve/build.rs", b"fn main() { std::process::exit(1) }\n");
    write(
        "eve/src/main.rs",
        &std::fs::read(stub.join("src/main.rs")).unwrap(),
    );

    let csv = root.join("grades.csv");
    let out = {
        let _lock = common::exclusive();
        run(Command::new(env!("CARGO_BIN_EXE_grader"))
            .args(["batch", "poll_echo"])
            .arg(&subs)
            .arg("--out")
            .arg(&csv)
            .args(["--only", "basic_echo,quit", "--workspace"])
            .arg(common::workspace()))
    };
    assert!(out.status.success(), "{}", text(&out));
    let table = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        table,
        "submission,status,basic_echo,quit,total,max\n\
         alice,failed,0,0,0,11\n\
         bob,does not compile,0,0,0,11\n\
         carol,passed,5,6,11,11\n\
         dave,no program,0,0,0,11\n\
         eve,refused,0,0,0,11\n",
        "{}",
        text(&out)
    );
    let report = std::fs::read_to_string(root.join("grades-reports/alice.txt")).unwrap();
    assert!(report.contains("not yet implemented"), "{report}");
    let report = std::fs::read_to_string(root.join("grades-reports/bob.txt")).unwrap();
    assert!(report.contains("mismatched types"), "{report}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_gradescope_autograder_gives_a_correct_submission_full_marks() {
    // The reference solution's source, submitted the way a student would.
    let (root, zip) = autograder("gradescope-solution", "select_telnet", &[]);
    let solution =
        std::fs::read_to_string(common::workspace().join("solutions/select_telnet/src/main.rs"))
            .unwrap();
    let results = {
        let _lock = common::exclusive();
        autograde(&root, &[("labs/select_telnet/src/main.rs", &solution)])
    };
    assert_eq!(score(&results), (100, 100), "{results:#}");
    let tests = results["tests"].as_array().unwrap();
    assert!(tests.iter().all(|t| t["status"] == "passed"), "{results:#}");
    assert!(
        !common::workspace()
            .join("solutions")
            .starts_with(root.join("source"))
    );
    assert!(!root.join("source/solutions").exists());
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_file(&zip);
}

#[test]
fn a_partial_handout_has_only_the_labs_released_so_far() {
    let copy = scratch("handout-partial");
    let export = make(
        &common::workspace(),
        &[
            "handout",
            &format!("DEST={}", copy.display()),
            "HANDOUT_LABS=nonblocking_read poll_echo",
        ],
    );
    assert!(export.status.success(), "{}", text(&export));
    assert!(copy.join("labs/poll_echo/src/main.rs").exists());
    assert!(copy.join("labs/labkit").exists());
    for gone in ["labs/timeouts", "labs/epoll_et", "docs/labs/timeouts.md"] {
        assert!(!copy.join(gone).exists(), "{gone} was handed out");
    }
    let manifest = std::fs::read_to_string(copy.join("Cargo.toml")).unwrap();
    assert!(!manifest.contains("labs/timeouts"), "{manifest}");
    let makefile = std::fs::read_to_string(copy.join("Makefile")).unwrap();
    assert!(
        makefile.contains("LABS := nonblocking_read poll_echo\n"),
        "{makefile}"
    );
    let _ = std::fs::remove_dir_all(&copy);
}

#[test]
fn the_gradescope_autograder_refuses_a_build_script_and_builds_unprivileged() {
    let (root, zip) = autograder("gradescope-hostile", "poll_echo", &[]);
    let grader = copies_target().join("release/grader");
    let before = std::fs::read(&grader).unwrap();
    let stub = common::workspace().join("labs/poll_echo");
    let manifest = std::fs::read_to_string(stub.join("Cargo.toml")).unwrap();
    let main = std::fs::read_to_string(stub.join("src/main.rs")).unwrap();

    // A build script that would replace the grader and write the results.
    let attack = format!(
        "fn main() {{ let _ = std::fs::write({:?}, b\"#!/bin/sh\\necho pwned\\n\"); \
         let _ = std::fs::write({:?}, b\"{{\\\"score\\\": 1000}}\"); }}\n",
        grader.display().to_string(),
        root.join("results/results.json").display().to_string()
    );
    let evil_manifest =
        manifest.replace("[dependencies]", "build = \"build.rs\"\n\n[dependencies]");
    let results = {
        let _lock = common::exclusive();
        autograde(
            &root,
            &[
                ("Cargo.toml", evil_manifest.as_str()),
                ("build.rs", attack.as_str()),
                ("src/main.rs", main.as_str()),
            ],
        )
    };
    assert_eq!(score(&results), (0, max("poll_echo")), "{results:#}");
    let output = results["output"].as_str().unwrap();
    assert!(
        output.contains("refused") && output.contains("build script"),
        "{output}"
    );
    // Only the manifest: a new dependency (a proc-macro crate, say).
    let more = manifest.replace("[dependencies]", "[dependencies]\nserde = \"1\"");
    let results = autograde(
        &root,
        &[
            ("Cargo.toml", more.as_str()),
            ("src/main.rs", main.as_str()),
        ],
    );
    let output = results["output"].as_str().unwrap();
    assert!(
        output.contains("refused") && output.contains("serde"),
        "{output}"
    );
    assert!(
        std::fs::read(&grader).unwrap() == before,
        "the grader was changed"
    );

    // A file only root can read: a build run as root could include it.
    if nix::unistd::Uid::effective().is_root() {
        let secret = root.join("secret.txt");
        std::fs::write(&secret, "the instructors' secret").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let peek = format!(
            "const S: &str = include_str!({:?});\nfn main() {{ println!(\"{{S}}\"); }}\n",
            secret.display().to_string()
        );
        let results = autograde(&root, &[("src/main.rs", peek.as_str())]);
        let output = results["output"].as_str().unwrap();
        assert!(
            output.contains("does not compile") && output.contains("ermission denied"),
            "{output}"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_file(&zip);
}
