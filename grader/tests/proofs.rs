//! Every check of every lab proven, through the registry
//! (`grader/src/course.rs`) and each check's declaration:
//!
//! - the reference solution and every other correct program score full marks;
//! - the stub scores zero at once, and says it is not implemented;
//! - every program in a check's `proven_by` fails that check, with the cause
//!   it declares and the message pinned in `fixtures/<lab>/<program>-<check>.txt`;
//! - a check that no program proves fails the test: a check nobody can fail
//!   is worth nothing.
//!
//! A broken program is graded on the check it proves only, so the proofs
//! stay cheap as the course grows. Each test walks every lab and reports
//! every failure at once; `PROVE_LAB=epoll_et cargo test -p grader --test
//! proofs` walks one lab only.

mod common;

use common::{explain, grade, program};
use grader::check::Suite;
use grader::course::{LABS, Lab};
use grader::report::Status;

/// Runs `each` on every item, then fails with every error at once.
fn all<T>(items: impl IntoIterator<Item = T>, each: impl Fn(T) -> Result<(), String>) {
    let failures: Vec<String> = items.into_iter().filter_map(|i| each(i).err()).collect();
    assert!(
        failures.is_empty(),
        "{} failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The labs to prove: all, or only `$PROVE_LAB`.
fn labs() -> Vec<&'static Lab> {
    let only = std::env::var("PROVE_LAB").ok();
    LABS.iter()
        .filter(|lab| only.as_deref().is_none_or(|name| name == lab.name))
        .collect()
}

fn full_marks(lab: &Lab, name: &str) -> Result<(), String> {
    let report = common::grade_path(lab.name, &program(name), &[]);
    if report.all_passed() && report.score() == lab.max_points() {
        Ok(())
    } else {
        Err(format!(
            "{name} scored {}/{} on {}:\n{}",
            report.score(),
            lab.max_points(),
            lab.name,
            explain(&report)
        ))
    }
}

#[test]
fn every_solution_scores_full_marks() {
    all(labs(), |lab| full_marks(lab, lab.solution));
}

#[test]
fn every_other_correct_program_scores_full_marks() {
    // Written apart from the references (other syscalls, other structure,
    // other languages): the grader grades the contract, not our solution.
    all(
        labs()
            .into_iter()
            .flat_map(|lab| lab.correct.iter().map(move |name| (lab, *name))),
        |(lab, name)| full_marks(lab, name),
    );
}

#[test]
fn every_stub_scores_zero_and_says_why_at_once() {
    all(labs(), |lab| {
        let report = grade(lab.name, lab.stub, &[]);
        // The stub panics at its todo!(): the start probe sees it, the
        // first check quotes it and no other check is run.
        let first_quotes = report
            .checks
            .first()
            .is_some_and(|check| check.message.contains("not yet implemented"));
        let rest_not_run = report.checks.iter().skip(1).all(|check| {
            check.status == Status::Fail
                && check
                    .message
                    .starts_with("not run: the program never started")
        });
        if report.score() == 0 && first_quotes && rest_not_run && report.seconds() < 10.0 {
            Ok(())
        } else {
            Err(format!(
                "the {} stub scored {} in {:.1} s; expected 0, fast, the first check quoting `not yet implemented` and the rest not run:\n{}",
                lab.name,
                report.score(),
                report.seconds(),
                explain(&report)
            ))
        }
    });
}

/// The lab a proof is graded as: its program is named `broken_<lab>_<fault>`.
fn lab_of(program: &str) -> Option<&'static Lab> {
    LABS.iter()
        .filter(|lab| program.starts_with(&format!("broken_{}_", lab.name)))
        .max_by_key(|lab| lab.name.len())
}

/// Every suite once (the echo suite is run by four labs).
fn suites() -> Vec<&'static Suite> {
    let mut suites: Vec<&Suite> = LABS
        .iter()
        .flat_map(|lab| lab.suites.iter().copied())
        .collect();
    suites.sort_by_key(|suite| suite.name);
    suites.dedup_by_key(|suite| suite.name);
    suites
}

#[test]
fn every_check_declares_its_proofs_and_each_names_its_lab() {
    all(suites().iter().flat_map(|suite| suite.checks), |check| {
        let mut problems = Vec::new();
        if check.proven_by.is_empty() {
            problems.push(format!(
                "{}: no program proves it (proven_by is empty)",
                check.name
            ));
        }
        for proof in check.proven_by {
            let Some(lab) = lab_of(proof.program) else {
                problems.push(format!("{}: not named broken_<lab>_<fault>", proof.program));
                continue;
            };
            if lab.check(check.name).is_none() {
                problems.push(format!(
                    "{} proves {}, which {} does not run",
                    proof.program, check.name, lab.name
                ));
            }
            if !is_broken_program(proof.program) {
                problems.push(format!(
                    "{}: no grader/broken/<family>/src/bin/{}.rs",
                    proof.program, proof.program
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    });
}

/// Whether `program` is a binary of one of the crates in `grader/broken/`.
fn is_broken_program(program: &str) -> bool {
    let families = std::fs::read_dir(common::workspace().join("grader/broken")).unwrap();
    families
        .flatten()
        .any(|family| family.path().join(format!("src/bin/{program}.rs")).exists())
}

#[test]
fn every_proof_fails_its_check_with_its_cause() {
    // Each proof once, graded as the lab its name gives (the echo checks
    // are shared by four labs, their proofs are graded as poll_echo).
    let chosen = labs();
    let proofs = suites().into_iter().flat_map(|suite| {
        suite
            .checks
            .iter()
            .flat_map(|check| check.proven_by.iter().map(move |proof| (check, proof)))
    });
    // A check run by two suites (the idle checks of timeouts and
    // async_echo) is proven once.
    let mut seen = std::collections::HashSet::new();
    let proofs = proofs.filter(move |(check, proof)| seen.insert((check.name, proof.program)));
    all(proofs, |(check, proof)| {
        let lab = lab_of(proof.program).ok_or(format!("{}: which lab?", proof.program))?;
        if chosen.iter().all(|l| l.name != lab.name) {
            return Ok(()); // not one of the labs proven this time (PROVE_LAB)
        }
        common::mistake(lab.name, proof.program, check.name, proof.cause)
    });
}
