//! Deadlines at scale: an idle server sleeps until its earliest deadline
//! (few wakeups), and 10,000 connections with staggered deadlines are each
//! closed on time.

use super::{BYE, CONTRACT_LATE, EARLY, MANY_SLACK, NEVER_MS, ms, secs_f, start_timed};
use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, need_fds, secs, within};
use crate::harness::proc;
use crate::harness::text::{quote, thousands};
use crate::suites::echo::echo;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

pub(crate) const FEW_WAKEUPS: Check = Check {
    name: "few_wakeups",
    points: 5,
    title: "with one idle client and long deadlines (N=60 s; T=1 s where the lab ticks), the server wakes in 3 s only for what is due (the ticks) and a few more (voluntary context switches in /proc/PID/status)",
    limit: secs(30),
    run: few_wakeups,
    proven_by: &[
        broken("broken_timeouts_fixed_short_tick", "fixed interval"),
        broken("broken_timeouts_ticker_150ms", "fixed interval"),
        broken("broken_async_echo_fixed_tick", "fixed interval"),
        broken("broken_async_echo_ticker_150ms", "fixed interval"),
    ],
};

/// The idle window of `few_wakeups`: long enough that a reactor on a fixed
/// 150 ms tick (20 wake-ups) is far above what is due (4 ticks at most).
const WAKEUP_WINDOW: Duration = Duration::from_secs(3);
/// The tick of `few_wakeups` where the lab ticks.
const WAKEUP_TICK_MS: u64 = 1_000;
/// Wake-ups allowed beyond the deadlines due in the window: the grader
/// cannot see everything a correct server may sleep on once (a page of its
/// program loaded from disk, a late ack of the echo before the window).
/// Measured: a correct server wakes exactly for its ticks, and none at all
/// without them.
const SPARE_WAKEUPS: u64 = 4;

fn few_wakeups(ctx: &Ctx) -> Outcome {
    let mut server = start_timed(ctx, 60_000, WAKEUP_TICK_MS)?;
    let pid = server.pid();
    let mut c = ctx.connect(&server)?;
    echo(&mut c, b"and now, silence\n")?;
    std::thread::sleep(ms(200));
    let before = proc::voluntary_ctxt_switches(pid);
    std::thread::sleep(WAKEUP_WINDOW);
    let after = proc::voluntary_ctxt_switches(pid);
    server.alive("while idle")?;
    let (Some(before), Some(after)) = (before, after) else {
        return Err(
            Failure::new("could not read voluntary_ctxt_switches from /proc/PID/status").into(),
        );
    };
    let wakeups = after.saturating_sub(before);
    let window = secs_f(WAKEUP_WINDOW);
    ctx.note(format!("{wakeups} voluntary context switches in {window}"));
    // What is due in the window: the ticks (a window of 3 T holds at most
    // 4 of them), no idle deadline (N = 60 s), nothing to read.
    let ticks = if super::has_ticks(ctx) {
        WAKEUP_WINDOW.as_millis() as u64 / WAKEUP_TICK_MS + 1
    } else {
        0
    };
    let allowed = ticks + SPARE_WAKEUPS;
    ensure(wakeups <= allowed, || {
        let (args, due) = if ticks > 0 {
            (
                format!(" and --tick-ms {WAKEUP_TICK_MS}"),
                format!("the {ticks} ticks that can fall in {window}"),
            )
        } else {
            (
                String::new(),
                "nothing (no tick, no idle deadline for 60 s)".to_string(),
            )
        };
        Failure::new(format!(
            "with one idle client and --idle-timeout-ms 60000{args}, the server went to sleep {wakeups} times in {window} (voluntary context switches), about once every {} ms",
            WAKEUP_WINDOW.as_millis() as u64 / wakeups.max(1)
        ))
        .expected(format!(
            "at most {allowed}: it wakes only for what is due, here {due}, plus {SPARE_WAKEUPS} for what the grader cannot see"
        ))
        .cause("the wait wakes on a fixed interval: compute its timeout from the earliest deadline (the next tick, the earliest idle deadline; none at all when nothing is due) instead of looking at the clock every few (or every hundred) ms")
    })
}

/// One of the 10,000 clients of `many_deadlines`.
struct Silent {
    socket: Option<Socket>,
    /// Just before the connect: the server cannot have accepted it earlier.
    connecting: Instant,
    connected: Instant,
    /// The last time the grader knew it was still open.
    seen_open: Instant,
    data: Vec<u8>,
    closed: Option<Instant>,
    reset: bool,
}

impl Drop for Silent {
    /// A reset frees the port at once (no TIME_WAIT), however the check ends.
    fn drop(&mut self) {
        if let Some(socket) = self.socket.take() {
            let _ = socket.set_linger(Some(Duration::ZERO));
        }
    }
}

pub(super) const MANY_DEADLINES: Check = Check {
    name: "many_deadlines",
    points: 8,
    title: "10,000 silent clients connect in 10 waves (staggered deadlines, --idle-timeout-ms 1000): each gets `BYE idle` and the close on time",
    limit: secs(60),
    run: many_deadlines,
    proven_by: &[broken(
        "broken_timeouts_latest_deadline",
        "EARLIEST idle deadline",
    )],
};

fn many_deadlines(ctx: &Ctx) -> Outcome {
    const CLIENTS: usize = 10_000;
    const WAVES: usize = 10;
    const IDLE: u64 = 1_000;
    let idle = ms(IDLE);
    need_fds(CLIENTS)?;
    let mut server = start_timed(ctx, IDLE, NEVER_MS)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
        .map_err(|e| Failure::new(format!("grader error: epoll_create: {e}")))?;
    let mut clients: Vec<Silent> = Vec::with_capacity(CLIENTS);
    let mut buf = [0u8; 256];
    let mut events = vec![EpollEvent::empty(); 1024];
    let mut view = Instant::now();
    let addr = server.addr;
    let [_, b, c, d] = ctx.source.octets();
    // Connect in waves, watching for closes all along: the first waves'
    // deadlines pass while the last ones connect.
    for wave in 0..WAVES {
        for i in 0..CLIENTS / WAVES {
            let n = wave * (CLIENTS / WAVES) + i;
            let source = Ipv4Addr::new(127, b, c, d.wrapping_add((n / 5000) as u8).max(1));
            let connecting = Instant::now();
            match connect_silent(source, addr) {
                Ok(socket) => {
                    let event = EpollEvent::new(EpollFlags::EPOLLIN, clients.len() as u64);
                    if let Err(e) = epoll.add(&socket, event) {
                        return Err(Failure::new(format!("grader error: epoll_ctl: {e}")).into());
                    }
                    let connected = Instant::now();
                    clients.push(Silent {
                        socket: Some(socket),
                        connecting,
                        connected,
                        seen_open: connected,
                        data: Vec::new(),
                        closed: None,
                        reset: false,
                    });
                }
                Err(err) => {
                    return Err(Failure::new(format!(
                        "client {} of {} could not connect: {err}",
                        thousands(n + 1),
                        thousands(CLIENTS)
                    ))
                    .expected("the server accepts 10,000 connections")
                    .into());
                }
            }
            if i % 100 == 99 {
                collect_closes(&epoll, &mut events, &mut clients, &mut buf, &mut view, 0);
            }
        }
        let pause = within(ms(150));
        while Instant::now() < pause {
            collect_closes(&epoll, &mut events, &mut clients, &mut buf, &mut view, 10);
        }
    }
    let last_connect = clients.last().map_or_else(Instant::now, |c| c.connected);
    let until = last_connect + idle + CONTRACT_LATE + MANY_SLACK + ms(1000);
    while Instant::now() < until && clients.iter().any(|c| c.closed.is_none()) {
        collect_closes(&epoll, &mut events, &mut clients, &mut buf, &mut view, 50);
    }
    server.alive("with 10,000 connections")?;
    let spread = last_connect.duration_since(clients[0].connected);
    // Free every socket now (with resets, see Drop).
    for client in &mut clients {
        drop(
            client
                .socket
                .take()
                .map(|socket| socket.set_linger(Some(Duration::ZERO))),
        );
    }
    let latest = idle + CONTRACT_LATE + MANY_SLACK;
    let mut never = 0;
    let mut early = Vec::new();
    let mut late = Vec::new();
    let mut no_bye = None;
    for (i, client) in clients.iter().enumerate() {
        let Some(closed) = client.closed else {
            never += 1;
            continue;
        };
        // Judged on what the grader knows for sure (see idle::judge_idle_close):
        // closed before N - EARLY after the connect began, or seen open
        // later than N + 100 ms + SLACK after it ended.
        let open_for = client.seen_open.saturating_duration_since(client.connected);
        if closed.saturating_duration_since(client.connecting) + EARLY < idle {
            if early.is_empty() {
                ctx.note(format!(
                    "first early close: client {}, {} ms after its connect began (it took {} ms), got {}, {}",
                    i + 1,
                    closed.saturating_duration_since(client.connecting).as_millis(),
                    client.connected.duration_since(client.connecting).as_millis(),
                    quote(&client.data),
                    if client.reset { "reset" } else { "EOF" }
                ));
            }
            early.push(closed.saturating_duration_since(client.connecting));
        } else if open_for > latest {
            late.push(open_for);
        } else if client.data != BYE && no_bye.is_none() {
            no_bye = Some((i, client.data.clone(), client.reset));
        }
    }
    let on_time = CLIENTS - never - early.len() - late.len();
    let max_late = late.iter().max().copied().unwrap_or_default();
    ctx.note(format!(
        "connections made over {}; {} closed on time, {} early, {} late (latest {}), {never} never",
        secs_f(spread),
        thousands(on_time),
        early.len(),
        late.len(),
        secs_f(max_late)
    ));
    let summary = format!(
        "10,000 silent clients connected in {WAVES} waves over {} (idle timeout {IDLE} ms); {} were closed on time, {} early, {} late (the latest {} after connecting), {} not at all within {}",
        secs_f(spread),
        thousands(on_time),
        thousands(early.len()),
        thousands(late.len()),
        secs_f(max_late),
        thousands(never),
        secs_f(latest + ms(1000))
    );
    let expected = format!(
        "each closed between {} and {} after it connected (the grader allows {} ms more for its own delays)",
        secs_f(idle),
        secs_f(idle + CONTRACT_LATE),
        MANY_SLACK.as_millis()
    );
    ensure(late.is_empty() && never == 0, || {
        Failure::new(summary.clone()).expected(expected.clone()).cause(
            "deadlines that differ are not all honoured: the wait's timeout must end at the EARLIEST idle deadline (a min-heap, a timer wheel or a sorted map gives it cheaply), and after each wait every connection whose deadline has passed is closed",
        )
    })?;
    ensure(early.is_empty(), || {
        Failure::new(summary.clone())
            .expected(expected.clone())
            .cause("a connection is closed before its own deadline: keep one deadline per connection, last activity (or accept) + N")
    })?;
    if let Some((i, data, reset)) = no_bye {
        return Err(Failure::new(format!(
            "of 10,000 idle clients closed on time, client {} received {} before the {}",
            i + 1,
            quote(&data),
            if reset { "reset" } else { "EOF" }
        ))
        .expected("`BYE idle\\n`, then the close")
        .cause("write `BYE idle\\n` to each idle connection before closing it")
        .into());
    }
    Ok(())
}

/// A client that connects and never sends: non-blocking once connected.
fn connect_silent(source: Ipv4Addr, addr: std::net::SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Waits up to `timeout_ms` for readable clients and records what they got
/// and when the server closed them (closing the grader's side with a reset).
///
/// `view` is the last time the grader saw every open client: when a wait
/// returns fewer events than it could, every client it did not report was
/// still open then. A client reported closed was open at the previous view.
fn collect_closes(
    epoll: &Epoll,
    events: &mut [EpollEvent],
    clients: &mut [Silent],
    buf: &mut [u8],
    view: &mut Instant,
    timeout_ms: u16,
) {
    let n = epoll
        .wait(events, EpollTimeout::from(timeout_ms))
        .unwrap_or(0);
    let now = Instant::now();
    let full_view = n < events.len();
    for event in &events[..n] {
        let Some(client) = clients.get_mut(event.data() as usize) else {
            continue;
        };
        let Some(socket) = client.socket.as_mut() else {
            continue;
        };
        let ended = loop {
            match socket.read(buf) {
                Ok(0) => break Some(false),
                Ok(got) => client.data.extend_from_slice(&buf[..got]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break Some(true),
            }
        };
        if let Some(reset) = ended {
            client.closed = Some(now);
            client.seen_open = client.seen_open.max(*view);
            client.reset = reset;
            let _ = epoll.delete(&*socket);
            let _ = socket.set_linger(Some(Duration::ZERO));
            client.socket = None;
        }
    }
    if full_view {
        *view = now;
    }
}
