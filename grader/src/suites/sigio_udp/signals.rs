//! Signals, seen through datagrams: a burst behind one SIGIO, and pairs of
//! datagrams timed to fall between the server's last receive and its wait.

use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, secs};
use crate::harness::proc::{self, SyscallState, syscall_name};
use crate::harness::text::thousands;
use crate::suites::datagram::{SHORT, peer, round_trip, send, start};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

pub(super) const BURST: Check = Check {
    name: "burst",
    points: 14,
    title: "100 datagrams sent while the server is stopped (SIGSTOP, then SIGCONT) all come back, in order: one SIGIO stands for all of them",
    limit: secs(30),
    run: burst,
    proven_by: &[broken("broken_sigio_udp_no_drain", "signals do not queue")],
};

/// The burst: 100 datagrams of 64 bytes. Each costs about 1 KiB of the
/// server's receive buffer (the kernel counts its bookkeeping, not only its
/// bytes); the default buffer (about 208 KiB) holds about 256 of them, so a
/// correct server never loses one on loopback, and a server that reads one
/// datagram per signal loses 99.
const BURST_SIZE: usize = 100;

fn burst(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let peer = peer(ctx, 1)?;
    round_trip(ctx, &peer, &mut server, b"warm up")?;
    let datagram = |k: usize| format!("burst {k:03} {}", "x".repeat(54)).into_bytes();
    server.program.signal(Signal::SIGSTOP);
    let sent: Outcome = (0..BURST_SIZE).try_for_each(|k| send(&peer, &server, &datagram(k)));
    server.program.signal(Signal::SIGCONT);
    sent?;
    let got = peer.recv_up_to(BURST_SIZE, Instant::now() + SHORT);
    server.alive("after the burst")?;
    let in_order = got
        .iter()
        .enumerate()
        .all(|(k, d)| d.data == datagram(k) && d.from == server.addr);
    ctx.note(format!("{} of {BURST_SIZE} replies", got.len()));
    ensure(got.len() == BURST_SIZE && in_order, || {
        Failure::new(format!(
            "c{} sent {BURST_SIZE} datagrams of 64 bytes while the server was stopped (SIGSTOP), then let it run (SIGCONT); {} replies came back within {} s{}",
            peer.id,
            got.len(),
            SHORT.as_secs(),
            if got.len() == BURST_SIZE { ", not in the order sent" } else { "" }
        ))
        .expected(format!("all {BURST_SIZE} back, in order"))
        .cause(if got.len() < BURST_SIZE {
            "signals do not queue: the 100 datagrams raised one SIGIO, so each time the server wakes it must receive until EAGAIN (recvfrom on the non-blocking socket), not one datagram per signal"
        } else {
            "send each datagram back as soon as it is received, in the order received"
        })
        .transcript(&[peer.id])
    })
}

pub(super) const LOST_SIGNAL: Check = Check {
    name: "lost_signal",
    points: 8,
    title: "30,000 pairs of datagrams, the second sent 0 to 40 µs after the first: both replies always come (SIGIO is blocked from the last EAGAIN until the wait, so no signal falls between them)",
    limit: secs(60),
    run: lost_signal,
    proven_by: &[broken("broken_sigio_udp_unmasked_pause", "lost wake-up")],
};

/// Pairs of datagrams sent; the second of each pair follows the first by
/// a delay that sweeps [`SWEEP`] in steps of [`STEP`], so that some of them
/// arrive just as the server, done with the first, finds nothing left and
/// goes to sleep: the moment a signal that is not blocked is lost.
const PAIRS: usize = 30_000;
const SWEEP: Duration = Duration::from_micros(40);
const STEP: Duration = Duration::from_nanos(200);

fn lost_signal(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let pid = server.pid();
    let peer = peer(ctx, 1)?;
    let started = Instant::now();
    let steps = (SWEEP.as_nanos() / STEP.as_nanos()) as u32;
    for k in 0..PAIRS {
        let delay = STEP * (k as u32 % steps);
        let (first, second) = (format!("{k} first"), format!("{k} second"));
        send(&peer, &server, first.as_bytes())?;
        let sent = Instant::now();
        // A busy wait: sleeping takes far longer than these microseconds.
        while sent.elapsed() < delay {
            std::hint::spin_loop();
        }
        send(&peer, &server, second.as_bytes())?;
        let wait = Duration::from_secs(1);
        let got = peer.recv_up_to(2, Instant::now() + wait);
        if got.len() == 2 && got[0].data == first.as_bytes() && got[1].data == second.as_bytes() {
            continue;
        }
        let asleep = match proc::syscall(pid) {
            Some(SyscallState::Blocked(n)) => format!("asleep in {}", syscall_name(n)),
            Some(SyscallState::Running) => "running".to_string(),
            None => "gone".to_string(),
        };
        let waiting = proc::udp_rx_queue(pid).is_some_and(|queued| queued > 0);
        server.alive("during the pairs of datagrams")?;
        let replies: Vec<String> = got
            .iter()
            .map(|d| format!("{:?}", String::from_utf8_lossy(&d.data)))
            .collect();
        return Err(Failure::new(format!(
            "pair {} of {}: c{} sent {first:?}, then {second:?} {:.1} µs later; within 1 s it got {}; the server was {asleep}{}",
            thousands(k + 1),
            thousands(PAIRS),
            peer.id,
            delay.as_secs_f64() * 1e6,
            if replies.is_empty() { "no reply".to_string() } else { replies.join(" and ") },
            if waiting { ", with a datagram waiting in its socket" } else { "" }
        ))
        .expected("both back, in order")
        .cause("a lost wake-up: the SIGIO for the second datagram came after the server's last recvfrom said EAGAIN but before it went to sleep, so it slept with a datagram waiting; block SIGIO while receiving, and wait with sigsuspend(old mask), which unblocks it and sleeps in one step (if `burst` fails too, fix that first: a server that reads one datagram per signal shows the same)")
        .into());
    }
    ctx.note(format!(
        "{} pairs in {:.1} s",
        thousands(PAIRS),
        started.elapsed().as_secs_f64()
    ));
    server.alive("after the pairs of datagrams")
}
