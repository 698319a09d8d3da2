//! `stale_timer`: the classic bug of a hand-written reactor. Timers keyed by
//! fd (or a timer not cancelled when its connection ends) fire after the
//! connection is gone, on whichever connection got its fd next.
//!
//! Client A talks, then quits, and the server closes its socket; then client
//! B connects and (the kernel hands out the lowest free fd) gets A's fd. B
//! stays active, a line every 200 ms, well past A's idle deadline: it must
//! never be closed.

use crate::check::{Check, Ctx, Failure, Outcome, Server, Verdict, broken, secs, within};
use crate::harness::client::{Client, End};
use crate::harness::proc;
use crate::harness::process::SpawnOptions;
use crate::harness::text::quote;
use crate::suites::echo::{echo, send};
use std::time::{Duration, Instant};

const IDLE_MS: u64 = 1000;

pub(super) const STALE_TIMER: Check = Check {
    name: "stale_timer",
    points: 8,
    title: "with --idle-timeout-ms 1000, a client quits and the next one gets its fd and stays active (a line every 200 ms) past the first one's deadline: it is never closed",
    limit: secs(40),
    run: stale_timer,
    proven_by: &[broken("broken_async_echo_stale_timer", "closed connection")],
};

fn stale_timer(ctx: &Ctx) -> Outcome {
    let mut server = ctx.start_server(SpawnOptions {
        args: vec!["--idle-timeout-ms".into(), IDLE_MS.to_string()],
        ..SpawnOptions::default()
    })?;
    for _ in 0..3 {
        if let Some(outcome) = attempt(ctx, &mut server)? {
            return outcome;
        }
    }
    Err(Verdict::Skip(
        "three times, the second client did not get the first one's fd on the server; the check could not be made".into(),
    ))
}

/// The server's fd for `client`.
fn server_fd(ctx: &Ctx, server: &Server, client: &Client) -> Option<i32> {
    let port = client.local_port()?;
    proc::tcp_connections(server.pid())
        .into_iter()
        .find(|(_, peer)| *peer.ip() == ctx.source && peer.port() == port)
        .map(|(fd, _)| fd)
}

/// One try: `None` when B did not get A's fd.
fn attempt(ctx: &Ctx, server: &mut Server) -> Result<Option<Outcome>, Verdict> {
    let mut a = ctx.connect(server)?;
    echo(&mut a, b"first client\n")?;
    let fd = server_fd(ctx, server, &a);
    send(&mut a, b"quit\n")?;
    let got = a.recv_to_end(64, within(secs(3)));
    let a_last = Instant::now();
    if got.end != End::Eof {
        return Err(Failure::new(format!(
            "c{} sent `quit` and {}",
            a.id,
            if got.data.is_empty() {
                "the connection stayed open".to_string()
            } else {
                format!("got {}", quote(&got.data))
            }
        ))
        .expected("EOF after `quit`")
        .transcript(&[a.id])
        .into());
    }
    let a_id = a.id;
    a.close();
    // The server closes A's socket once it reads A's EOF.
    let deadline = within(secs(2));
    while fd.is_some()
        && proc::fd_targets(server.pid())
            .iter()
            .any(|(f, _)| Some(*f) == fd)
    {
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut b = ctx.connect(server)?;
    echo(&mut b, b"second client\n")?;
    if fd.is_none() || server_fd(ctx, server, &b) != fd {
        b.discard();
        return Ok(None);
    }
    let fd = fd.unwrap_or(-1);
    // Active until well past A's deadline (A's last byte + 1 s).
    let until = a_last + Duration::from_millis(IDLE_MS + 800);
    let mut k = 0;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        let line = format!("line {k}\n");
        k += 1;
        if let Err(verdict) = echo(&mut b, line.as_bytes()) {
            let at = a_last.elapsed().as_millis();
            let Verdict::Fail(failure) = verdict else {
                return Err(verdict);
            };
            return Ok(Some(Err(Failure {
                summary: format!(
                    "c{a_id} quit and the server closed its socket (fd {fd}); c{} then got fd {fd}, and sent a line every 200 ms; {} ms after c{a_id}'s last byte: {}",
                    b.id,
                    at,
                    failure.summary
                ),
                ..failure
            }
            .expected("the active connection kept open: its idle deadline moves with every line")
            .cause("a timer of the closed connection fired on the new one that got the same fd: cancel a connection's timers when it ends (and key timers by something unique, not by fd)")
            .transcript(&[a_id, b.id])
            .into())));
        }
    }
    b.discard();
    Ok(Some(server.alive("during the check")))
}
