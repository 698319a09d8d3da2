//! Checks of the select_telnet lab.
//!
//! The grader plays both ends of the client: the server (a listener it
//! controls, with small kernel buffers so that nothing hides in them) and the
//! user (pipes for the program's stdin and stdout, driven non-blocking with
//! deadlines). Every wait is bounded; a stuck program fails with what moved
//! before it got stuck.
//!
//! The files: `session.rs` (the harness: the program, its stdin and stdout
//! pipes, the server's socket, the test data), and the checks by theme:
//! `data.rs` (bytes copied both ways), `endings.rs` (end of input, the peer
//! closing, exit codes, a closed stdout), `idle.rs` (an idle program).

use crate::check::{Ctx, Failure, Outcome, Suite, start_cause};
use session::Session;
use std::time::Duration;

mod data;
mod endings;
mod idle;
mod session;

pub static SUITE: Suite = Suite {
    name: "select_telnet",
    checks: &[
        data::ROUND_TRIP,
        data::NOTIFICATION,
        data::FULL_DUPLEX,
        endings::STDIN_EOF,
        endings::EXIT_CODES,
        endings::PEER_RESET,
        idle::IDLE,
        data::BINARY,
        endings::STDOUT_CLOSED,
    ],
    hints: include_str!("hints.txt"),
    start: Some(started),
    needs: None,
};

/// The start every check relies on: the client connects and keeps running
/// (a stub connects and reaches its todo!() at once).
fn started(ctx: &Ctx) -> Outcome {
    let mut session = Session::start(ctx)?;
    std::thread::sleep(Duration::from_millis(200));
    session.program.check_alive().map_err(|ending| {
        Failure::new(format!("the client connected and then stopped: {ending}"))
            .expected("the client keeps running while stdin and the connection are open")
            .cause(start_cause(&ending))
            .into()
    })
}
