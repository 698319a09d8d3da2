//! `make bench`: the echo servers under many simultaneous clients.
//!
//! The course's claim is that poll's cost grows with the number of fds it
//! watches while epoll's does not. The bench makes it measurable: a load
//! generator ([`load`]) holds I idle connections open and silent while A
//! active clients ping-pong one line each, and reports round trips per
//! second and the RTT percentiles; a sweep ([`sweep`]) does that for every
//! server and every (I, A), counting the server's system calls per round
//! trip ([`syscalls`]) and its memory per idle connection; [`report`] and
//! [`svg`] turn the points into a table, a CSV and a plot.

/// The load generator lives in the grader's harness (the leaderboard uses it too).
pub use grader::harness::pingpong as load;
pub mod report;
pub mod svg;
pub mod sweep;
pub mod syscalls;
