//! Several clients, and the ways a connection ends: clients served side by
//! side, a client's half close, a lingering close after `quit`, and clients
//! that reset their connection.

use super::{
    SHORT, connect_many, contains, describe_received, discard_all, echo, lines, mismatch, send,
    start,
};
use crate::check::{Check, Ctx, Failure, Outcome, Server, Verdict, broken, ensure, secs, within};
use crate::harness::client::End;
use crate::harness::text::{bytes, quote};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

pub(super) const CONCURRENT_CLIENTS: Check = Check {
    name: "concurrent_clients",
    points: 8,
    title: "100 clients connected at once send interleaved lines; each gets exactly its own lines back",
    limit: secs(40),
    run: concurrent_clients,
    proven_by: &[
        broken(
            "broken_poll_echo_serial_blocking",
            "only one client at a time",
        ),
        broken(
            "broken_uring_echo_accept_serial",
            "only one client at a time",
        ),
    ],
};

fn concurrent_clients(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let mut clients = connect_many(ctx, &server, 100)?;
    let mut expected: Vec<Vec<u8>> = vec![Vec::new(); clients.len()];
    // Every client writes before anyone reads: a server that serves one client
    // at a time cannot pass.
    for round in 0..3 {
        for (i, client) in clients.iter_mut().enumerate() {
            let line = format!(
                "client {i:03} round {round} {}\n",
                "x".repeat((i * 7 + round * 13) % 60)
            );
            send(client, line.as_bytes())?;
            expected[i].extend_from_slice(line.as_bytes());
        }
    }
    let deadline = within(secs(5));
    let mut answered = 0;
    let mut first_failure = None;
    for (i, client) in clients.iter_mut().enumerate() {
        let got = client.recv_exact(expected[i].len(), deadline);
        if got.end == End::Complete && got.data == expected[i] {
            answered += 1;
        } else if first_failure.is_none() {
            first_failure = Some((i, got));
        }
    }
    let result: Outcome = match first_failure {
        None => Ok(()),
        Some((i, got)) => {
            let cross_talk = (0..clients.len())
                .filter(|&j| j != i)
                .any(|j| contains(&got.data, format!("client {j:03} ").as_bytes()));
            let cause = if cross_talk {
                "replies reached the wrong client: keep a separate input and output buffer per connection"
            } else if answered <= 1 {
                "only one client at a time is served: the server blocks on one socket (accept, read or write), or accepts the next client only once the previous one has left, instead of serving all of them at once from its one loop"
            } else {
                "some clients were not served: every ready socket must be handled on each wakeup, not just the first one"
            };
            Err(Failure::new(format!(
                "100 clients each sent 3 lines, all before reading; {answered} got all their lines back. c{} {}",
                clients[i].id,
                describe_received(&got)
            ))
            .expected(format!("c{} to get {}", clients[i].id, quote(&expected[i])))
            .cause(cause)
            .transcript(&[clients[i].id])
            .into())
        }
    };
    discard_all(clients);
    result?;
    server.alive("while serving 100 clients")
}

pub(super) const HALF_CLOSE: Check = Check {
    name: "half_close",
    points: 7,
    title: "30 clients that send a line and their FIN at once each get the line, then the close; after a client shuts down writing, every reply and the unterminated last fragment arrive, then the close",
    limit: secs(40),
    run: half_close,
    proven_by: &[
        broken("broken_poll_echo_close_on_eof", "fragment"),
        broken("broken_epoll_et_short_read_drained", "short read"),
    ],
};

fn half_close(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    line_then_fin(ctx, &mut server)?;
    let mut c = ctx.connect_small(&server)?;
    let fragment = b"the last fragment, without newline";
    let mut data = lines(256 * 1024, 3);
    data.extend_from_slice(fragment);
    // Send everything but the fragment while reading, then the fragment and
    // the FIN at once.
    let body = data.len() - fragment.len();
    let (_, got) = c.exchange(&data[..body], body, secs(3), within(secs(20)));
    if got.end != End::Complete || got.data != data[..body] {
        return Err(mismatch(&c, &data[..body], &data[..body], &got).into());
    }
    send(&mut c, fragment)?;
    c.shutdown_write();
    let got = c.recv_to_end(64 * 1024, within(SHORT));
    if got.data == fragment && got.end == End::Eof {
        return server.alive("after a client's EOF");
    }
    let (summary_end, cause) = if got.data.is_empty() && got.end == End::Eof {
        (
            "",
            "the trailing fragment was dropped: at EOF, echo the unterminated last line as it is, then close",
        )
    } else if got.data.is_empty() && got.end.is_reset() {
        (
            "",
            "the server reset the connection at EOF: send the pending replies and the fragment, then close",
        )
    } else if got.data.is_empty() && got.end == End::Timeout {
        (" (the connection stayed open)", SHORT_READ_CAUSE)
    } else if got.data == fragment {
        (
            " (the connection stayed open)",
            "after the client's EOF and the last replies, close the connection",
        )
    } else {
        (
            "",
            "at EOF, send every pending reply and the trailing fragment before closing",
        )
    };
    Err(Failure::new(format!(
        "c{} sent {} of lines, then {} and shut down its writing half; after the lines came back it {}{summary_end}",
        c.id,
        bytes(body),
        quote(fragment),
        describe_received(&got)
    ))
    .expected(format!("{} and then EOF", quote(fragment)))
    .cause(cause)
    .transcript(&[c.id])
    .into())
}

/// Why a server never sees an EOF that came with the last bytes.
const SHORT_READ_CAUSE: &str = "the end of input that came with the last bytes was never read: keep reading until read returns 0 or EAGAIN, never stop at a short read (a FIN already queued raises no new event)";

/// Clients of [`line_then_fin`].
const BACK_TO_BACK: usize = 30;

/// The first half of `half_close`: clients that each send a line and their
/// FIN back to back. The FIN mostly arrives before the server reads the
/// line, in the same readiness event (one edge, with epoll), so a read loop
/// that stops at a short read, taking it for "drained", never reads on to
/// that EOF: no new edge comes for it. One client would show it most of
/// the time; 30 show it every time.
fn line_then_fin(ctx: &Ctx, server: &mut Server) -> Outcome {
    let mut clients = connect_many(ctx, server, BACK_TO_BACK)?;
    let line = |i: usize| format!("a line, then the FIN {i}\n");
    for (i, c) in clients.iter_mut().enumerate() {
        send(c, line(i).as_bytes())?;
        c.shutdown_write();
    }
    let deadline = within(SHORT);
    for (i, c) in clients.iter_mut().enumerate() {
        let line = line(i);
        let got = c.recv_to_end(256, deadline);
        if got.data == line.as_bytes() && got.end == End::Eof {
            continue;
        }
        let still_open = got.data == line.as_bytes() && got.end == End::Timeout;
        let failure = Failure::new(format!(
            "{BACK_TO_BACK} clients each sent a line and shut down their writing half at once; c{} sent {} and its FIN and {}",
            c.id,
            quote(line.as_bytes()),
            describe_received(&got)
        ))
        .expected(format!("{} back, then EOF", quote(line.as_bytes())))
        .transcript(&[c.id]);
        return Err(if still_open {
            failure.cause(SHORT_READ_CAUSE).stalled()
        } else {
            failure.cause("at EOF, send every pending reply before closing")
        }
        .into());
    }
    discard_all(clients);
    server.alive("after clients each sent a line and their FIN at once")
}

pub(super) const LINGERING_CLOSE: Check = Check {
    name: "lingering_close",
    points: 6,
    title: "after `quit`, a client still sending is not reset: the server shuts down writing and discards input until the client closes",
    limit: secs(30),
    run: lingering_close,
    proven_by: &[
        broken(
            "broken_poll_echo_no_linger",
            "shutdown(SHUT_WR), keep reading and discarding",
        ),
        broken(
            "broken_uring_echo_no_linger",
            "shutdown(SHUT_WR), keep reading and discarding",
        ),
    ],
};

fn lingering_close(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let mut c = ctx.connect(&server)?;
    send(&mut c, b"a\nquit\n")?;
    // A real client may still be sending when the server decides to end the
    // connection. Keep sending for a while, as such a client would.
    let junk = [b'j'; 8192];
    let mut got = Vec::new();
    let mut eof = false;
    let mut buf = [0u8; 4096];
    let mut failure = None;
    let until = within(Duration::from_millis(600));
    while Instant::now() < until && failure.is_none() {
        if let Err(end) = c.send_some(&junk) {
            failure = Some(end);
            break;
        }
        loop {
            match c.recv_some(&mut buf) {
                Ok(Some(n)) => got.extend_from_slice(&buf[..n]),
                Ok(None) => break,
                Err(End::Eof) => {
                    eof = true;
                    break;
                }
                Err(end) => {
                    failure = Some(end);
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(end) = failure {
        return Err(Failure::new(format!(
            "c{} sent \"a\\nquit\\n\" and kept sending (as a client that has not read the reply yet may); then {} (after receiving {})",
            c.id,
            end.describe(),
            quote(&got)
        ))
        .expected("\"a\\n\", then EOF, and the client's later bytes silently discarded until it closes")
        .cause("the server closed its socket while input was still arriving, so the kernel answered with a reset (which can destroy unread replies): after `quit`, shutdown(SHUT_WR), keep reading and discarding until the client's EOF, then close")
        .transcript(&[c.id])
        .into());
    }
    ensure(got == b"a\n" && eof, || {
        Failure::new(format!(
            "c{} sent \"a\\nquit\\n\" and kept sending; it got {}{}",
            c.id,
            quote(&got),
            if eof { " and EOF" } else { " and no EOF" }
        ))
        .expected("\"a\\n\" and then EOF (the server's shutdown(SHUT_WR))")
        .cause("after `quit`, send the pending replies, then shutdown(SHUT_WR)")
        .transcript(&[c.id])
    })?;
    c.shutdown_write();
    let rest = c.recv_to_end(1024, within(SHORT));
    ensure(rest.data.is_empty() && rest.end == End::Eof, || {
        Failure::new(format!(
            "after c{} closed its side too, it {}",
            c.id,
            describe_received(&rest)
        ))
        .expected("nothing more: the server closes once the client has closed")
        .transcript(&[c.id])
    })?;
    let mut c2 = ctx.connect(&server)?;
    echo(&mut c2, b"next\n")?;
    server.alive("after a lingering close")
}

pub(super) const CLIENT_RESET: Check = Check {
    name: "client_reset",
    points: 7,
    title: "clients that reset mid-stream (ECONNRESET, and EPIPE after FIN+RST) do not stop the server",
    limit: secs(40),
    run: client_reset,
    proven_by: &[
        broken("broken_poll_echo_exit_on_error", "exited with code"),
        broken("broken_poll_echo_sigpipe_default", "SIGPIPE"),
        broken("broken_uring_echo_reset_crash", "exited with code"),
    ],
};

fn client_reset(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    // 1. A client floods the server without reading, so replies are pending,
    //    then resets: the server's next write or read fails with ECONNRESET.
    let mut c1 = ctx.connect_small(&server)?;
    let data = lines(4 << 20, 5);
    let mut sent = 0;
    let mut last = Instant::now();
    while sent < data.len() && last.elapsed() < Duration::from_millis(300) {
        match c1.send_some(&data[sent..(sent + 65536).min(data.len())]) {
            Ok(0) => std::thread::sleep(Duration::from_millis(2)),
            Ok(n) => {
                sent += n;
                last = Instant::now();
            }
            Err(_) => break,
        }
    }
    c1.reset();
    std::thread::sleep(Duration::from_millis(100));
    let mut c2 = ctx.connect(&server).map_err(|_| {
        died(
            &mut server,
            "a client reset its connection while replies were pending (ECONNRESET)",
        )
    })?;
    echo(&mut c2, b"after a reset\n")
        .map_err(|e| if_dead(&mut server, e, "a client reset its connection (ECONNRESET)"))?;

    // 2. With the server stopped, a client sends lines, its FIN, then a reset.
    //    When the server runs again, writing the replies fails with EPIPE (and
    //    raises SIGPIPE unless it is ignored).
    let mut c3 = ctx.connect(&server)?;
    echo(&mut c3, b"hi\n")?;
    server.program.signal(Signal::SIGSTOP);
    let burst = lines(32 * 1024, 9);
    let sent_ok = c3.send_all(&burst, within(SHORT)).is_ok();
    c3.shutdown_write();
    c3.reset();
    std::thread::sleep(Duration::from_millis(50));
    server.program.signal(Signal::SIGCONT);
    std::thread::sleep(Duration::from_millis(300));
    if !sent_ok {
        ctx.note("could not queue the burst while the server was stopped");
    }
    server
        .alive("after a client sent lines, its FIN and then a reset (EPIPE on the next write)")
        .map_err(with_reset_cause)?;
    let mut c4 = ctx.connect(&server).map_err(|_| {
        died(
            &mut server,
            "a client sent its FIN and then a reset (EPIPE)",
        )
    })?;
    echo(&mut c4, b"still alive\n").map_err(|e| {
        if_dead(
            &mut server,
            e,
            "a client sent its FIN and then a reset (EPIPE)",
        )
    })?;
    server.alive("after clients reset their connections")
}

fn with_reset_cause(verdict: Verdict) -> Verdict {
    match verdict {
        Verdict::Fail(failure) => Verdict::Fail(failure.cause(
            "an error on one connection must end only that connection: ignore SIGPIPE (Rust does by default; C: signal(SIGPIPE, SIG_IGN) or MSG_NOSIGNAL) and treat ECONNRESET or EPIPE from read or write as 'drop this client'",
        )),
        skip => skip,
    }
}

/// The failure to report when a client cannot be served after `event`.
fn died(server: &mut Server, event: &str) -> Verdict {
    match server.alive(&format!("after {event}")) {
        Err(verdict) => with_reset_cause(verdict),
        Ok(()) => Failure::new(format!("after {event}, a new client could not connect"))
            .expected("the server keeps accepting other clients")
            .into(),
    }
}

fn if_dead(server: &mut Server, verdict: Verdict, event: &str) -> Verdict {
    if server.program.exit_status().is_some() {
        died(server, event)
    } else {
        verdict
    }
}
