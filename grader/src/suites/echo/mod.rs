//! The echo-server checks, written once for every echo lab (poll_echo,
//! epoll_lt, epoll_et, timeouts). What differs between labs (the readiness
//! API expected while idle, the number of clients) comes from the lab's registry entry ([`crate::course::Lab`]).

use crate::check::{Check, Ctx, Failure, Outcome, Server, Suite, Verdict, broken, ensure, secs};
use crate::check::{need_fds, within};
use crate::harness::client::{Client, ClientOptions, End, Received, probe_connect};
use crate::harness::proc::{self, SyscallState, nr, syscall_name};
use crate::harness::process::SpawnOptions;
use crate::harness::text::{bytes, first_difference, quote, thousands};
use nix::sys::signal::Signal;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Starts the server the way every echo check does, with the lab's extra
/// arguments.
fn start(ctx: &Ctx) -> Result<Server, Verdict> {
    start_with(ctx, SpawnOptions::default())
}

fn start_with(ctx: &Ctx, options: SpawnOptions) -> Result<Server, Verdict> {
    let mut args: Vec<String> = ctx.lab.echo().args.iter().map(|a| a.to_string()).collect();
    args.extend(options.args.iter().cloned());
    ctx.start_server(SpawnOptions { args, ..options })
}

const SHORT: Duration = Duration::from_secs(3);
const TOO_LONG_REPLY: &[u8] = b"ERR line too long\n";

/// The checks every echo lab shares, in the order they run.
pub static SUITE: Suite = Suite {
    name: "echo",
    checks: &[
        BASIC_ECHO,
        QUIT,
        CONCURRENT_CLIENTS,
        BYTE_AT_A_TIME,
        PIPELINED,
        LONG_LINE,
        HALF_CLOSE,
        LINGERING_CLOSE,
        CLIENT_RESET,
        BACKPRESSURE,
        SCALE,
        IDLE_CPU,
        API,
        NONBLOCKING_SOCKETS,
        LOOPBACK_ONLY,
        FD_HYGIENE,
    ],
    hints: include_str!("hints.txt"),
};

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
    Failure::new(summary)
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
fn expect(client: &mut Client, sent: &[u8], expected: &[u8], deadline: Instant) -> Outcome {
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

/// Receives until the server closes, expecting exactly `expected` then EOF.
fn expect_then_eof(
    client: &mut Client,
    sent: &[u8],
    expected: &[u8],
    cause_if_open: &str,
) -> Outcome {
    let got = client.recv_to_end(expected.len() + 64 * 1024, within(SHORT));
    if got.data != expected {
        return Err(mismatch(client, sent, expected, &got).into());
    }
    match got.end {
        End::Eof => Ok(()),
        End::Timeout => Err(Failure::new(format!(
            "c{} sent {}; {}, but the connection stayed open",
            client.id,
            quote(sent),
            if expected.is_empty() {
                "no reply was due"
            } else {
                "got the right replies"
            }
        ))
        .expected("the replies, then the server's FIN (the client reads EOF)")
        .cause(cause_if_open)
        .transcript(&[client.id])
        .into()),
        other => Err(Failure::new(format!(
            "c{} sent {}; got the right replies, then {}",
            client.id,
            quote(sent),
            other.describe()
        ))
        .expected("an orderly close (FIN, the client reads EOF), not a reset")
        .cause("the server closed its socket while the client's input was unread, which makes the kernel send a reset: shutdown(SHUT_WR), read until EOF, then close")
        .transcript(&[client.id])
        .into()),
    }
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
fn connect_many(ctx: &Ctx, server: &Server, n: usize) -> Result<Vec<Client>, Verdict> {
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

// ---------------------------------------------------------------------------
// The checks.

pub const BASIC_ECHO: Check = Check {
    name: "basic_echo",
    points: 5,
    title: "a few lines, one with \\r\\n and one with binary bytes, come back byte for byte",
    limit: secs(30),
    run: basic_echo,
    proven_by: &[broken(
        "broken_poll_echo_strip_cr",
        "\\r before the \\n was dropped",
    )],
};

fn basic_echo(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let mut c = ctx.connect(&server)?;
    let single: [&[u8]; 4] = [
        b"hello\n",
        b"two words, then CR LF\r\n",
        b"\n",
        b"binary \x00\x01\x7f\x80\xfe\xff bytes\n",
    ];
    for line in single {
        echo(&mut c, line)?;
    }
    // Three lines in one write come back as three lines.
    echo(&mut c, b"one\ntwo\r\nthree\n")?;
    server.alive("during the check")
}

pub const QUIT: Check = Check {
    name: "quit",
    points: 6,
    title: "`quit` ends only that connection: earlier replies arrive, `quit` is not echoed, other clients keep being served",
    limit: secs(30),
    run: quit,
    proven_by: &[
        broken("broken_poll_echo_echo_quit", "`quit` was echoed"),
        broken(
            "broken_poll_echo_shutdown_after_write_only",
            "even when there is nothing left to send",
        ),
    ],
};

fn quit(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let mut c1 = ctx.connect(&server)?;
    let mut c2 = ctx.connect(&server)?;
    echo(&mut c2, b"before\n")?;

    let sent = b"a\nb\r\nquit\n";
    send(&mut c1, sent)?;
    let expected = b"a\nb\r\n";
    let got = c1.recv_to_end(64 * 1024, within(SHORT));
    if contains(&got.data, b"quit") {
        return Err(Failure::new(format!(
            "c1 sent {}; {}",
            quote(sent),
            describe_received(&got)
        ))
        .expected(format!(
            "{} and then EOF: `quit` itself is not echoed",
            quote(expected)
        ))
        .cause("`quit` was echoed: check for it before queueing the echo")
        .transcript(&[c1.id])
        .into());
    }
    if got.data != expected {
        return Err(mismatch(&c1, sent, expected, &got).into());
    }
    ensure(got.end == End::Eof, || {
        Failure::new(format!("c1 sent {}; {}", quote(sent), describe_received(&got)))
            .expected(format!("{} and then EOF", quote(expected)))
            .cause("after `quit` the server must send what is pending, then shut down its writing half (shutdown(SHUT_WR)) so the client sees EOF")
            .transcript(&[c1.id])
    })?;
    c1.close();

    // `quit` with CR LF, and words that only look like quit.
    echo(&mut c2, b"quitter\n quit\nQUIT\nquit quit\n")?;
    let mut c3 = ctx.connect(&server)?;
    let sent = b"x\r\nquit\r\n";
    send(&mut c3, sent)?;
    expect_then_eof(
        &mut c3,
        sent,
        b"x\r\n",
        "`quit\\r\\n` is a quit too: compare the line without its \\n and an optional \\r before it",
    )?;
    // `quit` on its own, after every earlier reply has gone out.
    let mut c4 = ctx.connect(&server)?;
    echo(&mut c4, b"first\n")?;
    send(&mut c4, b"quit\n")?;
    expect_then_eof(
        &mut c4,
        b"quit\n",
        b"",
        "`quit` arrived when no reply was pending, and the connection stayed open: the shutdown must happen even when there is nothing left to send",
    )?;
    echo(&mut c2, b"still served\n")?;
    server.alive("after a client quit")
}

pub const CONCURRENT_CLIENTS: Check = Check {
    name: "concurrent_clients",
    points: 8,
    title: "100 clients connected at once send interleaved lines; each gets exactly its own lines back",
    limit: secs(40),
    run: concurrent_clients,
    proven_by: &[broken(
        "broken_poll_echo_serial_blocking",
        "only one client at a time",
    )],
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
                "only one client at a time is served: the server blocks on one socket (accept, read or write) instead of waiting for all of them with the readiness API"
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

pub const BYTE_AT_A_TIME: Check = Check {
    name: "byte_at_a_time",
    points: 6,
    title: "a line sent one byte at a time comes back whole, and nothing comes back before its \\n",
    limit: secs(30),
    run: byte_at_a_time,
    proven_by: &[broken(
        "broken_poll_echo_echo_each_read",
        "a read is not a line",
    )],
};

fn byte_at_a_time(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let mut c = ctx.connect(&server)?;
    let line = b"one byte at a time\n";
    for &byte in &line[..line.len() - 1] {
        send(&mut c, &[byte])?;
        std::thread::sleep(Duration::from_millis(15));
    }
    let early = c.recv_for(Duration::from_millis(250));
    if !early.data.is_empty() || early.end != End::Complete {
        return Err(Failure::new(format!(
            "c{} sent {} one byte at a time, without the final \\n yet; {}",
            c.id,
            quote(&line[..line.len() - 1]),
            describe_received(&early)
        ))
        .expected("nothing until the line is complete, then the whole line")
        .cause("the server echoes each read as it arrives; a read is not a line: keep the bytes until the \\n arrives, then echo the line")
        .transcript(&[c.id])
        .into());
    }
    send(&mut c, b"\n")?;
    expect(&mut c, line, line, within(SHORT))?;

    // A line's end and the next line's start in one write.
    send(&mut c, b"ab")?;
    std::thread::sleep(Duration::from_millis(40));
    send(&mut c, b"c\nde")?;
    expect(&mut c, b"abc\nde", b"abc\n", within(SHORT))?;
    let early = c.recv_for(Duration::from_millis(200));
    ensure(early.data.is_empty() && early.end == End::Complete, || {
        Failure::new(format!(
            "c{} sent \"ab\", then \"c\\nde\"; after \"abc\\n\" it {}",
            c.id,
            describe_received(&early)
        ))
        .expected("\"abc\\n\" only: \"de\" is the start of a line not finished yet")
        .cause("bytes after the last \\n of a read were echoed (or dropped) instead of kept for the next read")
        .transcript(&[c.id])
    })?;
    send(&mut c, b"f\n")?;
    expect(&mut c, b"f\n", b"def\n", within(SHORT))?;
    server.alive("during the check")
}

pub const PIPELINED: Check = Check {
    name: "pipelined",
    points: 8,
    title: "1 MiB of lines written as fast as the socket takes them comes back complete and in order",
    limit: secs(40),
    run: pipelined,
    proven_by: &[broken(
        "broken_poll_echo_one_line_per_read",
        "one read can return many lines",
    )],
};

fn pipelined(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let mut c = ctx.connect_small(&server)?;
    let data = lines(1 << 20, 0);
    let (sent, got) = c.exchange(&data, data.len(), secs(3), within(secs(25)));
    if got.end == End::Complete && got.data == data {
        return server.alive("during the check");
    }
    let mut summary = format!(
        "c{} wrote {} of lines ({} sent) while reading; {}",
        c.id,
        bytes(data.len()),
        bytes(sent),
        if got.data.is_empty() {
            "got nothing back".to_string()
        } else {
            format!("got {} back", bytes(got.data.len()))
        }
    );
    let (outcome, differs) = bulk_outcome(&data, &got, secs(3));
    summary += &outcome;
    let cause = if differs {
        "lines were lost, altered or reordered: one read can return many lines and the end of one; echo every complete line and keep the rest for the next read"
    } else {
        "the server stopped echoing partway: echo every line of each read, keep writing until all replies are sent, and if you stop reading while replies are pending, start again once they drain"
    };
    Err(Failure::new(summary)
        .expected(format!("all {} back, byte for byte", bytes(data.len())))
        .cause(cause)
        .transcript(&[c.id])
        .into())
}

pub const LONG_LINE: Check = Check {
    name: "long_line",
    points: 6,
    title: "a line of exactly 8192 bytes is echoed; 8193 bytes without \\n get `ERR line too long` and an orderly close; others are still served",
    limit: secs(30),
    run: long_line,
    proven_by: &[broken(
        "broken_poll_echo_truncate_long_lines",
        "the long line was echoed",
    )],
};

fn long_line(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let mut c1 = ctx.connect_small(&server)?;
    let mut longest = vec![b'a'; 8191];
    longest.push(b'\n');
    send(&mut c1, &longest)?;
    let got = c1.recv_exact(longest.len(), within(SHORT));
    ensure(got.end == End::Complete && got.data == longest, || {
        Failure::new(format!(
            "c{} sent a line of exactly 8,192 bytes counting its \\n (the longest allowed); {}",
            c1.id,
            describe_received(&got)
        ))
        .expected("the line echoed whole")
        .cause(
            "the limit is 8192 bytes including the \\n: only a line longer than that is rejected",
        )
        .transcript(&[c1.id])
    })?;

    let mut sent = b"short\n".to_vec();
    sent.extend(std::iter::repeat_n(b'x', 8193));
    send(&mut c1, &sent)?;
    let expected = [b"short\n".as_slice(), TOO_LONG_REPLY].concat();
    let got = c1.recv_to_end(64 * 1024, within(SHORT));
    if got.data != expected || got.end != End::Eof {
        let cause = if contains(&got.data, b"xxxxxxxx") {
            "the long line was echoed (or cut and echoed): a line over 8192 bytes gets `ERR line too long` and the connection ends"
        } else if got.data == b"short\n" && got.end == End::Timeout {
            "the server waits for the end of the line: reply as soon as the 8193rd byte arrives without a \\n (the client may never send one)"
        } else if got.data == expected {
            "after `ERR line too long` the server must send what is pending, then shut down its writing half so the client sees EOF"
        } else {
            "reply `ERR line too long\\n` after every earlier reply, then end the connection"
        };
        return Err(Failure::new(format!(
            "c{} sent \"short\\n\" and then 8,193 bytes without \\n; {}",
            c1.id,
            describe_received(&got)
        ))
        .expected(format!("{} and then EOF", quote(&expected)))
        .cause(cause)
        .transcript(&[c1.id])
        .into());
    }
    let mut c2 = ctx.connect(&server)?;
    echo(&mut c2, b"next client\n")?;
    server.alive("after a line that was too long")
}

pub const HALF_CLOSE: Check = Check {
    name: "half_close",
    points: 7,
    title: "after the client shuts down writing, every reply and the unterminated last fragment arrive, then the close",
    limit: secs(40),
    run: half_close,
    proven_by: &[broken("broken_poll_echo_close_on_eof", "fragment")],
};

fn half_close(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
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

pub const LINGERING_CLOSE: Check = Check {
    name: "lingering_close",
    points: 6,
    title: "after `quit`, a client still sending is not reset: the server shuts down writing and discards input until the client closes",
    limit: secs(30),
    run: lingering_close,
    proven_by: &[broken(
        "broken_poll_echo_no_linger",
        "shutdown(SHUT_WR), keep reading and discarding",
    )],
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

pub const CLIENT_RESET: Check = Check {
    name: "client_reset",
    points: 7,
    title: "clients that reset mid-stream (ECONNRESET, and EPIPE after FIN+RST) do not stop the server",
    limit: secs(40),
    run: client_reset,
    proven_by: &[
        broken("broken_poll_echo_exit_on_error", "exited with code"),
        broken("broken_poll_echo_sigpipe_default", "SIGPIPE"),
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

pub const BACKPRESSURE: Check = Check {
    name: "backpressure",
    points: 10,
    title: "a client sends without reading: the server stops reading it (memory stays bounded), serves others meanwhile, then every byte comes back",
    limit: secs(120),
    run: backpressure,
    proven_by: &[broken("broken_poll_echo_unbounded", "no backpressure")],
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
        .cause("no backpressure: leave POLLIN (EPOLLIN) out of the events of a connection with 64 KiB or more of unsent replies, and ask for it again once they drain")
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
    summary += &bulk_outcome(&data, &got, secs(5)).0;
    Err(Failure::new(summary)
        .expected("every byte back, in order, once the client reads")
        .cause("after backpressure the server must resume reading once the replies drain, and lose nothing: no byte may be dropped when reading stops or starts again")
        .into())
}

pub const SCALE: Check = Check {
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

pub const IDLE_CPU: Check = Check {
    name: "idle_cpu",
    points: 5,
    title: "with 100 idle clients the server uses under 0.1 s of CPU in 1 s",
    limit: secs(40),
    run: idle_cpu,
    proven_by: &[
        broken("broken_poll_echo_busy_poll", "busy-waiting"),
        broken("broken_epoll_lt_busy_wait", "busy-waiting"),
    ],
};

fn idle_cpu(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let pid = server.pid();
    let mut clients = connect_many(ctx, &server, 100)?;
    for client in clients.iter_mut() {
        echo(client, b"about to go idle\n")?;
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = proc::cpu_time(pid);
    let window = secs(1);
    std::thread::sleep(window);
    let after = proc::cpu_time(pid);
    server.alive("while clients were idle")?;
    discard_all(clients);
    let (Some(before), Some(after)) = (before, after) else {
        return Err(
            Failure::new("could not read the server's CPU time from /proc/PID/stat").into(),
        );
    };
    let used = after.saturating_sub(before);
    ctx.note(format!("CPU used in 1 s idle: {:.3} s", used.as_secs_f64()));
    ensure(used < Duration::from_millis(100), || {
        Failure::new(format!(
            "with 100 connected, idle clients the server used {:.2} s of CPU in {:.1} s",
            used.as_secs_f64(),
            window.as_secs_f64()
        ))
        .expected("under 0.1 s: a server with nothing to do sleeps")
        .cause("busy-waiting: the readiness call is given a timeout of 0 (or a tiny one) in a loop, or asked for POLLOUT/EPOLLOUT on sockets with nothing to send (they are always writable); wait with no timeout and ask only for what you need")
    })
}

pub const API: Check = Check {
    name: "api",
    points: 6,
    title: "while idle the server sleeps in the lab's readiness call, has one thread and no child processes",
    limit: secs(30),
    run: api,
    proven_by: &[
        broken("broken_poll_echo_uses_epoll", "epoll_wait"),
        broken("broken_poll_echo_thread_per_client", "threads"),
        broken("broken_epoll_lt_thread_per_client", "threads"),
        broken("broken_epoll_lt_uses_ppoll", "ppoll"),
    ],
};

fn api(ctx: &Ctx) -> Outcome {
    let idle = &ctx.lab.idle;
    let mut server = start(ctx)?;
    let pid = server.pid();
    let mut clients = connect_many(ctx, &server, 5)?;
    for client in clients.iter_mut() {
        echo(client, b"then idle\n")?;
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut blocked = Vec::new();
    let mut running = 0;
    let mut max_threads = 0;
    for _ in 0..25 {
        match proc::syscall(pid) {
            Some(SyscallState::Blocked(number)) => blocked.push(number),
            Some(SyscallState::Running) => running += 1,
            None => {}
        }
        max_threads = max_threads.max(proc::threads(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let children = proc::children(pid);
    server.alive("while idle")?;
    discard_all(clients);
    let mut seen: Vec<(u64, usize)> = Vec::new();
    for &number in &blocked {
        match seen.iter_mut().find(|(n, _)| *n == number) {
            Some((_, count)) => *count += 1,
            None => seen.push((number, 1)),
        }
    }
    let asleep: Vec<String> = seen
        .iter()
        .map(|(n, count)| format!("{} x{count}", syscall_name(*n)))
        .collect();
    ctx.note(format!(
        "25 samples: asleep in {}; running {running}; threads: {max_threads}",
        if asleep.is_empty() {
            "nothing".to_string()
        } else {
            asleep.join(", ")
        }
    ));
    ensure(max_threads == 1, || {
        Failure::new(format!("with 5 clients connected, the server has {max_threads} threads"))
            .expected("one thread serving every client")
            .cause("a thread per client (or a thread pool) is what this lab replaces: serve every socket from one loop")
    })?;
    ensure(children.is_empty(), || {
        Failure::new(format!("with 5 clients connected, the server has child processes: {children:?}"))
            .expected("one process, one thread")
            .cause("a process per client (fork) is what this lab replaces: serve every socket from one loop")
    })?;
    if let Some(&wrong) = blocked.iter().find(|n| !idle.syscalls.contains(n)) {
        let cause = match wrong {
            nr::READ | nr::RECVFROM | nr::ACCEPT | nr::ACCEPT4 | nr::WRITE => {
                "the server sleeps in a call on one socket: make every socket non-blocking and sleep only in the readiness call"
            }
            nr::NANOSLEEP | nr::CLOCK_NANOSLEEP => {
                "the server sleeps and retries: let the readiness call do the waiting"
            }
            _ => "",
        };
        return Err(Failure::new(format!(
            "while idle, the server was sleeping in {}",
            syscall_name(wrong)
        ))
        .expected(format!("sleeping in {}", idle.names))
        .cause(if cause.is_empty() {
            idle.how.to_string()
        } else {
            format!("{cause} ({})", idle.how)
        })
        .into());
    }
    ensure(blocked.len() >= 5, || {
        Failure::new(format!(
            "while idle, the server was running in {running} of 25 samples and asleep in only {}",
            blocked.len()
        ))
        .expected(format!("asleep in {} almost all the time", idle.names))
        .cause("busy-waiting: wait with no timeout, and only for the events you need")
    })
}

pub const NONBLOCKING_SOCKETS: Check = Check {
    name: "nonblocking_sockets",
    points: 4,
    title: "the listening socket and every client socket are O_NONBLOCK",
    limit: secs(30),
    run: nonblocking_sockets,
    proven_by: &[broken(
        "broken_poll_echo_blocking_sockets",
        "do not inherit O_NONBLOCK",
    )],
};

fn nonblocking_sockets(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let pid = server.pid();
    let mut clients = connect_many(ctx, &server, 3)?;
    for client in clients.iter_mut() {
        echo(client, b"check my flags\n")?;
    }
    let states = proc::tcp_socket_states(pid);
    let mut listeners = 0;
    let mut others = 0;
    let mut blocking = Vec::new();
    for (fd, target) in proc::fd_targets(pid) {
        let Some(inode) = proc::socket_inode(&target) else {
            continue;
        };
        let Some(&state) = states.get(&inode) else {
            continue;
        };
        let kind = if state == proc::TCP_LISTEN {
            listeners += 1;
            "the listening socket"
        } else {
            others += 1;
            "a client socket"
        };
        let flags = proc::fd_flags(pid, fd).unwrap_or(0);
        if flags & proc::O_NONBLOCK == 0 {
            blocking.push(format!("fd {fd} ({kind}, flags {flags:o})"));
        }
    }
    server.alive("during the check")?;
    discard_all(clients);
    ensure(listeners >= 1 && others >= 3, || {
        Failure::new(format!(
            "with 3 clients connected, /proc/{pid}/fd shows {listeners} listening and {others} connected TCP sockets"
        ))
        .expected("one listening socket and one socket per client")
    })?;
    ensure(blocking.is_empty(), || {
        Failure::new(format!("blocking sockets (no O_NONBLOCK in /proc/PID/fdinfo): {}", blocking.join(", ")))
            .expected("every socket O_NONBLOCK")
            .cause("accepted sockets do not inherit O_NONBLOCK from the listener: call set_nonblocking(true) on the listener and on every accepted socket")
    })
}

pub const LOOPBACK_ONLY: Check = Check {
    name: "loopback_only",
    points: 3,
    title: "the server answers on 127.0.0.1 and refuses connections on 127.0.0.2",
    limit: secs(30),
    run: loopback_only,
    proven_by: &[broken("broken_poll_echo_bind_any", "0.0.0.0")],
};

fn loopback_only(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let mut c = ctx.connect(&server)?;
    echo(&mut c, b"on loopback\n")?;
    let other = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), server.addr.port()));
    let accepted = probe_connect(other, secs(2)).is_ok();
    server.alive("during the check")?;
    ensure(!accepted, || {
        Failure::new(format!("a connection to {other} was accepted"))
            .expected("connection refused: the server listens on 127.0.0.1 only")
            .cause("the socket is bound to 0.0.0.0 (every address, reachable from other machines): bind 127.0.0.1")
    })
}

pub const FD_HYGIENE: Check = Check {
    name: "fd_hygiene",
    points: 5,
    title: "after 500 clients come and go, the server's open fd count is back where it started",
    limit: secs(60),
    run: fd_hygiene,
    proven_by: &[broken("broken_poll_echo_leak_fds", "were never closed")],
};

fn fd_hygiene(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let pid = server.pid();
    let mut first = ctx.connect(&server)?;
    echo(&mut first, b"first\n")?;
    first.discard();
    let baseline = settle_fds(pid, None);
    for batch in 0..10 {
        let mut clients = connect_many(ctx, &server, 50)?;
        for (i, mut client) in clients.drain(..).enumerate() {
            echo(
                &mut client,
                format!("batch {batch} client {i}\n").as_bytes(),
            )?;
            // Leave without waiting for anything: the server must notice and
            // close its socket whichever way the client went.
            match i % 3 {
                0 => client.discard(),
                1 => {
                    send(&mut client, b"quit\n")?;
                    client.close();
                }
                _ => client.close(),
            }
        }
    }
    let after = settle_fds(pid, baseline);
    server.alive("after clients came and went")?;
    let (Some(baseline), Some(after)) = (baseline, after) else {
        return Err(Failure::new("could not count the server's fds in /proc/PID/fd").into());
    };
    ctx.note(format!(
        "open fds: {baseline} before, {after} after 500 clients"
    ));
    ensure(after <= baseline, || {
        Failure::new(format!(
            "after 500 clients came and went (reset, quit, or closed), the server has {after} open fds; it had {baseline} with no client: {} were never closed",
            after - baseline
        ))
        .expected(format!("{baseline} open fds again, within 3 s"))
        .cause("when a connection ends (EOF, error, reset, or the end of a lingering close), close its socket: drop it, and remove it from the set you wait on")
    })
}

/// The fd count once it stops changing (or reaches `target`), within 3 s.
fn settle_fds(pid: i32, target: Option<usize>) -> Option<usize> {
    let deadline = within(SHORT);
    let mut last = proc::open_fds(pid);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = proc::open_fds(pid);
        let reached = matches!((now, target), (Some(n), Some(t)) if n <= t);
        if reached || (target.is_none() && now == last) || Instant::now() >= deadline {
            return now;
        }
        last = now;
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
        assert_eq!(SUITE.checks.iter().map(|c| c.points).sum::<u32>(), 100);
    }
}
