//! Checks of select_echo beyond the echo suite: the fd sets rebuilt before
//! every call (the read set for every waiting client, the write set for
//! every client with replies it could not send yet), and `FD_SETSIZE`: fds
//! of 1024 and more are refused with `ERR server full`, never put in a set.

use crate::check::{Check, Ctx, Failure, Outcome, Suite, broken, secs, within};
use crate::harness::client::End;
use crate::harness::text::bytes;
use crate::suites::echo::{bulk_outcome, discard_all, echo, lines};
use std::time::{Duration, Instant};

mod fd_setsize;

pub static SUITE: Suite = Suite {
    name: "select_echo",
    checks: &[REBUILT_SETS, WRITE_SET, fd_setsize::FD_SETSIZE],
    hints: include_str!("hints.txt"),
    start: None,
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

pub const WRITE_SET: Check = Check {
    name: "write_set",
    points: 8,
    title: "a client with small buffers sends lines without reading until the server stops taking them, then only reads: every byte comes back, written each time select reports the socket writable",
    limit: secs(60),
    run: write_set,
    proven_by: &[broken(
        "broken_select_echo_no_write_set",
        "put the socket in the write set",
    )],
};

fn write_set(ctx: &Ctx) -> Outcome {
    let mut server = ctx.start()?;
    let mut c = ctx.connect_small(&server)?;
    let data = lines(32 << 20, 41);
    // Send without reading until the server stops taking bytes: its replies
    // then fill the buffers and its writes return EAGAIN, with more queued.
    let mut sent = 0;
    let mut last_progress = Instant::now();
    let deadline = within(secs(20));
    while sent < data.len()
        && last_progress.elapsed() < Duration::from_millis(500)
        && Instant::now() < deadline
    {
        match c.send_some(&data[sent..(sent + 256 * 1024).min(data.len())]) {
            Ok(0) => std::thread::sleep(Duration::from_millis(5)),
            Ok(n) => {
                sent += n;
                last_progress = Instant::now();
            }
            Err(_) => break,
        }
    }
    // Then only read: nothing more arrives to wake the server for reading,
    // only room in its send buffer (the rest of the last line goes too).
    let end = data[sent..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(data.len(), |i| sent + i + 1);
    ctx.note(format!(
        "the server stopped taking bytes after {}",
        bytes(sent)
    ));
    let (_, got) = c.exchange(
        &data[sent..end],
        end,
        Duration::from_secs(2),
        within(secs(30)),
    );
    if got.end == End::Complete && got.data == data[..end] {
        return server.alive("during the check");
    }
    let mut summary = format!(
        "c{} sent {} of lines without reading, until the server stopped taking them; then it only read, and got {} back",
        c.id,
        bytes(end),
        bytes(got.data.len())
    );
    summary += &bulk_outcome(&data[..end], &got, Duration::from_secs(2)).0;
    Err(Failure::new(summary)
        .expected("every byte back")
        .cause("replies that did not fit when you wrote them must go out once the client reads: while a connection has unsent replies put the socket in the write set, and write again when select reports it writable (waiting for the next read never comes: backpressure has stopped reading)")
        .transcript(&[c.id])
        .into())
}
