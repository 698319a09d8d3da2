//! The server seen from outside: signal-driven (SIGIO caught, O_ASYNC and
//! O_NONBLOCK on its socket), where it sleeps, what it costs while idle,
//! the address it is bound to, its command line.

use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, secs};
use crate::harness::proc;
use crate::suites::datagram::{peer, round_trip, send_to, start};
use crate::suites::echo::command_line::{BAD, refused};
use crate::suites::echo::process::asleep_in_idle_call;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// SIGIO is signal 29: bit 28 of the masks in /proc/PID/status.
const SIGIO_BIT: u64 = 1 << 28;

pub(super) const SIGNAL_DRIVEN: Check = Check {
    name: "signal_driven",
    points: 12,
    title: "SIGIO is caught (SigCgt in /proc/PID/status) and the UDP socket is O_ASYNC and O_NONBLOCK (its flags in /proc/PID/fdinfo)",
    limit: secs(20),
    run: signal_driven,
    proven_by: &[
        broken("broken_sigio_udp_flags_overwritten", "O_NONBLOCK"),
        broken("broken_sigio_udp_blocking_recv", "SIGIO is not caught"),
    ],
};

fn signal_driven(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let pid = server.pid();
    let peer = peer(ctx, 1)?;
    // A blocking server may still answer one datagram: the point here is
    // how it is set up, seen once it has served.
    let _ = round_trip(ctx, &peer, &mut server, b"how are you set up?");
    let caught = proc::signals_caught(pid);
    let sockets: Vec<proc::InetSocket> = proc::inet_sockets(pid)
        .into_iter()
        .filter(|s| s.udp)
        .collect();
    server.alive("while its setup was read")?;
    ctx.note(format!(
        "SigCgt {caught:x?}; UDP sockets: {}",
        sockets
            .iter()
            .map(|s| format!(
                "fd {} {} flags {:o}",
                s.fd,
                s.local,
                proc::fd_flags(pid, s.fd).unwrap_or(0)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ensure(caught.is_some_and(|mask| mask & SIGIO_BIT != 0), || {
        Failure::new(format!(
            "SIGIO is not caught: SigCgt in /proc/{pid}/status is {}",
            caught.map_or("unreadable".to_string(), |m| format!("{m:016x}"))
        ))
        .expected("the bit of SIGIO (29) set: a handler installed for it")
        .cause("install a SIGIO handler with sigaction before you turn on O_ASYNC (SIGIO's default action ends the process); signal-driven I/O is the lab: the kernel signals, the server sleeps until it does")
    })?;
    ensure(!sockets.is_empty(), || {
        Failure::new(format!(
            "the server holds no UDP socket (/proc/{pid}/fd and /proc/{pid}/net/udp)"
        ))
        .expected("one UDP socket bound to 127.0.0.1")
    })?;
    for socket in &sockets {
        let flags = proc::fd_flags(pid, socket.fd).unwrap_or(0);
        let missing: Vec<&str> = [(proc::O_ASYNC, "O_ASYNC"), (proc::O_NONBLOCK, "O_NONBLOCK")]
            .into_iter()
            .filter(|(bit, _)| flags & bit == 0)
            .map(|(_, name)| name)
            .collect();
        ensure(missing.is_empty(), || {
            let only_async = flags & proc::O_ASYNC != 0;
            Failure::new(format!(
                "the UDP socket (fd {}, {}) has flags {flags:o}: no {}",
                socket.fd,
                socket.local,
                missing.join(", no ")
            ))
            .expected("O_ASYNC (020000) and O_NONBLOCK (04000) both set")
            .cause(if only_async {
                "the flags were overwritten: F_SETFL sets all of them, so F_SETFL(O_ASYNC) clears O_NONBLOCK; read them with F_GETFL and add O_ASYNC | O_NONBLOCK"
            } else {
                "turn on signal-driven I/O: F_SETOWN to the server's pid, then O_ASYNC and O_NONBLOCK added to the flags (F_GETFL, then F_SETFL with both bits or'ed in)"
            })
        })?;
    }
    Ok(())
}

pub(super) const API: Check = Check {
    name: "api",
    points: 8,
    title: "while idle the server sleeps waiting for a signal (rt_sigsuspend, pause or rt_sigtimedwait), with one thread and no child process",
    limit: secs(20),
    run: api,
    proven_by: &[
        broken("broken_sigio_udp_uses_poll", "sleeping in poll"),
        broken("broken_sigio_udp_blocking_recv", "recvfrom"),
    ],
};

fn api(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let peer = peer(ctx, 1)?;
    round_trip(ctx, &peer, &mut server, b"then idle")?;
    asleep_in_idle_call(ctx, &mut server, "after one datagram")
}

pub(super) const IDLE: Check = Check {
    name: "idle",
    points: 10,
    title: "with nothing to do for 2 s the server uses under 0.05 s of CPU and wakes at most 10 times",
    limit: secs(20),
    run: idle,
    proven_by: &[
        broken("broken_sigio_udp_spin", "busy-waiting"),
        broken("broken_sigio_udp_tick", "woke"),
    ],
};

fn idle(ctx: &Ctx) -> Outcome {
    const WINDOW: Duration = Duration::from_secs(2);
    const MOST_WAKEUPS: u64 = 10;
    let mut server = start(ctx)?;
    let pid = server.pid();
    let peer = peer(ctx, 1)?;
    round_trip(ctx, &peer, &mut server, b"then nothing")?;
    std::thread::sleep(Duration::from_millis(200));
    let cpu = proc::cpu_ns(pid);
    let wakeups = proc::voluntary_ctxt_switches(pid);
    std::thread::sleep(WINDOW);
    let cpu = proc::cpu_ns(pid).zip(cpu).map(|(b, a)| b.saturating_sub(a));
    let wakeups = proc::voluntary_ctxt_switches(pid)
        .zip(wakeups)
        .map(|(b, a)| b.saturating_sub(a));
    server.alive("while idle")?;
    let (Some(cpu), Some(wakeups)) = (cpu, wakeups) else {
        return Err(Failure::new(
            "could not read the server's CPU time and context switches from /proc",
        )
        .into());
    };
    let cpu_s = cpu as f64 / 1e9;
    ctx.note(format!("idle 2 s: {cpu_s:.3} s of CPU, {wakeups} wake-ups"));
    ensure(cpu_s < 0.05, || {
        Failure::new(format!("with nothing to do for 2 s, the server used {cpu_s:.2} s of CPU"))
            .expected("under 0.05 s: a server with nothing to do sleeps until a signal comes")
            .cause("busy-waiting: recvfrom on the non-blocking socket in a loop, retrying after EAGAIN; after EAGAIN, wait for SIGIO (sigsuspend)")
    })?;
    ensure(wakeups <= MOST_WAKEUPS, || {
        Failure::new(format!(
            "with nothing to do for 2 s, the server woke {wakeups} times (voluntary_ctxt_switches in /proc/{pid}/status)"
        ))
        .expected(format!("at most {MOST_WAKEUPS}: it sleeps until a signal comes"))
        .cause("a timeout on the wait (sigtimedwait with a short timeout, or a sleep in a loop): wait for the signal with no timeout")
    })
}

pub(super) const LOOPBACK_ONLY: Check = Check {
    name: "loopback_only",
    points: 4,
    title: "a datagram to 127.0.0.2 on the server's port gets no reply (it is bound to 127.0.0.1 only)",
    limit: secs(20),
    run: loopback_only,
    proven_by: &[broken("broken_sigio_udp_bind_any", "0.0.0.0")],
};

fn loopback_only(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let peer = peer(ctx, 1)?;
    round_trip(ctx, &peer, &mut server, b"on loopback")?;
    let other = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), server.addr.port()));
    send_to(&peer, other, b"anyone there?")?;
    let got = peer.silent_for(Duration::from_secs(1));
    server.alive("during the check")?;
    ensure(got.is_none(), || {
        Failure::new(format!("a datagram sent to {other} was answered"))
            .expected("no reply: the server is bound to 127.0.0.1 only")
            .cause("the socket is bound to 0.0.0.0 (every address, reachable from other machines): bind 127.0.0.1")
            .transcript(&[peer.id])
    })
}

pub(super) const USAGE: Check = Check {
    name: "usage",
    points: 6,
    title: "bad command lines (an unknown flag, --port without its value, a port that is not a number, an extra argument) get a usage message on stderr and exit code 2, without listening",
    limit: secs(30),
    run: usage,
    proven_by: &[broken("broken_sigio_udp_ignores_bad_args", "not refused")],
};

fn usage(ctx: &Ctx) -> Outcome {
    for args in BAD {
        refused(ctx, args, None)?;
    }
    Ok(())
}
