//! The check author's API: a [`Check`] is one declaration (name, points,
//! title, time limit, body, and the broken programs that prove it can
//! fail); a body gets a [`Ctx`] and returns an [`Outcome`], failing with a
//! [`Failure`] that says what happened, what was expected and why.
//!
//! ```ignore
//! pub(super) const QUIT: Check = Check {
//!     name: "quit",
//!     points: 6,
//!     title: "`quit` ends only that connection",
//!     limit: secs(30),
//!     run: quit,
//!     proven_by: &[broken("broken_poll_echo_echo_quit", "`quit` was echoed")],
//! };
//! ```

mod ctx;
mod lab;

use crate::harness::text::thousands;
pub use ctx::{Ctx, Server};
pub use lab::{BadArgs, EchoLab, Idle, Lab, Trigger};
use std::time::{Duration, Instant};

/// A graded check.
pub struct Check {
    /// Its name on the command line (`--only`), in reports and hint files.
    pub name: &'static str,
    pub points: u32,
    /// One line: what the check does.
    pub title: &'static str,
    /// The runner stops the check (and kills its programs) after this long.
    pub limit: Duration,
    pub run: fn(&Ctx) -> Outcome,
    /// The programs that prove the check can fail: each makes the mistake
    /// the check is written for (see [`Proof`]).
    pub proven_by: &'static [Proof],
}

/// A program that must fail a check, and the words its failure must contain
/// (the mistake named). Its name, `broken_<lab>_<fault>`, says which lab it
/// is graded as; it is a binary of the lab family's crate in
/// `grader/broken/`.
pub struct Proof {
    pub program: &'static str,
    pub cause: &'static str,
}

/// A [`Proof`]: `program` fails the check, saying `cause`.
pub const fn broken(program: &'static str, cause: &'static str) -> Proof {
    Proof { program, cause }
}

/// A time limit of `n` seconds.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A lab family's checks, in the order they run, and their hints (the
/// `hints.txt` next to the suite: `## check_name`, then the hint).
pub struct Suite {
    pub name: &'static str,
    pub checks: &'static [Check],
    pub hints: &'static str,
    /// How to tell, once per grade and in seconds, that the program starts
    /// at all (prints its line, connects, stays up): when this fails, no
    /// check is run. The lab's first suite that has one is used.
    pub start: Option<fn(&Ctx) -> Outcome>,
    /// What the machine must offer for these checks to mean anything (a
    /// kernel interface a container may block): `Err` says what is missing
    /// and how to get it, and every check of the lab is then SKIP, never a
    /// pass or a fail.
    pub needs: Option<fn() -> Result<(), String>>,
}

pub type Outcome = Result<(), Verdict>;

/// Why a check did not pass.
#[derive(Debug)]
pub enum Verdict {
    Fail(Failure),
    /// The check cannot run on this machine: why, and how to fix it.
    Skip(String),
}

/// A failed check, told the way a student can act on it.
#[derive(Debug, Default)]
pub struct Failure {
    /// What happened, in one or two sentences.
    pub summary: String,
    /// What the contract expected instead.
    pub expected: Option<String>,
    /// The likely mistake, in one sentence.
    pub cause: Option<String>,
    /// Which clients' transcripts to show (`None`: none; empty: all).
    pub clients: Option<Vec<usize>>,
    /// A connection stopped being served partway: the lab's usual reason
    /// for that (`EchoLab::stall`) is added to the cause.
    pub stalled: bool,
}

impl Failure {
    pub fn new(summary: impl Into<String>) -> Failure {
        Failure {
            summary: summary.into(),
            ..Failure::default()
        }
    }

    /// Marks a failure where a connection stopped being served partway.
    pub fn stalled(mut self) -> Failure {
        self.stalled = true;
        self
    }

    pub fn expected(mut self, text: impl Into<String>) -> Failure {
        self.expected = Some(text.into());
        self
    }

    pub fn cause(mut self, text: impl Into<String>) -> Failure {
        self.cause = Some(text.into());
        self
    }

    /// Show these clients' transcripts (all of them if empty).
    pub fn transcript(mut self, clients: &[usize]) -> Failure {
        self.clients = Some(clients.to_vec());
        self
    }
}

impl From<Failure> for Verdict {
    fn from(failure: Failure) -> Verdict {
        Verdict::Fail(failure)
    }
}

/// Fails with `failure` unless `condition` holds.
pub fn ensure(condition: bool, failure: impl FnOnce() -> Failure) -> Outcome {
    if condition {
        Ok(())
    } else {
        Err(failure().into())
    }
}

/// The grader itself could not do what the check needs (a socket, a pipe,
/// a thread): not the program's fault, and reported as such.
pub fn grader_error(what: impl std::fmt::Display) -> Verdict {
    Failure::new(format!("grader error (please report it): {what}")).into()
}

/// The likely mistake behind a program that stopped at once, from the
/// words describing how it ended.
pub fn start_cause(ending: &str) -> &'static str {
    if ending.contains("not yet implemented") {
        "the lab is not written yet: a todo!() panics as soon as the program reaches it"
    } else if ending.contains("panicked") {
        "a panic at start: its message is above (an unwrap() of an error, an index out of range)"
    } else if ending.contains("killed by") {
        "a crash at start (the signal is named above)"
    } else if ending.contains("exited with code 0") {
        "main() returned: the program must keep running its loop until it is stopped"
    } else {
        "an error at start: its stderr is above"
    }
}

/// The deadline `duration` from now.
pub fn within(duration: Duration) -> Instant {
    Instant::now() + duration
}

/// Skips the check unless the grader may open `connections` client sockets
/// (and a margin for its own files): a machine limit, not the program's.
pub fn need_fds(connections: usize) -> Outcome {
    use nix::sys::resource::{Resource, getrlimit};
    let needed = connections as u64 + 200;
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((0, 0));
    if soft < needed {
        return Err(Verdict::Skip(format!(
            "this check opens {} connections, but the grader may open only {soft} files (RLIMIT_NOFILE); \
             raise the limit, e.g. `ulimit -n {}` (as root, or via /etc/security/limits.conf), and run it again",
            thousands(connections),
            needed.next_power_of_two()
        )));
    }
    Ok(())
}
