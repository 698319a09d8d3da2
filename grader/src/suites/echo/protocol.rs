//! The line protocol itself: lines echoed byte for byte, `quit`, a line that
//! arrives a byte at a time, many lines in flight at once, and the longest
//! line allowed (and one byte more).

use super::{
    SHORT, bulk_outcome, contains, describe_received, echo, expect, lines, mismatch, send, start,
};
use crate::check::{Check, Ctx, Failure, Outcome, Server, broken, ensure, secs, within};
use crate::harness::client::{Client, End};
use crate::harness::text::{bytes, quote};
use std::time::Duration;

const TOO_LONG_REPLY: &[u8] = b"ERR line too long\n";

pub(super) const BASIC_ECHO: Check = Check {
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

pub(super) const QUIT: Check = Check {
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

pub(super) const BYTE_AT_A_TIME: Check = Check {
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

pub(super) const PIPELINED: Check = Check {
    name: "pipelined",
    points: 8,
    title: "1 MiB of lines written as fast as the socket takes them comes back complete and in order",
    limit: secs(40),
    run: pipelined,
    proven_by: &[
        broken(
            "broken_poll_echo_one_line_per_read",
            "one read can return many lines",
        ),
        broken("broken_async_echo_lost_wakeup", "a lost wake-up"),
    ],
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
    let failure = Failure::new(summary);
    let (failure, cause) = if differs {
        (
            failure,
            "lines were lost, altered or reordered: one read can return many lines and the end of one; echo every complete line and keep the rest for the next read",
        )
    } else {
        (
            failure.stalled(),
            "the server stopped echoing partway: echo every line of each read, keep writing until all replies are sent, and if you stop reading while replies are pending, start again once they drain",
        )
    };
    Err(failure
        .expected(format!("all {} back, byte for byte", bytes(data.len())))
        .cause(cause)
        .transcript(&[c.id])
        .into())
}

pub(super) const LONG_LINE: Check = Check {
    name: "long_line",
    points: 6,
    title: "a line of exactly 8192 bytes is echoed; 8193 bytes without \\n, or 8192 bytes of text and then \\n, get `ERR line too long` and an orderly close; others are still served",
    limit: secs(30),
    run: long_line,
    proven_by: &[
        broken(
            "broken_poll_echo_truncate_long_lines",
            "the long line was echoed",
        ),
        broken(
            "broken_poll_echo_newline_after_limit",
            "because its 8193rd byte is a \\n",
        ),
    ],
};

fn long_line(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let mut c1 = ctx.connect_small(&server)?;
    let mut longest = vec![b'a'; 8191];
    longest.push(b'\n');
    send(&mut c1, &longest)?;
    let got = c1.recv_exact(longest.len(), within(SHORT));
    ensure(got.end == End::Complete && got.data == longest, || {
        let failure = Failure::new(format!(
            "c{} sent a line of exactly 8,192 bytes counting its \\n (the longest allowed); {}",
            c1.id,
            describe_received(&got)
        ))
        .expected("the line echoed whole");
        if got.end == End::Timeout && longest.starts_with(&got.data) {
            // Not refused (no ERR): the line, sent in many pieces through
            // small buffers, was never read or written to its end.
            failure
                .cause("the line (8 KiB through small socket buffers, so it arrives in pieces) was never all read, or its echo never all written: keep reading until the \\n comes, and keep writing until the whole reply is sent")
                .stalled()
        } else {
            failure.cause(
                "the limit is 8192 bytes including the \\n: only a line longer than that is rejected",
            )
        }
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
    server.alive("after a line that was too long")?;
    newline_as_8193rd_byte(ctx, &server)?;
    server.alive("after a line that was too long")
}

/// The edge of the limit: 8192 bytes of text and then the `\n`, 8193 bytes
/// in all. The line has not ended within its first 8192 bytes, so it is too
/// long, whatever its 8193rd byte is.
fn newline_as_8193rd_byte(ctx: &Ctx, server: &Server) -> Outcome {
    let mut c = ctx.connect_small(server)?;
    let mut line = vec![b'b'; 8192];
    line.push(b'\n');
    send(&mut c, &line)?;
    let got = c.recv_to_end(64 * 1024, within(SHORT));
    if got.data == TOO_LONG_REPLY && got.end == End::Eof {
        return Ok(());
    }
    let cause = if contains(&got.data, b"bbbbbbbb") {
        "the line was echoed because its 8193rd byte is a \\n: the 8192 bytes of the limit count the \\n, so 8192 bytes of text and then \\n is too long"
    } else {
        "reply `ERR line too long\\n` as soon as the 8193rd byte of a line arrives, whatever that byte is, then end the connection"
    };
    Err(Failure::new(format!(
        "c{} sent a line of 8,193 bytes: 8,192 bytes of text, then \\n; {}",
        c.id,
        describe_received(&got)
    ))
    .expected(format!("{} and then EOF", quote(TOO_LONG_REPLY)))
    .cause(cause)
    .transcript(&[c.id])
    .into())
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
