//! The registry is complete: every lab of `grader/src/course.rs` has all
//! its pieces (stub, solution, broken programs, handout, contract section,
//! workspace members, fixtures), and the lists kept outside Rust (the
//! Makefile's) say the same as the registry. Nothing here grades anything.

mod common;

use common::{grade_commands, workspace};
use grader::course::LABS;

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace().join(path))
        .unwrap_or_else(|err| panic!("cannot read {path}: {err}"))
}

/// The `name = "..."` of a package's manifest.
fn package_name(dir: &str) -> Option<String> {
    let manifest = std::fs::read_to_string(workspace().join(dir).join("Cargo.toml")).ok()?;
    let line = manifest.lines().find(|l| l.starts_with("name = "))?;
    Some(
        line.trim_start_matches("name = ")
            .trim_matches('"')
            .to_string(),
    )
}

/// The words of the Makefile's `NAME := ...` line.
fn makefile_list(name: &str) -> Vec<String> {
    let makefile = read("Makefile");
    let line = makefile
        .lines()
        .find(|l| l.starts_with(&format!("{name} :=")))
        .unwrap_or_else(|| panic!("the Makefile has no `{name} :=` line"));
    line.split(":=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn every_lab_has_all_its_pieces() {
    let members = read("Cargo.toml");
    let contract = read("docs/CONTRACT.md");
    let mut missing = Vec::new();
    for lab in LABS {
        let family = lab.broken.strip_prefix("broken_").unwrap_or(lab.broken);
        let packages = [
            (format!("labs/{}", lab.name), lab.stub),
            (format!("solutions/{}", lab.name), lab.solution),
            (format!("grader/broken/{family}"), lab.broken),
        ];
        for (dir, package) in packages {
            if package_name(&dir).as_deref() != Some(package) {
                missing.push(format!("{}: package {package} in {dir}", lab.name));
            }
            if !members.contains(&format!("\"{dir}\"")) {
                missing.push(format!("{}: {dir} in the workspace's members", lab.name));
            }
        }
        for path in [lab.handout(), format!("grader/tests/fixtures/{}", lab.name)] {
            if !workspace().join(&path).exists() {
                missing.push(format!("{}: {path}", lab.name));
            }
        }
        if !contract.lines().filter(|l| l.starts_with('#')).any(|l| {
            l.split(|c: char| !c.is_alphanumeric() && c != '_')
                .any(|w| w == lab.name)
        }) {
            missing.push(format!(
                "{}: a heading naming {} in docs/CONTRACT.md",
                lab.name, lab.name
            ));
        }
        for name in lab.correct.iter().filter(|n| n.contains('/')) {
            if !workspace().join(name).exists() {
                missing.push(format!("{}: {name}", lab.name));
            }
        }
    }
    assert!(missing.is_empty(), "missing:\n{}", missing.join("\n"));
}

#[test]
fn the_makefile_lists_the_registry_labs() {
    let registry: Vec<String> = LABS.iter().map(|lab| lab.name.to_string()).collect();
    assert_eq!(
        makefile_list("LABS"),
        registry,
        "the Makefile's LABS must be the registry's labs, in order"
    );
    let bench: Vec<String> = LABS
        .iter()
        .filter(|lab| lab.bench)
        .map(|lab| lab.name.to_string())
        .collect();
    assert_eq!(
        makefile_list("BENCH_LABS"),
        bench,
        "the Makefile's BENCH_LABS must be the registry's labs with `bench: true`"
    );
}

/// The layers of `grader/src/lib.rs`, each using only those before it: a
/// `use` of a later layer is an import circle in the making.
#[test]
fn each_layer_uses_only_the_layers_below_it() {
    const LAYERS: &[(&str, &[&str])] = &[
        (
            "harness",
            &[
                "check",
                "suites",
                "course",
                "runner",
                "report",
                "submission",
                "batch",
                "watch",
            ],
        ),
        (
            "check",
            &[
                "suites",
                "course",
                "runner",
                "report",
                "submission",
                "batch",
                "watch",
            ],
        ),
        (
            "suites",
            &["course", "runner", "report", "submission", "batch", "watch"],
        ),
        (
            "course.rs",
            &["runner", "report", "submission", "batch", "watch"],
        ),
        (
            "report.rs",
            &["suites", "course", "runner", "submission", "batch", "watch"],
        ),
        ("submission.rs", &["runner", "report", "batch", "watch"]),
    ];
    let src = workspace().join("grader/src");
    let mut wrong = Vec::new();
    for (layer, later) in LAYERS {
        let mut files = vec![src.join(layer)];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(
                    std::fs::read_dir(&path)
                        .unwrap()
                        .flatten()
                        .map(|e| e.path()),
                );
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for module in *later {
                    if line.contains(&format!("crate::{module}")) {
                        wrong.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "a layer uses a later one:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn grade_commands_are_parsed_across_lines_and_up_to_their_end() {
    let text = "x\n```\nmake grade LAB=epoll_et CHECK=burst VERBOSE=1   # one (CHECK=a,b)\n```\n\
                try `make grade LAB=poll_echo\n  CHECK=quit,long_line`. Then `make grade LAB=timeouts`.";
    assert_eq!(
        grade_commands(text),
        vec![
            (
                3,
                vec![("LAB", "epoll_et"), ("CHECK", "burst"), ("VERBOSE", "1")]
            ),
            (5, vec![("LAB", "poll_echo"), ("CHECK", "quit,long_line")]),
            (6, vec![("LAB", "timeouts")]),
        ]
    );
}

/// A handout's build order tells students which `CHECK=` set turns green at
/// each step: a renamed or misspelt check must break the build here, not a
/// student's afternoon (`make grade` would grade nothing, or stop at an
/// unknown check).
#[test]
fn every_check_a_handout_names_is_a_check_of_that_lab() {
    let mut wrong = Vec::new();
    for lab in LABS {
        let handout = lab.handout();
        let text = read(&handout);
        let commands = grade_commands(&text);
        if !commands
            .iter()
            .any(|(_, words)| words.contains(&("LAB", lab.name)))
        {
            wrong.push(format!("{handout}: no `make grade LAB={}`", lab.name));
        }
        for (line, words) in commands {
            let Some((_, checks)) = words.iter().find(|(key, _)| *key == "CHECK") else {
                continue;
            };
            let named = words.iter().find(|(key, _)| *key == "LAB");
            let Some(named) = named.and_then(|(_, name)| grader::course::find(name)) else {
                wrong.push(format!(
                    "{handout}:{line}: CHECK={checks} without a LAB= that names a lab"
                ));
                continue;
            };
            for check in checks.split(',').filter(|c| !c.is_empty()) {
                if named.check(check).is_none() {
                    let known: Vec<&str> = named.checks().map(|c| c.name).collect();
                    wrong.push(format!(
                        "{handout}:{line}: `{check}` is not a check of {} (its checks: {})",
                        named.name,
                        known.join(", ")
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
