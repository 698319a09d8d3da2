//! One fetch: a small explicit state machine, moved on by the loop in
//! `client.rs` each time `poll` says its socket is ready.
//!
//! Connecting --writable, SO_ERROR 0--> Sending --request out--> ReceivingHeader
//! --`\r\n\r\n`--> ReceivingBody --end of stream--> ended (status=CODE).
//! Any state can end in a failure (refused, reset, bad-response...), and the
//! loop ends it with `timeout` at its deadline, whatever its state.

use crate::given::{Failure, Outcome, Url};
use nix::errno::Errno;
use nix::poll::PollFlags;
use socket2::{Domain, Socket, Type};
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A longer header is refused as `bad-response`: a server that never sends
/// the empty line must not make the client hold megabytes.
pub const MAX_HEADER: usize = 16 * 1024;

enum State {
    /// `connect` said EINPROGRESS: writable will mean "the connect is over",
    /// and SO_ERROR will say how it went.
    Connecting,
    /// Connected; the request's first `sent` bytes are out.
    Sending { sent: usize },
    /// The response so far, until the empty line.
    ReceivingHeader(Header),
    /// The body streams to `DIR/i.part`.
    ReceivingBody { status: u16, file: File, bytes: u64 },
}

pub struct Fetch {
    /// `i`: the fetch's URL is the i-th on the command line, counting from 1.
    pub index: usize,
    /// Its connect started T ms before this: then it fails with `timeout`.
    pub deadline: Instant,
    socket: Socket,
    request: Vec<u8>,
    state: State,
    /// `DIR/i.part`, where the body streams, and `DIR/i`, its name once complete.
    part: PathBuf,
    complete: PathBuf,
}

impl Fetch {
    /// Starts fetch `index` of `url`: a non-blocking connect.
    pub fn start(index: usize, url: &Url, dir: &Path, timeout: Duration) -> Result<Fetch, Failure> {
        let complete = dir.join(index.to_string());
        // A DIR/i left by an earlier run goes now: if this fetch fails, no
        // old body may stand for it.
        remove_if_there(&complete).map_err(|_| Failure::Other("file"))?;
        let deadline = Instant::now() + timeout;
        // SOCK_NONBLOCK from the start, so that connect itself does not
        // block: a blocking connect waits for the handshake (minutes for a
        // host that never answers), and every other fetch would wait too.
        let socket = Socket::new(Domain::IPV4, Type::STREAM.nonblocking(), None)
            .map_err(|err| Failure::of(&err, "socket"))?;
        let state = match socket.connect(&url.addr.into()) {
            // Possible (rare on loopback): nothing to wait for, send at once.
            Ok(()) => State::Sending { sent: 0 },
            // The usual case: the handshake goes on without us.
            Err(err) if err.raw_os_error() == Some(Errno::EINPROGRESS as i32) => State::Connecting,
            Err(err) => return Err(Failure::of(&err, "connect")),
        };
        Ok(Fetch {
            index,
            deadline,
            socket,
            request: url.request(),
            state,
            part: dir.join(format!("{index}.part")),
            complete,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// What `poll` should wait for: writable until the request is out (the
    /// end of the connect shows as writability), then readable.
    pub fn interest(&self) -> PollFlags {
        match self.state {
            State::Connecting | State::Sending { .. } => PollFlags::POLLOUT,
            State::ReceivingHeader(_) | State::ReceivingBody { .. } => PollFlags::POLLIN,
        }
    }

    /// Does what the socket's readiness allows; `Some` when the fetch ended.
    /// `scratch` is the loop's read buffer, shared by every fetch.
    pub fn on_ready(&mut self, scratch: &mut [u8]) -> Option<Outcome> {
        match self.step(scratch) {
            Ok(outcome) => outcome,
            Err(why) => Some(Outcome::Failed(why)),
        }
    }

    fn step(&mut self, scratch: &mut [u8]) -> Result<Option<Outcome>, Failure> {
        if let State::Connecting = self.state {
            self.connected()?;
        }
        if let State::Sending { .. } = self.state {
            return self.send().map(|()| None);
        }
        self.receive(scratch)
    }

    /// The socket is writable (or in error): the connect is over. Writable
    /// alone does not say it succeeded: a refused connect is "writable" too.
    /// SO_ERROR holds the connect's result (and reading it clears it).
    fn connected(&mut self) -> Result<(), Failure> {
        match self.socket.take_error() {
            Ok(None) => {
                self.state = State::Sending { sent: 0 };
                Ok(())
            }
            Ok(Some(err)) | Err(err) => Err(Failure::of(&err, "connect")),
        }
    }

    /// Sends what the socket takes. A short write is normal on a
    /// non-blocking socket (the send buffer is full): the rest goes on the
    /// next writability.
    fn send(&mut self) -> Result<(), Failure> {
        let State::Sending { sent } = &mut self.state else {
            unreachable!("send() outside Sending")
        };
        while *sent < self.request.len() {
            match (&self.socket).write(&self.request[*sent..]) {
                Ok(n) => *sent += n,
                Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(Failure::of(&err, "send")),
            }
        }
        self.request = Vec::new();
        self.state = State::ReceivingHeader(Header::default());
        Ok(())
    }

    /// One read (poll is level-triggered: if more is waiting, the next round
    /// says so, and every other fetch gets its turn in between).
    fn receive(&mut self, scratch: &mut [u8]) -> Result<Option<Outcome>, Failure> {
        let n = match (&self.socket).read(scratch) {
            Ok(n) => n,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                return Ok(None);
            }
            Err(err) => return Err(Failure::of(&err, "recv")),
        };
        let data = &scratch[..n];
        match &mut self.state {
            // HTTP/1.0: the body ends where the stream ends; a stream that
            // ends inside the header is no response.
            State::ReceivingHeader(_) if n == 0 => Err(Failure::BadResponse),
            State::ReceivingHeader(header) => {
                if let Some((status, body)) = header.push(data)? {
                    self.start_body(status, body)?;
                }
                Ok(None)
            }
            State::ReceivingBody { status, bytes, .. } if n == 0 => Ok(Some(Outcome::Fetched {
                status: *status,
                bytes: *bytes,
            })),
            State::ReceivingBody { file, bytes, .. } => {
                // Straight to the file: the body is never held in memory.
                file.write_all(data).map_err(|_| Failure::Other("file"))?;
                *bytes += n as u64;
                Ok(None)
            }
            State::Connecting | State::Sending { .. } => {
                unreachable!("receive() before the request is out")
            }
        }
    }

    /// The header is complete: the body goes to `DIR/i.part` from now on,
    /// starting with what came in the same read as the header's end.
    fn start_body(&mut self, status: u16, first: &[u8]) -> Result<(), Failure> {
        let mut file = File::create(&self.part).map_err(|_| Failure::Other("file"))?;
        file.write_all(first).map_err(|_| Failure::Other("file"))?;
        self.state = State::ReceivingBody {
            status,
            file,
            bytes: first.len() as u64,
        };
        Ok(())
    }

    /// Ends the fetch: its socket and file close now, and the body becomes
    /// `DIR/i` only if the fetch succeeded. `rename` is atomic: `DIR/i`
    /// never exists half-written. A failed fetch leaves no file at all.
    pub fn finish(self, outcome: Outcome) -> Outcome {
        let Fetch {
            socket,
            state,
            part,
            complete,
            ..
        } = self;
        drop(socket);
        drop(state); // closes the body's file, if any
        let outcome = match outcome {
            Outcome::Fetched { .. } => match std::fs::rename(&part, &complete) {
                Ok(()) => return outcome,
                Err(_) => Outcome::Failed(Failure::Other("file")),
            },
            failed => failed,
        };
        let _ = remove_if_there(&part);
        outcome
    }
}

/// Removes `path`; that it is not there is fine.
fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// The response's header as it arrives, read after read, until the empty line.
#[derive(Default)]
pub struct Header {
    received: Vec<u8>,
}

impl Header {
    /// Adds one read's `data`. When the header is complete: its status code
    /// and the part of `data` after the empty line (the body's first bytes).
    pub fn push<'a>(&mut self, data: &'a [u8]) -> Result<Option<(u16, &'a [u8])>, Failure> {
        // The empty line can straddle two reads (`\r\n\r` + `\n`): search
        // again from the last 3 bytes already seen, not only in `data`.
        let from = self.received.len().saturating_sub(3);
        let before = self.received.len();
        self.received.extend_from_slice(data);
        // Checked as bytes come: a server that is not HTTP (`SSH-2.0-...`)
        // may never send an empty line, and must not end as a timeout.
        let status = status_code(&self.received)?;
        let Some(end) = header_end(&self.received, from) else {
            if self.received.len() > MAX_HEADER {
                return Err(Failure::BadResponse);
            }
            return Ok(None);
        };
        let status = status.ok_or(Failure::BadResponse)?;
        Ok(Some((status, &data[end - before..])))
    }
}

/// Where the body starts: just after the first `\r\n\r\n` at or after `from`.
pub fn header_end(received: &[u8], from: usize) -> Option<usize> {
    received[from..]
        .windows(4)
        .position(|four| four == b"\r\n\r\n")
        .map(|at| from + at + 4)
}

/// The status line's code, checked on the bytes received so far:
/// `HTTP/1.` + one digit + a space + three digits + a space or the line's
/// end. `Ok(None)`: fine so far, too short to tell.
pub fn status_code(received: &[u8]) -> Result<Option<u16>, Failure> {
    // `d`: any digit; `e`: a space or the line's end (`\r`).
    const PATTERN: &[u8; 13] = b"HTTP/1.d dddE";
    for (&byte, &want) in received.iter().zip(PATTERN) {
        let fits = match want {
            b'd' => byte.is_ascii_digit(),
            b'E' => byte == b' ' || byte == b'\r',
            _ => byte == want,
        };
        if !fits {
            return Err(Failure::BadResponse);
        }
    }
    if received.len() < PATTERN.len() {
        return Ok(None);
    }
    let code = std::str::from_utf8(&received[9..12]).expect("three ASCII digits");
    Ok(Some(code.parse().expect("three digits")))
}

#[cfg(test)]
mod tests;
