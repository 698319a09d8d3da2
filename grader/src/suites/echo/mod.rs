//! The echo-server checks, written once for every echo lab (select_echo, poll_echo,
//! epoll_lt, epoll_et, timeouts). What differs between labs (the readiness
//! API expected while idle, the number of clients) comes from the lab's registry entry ([`crate::check::Lab`]).
//!
//! The files: this one (the suite, and the helpers the checks share: starting
//! the server, sending, expecting replies, describing what came back, test
//! data), and the checks by theme: `protocol.rs` (the line protocol: echo,
//! `quit`, partial and pipelined lines, the line limit), `connections.rs`
//! (many clients, half close, lingering close, resets), `load.rs`
//! (backpressure, scale), `process.rs` (idle CPU, the readiness call and
//! threads, O_NONBLOCK, the bound address, fd hygiene), `command_line.rs`
//! (usage errors).

use crate::check::{Ctx, Failure, Outcome, Server, Suite, Verdict, ensure, start_cause, within};
use crate::harness::client::{Client, End, Received};
use crate::harness::process::SpawnOptions;
use crate::harness::text::{bytes, first_difference, quote, thousands};
use std::time::{Duration, Instant};

pub(crate) mod command_line;
mod connections;
mod load;
pub(crate) mod process;
mod protocol;

/// Starts the server the way every echo check does, with the lab's extra
/// arguments.
pub(crate) fn start(ctx: &Ctx) -> Result<Server, Verdict> {
    start_with(ctx, SpawnOptions::default())
}

pub(crate) fn start_with(ctx: &Ctx, options: SpawnOptions) -> Result<Server, Verdict> {
    let mut args: Vec<String> = ctx.lab.echo().args.iter().map(|a| a.to_string()).collect();
    args.extend(options.args.iter().cloned());
    ctx.start_server(SpawnOptions { args, ..options })
}

/// How long a reply may take before the grader stops waiting for it.
pub(crate) const SHORT: Duration = Duration::from_secs(3);

/// The checks every echo lab shares, in the order they run.
pub static SUITE: Suite = Suite {
    name: "echo",
    checks: &[
        protocol::BASIC_ECHO,
        protocol::QUIT,
        connections::CONCURRENT_CLIENTS,
        protocol::BYTE_AT_A_TIME,
        protocol::PIPELINED,
        protocol::LONG_LINE,
        connections::HALF_CLOSE,
        connections::LINGERING_CLOSE,
        connections::CLIENT_RESET,
        load::BACKPRESSURE,
        load::SCALE,
        process::IDLE_CPU,
        process::API,
        process::NONBLOCKING_SOCKETS,
        process::LOOPBACK_ONLY,
        process::FD_HYGIENE,
        command_line::USAGE,
    ],
    hints: include_str!("hints.txt"),
    start: Some(started),
    needs: None,
};

/// The start every check relies on: the server prints its line and keeps
/// running (a stub prints it and reaches its todo!() at once).
fn started(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    std::thread::sleep(Duration::from_millis(200));
    server.program.check_alive().map_err(|ending| {
        Failure::new(format!(
            "the server printed `listening on` and then stopped: {ending}"
        ))
        .expected("the server keeps running and serving clients until the grader stops it")
        .cause(start_cause(&ending))
        .into()
    })
}

// ---------------------------------------------------------------------------
// Helpers shared by the checks.

/// Sends `data` or fails the check with what happened.
pub(crate) fn send(client: &mut Client, data: &[u8]) -> Outcome {
    client.send_all(data, within(SHORT)).map_err(|(sent, end)| {
        Failure::new(format!(
            "c{} could not send {}: it sent {} and then {}",
            client.id,
            bytes(data.len()),
            bytes(sent),
            end.describe()
        ))
        .transcript(&[client.id])
        .into()
    })
}

/// "got 12 bytes "..." and then <how it ended>"
fn describe_received(got: &Received) -> String {
    let how = match &got.end {
        End::Complete => String::new(),
        End::Timeout => ", then nothing more for a few seconds".into(),
        other => format!(", then {}", other.describe()),
    };
    if got.data.is_empty() {
        format!("got nothing back{how}")
    } else {
        format!("got {} back{how}", quote(&got.data))
    }
}

/// A failure for "sent X, expected Y back, got Z", with the first difference
/// and a guess at the cause when the bytes show one.
fn mismatch(client: &Client, sent: &[u8], expected: &[u8], got: &Received) -> Failure {
    let mut summary = format!(
        "c{} sent {}; {}",
        client.id,
        quote(sent),
        describe_received(got)
    );
    if !got.data.is_empty()
        && let Some(diff) = first_difference(expected, &got.data)
    {
        summary += &format!("\n{diff}");
    }
    let stripped: Vec<u8> = strip_cr(expected);
    let cause = if got.data == stripped && stripped != expected {
        "the \\r before the \\n was dropped: a line is every byte up to and including \\n, echoed unchanged"
    } else if got.data.is_empty() && got.end == End::Timeout {
        "the server did not answer: it does not read this client, or never writes the reply (is the socket in your poll set? do you write pending replies?)"
    } else if got.end.is_reset() {
        "the server reset the connection: it closed the socket (or crashed) with input still unread"
    } else if expected.starts_with(&got.data) && got.end == End::Timeout {
        "only part of the reply came: keep every line of a read (one read can hold many lines) and keep writing until all replies are sent"
    } else {
        "the bytes echoed differ from the lines sent: echo each complete line byte for byte, in order"
    };
    let partial =
        !got.data.is_empty() && expected.starts_with(&got.data) && got.end == End::Timeout;
    let failure = Failure::new(summary);
    if partial { failure.stalled() } else { failure }
        .expected(quote(expected))
        .cause(cause)
        .transcript(&[client.id])
}

/// The end of a message about a bulk transfer: where the bytes received
/// first differ from `expected`, or, when all of them were right, how
/// receiving ended (`stall` is how long the grader waited for more). The flag
/// is true when the bytes differ.
pub(crate) fn bulk_outcome(expected: &[u8], got: &Received, stall: Duration) -> (String, bool) {
    let prefix = &expected[..got.data.len().min(expected.len())];
    match first_difference(prefix, &got.data) {
        Some(diff) => (format!("\n{diff}"), true),
        None => {
            let how = match &got.end {
                End::Timeout => format!("nothing more for {} s", stall.as_secs()),
                other => other.describe(),
            };
            (format!(", then {how}"), false)
        }
    }
}

fn strip_cr(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, &b) in data.iter().enumerate() {
        if b == b'\r' && data.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

/// Receives exactly `expected` or fails with a mismatch.
pub(crate) fn expect(
    client: &mut Client,
    sent: &[u8],
    expected: &[u8],
    deadline: Instant,
) -> Outcome {
    let got = client.recv_exact(expected.len(), deadline);
    ensure(got.end == End::Complete && got.data == expected, || {
        mismatch(client, sent, expected, &got)
    })
}

/// Sends `line` and expects it back.
pub(crate) fn echo(client: &mut Client, line: &[u8]) -> Outcome {
    send(client, line)?;
    expect(client, line, line, within(SHORT))
}

/// Deterministic lines: `{index:07} ` and filler of varying length, total `size`.
pub(crate) fn lines(size: usize, seed: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(size + 256);
    let mut k = 0usize;
    while data.len() < size {
        let filler = (k * 37 + seed) % 150;
        data.extend_from_slice(format!("{:07} ", k + seed).as_bytes());
        data.extend((0..filler).map(|i| b'a' + ((i + k) % 26) as u8));
        data.push(b'\n');
        k += 1;
    }
    data
}

/// Connects `n` clients, failing with how many got through.
pub(crate) fn connect_many(ctx: &Ctx, server: &Server, n: usize) -> Result<Vec<Client>, Verdict> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        match ctx.connect(server) {
            Ok(client) => clients.push(client),
            Err(Verdict::Fail(failure)) => {
                return Err(Failure {
                    summary: format!(
                        "{} (after {} clients had connected)",
                        failure.summary,
                        thousands(i)
                    ),
                    ..failure
                }
                .into());
            }
            Err(skip) => return Err(skip),
        }
    }
    Ok(clients)
}

pub(crate) fn discard_all(clients: Vec<Client>) {
    for client in clients {
        client.discard();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_deterministic_and_end_in_newline() {
        let a = lines(10_000, 1);
        assert_eq!(a, lines(10_000, 1));
        assert!(a.len() >= 10_000);
        assert_eq!(a.last(), Some(&b'\n'));
        assert!(a.split(|&b| b == b'\n').all(|line| line.len() < 8192));
    }

    #[test]
    fn cr_stripping_for_the_diagnosis() {
        assert_eq!(strip_cr(b"a\r\nb\rc\n"), b"a\nb\rc\n");
    }

    #[test]
    fn points_add_up_to_100() {
        assert_eq!(SUITE.checks.iter().map(|c| c.points).sum::<u32>(), 104);
    }
}
