//! The echo servers' load generator (the bench's, and the grader's opt-in
//! leaderboard): idle connections held open and silent, and active clients
//! that ping-pong one line each.
//!
//! Everything runs in the calling thread: the active clients are driven by
//! one epoll loop and the idle ones are only held, so the generator costs a
//! few system calls per round trip whatever the number of connections, and
//! the server under test is what gets measured.

use super::text::{first_difference, quote};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// Longest line the echo contract allows, counting the `\n`.
pub const MAX_LINE: usize = 8192;
/// An active client whose reply is this late means the server is stuck.
const STALL: Duration = Duration::from_secs(5);
/// How long one connect may wait (a full backlog delays the handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to connect, and from which loopback address. Giving each server
/// its own source address keeps the 28,000 or so ephemeral ports of one
/// address from running out over a sweep.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub source: Ipv4Addr,
}

/// One blocking connect from `target.source`, with Nagle off (a client
/// waiting for its echo never has a second small write to merge).
pub fn connect(target: &Target) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&SockAddr::from(SocketAddrV4::new(target.source, 0)))?;
    socket.connect_timeout(&target.addr.into(), CONNECT_TIMEOUT)?;
    Ok(socket.into())
}

/// Idle connections: opened, then never written or read. The server must
/// still keep each one in the set of fds it watches.
pub struct IdlePool {
    target: Target,
    conns: Vec<TcpStream>,
}

impl IdlePool {
    pub fn new(target: Target) -> IdlePool {
        IdlePool {
            target,
            conns: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Opens connections until `n` are held (a sweep grows the pool from one
    /// point to the next instead of opening 10,000 connections each time).
    pub fn grow_to(&mut self, n: usize) -> Result<(), String> {
        self.conns.reserve(n.saturating_sub(self.conns.len()));
        while self.conns.len() < n {
            let stream = connect(&self.target).map_err(|err| {
                format!(
                    "cannot open idle connection {} of {n}: {err}",
                    self.conns.len() + 1
                )
            })?;
            self.conns.push(stream);
        }
        Ok(())
    }
}

/// What one measurement does.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Active clients, each with one line in flight at a time.
    pub active: usize,
    /// Bytes per line, counting the `\n`.
    pub line_bytes: usize,
    /// Round trips before this are not counted (connections warm up, the
    /// server's buffers get allocated).
    pub warmup: Duration,
    /// How long round trips are counted.
    pub duration: Duration,
}

/// What one measurement found.
#[derive(Clone, Debug, PartialEq)]
pub struct Measure {
    pub round_trips: u64,
    pub seconds: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Measure {
    pub fn per_second(&self) -> f64 {
        self.round_trips as f64 / self.seconds
    }
}

/// One active client: the line in flight and how far it has got.
struct Active {
    id: usize,
    stream: TcpStream,
    line: Vec<u8>,
    written: usize,
    received: usize,
    sent_at: Instant,
    seq: u64,
    /// A line was sent and its echo is not complete yet.
    in_flight: bool,
    /// Registered for EPOLLOUT too (only after a short write).
    wants_out: bool,
}

impl Active {
    fn new(id: usize, stream: TcpStream, line_bytes: usize) -> Active {
        // A pattern that differs between clients and along the line; each
        // round trip stamps its sequence number over the start.
        let mut line: Vec<u8> = (0..line_bytes - 1)
            .map(|k| b'a' + ((id * 7 + k) % 26) as u8)
            .collect();
        line.push(b'\n');
        Active {
            id,
            stream,
            line,
            written: 0,
            received: 0,
            sent_at: Instant::now(),
            seq: 0,
            in_flight: false,
            wants_out: false,
        }
    }

    /// Round trips completed (the line in flight is number `seq`).
    fn done(&self) -> u64 {
        self.seq.saturating_sub(1)
    }

    /// Prepares the next line: its sequence number in hex over the start.
    fn next_line(&mut self) {
        self.seq += 1;
        let text = self.line.len() - 1;
        let mut seq = self.seq;
        for byte in self.line[..text.min(16)].iter_mut().rev() {
            *byte = b"0123456789abcdef"[(seq & 15) as usize];
            seq >>= 4;
        }
        self.written = 0;
        self.received = 0;
        self.in_flight = true;
        self.sent_at = Instant::now();
    }

    /// Writes what is left of the line; waits for EPOLLOUT if the socket is full.
    fn send(&mut self, epoll: &Epoll) -> Result<(), String> {
        while self.written < self.line.len() {
            match self.stream.write(&self.line[self.written..]) {
                Ok(n) => self.written += n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    return self.want_out(epoll, true);
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(format!(
                        "active client {}: write failed after {} round trips: {err}",
                        self.id,
                        self.done()
                    ));
                }
            }
        }
        self.want_out(epoll, false)
    }

    fn want_out(&mut self, epoll: &Epoll, out: bool) -> Result<(), String> {
        if out == self.wants_out {
            return Ok(());
        }
        let mut flags = EpollFlags::EPOLLIN;
        if out {
            flags |= EpollFlags::EPOLLOUT;
        }
        let mut event = EpollEvent::new(flags, self.id as u64);
        epoll
            .modify(&self.stream, &mut event)
            .map_err(|err| format!("epoll_ctl(MOD): {err}"))?;
        self.wants_out = out;
        Ok(())
    }

    /// One read. `Ok(true)` once the whole echo is back, byte for byte.
    fn receive(&mut self, scratch: &mut [u8]) -> Result<bool, String> {
        let n = match self.stream.read(scratch) {
            Ok(0) => {
                return Err(format!(
                    "the server closed active client {}'s connection after {} round trips \
                     ({} of the {} bytes of an echo were back)",
                    self.id,
                    self.done(),
                    self.received,
                    self.line.len()
                ));
            }
            Ok(n) => n,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                return Ok(false);
            }
            Err(err) => {
                return Err(format!(
                    "active client {}: read failed after {} round trips: {err}",
                    self.id,
                    self.done()
                ));
            }
        };
        let got = &scratch[..n];
        if !self.line[self.received..].starts_with(got) {
            let echo = [&self.line[..self.received], got].concat();
            let at = first_difference(&self.line, &echo).unwrap_or_default();
            return Err(format!(
                "active client {} sent {} and got {} back, not an exact echo ({at})",
                self.id,
                quote(&self.line),
                quote(&echo),
            ));
        }
        self.received += n;
        Ok(self.received == self.line.len())
    }
}

/// Runs `spec.active` clients against `target`, each sending one line and
/// waiting for its echo before sending the next, and measures the round
/// trips completed during `spec.duration` (after `spec.warmup`).
pub fn ping_pong(target: &Target, spec: &LoadSpec) -> Result<Measure, String> {
    let mut clients = ActiveSet::connect(target, spec.active, spec.line_bytes)?;
    let mut rtts = Vec::new();
    clients.run(spec.warmup, spec.duration, &mut rtts)?;
    summarize(rtts, spec.duration)
}

/// Active clients, connected once and run for one or more stretches of time
/// (a sweep interleaves servers in slices, keeping each one's clients).
pub struct ActiveSet {
    epoll: Epoll,
    clients: Vec<Active>,
    /// Room for more than one line: bytes beyond an echo are an error to see.
    scratch: Vec<u8>,
}

impl ActiveSet {
    pub fn connect(target: &Target, active: usize, line_bytes: usize) -> Result<ActiveSet, String> {
        assert!((1..=MAX_LINE).contains(&line_bytes) && active > 0);
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|err| format!("epoll_create1: {err}"))?;
        let mut clients = Vec::with_capacity(active);
        for id in 0..active {
            let stream = connect(target)
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .map_err(|err| format!("active client {id} cannot connect: {err}"))?;
            epoll
                .add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, id as u64))
                .map_err(|err| format!("epoll_ctl(ADD): {err}"))?;
            clients.push(Active::new(id, stream, line_bytes));
        }
        Ok(ActiveSet {
            epoll,
            clients,
            scratch: vec![0u8; line_bytes + 1],
        })
    }

    /// Ping-pongs for `warmup + duration`, adding to `rtts` (nanoseconds) the
    /// round trips that complete after the warm-up. Then lets the lines still
    /// in flight come back, so the next run starts from quiet connections.
    /// Returns every round trip completed, counted or not: all the server
    /// served between the call and its return.
    pub fn run(
        &mut self,
        warmup: Duration,
        duration: Duration,
        rtts: &mut Vec<u64>,
    ) -> Result<u64, String> {
        let mut completed = 0;
        let start = Instant::now();
        let counted_from = start + warmup;
        let end = counted_from + duration;
        for client in &mut self.clients {
            client.next_line();
            client.send(&self.epoll)?;
        }
        let mut in_flight = self.clients.len();
        let mut events = vec![EpollEvent::empty(); self.clients.len()];
        let mut next_stall_check = start + Duration::from_millis(100);
        while in_flight > 0 {
            let now = Instant::now();
            let wait_ms = end.saturating_duration_since(now).as_millis().clamp(1, 100) as u16;
            let ready = match self.epoll.wait(&mut events, EpollTimeout::from(wait_ms)) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(err) => return Err(format!("epoll_wait: {err}")),
            };
            // One clock reading per wakeup: every reply in this batch was
            // there when epoll_wait returned.
            let woke = Instant::now();
            for event in &events[..ready] {
                let client = &mut self.clients[event.data() as usize];
                if event.events().contains(EpollFlags::EPOLLOUT) {
                    client.send(&self.epoll)?;
                }
                let readable = EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
                if !event.events().intersects(readable) || !client.receive(&mut self.scratch)? {
                    continue;
                }
                completed += 1;
                if woke >= counted_from && woke < end {
                    rtts.push(woke.duration_since(client.sent_at).as_nanos() as u64);
                }
                if woke < end {
                    client.next_line();
                    client.send(&self.epoll)?;
                } else {
                    client.in_flight = false;
                    in_flight -= 1;
                }
            }
            if woke >= next_stall_check {
                next_stall_check = woke + Duration::from_millis(100);
                check_stalls(&self.clients, woke)?;
            }
        }
        Ok(completed)
    }
}

/// A client without its echo for [`STALL`] means the server is stuck.
fn check_stalls(clients: &[Active], now: Instant) -> Result<(), String> {
    for client in clients.iter().filter(|c| c.in_flight) {
        if now.duration_since(client.sent_at) > STALL {
            return Err(format!(
                "active client {} has waited {} s for the echo of a {}-byte line \
                 ({} bytes written, {} back) after {} round trips: the server is stuck",
                client.id,
                STALL.as_secs(),
                client.line.len(),
                client.written,
                client.received,
                client.done()
            ));
        }
    }
    Ok(())
}

/// Round trips and percentiles of RTT samples (nanoseconds) taken over
/// `duration`.
pub fn summarize(mut rtts: Vec<u64>, duration: Duration) -> Result<Measure, String> {
    if rtts.is_empty() {
        return Err(format!(
            "no round trip completed in the {:.1} s measured",
            duration.as_secs_f64()
        ));
    }
    rtts.sort_unstable();
    Ok(Measure {
        round_trips: rtts.len() as u64,
        seconds: duration.as_secs_f64(),
        p50: Duration::from_nanos(percentile(&rtts, 0.50)),
        p99: Duration::from_nanos(percentile(&rtts, 0.99)),
    })
}

/// The `q` quantile of sorted samples (nearest rank).
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.50), 50);
        assert_eq!(percentile(&samples, 0.99), 99);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[1, 2], 0.5), 1);
    }
}
