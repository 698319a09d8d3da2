//! The grader's own HTTP/1.0 servers on loopback, and the two places a
//! connect goes wrong: a port that refuses, and a black hole.
//!
//! A [`Site`] listens on 127.0.0.1, reads each request up to its empty line,
//! and answers by the request's path with the [`Reply`] the check registered
//! for it: a script of writes, waits, a trickle, a reset, a body generated
//! on the fly or silence. Each connection is served by a thread of its own
//! and recorded ([`Visit`]: what was asked, when it opened and ended), and
//! the site counts the connections open at once.

use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most a request may be before the site stops reading it.
const REQUEST_MAX: usize = 256 << 10;
/// However a reply is scripted, a connection is served at most this long.
const SERVE_MAX: Duration = Duration::from_secs(60);

/// One step of a reply's script.
#[derive(Clone, Debug)]
pub(super) enum Step {
    Send(Arc<Vec<u8>>),
    Wait(Duration),
    /// One byte every `every`, until the client goes away.
    Trickle(Duration),
    /// `len` bytes of [`Pattern`] `seed`, as fast as the client reads.
    Generate {
        len: u64,
        seed: u64,
    },
    /// Reset the connection (SO_LINGER 0, then close).
    Reset,
    /// Say nothing until the client goes away.
    Hold,
}

/// What a site answers to one path: its steps, then a close.
#[derive(Clone, Debug)]
pub(super) struct Reply(pub Vec<Step>);

impl Reply {
    /// `HTTP/1.0 200 OK` with a short header, then `body`.
    pub fn ok(body: &[u8]) -> Reply {
        Reply::status(200, "OK", body)
    }

    pub fn status(code: u16, reason: &str, body: &[u8]) -> Reply {
        Reply::raw([head(code, reason), body.to_vec()].concat())
    }

    /// Exactly these bytes, then a close.
    pub fn raw(bytes: Vec<u8>) -> Reply {
        Reply(vec![Step::Send(Arc::new(bytes))])
    }

    /// The same reply after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.0.insert(0, Step::Wait(delay));
        self
    }

    /// Accepts, reads the request, never answers.
    pub fn silent() -> Reply {
        Reply(vec![Step::Hold])
    }
}

/// A status line and a short header, up to its empty line.
pub(super) fn head(code: u16, reason: &str) -> Vec<u8> {
    format!(
        "HTTP/1.0 {code} {reason}\r\nServer: iomux-grader\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes()
}

/// What a site saw of one connection.
#[derive(Clone, Debug)]
pub(super) struct Visit {
    /// The request as received (up to its empty line, or all there was).
    pub request: Vec<u8>,
    /// The path of its request line, if it had one.
    pub path: Option<String>,
    pub opened: Instant,
    pub ended: Option<Instant>,
    /// How the connection ended, when it did not go as scripted.
    pub trouble: Option<String>,
}

#[derive(Default)]
struct Shared {
    visits: Mutex<Vec<Visit>>,
    open: Mutex<(usize, usize)>,
    stop: AtomicBool,
}

/// An HTTP/1.0 server of the grader's on 127.0.0.1, answering by path.
pub(super) struct Site {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

/// How a site's listening socket is set up.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Options {
    /// A small receive window (SO_RCVBUF 4096, TCP_MAXSEG 536): a long
    /// request then cannot be written in one go.
    pub small_window: bool,
    /// Wait this long after accepting before reading the request.
    pub read_after: Duration,
    /// Listen on an address of 127.0.0.0/8 no connection has used lately:
    /// the kernel caches each destination's congestion window (tcp_metrics),
    /// and a client's send buffer grows with it, so only a fresh address
    /// gives the same small buffer every time.
    pub fresh_address: bool,
}

/// An address of 127.128.0.0/9 picked at random: almost surely unused.
fn fresh_loopback() -> Ipv4Addr {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let r = hasher.finish();
    Ipv4Addr::new(
        127,
        128 + (r % 128) as u8,
        (r >> 8) as u8,
        1 + ((r >> 16) % 254) as u8,
    )
}

impl Site {
    pub fn start(routes: Vec<(String, Reply)>) -> io::Result<Site> {
        Site::start_with(routes, Options::default())
    }

    pub fn start_with(routes: Vec<(String, Reply)>, options: Options) -> io::Result<Site> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if options.small_window {
            // Set on the listener, inherited by every accepted socket; the
            // MSS must be small too, or the sender's buffer autotunes to
            // megabytes and its write is never short.
            socket.set_recv_buffer_size(4096)?;
            socket.set_tcp_mss(536)?;
        }
        let ip = if options.fresh_address {
            fresh_loopback()
        } else {
            Ipv4Addr::LOCALHOST
        };
        socket.bind(&SocketAddr::from((ip, 0)).into())?;
        socket.listen(1024)?;
        let listener: TcpListener = socket.into();
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let routes: Arc<HashMap<String, Reply>> = Arc::new(routes.into_iter().collect());
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name("site".into())
            .spawn(move || accept_loop(listener, routes, accepting, options))?;
        Ok(Site { addr, shared })
    }

    /// `http://127.0.0.1:PORT{path}` (or its own address).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn visits(&self) -> Vec<Visit> {
        self.shared.visits.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.visits.lock().unwrap().len()
    }

    /// The most connections that were open at once.
    pub fn most_open(&self) -> usize {
        self.shared.open.lock().unwrap().1
    }

    /// The first visit that asked for `path`.
    pub fn visit(&self, path: &str) -> Option<Visit> {
        self.visits()
            .into_iter()
            .find(|visit| visit.path.as_deref() == Some(path))
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // The accept loop and every connection's thread see it within
        // 50 ms and end, closing their sockets.
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn accept_loop(
    listener: TcpListener,
    routes: Arc<HashMap<String, Reply>>,
    shared: Arc<Shared>,
    options: Options,
) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let opened = Instant::now();
                let index = {
                    let mut visits = shared.visits.lock().unwrap();
                    visits.push(Visit {
                        request: Vec::new(),
                        path: None,
                        opened,
                        ended: None,
                        trouble: None,
                    });
                    visits.len() - 1
                };
                {
                    let mut open = shared.open.lock().unwrap();
                    open.0 += 1;
                    open.1 = open.1.max(open.0);
                }
                let (routes, serving) = (routes.clone(), shared.clone());
                let spawned = std::thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn(move || serve(stream, index, &routes, &serving, options));
                if spawned.is_err() {
                    // Out of threads: the connection was dropped (closed).
                    let why = "the grader could not start a thread to serve it".to_string();
                    end_visit(&shared, index, Some(why));
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn end_visit(shared: &Shared, index: usize, trouble: Option<String>) {
    if let Some(visit) = shared.visits.lock().unwrap().get_mut(index) {
        visit.ended = Some(Instant::now());
        visit.trouble = visit.trouble.take().or(trouble);
    }
    let mut open = shared.open.lock().unwrap();
    open.0 = open.0.saturating_sub(1);
}

fn serve(
    mut stream: TcpStream,
    index: usize,
    routes: &HashMap<String, Reply>,
    shared: &Shared,
    options: Options,
) {
    let deadline = Instant::now() + SERVE_MAX;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    if !options.read_after.is_zero() {
        pause(options.read_after, shared);
    }
    let request = read_request(&mut stream, shared);
    let path = request_path(&request);
    {
        let mut visits = shared.visits.lock().unwrap();
        visits[index].request = request;
        visits[index].path = path.clone();
    }
    let reply = match path.as_deref().and_then(|path| routes.get(path)) {
        Some(reply) => reply.clone(),
        None => Reply::status(400, "Bad Request", b"the grader has no such path\n"),
    };
    let played = play(&mut stream, &reply, shared, deadline);
    // Counted as ended before the client can see the end, so that a client
    // starting its next fetch at once is never counted twice.
    end_visit(shared, index, played.as_ref().err().cloned());
    if played != Ok(Ending::Reset) {
        let _ = stream.shutdown(Shutdown::Write);
    }
    // Dropped: closed (with a reset if the script asked for one).
}

/// How a script ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Close,
    Reset,
}

/// Sleeps `total` in slices, returning early when the site stops.
fn pause(total: Duration, shared: &Shared) {
    let end = Instant::now() + total;
    while !shared.stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Reads until the request's empty line (or its end, or 10 s of silence).
fn read_request(stream: &mut TcpStream, shared: &Shared) -> Vec<u8> {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let end = Instant::now() + Duration::from_secs(10);
    let mut request = Vec::new();
    let mut buf = [0u8; 16 << 10];
    while Instant::now() < end && !shared.stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                request.extend_from_slice(&buf[..n]);
                if find(&request, b"\r\n\r\n").is_some() || request.len() >= REQUEST_MAX {
                    break;
                }
            }
            Err(err) if is_timeout(&err) => {}
            Err(_) => break,
        }
    }
    request
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// The path of `GET PATH HTTP/1.0`, if the request starts that way.
fn request_path(request: &[u8]) -> Option<String> {
    let line = &request[..find(request, b"\r\n").unwrap_or(request.len())];
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    let (_, path) = (words.next()?, words.next()?);
    Some(path.to_string())
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Plays a reply's script; `Err` says how the client cut it short.
fn play(
    stream: &mut TcpStream,
    reply: &Reply,
    shared: &Shared,
    deadline: Instant,
) -> Result<Ending, String> {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(50)));
    for step in &reply.0 {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(Ending::Close);
        }
        match step {
            Step::Send(bytes) => write_all(stream, bytes, shared, deadline)?,
            Step::Wait(delay) => pause(*delay, shared),
            Step::Trickle(every) => {
                while Instant::now() < deadline && !shared.stop.load(Ordering::Relaxed) {
                    write_all(stream, b"x", shared, deadline)?;
                    pause(*every, shared);
                }
            }
            Step::Generate { len, seed } => {
                let mut pattern = Pattern::new(*seed);
                let mut buf = vec![0u8; 64 << 10];
                let mut left = *len;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    pattern.fill(&mut buf[..n]);
                    write_all(stream, &buf[..n], shared, deadline)?;
                    left -= n as u64;
                }
            }
            Step::Reset => {
                let socket = socket2::SockRef::from(&*stream);
                let _ = socket.set_linger(Some(Duration::ZERO));
                return Ok(Ending::Reset);
            }
            Step::Hold => hold(stream, shared, deadline),
        }
    }
    Ok(Ending::Close)
}

fn write_all(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    shared: &Shared,
    deadline: Instant,
) -> Result<(), String> {
    while !bytes.is_empty() {
        if shared.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return Err("the grader stopped sending".into());
        }
        match stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(err) if is_timeout(&err) => {}
            Err(err) => return Err(format!("the client went away ({err})")),
        }
    }
    Ok(())
}

/// Waits, silent, until the client closes (or resets) its end.
fn hold(stream: &mut TcpStream, shared: &Shared, deadline: Instant) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !shared.stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if is_timeout(&err) => {}
            Err(_) => return,
        }
    }
}

/// Reproducible bytes, every value among them (zero, `\r`, `\n`), made on
/// the fly: a body of any size, checked on the fly too.
pub(super) struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for byte in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *byte = (self.0 >> 24) as u8;
        }
    }

    pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        Pattern::new(seed).fill(&mut buf);
        buf
    }
}

/// A port on 127.0.0.1 that is bound but not listening: a connect to it is
/// refused (on loopback, a non-blocking connect says `EINPROGRESS` first,
/// and the refusal comes through `SO_ERROR`).
pub(super) struct Refusing {
    _socket: Socket,
    pub addr: SocketAddr,
}

impl Refusing {
    pub fn new() -> io::Result<Refusing> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
        let addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an inet address"))?;
        Ok(Refusing {
            _socket: socket,
            addr,
        })
    }
}

/// A listener whose connects never complete: backlog 0, never accepting,
/// its one queue place taken by a connection of the grader's. The kernel
/// then drops every later SYN, and a connect stays in progress through its
/// retransmissions (1 s, 3 s, 7 s, ...).
pub(super) struct BlackHole {
    _listener: Socket,
    _filler: TcpStream,
    pub addr: SocketAddr,
}

impl BlackHole {
    /// Made, then verified: a probe connect must still be in progress
    /// after 300 ms. Tried a few times (the filler's last ACK may still be
    /// on its way when the first probe is sent), then an error.
    pub fn new() -> io::Result<BlackHole> {
        let mut last = String::new();
        for _ in 0..3 {
            let hole = BlackHole::attempt()?;
            match probe_stays_pending(hole.addr, Duration::from_millis(300)) {
                Ok(true) => return Ok(hole),
                Ok(false) => last = "a probe connect completed".into(),
                Err(err) => last = err.to_string(),
            }
        }
        Err(io::Error::other(format!(
            "could not make a connect that never completes (backlog 0, queue filled): {last}"
        )))
    }

    fn attempt() -> io::Result<BlackHole> {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        listener.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
        listener.listen(0)?;
        let addr = listener
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an inet address"))?;
        let filler = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        // Let the filler's handshake settle into the accept queue.
        std::thread::sleep(Duration::from_millis(20));
        Ok(BlackHole {
            _listener: listener,
            _filler: filler,
            addr,
        })
    }
}

/// Whether a non-blocking connect to `addr` is still in progress after
/// `wait`.
fn probe_stays_pending(addr: SocketAddr, wait: Duration) -> io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => return Ok(false),
        Err(err) if err.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
        Err(err) => return Err(err),
    }
    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLOUT)];
    let ms = PollTimeout::try_from(wait.as_millis() as i32).unwrap_or(PollTimeout::MAX);
    let ready = poll(&mut fds, ms).map_err(io::Error::from)?;
    Ok(ready == 0)
}
