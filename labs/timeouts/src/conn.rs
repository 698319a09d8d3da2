//! One client connection of the echo server: given, ready-made.
//!
//! This is the echo protocol of the earlier labs (line framing, replies not
//! yet written, the 64 KiB backpressure rule, the lingering close), the same
//! for every echo server. Nothing here needs to change for this lab; what is
//! new is [`Connection::bytes_moved`], which tells you whether a connection
//! was active.
//!
//! The socket must be non-blocking: every method returns as soon as the kernel
//! would make it wait, so one slow client can never stall the others.

// Some of this (bytes_moved, Slab::len) is here for your code to use.
#![allow(dead_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

/// Longest line, counting the `\n`.
pub const MAX_LINE: usize = 8192;
/// Stop reading a connection while this many reply bytes wait to be sent.
pub const BACKPRESSURE_LIMIT: usize = 64 * 1024;
/// A good size for the scratch buffer given to [`Connection::read_once`].
pub const READ_CHUNK: usize = 64 * 1024;

/// The reply to a line longer than [`MAX_LINE`], before the connection ends.
pub const TOO_LONG_REPLY: &[u8] = b"ERR line too long\n";

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading lines and echoing them.
    Echoing,
    /// `quit` or a too-long line: send what is pending, then shut down our
    /// writing half and discard input until the client closes.
    Ending { write_shut: bool },
    /// The client closed its writing half: send what is pending, then close.
    Draining,
    /// Nothing left to do: drop the connection (this closes the socket).
    Done,
}

/// What one read call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes arrived (and were handled).
    Data(usize),
    /// Nothing to read now: wait for the next readiness event.
    WouldBlock,
    /// The client closed its writing half.
    Eof,
}

pub struct Connection {
    stream: TcpStream,
    /// The line being received, not yet ended by `\n`.
    lines: LineReader,
    /// Replies not yet written; `out[sent..]` is what is left.
    out: Vec<u8>,
    sent: usize,
    phase: Phase,
    /// Bytes read from or written to the socket so far, both directions.
    moved: u64,
}

impl Connection {
    /// Wraps a socket that is already non-blocking.
    pub fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            lines: LineReader::default(),
            out: Vec::new(),
            sent: 0,
            phase: Phase::Echoing,
            moved: 0,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Reply bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// How many bytes have moved on this connection so far, read or written,
    /// including the input discarded during a lingering close.
    ///
    /// A server with idle timeouts compares it before and after serving a
    /// connection: a change means the connection was active.
    pub fn bytes_moved(&self) -> u64 {
        self.moved
    }

    /// True when the server should read from this connection.
    ///
    /// While echoing, reading stops at [`BACKPRESSURE_LIMIT`] bytes of unsent
    /// replies: a client that sends without reading would otherwise make the
    /// server buffer without bound. While ending, input is read and thrown away
    /// so the client's unread bytes never turn our close into a reset.
    pub fn wants_read(&self) -> bool {
        match self.phase {
            Phase::Echoing => self.pending() < BACKPRESSURE_LIMIT,
            Phase::Ending { .. } => true,
            Phase::Draining | Phase::Done => false,
        }
    }

    /// True when the write side has work: replies to send, or (once they are
    /// sent) the shutdown or close that ends the connection.
    pub fn wants_write(&self) -> bool {
        match self.phase {
            Phase::Echoing => self.pending() > 0,
            // Even with nothing left to send, `flush` must run once more to
            // shut down our writing half: `quit` may arrive after every reply
            // has already gone out.
            Phase::Ending { write_shut } => self.pending() > 0 || !write_shut,
            Phase::Draining => true,
            Phase::Done => false,
        }
    }

    /// True once the connection is finished and can be dropped.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Makes one `read` call and handles what it returns.
    ///
    /// One call is enough for a level-triggered loop: if more bytes wait, the
    /// next wait reports the socket readable again. An edge-triggered loop calls
    /// this until it returns `WouldBlock` (or `wants_read()` turns false).
    pub fn read_once(&mut self, scratch: &mut [u8]) -> io::Result<ReadOutcome> {
        let n = match self.stream.read(scratch) {
            Ok(n) => n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(ReadOutcome::WouldBlock),
            Err(err) if err.kind() == ErrorKind::Interrupted => return Ok(ReadOutcome::Data(0)),
            Err(err) => {
                self.phase = Phase::Done;
                return Err(err);
            }
        };
        if n == 0 {
            self.on_eof();
            return Ok(ReadOutcome::Eof);
        }
        self.moved += n as u64;
        if self.phase == Phase::Echoing {
            self.absorb(&scratch[..n]);
        }
        // In every other phase the bytes are discarded: lingering close.
        Ok(ReadOutcome::Data(n))
    }

    /// Writes pending replies until they are all sent or the socket is full.
    ///
    /// Returns `Ok(true)` if everything pending was written. When an ending
    /// connection has written its last reply, this also shuts down the writing
    /// half (or closes, after the client's EOF).
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.pending() > 0 {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(n) => {
                    self.sent += n;
                    self.moved += n as u64;
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    self.compact();
                    return Ok(false);
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => {
                    self.phase = Phase::Done;
                    return Err(err);
                }
            }
        }
        self.out.clear();
        self.sent = 0;
        self.after_flush()?;
        Ok(true)
    }

    /// Splits freshly read bytes into lines and queues their echoes.
    fn absorb(&mut self, data: &[u8]) {
        if self.lines.echo(data, &mut self.out) != Fed::All {
            self.phase = Phase::Ending { write_shut: false };
        }
    }

    fn on_eof(&mut self) {
        match self.phase {
            Phase::Echoing => {
                // An unterminated last fragment is echoed as it is.
                self.out.extend_from_slice(&self.lines.take_fragment());
                self.phase = Phase::Draining;
            }
            // The client has closed after our shutdown: the lingering close is over.
            Phase::Ending { write_shut: true } => self.phase = Phase::Done,
            // Still flushing our last replies: finish those, then close.
            Phase::Ending { write_shut: false } => self.phase = Phase::Draining,
            Phase::Draining | Phase::Done => {}
        }
        if self.pending() == 0 && self.phase == Phase::Draining {
            self.phase = Phase::Done;
        }
    }

    /// Everything queued is written: move an ending connection along.
    fn after_flush(&mut self) -> io::Result<()> {
        match self.phase {
            Phase::Ending { write_shut: false } => {
                // Our FIN tells the client "no more replies". We keep reading
                // until its EOF: closing now, with its bytes still unread, would
                // send a reset that can destroy the replies it has not read yet.
                self.phase = Phase::Ending { write_shut: true };
                if let Err(err) = self.stream.shutdown(Shutdown::Write) {
                    self.phase = Phase::Done;
                    return Err(err);
                }
            }
            Phase::Draining => self.phase = Phase::Done,
            Phase::Echoing | Phase::Ending { write_shut: true } | Phase::Done => {}
        }
        Ok(())
    }

    /// Drops the bytes already sent once they make up most of the buffer, so
    /// that a connection's memory stays proportional to what is pending.
    fn compact(&mut self) {
        if self.sent > self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

/// `quit\n` or `quit\r\n`.
pub fn is_quit(line: &[u8]) -> bool {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    text == b"quit"
}

/// Cuts a byte stream into lines of at most [`MAX_LINE`] bytes, `\n`
/// included: it keeps the unfinished line between reads.
#[derive(Default)]
pub struct LineReader {
    line: Vec<u8>,
}

/// Whether [`LineReader::feed`] should go on after a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The rest of the input is not wanted (after `quit`).
    Stop,
}

/// How [`LineReader::feed`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// Every byte was used: whole lines passed on, the rest kept.
    All,
    /// A line's handler said [`Flow::Stop`]; the bytes after it were dropped.
    Stopped,
    /// The 8193rd byte of a line arrived and none of the first 8192 was a
    /// `\n`: the line is too long, whatever comes next. The line so far and
    /// the rest of the input were dropped.
    TooLong,
}

impl LineReader {
    /// Passes every complete line in `data` (with the bytes kept from
    /// earlier reads in front) to `on_line`, and keeps the unfinished end.
    pub fn feed(&mut self, mut data: &[u8], mut on_line: impl FnMut(&[u8]) -> Flow) -> Fed {
        while !data.is_empty() {
            let room = MAX_LINE - self.line.len();
            let Some(i) = data.iter().take(room).position(|&b| b == b'\n') else {
                if data.len() > room {
                    self.line.clear();
                    return Fed::TooLong;
                }
                self.line.extend_from_slice(data);
                return Fed::All;
            };
            let (line_end, rest) = data.split_at(i + 1);
            data = rest;
            let flow = if self.line.is_empty() {
                on_line(line_end)
            } else {
                self.line.extend_from_slice(line_end);
                let flow = on_line(&self.line);
                self.line.clear(); // keeps the allocation
                flow
            };
            if flow == Flow::Stop {
                return Fed::Stopped;
            }
        }
        Fed::All
    }

    /// The echo protocol on `data`: queues on `out` the echo of every
    /// complete line, up to a `quit` (not echoed) or a too-long line (then
    /// `ERR line too long`). Anything but [`Fed::All`] ends the connection.
    pub fn echo(&mut self, data: &[u8], out: &mut Vec<u8>) -> Fed {
        let fed = self.feed(data, |line| {
            if is_quit(line) {
                return Flow::Stop;
            }
            out.extend_from_slice(line);
            Flow::Continue
        });
        if fed == Fed::TooLong {
            out.extend_from_slice(TOO_LONG_REPLY);
        }
        fed
    }

    /// The unfinished last line, at the end of the input: it is echoed as it is.
    pub fn take_fragment(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.line)
    }
}

/// Accepts every pending connection on a non-blocking listener, making each
/// new socket non-blocking, until the backlog is empty (`WouldBlock`).
///
/// Accepted sockets do not inherit O_NONBLOCK from the listener: without it,
/// one slow client would block the whole server. Running out of fds (EMFILE)
/// ends this round: the clients already connected are still served, and the
/// pending connection stays in the backlog.
pub fn accept_all(listener: &TcpListener, mut on_accept: impl FnMut(TcpStream)) {
    loop {
        match listener.accept() {
            Ok((stream, _peer)) => {
                if stream.set_nonblocking(true).is_ok() {
                    on_accept(stream);
                }
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => return,
            // The client gave up before we accepted it: try the next one.
            Err(err) if err.kind() == ErrorKind::ConnectionAborted => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => {
                eprintln!("accept: {err}");
                return;
            }
        }
    }
}

/// Connections stored by a small integer, the token an epoll registration
/// carries in its `data` field. Freed slots are reused.
pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value`; returns its token.
    pub fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(token) => {
                self.slots[token] = Some(value);
                token
            }
            None => {
                self.slots.push(Some(value));
                self.slots.len() - 1
            }
        }
    }

    pub fn get_mut(&mut self, token: usize) -> Option<&mut T> {
        self.slots.get_mut(token).and_then(Option::as_mut)
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn remove(&mut self, token: usize) -> Option<T> {
        let value = self.slots.get_mut(token)?.take();
        if value.is_some() {
            self.free.push(token);
        }
        value
    }
}
