//! `FD_SETSIZE`: more clients than select can watch. Clients connect one at
//! a time (the accept queue is first in, first out, so client order is fd
//! order), and which fd the server gave each one is read from
//! `/proc/PID/fd` and `/proc/PID/net/tcp` (the server's socket whose peer is
//! the client's port), so no count of the server's own fds is assumed.

use crate::check::{Check, Ctx, Failure, Outcome, Server, Verdict, broken, need_fds, secs, within};
use crate::harness::client::{Client, End, Received};
use crate::harness::proc;
use crate::harness::process::SpawnOptions;
use crate::harness::text::{quote, thousands};
use crate::suites::echo::{discard_all, send};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// select's bitmaps hold fds 0..1024.
const SETSIZE: i32 = 1024;
const CLIENTS: usize = 1100;
/// Clients that leave, and as many that come after them.
const CHURN: usize = 100;
/// Fds below 1024 a correct server may leave free while it refuses clients
/// (a file it opened for a moment, say).
const SLACK: usize = 3;
const FULL: &[u8] = b"ERR server full\n";

pub(super) const FD_SETSIZE: Check = Check {
    name: "fd_setsize",
    points: 16,
    title: "started with a soft fd limit of 1024 (the hard limit higher), 1,100 clients connect one by one: each on an fd below 1024 is echoed, each other gets exactly `ERR server full` and EOF; then 100 clients with low and middle fds leave, 100 new ones take their fds, and every client is served",
    limit: secs(90),
    run: fd_setsize,
    proven_by: &[
        broken("broken_select_echo_fd_in_set", "FD_SETSIZE"),
        broken("broken_select_echo_overrun", "past the end of the bitmap"),
        broken("broken_select_echo_refuse_early", "too early"),
        broken("broken_select_echo_refuse_silently", "without the ERR line"),
        broken("broken_select_echo_stale_nfds", "stale nfds"),
        broken("broken_select_echo_no_rlimit", "RLIMIT_NOFILE"),
    ],
};

fn fd_setsize(ctx: &Ctx) -> Outcome {
    // First: raising the hard limit also lets need_fds pass.
    need_hard_limit()?;
    need_fds(CLIENTS + CHURN)?;
    let options = SpawnOptions {
        nofile_soft: Some(SETSIZE as u64),
        ..SpawnOptions::default()
    };
    let mut server = ctx.start_server(options)?;
    let mut clients = Vec::with_capacity(CLIENTS + CHURN);
    let result = run(ctx, &mut server, &mut clients);
    discard_all(clients);
    result?;
    server.alive("after the check")
}

/// The hard fd limit the grader asks for when it may raise its own.
const HARD_LIMIT: u64 = 4096;

/// The server inherits the grader's hard fd limit, and fds of 1024 and more
/// exist for it only if that limit is at least 2048. The grader raises its
/// own when it may (root with CAP_SYS_RESOURCE: a VM, `sudo`, a container
/// given that capability); otherwise the check is skipped, saying how.
fn need_hard_limit() -> Outcome {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((0, 0));
    if hard >= 2 * SETSIZE as u64 {
        return Ok(());
    }
    // Raising a hard limit needs CAP_SYS_RESOURCE; a refusal changes nothing.
    if setrlimit(Resource::RLIMIT_NOFILE, HARD_LIMIT, HARD_LIMIT).is_ok() {
        return Ok(());
    }
    Err(Verdict::Skip(format!(
        "this check starts the server with a soft fd limit of 1024 and needs a hard limit of at least 2048 \
         (it is {hard}), so that fds of 1024 and more exist; the grader could not raise it (that takes root \
         with CAP_SYS_RESOURCE). Raise it, then grade again: in a shell, as root, `ulimit -Hn {HARD_LIMIT}`, \
         then run the grader from that shell (as root outside a container it raises the limit itself); \
         in Docker, `docker run --ulimit nofile={HARD_LIMIT}:{HARD_LIMIT} ...` (root in a container lacks \
         CAP_SYS_RESOURCE by default); for logins, `* hard nofile {HARD_LIMIT}` in /etc/security/limits.conf, \
         then log in again; for a systemd service such as a CI runner, `LimitNOFILE={HARD_LIMIT}` in its unit"
    )))
}

fn run(ctx: &Ctx, server: &mut Server, clients: &mut Vec<Client>) -> Outcome {
    connect(ctx, server, clients, CLIENTS)?;
    let first = settle(ctx, server, clients, 0)?;
    if let Some(dead) = died(server, clients.len()) {
        return Err(dead);
    }
    let refused: Vec<usize> = (0..clients.len())
        .filter(|i| !first.fds.contains_key(i))
        .collect();
    ctx.note(format!(
        "{} clients served (highest server fd {}), {} refused",
        first.fds.len(),
        first.fds.values().max().unwrap_or(&0),
        refused.len()
    ));
    no_fd_kept_past_the_limit(server, clients, &first)?;
    refused_only_when_full(server, refused.len())?;
    for &i in &refused {
        expect_full(&mut clients[i], i)?;
    }
    let mut served: Vec<(usize, i32)> = first.fds.into_iter().collect();
    served.sort_by_key(|&(_, fd)| fd);
    echo_each(clients, &served, "while the server was full", None)?;

    // Clients with low and middle fds leave; new ones get those fds.
    let middle = served.len() / 2;
    let leaving: Vec<(usize, i32)> = served
        .iter()
        .take(CHURN / 2)
        .chain(served.iter().skip(middle).take(CHURN / 2))
        .copied()
        .collect();
    leave(ctx, server, clients, &leaving)?;
    let staying: Vec<(usize, i32)> = served
        .into_iter()
        .filter(|s| !leaving.contains(s))
        .collect();
    let before = clients.len();
    connect(ctx, server, clients, CHURN)?;
    let second = settle(ctx, server, clients, before)?;
    if let Some(dead) = died(server, clients.len()) {
        return Err(dead);
    }
    let newcomers: Vec<usize> = (before..clients.len()).collect();
    if let Some(&i) = newcomers.iter().find(|i| !second.fds.contains_key(i)) {
        let got = clients[i].recv_to_end(64, within(secs(2)));
        return Err(Failure::new(format!(
            "{CHURN} clients with low and middle fds left, then {CHURN} new clients connected; the new client c{} was refused: it {}",
            clients[i].id,
            describe(&got)
        ))
        .expected(format!("the {CHURN} new clients served on the fds the others left free"))
        .cause("fds are free again once clients leave: refuse by the accepted fd (fd >= FD_SETSIZE), not by a count of clients that only grows")
        .transcript(&[clients[i].id])
        .into());
    }
    let mut everyone: Vec<(usize, i32)> = staying;
    everyone.extend(second.fds.into_iter().filter(|(i, _)| *i >= before));
    everyone.sort_by_key(|&(_, fd)| fd);
    let lowest_new = newcomers
        .iter()
        .filter_map(|i| everyone.iter().find(|(j, _)| j == i).map(|&(_, fd)| fd))
        .min();
    echo_each(clients, &everyone, "after the churn", lowest_new)
}

/// Connects `n` more clients one at a time.
fn connect(ctx: &Ctx, server: &mut Server, clients: &mut Vec<Client>, n: usize) -> Outcome {
    for _ in 0..n {
        match ctx.connect(server) {
            Ok(client) => clients.push(client),
            Err(verdict) => return Err(died(server, clients.len()).unwrap_or(verdict)),
        }
    }
    Ok(())
}

/// If the server is dead: the failure that says so.
fn died(server: &mut Server, connected: usize) -> Option<Verdict> {
    let ending = server.program.check_alive().err()?;
    Some(
        Failure::new(format!(
            "the server stopped running while {} clients were connected: {ending}",
            thousands(connected)
        ))
        .expected("clients on fds of 1024 and more refused with `ERR server full`, the server running on")
        .cause("an fd of 1024 or more went into an fd_set: select's bitmaps end at FD_SETSIZE (1024); nix's FdSet::insert panics, C's FD_SET writes past the end. Check the fd after accept and refuse the client instead")
        .into(),
    )
}

/// Which client (by index) the server holds on which fd, once every client
/// from `from` on is either held by the server or has something to read
/// (a refusal).
struct Settled {
    fds: HashMap<usize, i32>,
}

fn settle(
    ctx: &Ctx,
    server: &mut Server,
    clients: &[Client],
    from: usize,
) -> Result<Settled, Verdict> {
    let deadline = within(secs(6));
    loop {
        let by_port: HashMap<u16, i32> = proc::tcp_connections(server.pid())
            .into_iter()
            .filter(|(_, peer)| *peer.ip() == ctx.source)
            .map(|(fd, peer)| (peer.port(), fd))
            .collect();
        let mut fds = HashMap::new();
        let mut waiting = Vec::new();
        for (i, client) in clients.iter().enumerate() {
            match client.local_port().and_then(|port| by_port.get(&port)) {
                Some(&fd) => {
                    fds.insert(i, fd);
                }
                None if i >= from && !client.has_input() => waiting.push(i),
                None => {}
            }
        }
        if waiting.is_empty() {
            return Ok(Settled { fds });
        }
        if Instant::now() >= deadline {
            return Err(never_accepted(server, clients, &fds, &waiting));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn never_accepted(
    server: &mut Server,
    clients: &[Client],
    fds: &HashMap<usize, i32>,
    waiting: &[usize],
) -> Verdict {
    if let Some(dead) = died(server, clients.len()) {
        return dead;
    }
    let soft = proc::nofile_soft(server.pid()).unwrap_or(0);
    let highest = fds.values().max().copied().unwrap_or(0);
    let cause = if soft <= SETSIZE as u64 {
        format!(
            "the server's soft fd limit is still {soft}: accept fails with EMFILE and the client waits in the backlog. Raise the soft RLIMIT_NOFILE to the hard limit at start, so that accept hands you fds of 1024 and more to refuse"
        )
    } else {
        "keep the listener in the read set and accept every pending connection: a client whose fd is 1024 or more is accepted, told `ERR server full` and closed".to_string()
    };
    let i = waiting[0];
    Failure::new(format!(
        "{} of {} clients were neither served nor refused within 6 s (the server held client sockets on fds up to {highest}): c{} (client {}) got no reply and no end of file, and the server never held its socket",
        thousands(waiting.len()),
        thousands(clients.len()),
        clients[i].id,
        i + 1
    ))
    .expected("every client accepted: served on an fd below 1024, or sent `ERR server full` and closed")
    .cause(cause)
    .into()
}

fn no_fd_kept_past_the_limit(server: &mut Server, clients: &mut [Client], s: &Settled) -> Outcome {
    let mut kept: Vec<(usize, i32)> = s
        .fds
        .iter()
        .filter(|&(_, &fd)| fd >= SETSIZE)
        .map(|(&i, &fd)| (i, fd))
        .collect();
    if kept.is_empty() {
        return Ok(());
    }
    kept.sort_by_key(|&(_, fd)| fd);
    let (i, fd) = kept[0];
    let line = b"are you there?\n";
    let _ = send(&mut clients[i], line);
    let got = clients[i].recv_exact(line.len(), within(secs(2)));
    server.alive("with clients on fds of 1024 and more")?;
    Err(Failure::new(format!(
        "the server kept {} clients on fds of 1024 and more open (fds {}..={}); c{} on fd {fd} sent {} and {}",
        kept.len(),
        kept[0].1,
        kept[kept.len() - 1].1,
        clients[i].id,
        quote(line),
        describe(&got)
    ))
    .expected("a client on fd 1024 or more sent `ERR server full` and closed at once")
    .cause("select cannot watch fd 1024 or more: setting its bit writes past the end of the bitmap (memory corruption in C; nix's FdSet panics). Refuse such a client: write `ERR server full\\n`, shutdown(SHUT_WR), close")
    .transcript(&[clients[i].id])
    .into())
}

fn refused_only_when_full(server: &Server, refused: usize) -> Outcome {
    let open = proc::fd_targets(server.pid())
        .iter()
        .filter(|(fd, _)| *fd < SETSIZE)
        .count();
    let free = SETSIZE as usize - open.min(SETSIZE as usize);
    if refused == 0 || free <= SLACK {
        return Ok(());
    }
    Err(Failure::new(format!(
        "{} clients were refused while {free} of the server's fds below 1024 were free (it held {open})",
        thousands(refused)
    ))
    .expected("every client served as long as its fd is below 1024; refusals start at fd 1024")
    .cause("refused too early: refuse by the accepted fd (fd >= FD_SETSIZE), not by a count of clients or a smaller limit of your own")
    .into())
}

/// A refused client gets exactly `ERR server full\n`, then EOF.
fn expect_full(client: &mut Client, i: usize) -> Outcome {
    let got = client.recv_to_end(64, within(secs(5)));
    if got.data == FULL && got.end == End::Eof {
        return Ok(());
    }
    let cause = if got.data.is_empty() && (got.end == End::Eof || got.end.is_reset()) {
        "the client was closed without the ERR line: write `ERR server full\\n` before shutdown(SHUT_WR) and close"
    } else if got.end == End::Timeout && got.data.is_empty() {
        "the refused client was accepted and then neither answered nor closed"
    } else if got.end == End::Timeout {
        "after `ERR server full` the connection must end: shutdown(SHUT_WR), then close"
    } else {
        "the refusal is exactly the 16 bytes `ERR server full\\n`, then the end of the connection"
    };
    Err(Failure::new(format!(
        "c{} (client {}, beyond the server's fd 1023) {}",
        client.id,
        i + 1,
        describe(&got)
    ))
    .expected("exactly `ERR server full\\n`, then EOF")
    .cause(cause)
    .transcript(&[client.id])
    .into())
}

fn describe(got: &Received) -> String {
    let how = match &got.end {
        End::Complete => String::new(),
        End::Timeout => ", then nothing more for a few seconds".into(),
        other => format!(", then {}", other.describe()),
    };
    if got.data.is_empty() {
        format!("got nothing{how}")
    } else {
        format!("got {}{how}", quote(&got.data))
    }
}

/// The clients that leave close their end; the server must close theirs.
fn leave(
    ctx: &Ctx,
    server: &mut Server,
    clients: &mut [Client],
    leaving: &[(usize, i32)],
) -> Outcome {
    let ports: Vec<u16> = leaving
        .iter()
        .filter_map(|&(i, _)| clients[i].local_port())
        .collect();
    // Shutting down our writing half is leaving, as the server sees it: it
    // reads EOF and closes its socket (ours stays open until the end).
    for &(i, _) in leaving {
        clients[i].shutdown_write();
    }
    let deadline = within(secs(5));
    loop {
        let held = proc::tcp_connections(server.pid())
            .iter()
            .filter(|(_, peer)| *peer.ip() == ctx.source && ports.contains(&peer.port()))
            .count();
        if held == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(format!(
                "{CHURN} clients closed their connections; 5 s later the server still held {held} of their sockets"
            ))
            .expected("a connection's socket closed once its client has closed")
            .cause("on EOF (read returns 0) finish the replies and close the socket, so its fd is free for the next client")
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each client sends one line, then each must get it back.
fn echo_each(
    clients: &mut [Client],
    who: &[(usize, i32)],
    when: &str,
    lowest_new: Option<i32>,
) -> Outcome {
    let deadline = within(secs(5));
    for &(i, fd) in who {
        send(&mut clients[i], format!("client on fd {fd}\n").as_bytes())?;
    }
    let mut silent = Vec::new();
    for &(i, fd) in who {
        let line = format!("client on fd {fd}\n");
        let got = clients[i].recv_exact(line.len(), deadline);
        if got.end != End::Complete || got.data != line.as_bytes() {
            silent.push((i, fd, got));
        }
    }
    let Some((i, fd, got)) = silent.first() else {
        return Ok(());
    };
    let fds: Vec<i32> = silent.iter().map(|(_, fd, _)| *fd).collect();
    let above_new = lowest_new.is_some_and(|low| fds.iter().all(|&fd| fd > low));
    let cause = if above_new {
        "the clients not served all have fds above the newest ones: a stale nfds. nfds is the highest fd in the sets plus one, computed before each select; taken from the last accept (or kept from an earlier round) it stops the kernel's scan short"
    } else {
        "every client on an fd below 1024 must be in the read set of every select, however many clients there are"
    };
    Err(Failure::new(format!(
        "{when}, {} of {} clients sent one line and got nothing back (server fds {}..={}); c{} on fd {fd} {}",
        silent.len(),
        who.len(),
        fds[0],
        fds[fds.len() - 1],
        clients[*i].id,
        describe(got)
    ))
    .expected("every client on an fd below 1024 echoed")
    .cause(cause)
    .transcript(&[clients[*i].id])
    .into())
}
