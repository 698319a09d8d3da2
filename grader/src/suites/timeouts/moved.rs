//! The idle rule's two halves: "no byte has moved" (a line trickling in a
//! byte at a time is not idle, though no line ends) and `BYE idle` is "one
//! attempt, not waited for" (a client that floods the server and never reads
//! is closed all the same, once nothing moves).

use super::idle::{IDLE_MS, fell_behind, paced};
use super::{BYE, CONTRACT_LATE, EARLY, NEVER_MS, SLACK, ms, secs_f, start_timed};
use crate::check::{Check, Ctx, Failure, Outcome, Server, Verdict, broken, secs, within};
use crate::harness::client::SMALL_BUFFER;
use crate::harness::diag::{Diag, Queues};
use crate::harness::text::{bytes, quote};
use crate::suites::echo::{lines, send};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The line of `idle_trickle`, sent one byte every N/3 ms: its 12 bytes take
/// 1.2 s, four times the idle timeout, before its `\n`.
const TRICKLED: &[u8] = b"byte by byte";

pub(crate) const IDLE_TRICKLE: Check = Check {
    name: "idle_trickle",
    points: 4,
    title: "with --idle-timeout-ms 300, a line that trickles in one byte every 100 ms for 1.2 s keeps its connection open (every byte read counts as moved), then comes back whole",
    limit: secs(30),
    run: idle_trickle,
    proven_by: &[
        broken("broken_timeouts_idle_per_line", "every byte"),
        broken("broken_async_echo_idle_per_line", "every byte"),
    ],
};

fn idle_trickle(ctx: &Ctx) -> Outcome {
    let mut server = start_timed(ctx, IDLE_MS, NEVER_MS)?;
    paced(
        &mut server,
        "a byte every 100 ms",
        "while a line trickled in",
        |server| trickle_attempt(ctx, server),
    )
}

/// One try of `idle_trickle` (see [`paced`] for what it returns).
fn trickle_attempt(ctx: &Ctx, server: &Server) -> Result<Option<String>, Verdict> {
    let every = ms(IDLE_MS / 3);
    let mut c = ctx.connect(server)?;
    let connected = Instant::now();
    let mut mark = connected;
    let mut buf = [0u8; 256];
    for (i, byte) in TRICKLED.iter().enumerate() {
        if let Some(why) = fell_behind(mark, "the next byte") {
            c.discard();
            return Ok(Some(why));
        }
        mark = Instant::now();
        // Whatever came back so far: nothing is due, not even a reply.
        let mut got = Vec::new();
        let ended = loop {
            match c.recv_some(&mut buf) {
                Ok(Some(n)) => got.extend_from_slice(&buf[..n]),
                Ok(None) => break None,
                Err(end) => break Some(end),
            }
        };
        let sent = c.send_some(std::slice::from_ref(byte));
        if got.is_empty() && ended.is_none() && sent.is_ok() {
            std::thread::sleep((mark + every).saturating_duration_since(Instant::now()));
            continue;
        }
        let how = match (ended, sent) {
            (Some(end), _) | (None, Err(end)) => end.describe(),
            (None, Ok(_)) => "the connection stayed open".to_string(),
        };
        return Err(Failure::new(format!(
            "c{} sent {} one byte every {} ms (idle timeout {IDLE_MS} ms), a line not ended yet; {} after it connected it had received {}, and {how}",
            c.id,
            quote(&TRICKLED[..i]),
            every.as_millis(),
            secs_f(connected.elapsed()),
            if got.is_empty() { "nothing".to_string() } else { quote(&got) },
        ))
        .expected("nothing back and no close while the line trickles in: each byte read is a byte moved, so the connection is never idle for 300 ms")
        .cause("the idle deadline restarts only when a whole line arrives: every byte read (or written) counts, so restart it on every read that returns bytes, whether or not a line ended")
        .transcript(&[c.id])
        .into());
    }
    if let Some(why) = fell_behind(mark, "the line's end") {
        c.discard();
        return Ok(Some(why));
    }
    let mut line = TRICKLED.to_vec();
    line.push(b'\n');
    send(&mut c, b"\n")?;
    let got = c.recv_exact(line.len(), within(Duration::from_secs(2)));
    if got.data != line {
        return Err(Failure::new(format!(
            "c{} sent {} one byte every {} ms, then \"\\n\"; it received {}, then {}",
            c.id,
            quote(TRICKLED),
            every.as_millis(),
            quote(&got.data),
            got.end.describe()
        ))
        .expected(format!(
            "{} back: the bytes of a line are kept until its \\n comes, however slowly they arrive",
            quote(&line)
        ))
        .cause("the bytes of the line read before its end were lost or reordered: keep a partial line in the connection's buffer between reads")
        .transcript(&[c.id])
        .into());
    }
    c.discard();
    Ok(None)
}

/// The idle timeout of `idle_flooder`: longer than the kernel's own late
/// moves on a stuck connection (a zero-window probe reopens a window a few
/// hundred ms after the flood stops), so that a server waiting to write
/// `BYE idle` still waits when its deadline comes.
const FLOOD_IDLE_MS: u64 = 1_000;
/// The flood is over when no send has succeeded for this long...
const FLOOD_STALL: Duration = Duration::from_millis(200);
/// ... or after this long: several times what a server's buffers can take
/// at loopback speed (4.6 MB flood a server in 0.1-0.3 s here).
const FLOOD_FOR: Duration = Duration::from_millis(1500);
/// How often the grader looks at both ends of the connection.
const LOOK_EVERY: Duration = Duration::from_millis(5);

pub(crate) const IDLE_FLOODER: Check = Check {
    name: "idle_flooder",
    points: 4,
    title: "with --idle-timeout-ms 1000, a client that floods the server and never reads (64 KiB socket buffers) is closed 1 s after the server stopped reading and writing: `BYE idle` is one attempt, not waited for",
    limit: secs(40),
    run: idle_flooder,
    proven_by: &[
        broken("broken_timeouts_waits_for_bye", "one attempt"),
        broken("broken_async_echo_waits_for_bye", "one attempt"),
    ],
};

/// Both ends of the flooder's connection, as the kernel shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Ends {
    server: Option<Queues>,
    client: Option<Queues>,
}

/// What the grader knows of when the connection's last byte moved.
struct Movement {
    seen: Ends,
    looked: Instant,
    /// The last look at which anything had changed at either end: the
    /// server's last read or write cannot be much later (one it makes shows
    /// as a change of its queues, unless the kernel moved the same count the
    /// other way at once, and then the client's end changed).
    changed: Instant,
    /// The look before the last change only the server can make (its
    /// receive queue shrank: it read; its send queue grew by more than a
    /// `BYE idle` line: it wrote): its last byte moved after this.
    moved_after: Instant,
}

impl Movement {
    fn new(ends: Ends, now: Instant) -> Movement {
        Movement {
            seen: ends,
            looked: now,
            changed: now,
            moved_after: now,
        }
    }

    fn look(&mut self, ends: Ends, now: Instant) {
        if ends != self.seen {
            if let (Some(old), Some(new)) = (self.seen.server, ends.server)
                && (new.rx < old.rx || new.tx > old.tx + BYE.len() as u64)
            {
                self.moved_after = self.looked;
            }
            self.changed = now;
            self.seen = ends;
        }
        self.looked = now;
    }
}

/// The flooding client: small buffers, set before connect (the window is
/// negotiated in the handshake), so that the server's replies fill them.
fn connect_flooder(ctx: &Ctx, addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_recv_buffer_size(SMALL_BUFFER)?;
    socket.set_send_buffer_size(SMALL_BUFFER)?;
    socket.bind(&SockAddr::from(SocketAddrV4::new(ctx.source, 0)))?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Whether the client's socket has seen the server's reset (a close with
/// unread input, as here, sends one; poll reports it whatever is asked for).
fn reset_seen(socket: &Socket) -> bool {
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(socket),
        PollFlags::empty(),
    )];
    let _ = poll(&mut fds, PollTimeout::ZERO);
    fds[0]
        .revents()
        .is_some_and(|revents| revents.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

fn idle_flooder(ctx: &Ctx) -> Outcome {
    let idle = ms(FLOOD_IDLE_MS);
    let diag = Diag::new()
        .map_err(|err| Failure::new(format!("grader error: a sock_diag netlink socket: {err}")))?;
    let mut server = start_timed(ctx, FLOOD_IDLE_MS, NEVER_MS)?;
    let socket = connect_flooder(ctx, server.addr).map_err(|err| {
        Failure::new(format!(
            "the grader's flooding client could not connect to {}: {err}",
            server.addr
        ))
        .expected("the server accepts connections on the port it announced")
    })?;
    let (Some(client), SocketAddr::V4(listening)) = (
        socket
            .local_addr()
            .ok()
            .and_then(|addr| addr.as_socket_ipv4()),
        server.addr,
    ) else {
        return Err(Failure::new("grader error: the flooding client's address is not IPv4").into());
    };
    let look = || Ends {
        server: diag.queues(listening, client),
        client: diag.queues(client, listening),
    };
    let result = flood_and_watch(ctx, &socket, idle, look);
    let _ = socket.set_linger(Some(Duration::ZERO));
    drop(socket);
    result?;
    server.alive("after closing a flooding client")
}

fn flood_and_watch(
    ctx: &Ctx,
    mut socket: &Socket,
    idle: Duration,
    look: impl Fn() -> Ends,
) -> Outcome {
    // Flood until the server stops taking bytes (or for FLOOD_FOR, as its
    // kernel may go on taking a trickle long after the server stopped
    // reading): its replies fill the client's receive buffer and its own
    // send buffer, it stops reading (backpressure), and its receive buffer
    // fills up in turn. Meanwhile, and after, watch both ends until the
    // server closes: once nothing moves, it must within N + 100 ms. The
    // close shows as a reset at the client (the server closes a socket with
    // unread input) or as the server's socket no longer held by its process.
    let data = lines(256 * 1024, 7);
    let started = Instant::now();
    let latest = idle + CONTRACT_LATE;
    let give_up = started + FLOOD_FOR + idle + Duration::from_secs(4);
    let mut movement = Movement::new(look(), started);
    let mut sent = 0usize;
    let mut last_sent = started;
    let mut flooded = None;
    let mut seen_open = started;
    let mut accepted = false;
    let closed = loop {
        while flooded.is_none() {
            let from = sent % data.len();
            match socket.write(&data[from..]) {
                Ok(n) => {
                    sent += n;
                    last_sent = Instant::now();
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                // WouldBlock, or the server's reset: seen below.
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let ends = look();
        // Until the server accepts it, no process holds its socket either.
        let held = ends.server.is_some_and(|queues| queues.held);
        accepted |= held;
        if (accepted && !held) || reset_seen(socket) {
            break Some(now);
        }
        movement.look(ends, now);
        seen_open = now;
        if flooded.is_none()
            && (now.duration_since(last_sent) >= FLOOD_STALL
                || now.duration_since(started) >= FLOOD_FOR)
        {
            flooded = Some(now);
        }
        if (flooded.is_some() && now > movement.changed + latest + SLACK + ms(100)) || now > give_up
        {
            break None;
        }
        std::thread::sleep(LOOK_EVERY);
    };
    let flood_took = flooded.unwrap_or(seen_open).duration_since(started);
    ctx.note(format!("flooded {} in {}", bytes(sent), secs_f(flood_took)));
    let window = format!(
        "the close between {} and {} after the last byte moved (the grader allows {} ms more for its own delays)",
        secs_f(idle),
        secs_f(latest),
        SLACK.as_millis()
    );
    let summary = format!(
        "a client with {} KiB socket buffers sent lines as fast as it could for {} ({}) and never read a reply; its socket queues (as `ss` shows them) last changed {} after it began",
        SMALL_BUFFER / 1024,
        secs_f(flood_took),
        bytes(sent),
        secs_f(movement.changed.duration_since(started))
    );
    let Some(closed) = closed else {
        let quiet = seen_open.saturating_duration_since(movement.changed);
        if quiet <= latest + SLACK {
            return Err(Verdict::Skip(format!(
                "bytes kept moving on the flooded connection until the grader gave up, {} after it began; run it again",
                secs_f(give_up.duration_since(started))
            )));
        }
        return Err(Failure::new(format!(
            "{summary}; {} after that the server still held the connection",
            secs_f(quiet)
        ))
        .expected(format!("{window}: a connection where nothing moves is idle, even with replies stuck in it"))
        .cause("`BYE idle` is one attempt, not waited for: the server waits for it (or the replies before it) to be written before it closes, and a client that never reads never makes room. Write it once (a short or failed write is fine) and close at once; a reset, which a close with unread input sends, is expected here")
        .into());
    };
    ctx.note(format!(
        "closed {} ms after the last change seen, {} ms after the server's last read or write seen",
        closed
            .saturating_duration_since(movement.changed)
            .as_millis(),
        closed
            .saturating_duration_since(movement.moved_after)
            .as_millis()
    ));
    if closed.saturating_duration_since(movement.moved_after) + EARLY < idle {
        return Err(Failure::new(format!(
            "{summary}; the server's last read or write was {} after the flood began, and it closed the connection {} after that",
            secs_f(movement.moved_after.duration_since(started)),
            secs_f(closed.saturating_duration_since(movement.moved_after))
        ))
        .expected(window)
        .cause("closed too early: the idle deadline is the last byte read or written + N, also for a client that floods, and a client that does not read is no reason to close")
        .into());
    }
    let open_for = seen_open.saturating_duration_since(movement.changed);
    if open_for > latest + SLACK {
        return Err(Failure::new(format!(
            "{summary}; the server still held the connection {} after that, and closed it later",
            secs_f(open_for)
        ))
        .expected(window)
        .cause("closed late: the server waited for something before closing, or its idle check runs too rarely; `BYE idle` is one attempt, not waited for")
        .into());
    }
    Ok(())
}
