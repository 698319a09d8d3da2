//! `grader watch` (make watch): re-grades when a file of the lab changes,
//! also when an editor saves through a temporary file and a rename, and not
//! for the editor's scratch files alone.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// Waits for a line containing `needle`; every line seen goes to `seen`.
fn wait_for(lines: &Receiver<String>, needle: &str, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn watch_regrades_after_a_save_by_rename() {
    let stub = common::bin("poll_echo");
    let src = common::target_dir()
        .join("watch-test")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(src.join("src")).unwrap();
    std::fs::write(src.join("src/main.rs"), "fn main() {}\n").unwrap();

    let _lock = common::exclusive();
    let mut child = Command::new(env!("CARGO_BIN_EXE_grader"))
        .args(["watch", "poll_echo", "--src"])
        .arg(&src)
        .arg("--bin")
        .arg(&stub)
        .args(["--only", "basic_echo", "--", "true"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start grader watch");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let first = wait_for(&lines, "watching", &mut seen);

    // An editor's swap file alone is not a save...
    std::fs::write(src.join("src/.main.rs.swp"), "scratch").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let early = lines.try_iter().collect::<Vec<_>>();
    // ...the rename onto main.rs is.
    std::fs::write(src.join("src/main.rs.tmp"), "fn main() { }\n").unwrap();
    std::fs::rename(src.join("src/main.rs.tmp"), src.join("src/main.rs")).unwrap();
    let second =
        wait_for(&lines, "change seen", &mut seen) && wait_for(&lines, "Score: 0/5", &mut seen);

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&src);
    let all = seen.join("\n");
    assert!(first, "no first grading:\n{all}");
    assert!(
        !early.iter().any(|l| l.contains("change seen")),
        "a swap file triggered a rebuild: {early:?}"
    );
    assert!(second, "the rename was not noticed:\n{all}");
    assert!(
        all.contains("basic_echo") && all.contains("first failure"),
        "{all}"
    );
}
