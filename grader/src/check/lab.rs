//! What a check may know of the lab it grades: its registry entry. The
//! entries themselves are in [`crate::course`].

use super::{Check, Suite};
use std::time::Duration;

/// A lab of the course.
pub struct Lab {
    pub name: &'static str,
    /// One line, for `--list` and reports.
    pub summary: &'static str,
    /// How the program must wait while it has nothing to do.
    pub idle: Idle,
    /// Its checks, suite by suite, in the order they run.
    pub suites: &'static [&'static Suite],
    /// For the echo servers: what the shared echo checks expect of this lab.
    pub echo: Option<EchoLab>,
    /// For the labs that run the epoll suite: how every fd must be registered.
    pub trigger: Option<Trigger>,
    /// The student's package, `labs/<name>` (its binary has the same name).
    pub stub: &'static str,
    /// The reference solution's package, `solutions/<name>`.
    pub solution: &'static str,
    /// The package of its broken programs, `grader/broken/<family>`.
    pub broken: &'static str,
    /// Other correct programs, written apart from the reference (binaries of
    /// the workspace, or paths from the workspace root to scripts in other
    /// languages): each must score full marks.
    pub correct: &'static [&'static str],
    /// Whether `make bench LAB=<name>` can add the student's program to the
    /// bench's sweep (it is a line echo server).
    pub bench: bool,
    /// The whole grade's time limit: whatever the program does, the grade
    /// ends within it (checks not started by then are not run, 0 points).
    /// A few times the reference solution's time.
    pub budget: Duration,
}

/// The system calls a lab's program may sleep in while idle, and how the
/// messages and hints talk about them.
pub struct Idle {
    pub syscalls: &'static [u64],
    /// `poll or ppoll`: what messages call them.
    pub names: &'static str,
    /// `poll`: the one call the hints mean by `{api}`.
    pub call: &'static str,
    /// How to use them, for the likely-cause line.
    pub how: &'static str,
}

/// How an epoll lab registers its fds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// No `EPOLLET` anywhere.
    Level,
    /// `EPOLLET` on the listener and every client.
    Edge,
}

/// What the shared echo checks expect of one echo lab.
pub struct EchoLab {
    /// Simultaneous clients the server must serve.
    pub clients: usize,
    /// Extra command-line arguments every echo check starts the server with.
    pub args: &'static [&'static str],
    /// The lab's own numeric flags besides `--port`: the `usage` check tries
    /// each without its value and with one that is not a number.
    pub flags: &'static [&'static str],
    /// Other command lines the lab's contract refuses: tried too.
    pub bad_args: &'static [BadArgs],
    /// The lab's usual reason for a connection that stops being served
    /// partway, added to the likely cause when that happens.
    pub stall: Option<&'static str>,
    /// Echo checks this lab's contract lifts (uring_echo's sockets may
    /// block: io_uring never waits in them): not run, not counted.
    pub lifted: &'static [&'static str],
}

/// A command line the contract calls a usage error.
pub struct BadArgs {
    pub args: &'static [&'static str],
    /// Why, for the likely-cause line when it is not refused.
    pub why: &'static str,
}

impl Lab {
    /// Every check of the lab, in the order they run.
    pub fn checks(&self) -> impl Iterator<Item = &'static Check> + '_ {
        let lifted = self.echo.as_ref().map_or(&[][..], |echo| echo.lifted);
        self.suites
            .iter()
            .flat_map(|suite| suite.checks.iter())
            .filter(move |check| !lifted.contains(&check.name))
    }

    /// Why this machine cannot run the lab's checks (io_uring blocked, say),
    /// from the first of its suites' [`Suite::needs`] that says so.
    pub fn unavailable(&self) -> Option<String> {
        self.suites
            .iter()
            .filter_map(|suite| suite.needs)
            .find_map(|needs| needs().err())
    }

    pub fn check(&self, name: &str) -> Option<&'static Check> {
        self.checks().find(|check| check.name == name)
    }

    /// How the grader tells that the program starts at all.
    pub fn start(&self) -> Option<fn(&super::Ctx) -> super::Outcome> {
        self.suites.iter().find_map(|suite| suite.start)
    }

    pub fn max_points(&self) -> u32 {
        self.checks().map(|check| check.points).sum()
    }

    /// The handout, from the workspace root.
    pub fn handout(&self) -> String {
        format!("docs/labs/{}.md", self.name)
    }

    /// What the echo checks expect of this lab (a grader error if the lab
    /// is not an echo server: the registry test rules that out).
    pub fn echo(&self) -> &EchoLab {
        self.echo
            .as_ref()
            .unwrap_or_else(|| panic!("{} has the echo checks but no echo entry", self.name))
    }
}
