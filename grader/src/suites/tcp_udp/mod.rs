//! The tcp_udp lab's own checks, after the echo suite (the TCP side) and
//! the datagram suite (the UDP side, shared with sigio_udp): both on the
//! same port, and no TCP client, however slow, silent, half-way through a
//! line, flooding or not reading, delays a datagram's echo.

use crate::check::{Failure, Outcome, Server, Suite, Verdict};
use crate::harness::udp::Peer;
use crate::suites::datagram;
use std::time::{Duration, Instant};

mod fairness;
mod port;

pub static SUITE: Suite = Suite {
    name: "tcp_udp",
    checks: &[
        port::SAME_PORT,
        fairness::HALF_LINE,
        fairness::NOT_READING,
        fairness::TCP_LOAD,
        port::BOTH_AT_ONCE,
    ],
    hints: include_str!("hints.txt"),
    start: None,
    needs: None,
};

/// How long one datagram's echo may take while TCP clients misbehave: far
/// more than a fair server needs (a few ms), far less than a starved one.
const PROMPT: Duration = Duration::from_secs(1);

/// Round trips of datagrams, one every `every`, for `window`: each echo
/// must come within [`PROMPT`]. `meanwhile` runs between them (a TCP
/// client's work). Returns the slowest echo.
fn datagrams_meanwhile(
    peer: &Peer,
    server: &mut Server,
    window: Duration,
    every: Duration,
    what: &str,
    mut meanwhile: impl FnMut() -> Outcome,
) -> Result<Duration, Verdict> {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut k = 0;
    while started.elapsed() < window {
        let data = format!("datagram {k} while {what}").into_bytes();
        datagram::send(peer, server, &data)?;
        let sent = Instant::now();
        let got = loop {
            match peer.recv_by(sent + PROMPT) {
                Some(d) if d.data == data => break Some(d),
                // A late echo of an earlier datagram: keep waiting.
                Some(_) => continue,
                None => break None,
            }
        };
        let took = sent.elapsed();
        if got.is_none() {
            server.alive(&format!("while {what}"))?;
            return Err(Failure::new(format!(
                "while {what}, c{} sent datagram {k} ({} s into the check) and got no echo within {} s",
                peer.id,
                format_secs(started.elapsed() - took),
                PROMPT.as_secs()
            ))
            .expected("each datagram echoed at once, whatever the TCP clients do")
            .transcript(&[peer.id])
            .into());
        }
        slowest = slowest.max(took);
        meanwhile()?;
        k += 1;
        std::thread::sleep(every.saturating_sub(sent.elapsed()));
    }
    Ok(slowest)
}

fn format_secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}
