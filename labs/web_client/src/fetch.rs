//! One fetch: a small explicit state machine, moved on by the loop in
//! `client.rs` each time its socket is ready.
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
        // TODO 5: remove a `DIR/i` left by an earlier run (`remove_if_there`;
        //    an error: `Failure::Other("file")`). The deadline is now +
        //    `timeout`. Create the socket non-blocking BEFORE connect
        //    (`Socket::new(Domain::IPV4, Type::STREAM.nonblocking(), None)`):
        //    a blocking connect waits for the handshake and holds every
        //    other fetch. Then `socket.connect(&url.addr.into())`: Ok (it
        //    can succeed at once): state Sending; an error whose
        //    `raw_os_error()` is EINPROGRESS: Connecting; any other:
        //    `Failure::of(&err, "connect")` (ECONNREFUSED gives `refused`).
        //    The request is `url.request()`, the paths `DIR/i.part`, `DIR/i`.
        todo!("TODO 5: the non-blocking connect in Fetch::start, src/fetch.rs")
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// What `poll` should wait for: writable until the request is out (the
    /// end of the connect shows as writability), then readable.
    pub fn interest(&self) -> PollFlags {
        // TODO 6 (a): POLLOUT while Connecting or Sending, POLLIN after.
        todo!("TODO 6: what a fetch waits for in Fetch::interest, src/fetch.rs")
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
        // TODO 6 (b): Connecting: `self.connected()?` first; then Sending:
        //    `self.send()` (and return, still in progress); the receiving
        //    states: `self.receive(scratch)`.
        todo!("TODO 6: one step of the state machine in Fetch::step, src/fetch.rs")
    }

    /// The socket is writable (or in error): the connect is over. Writable
    /// alone does not say it succeeded: a refused connect is "writable" too.
    fn connected(&mut self) -> Result<(), Failure> {
        // TODO 6 (c): read SO_ERROR with `self.socket.take_error()`: Ok(None)
        //    means connected (state Sending, sent 0); an error there (or from
        //    getsockopt itself) is the connect's: `Failure::of(&err, "connect")`.
        todo!("TODO 6: the connect's result in Fetch::connected, src/fetch.rs")
    }

    /// Sends what the socket takes; the rest on the next writability.
    fn send(&mut self) -> Result<(), Failure> {
        // TODO 7: write `self.request[sent..]` (`(&self.socket).write(..)`)
        //    until all of it is out, adding each write's count to `sent`: a
        //    short write is normal on a non-blocking socket. WouldBlock:
        //    return Ok and wait for writability again; Interrupted: retry;
        //    another error: `Failure::of(&err, "send")` (EPIPE, ECONNRESET:
        //    `reset`). All sent: state ReceivingHeader(Header::default()).
        todo!("TODO 7: sending the request in Fetch::send, src/fetch.rs")
    }

    /// One read (poll is level-triggered: if more is waiting, the next round
    /// says so, and every other fetch gets its turn in between).
    fn receive(&mut self, scratch: &mut [u8]) -> Result<Option<Outcome>, Failure> {
        // TODO 8: one `(&self.socket).read(scratch)`. WouldBlock or
        //    Interrupted: Ok(None); another error: `Failure::of(&err,
        //    "recv")`. Then by state: ReceivingHeader: 0 bytes (the stream
        //    ended before the empty line) is `Failure::BadResponse`, else
        //    `header.push(data)?` and, once complete, `self.start_body(..)`.
        //    ReceivingBody: 0 bytes is the end of the body: `Outcome::Fetched
        //    { status, bytes }`; else write the bytes to the file at once
        //    (never keep the body in memory; an error: `Failure::Other("file")`).
        todo!("TODO 8: receiving in Fetch::receive, src/fetch.rs")
    }

    /// The header is complete: the body goes to `DIR/i.part` from now on,
    /// starting with what came in the same read as the header's end.
    fn start_body(&mut self, status: u16, first: &[u8]) -> Result<(), Failure> {
        // TODO 10 (a): create `self.part` (File::create), write `first` to
        //    it, state ReceivingBody { status, file, bytes: first.len() }.
        todo!("TODO 10: the body's file in Fetch::start_body, src/fetch.rs")
    }

    /// Ends the fetch: its socket and file close now, and the body becomes
    /// `DIR/i` only if the fetch succeeded. A failed fetch leaves no file.
    pub fn finish(self, outcome: Outcome) -> Outcome {
        // TODO 10 (b): close the socket and the file (drop them). Fetched:
        //    `std::fs::rename(part, complete)` (atomic: `DIR/i` never exists
        //    half-written); if that fails, `Failure::Other("file")`. Failed:
        //    remove `DIR/i.part` (`remove_if_there`). Return the outcome.
        todo!("TODO 10: renaming or removing in Fetch::finish, src/fetch.rs")
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
        // TODO 9 (a): append `data` to `received`, check the status line so
        //    far (`status_code`: a server that is not HTTP may never send an
        //    empty line), then look for the empty line with `header_end`,
        //    starting 3 bytes before the old end: `\r\n\r\n` can straddle
        //    two reads. Not found: more than MAX_HEADER bytes is
        //    `Failure::BadResponse`, else Ok(None). Found: the status, and
        //    the slice of `data` after the empty line.
        todo!("TODO 9: the header in Header::push, src/fetch.rs")
    }
}

/// Where the body starts: just after the first `\r\n\r\n` at or after `from`.
pub fn header_end(received: &[u8], from: usize) -> Option<usize> {
    // TODO 9 (b): search `received[from..]` for `\r\n\r\n` (`windows(4)`).
    todo!("TODO 9: the header's end in header_end, src/fetch.rs")
}

/// The status line's code, checked on the bytes received so far:
/// `HTTP/1.` + one digit + a space + three digits + a space or the line's
/// end. `Ok(None)`: fine so far, too short to tell.
pub fn status_code(received: &[u8]) -> Result<Option<u16>, Failure> {
    // TODO 9 (c): check each byte received against the pattern (the first
    //    13 bytes); a byte that does not fit: `Failure::BadResponse`; fewer
    //    than 13 bytes: Ok(None); else the code, bytes 9 to 11.
    todo!("TODO 9: the status line in status_code, src/fetch.rs")
}
