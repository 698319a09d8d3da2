//! `own_runtime` on a correct program whose clone sits in a folder named like
//! a runtime: a release binary keeps its workspace's absolute path (DWARF's
//! compilation directory), and `~/tokio-2025/` must not read as tokio.
//!
//! The reference solution is built from a copy of the pieces it needs, under
//! `target/own-runtime/tokio-2025/`, offline, into a target directory kept
//! there: the first run compiles its dependencies (about 10 s on 2 cores),
//! later runs only the three crates of the copy (about 5 s).

mod common;

use common::{explain, grade_path, target_dir, workspace};
use std::path::Path;
use std::process::Command;

/// What the solution's build needs: its crate and its path dependencies.
const PIECES: &[&str] = &["labs/labkit", "solutions/echo_core", "solutions/async_echo"];

#[test]
fn a_clone_under_a_runtimes_name_has_its_own_runtime() {
    let root = target_dir().join("own-runtime");
    let clone = root.join("tokio-2025").join("iomux");
    copy_workspace(&clone);
    // As the binary names it: no `..`.
    let clone = clone.canonicalize().expect("the clone's path");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&clone)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .args(["build", "--quiet", "--release", "--offline"])
        .args(["-p", "async_echo_solution"])
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "building the copy in {} failed",
        clone.display()
    );
    let bin = root.join("target/release/async_echo_solution");
    let program = std::fs::read(&bin).expect("read the built program");
    let clone_path = clone.to_string_lossy();
    assert!(
        program
            .windows(clone_path.len())
            .any(|w| w == clone_path.as_bytes()),
        "the binary no longer holds its workspace's path: this test tests nothing"
    );
    let report = grade_path("async_echo", &bin, &["own_runtime"]);
    assert!(report.all_passed(), "{}", explain(&report));
}

/// The workspace manifest with only the solution's crates as members, the
/// lock file, and the crates' manifests and sources.
fn copy_workspace(clone: &Path) {
    let ws = workspace();
    let manifest = std::fs::read_to_string(ws.join("Cargo.toml")).expect("read Cargo.toml");
    let start = manifest.find("members = [").expect("a members list");
    let end = start + manifest[start..].find(']').expect("the list's end") + 1;
    let members = format!("members = {PIECES:?}");
    let manifest = format!("{}{members}{}", &manifest[..start], &manifest[end..]);
    std::fs::create_dir_all(clone).expect("create the clone");
    write_if_changed(&clone.join("Cargo.toml"), manifest.as_bytes());
    let lock = std::fs::read(ws.join("Cargo.lock")).expect("read Cargo.lock");
    write_if_changed(&clone.join("Cargo.lock"), &lock);
    for piece in PIECES {
        copy_tree(&ws.join(piece), &clone.join(piece));
    }
}

/// Copies the files of `from` that differ, so that cargo rebuilds only what
/// changed.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a folder");
    for entry in std::fs::read_dir(from).expect("read a folder") {
        let entry = entry.expect("a folder entry");
        let kind = entry.file_type().expect("its type");
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else if kind.is_file() {
            let bytes = std::fs::read(entry.path()).expect("read a file");
            write_if_changed(&to.join(entry.file_name()), &bytes);
        }
    }
}

fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(bytes) {
        std::fs::write(path, bytes).expect("write a file");
    }
}
