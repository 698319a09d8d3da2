//! The PrairieLearn export (`make prairielearn`), run for real: the image's
//! setup.sh (what its Dockerfile runs), then the question's entrypoint
//! against a fake `/grade` tree (GRADE_ROOT), as PrairieLearn's external
//! grader would, for the stub, the solution's files, a refused submission
//! and one that does not compile. Docker itself is not run here.

mod common;

use common::{copies_target, make, run, scratch, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `make prairielearn LAB=lab` into `root/export`.
fn export(root: &Path, lab: &str) -> PathBuf {
    let dest = root.join("export");
    let out = make(
        &common::workspace(),
        &[
            "prairielearn",
            &format!("LAB={lab}"),
            &format!("DEST={}", dest.display()),
            "IMAGE=example/iomux-grader:test",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    dest
}

fn read_json(path: &Path) -> Value {
    let json = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    serde_json::from_str(&json)
        .unwrap_or_else(|err| panic!("bad JSON in {}: {err}\n{json}", path.display()))
}

fn info(export: &Path, lab: &str) -> Value {
    read_json(&export.join(format!("questions/iomux_{lab}/info.json")))
}

/// Runs the question's entrypoint as PrairieLearn would (its command line
/// from info.json, inside the image's folder) on `files` uploaded to
/// `/grade/student`, and returns `/grade/results/results.json`.
fn grade(export: &Path, lab: &str, files: &[(&str, &str)]) -> Value {
    let root = export.with_file_name("grade");
    let _ = std::fs::remove_dir_all(&root);
    let student = root.join("student");
    std::fs::create_dir_all(&student).unwrap();
    for (name, content) in files {
        std::fs::write(student.join(name), content).unwrap();
    }
    // The question's tests/ folder, which PrairieLearn copies to /grade/tests.
    let tests = root.join("tests");
    std::fs::create_dir_all(&tests).unwrap();
    let question = export.join(format!("questions/iomux_{lab}"));
    std::fs::copy(question.join("tests/files.txt"), tests.join("files.txt")).unwrap();

    let info = info(export, lab);
    let entrypoint = info["externalGradingOptions"]["entrypoint"]
        .as_str()
        .unwrap();
    let mut words = entrypoint.split_whitespace();
    let script = words.next().unwrap();
    let script = script
        .strip_prefix("/iomux/")
        .unwrap_or_else(|| panic!("the entrypoint {script} is not in /iomux"));
    let image = export.join("image");
    let out = run(Command::new("bash")
        .arg(image.join(script))
        .args(words)
        .env("GRADE_ROOT", &root)
        .env("IOMUX_ROOT", &image));
    assert!(out.status.success(), "{}", text(&out));
    let results = root.join("results");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&results).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755, "only root may write /grade/results");
    read_json(&results.join("results.json"))
}

fn tests(results: &Value) -> &Vec<Value> {
    results["tests"].as_array().unwrap()
}

fn message(results: &Value) -> &str {
    results["message"].as_str().unwrap()
}

/// The question's info.json, and the Dockerfile's files.
fn the_export_is_complete(export: &Path, lab: &str) {
    let info = info(export, lab);
    for field in ["uuid", "title", "topic"] {
        assert!(
            info[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}: {info:#}"
        );
    }
    assert_eq!(info["gradingMethod"], "External");
    let options = &info["externalGradingOptions"];
    assert_eq!(options["enabled"], true);
    assert_eq!(options["image"], "example/iomux-grader:test");
    let timeout = options["timeout"].as_u64().unwrap();
    let budget = grader::course::find(lab).unwrap().budget.as_secs();
    assert!(timeout > budget + 180 && timeout <= 600, "{info:#}");
    assert_eq!(
        options["entrypoint"],
        format!("/iomux/run.sh {lab} {timeout}").as_str()
    );
    // The same lab exported again, its image under a new tag, is the same
    // question.
    assert_eq!(
        info["uuid"],
        self::info(&export_again(export, lab), lab)["uuid"]
    );

    let image = export.join("image");
    let dockerfile = std::fs::read_to_string(image.join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("ARG LABS=\"{lab}\"")),
        "{dockerfile}"
    );
    let mut copied = Vec::new();
    for line in dockerfile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"COPY") {
            for source in &words[1..words.len() - 1] {
                assert!(
                    image.join(source).exists(),
                    "the Dockerfile copies {source}, which is not in the export"
                );
                copied.push(source.to_string());
            }
        }
    }
    for needed in ["course", "setup.sh", "run.sh"] {
        assert!(
            copied.iter().any(|c| c == needed),
            "{needed} is not copied: {dockerfile}"
        );
    }
    assert!(dockerfile.contains("/iomux/setup.sh $LABS"), "{dockerfile}");
    assert!(
        image
            .join("course/labs")
            .join(lab)
            .join("Cargo.toml")
            .exists()
    );
    assert!(
        !image.join("course/solutions").exists(),
        "the image would hold the solutions"
    );

    let html = std::fs::read_to_string(export.join(format!("questions/iomux_{lab}/question.html")))
        .unwrap();
    assert!(
        html.contains("<pl-file-upload file-names=\"main.rs\">"),
        "{html}"
    );
    assert!(html.contains("<pl-external-grader-results>"), "{html}");
}

fn export_again(export: &Path, lab: &str) -> PathBuf {
    let again = export.with_file_name("export-again");
    let out = run(
        Command::new(common::workspace().join("tools/prairielearn.sh"))
            .arg(lab)
            .arg(&again)
            .arg("example/iomux-grader:next"),
    );
    assert!(out.status.success(), "{}", text(&out));
    again
}

#[test]
fn the_prairielearn_entrypoint_grades_the_stub_zero_the_solution_full_and_refuses_a_build_script() {
    let lab = "nonblocking_read";
    let root = scratch("prairielearn");
    let export = export(&root, lab);
    the_export_is_complete(&export, lab);

    // What the Dockerfile runs once (Rust is already here).
    let setup = run(Command::new("bash")
        .arg(export.join("image/setup.sh"))
        .arg(lab)
        .env("IOMUX_ROOT", export.join("image")));
    assert!(setup.status.success(), "{}", text(&setup));
    assert!(copies_target().join("release/grader").exists());

    let max = u64::from(grader::course::find(lab).unwrap().max_points());
    let checks = grader::course::find(lab).unwrap().checks().count();
    let stub = std::fs::read_to_string(
        common::workspace()
            .join("labs")
            .join(lab)
            .join("src/main.rs"),
    )
    .unwrap();
    let results = {
        let _lock = common::exclusive();
        grade(&export, lab, &[("main.rs", &stub)])
    };
    assert_eq!(results["gradable"], true, "{results:#}");
    assert_eq!(results["score"], 0.0, "{results:#}");
    assert_eq!(tests(&results).len(), checks);
    assert!(
        tests(&results).iter().all(|t| t["points"] == 0),
        "{results:#}"
    );
    let most: u64 = tests(&results)
        .iter()
        .map(|t| t["max_points"].as_u64().unwrap())
        .sum();
    assert_eq!(most, max);
    let first = tests(&results)[0]["message"].as_str().unwrap();
    assert!(first.contains("not yet implemented"), "{results:#}");
    assert!(
        message(&results).contains(&format!("Score: 0/{max}")),
        "{results:#}"
    );

    let solution = std::fs::read_to_string(
        common::workspace()
            .join("solutions")
            .join(lab)
            .join("src/main.rs"),
    )
    .unwrap();
    let results = {
        let _lock = common::exclusive();
        grade(&export, lab, &[("main.rs", &solution)])
    };
    assert_eq!(results["score"], 1.0, "{results:#}");
    assert!(
        tests(&results)
            .iter()
            .all(|t| t["points"] == t["max_points"]),
        "{results:#}"
    );

    // A build script (if the question let students upload more files): refused.
    let manifest = std::fs::read_to_string(
        common::workspace()
            .join("labs")
            .join(lab)
            .join("Cargo.toml"),
    )
    .unwrap();
    let evil = manifest.replace("[dependencies]", "build = \"build.rs\"\n\n[dependencies]");
    let results = grade(
        &export,
        lab,
        &[
            ("main.rs", &stub),
            ("Cargo.toml", &evil),
            ("build.rs", "fn main() { std::process::exit(1) }\n"),
        ],
    );
    assert_eq!(results["gradable"], true, "{results:#}");
    assert_eq!(results["score"], 0.0, "{results:#}");
    assert!(
        message(&results).contains("refused") && message(&results).contains("build script"),
        "{results:#}"
    );
    assert!(tests(&results).iter().all(|t| {
        t["points"] == 0
            && t["message"]
                .as_str()
                .unwrap()
                .starts_with("not run: refused")
    }));

    let results = grade(
        &export,
        lab,
        &[("main.rs", "fn main() { let x: u32 = \"no\"; }\n")],
    );
    assert_eq!(results["score"], 0.0, "{results:#}");
    assert!(
        message(&results).contains("does not compile"),
        "{results:#}"
    );
    assert!(
        results["output"]
            .as_str()
            .unwrap()
            .contains("mismatched types"),
        "{results:#}"
    );

    let results = grade(&export, lab, &[]);
    assert_eq!(results["score"], 0.0, "{results:#}");
    assert!(message(&results).contains("no Rust files"), "{results:#}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_lab_with_subfolders_is_uploaded_as_flat_file_names() {
    let root = scratch("prairielearn-nested");
    let export = export(&root, "async_echo");
    let question = export.join("questions/iomux_async_echo");
    let map = std::fs::read_to_string(question.join("tests/files.txt")).unwrap();
    assert!(
        map.lines().any(|l| l == "runtime-mod.rs\truntime/mod.rs"),
        "{map}"
    );
    assert!(map.lines().any(|l| l == "main.rs\tmain.rs"), "{map}");
    let html = std::fs::read_to_string(question.join("question.html")).unwrap();
    assert!(html.contains("runtime-mod.rs"), "{html}");
    let _ = std::fs::remove_dir_all(&root);
}
