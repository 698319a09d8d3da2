//! Building a student's submission without trusting it: the one place where
//! `grader batch` and the Gradescope autograder (`grader build`) turn a
//! submission's sources into a program to grade.
//!
//! - Only the lab's sources are taken: the `.rs` files of its `src/` (or
//!   bare `.rs` files), regular files only. They are built with the lab's
//!   own `Cargo.toml`: a submission whose manifest differs, or that has a
//!   build script, is refused with a clear message, so no code of the
//!   student's runs at build time (no build script, no proc-macro, no new
//!   dependency).
//! - As root, cargo runs as the unprivileged user programs run as (see
//!   [`contain`]): it can write only its target directory and its own
//!   cargo home. The toolchain is linked to a place that user can reach,
//!   and the dependencies are vendored, so the build is offline.
//! - The built program is copied out of the target directory into a folder
//!   only the grader can write.

use crate::course::Lab;
use crate::harness::contain::{self, Credentials};
use crate::harness::process;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A build's time limit.
const BUILD_LIMIT: Duration = Duration::from_secs(600);

/// Builds submissions of one lab in `scratch`.
pub struct Builder {
    lab: &'static Lab,
    /// The course (or student copy) whose lab manifest and path
    /// dependencies are used.
    workspace: PathBuf,
    scratch: PathBuf,
    /// Who cargo runs as; `None`: the grader's own user.
    user: Option<Credentials>,
    /// The toolchain's `bin/` when cargo runs as `user`.
    toolchain: Option<PathBuf>,
}

impl Builder {
    /// Sets up the scratch workspace (and, as root, the toolchain and the
    /// vendored dependencies the unprivileged build needs).
    pub fn new(lab: &'static Lab, workspace: &Path, scratch: &Path) -> Result<Builder, String> {
        let workspace = workspace
            .canonicalize()
            .map_err(|err| format!("no course workspace at {}: {err}", workspace.display()))?;
        mkdir(scratch, 0o755)?;
        let scratch = scratch.canonicalize().map_err(|e| e.to_string())?;
        let user = contain::credentials()?;
        let mut builder = Builder {
            lab,
            workspace,
            scratch,
            user,
            toolchain: None,
        };
        builder.write_workspace()?;
        if let Some(user) = builder.user.clone() {
            builder.toolchain = Some(builder.reachable_toolchain()?);
            builder.vendor()?;
            for dir in [builder.target(), builder.cargo_home()] {
                mkdir(&dir, 0o755)?;
                chown_tree(&dir, &user)?;
            }
            builder.writable(false)?;
        }
        Ok(builder)
    }

    fn ws(&self) -> PathBuf {
        self.scratch.join("ws")
    }

    fn target(&self) -> PathBuf {
        self.scratch.join("target")
    }

    fn cargo_home(&self) -> PathBuf {
        self.scratch.join("cargo-home")
    }

    fn lab_manifest(&self) -> Result<String, String> {
        let path = self
            .workspace
            .join("labs")
            .join(self.lab.name)
            .join("Cargo.toml");
        std::fs::read_to_string(&path)
            .map_err(|err| format!("cannot read the lab's {}: {err}", path.display()))
    }

    /// `ws/`: the course manifest with the lab as its only member, the
    /// course's lock file, the lab's manifest and the path dependencies it
    /// uses, copied (the course may live where the build's user cannot go).
    fn write_workspace(&self) -> Result<(), String> {
        let ws = self.ws();
        mkdir(&ws, 0o755)?;
        let manifest = std::fs::read_to_string(self.workspace.join("Cargo.toml"))
            .map_err(|err| format!("cannot read the course's Cargo.toml: {err}"))?;
        let lab_manifest = self.lab_manifest()?;
        for (name, path) in path_dependencies(&manifest) {
            if uses(&lab_manifest, &name) {
                copy_tree(&self.workspace.join(&path), &ws.join(&path))?;
            }
        }
        write(
            &ws.join("Cargo.toml"),
            &only_member(&manifest, self.lab.name),
        )?;
        // The course's lock, once: the first build trims it to the lab's
        // dependencies (as root, when it vendors them), and the build's user
        // may not write it.
        let lock = self.workspace.join("Cargo.lock");
        if lock.is_file() && !ws.join("Cargo.lock").is_file() {
            copy_file(&lock, &ws.join("Cargo.lock"))?;
        }
        let lab_dir = ws.join("labs").join(self.lab.name);
        mkdir(&lab_dir, 0o755)?;
        write(&lab_dir.join("Cargo.toml"), &lab_manifest)
    }

    /// The toolchain's `bin/`, linked (or copied) next to the scratch
    /// workspace if the build's user cannot run it where it is (rustup
    /// installs it under root's private home).
    fn reachable_toolchain(&self) -> Result<PathBuf, String> {
        let sysroot = Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .map_err(|err| format!("cannot run rustc to find the toolchain: {err}"))?;
        let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
        if contain::others_can_run(&sysroot.join("bin/cargo")) {
            return Ok(sysroot.join("bin"));
        }
        let copy = self.scratch.join("toolchain");
        if !copy.join("bin/cargo").is_file() {
            let _ = std::fs::remove_dir_all(&copy);
            // Hard links cost nothing on the same file system.
            let linked = Command::new("cp")
                .arg("-al")
                .arg(&sysroot)
                .arg(&copy)
                .status()
                .is_ok_and(|s| s.success());
            if !linked {
                let _ = std::fs::remove_dir_all(&copy);
                run_quietly(Command::new("cp").arg("-a").arg(&sysroot).arg(&copy))
                    .map_err(|err| format!("cannot copy the toolchain: {err}"))?;
            }
        }
        if !contain::others_can_run(&copy.join("bin/cargo")) {
            return Err(format!(
                "the toolchain at {} cannot be run by other users: make it readable (chmod -R a+rX)",
                sysroot.display()
            ));
        }
        Ok(copy.join("bin"))
    }

    /// Vendors the dependencies (once), so that the unprivileged build
    /// needs neither the network nor root's cargo home.
    fn vendor(&self) -> Result<(), String> {
        let ws = self.ws();
        let config = ws.join(".cargo/config.toml");
        if config.is_file() && ws.join("vendor").is_dir() {
            return Ok(());
        }
        let vendor = |offline: bool| {
            let mut cargo = Command::new(cargo());
            cargo.current_dir(&ws).args(["vendor", "vendor"]);
            if offline {
                cargo.arg("--offline");
            }
            cargo.stderr(Stdio::piped()).output()
        };
        let output = match vendor(true) {
            Ok(out) if out.status.success() => out,
            _ => vendor(false).map_err(|err| format!("cannot run cargo vendor: {err}"))?,
        };
        if !output.status.success() {
            return Err(format!(
                "cargo vendor failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        mkdir(&ws.join(".cargo"), 0o755)?;
        write(
            &config,
            "[source.crates-io]\nreplace-with = \"vendored-sources\"\n\n[source.vendored-sources]\ndirectory = \"vendor\"\n",
        )
    }

    /// Builds one submission (the folder a student handed in) into
    /// `scratch/bins/<name>/<lab>`, or says why it cannot be graded.
    pub fn build(&self, name: &str, submission: &Path) -> Result<PathBuf, String> {
        let lab = self.lab.name;
        let folder = lab_folder(submission, lab);
        let sources = self.sources(&folder)?;
        let src = self.ws().join("labs").join(lab).join("src");
        let _ = std::fs::remove_dir_all(&src);
        mkdir(&src, 0o755)?;
        for (relative, file) in &sources {
            let to = src.join(relative);
            if let Some(parent) = to.parent() {
                mkdir_all(parent)?;
            }
            copy_file(file, &to)?;
        }
        self.cargo_build()?;
        let bins = self.scratch.join("bins").join(name);
        mkdir_all(&bins)?;
        let bin = bins.join(lab);
        copy_file(&self.target().join("release").join(lab), &bin)?;
        set_mode(&bin, 0o755)?;
        Ok(bin)
    }

    /// The submission's `.rs` files (path under `src/`, file), after the
    /// rules: the lab's own manifest, no build script, regular files.
    fn sources(&self, folder: &Path) -> Result<Vec<(PathBuf, PathBuf)>, String> {
        let lab = self.lab.name;
        if folder.join("build.rs").exists() {
            return Err(format!(
                "refused: the submission has a build script (build.rs). Submit only the .rs files of labs/{lab}/src: \
                 they are built with the lab's own Cargo.toml, and nothing of a submission runs at build time"
            ));
        }
        let manifest = folder.join("Cargo.toml");
        if manifest.exists() {
            let theirs = std::fs::read_to_string(&manifest).unwrap_or_default();
            if let Some(difference) = manifest_difference(&theirs, &self.lab_manifest()?) {
                return Err(format!(
                    "refused: the submitted Cargo.toml is not the lab's ({difference}). Submissions are built with \
                     labs/{lab}/Cargo.toml as handed out, so they cannot add dependencies, a build script or other \
                     settings: submit only src/ (or undo your changes to Cargo.toml)"
                ));
            }
        }
        let root = if folder.join("src").is_dir() {
            folder.join("src")
        } else {
            folder.to_path_buf()
        };
        let recursive = root != folder;
        let mut found = Vec::new();
        collect_rs(&root, &root, recursive, &mut found)?;
        if found.is_empty() {
            return Err(format!(
                "no Rust files found in the submission: submit labs/{lab} (its Cargo.toml and src/), or its src/*.rs files"
            ));
        }
        Ok(found)
    }

    /// Hands the target directory and cargo home to the build's user, or
    /// takes them back: between builds they belong to root, so that a
    /// program being graded (it runs as the same user) cannot plant
    /// anything in the next submission's build.
    fn writable(&self, yes: bool) -> Result<(), String> {
        let Some(user) = &self.user else {
            return Ok(());
        };
        let root = Credentials {
            name: "root".into(),
            uid: nix::unistd::Uid::from_raw(0),
            gid: nix::unistd::Gid::from_raw(0),
        };
        let owner = if yes { user } else { &root };
        chown_tree(&self.target(), owner)?;
        chown_tree(&self.cargo_home(), owner)
    }

    /// `cargo build --release -p <lab>` in the scratch workspace: as the
    /// unprivileged user when root, offline, within [`BUILD_LIMIT`].
    fn cargo_build(&self) -> Result<(), String> {
        self.writable(true)?;
        let built = self.run_cargo();
        self.writable(false)?;
        built
    }

    fn run_cargo(&self) -> Result<(), String> {
        let mut cargo = match &self.toolchain {
            Some(bin) => {
                let mut cargo = Command::new(bin.join("cargo"));
                cargo
                    .env_clear()
                    .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                    .env("RUSTC", bin.join("rustc"))
                    .env("HOME", self.cargo_home())
                    .env("CARGO_HOME", self.cargo_home())
                    .arg("--offline");
                cargo
            }
            None => Command::new(cargo()),
        };
        cargo
            .current_dir(self.ws())
            .env("CARGO_TARGET_DIR", self.target())
            .args(["build", "--quiet", "--release", "-p", self.lab.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Its own group: a build past its limit is killed with its rustcs.
            .process_group(0);
        let user = self.user.clone();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cargo.pre_exec(move || {
                if let Some(user) = &user {
                    contain::drop_privileges(user)?;
                }
                // Out of the terminal's group, so it dies with the grader
                // instead (after the change of user, which clears it).
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                Ok(())
            });
        }
        let log = self.scratch.join("build.log");
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        cargo.stderr(file);
        let mut child = cargo
            .spawn()
            .map_err(|err| format!("cannot run cargo: {err}"))?;
        let status = process::wait_or_kill(&mut child, BUILD_LIMIT);
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        match status {
            Some(status) if status.success() => Ok(()),
            Some(_) => Err(format!("does not compile; the compiler said:\n\n{said}")),
            None => Err(format!(
                "the build did not finish within {} s; the compiler said:\n\n{said}",
                BUILD_LIMIT.as_secs()
            )),
        }
    }
}

/// The submission's lab folder: `labs/<lab>/`, `<lab>/` or the submission.
pub fn lab_folder(submission: &Path, lab: &str) -> PathBuf {
    [submission.join("labs").join(lab), submission.join(lab)]
        .into_iter()
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| submission.to_path_buf())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Where a submitted manifest first differs from the lab's (trailing
/// spaces and blank lines aside); `None` when it does not.
fn manifest_difference(theirs: &str, ours: &str) -> Option<String> {
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let (theirs, ours) = (lines(theirs), lines(ours));
    let at = (0..theirs.len().max(ours.len())).find(|&i| theirs.get(i) != ours.get(i))?;
    let show = |line: Option<&String>| line.map_or("(nothing)".to_string(), |l| format!("`{l}`"));
    Some(format!(
        "line {}: yours has {}, the lab's has {}",
        at + 1,
        show(theirs.get(at)),
        show(ours.get(at))
    ))
}

/// The `name = { path = "..." }` entries of `[workspace.dependencies]`.
fn path_dependencies(manifest: &str) -> Vec<(String, String)> {
    manifest
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once('=')?;
            let path = rest.split("path = \"").nth(1)?.split('"').next()?;
            Some((name.trim().to_string(), path.to_string()))
        })
        .collect()
}

/// Whether the lab's manifest uses the workspace dependency `name`.
fn uses(lab_manifest: &str, name: &str) -> bool {
    lab_manifest.lines().any(|line| {
        line.trim_start().starts_with(&format!("{name}.workspace"))
            || line.trim_start().starts_with(&format!("{name} ="))
    })
}

/// The course manifest with `members = ["labs/<lab>"]`.
fn only_member(manifest: &str, lab: &str) -> String {
    let mut out = String::new();
    let mut in_members = false;
    for line in manifest.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("members") {
            out += &format!("members = [\"labs/{lab}\"]\n");
            in_members = !trimmed.contains(']');
            continue;
        }
        if in_members {
            in_members = !trimmed.starts_with(']');
            continue;
        }
        out += line;
        out.push('\n');
    }
    out
}

/// The `.rs` files under `dir` (regular files; a symbolic link is refused).
fn collect_rs(
    root: &Path,
    dir: &Path,
    recursive: bool,
    found: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|err| format!("cannot read {}: {err}", dir.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        if kind.is_symlink() {
            if path.extension().is_some_and(|x| x == "rs") {
                return Err(format!(
                    "refused: {} is a symbolic link: submit the file itself",
                    relative.display()
                ));
            }
        } else if kind.is_dir() {
            if recursive {
                collect_rs(root, &path, recursive, found)?;
            }
        } else if kind.is_file() && path.extension().is_some_and(|x| x == "rs") {
            found.push((relative, path));
        }
    }
    Ok(())
}

fn mkdir(dir: &Path, mode: u32) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    set_mode(dir, mode)
}

fn mkdir_all(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|err| format!("cannot chmod {}: {err}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|err| format!("cannot write {}: {err}", path.display()))
}

fn copy_file(from: &Path, to: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|err| format!("cannot copy {}: {err}", from.display()))
}

/// Copies a source folder (not its `target/`), regular files and folders.
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    mkdir(to, 0o755)?;
    let entries =
        std::fs::read_dir(from).map_err(|err| format!("cannot read {}: {err}", from.display()))?;
    for entry in entries.flatten() {
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        let to = to.join(entry.file_name());
        if kind.is_dir() && entry.file_name() != "target" {
            copy_tree(&entry.path(), &to)?;
        } else if kind.is_file() {
            copy_file(&entry.path(), &to)?;
        }
    }
    Ok(())
}

fn chown_tree(path: &Path, user: &Credentials) -> Result<(), String> {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(path)
        .status()
        .map_err(|err| format!("cannot run chown: {err}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("chown -R {} failed", path.display()))
}

fn run_quietly(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| e.to_string())?;
    output
        .status
        .success()
        .then_some(())
        .ok_or_else(|| String::from_utf8_lossy(&output.stderr).into_owned())
}
