//! The grader's client sockets: non-blocking, every wait bounded by a
//! deadline, and every byte that moves noted in a transcript for messages.

use super::transcript::Transcript;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Buffer size for clients that must make the server's writes block.
pub const SMALL_BUFFER: usize = 64 * 1024;

/// How a client's socket is set up before `connect`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientOptions {
    /// Small kernel buffers (64 KiB): the kernel cannot hide a server's mistakes
    /// behind megabytes of buffering.
    pub small_buffers: bool,
    /// Connect from this source address (spreads ports over 127.0.0.0/8).
    pub source: Option<Ipv4Addr>,
}

/// How reading stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Got what was asked for.
    Complete,
    /// The server closed its side (read returned 0).
    Eof,
    /// The connection was reset (ECONNRESET) or broke (EPIPE, ...).
    Error(ErrorKind, String),
    /// Nothing more arrived before the deadline.
    Timeout,
}

impl End {
    pub fn describe(&self) -> String {
        match self {
            End::Complete => "complete".into(),
            End::Eof => "the server closed the connection (EOF)".into(),
            End::Error(_, msg) => format!("the connection broke: {msg}"),
            End::Timeout => "nothing more arrived before the deadline".into(),
        }
    }

    pub fn is_reset(&self) -> bool {
        matches!(
            self,
            End::Error(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe, _)
        )
    }
}

/// Bytes received and how receiving ended.
#[derive(Clone, Debug)]
pub struct Received {
    pub data: Vec<u8>,
    pub end: End,
}

pub struct Client {
    socket: Socket,
    pub id: usize,
    log: Arc<Mutex<Transcript>>,
    eof_seen: bool,
}

impl Client {
    pub fn connect(
        addr: SocketAddr,
        options: ClientOptions,
        id: usize,
        log: &Arc<Mutex<Transcript>>,
        within: Duration,
    ) -> io::Result<Client> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        if options.small_buffers {
            // Before connect: the window is negotiated in the handshake.
            socket.set_recv_buffer_size(SMALL_BUFFER)?;
            socket.set_send_buffer_size(SMALL_BUFFER)?;
        }
        socket.set_tcp_nodelay(true)?;
        if let Some(source) = options.source {
            socket.bind(&SockAddr::from(SocketAddrV4::new(source, 0)))?;
        }
        let result = socket.connect_timeout(&addr.into(), within);
        log.lock().unwrap().connect(id, &result);
        result?;
        socket.set_nonblocking(true)?;
        Ok(Client {
            socket,
            id,
            log: log.clone(),
            eof_seen: false,
        })
    }

    /// The client's own port (the server sees it as the peer's port).
    pub fn local_port(&self) -> Option<u16> {
        self.socket.local_addr().ok()?.as_socket()?.port().into()
    }

    /// Whether something is waiting to be read (bytes, an EOF or an error),
    /// without reading it or waiting.
    pub fn has_input(&self) -> bool {
        self.wait(PollFlags::POLLIN, Instant::now())
    }

    /// Waits until the socket is ready for `events` or the deadline passes.
    fn wait(&self, events: PollFlags, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = (left.as_millis().min(i32::MAX as u128) as i32).max(0);
        let mut fds = [PollFd::new(self.socket.as_fd(), events)];
        matches!(poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::ZERO)), Ok(n) if n > 0)
    }

    /// Sends everything, waiting for room until `deadline`. Returns how many
    /// bytes went out and the error that stopped it, if any.
    pub fn send_all(&mut self, data: &[u8], deadline: Instant) -> Result<(), (usize, End)> {
        let mut sent = 0;
        while sent < data.len() {
            match self.send_some(&data[sent..]) {
                Ok(0) => {
                    if Instant::now() >= deadline {
                        return Err((sent, End::Timeout));
                    }
                    self.wait(PollFlags::POLLOUT, deadline);
                }
                Ok(n) => sent += n,
                Err(end) => return Err((sent, end)),
            }
        }
        Ok(())
    }

    /// One non-blocking send; Ok(0) when the socket is full.
    pub fn send_some(&mut self, data: &[u8]) -> Result<usize, End> {
        match (&self.socket).write(data) {
            Ok(n) => {
                self.log.lock().unwrap().sent(self.id, &data[..n]);
                Ok(n)
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(err) if err.kind() == ErrorKind::Interrupted => Ok(0),
            Err(err) => {
                self.log.lock().unwrap().error(self.id, "send", &err);
                Err(End::Error(err.kind(), err.to_string()))
            }
        }
    }

    /// One non-blocking receive into `buf`: Ok(Some(n)) data, Ok(None) nothing
    /// yet, Err at EOF or error.
    pub fn recv_some(&mut self, buf: &mut [u8]) -> Result<Option<usize>, End> {
        match (&self.socket).read(buf) {
            Ok(0) => {
                if !self.eof_seen {
                    self.log.lock().unwrap().eof(self.id);
                }
                self.eof_seen = true;
                Err(End::Eof)
            }
            Ok(n) => {
                self.log.lock().unwrap().received(self.id, &buf[..n]);
                Ok(Some(n))
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(err) if err.kind() == ErrorKind::Interrupted => Ok(None),
            Err(err) => {
                self.log.lock().unwrap().error(self.id, "recv", &err);
                Err(End::Error(err.kind(), err.to_string()))
            }
        }
    }

    /// Receives until `want` bytes arrived, the stream ends, or the deadline.
    pub fn recv_exact(&mut self, want: usize, deadline: Instant) -> Received {
        let mut data = Vec::with_capacity(want.min(1 << 20));
        let mut buf = vec![0u8; 64 * 1024];
        while data.len() < want {
            let room = (want - data.len()).min(buf.len());
            match self.recv_some(&mut buf[..room]) {
                Ok(Some(n)) => data.extend_from_slice(&buf[..n]),
                Ok(None) => {
                    if Instant::now() >= deadline {
                        self.log.lock().unwrap().timeout(self.id);
                        return Received {
                            data,
                            end: End::Timeout,
                        };
                    }
                    self.wait(PollFlags::POLLIN, deadline);
                }
                Err(end) => return Received { data, end },
            }
        }
        Received {
            data,
            end: End::Complete,
        }
    }

    /// Receives until the server closes (EOF or error) or the deadline.
    /// `end` is `Eof` for an orderly close.
    pub fn recv_to_end(&mut self, limit: usize, deadline: Instant) -> Received {
        let mut got = self.recv_exact(limit, deadline);
        if got.end == End::Complete {
            // More than `limit` bytes: read one more to see whether it ends.
            let more = self.recv_exact(1, deadline);
            got.data.extend(more.data);
            got.end = more.end;
        }
        got
    }

    /// Whatever arrives within `window` (used to check that nothing does).
    pub fn recv_for(&mut self, window: Duration) -> Received {
        let mut got = self.recv_exact(usize::MAX, Instant::now() + window);
        if got.end == End::Timeout {
            got.end = End::Complete;
        }
        got
    }

    /// Sends `data` and receives `expect_len` bytes at the same time, as a
    /// full-duplex peer would, so the server's backpressure cannot deadlock us.
    /// Gives up after `stall` without progress, or at the deadline.
    pub fn exchange(
        &mut self,
        data: &[u8],
        expect_len: usize,
        stall: Duration,
        deadline: Instant,
    ) -> (usize, Received) {
        let mut sent = 0;
        let mut received = Vec::with_capacity(expect_len.min(64 << 20));
        let mut buf = vec![0u8; 256 * 1024];
        let mut last_progress = Instant::now();
        let end = loop {
            if received.len() >= expect_len && sent >= data.len() {
                break End::Complete;
            }
            let mut progress = false;
            if sent < data.len() {
                match self.send_some(&data[sent..]) {
                    Ok(n) => {
                        sent += n;
                        progress |= n > 0;
                    }
                    Err(end) => break end,
                }
            }
            if received.len() < expect_len {
                let room = (expect_len - received.len()).min(buf.len());
                match self.recv_some(&mut buf[..room]) {
                    Ok(Some(n)) => {
                        received.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Ok(None) => {}
                    Err(end) => break end,
                }
            }
            let now = Instant::now();
            if progress {
                last_progress = now;
                continue;
            }
            if now >= deadline || now.duration_since(last_progress) >= stall {
                self.log.lock().unwrap().timeout(self.id);
                break End::Timeout;
            }
            let mut events = PollFlags::empty();
            if sent < data.len() {
                events |= PollFlags::POLLOUT;
            }
            if received.len() < expect_len {
                events |= PollFlags::POLLIN;
            }
            self.wait(events, deadline.min(last_progress + stall));
        };
        (
            sent,
            Received {
                data: received,
                end,
            },
        )
    }

    pub fn shutdown_write(&mut self) {
        self.log
            .lock()
            .unwrap()
            .note(self.id, "shut down its writing half (FIN)");
        let _ = self.socket.shutdown(Shutdown::Write);
    }

    /// Closes with SO_LINGER 0: the kernel sends a reset and keeps no
    /// TIME_WAIT state.
    pub fn reset(self) {
        self.log
            .lock()
            .unwrap()
            .note(self.id, "reset the connection (RST)");
        let _ = self.socket.set_linger(Some(Duration::ZERO));
    }

    /// Closes without a note in the transcript, with a reset, to free the
    /// port at once. Only for clients whose exchange is over.
    pub fn discard(self) {
        let _ = self.socket.set_linger(Some(Duration::ZERO));
    }

    /// An orderly close (FIN).
    pub fn close(self) {
        self.log
            .lock()
            .unwrap()
            .note(self.id, "closed the connection");
    }
}

/// Connects to `addr` once, only to see whether it is accepted or refused.
pub fn probe_connect(addr: SocketAddr, within: Duration) -> io::Result<()> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.connect_timeout(&addr.into(), within)?;
    let _ = socket.set_linger(Some(Duration::ZERO));
    Ok(())
}
