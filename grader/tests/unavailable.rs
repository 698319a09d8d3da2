//! A machine where io_uring is blocked, simulated with the seccomp filter
//! the `no_ring` check uses, applied to the grader itself (and so to every
//! program it starts): the uring_echo lab is all SKIP with the reason and a
//! non-zero exit status, and other labs are graded as usual.

mod common;

use grader::harness::proc::nr;
use grader::harness::seccomp::{self, Refusal};
use nix::errno::Errno;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// Runs the grader with `io_uring_setup` failing with `errno`.
fn grader_without_io_uring(errno: Errno, args: &[&str]) -> Output {
    let refusal = Refusal {
        syscalls: &[nr::IO_URING_SETUP as u32],
        errno,
    };
    let filter = seccomp::Filter::new(refusal);
    // This test's own build of the grader (debug under `cargo test`).
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("grader"));
    command.args(args);
    // SAFETY: install makes plain prctl calls between fork and exec.
    unsafe {
        command.pre_exec(move || filter.install());
    }
    command.output().expect("the grader runs")
}

#[test]
fn without_io_uring_the_lab_is_skipped_with_the_reason_and_others_are_graded() {
    let _one_grading_at_a_time = common::exclusive();
    let solution = common::program("uring_echo_solution");
    let solution = solution.to_str().unwrap();
    let checks = grader::course::find("uring_echo").unwrap().checks().count();
    for (errno, name) in [(Errno::EPERM, "EPERM"), (Errno::ENOSYS, "ENOSYS")] {
        let out = grader_without_io_uring(errno, &["uring_echo", "--bin", solution]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        assert_ne!(out.status.code(), Some(0), "{name}: {stdout}");
        assert_eq!(
            stdout.matches(" SKIP ").count() + stdout.matches("SKIP\n").count(),
            checks,
            "{name}: every check SKIP:\n{stdout}"
        );
        assert!(
            !stdout.contains(" OK ") && !stdout.contains("FAIL"),
            "{name}:\n{stdout}"
        );
        assert!(
            stdout.contains("io_uring is not available") && stdout.contains(name),
            "{name}: the reason:\n{stdout}"
        );
    }
    let epoll = common::program("epoll_lt_solution");
    let out = grader_without_io_uring(
        Errno::EPERM,
        &[
            "epoll_lt",
            "--bin",
            epoll.to_str().unwrap(),
            "--only",
            "basic_echo,api",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "epoll_lt is unaffected:\n{stdout}");
}
