//! `grader watch`: rebuild and re-grade a lab each time one of its files
//! changes, with a compact report (one line per check, the first failure in
//! full).
//!
//! Changes are noticed with inotify on the lab's directories, so an editor
//! that saves through a swap file and a rename is seen like one that writes
//! in place; the burst of events a save makes is waited out before building.

use crate::course::Lab;
use crate::report::{CheckReport, Status, Style};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What to watch, build and grade.
pub struct Watch {
    pub lab: &'static Lab,
    /// The lab's source directory (watched recursively).
    pub src: PathBuf,
    /// The program the build produces.
    pub bin: PathBuf,
    /// The build command, run through the shell-less argv form.
    pub build: Vec<String>,
    /// Only these checks (all if empty).
    pub only: Vec<String>,
}

/// Quiet time after the last change before building: editors write a file in
/// several steps (swap file, rename, chmod).
const SETTLE: Duration = Duration::from_millis(300);

/// Runs until killed (Ctrl-C).
pub fn run(watch: &Watch) -> Result<(), String> {
    let style = Style::for_stdout();
    loop {
        let inotify = watcher(&watch.src)?;
        round(watch, style);
        say(&format!(
            "watching {} for changes (Ctrl-C to stop)",
            watch.src.display()
        ));
        wait_for_change(&inotify)?;
        say("");
        say(&style.paint("1", "== change seen: rebuilding =="));
    }
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// One build and, if it worked, one grading.
fn round(watch: &Watch, style: Style) {
    let Some((program, args)) = watch.build.split_first() else {
        return;
    };
    let built = Command::new(program).args(args).status();
    match built {
        Ok(status) if status.success() => {}
        Ok(_) => {
            say(&style.paint(
                "1;31",
                &format!(
                    "{} does not compile: 0 points (the compiler's messages are above)",
                    watch.lab.name
                ),
            ));
            return;
        }
        Err(err) => {
            say(&format!("cannot run the build command {program}: {err}"));
            return;
        }
    }
    let mut first_failure: Option<CheckReport> = None;
    let report = crate::grade(watch.lab, &watch.bin, &watch.only, |check| {
        say(&check.line(style));
        if check.status != Status::Pass && first_failure.is_none() {
            first_failure = Some(check.clone());
        }
    });
    if let Some(failure) = first_failure {
        say("");
        say(&style.paint("1", &format!("first failure: {}", failure.name)));
        let mut full = failure.styled(false, style);
        // The check's own line was printed above; keep its message and hint.
        full = full
            .split_once('\n')
            .map_or(String::new(), |(_, rest)| rest.into());
        say(&full);
    }
    say(&report.footer());
}

/// An inotify instance watching `dir` and every directory below it (except
/// `target` and hidden ones).
fn watcher(dir: &Path) -> Result<Inotify, String> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)
        .map_err(|err| format!("cannot start inotify: {err}"))?;
    let flags = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE;
    for dir in directories(dir) {
        inotify
            .add_watch(&dir, flags)
            .map_err(|err| format!("cannot watch {}: {err}", dir.display()))?;
    }
    Ok(inotify)
}

fn directories(root: &Path) -> Vec<PathBuf> {
    let mut found = vec![root.to_path_buf()];
    let mut i = 0;
    while i < found.len() {
        if let Ok(entries) = std::fs::read_dir(&found[i]) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if entry.file_type().is_ok_and(|t| t.is_dir())
                    && !name.starts_with('.')
                    && name != "target"
                {
                    found.push(entry.path());
                }
            }
        }
        i += 1;
    }
    found
}

/// Editors' temporary files: a change to them alone is not a save.
fn is_scratch(name: &str) -> bool {
    name.starts_with(".#")
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".tmp")
        || name == "4913"
}

/// Blocks until a file that matters changed, then until things settle.
fn wait_for_change(inotify: &Inotify) -> Result<(), String> {
    loop {
        let events = inotify
            .read_events()
            .map_err(|err| format!("inotify: {err}"))?;
        let relevant = events.iter().any(|event| {
            event
                .name
                .as_ref()
                .is_none_or(|name| !is_scratch(&name.to_string_lossy()))
        });
        if relevant {
            break;
        }
    }
    settle(inotify);
    Ok(())
}

/// Swallows events until none has come for [`SETTLE`].
fn settle(inotify: &Inotify) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut last = Instant::now();
    loop {
        let left = SETTLE.saturating_sub(last.elapsed());
        if left.is_zero() {
            return;
        }
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        let timeout =
            PollTimeout::try_from(left.as_millis() as i32 + 1).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(0) => return,
            Ok(_) => {
                let _ = inotify.read_events();
                last = Instant::now();
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editors_scratch_files_are_ignored() {
        for name in [".main.rs.swp", "main.rs~", "4913", ".#main.rs"] {
            assert!(is_scratch(name), "{name}");
        }
        assert!(!is_scratch("main.rs"));
        assert!(!is_scratch("Cargo.toml"));
    }
}
