//! The check of an idle program: where it sleeps, how many threads it has,
//! whether its socket is non-blocking, how much CPU it uses.

use super::session::{STALL, Session};
use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, secs};
use crate::harness::proc::{self, SyscallState, nr, syscall_name};
use std::time::Duration;

/// Samples where the program sleeps: (syscall numbers seen, running count,
/// most threads seen).
fn sample(pid: i32, n: usize) -> (Vec<u64>, usize, usize) {
    let mut blocked = Vec::new();
    let mut running = 0;
    let mut threads = 0;
    for _ in 0..n {
        match proc::syscall(pid) {
            Some(SyscallState::Blocked(number)) => blocked.push(number),
            Some(SyscallState::Running) => running += 1,
            None => {}
        }
        threads = threads.max(proc::threads(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    (blocked, running, threads)
}

pub(super) const IDLE: Check = Check {
    name: "idle",
    points: 12,
    title: "with nothing to do the program sleeps in select or pselect6, has one thread, a non-blocking socket and uses almost no CPU, also after stdin has ended",
    limit: secs(40),
    run: idle,
    proven_by: &[
        broken("broken_select_telnet_zero_timeout", "busy-waiting"),
        broken(
            "broken_select_telnet_stdin_stays_in_set",
            "stdin stays in the read set",
        ),
        broken("broken_select_telnet_uses_poll", "poll (7)"),
    ],
};

fn idle(ctx: &Ctx) -> Outcome {
    let mut s = Session::start(ctx)?;
    let pid = s.pid();
    let hello: &[u8] = b"hello, then silence\n";
    s.type_in(hello);
    s.await_peer(0, hello.len(), Duration::from_secs(2));
    s.pump_for(Duration::from_millis(300));

    // 1. Connected, stdin open, nobody says anything.
    let before = proc::cpu_time(pid);
    let (blocked, running, threads) = sample(pid, 25);
    std::thread::sleep(Duration::from_millis(500));
    let after = proc::cpu_time(pid);
    let socket_fds: Vec<i32> = proc::fd_targets(pid)
        .into_iter()
        .filter(|(_, t)| t.starts_with("socket:"))
        .map(|(fd, _)| fd)
        .collect();
    let blocking_sockets: Vec<i32> = socket_fds
        .iter()
        .copied()
        .filter(|&fd| proc::fd_flags(pid, fd).is_some_and(|f| f & proc::O_NONBLOCK == 0))
        .collect();
    s.program
        .check_alive()
        .map_err(|e| Failure::new(format!("the program stopped while idle: {e}")))?;
    let used = after.zip(before).map(|(a, b)| a.saturating_sub(b));
    ctx.note(format!(
        "idle: cpu {used:?}, asleep in {} of 25 samples ({}), running {running}, threads {threads}",
        blocked.len(),
        blocked
            .first()
            .map(|n| syscall_name(*n))
            .unwrap_or_default()
    ));
    if let Some(used) = used {
        ensure(used < Duration::from_millis(100), || {
            Failure::new(format!(
                "connected, with stdin and the server silent, the program used {:.2} s of CPU in 1 s",
                used.as_secs_f64()
            ))
            .expected("almost none (under 0.1 s): with nothing to do it sleeps in select")
            .cause("busy-waiting: select called with a zero (or tiny) timeout in a loop, or the socket always in the write set (an idle socket is always writable); pass no timeout (None) and ask for writability only while bytes wait")
        })?;
    }
    ensure(threads <= 1, || {
        Failure::new(format!("the program has {threads} threads"))
            .expected("one thread: select lets one thread wait for stdin and the socket at once")
            .cause("a thread per direction is what this lab replaces with select")
    })?;
    let idle_calls = ctx.lab.idle.syscalls;
    if let Some(&other) = blocked.iter().find(|n| !idle_calls.contains(n)) {
        return Err(Failure::new(format!(
            "idle, the program sleeps in {} (seen in {} of 25 samples of /proc/PID/syscall)",
            syscall_name(other),
            blocked.iter().filter(|&&n| n == other).count()
        ))
        .expected("asleep in select (23) or pselect6 (270)")
        .cause(match other {
            nr::POLL | nr::PPOLL => "this lab is about select: wait with nix::sys::select::select (poll comes in the next lab)",
            nr::READ => "a blocking read of stdin or of the socket: wait in select for both, then read only what is ready",
            _ => "wait for stdin and the socket together in select",
        })
        .into());
    }
    ensure(blocked.len() >= 12, || {
        Failure::new(format!(
            "idle, the program was asleep in select in only {} of 25 samples (running in {running})",
            blocked.len()
        ))
        .expected("asleep in select (23) or pselect6 (270) nearly all the time")
        .cause("busy-waiting: select with a zero timeout in a loop")
    })?;
    ensure(blocking_sockets.is_empty(), || {
        Failure::new(format!(
            "the socket (fd {blocking_sockets:?}) is in blocking mode (no O_NONBLOCK in /proc/PID/fdinfo)"
        ))
        .expected("a non-blocking socket (the contract)")
        .cause("select says writable when some room is free, not room for all you hold: a blocking write of the rest can sleep for ever. socket.set_nonblocking(true)")
    })?;

    // 2. stdin has ended; the server still has the connection open.
    s.end_stdin();
    s.pump(Duration::from_secs(2), STALL, |s| s.peer_done());
    s.pump_for(Duration::from_millis(200));
    let before = proc::cpu_time(pid);
    let (blocked, running, _) = sample(pid, 15);
    std::thread::sleep(Duration::from_millis(400));
    let after = proc::cpu_time(pid);
    s.program.check_alive().map_err(|e| {
        Failure::new(format!(
            "stdin ended and the server kept the connection open; the program stopped: {e}"
        ))
        .expected("it keeps waiting for the server, asleep in select")
        .cause("at stdin's end, shut down the writing half and keep reading the socket until the peer closes")
    })?;
    let used = after.zip(before).map(|(a, b)| a.saturating_sub(b));
    ctx.note(format!(
        "after stdin ended: cpu {:?}, asleep {} of 15, running {running}",
        used,
        blocked.len()
    ));
    let busy = used.is_some_and(|u| u >= Duration::from_millis(70)) || blocked.len() < 7;
    ensure(!busy, || {
        Failure::new(format!(
            "after stdin ended (the server silent), the program used {:.2} s of CPU in 0.7 s and was asleep in only {} of 15 samples",
            used.unwrap_or_default().as_secs_f64(),
            blocked.len()
        ))
        .expected("asleep in select, almost no CPU")
        .cause("stdin stays in the read set after its end: at end of file a fd is always readable (read returns 0 again and again); take stdin out of the set once read returns 0")
    })
}
