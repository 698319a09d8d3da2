//! Idle connections: closed on time with `BYE idle` (a silent one, one
//! gone quiet after a line), and never while bytes keep moving (a chatty
//! client, one in the lingering close).

use super::{BYE, CONTRACT_LATE, EARLY, NEVER_MS, SLACK, ms, secs_f, start_timed};
use crate::check::{Check, Ctx, Failure, Outcome, Server, Verdict, broken, ensure, secs, within};
use crate::harness::client::{Client, End};
use crate::harness::text::quote;
use crate::suites::echo::{echo, send};
use std::time::{Duration, Instant};

/// The idle timeout of the single-connection checks.
pub(super) const IDLE_MS: u64 = 300;

/// How a client's connection ended, seen by the grader.
struct Closing {
    data: Vec<u8>,
    end: End,
    /// When the grader saw the EOF or the reset.
    at: Option<Instant>,
    /// The last time the grader found the connection still open.
    seen_open: Instant,
}

/// Reads every client (non-blocking, every 2 ms) until each has been closed
/// by the server or `until` passes.
fn watch_closes(clients: &mut [&mut Client], until: Instant) -> Vec<Closing> {
    let mut closings: Vec<Closing> = clients
        .iter()
        .map(|_| Closing {
            data: Vec::new(),
            end: End::Timeout,
            at: None,
            seen_open: Instant::now(),
        })
        .collect();
    let mut buf = [0u8; 4096];
    loop {
        let mut open = 0;
        for (client, closing) in clients.iter_mut().zip(closings.iter_mut()) {
            if closing.at.is_some() {
                continue;
            }
            let polled = Instant::now();
            loop {
                match client.recv_some(&mut buf) {
                    Ok(Some(n)) => closing.data.extend_from_slice(&buf[..n]),
                    Ok(None) => {
                        closing.seen_open = polled;
                        open += 1;
                        break;
                    }
                    Err(end) => {
                        closing.end = end;
                        closing.at = Some(Instant::now());
                        break;
                    }
                }
            }
        }
        if open == 0 || Instant::now() >= until {
            return closings;
        }
        std::thread::sleep(ms(2));
    }
}

/// The two ends of a connection's last activity as the grader knows them:
/// the server's last byte moved no earlier than `after` (the grader had not
/// sent its last bytes before) and no later than `before` (the grader had
/// received the last reply, or had connected, by then).
#[derive(Clone, Copy)]
struct LastByte {
    after: Instant,
    before: Instant,
}

/// What is wrong with an idle close, if anything. The judgement uses only
/// what the grader knows for sure, so that its own delays (a thread waiting
/// for a CPU) can never make a correct server fail:
/// - early: seen closed less than N - [`EARLY`] after the earliest moment the
///   last byte can have moved;
/// - late: seen *still open* more than N + 100 ms + [`SLACK`] after the latest
///   moment the last byte can have moved.
fn judge_idle_close(
    who: &str,
    closing: &Closing,
    last: LastByte,
    idle: Duration,
) -> Option<Failure> {
    let latest = idle + CONTRACT_LATE;
    let window = format!(
        "`BYE idle\\n`, then the close, between {} and {} after the last byte moved (the grader allows {} ms more for its own delays)",
        secs_f(idle),
        secs_f(latest),
        SLACK.as_millis()
    );
    let Some(at) = closing.at else {
        let got = if closing.data.is_empty() {
            String::new()
        } else {
            format!(" (it received {})", quote(&closing.data))
        };
        return Some(
            Failure::new(format!(
                "{who}; the connection was still open {} after that{got}",
                secs_f(closing.seen_open.saturating_duration_since(last.before))
            ))
            .expected(window)
            .cause("no idle timeout: remember when a byte last moved on each connection, compute the wait's timeout from the earliest deadline, and close connections whose deadline has passed"),
        );
    };
    let delay = at.saturating_duration_since(last.before);
    let how = match &closing.end {
        End::Eof => "closed (EOF)".to_string(),
        other => other.describe(),
    };
    let summary = format!(
        "{who}; {} after that it received {} and the connection was {how}",
        secs_f(delay),
        if closing.data.is_empty() {
            "nothing".to_string()
        } else {
            quote(&closing.data)
        }
    );
    if at.saturating_duration_since(last.after) + EARLY < idle {
        return Some(
            Failure::new(summary)
                .expected(window)
                .cause("closed too early: the idle deadline is last activity + N, refreshed whenever a byte is read or written (timed from accept only until the first byte)"),
        );
    }
    let open_for = closing.seen_open.saturating_duration_since(last.before);
    if open_for > latest + SLACK {
        return Some(
            Failure::new(format!(
                "{summary}; it was still open {} after the last byte",
                secs_f(open_for)
            ))
            .expected(window)
            .cause("closed late: the idle check runs too rarely (a periodic scan, or only on ticks); make the wait's timeout end at the earliest idle deadline, and close what is due after every wait"),
        );
    }
    if closing.data != BYE {
        return Some(Failure::new(summary).expected(window).cause(
            "before closing an idle connection, write exactly `BYE idle\\n` to it (one attempt)",
        ));
    }
    None
}

pub(crate) const IDLE_CLOSE: Check = Check {
    name: "idle_close",
    points: 8,
    title: "with --idle-timeout-ms 300, a silent client and one that went quiet after a line each get `BYE idle` and the close 300-400 ms after their last byte",
    limit: secs(30),
    run: idle_close,
    proven_by: &[
        broken("broken_timeouts_late_close", "closed late"),
        broken("broken_timeouts_not_refreshed", "closed too early"),
        broken("broken_async_echo_no_bye", "BYE idle"),
    ],
};

fn idle_close(ctx: &Ctx) -> Outcome {
    let mut server = start_timed(ctx, IDLE_MS, NEVER_MS)?;
    paced(
        &mut server,
        "a line 150 ms after connecting",
        "after closing idle connections",
        |server| idle_close_attempt(ctx, server),
    )
}

/// One try of `idle_close` (see [`paced`] for what it returns): c2's line
/// must go out well before c2's own deadline, or a correct server closes it
/// first.
fn idle_close_attempt(ctx: &Ctx, server: &Server) -> Result<Option<String>, Verdict> {
    let idle = ms(IDLE_MS);
    // A silent client is timed from its accept, which comes after the
    // connect started and (unless the server is slow) right after it ended.
    let connecting = Instant::now();
    let mut c1 = ctx.connect(server)?;
    let t1 = LastByte {
        after: connecting,
        before: Instant::now(),
    };
    let c2_connecting = Instant::now();
    let mut c2 = ctx.connect(server)?;
    std::thread::sleep((t1.before + ms(150)).saturating_duration_since(Instant::now()));
    if let Some(why) = fell_behind(c2_connecting, "c2's line") {
        c1.discard();
        c2.discard();
        return Ok(Some(why));
    }
    let line = b"a line, then silence\n";
    let sending = Instant::now();
    echo(&mut c2, line)?;
    let t2 = LastByte {
        after: sending,
        before: Instant::now(),
    };
    let until = t2.before + idle + CONTRACT_LATE + SLACK + ms(700);
    let closings = watch_closes(&mut [&mut c1, &mut c2], until);
    for (client, closing, last, who) in [
        (
            &c1,
            &closings[0],
            t1,
            format!("c{} connected and sent nothing", c1.id),
        ),
        (
            &c2,
            &closings[1],
            t2,
            format!(
                "c{} sent {} 150 ms after connecting and got it back",
                c2.id,
                quote(line)
            ),
        ),
    ] {
        if let Some(failure) = judge_idle_close(&who, closing, last, idle) {
            return Err(failure.transcript(&[client.id]).into());
        }
        ctx.note(format!(
            "c{}: closed {} ms after its last byte",
            client.id,
            closing.at.map_or(0, |at| at
                .saturating_duration_since(last.before)
                .as_millis())
        ));
    }
    Ok(None)
}

pub(crate) const ACTIVE_KEPT: Check = Check {
    name: "active_kept",
    points: 6,
    title: "with --idle-timeout-ms 300, a client sending a line every 50 ms, and one still sending during a lingering close, are never closed; the lingering one is closed once it stops",
    limit: secs(30),
    run: active_kept,
    proven_by: &[broken(
        "broken_timeouts_not_refreshed",
        "not refreshed on activity",
    )],
};

fn active_kept(ctx: &Ctx) -> Outcome {
    let mut server = start_timed(ctx, IDLE_MS, NEVER_MS)?;
    paced(
        &mut server,
        "a send every 50 ms",
        "while clients stayed active",
        |server| active_attempt(ctx, server),
    )
}

/// Runs a check whose clients keep a connection alive by sending on a
/// schedule: up to 3 tries of `attempt`, which returns `Ok(None)` when it
/// passed and `Ok(Some(why))` when the grader itself fell behind `schedule`
/// (on a loaded machine its thread may wait for a CPU for longer than the
/// idle timeout), which proves nothing either way.
pub(super) fn paced(
    server: &mut Server,
    schedule: &str,
    during: &str,
    mut attempt: impl FnMut(&Server) -> Result<Option<String>, Verdict>,
) -> Outcome {
    let mut voided = Vec::new();
    for _ in 0..3 {
        match attempt(server)? {
            None => return server.alive(during),
            Some(why) => voided.push(why),
        }
        server.alive(during)?;
    }
    Err(Verdict::Skip(format!(
        "the grader could not keep its own schedule of {schedule} on this machine ({}); run it again on a less loaded machine",
        voided.join("; ")
    )))
}

/// How late the grader may send its next bytes, after the previous ones,
/// for the check to be valid: later, a correct server may close.
pub(super) const GRADER_GAP: Duration = Duration::from_millis(IDLE_MS - 40);

/// Why a try proves nothing: more than [`GRADER_GAP`] passed since `since`
/// before the grader could do `what`.
pub(super) fn fell_behind(since: Instant, what: &str) -> Option<String> {
    let gap = since.elapsed();
    (gap > GRADER_GAP).then(|| format!("{} ms passed before {what}", gap.as_millis()))
}

/// One try of `active_kept`: `Ok(None)` passed, `Ok(Some(why))` says why the
/// try proves nothing (the grader itself was late: on a loaded machine its
/// thread may wait for a CPU for longer than the idle timeout).
fn active_attempt(ctx: &Ctx, server: &Server) -> Result<Option<String>, Verdict> {
    let idle = ms(IDLE_MS);
    let late = fell_behind;
    let mut c1 = ctx.connect(server)?;
    let mut c2 = ctx.connect(server)?;
    // c2 enters the lingering close: the server shuts down writing and
    // discards what c2 still sends. Discarded bytes count as moved.
    let mut c2_mark = Instant::now();
    send(&mut c2, b"quit\n")?;
    let got = c2.recv_to_end(64, within(Duration::from_secs(3)));
    ensure(got.data.is_empty() && got.end == End::Eof, || {
        Failure::new(format!(
            "c{} sent \"quit\\n\"; it expected EOF, and got {} then {}",
            c2.id,
            quote(&got.data),
            got.end.describe()
        ))
        .expected("EOF: the server shuts down its writing half after `quit`")
        .transcript(&[c2.id])
    })?;
    let started = Instant::now();
    let mut c1_mark = Instant::now();
    for round in 0..28 {
        if let Some(why) = late(c1_mark, "a send of c1") {
            return Ok(Some(why));
        }
        c1_mark = Instant::now();
        let line = format!("still talking, round {round}\n");
        if let Err(verdict) = echo(&mut c1, line.as_bytes()) {
            let Verdict::Fail(failure) = verdict else {
                return Err(verdict);
            };
            return Err(Failure {
                summary: format!(
                    "c{} sent a line every 50 ms and read each echo; {} after it started (idle timeout {} ms): {}",
                    c1.id,
                    secs_f(started.elapsed()),
                    IDLE_MS,
                    failure.summary
                ),
                ..failure
            }
            .expected("every line echoed: a connection where bytes keep moving is never idle")
            .cause("the idle deadline is not refreshed on activity: set it to now + N whenever a byte is read from or written to the connection")
            .into());
        }
        if let Some(why) = late(c2_mark, "a send of c2") {
            return Ok(Some(why));
        }
        c2_mark = Instant::now();
        // A reset from the server (it closed the socket) makes this fail:
        // the previous round's bytes were answered with one.
        if let Err(end) = c2.send_some(format!("after quit {round}\n").as_bytes()) {
            return Err(Failure::new(format!(
                "c{} sent \"quit\\n\", got EOF, and kept sending a line every 50 ms (the lingering close); {} later {}",
                c2.id,
                secs_f(started.elapsed()),
                end.describe()
            ))
            .expected("the server keeps discarding c2's input while it keeps coming")
            .cause("bytes read and discarded during a lingering close count as activity: refresh the idle deadline for them too")
            .transcript(&[c2.id])
            .into());
        }
        std::thread::sleep(ms(50));
    }
    // c2 stops: its lingering close must now end by the idle timeout. Once the
    // server has closed the socket, the next bytes c2 sends are answered
    // with a reset, and later sends fail. (Reads cannot tell: after the
    // server's FIN they return EOF whatever happens.) The probe is sent once
    // the deadline is past: if the server still holds the connection, the
    // probe is activity, and it stays open.
    let stopped = Instant::now();
    std::thread::sleep(idle + CONTRACT_LATE + SLACK);
    let _ = c2.send_some(b"are you there?\n");
    let deadline = within(Duration::from_millis(500));
    let reset = loop {
        std::thread::sleep(ms(5));
        // An empty send reports a pending error without sending anything.
        if c2.send_some(b"").is_err() {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
    };
    ensure(reset, || {
        Failure::new(format!(
            "c{} sent \"quit\\n\" and kept sending after the EOF, then stopped; {} later the server still held the connection (more bytes sent were not answered with a reset)",
            c2.id,
            secs_f(stopped.elapsed())
        ))
        .expected(format!(
            "the idle timeout ends a lingering connection too: closed within {} of the last byte",
            secs_f(idle + CONTRACT_LATE)
        ))
        .cause("connections in the lingering close need an idle deadline like any other")
        .transcript(&[c2.id])
    })?;
    c1.discard();
    c2.discard();
    Ok(None)
}
