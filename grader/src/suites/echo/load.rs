//! Load: a client that sends without reading (backpressure), and the lab's
//! number of simultaneous clients under a soft fd limit of 512.

use super::{bulk_outcome, describe_received, discard_all, echo, lines, send, start, start_with};
use crate::check::{Check, Ctx, Failure, Outcome, Verdict, broken, need_fds, secs, within};
use crate::harness::client::{ClientOptions, End};
use crate::harness::proc;
use crate::harness::process::SpawnOptions;
use crate::harness::text::{bytes, thousands};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub(super) const BACKPRESSURE: Check = Check {
    name: "backpressure",
    points: 10,
    title: "a client sends without reading: the server stops reading it (memory stays bounded), serves others meanwhile, then every byte comes back",
    limit: secs(120),
    run: backpressure,
    proven_by: &[
        broken("broken_poll_echo_unbounded", "no backpressure"),
        broken("broken_uring_echo_unbounded", "no backpressure"),
        broken(
            "broken_uring_echo_short_send",
            "the rest of a short write was dropped",
        ),
        broken(
            "broken_uring_echo_reused_buffer",
            "written while it was still being sent",
        ),
    ],
};

fn backpressure(ctx: &Ctx) -> Outcome {
    const TOTAL: usize = 96 << 20;
    const MAX_GROWTH_KIB: u64 = 48 << 10;
    let mut server = start(ctx)?;
    let pid = server.pid();
    let mut other = ctx.connect(&server)?;
    echo(&mut other, b"warm up\n")?;
    let rss_before = proc::rss_kib(pid).unwrap_or(0);

    let mut c = ctx.connect_small(&server)?;
    let data = lines(TOTAL, 11);
    // Phase 1: send without reading until the server stops taking bytes.
    let mut sent = 0;
    let mut last_progress = Instant::now();
    let deadline = within(secs(30));
    while sent < data.len() && last_progress.elapsed() < secs(1) && Instant::now() < deadline {
        match c.send_some(&data[sent..(sent + 256 * 1024).min(data.len())]) {
            Ok(0) => std::thread::sleep(Duration::from_millis(5)),
            Ok(n) => {
                sent += n;
                last_progress = Instant::now();
            }
            Err(end) => {
                return Err(Failure::new(format!(
                    "c{} was sending without reading; after {} the connection broke: {}",
                    c.id,
                    bytes(sent),
                    end.describe()
                ))
                .cause("a client that does not read is not an error: stop reading it until its replies drain")
                .transcript(&[c.id])
                .into());
            }
        }
    }
    let stalled = sent < data.len();
    // Phase 2: another client is served while this one is stuck.
    echo(&mut other, b"served while another client is stuck\n").map_err(|verdict| match verdict {
        Verdict::Fail(failure) => Verdict::Fail(failure.cause(
            "one client that does not read must not stop the others: never block on a write, and keep waiting for every socket",
        )),
        skip => skip,
    })?;
    let peak = proc::peak_rss_kib(pid).unwrap_or(0);
    let growth = peak.saturating_sub(rss_before);
    ctx.note(format!(
        "the server stopped taking bytes after {} (stalled: {stalled}); peak memory grew by {} KiB",
        bytes(sent),
        thousands(growth as usize)
    ));
    server.alive("while a client sent without reading")?;
    if !stalled || growth > MAX_GROWTH_KIB {
        return Err(Failure::new(format!(
            "c{} sent {} without reading any reply; the server {}, and its peak memory grew by {} MiB",
            c.id,
            bytes(sent),
            if stalled { "eventually stopped taking bytes" } else { "took all of it" },
            growth / 1024
        ))
        .expected(format!(
            "the server stops reading this client while 64 KiB of its replies are unsent, so the client's writes block and memory grows by less than {} MiB",
            MAX_GROWTH_KIB / 1024
        ))
        .cause("no backpressure: stop reading a connection while 64 KiB or more of its replies are unsent (leave POLLIN (EPOLLIN) out of its events; with io_uring, submit no receive for it), and read it again once they drain")
        .into());
    }
    // Phase 3: now read; every byte must come back, including the rest.
    let (_, got) = c.exchange(&data[sent..], data.len(), secs(5), within(secs(60)));
    if got.end == End::Complete && got.data == data {
        return server.alive("during the check");
    }
    let mut summary = format!(
        "c{} sent {} without reading, then read while sending the rest; it got {} of {} back",
        c.id,
        bytes(sent),
        bytes(got.data.len()),
        bytes(data.len())
    );
    let (outcome, wrong_bytes) = bulk_outcome(&data, &got, secs(5));
    summary += &outcome;
    let failure =
        Failure::new(summary).expected("every byte back, in order, once the client reads");
    Err(if !wrong_bytes {
        failure
            .cause("after backpressure the server must resume reading once the replies drain, and lose nothing: no byte may be dropped when reading stops or starts again")
            .stalled()
    } else if got.data.len() < data.len() {
        failure.cause(DROPPED_CAUSE)
    } else {
        failure.cause(OVERWRITTEN_CAUSE)
    }
    .into())
}

/// Replies with bytes missing in the middle: the rest of a short write (or
/// send) never went.
const DROPPED_CAUSE: &str = "bytes are missing from the middle of the replies, not from their end: the rest of a short write was dropped. A write or send may take fewer bytes than it was given (it returns, or its completion reports, how many): send the rest, from where it stopped, before anything newer";

/// Replies of the right length but the wrong bytes: a buffer written while
/// the kernel was still sending from it (io_uring's buffer rule).
const OVERWRITTEN_CAUSE: &str = "as many bytes came back as were sent, but not the same ones: a reply buffer was written while it was still being sent. With io_uring the buffer of a send in flight is the kernel's until its completion arrives: collect new replies in another buffer, never in (or over) the one being sent";

pub(super) const SCALE: Check = Check {
    name: "scale",
    points: 8,
    title: "the server, started with a soft fd limit of 512, serves the lab's number of simultaneous clients",
    limit: secs(120),
    run: scale,
    proven_by: &[broken("broken_poll_echo_no_rlimit", "RLIMIT_NOFILE")],
};

fn scale(ctx: &Ctx) -> Outcome {
    let n = ctx.lab.echo().clients;
    need_fds(n)?;
    let options = SpawnOptions {
        nofile_soft: Some(512),
        ..SpawnOptions::default()
    };
    let mut server = start_with(ctx, options)?;
    let mut clients = Vec::with_capacity(n);
    let connect_deadline = within(secs(40));
    for i in 0..n {
        // Spread the clients over several source addresses: each has its own
        // 28,000 ephemeral ports.
        let [_, b, c, d] = ctx.source.octets();
        let source = Ipv4Addr::new(127, b, c, d.wrapping_add((i / 5000) as u8).max(1));
        let client = ctx.connect_with(
            &server,
            ClientOptions {
                source: Some(source),
                ..ClientOptions::default()
            },
        );
        match client {
            Ok(client) => clients.push(client),
            Err(verdict) => {
                discard_all(clients);
                return Err(verdict);
            }
        }
        if Instant::now() > connect_deadline {
            discard_all(clients);
            return Err(Failure::new(format!("connecting {} clients took over 40 s ({} connected)", thousands(n), thousands(i)))
                .cause("the server accepts connections too slowly: accept every pending connection when the listener is ready")
                .into());
        }
    }
    for (i, client) in clients.iter_mut().enumerate() {
        if let Err(verdict) = send(client, format!("client {i}\n").as_bytes()) {
            discard_all(clients);
            return Err(verdict);
        }
    }
    let deadline = within(secs(5 + n as u64 / 1000));
    let mut answered = 0;
    let mut first_failure = None;
    for (i, client) in clients.iter_mut().enumerate() {
        let line = format!("client {i}\n");
        let got = client.recv_exact(line.len(), deadline);
        if got.end == End::Complete && got.data == line.as_bytes() {
            answered += 1;
        } else if first_failure.is_none() {
            first_failure = Some((client.id, got));
        }
    }
    discard_all(clients);
    ctx.note(format!("{answered} of {n} clients echoed"));
    if let Some((id, got)) = first_failure {
        let cause = if (400..=520).contains(&answered) {
            "the server stops near 512 connections, the soft fd limit it was started with: raise the soft RLIMIT_NOFILE to the hard limit at start (accept fails with EMFILE otherwise)"
        } else {
            "serve every connection: accept all pending connections on each wakeup, and handle every ready socket"
        };
        return Err(Failure::new(format!(
            "{} clients were connected at once, each sent one line; {} got it back. c{id} {}",
            thousands(n),
            thousands(answered),
            describe_received(&got)
        ))
        .expected(format!("all {} clients echoed", thousands(n)))
        .cause(cause)
        .transcript(&[id])
        .into());
    }
    server.alive("while serving many clients")
}
