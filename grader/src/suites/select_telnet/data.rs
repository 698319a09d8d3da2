//! The checks of the copying itself: a round trip, a notification while
//! stdin is idle, both directions at once under backpressure, and every byte
//! value.

use super::session::{PeerReads, STALL, Session, Stop, mismatch, pattern};
use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, secs};
use crate::harness::text::{bytes, first_difference, quote};
use std::time::{Duration, Instant};

/// Bytes each way in the full-duplex check. More than the client's socket
/// buffers can absorb (see `full_duplex`).
const DUPLEX_BYTES: usize = 16 << 20;
/// The contract's "at once", in the notification check.
const PROMPT_LATENCY: Duration = Duration::from_millis(200);

pub(super) const ROUND_TRIP: Check = Check {
    name: "round_trip",
    points: 10,
    title: "a line typed on stdin reaches the server byte for byte, and the server's reply appears on stdout; then the same without a final newline",
    limit: secs(40),
    run: round_trip,
    proven_by: &[broken(
        "broken_select_telnet_crlf",
        "real telnet sends CRLF",
    )],
};

fn round_trip(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    let rounds: [(&[u8], &[u8]); 2] = [
        (
            b"hello, server: this line was typed on stdin\n",
            b"hello, client: this is the server's reply\n",
        ),
        (b"no newline at the end", b"prompt> "),
    ];
    for (i, (typed, reply)) in rounds.into_iter().enumerate() {
        let mark = s.from_peer.len();
        s.type_in(typed);
        let got = s.await_peer(mark, typed.len(), Duration::from_secs(3));
        if got.is_empty() {
            return Err(Failure::new(format!(
                "{} were typed on stdin ({}); the server received nothing within 3 s",
                bytes(typed.len()),
                quote(typed)
            ))
            .expected("the bytes on the socket as soon as they are read from stdin")
            .cause(if i == 0 {
                "stdin is not in the read set, or what is read is not written to the socket (check the write set and the buffer)"
            } else {
                "the bytes are held until a newline: read stdin with one read() of whatever is there (BufRead::lines/read_line wait for \\n)"
            })
            .into());
        }
        if let Some(text) = mismatch("stdin to the server", typed, &got) {
            let cause = if got.windows(2).any(|w| w == b"\r\n") {
                "a \\r was added before the \\n: real telnet sends CRLF, this lab copies bytes unchanged"
            } else {
                "the bytes must be copied unchanged: no translation, no added or dropped bytes"
            };
            return Err(Failure::new(format!("{text}; got {}", quote(&got)))
                .expected(format!("exactly {}", quote(typed)))
                .cause(cause)
                .into());
        }
        let mark = s.from_stdout.len();
        s.send(reply);
        let got = s.await_stdout(mark, reply.len(), Duration::from_secs(3));
        if let Some(text) = mismatch("the server to stdout", reply, &got) {
            let cause = if got.is_empty() && i == 1 {
                "stdout is line-buffered: flush it after each write (a prompt has no newline)"
            } else {
                "the socket is not in the read set, or what is read is not written to stdout unchanged"
            };
            return Err(Failure::new(format!(
                "the server sent {}; on stdout: {}",
                quote(reply),
                if got.is_empty() {
                    "nothing within 3 s".to_string()
                } else {
                    format!("{} ({text})", quote(&got))
                }
            ))
            .expected(format!("exactly {} on stdout", quote(reply)))
            .cause(cause)
            .into());
        }
    }
    Ok(())
}

pub(super) const NOTIFICATION: Check = Check {
    name: "notification",
    points: 14,
    title: "while stdin is idle, a message from the server (a line, then a prompt without a newline) appears on stdout within 200 ms",
    limit: secs(40),
    run: notification,
    proven_by: &[
        broken(
            "broken_select_telnet_blocking_stdin_first",
            "only after the grader typed a line",
        ),
        broken("broken_select_telnet_no_flush", "flush stdout"),
    ],
};

fn notification(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    // Let it settle into its wait, with stdin open and silent.
    s.pump_for(Duration::from_millis(300));
    let messages: [&[u8]; 3] = [
        b"NOTICE: you have new mail\n",
        b"NOTICE: the system goes down in 5 minutes\n",
        b"login: ",
    ];
    let mut latencies = Vec::new();
    for message in messages {
        let mark = s.from_stdout.len();
        s.send(message);
        let sent = Instant::now();
        s.pump(Duration::from_secs(1), STALL, |s| {
            s.from_stdout.len() >= mark + message.len() || s.stdout_eof
        });
        let latency = sent.elapsed();
        let got = s.from_stdout[mark..].to_vec();
        if got.len() < message.len() {
            // Does typing something release it? Then stdin blocked the loop.
            let asleep = s.asleep_in();
            s.type_in(b"\n");
            s.pump(Duration::from_millis(500), STALL, |s| {
                s.from_stdout.len() >= mark + message.len()
            });
            let released = s.from_stdout.len() >= mark + message.len();
            let (after, cause) = if released {
                (
                    " It appeared only after the grader typed a line on stdin.",
                    "the program sleeps in a blocking read of stdin and looks at the socket only after it: put stdin AND the socket in select's read set and sleep in select",
                )
            } else if !message.ends_with(b"\n") {
                (
                    "",
                    "this message has no newline: flush stdout after each write (Rust's stdout and C's stdio buffer until a newline)",
                )
            } else {
                (
                    "",
                    "the socket is not in select's read set while stdin is idle, or what is read is not written to stdout",
                )
            };
            return Err(Failure::new(format!(
                "with stdin idle, the server sent {}; after 1 s stdout had {}.{asleep}{after}",
                quote(message),
                if got.is_empty() {
                    "nothing".to_string()
                } else {
                    quote(&got)
                }
            ))
            .expected("the message on stdout at once, while the user types nothing (within 200 ms)")
            .cause(cause)
            .into());
        }
        if got != message {
            return Err(Failure::new(format!(
                "the server sent {}; stdout showed {}",
                quote(message),
                quote(&got)
            ))
            .expected("the bytes unchanged")
            .into());
        }
        latencies.push(latency);
        s.pump_for(Duration::from_millis(100));
    }
    let worst = latencies.iter().max().copied().unwrap_or_default();
    ctx.note(format!(
        "latencies: {:?}",
        latencies.iter().map(|l| l.as_millis()).collect::<Vec<_>>()
    ));
    ensure(worst <= PROMPT_LATENCY, || {
        Failure::new(format!(
            "with stdin idle, a message from the server took {} ms to appear on stdout",
            worst.as_millis()
        ))
        .expected("within 200 ms")
        .cause("the program wakes up on a timer instead of when the socket is readable: select with no timeout (None) and the socket in the read set")
    })
}

/// What full_duplex expects upstream, and the usual cause when bytes are
/// missing. The same words whether the dropped bytes were in the middle
/// (seen as altered data) or at the end (seen as a short stream): which one
/// a program hits depends on timing, the lesson does not.
const EVERY_BYTE_TYPED: &str = "every byte typed reaches the server, unchanged, in order";
const PARTIAL_WRITE_IGNORED: &str = "a partial write ignored: on a non-blocking socket write() may take only part of the bytes (or fail with EAGAIN when the socket is full) and returns how many it took; keep the rest in a buffer and write it when select says the socket is writable again";

pub(super) const FULL_DUPLEX: Check = Check {
    name: "full_duplex",
    points: 20,
    title: "the server sends 16 MiB before reading anything while 16 MiB are fed on stdin: everything arrives both ways, byte for byte, without a deadlock",
    limit: secs(40),
    run: full_duplex,
    proven_by: &[
        broken("broken_select_telnet_blocking_writes", "deadlock"),
        broken(
            "broken_select_telnet_ignore_partial_writes",
            "partial write",
        ),
    ],
};

fn full_duplex(ctx: &Ctx) -> Outcome {
    // The server talks first and reads only once it has said everything;
    // meanwhile the user types as much. The grader's socket buffers are
    // 64 KiB, but the program's side autotunes (its receive buffer can grow
    // to several MiB here): 16 MiB each way, so that a program that stops
    // reading the socket while it writes really gets stuck.
    let mut s = Session::start(ctx)?;
    let typed = pattern(DUPLEX_BYTES, "stdin");
    let spoken = pattern(DUPLEX_BYTES, "server");
    s.peer_reads = PeerReads::AfterSending;
    s.type_in(&typed);
    s.send(&spoken);
    let stop = s.pump(Duration::from_secs(20), STALL, |s| {
        (s.from_peer.len() >= typed.len() || s.peer_done())
            && (s.from_stdout.len() >= spoken.len() || s.stdout_eof)
    });
    s.pump_for(Duration::from_millis(100));
    let up_ok = s.from_peer == typed;
    let down_ok = s.from_stdout == spoken;
    if up_ok && down_ok {
        return Ok(());
    }
    let mut counts = format!(
        "the server sent {} of {} (it reads nothing before it has sent everything) and received {} of {}; \
         stdin took {} of {}, stdout gave {} of {}",
        bytes(s.peer_sent),
        bytes(spoken.len()),
        bytes(s.from_peer.len()),
        bytes(typed.len()),
        bytes(s.stdin_written),
        bytes(typed.len()),
        bytes(s.from_stdout.len()),
        bytes(spoken.len()),
    );
    if let Some(err) = &s.stdin_error {
        counts += &format!(" (writing to its stdin failed: {err})");
    }
    // Lost or altered bytes, seen in what did arrive.
    let up_prefix = &typed[..s.from_peer.len().min(typed.len())];
    if s.from_peer.len() > typed.len() || s.from_peer != up_prefix {
        let diff = first_difference(&typed, &s.from_peer).unwrap_or_default();
        return Err(Failure::new(format!(
            "the bytes typed on stdin reached the server altered: {diff}. ({counts})"
        ))
        .expected(EVERY_BYTE_TYPED)
        .cause(if s.from_peer.len() > typed.len() {
            "bytes were added: copy stdin to the socket unchanged (no CRLF or UTF-8 translation)"
        } else {
            PARTIAL_WRITE_IGNORED
        })
        .into());
    }
    let down_prefix = &spoken[..s.from_stdout.len().min(spoken.len())];
    if s.from_stdout.len() > spoken.len() || s.from_stdout != down_prefix {
        let diff = first_difference(&spoken, &s.from_stdout).unwrap_or_default();
        return Err(Failure::new(format!(
            "the server's bytes reached stdout altered: {diff}. ({counts})"
        ))
        .expected("every byte the server sent, unchanged, in order")
        .cause("a partial write to stdout, or a lost buffer: write everything read from the socket")
        .into());
    }
    if s.program.exit_status().is_some() {
        return Err(Failure::new(format!(
            "the program ended before the exchange was complete: {counts}"
        ))
        .expected("both directions copied completely; the program runs until the server closes")
        .into());
    }
    let asleep = s.asleep_in();
    if s.from_peer == typed && s.from_stdout.len() < spoken.len() && stop == Stop::Stalled {
        return Err(Failure::new(format!(
            "the last {} the server sent never reached stdout ({counts}).{asleep}",
            bytes(spoken.len() - s.from_stdout.len())
        ))
        .expected("every byte on stdout as soon as it is read from the socket")
        .cause("stdout is buffered: flush it after each write (the end of the data has no newline)")
        .into());
    }
    if s.stdin_written == typed.len() && s.peer_flushed() && s.from_peer.len() < typed.len() {
        return Err(Failure::new(format!(
            "bytes lost: the program took all {} from stdin, but once the server was reading it received only {}, and then nothing for {} s. ({counts}).{asleep}",
            bytes(typed.len()),
            bytes(s.from_peer.len()),
            STALL.as_secs()
        ))
        .expected(EVERY_BYTE_TYPED)
        .cause(PARTIAL_WRITE_IGNORED)
        .into());
    }
    let how = match stop {
        Stop::Stalled => format!("nothing moved for {} s", STALL.as_secs()),
        _ => "the time ran out".to_string(),
    };
    Err(Failure::new(format!("deadlock: {how}. {counts}.{asleep}"))
    .expected("both directions at once: while the socket cannot take more, the program keeps reading it and writing stdout, so the server can finish and start reading")
    .cause("a blocking write to the socket (or writing everything read from stdin before reading the socket again): the program waits for the server to read while the server waits for it to read. Make the socket non-blocking, keep unsent bytes in a buffer, put the socket in the write set only while the buffer is not empty, and stop reading stdin while the buffer is full")
    .into())
}
pub(super) const BINARY: Check = Check {
    name: "binary",
    points: 8,
    title: "all 256 byte values (NUL, \\r, 0xff...) pass unchanged both ways",
    limit: secs(40),
    run: binary,
    proven_by: &[broken("broken_select_telnet_lossy", "from_utf8_lossy")],
};

fn binary(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    let mut up: Vec<u8> = (0..=255u8).collect();
    up.extend((0..=255u8).rev());
    up.extend_from_slice(b"\xff\xfd\x18\xff\xfb\x01\r\n\r\0\x04\x03\x1b[0m\n\xef\xbb\xbf");
    up.extend(
        (0..16).flat_map(|k: u8| (0..=255u8).map(move |b| b.wrapping_mul(31).wrapping_add(k))),
    );
    let mut down: Vec<u8> = up.iter().rev().copied().collect();
    down.extend((0..=255u8).collect::<Vec<_>>());
    s.type_in(&up);
    s.send(&down);
    s.pump(Duration::from_secs(3), STALL, |s| {
        (s.from_peer.len() >= up.len() || s.peer_done())
            && (s.from_stdout.len() >= down.len() || s.stdout_eof)
    });
    s.pump_for(Duration::from_millis(150));
    let cause = "copy bytes, not text: no String/UTF-8 conversion (from_utf8_lossy turns bytes >= 0x80 into U+FFFD), no line reading, no CRLF translation";
    if let Some(text) = mismatch(
        "all 256 byte values, stdin to the server",
        &up,
        &s.from_peer,
    ) {
        return Err(Failure::new(text)
            .expected("every byte unchanged")
            .cause(cause)
            .into());
    }
    if let Some(text) = mismatch(
        "all 256 byte values, the server to stdout",
        &down,
        &s.from_stdout,
    ) {
        return Err(Failure::new(text)
            .expected("every byte unchanged")
            .cause(cause)
            .into());
    }
    Ok(())
}
