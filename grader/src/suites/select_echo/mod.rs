//! Checks of select_echo beyond the echo suite: the fd sets rebuilt before
//! every call (the read set for every waiting client, the write set for
//! every client with replies it could not send yet), and `FD_SETSIZE`: fds
//! of 1024 and more are refused with `ERR server full`, never put in a set.

use crate::check::{Check, Ctx, Failure, Outcome, Suite, broken, secs};
use crate::suites::echo::{discard_all, echo};

mod fd_setsize;
mod write_set;

pub static SUITE: Suite = Suite {
    name: "select_echo",
    checks: &[REBUILT_SETS, write_set::WRITE_SET, fd_setsize::FD_SETSIZE],
    hints: include_str!("hints.txt"),
    start: None,
    needs: None,
};

pub const REBUILT_SETS: Check = Check {
    name: "rebuilt_sets",
    points: 8,
    title: "three clients take turns, one line each, then a fourth connects: every line is echoed, so the read set holds every client before every select",
    limit: secs(30),
    run: rebuilt_sets,
    proven_by: &[broken(
        "broken_select_echo_no_rebuild",
        "rebuild the read and write sets",
    )],
};

fn rebuilt_sets(ctx: &Ctx) -> Outcome {
    let mut server = ctx.start()?;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(ctx.connect(&server)?);
    }
    // Each turn, a client that was not ready at the last select speaks.
    let turns = [0, 1, 2, 0, 2, 1];
    let mut story = Vec::new();
    for (turn, &i) in turns.iter().enumerate() {
        let line = format!("turn {turn} from c{}\n", clients[i].id);
        let outcome = echo(&mut clients[i], line.as_bytes());
        story.push(format!("c{}", clients[i].id));
        outcome.map_err(|verdict| not_rebuilt(verdict, &story))?;
    }
    let mut late = ctx.connect(&server)?;
    story.push(format!("a new client c{}", late.id));
    echo(&mut late, b"the late client\n").map_err(|verdict| not_rebuilt(verdict, &story))?;
    discard_all(clients);
    late.discard();
    server.alive("during the check")
}

fn not_rebuilt(verdict: crate::check::Verdict, story: &[String]) -> crate::check::Verdict {
    match verdict {
        crate::check::Verdict::Fail(failure) => Failure {
            summary: format!(
                "clients took turns sending one line each ({}); the last one was not echoed: {}",
                story.join(", then "),
                failure.summary
            ),
            ..failure
        }
        .cause("select() overwrites each set with the fds that were ready, so a set reused from the last call holds only those: rebuild the read and write sets from every connection (and the listener) before each select")
        .into(),
        skip => skip,
    }
}
