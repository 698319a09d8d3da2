//! The uring_echo lab's own checks, after the echo suite (which it runs
//! without `nonblocking_sockets`: io_uring never waits in a socket call,
//! so a blocking socket is fine). `ring.rs`: the server really runs on a
//! ring (`uses_ring`); `setup.rs`: a machine without io_uring gets one
//! line and exit 1 (`no_ring`).
//!
//! The suite's [`Suite::needs`] probes io_uring before anything runs: on a
//! machine that blocks it, every check of the lab is SKIP with the reason,
//! never a pass or a fail.

use crate::check::Suite;
use crate::harness::uring;

mod ring;
mod setup;

pub static SUITE: Suite = Suite {
    name: "uring_echo",
    checks: &[ring::USES_RING, setup::NO_RING],
    hints: include_str!("hints.txt"),
    start: None,
    needs: Some(uring::available),
};
