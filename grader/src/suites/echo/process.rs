//! The server process as seen from outside (/proc and the network): CPU
//! while idle, the call it sleeps in, its threads and children, its sockets'
//! flags, the address it listens on, and its fd count as clients come and go.

use super::{SHORT, connect_many, discard_all, echo, send, start};
use crate::check::{Check, Ctx, Failure, Outcome, Server, broken, ensure, secs, within};
use crate::harness::client::probe_connect;
use crate::harness::proc::{self, SyscallState, nr, syscall_name};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

pub(super) const IDLE_CPU: Check = Check {
    name: "idle_cpu",
    points: 5,
    title: "with 100 idle clients the server uses under 0.1 s of CPU in 1 s",
    limit: secs(40),
    run: idle_cpu,
    proven_by: &[
        broken("broken_poll_echo_busy_poll", "busy-waiting"),
        broken("broken_epoll_lt_busy_wait", "busy-waiting"),
        broken("broken_select_echo_zero_timeout", "busy-waiting"),
        broken("broken_uring_echo_spin", "busy-waiting"),
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
        .cause(busy_waiting(ctx))
    })
}

/// The likely cause of a server that runs while it has nothing to do.
fn busy_waiting(ctx: &Ctx) -> &'static str {
    if ctx.lab.idle.syscalls == [nr::IO_URING_ENTER] {
        "busy-waiting: the completion queue is peeked, or submit() called, in a loop that never waits, or the ring was set up with SQPOLL; submit and wait for the next completion in one call (submit_and_wait(1))"
    } else {
        "busy-waiting: the readiness call is given a timeout of 0 (or a tiny one) in a loop, or asked for POLLOUT/EPOLLOUT on sockets with nothing to send (they are always writable); wait with no timeout and ask only for what you need"
    }
}

pub(super) const API: Check = Check {
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
        broken("broken_select_echo_uses_poll", "ppoll"),
        broken("broken_async_echo_reactor_thread", "a helper thread"),
        broken("broken_uring_echo_thread_recv", "threads"),
        broken("broken_tcp_udp_udp_thread", "a helper thread"),
    ],
};

fn api(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let mut clients = connect_many(ctx, &server, 5)?;
    for client in clients.iter_mut() {
        echo(client, b"then idle\n")?;
    }
    asleep_in_idle_call(ctx, &mut server, "with 5 clients connected")?;
    discard_all(clients);
    Ok(())
}

/// Samples where the server sleeps while it has nothing to do (`during`
/// says when, for messages): it must sleep in the lab's idle call, with
/// one thread and no child process.
pub(crate) fn asleep_in_idle_call(ctx: &Ctx, server: &mut Server, during: &str) -> Outcome {
    let idle = &ctx.lab.idle;
    let pid = server.pid();
    std::thread::sleep(Duration::from_millis(200));
    let mut blocked = Vec::new();
    let mut running = 0;
    let mut max_threads = 0;
    let mut sqpoll = false;
    for _ in 0..25 {
        match proc::syscall(pid) {
            Some(SyscallState::Blocked(number)) => blocked.push(number),
            Some(SyscallState::Running) => running += 1,
            None => {}
        }
        max_threads = max_threads.max(proc::threads(pid).unwrap_or(0));
        sqpoll |= proc::thread_names(pid)
            .unwrap_or_default()
            .iter()
            .any(|name| name.starts_with("iou-sqp-"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let children = proc::children(pid);
    server.alive("while idle")?;
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
        Failure::new(format!("{during}, the server has {max_threads} threads"))
            .expected("one thread serving every client")
            .cause(match max_threads {
                2 if sqpoll => "the second thread is io_uring's submission-polling kernel thread (iou-sqp): an IORING_SETUP_SQPOLL ring busy-polls its queue; submit with io_uring_enter instead".to_string(),
                2 => format!(
                    "one thread more than the main one: a helper thread (one that waits for events or timers and hands them to the main thread, say). The main thread must do the waiting itself: {}",
                    ctx.lab.idle.how
                ),
                _ => "a thread per client (or a thread pool) is what this lab replaces: serve every socket from one loop".to_string(),
            })
    })?;
    ensure(children.is_empty(), || {
        Failure::new(format!("{during}, the server has child processes: {children:?}"))
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
        .cause(busy_waiting(ctx))
    })
}

pub(super) const NONBLOCKING_SOCKETS: Check = Check {
    name: "nonblocking_sockets",
    points: 4,
    title: "the listening socket and every client socket are O_NONBLOCK",
    limit: secs(30),
    run: nonblocking_sockets,
    proven_by: &[
        broken(
            "broken_poll_echo_blocking_sockets",
            "do not inherit O_NONBLOCK",
        ),
        broken(
            "broken_select_echo_blocking_read",
            "do not inherit O_NONBLOCK",
        ),
    ],
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

pub(super) const LOOPBACK_ONLY: Check = Check {
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

pub(super) const FD_HYGIENE: Check = Check {
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
