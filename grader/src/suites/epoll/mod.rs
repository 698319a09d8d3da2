//! Checks of the epoll labs beyond the echo suite: how sockets are registered,
//! and the situations where an edge-triggered server that does not drain
//! stalls. A correct level-triggered server passes these too.

use crate::check::within;
use crate::check::{Check, Ctx, Failure, Outcome, Server, Suite, broken, ensure, secs};
use crate::harness::client::{Client, End};
use crate::harness::proc::{self, EPOLLET};
use crate::harness::text::{bytes, thousands};
use crate::suites::echo::{SHORT, bulk_outcome, discard_all, echo, lines, send};
use nix::sys::signal::Signal;
use std::collections::HashSet;
use std::time::{Duration, Instant};

pub static SUITE: Suite = Suite {
    name: "epoll",
    checks: &[REGISTRATION, BURST, ACCEPT_STORM, BIG_REPLIES],
    hints: include_str!("hints.txt"),
    start: None,
    needs: None,
};

fn edge_triggered(ctx: &Ctx) -> bool {
    ctx.lab.trigger == Some(crate::check::Trigger::Edge)
}

/// The server's TCP sockets: (listener fds, connected fds).
fn server_sockets(pid: i32) -> (Vec<i32>, Vec<i32>) {
    let states = proc::tcp_socket_states(pid);
    let mut listeners = Vec::new();
    let mut connected = Vec::new();
    for (fd, target) in proc::fd_targets(pid) {
        let Some(inode) = proc::socket_inode(&target) else {
            continue;
        };
        match states.get(&inode) {
            Some(&proc::TCP_LISTEN) => listeners.push(fd),
            Some(_) => connected.push(fd),
            None => {}
        }
    }
    (listeners, connected)
}

/// Every registration of every epoll instance of the process.
fn registrations(pid: i32) -> Vec<proc::EpollEntry> {
    proc::epoll_fds(pid)
        .into_iter()
        .flat_map(|epfd| proc::epoll_entries(pid, epfd))
        .collect()
}

pub const REGISTRATION: Check = Check {
    name: "registration",
    points: 8,
    title: "the epoll registrations in /proc/PID/fdinfo: epoll_lt uses no EPOLLET, epoll_et registers the listener and every client with EPOLLET; clients that left are no longer registered",
    limit: secs(30),
    run: registration,
    proven_by: &[
        broken("broken_epoll_et_registered_lt", "without EPOLLET"),
        broken("broken_epoll_lt_registered_et", "with EPOLLET"),
        broken("broken_epoll_lt_keeps_closed_fds", "still registered"),
    ],
};

fn registration(ctx: &Ctx) -> Outcome {
    let et = edge_triggered(ctx);
    let mut server = ctx.start()?;
    let pid = server.pid();
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut client = ctx.connect(&server)?;
        echo(&mut client, format!("client {i}\n").as_bytes())?;
        clients.push(client);
    }
    let (listeners, connected) = server_sockets(pid);
    let entries = registrations(pid);
    ensure(!proc::epoll_fds(pid).is_empty(), || {
        Failure::new("the server has no epoll instance (no fd is anon_inode:[eventpoll])")
            .expected("an epoll instance with the listener and every client registered")
            .cause("create one with Epoll::new and register sockets with epoll.add")
    })?;
    let registered: HashSet<i32> = entries.iter().map(|e| e.fd).collect();
    let missing: Vec<i32> = listeners
        .iter()
        .chain(&connected)
        .copied()
        .filter(|fd| !registered.contains(fd))
        .collect();
    ensure(missing.is_empty(), || {
        Failure::new(format!(
            "with 5 clients connected, these sockets are not in any epoll interest set: fds {missing:?}"
        ))
        .expected("the listener and every client socket registered")
    })?;
    let sockets: HashSet<i32> = listeners.iter().chain(&connected).copied().collect();
    let socket_entries: Vec<_> = entries.iter().filter(|e| sockets.contains(&e.fd)).collect();
    ctx.note(format!(
        "registrations: {}",
        socket_entries
            .iter()
            .map(|e| format!("fd {} events {:#x}", e.fd, e.events))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if et {
        let level: Vec<i32> = socket_entries
            .iter()
            .filter(|e| e.events & EPOLLET == 0)
            .map(|e| e.fd)
            .collect();
        ensure(level.is_empty(), || {
            Failure::new(format!("these sockets are registered without EPOLLET: fds {level:?}"))
                .expected("the listener and every client registered with EPOLLET")
                .cause("this lab is edge-triggered: add EpollFlags::EPOLLET to every registration, listener included")
        })?;
    } else {
        let edge: Vec<i32> = socket_entries
            .iter()
            .filter(|e| e.events & EPOLLET != 0)
            .map(|e| e.fd)
            .collect();
        ensure(edge.is_empty(), || {
            Failure::new(format!("these sockets are registered with EPOLLET: fds {edge:?}"))
                .expected("level-triggered registrations only (no EPOLLET)")
                .cause("this lab is level-triggered: edge triggering (EPOLLET) belongs to epoll_et, and without draining it stalls")
        })?;
    }
    // Three clients leave, each its own way; their sockets must leave the set.
    let mut leaving: Vec<Client> = clients.drain(..3).collect();
    leaving.pop().unwrap().discard();
    let mut quitter = leaving.pop().unwrap();
    send(&mut quitter, b"quit\n")?;
    quitter.close();
    leaving.pop().unwrap().close();
    let deadline = within(Duration::from_secs(3));
    let stale = loop {
        std::thread::sleep(Duration::from_millis(100));
        let (listeners, _) = server_sockets(pid);
        let stale = registrations(pid)
            .into_iter()
            .filter(|e| !listeners.contains(&e.fd) && is_socket(pid, e.fd))
            .count()
            .saturating_sub(2);
        if stale == 0 || Instant::now() >= deadline {
            break stale;
        }
    };
    server.alive("after clients left")?;
    discard_all(clients);
    ensure(stale == 0, || {
        Failure::new(format!(
            "3 of 5 clients left (a reset, a quit, a close); 3 s later {stale} of their sockets were still registered"
        ))
        .expected("only the 2 remaining clients (and the listener) registered")
        .cause("when a connection ends, close its socket (and epoll.delete it): a socket that stays open stays in the interest set")
    })
}

fn is_socket(pid: i32, fd: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|t| t.to_string_lossy().starts_with("socket:"))
        .unwrap_or(false)
}

/// Stops the server, runs `during`, and lets it run again, whatever happens.
fn while_stopped<T>(server: &Server, during: impl FnOnce() -> T) -> T {
    server.program.signal(Signal::SIGSTOP);
    let result = during();
    server.program.signal(Signal::SIGCONT);
    result
}

pub const BURST: Check = Check {
    name: "burst",
    points: 8,
    title: "with the server stopped, a client queues up to 1 MiB of lines; when the server runs again (one edge for all of it) every line comes back",
    limit: secs(40),
    run: burst,
    proven_by: &[broken("broken_epoll_et_read_once", "read until EAGAIN")],
};

fn burst(ctx: &Ctx) -> Outcome {
    let mut server = ctx.start()?;
    let mut c = ctx.connect(&server)?;
    echo(&mut c, b"warm up\n")?;
    let data = lines(1 << 20, 21);
    // Everything the kernel buffers take goes in while the server cannot
    // run: it then sees one edge for all of it.
    let queued = while_stopped(&server, || {
        let mut sent = 0;
        let mut last = Instant::now();
        while sent < data.len() && last.elapsed() < Duration::from_millis(300) {
            match c.send_some(&data[sent..]) {
                Ok(0) => std::thread::sleep(Duration::from_millis(2)),
                Ok(n) => {
                    sent += n;
                    last = Instant::now();
                }
                Err(_) => break,
            }
        }
        sent
    });
    ctx.note(format!(
        "queued {} while the server was stopped",
        bytes(queued)
    ));
    let (_, got) = c.exchange(
        &data[queued..],
        data.len(),
        Duration::from_secs(2),
        within(Duration::from_secs(20)),
    );
    if got.end == End::Complete && got.data == data {
        return server.alive("during the check");
    }
    let rest = match data.len() - queued {
        0 => String::new(),
        n => format!(" (then the remaining {} once it ran)", bytes(n)),
    };
    let mut summary = format!(
        "with the server stopped, c{} sent {} of lines in one burst{rest}; it got {} back",
        c.id,
        bytes(queued),
        bytes(got.data.len())
    );
    summary += &bulk_outcome(&data, &got, Duration::from_secs(2)).0;
    Err(Failure::new(summary)
        .expected(format!("all {} back", bytes(data.len())))
        .cause("in edge-triggered mode you are told once: on each wakeup read until EAGAIN (WouldBlock), or the bytes left in the socket are never reported again")
        .transcript(&[c.id])
        .into())
}

pub const ACCEPT_STORM: Check = Check {
    name: "accept_storm",
    points: 8,
    title: "with the server stopped, up to 500 clients connect (one edge on the listener); then each sends a line and every one is answered",
    limit: secs(60),
    run: accept_storm,
    proven_by: &[broken("broken_epoll_et_accept_once", "accept until EAGAIN")],
};

fn accept_storm(ctx: &Ctx) -> Outcome {
    const STORM: usize = 500;
    let mut server = ctx.start()?;
    let mut first = ctx.connect(&server)?;
    echo(&mut first, b"warm up\n")?;
    // Connect while the server is stopped: the kernel completes handshakes
    // into the listen backlog. A connect that does not complete quickly means
    // the backlog is full: the storm is as large as the backlog allows.
    let (mut clients, refused) = while_stopped(&server, || {
        let mut clients = Vec::new();
        let mut refused = None;
        for _ in 0..STORM {
            match ctx.connect_within(&server, Duration::from_millis(200)) {
                Ok(client) => clients.push(client),
                Err(err) => {
                    refused = Some(err);
                    break;
                }
            }
        }
        (clients, refused)
    });
    let storm = clients.len();
    ctx.note(format!(
        "{storm} connections queued while the server was stopped"
    ));
    if refused.is_some() && storm < 100 {
        discard_all(clients);
        return Err(Failure::new(format!(
            "with the server stopped, only {storm} connections fit in its listen backlog"
        ))
        .expected("a backlog of at least 100 (listen(fd, 128) or more)")
        .cause("pass a larger backlog to listen()")
        .into());
    }
    let deadline = within(Duration::from_secs(10));
    let mut answered = 0;
    let mut first_failure = None;
    for (i, client) in clients.iter_mut().enumerate() {
        let line = format!("storm client {i}\n");
        if client.send_all(line.as_bytes(), deadline).is_err() {
            continue;
        }
    }
    // Replies come within milliseconds of each other: once none has come
    // for SHORT, the rest are not coming (the clients after the first
    // silent one are only read for what has already arrived).
    let mut last_reply = Instant::now();
    for (i, client) in clients.iter_mut().enumerate() {
        let line = format!("storm client {i}\n");
        let got = client.recv_exact(line.len(), deadline.min(last_reply + SHORT));
        if got.end == End::Complete && got.data == line.as_bytes() {
            answered += 1;
            last_reply = Instant::now();
        } else if first_failure.is_none() {
            first_failure = Some(client.id);
        }
    }
    discard_all(clients);
    let Some(id) = first_failure else {
        return server.alive("after the storm");
    };
    Err(Failure::new(format!(
        "{storm} clients connected while the server was stopped, then each sent one line; {} of them answered",
        thousands(answered)
    ))
    .expected(format!("all {storm} answered"))
    .cause("the listener reported one edge for all the pending connections: accept until EAGAIN (WouldBlock) on each wakeup, or the rest wait forever")
    .transcript(&[id])
    .into())
}

pub const BIG_REPLIES: Check = Check {
    name: "big_replies",
    points: 8,
    title: "a client with small buffers sends 12 MiB of lines (more than the kernel can buffer) and reads slowly: every byte comes back, written each time the socket has room again",
    limit: secs(60),
    run: big_replies,
    proven_by: &[broken(
        "broken_epoll_et_write_once_no_rearm",
        "wait for EPOLLOUT",
    )],
};

fn big_replies(ctx: &Ctx) -> Outcome {
    let mut server = ctx.start()?;
    let mut c = ctx.connect_small(&server)?;
    // More than the server's send buffer can hold (tcp_wmem max is 4 MiB):
    // its writes must hit EAGAIN and wait for room, whatever the timing.
    let data = lines(12 << 20, 33);
    let (sent, got) = slow_reader(&mut c, &data);
    if got.end == End::Complete && got.data == data {
        return server.alive("during the check");
    }
    let mut summary = format!(
        "c{} sent {} of {} of lines while reading slowly (128 KiB every 10 ms); it got {} back",
        c.id,
        bytes(sent),
        bytes(data.len()),
        bytes(got.data.len())
    );
    summary += &bulk_outcome(&data, &got, Duration::from_secs(2)).0;
    Err(Failure::new(summary)
        .expected("every byte back")
        .cause("when a write returns EAGAIN the rest must be written once the socket has room: wait for EPOLLOUT (edge-triggered: register it, it is reported when room appears) and write until EAGAIN or nothing is left")
        .transcript(&[c.id])
        .into())
}

/// Sends everything while reading at most 128 KiB every 10 ms.
fn slow_reader(c: &mut Client, data: &[u8]) -> (usize, crate::harness::client::Received) {
    let mut sent = 0;
    let mut received = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 128 * 1024];
    let deadline = within(Duration::from_secs(40));
    let mut last_progress = Instant::now();
    let end = loop {
        if received.len() >= data.len() {
            break End::Complete;
        }
        if sent < data.len() {
            match c.send_some(&data[sent..]) {
                Ok(n) if n > 0 => {
                    sent += n;
                    last_progress = Instant::now();
                }
                Ok(_) => {}
                Err(end) => break end,
            }
        }
        match c.recv_some(&mut buf) {
            Ok(Some(n)) => {
                received.extend_from_slice(&buf[..n]);
                last_progress = Instant::now();
            }
            Ok(None) => {}
            Err(end) => break end,
        }
        if last_progress.elapsed() > Duration::from_secs(2) || Instant::now() > deadline {
            break End::Timeout;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        sent,
        crate::harness::client::Received {
            data: received,
            end,
        },
    )
}
