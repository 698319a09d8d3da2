//! No TCP client delays a datagram: one half-way through a line, one that
//! sends without reading, and a saturating load of many.

use super::datagrams_meanwhile;
use crate::check::{
    Check, Ctx, Failure, Outcome, Verdict, broken, ensure, grader_error, secs, within,
};
use crate::harness::load::TcpLoad;
use crate::harness::text::{bytes, thousands};
use crate::suites::datagram::peer;
use crate::suites::echo::{SHORT, echo, expect, lines, send, start};
use std::time::Duration;

pub(super) const HALF_LINE: Check = Check {
    name: "half_line",
    points: 8,
    title: "a TCP client sends half a line and stays silent: datagrams are still echoed at once (within 1 s each, for 2 s)",
    limit: secs(30),
    run: half_line,
    proven_by: &[broken("broken_tcp_udp_blocking_line", "half a line")],
};

fn half_line(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let peer = peer(ctx, 1)?;
    let mut client = ctx.connect(&server)?;
    echo(&mut client, b"a whole line first\n")?;
    send(&mut client, b"and then half a li")?;
    let slowest = datagrams_meanwhile(
        &peer,
        &mut server,
        Duration::from_secs(2),
        Duration::from_millis(50),
        "a TCP client had sent half a line",
        || Ok(()),
    )
    .map_err(|verdict| cause(verdict, "the server waits for the rest of a TCP client's line (a blocking read until \\n): read what is there, keep the half line, and go back to the loop; nothing may block but the readiness call"))?;
    ctx.note(format!("slowest echo: {} ms", slowest.as_millis()));
    // The rest of the line: the whole line comes back.
    send(&mut client, b"ne\n")?;
    expect(
        &mut client,
        b"ne\n",
        b"and then half a line\n",
        within(SHORT),
    )?;
    echo(&mut client, b"still served\n")
}

pub(super) const NOT_READING: Check = Check {
    name: "not_reading",
    points: 8,
    title: "a TCP client sends up to 32 MiB of lines without reading: datagrams are still echoed at once (within 1 s each) all along",
    limit: secs(60),
    run: not_reading,
    proven_by: &[broken("broken_tcp_udp_blocking_write", "does not read")],
};

fn not_reading(ctx: &Ctx) -> Outcome {
    const TOTAL: usize = 32 << 20;
    let mut server = start(ctx)?;
    let peer = peer(ctx, 1)?;
    let mut client = ctx.connect_small(&server)?;
    let data = lines(TOTAL, 5);
    let mut sent = 0;
    let slowest = datagrams_meanwhile(
        &peer,
        &mut server,
        Duration::from_secs(3),
        Duration::from_millis(30),
        "a TCP client sent lines without reading",
        || {
            // As much as the server takes in one go, without waiting.
            let end = (sent + (1 << 20)).min(data.len());
            if sent < end {
                match client.send_some(&data[sent..end]) {
                    Ok(n) => sent += n,
                    Err(end) => {
                        return Err(grader_error(format!(
                            "the TCP client's connection broke after {}: {}",
                            bytes(sent),
                            end.describe()
                        )));
                    }
                }
            }
            Ok(())
        },
    )
    .map_err(|verdict| cause(verdict, "a TCP client that does not read blocks the server's write to it: every socket non-blocking, write what the kernel takes, keep the rest, and stop reading that client at 64 KiB unsent"))?;
    ctx.note(format!(
        "the TCP client sent {} without reading; slowest echo {} ms",
        bytes(sent),
        slowest.as_millis()
    ));
    client.discard();
    Ok(())
}

pub(super) const TCP_LOAD: Check = Check {
    name: "tcp_load",
    points: 10,
    title: "200 TCP clients pipeline 2-byte lines as fast as the server echoes (from a process of their own): datagrams are still echoed within 1 s each, for 3 s",
    limit: secs(60),
    run: tcp_load,
    proven_by: &[broken("broken_tcp_udp_udp_starved", "starved")],
};

fn tcp_load(ctx: &Ctx) -> Outcome {
    const CLIENTS: usize = 200;
    let mut server = start(ctx)?;
    let peer = peer(ctx, 1)?;
    let load = TcpLoad::start(server.addr, ctx.source, CLIENTS, b"a\n", &ctx.registry)
        .map_err(|err| grader_error(format!("cannot start the TCP load: {err}")))?;
    std::thread::sleep(Duration::from_millis(300));
    let before = load.lines_echoed();
    let window = Duration::from_secs(3);
    let slowest = datagrams_meanwhile(
        &peer,
        &mut server,
        window,
        Duration::from_millis(20),
        &format!("{CLIENTS} TCP clients pipelined short lines"),
        || Ok(()),
    )
    .map_err(|verdict| cause(verdict, "the UDP socket is starved: it is served only when no TCP client is ready, and under load one always is; serve every ready source each round (the UDP socket too), and cap the work per source per round"))?;
    let echoed = load.lines_echoed() - before;
    ctx.note(format!(
        "{} TCP lines echoed meanwhile; slowest datagram echo {} ms",
        thousands(echoed as usize),
        slowest.as_millis()
    ));
    ensure(echoed > 0, || {
        Failure::new(format!(
            "{CLIENTS} TCP clients pipelined lines for {} s and none was echoed",
            window.as_secs()
        ))
        .expected("the TCP clients served while the UDP peer is")
        .cause("the TCP clients were not served under load: serve every ready source each round")
    })
}

/// Adds `why` as the likely cause of a failure.
fn cause(verdict: Verdict, why: &str) -> Verdict {
    match verdict {
        Verdict::Fail(failure) => Failure {
            cause: Some(failure.cause.unwrap_or_else(|| why.to_string())),
            ..failure
        }
        .into(),
        skip => skip,
    }
}
