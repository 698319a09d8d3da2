//! The server runs on io_uring, seen from /proc: a ring (its fd, or its
//! mapping), no epoll instance, no SQPOLL thread, and a completion posted
//! for the work of each line echoed, not plain reads and writes beside it.
//! It is started with the socket calls the contract says it never makes
//! (accept, recv, send and their kin) refused by a seccomp filter: a server
//! that makes them itself cannot echo, one whose ring makes them cannot
//! tell (io_uring's operations are not system calls of the process).

use crate::check::Server;
use crate::check::{Check, Ctx, Failure, Outcome, Verdict, broken, ensure, secs};
use crate::harness::client::Client;
use crate::harness::proc::{self, nr};
use crate::harness::process::SpawnOptions;
use crate::harness::seccomp::Refusal;
use crate::harness::uring;
use crate::suites::echo::{connect_many, discard_all, echo, start_with};
use nix::errno::Errno;
use std::time::Duration;

pub(super) const USES_RING: Check = Check {
    name: "uses_ring",
    points: 8,
    title: "the server runs on an io_uring (a ring fd or mapping), with no epoll instance and no SQPOLL thread; it echoes with accept, recv and send refused to its own calls (seccomp), and 100 lines echoed one at a time post at least 100 completions and no plain read or write",
    limit: secs(30),
    run: uses_ring,
    proven_by: &[
        broken("broken_uring_echo_uses_epoll", "no io_uring"),
        broken("broken_uring_echo_sqpoll", "SQPOLL"),
        broken("broken_uring_echo_poll_then_read", "plain read and write"),
        broken(
            "broken_uring_echo_poll_then_recv",
            "system calls of its own",
        ),
    ],
};

/// Lines echoed one at a time while the ring's counters are watched.
const LINES: usize = 100;

/// Calls only a socket takes, which the contract says the server never
/// makes itself. (read and write also take files: those are counted
/// instead.)
const SOCKET_CALLS: &[u32] = &[
    nr::ACCEPT as u32,
    nr::ACCEPT4 as u32,
    nr::SENDTO as u32,
    nr::RECVFROM as u32,
    nr::SENDMSG as u32,
    nr::RECVMSG as u32,
    nr::RECVMMSG as u32,
    nr::SENDMMSG as u32,
];

fn uses_ring(ctx: &Ctx) -> Outcome {
    let mut server = start_with(
        ctx,
        SpawnOptions {
            refuse: Some(Refusal {
                syscalls: SOCKET_CALLS,
                errno: Errno::EPERM,
            }),
            ..SpawnOptions::default()
        },
    )?;
    let pid = server.pid();
    // The ring is set up before the listening line: look before any client
    // comes (a server that accepts by itself cannot, and may stop).
    std::thread::sleep(Duration::from_millis(100));
    let targets = proc::fd_targets(pid);
    let rings = uring::ring_fds(pid);
    let mapped = uring::ring_mapped(pid);
    let epolls: Vec<String> = targets
        .iter()
        .filter(|(_, target)| target == "anon_inode:[eventpoll]")
        .map(|(fd, _)| format!("fd {fd}"))
        .collect();
    let threads = proc::thread_names(pid).unwrap_or_default();
    server.alive("once listening")?;
    ctx.note(format!(
        "ring fds: {rings:?}; ring mapped: {mapped}; epoll fds: {epolls:?}; threads: {threads:?}"
    ));
    ensure(!rings.is_empty() || mapped, || {
        Failure::new(format!(
            "once listening, the server has no io_uring: no fd links to {} in /proc/{pid}/fd and no ring is mapped in /proc/{pid}/maps{}",
            uring::RING,
            if epolls.is_empty() {
                String::new()
            } else {
                format!("; it has an epoll instance ({})", epolls.join(", "))
            }
        ))
        .expected("a ring set up with io_uring_setup (IoUring::new) before the listening line, serving every socket")
        .cause("the server is not written on io_uring: accept, receive and send are submitted to the ring and their completions come back, no readiness API")
    })?;
    ensure(epolls.is_empty(), || {
        Failure::new(format!(
            "the server has an io_uring and also an epoll instance ({})",
            epolls.join(", ")
        ))
        .expected("no epoll, poll or select: the ring is the only way the server waits")
        .cause("readiness is what this lab replaces: submit the receive itself and wait for its completion, rather than waiting until a socket is readable")
    })?;
    let sqpoll: Vec<&String> = threads
        .iter()
        .filter(|t| t.starts_with("iou-sqp-"))
        .collect();
    ensure(sqpoll.is_empty(), || {
        Failure::new(format!(
            "the server's ring has a submission-polling kernel thread ({})",
            sqpoll.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
        ))
        .expected("no IORING_SETUP_SQPOLL")
        .cause("an SQPOLL ring (setup_sqpoll) has a kernel thread that busy-polls the submission queue, which the rule against busy-waiting forbids: submit with io_uring_enter (submit_and_wait)")
    })?;
    let mut clients = connect_many(ctx, &server, 3)?;
    for client in clients.iter_mut() {
        echo(client, b"on the ring\n").map_err(|verdict| match verdict {
            Verdict::Fail(failure) => Verdict::Fail(Failure {
                summary: format!(
                    "with accept, recv and send (and their kin) refused to the server's own calls (a seccomp filter: they fail with EPERM; the ring's operations are not affected): {}",
                    failure.summary
                ),
                ..failure
            }
            .expected("the same echo: the ring accepts, receives and sends, the server never calls accept, recv or send itself")
            .cause("the server accepts, receives or sends with system calls of its own (accept, recv, send: Rust's TcpStream::read and write are recv and send): submit them to the ring as opcode::Accept, Recv and Send, and act on their completions")),
            skip => skip,
        })?;
    }
    if rings.is_empty() {
        ctx.note("no ring fd (closed after registering?): completions not counted");
        discard_all(clients);
        return Ok(());
    }
    per_line(ctx, &mut server, &mut clients[0], &rings)?;
    discard_all(clients);
    Ok(())
}

/// Echoes [`LINES`] lines one at a time, counting the ring's completions
/// and the server's plain reads and writes meanwhile.
fn per_line(ctx: &Ctx, server: &mut Server, client: &mut Client, rings: &[i32]) -> Outcome {
    let pid = server.pid();
    // The rings' CqTail added up; none where no fdinfo shows the counters.
    let completions = || -> Option<u32> {
        let tails: Vec<u32> = rings
            .iter()
            .filter_map(|&fd| uring::completions(pid, fd))
            .collect();
        (!tails.is_empty()).then(|| tails.into_iter().fold(0u32, u32::wrapping_add))
    };
    let before = completions();
    let io_before = proc::io_syscalls(pid);
    for i in 0..LINES {
        echo(client, format!("line {i} of {LINES}\n").as_bytes())?;
    }
    let after = completions();
    let io_after = proc::io_syscalls(pid);
    server.alive("while echoing lines one at a time")?;
    let posted = before
        .zip(after)
        .map(|(before, after)| after.wrapping_sub(before) as usize);
    let plain = match (io_before, io_after) {
        (Some(b), Some(a)) => Some((a.0.saturating_sub(b.0), a.1.saturating_sub(b.1))),
        _ => None,
    };
    ctx.note(format!(
        "{LINES} lines one at a time: {posted:?} completions on ring fds {rings:?}; plain (reads, writes): {plain:?}"
    ));
    if let Some(posted) = posted {
        ensure(posted >= LINES, || {
            Failure::new(format!(
                "echoed {LINES} lines one at a time (send a line, wait for its echo); the server's rings posted {posted} completions meanwhile (CqTail in /proc/{pid}/fdinfo)"
            ))
            .expected(format!("at least {LINES} completions: each line's receive and send are operations on the ring"))
            .cause("the ring is not doing the server's I/O: submit the receives and sends as SQEs (opcode::Recv, opcode::Send) and act on their completions")
        })?;
    }
    if let Some((reads, writes)) = plain {
        ensure(reads + writes < LINES as u64 / 2, || {
            Failure::new(format!(
                "echoed {LINES} lines one at a time; meanwhile the server made {reads} read and {writes} write system calls of its own (/proc/{pid}/io: syscr, syscw)"
            ))
            .expected("no plain read or write per line: the ring receives and sends")
            .cause("io_uring used as a better epoll (a poll request, then a plain read and write on the socket): submit the receive and the send themselves, and act on their completions")
        })?;
    }
    Ok(())
}
