//! One connection as an explicit state machine.
//!
//! A thread serving one client keeps its place in the conversation on its
//! stack: "I am in the middle of reading a line", "I am sending the reply".
//! An event loop serves every client from one stack, and returns to
//! `select` between any two steps, so that place must be written down: it
//! is the [`State`] below, plus the bytes in flight (the unfinished line,
//! the replies not yet sent).
//!
//! ```text
//!             quit, or a line over 8192 bytes
//!   Reading ────────────────────────────────────► Closing
//!     │                                        │         │
//!     │ EOF                          EOF       │         │ every reply sent:
//!     ▼                          ◄─────────────┘         │ shutdown(SHUT_WR)
//!   Flushing ─── every reply sent ──► Done ◄── EOF ─── Lingering
//!                                     ▲
//!            (any read or write error)┘
//! ```
//!
//! Every transition is in [`Conn::on`]; which fd sets a state joins is in
//! [`Conn::wants_read`] and [`Conn::wants_write`]. The server never asks
//! "what was I doing?" anywhere else.

use echo_core::{BACKPRESSURE_LIMIT, Fed, LineReader};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Reading lines and queueing their echoes.
    Reading,
    /// `quit` or a too-long line: the client gets no more echoes. Send what
    /// is queued (input is read and thrown away meanwhile), then shut down
    /// our writing half.
    Closing,
    /// Our FIN is sent. Read and discard until the client's EOF: closing
    /// with its bytes unread would send a reset, and a reset can destroy
    /// replies the client has not read yet (the lingering close).
    Lingering,
    /// The client sent EOF: nothing more will come in. Send what is queued,
    /// then close.
    Flushing,
    /// Finished: the server drops the connection, which closes the socket.
    Done,
}

/// What happened to a connection: the inputs of the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// A `quit` line, or the 8193rd byte of a line without a `\n`.
    End,
    /// The client closed its writing half (read returned 0).
    Eof,
    /// Every queued reply has been written.
    AllSent,
    /// The socket failed (a reset, most often): nothing more can be done.
    Error,
}

pub struct Conn {
    stream: TcpStream,
    state: State,
    lines: LineReader,
    /// Replies not yet written; `out[sent..]` is what is left.
    out: Vec<u8>,
    sent: usize,
}

impl Conn {
    /// Wraps a socket that is already non-blocking.
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            state: State::Reading,
            lines: LineReader::default(),
            out: Vec::new(),
            sent: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Whether this connection goes into the read set before the next
    /// `select` (the handout's table, "Which set each state joins").
    pub fn wants_read(&self) -> bool {
        match self.state {
            // Not reading while 64 KiB of replies are unsent is the
            // backpressure: the kernel's buffers fill up and the client's
            // writes block, instead of our memory growing without bound.
            State::Reading => self.pending() < BACKPRESSURE_LIMIT,
            // Input is read and thrown away until the client's EOF.
            State::Closing | State::Lingering => true,
            // The EOF has been read: a socket at EOF is readable forever,
            // and asking again would make select return at once, a busy loop.
            State::Flushing | State::Done => false,
        }
    }

    /// Whether this connection goes into the write set: only while it has
    /// replies to send. A socket is writable almost all the time, so asking
    /// with nothing to send would also make select return at once.
    pub fn wants_write(&self) -> bool {
        match self.state {
            State::Reading | State::Closing | State::Flushing => self.pending() > 0,
            // Lingering: every reply is out, our FIN too.
            State::Lingering | State::Done => false,
        }
    }

    /// The one place where the state changes. One transition also acts:
    /// entering Lingering sends our FIN (`shutdown`), which can fail.
    fn on(&mut self, event: Event) {
        use State::*;
        self.state = match (self.state, event) {
            (_, Event::Error) => Done,
            (Reading, Event::End) => Closing,
            (Reading | Closing, Event::Eof) => Flushing,
            (Closing, Event::AllSent) => match self.stream.shutdown(Shutdown::Write) {
                Ok(()) => Lingering,
                Err(_) => Done,
            },
            (Lingering, Event::Eof) | (Flushing, Event::AllSent) => Done,
            // `write` runs after every read, so AllSent comes all the time:
            // while Reading or Lingering it finishes nothing.
            (Reading | Lingering, Event::AllSent) => self.state,
            // Cannot happen: lines are parsed only while Reading, nothing is
            // read once Flushing, and a Done connection is never served.
            (Closing | Lingering | Flushing | Done, Event::End)
            | (Flushing | Done, Event::Eof)
            | (Done, Event::AllSent) => self.state,
        };
    }

    /// One `read`, and what it means. Once is enough: `select` is
    /// level-triggered and reports the socket again while bytes remain.
    pub fn read(&mut self, scratch: &mut [u8]) {
        match self.stream.read(scratch) {
            Ok(0) => {
                if self.state == State::Reading {
                    // An unterminated last fragment is echoed as it is.
                    let fragment = self.lines.take_fragment();
                    self.out.extend_from_slice(&fragment);
                }
                self.on(Event::Eof);
            }
            Ok(n) if self.state == State::Reading => self.absorb(&scratch[..n]),
            // In every other state input is discarded.
            Ok(_) => {}
            Err(err) if is_retry(err.kind()) => {}
            Err(_) => self.on(Event::Error),
        }
    }

    fn absorb(&mut self, data: &[u8]) {
        // `quit`, or a too-long line (its ERR line is queued).
        if self.lines.echo(data, &mut self.out) != Fed::All {
            self.on(Event::End);
        }
    }

    /// Writes queued replies until they are all out or the socket is full.
    /// Called after every read as well as when `select` says writable: the
    /// socket usually has room, and this saves a trip through `select`.
    pub fn write(&mut self) {
        while self.pending() > 0 {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(n) => self.sent += n,
                // Full: `interest` puts the socket in the write set, and
                // select tells us when there is room again.
                Err(err) if err.kind() == ErrorKind::WouldBlock => return self.compact(),
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.on(Event::Error),
            }
        }
        self.out.clear();
        self.sent = 0;
        self.on(Event::AllSent);
    }

    /// Drops the bytes already sent once they are most of the buffer.
    fn compact(&mut self) {
        if self.sent > self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }
}

fn is_retry(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}
