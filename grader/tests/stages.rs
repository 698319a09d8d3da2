//! async_echo's build order (its handout's section "Build it in this
//! order") holds: at each step, the checks the handout names turn green.
//!
//! The program of steps 1 to 3 is the stub with that much of the reference
//! filled in: the reference's four runtime files copied over the stub's, and
//! the reference's bodies of `Conn`, `converse` and `linger` in the stub's
//! `main.rs`, whose `chat_with_client` runs the conversation without an idle
//! timeout. That works only while the reference fills in the stub's API
//! (same modules, same public functions and signatures), which is also
//! what this test keeps true. Step 1 is the stub's own `runtime/tests.rs`
//! run on that program; steps 2 and 3 are the `make grade ... CHECK=` sets
//! of the handout, which must pass, while the idle checks must still fail;
//! step 4's set is graded on the reference. (`course.rs` checks that every
//! `CHECK=` name of a handout is a check of its lab.)

mod common;

use grader::report::{LabReport, Status};
use std::path::{Path, PathBuf};
use std::process::Command;

const LAB: &str = "async_echo";
const HANDOUT: &str = "docs/labs/async_echo.md";
const SECTION: &str = "Build it in this order";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {path:?}: {err}"))
}

/// The `CHECK=` set of each `make grade LAB=async_echo CHECK=...` command of
/// the build order, in order.
fn steps() -> Vec<Vec<String>> {
    let text = read(&common::workspace().join(HANDOUT));
    let start = text
        .find(&format!(". {SECTION}\n"))
        .unwrap_or_else(|| panic!("{HANDOUT} has no section \"{SECTION}\""));
    let section = &text[start..];
    let section = &section[..section[1..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 1)];
    common::grade_commands(section)
        .into_iter()
        .filter(|(_, words)| words.contains(&("LAB", LAB)))
        .filter_map(|(_, words)| {
            let (_, checks) = words.iter().find(|(key, _)| *key == "CHECK")?;
            Some(checks.split(',').map(str::to_string).collect())
        })
        .collect()
}

/// `text` with the body of the item that starts with the line `head` (up to
/// a `}` alone on a line) replaced by that item in `from`.
fn with_item_of(text: &str, from: &str, head: &str) -> String {
    let item = |source: &str, what: &str| {
        let start = source
            .find(&format!("\n{head}"))
            .unwrap_or_else(|| panic!("the {what}'s main.rs has no {head:?}: update this test"))
            + 1;
        let end = start + source[start..].find("\n}\n").expect("the item's end") + 3;
        (start, end)
    };
    let (start, end) = item(text, "stub");
    let (from_start, from_end) = item(from, "reference");
    format!(
        "{}{}{}",
        &text[..start],
        &from[from_start..from_end],
        &text[end..]
    )
}

/// The stub with the reference's runtime and conversation: a crate of its
/// own under the target directory, built into it (only this crate and
/// labkit are compiled: nix is the workspace's, same version and features).
/// Returns the crate's directory.
fn write_step_3_program() -> PathBuf {
    let root = common::workspace();
    let dir = common::target_dir().join("stages").join(LAB);
    let _ = std::fs::remove_dir_all(&dir);
    copy_tree(&root.join("labs/async_echo/src"), &dir.join("src"));
    for file in ["reactor.rs", "executor.rs", "net.rs", "time.rs"] {
        let from = root.join("solutions/async_echo/src/runtime").join(file);
        std::fs::copy(&from, dir.join("src/runtime").join(file)).unwrap();
    }
    let reference = read(&root.join("solutions/async_echo/src/main.rs"));
    let mut main = read(&dir.join("src/main.rs"));
    for head in ["impl Conn {", "async fn converse(", "async fn linger("] {
        main = with_item_of(&main, &reference, head);
    }
    std::fs::write(dir.join("src/main.rs"), main).unwrap();
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), manifest(&root)).unwrap();
    dir
}

/// The stub's manifest, renamed, with the workspace's dependency settings
/// and release profile written out (so that nix is not built again).
fn manifest(root: &Path) -> String {
    let workspace = read(&root.join("Cargo.toml"));
    let nix = workspace
        .lines()
        .find(|line| line.starts_with("nix = "))
        .expect("the workspace's nix dependency");
    let profile = workspace
        .find("[profile.release]")
        .map(|at| &workspace[at..])
        .expect("the workspace's release profile");
    let labkit = root.join("labs/labkit");
    format!(
        "[package]\nname = \"{LAB}_stages\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [[bin]]\nname = \"{LAB}_stages\"\npath = \"src/main.rs\"\n\n\
         [dependencies]\nlabkit = {{ path = {:?} }}\n{nix}\n\n{profile}\n[workspace]\n",
        labkit.display().to_string()
    )
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// `cargo <args>` on the crate in `dir`, into the workspace's target
/// directory; panics with cargo's output unless it succeeds.
fn cargo(dir: &Path, args: &[&str]) -> String {
    let (command, rest) = args.split_first().expect("a cargo command");
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(dir)
        .arg(command)
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .args(rest)
        .env("CARGO_TARGET_DIR", common::target_dir())
        .output()
        .expect("run cargo");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "cargo {args:?} failed:\n{said}");
    said
}

fn failed(report: &LabReport) -> Vec<String> {
    common::statuses(report)
        .into_iter()
        .filter(|(_, status)| *status != Status::Pass)
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn each_step_of_the_build_order_turns_its_checks_green() {
    let steps = steps();
    assert!(
        steps.len() >= 3,
        "{HANDOUT}'s \"{SECTION}\" should name a CHECK= set for steps 2, 3 and 4; found {steps:?}"
    );
    let dir = write_step_3_program();

    // Step 1: the stub's tests of the executor, the timers and `sleep`.
    let tests = cargo(&dir, &["test", "--release", "--", "--ignored"]);
    assert!(
        tests.contains("test result: ok. 3 passed"),
        "step 1: the stub's runtime tests, on the reference's runtime:\n{tests}"
    );

    // Steps 2 and 3: every check they name passes...
    cargo(&dir, &["build", "--release", "--quiet"]);
    let bin = common::target_dir()
        .join("release")
        .join(format!("{LAB}_stages"));
    let (steps_2_and_3, step_4) = (steps[..steps.len() - 1].concat(), &steps[steps.len() - 1]);
    let only: Vec<&str> = steps_2_and_3.iter().map(String::as_str).collect();
    let report = common::grade_path(LAB, &bin, &only);
    assert!(
        failed(&report).is_empty(),
        "steps 2 and 3 (the stub with the reference's runtime and conversation) should pass {only:?}:\n{}",
        common::explain(&report)
    );
    // ... while the idle timeout is not there yet: no `BYE idle`, and a
    // lingering client is never closed.
    let idle = ["idle_close", "active_kept"];
    let report = common::grade_path_with(LAB, &bin, &idle, grader::runner::Rerun::Never);
    assert_eq!(
        failed(&report),
        idle,
        "without idle timeouts, these checks should fail:\n{}",
        common::explain(&report)
    );

    // Step 4: the reference.
    let only: Vec<&str> = step_4.iter().map(String::as_str).collect();
    let report = common::grade(LAB, "async_echo_solution", &only);
    assert!(
        failed(&report).is_empty(),
        "step 4 on the reference should pass {only:?}:\n{}",
        common::explain(&report)
    );
}
