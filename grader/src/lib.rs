//! The iomux-labs grader: runs a lab program as a black box and checks it
//! against docs/CONTRACT.md through processes, sockets, pipes and /proc.
//!
//! The layers, each using only those above it:
//! - [`harness`]: programs, /proc, clients, transcripts, text; no lab.
//! - [`check`]: the check author's API (`Check`, `Ctx`, `Failure`, `ensure`).
//! - [`suites`]: the checks, one folder per lab family, with their hints.
//! - [`course`]: the registry of labs, which suites each one runs.
//! - [`runner`]: grades a program: deadlines, reruns, kills.
//! - [`report`]: the report formats (text, JSON, Gradescope); [`platforms`]:
//!   the other course platforms' (GitHub Classroom, PrairieLearn, Autolab).
//! - [`submission`]: building a submission without trusting it.
//! - [`batch`], [`watch`]: grading many submissions, re-grading on save.
//! - [`leaderboard`]: the opt-in load point of a program that passed (never scored).

pub mod batch;
pub mod check;
pub mod course;
pub mod harness;
pub mod leaderboard;
pub mod platforms;
pub mod report;
pub mod runner;
pub mod submission;
pub mod suites;
pub mod watch;

pub use runner::grade;
