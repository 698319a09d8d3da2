//! The datagram checks every UDP echo server shares (sigio_udp, and the UDP
//! side of tcp_udp): what comes back, for every size, for empty datagrams
//! and for many senders at once. The lab's registry entry picks this suite;
//! what differs between labs (how the server waits) comes from the lab.
//!
//! The files: this one (the suite, the start probe, and the helpers other
//! suites' checks share too: starting the server, a peer, a round trip),
//! and `checks.rs`.

use crate::check::{Ctx, Failure, Outcome, Server, Suite, Verdict, grader_error, start_cause};
use crate::harness::proc;
use crate::harness::process::SpawnOptions;
use crate::harness::text::quote;
use crate::harness::udp::{Datagram, Peer};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

mod checks;

/// How long a reply may take before the grader stops waiting for it.
pub(crate) const SHORT: Duration = Duration::from_secs(3);

pub static SUITE: Suite = Suite {
    name: "datagram",
    checks: &[checks::SIZES, checks::EMPTY_DATAGRAM, checks::MANY_SENDERS],
    hints: include_str!("hints.txt"),
    start: Some(started),
    needs: None,
};

/// The server prints its line and keeps running (a stub prints it and
/// reaches its todo!() at once).
pub(crate) fn started(ctx: &Ctx) -> Outcome {
    let mut server = ctx.start()?;
    std::thread::sleep(Duration::from_millis(200));
    server.program.check_alive().map_err(|ending| {
        Failure::new(format!(
            "the server printed `listening on` and then stopped: {ending}"
        ))
        .expected("the server keeps running and answering datagrams until the grader stops it")
        .cause(start_cause(&ending))
        .into()
    })
}

/// A peer of the grader's on `127.0.0.<host>`.
pub(crate) fn peer(ctx: &Ctx, host: u8) -> Result<Peer, Verdict> {
    ctx.udp_peer(Ipv4Addr::new(127, 0, 0, host))
}

/// Sends `data` to the server.
pub(crate) fn send(peer: &Peer, server: &Server, data: &[u8]) -> Outcome {
    send_to(peer, server.addr, data)
}

pub(crate) fn send_to(peer: &Peer, to: SocketAddr, data: &[u8]) -> Outcome {
    peer.send_to(data, to).map_err(|err| {
        grader_error(format!(
            "c{} could not send a datagram to {to}: {err}",
            peer.id
        ))
    })
}

/// "got 5 bytes "hello" from 127.0.0.1:4000" or "got nothing within 3 s".
pub(crate) fn describe(got: &Option<Datagram>, within: Duration) -> String {
    match got {
        Some(datagram) => format!(
            "got {} from {}",
            if datagram.data.is_empty() {
                "an empty datagram".to_string()
            } else {
                quote(&datagram.data)
            },
            datagram.from
        ),
        None => format!("got nothing within {} s", within.as_secs_f64()),
    }
}

/// Sends `data` and expects exactly it back, from the server's address.
pub(crate) fn round_trip(ctx: &Ctx, peer: &Peer, server: &mut Server, data: &[u8]) -> Outcome {
    send(peer, server, data)?;
    let got = peer.recv_by(Instant::now() + SHORT);
    expect_reply(ctx, peer, server, data, &got)
}

/// `got` must be `sent`, unchanged, from the server's address.
pub(crate) fn expect_reply(
    ctx: &Ctx,
    peer: &Peer,
    server: &mut Server,
    sent: &[u8],
    got: &Option<Datagram>,
) -> Outcome {
    let ok = matches!(got, Some(d) if d.data == sent && d.from == server.addr);
    if ok {
        return Ok(());
    }
    // A server that died (of SIGIO's default action, say) is named in the
    // failure's notes.
    let died = got.is_none() && server.program.check_alive().is_err();
    // Asleep with a datagram waiting: it was woken, and stopped too soon.
    let left_waiting =
        got.is_none() && !died && proc::udp_rx_queue(server.pid()).is_some_and(|queued| queued > 0);
    let what = if sent.is_empty() {
        "an empty datagram".to_string()
    } else {
        format!("a datagram of {} bytes", sent.len())
    };
    let failure = Failure::new(format!(
        "c{} sent {what}{} to {}; {}",
        peer.id,
        if !sent.is_empty() && sent.len() <= 40 {
            format!(" {}", quote(sent))
        } else {
            String::new()
        },
        server.addr,
        describe(got, SHORT)
    ))
    .expected(format!(
        "the same {} bytes back, in one datagram, from {}",
        sent.len(),
        server.addr
    ))
    .transcript(&[peer.id]);
    let cause = match got {
        None if died => {
            "the server died (the note says how): killed by SIGIO means no handler was installed when it came, and SIGIO's default action ends the process; install the handler with sigaction before F_SETOWN and O_ASYNC"
        }
        None if sent.is_empty() => {
            "an empty datagram is a datagram: recvfrom returned 0 bytes and an address, so send 0 bytes back to that address (only EAGAIN means nothing is left)"
        }
        None if left_waiting => {
            "a datagram is waiting in the server's socket (/proc/PID/net/udp) while it sleeps: signals do not queue, so one SIGIO may stand for several datagrams; each time it is woken, receive until EAGAIN"
        }
        None if ctx.lab.idle.syscalls.contains(&proc::nr::RT_SIGSUSPEND) => {
            "no reply: the server did not wake up for this datagram (is SIGIO caught, F_SETOWN set, O_ASYNC on?), or received it and did not send it back to its sender (sendto the address recvfrom gave)"
        }
        None => {
            "no reply: the server did not wake up for this datagram (is the UDP socket among the fds its readiness call waits for?), or received it and did not send it back to its sender (sendto the address recvfrom gave)"
        }
        Some(d) if d.from != server.addr => {
            "the reply came from another address: send it from the socket the datagram came in on, so that the sender sees its server answer"
        }
        Some(d) if d.data.len() < sent.len() && sent.starts_with(&d.data) => {
            "the reply was cut short: receive into a buffer of 65,536 bytes (a datagram is truncated to the buffer given to recvfrom, and the rest is lost)"
        }
        Some(_) => {
            "the bytes echoed differ from the datagram sent: send back exactly the bytes recvfrom returned, no more (a whole buffer) and no fewer"
        }
    };
    Err(failure.cause(cause).into())
}

/// Starts the server, or fails.
pub(crate) fn start(ctx: &Ctx) -> Result<Server, Verdict> {
    ctx.start_server(SpawnOptions::default())
}
