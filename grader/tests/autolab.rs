//! The Autolab export (`make autolab`), run for real as Autolab runs it: a
//! folder with autograde.tar, autograde-Makefile (as `Makefile`) and the
//! student's handin.tar, then `make`, whose last line is the autoresult.
//! As in Tango, `make` runs unprivileged (as `nobody` when the tests are
//! root) and offline, with an empty cargo home: only the crates vendored in
//! the tar can build. One export of select_telnet, four handins: the stub
//! (0), the reference solution's source (full marks), one with a build
//! script (refused, 0 with the reason) and a source file that is not a tar
//! (0, saying how to make one).

mod common;

use common::{scratch, text};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const LAB: &str = "select_telnet";

/// The grading runs' target directory, kept between runs (the grader and
/// the dependencies are compiled once), apart from the one the Gradescope
/// tests use.
fn autolab_target() -> PathBuf {
    common::target_dir()
        .join("instructor-tests")
        .join("autolab-target")
}

/// Who `make` runs as: `nobody` when the tests are root (Tango's autodriver
/// is never root), else the tests' own user.
fn nobody() -> Option<nix::unistd::User> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    nix::unistd::User::from_name("nobody").unwrap()
}

/// The toolchain's `bin/`, where `nobody` can run it: rustup keeps it under
/// root's home, so it is hard-linked next to the target directory (once).
fn toolchain() -> PathBuf {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let linked = autolab_target().with_file_name("autolab-toolchain");
    if !linked.join("bin/cargo").is_file() {
        let _ = std::fs::remove_dir_all(&linked);
        let copied = Command::new("cp")
            .arg("-al")
            .arg(&sysroot)
            .arg(&linked)
            .status();
        if !copied.is_ok_and(|s| s.success()) {
            let _ = std::fs::remove_dir_all(&linked);
            let copied = Command::new("cp")
                .arg("-a")
                .arg(&sysroot)
                .arg(&linked)
                .status();
            assert!(copied.unwrap().success(), "cannot copy the toolchain");
        }
    }
    linked.join("bin")
}

/// Runs `make` in `dir` as Autolab's autodriver would: unprivileged, with
/// no cargo cache and cargo forbidden to use the network.
fn make_as_tango(dir: &Path) -> Output {
    let target = autolab_target();
    std::fs::create_dir_all(&target).unwrap();
    let mut make = Command::new("make");
    make.current_dir(dir)
        .env("CARGO_HOME", dir.join("cargo-home"))
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TARGET_DIR", &target)
        .env("NO_COLOR", "1");
    if let Some(user) = nobody() {
        for owned in [dir, target.as_path()] {
            let chown = Command::new("chown")
                .arg("-R")
                .arg(user.uid.to_string())
                .arg(owned)
                .status();
            assert!(chown.unwrap().success(), "chown {}", owned.display());
        }
        make.env_clear()
            .env("HOME", dir.join("home"))
            .env("PATH", format!("{}:/usr/bin:/bin", toolchain().display()))
            .env("CARGO_HOME", dir.join("cargo-home"))
            .env("CARGO_NET_OFFLINE", "true")
            .env("CARGO_TARGET_DIR", &target)
            .env("NO_COLOR", "1")
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw());
    }
    make.output().expect("run make")
}

/// The lab's checks and their points, from the registry.
fn checks() -> BTreeMap<String, u64> {
    let lab = grader::course::find(LAB).unwrap();
    lab.checks()
        .map(|c| (c.name.to_string(), c.points.into()))
        .collect()
}

/// `make autolab` into `root/export`.
fn export(root: &Path) -> PathBuf {
    let dest = root.join("export");
    let out = common::make(
        &common::workspace(),
        &[
            "autolab",
            &format!("LAB={LAB}"),
            &format!("DEST={}", dest.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    for file in ["autograde.tar", "autograde-Makefile", "problems.txt"] {
        assert!(dest.join(file).is_file(), "no {file}: {}", text(&out));
    }
    // The problems to define in Autolab: one per check, with its points.
    let problems = std::fs::read_to_string(dest.join("problems.txt")).unwrap();
    let listed: BTreeMap<String, u64> = problems
        .lines()
        .map(|line| {
            let (name, points) = line.split_once(' ').unwrap();
            (name.to_string(), points.parse().unwrap())
        })
        .collect();
    assert_eq!(listed, checks(), "{problems}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("round_trip 10"));
    // The student copy with its dependencies vendored, without solutions.
    let list = common::run(
        Command::new("tar")
            .arg("tzf")
            .arg(dest.join("autograde.tar")),
    );
    let names = String::from_utf8_lossy(&list.stdout);
    for wanted in [
        "iomux-labs/.cargo/config.toml",
        "iomux-labs/vendor/nix/Cargo.toml",
        "iomux-labs/labs/select_telnet/src/main.rs",
        "autolab/grade.sh",
        "autolab/autolab.conf",
    ] {
        assert!(names.lines().any(|n| n == wanted), "no {wanted} in the tar");
    }
    let list = common::run(
        Command::new("tar")
            .arg("xzf")
            .arg(dest.join("autograde.tar"))
            .arg("-O")
            .arg("iomux-labs/.cargo/config.toml"),
    );
    let config = String::from_utf8_lossy(&list.stdout);
    assert!(
        config.contains("replace-with = \"vendored-sources\""),
        "{config}"
    );
    assert!(
        !names.contains("iomux-labs/solutions/"),
        "solutions in the tar"
    );
    dest
}

/// Autolab's grading folder: the two files and the handin, made from
/// `files` ((path, content)) with the command the guide gives students.
fn folder(export: &Path, dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(export.join("autograde.tar"), dir.join("autograde.tar")).unwrap();
    std::fs::copy(export.join("autograde-Makefile"), dir.join("Makefile")).unwrap();
    let work = dir.with_extension("handin");
    let _ = std::fs::remove_dir_all(&work);
    for (path, content) in files {
        let path = work.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let tar = common::run(
        Command::new("tar")
            .arg("cf")
            .arg(dir.join("handin.tar"))
            .arg("-C")
            .arg(&work)
            .arg("labs"),
    );
    assert!(tar.status.success(), "{}", text(&tar));
}

/// Runs `make` in `dir`, as Autolab does, and returns the output and its
/// last line's JSON.
fn autograde(dir: &Path) -> (String, Value) {
    let out = {
        let _lock = common::exclusive();
        make_as_tango(dir)
    };
    assert!(out.status.success(), "{}", text(&out));
    let output = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = output.lines().last().unwrap_or_default();
    let json = serde_json::from_str(last)
        .unwrap_or_else(|err| panic!("the last line is not JSON ({err}): {}", text(&out)));
    (output, json)
}

/// The autoresult's scores; its keys must be exactly the lab's checks.
fn scores(result: &Value) -> BTreeMap<String, u64> {
    let scores: BTreeMap<String, u64> = result["scores"]
        .as_object()
        .unwrap_or_else(|| panic!("no scores: {result}"))
        .iter()
        .map(|(name, points)| (name.clone(), points.as_u64().unwrap()))
        .collect();
    assert_eq!(
        scores.keys().collect::<Vec<_>>(),
        checks().keys().collect::<Vec<_>>(),
        "{result}"
    );
    scores
}

fn source(path: &str) -> String {
    std::fs::read_to_string(common::workspace().join(path)).unwrap()
}

#[test]
fn the_autolab_autograder_scores_the_stub_zero_the_solution_full_and_refuses_a_build_script() {
    let root = scratch("autolab");
    let export = export(&root);
    let dir = root.join("grading");
    let main = format!("labs/{LAB}/src/main.rs");

    // The stub, in a fresh folder as Autolab gives it.
    folder(&export, &dir, &[(&main, &source(&main))]);
    let (output, result) = autograde(&dir);
    assert!(scores(&result).values().all(|&p| p == 0), "{output}");
    assert_eq!(result["scoreboard"], serde_json::json!([0]), "{output}");
    assert!(output.contains("round_trip             FAIL"), "{output}");
    assert!(output.contains("not yet implemented"), "{output}");
    assert!(output.contains("Score: 0/100"), "{output}");

    // The next handins reuse the folder (the grader and the dependencies
    // are built once: the test stays cheap); Autolab would start afresh.
    let solution = source(&format!("solutions/{LAB}/src/main.rs"));
    folder(&export, &dir, &[(&main, &solution)]);
    let (output, result) = autograde(&dir);
    assert_eq!(scores(&result), checks(), "{output}");
    assert_eq!(result["scoreboard"], serde_json::json!([100]), "{output}");
    assert!(output.contains("Score: 100/100"), "{output}");

    let manifest = source(&format!("labs/{LAB}/Cargo.toml"))
        .replace("[dependencies]", "build = \"build.rs\"\n\n[dependencies]");
    folder(
        &export,
        &dir,
        &[
            (&format!("labs/{LAB}/Cargo.toml"), &manifest),
            (&format!("labs/{LAB}/build.rs"), "fn main() {}\n"),
            (&main, &solution),
        ],
    );
    let (output, result) = autograde(&dir);
    assert!(scores(&result).values().all(|&p| p == 0), "{output}");
    assert!(
        output.contains("refused") && output.contains("build script"),
        "{output}"
    );
    assert!(output.contains("select_telnet: 0/100"), "{output}");

    // The source file itself instead of a tar: 0, and the command to use.
    std::fs::write(dir.join("handin.tar"), &solution).unwrap();
    let (output, result) = autograde(&dir);
    assert!(scores(&result).values().all(|&p| p == 0), "{output}");
    assert!(
        output.contains("not a tar archive") && output.contains("tar cf handin.tar labs/"),
        "{output}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
