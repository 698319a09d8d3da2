//! One fetch's state machine: connecting, sending the request, receiving the header,
//! receiving the body. It does its own I/O on its own socket and never waits: the
//! caller (the epoll loop, or a thread with a blocking socket) decides when to call
//! [`Fetch::advance`] again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, send};
use socket2::{Domain, Socket, Type};

use crate::{Fault, Outcome, Url};

/// The contract accepts headers of up to 16 KiB; this client takes twice that.
const MAX_HEADER: usize = 32 * 1024;

/// Where a fetch is in its life.
#[derive(Debug)]
pub enum Stage {
    /// `connect` returned `EINPROGRESS`: writability will say it ended.
    Connecting,
    /// Connected: `sent` bytes of the request are out.
    Sending { sent: usize },
    /// The request is out: the header so far.
    Header { head: Vec<u8> },
    /// The header ended with this status: every byte now is body.
    Body { status: u16 },
}

/// What [`Fetch::advance`] made of its turn.
pub enum Step {
    /// Nothing more to do until the socket is ready again.
    Pending,
    /// The fetch ended (its files are already renamed or removed).
    Done(Outcome),
}

/// One fetch in progress.
pub struct Fetch {
    pub index: usize,
    pub sock: Socket,
    pub stage: Stage,
    /// When its `connect` started: its deadline counts from here.
    pub started: Instant,
    request: Vec<u8>,
    fault: Fault,
    /// `DIR/i`, and the file the body streams to (`DIR/i.part`) once the header ended.
    done_path: PathBuf,
    part_path: PathBuf,
    file: Option<File>,
    /// The BodyInMemory fault's whole body.
    in_memory: Vec<u8>,
    bytes: u64,
}

/// Why a socket call failed, as one word of the output line.
pub fn reason(e: &io::Error) -> &'static str {
    match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
        Errno::ECONNREFUSED => "refused",
        Errno::ECONNRESET | Errno::EPIPE | Errno::ECONNABORTED => "reset",
        Errno::ETIMEDOUT => "timeout",
        Errno::EHOSTUNREACH | Errno::ENETUNREACH => "unreachable",
        _ if e.kind() == ErrorKind::TimedOut => "timeout",
        _ => "io",
    }
}

/// Removes what a failed fetch `index` may have left in `dir`: its `.part` and an
/// earlier run's `DIR/i`, so that nothing half-written looks complete.
pub fn discard(dir: &Path, index: usize) {
    let _ = fs::remove_file(dir.join(format!("{index}.part")));
    let _ = fs::remove_file(dir.join(index.to_string()));
}

impl Fetch {
    /// Starts fetch `index` (from 1): a socket, non-blocking before `connect` so that
    /// the connect never waits. Err: it ended at once (its files already discarded).
    pub fn start(index: usize, url: &Url, dir: &Path, fault: Fault) -> Result<Fetch, Outcome> {
        let fail = |why| {
            discard(dir, index);
            Outcome::Failed(why)
        };
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|_| fail("socket"))?;
        let started = Instant::now();
        let addr = url.addr.into();
        let stage = if fault == Fault::BlockingConnect {
            // The mistake: a blocking connect waits for the handshake (minutes for a
            // host that never answers) and every other fetch waits with it.
            sock.connect(&addr).map_err(|e| fail(reason(&e)))?;
            sock.set_nonblocking(true).map_err(|_| fail("socket"))?;
            Stage::Sending { sent: 0 }
        } else {
            sock.set_nonblocking(true).map_err(|_| fail("socket"))?;
            match sock.connect(&addr) {
                // On loopback a connect can succeed at once: nothing to wait for.
                Ok(()) => Stage::Sending { sent: 0 },
                Err(e) if e.raw_os_error() == Some(Errno::EINPROGRESS as i32) => Stage::Connecting,
                Err(e) => return Err(fail(reason(&e))),
            }
        };
        let mut fetch = Self::new(index, url, dir, fault, sock, started, stage);
        if fault == Fault::Select {
            // Not a mistake, a choice this variant makes so that its one mistake shows:
            // its body file is open from the start, two fds per fetch, so that with
            // N = 1,000 its sockets climb past select's FD_SETSIZE.
            fetch.open_file().map_err(|why| fetch.fail(why))?;
        }
        Ok(fetch)
    }

    /// A fetch whose socket `sock` is already connected (the threaded variant).
    pub fn connected(index: usize, url: &Url, dir: &Path, fault: Fault, sock: Socket) -> Fetch {
        Self::new(
            index,
            url,
            dir,
            fault,
            sock,
            Instant::now(),
            Stage::Sending { sent: 0 },
        )
    }

    fn new(
        index: usize,
        url: &Url,
        dir: &Path,
        fault: Fault,
        sock: Socket,
        started: Instant,
        stage: Stage,
    ) -> Fetch {
        let part = if fault == Fault::PartialFile {
            // The mistake: the body goes straight to its final name.
            index.to_string()
        } else {
            format!("{index}.part")
        };
        Fetch {
            index,
            sock,
            stage,
            started,
            request: url.request.clone(),
            fault,
            done_path: dir.join(index.to_string()),
            part_path: dir.join(part),
            file: None,
            in_memory: Vec::new(),
            bytes: 0,
        }
    }

    /// Whether this fetch waits to write (connecting, sending) rather than to read.
    pub fn wants_write(&self) -> bool {
        matches!(self.stage, Stage::Connecting | Stage::Sending { .. })
    }

    /// Does what the socket allows now: finishes a connect, sends, or reads once
    /// (one read per turn, so that one fast server never starves the others).
    pub fn advance(&mut self, buf: &mut [u8]) -> Step {
        match self.advance_inner(buf) {
            Ok(Some(outcome)) => Step::Done(outcome),
            Ok(None) => Step::Pending,
            Err(why) => Step::Done(self.fail(why)),
        }
    }

    fn advance_inner(&mut self, buf: &mut [u8]) -> Result<Option<Outcome>, &'static str> {
        if let Stage::Connecting = self.stage {
            if self.fault != Fault::WritableConnected {
                // Writable only says the connect ENDED; SO_ERROR says how.
                match self.sock.take_error() {
                    Ok(None) => {}
                    Ok(Some(e)) | Err(e) => return Err(reason(&e)),
                }
            }
            self.stage = Stage::Sending { sent: 0 };
        }
        if let Stage::Sending { sent } = &mut self.stage {
            while *sent < self.request.len() {
                // MSG_NOSIGNAL: a reset peer is an error to report, never a SIGPIPE.
                match send(
                    self.sock.as_raw_fd(),
                    &self.request[*sent..],
                    MsgFlags::MSG_NOSIGNAL,
                ) {
                    Ok(n) if self.fault == Fault::ShortWrite => {
                        // The mistake: one write, its count ignored.
                        let _ = n;
                        *sent = self.request.len();
                    }
                    Ok(n) => *sent += n,
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => return Ok(None),
                    Err(e) => return Err(self.io_reason(e.into())),
                }
            }
            self.stage = Stage::Header { head: Vec::new() };
            return Ok(None);
        }
        let n = match self.sock.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return Ok(None);
            }
            Err(e) => return Err(self.io_reason(e)),
        };
        if n == 0 {
            return self.at_eof().map(Some);
        }
        match &mut self.stage {
            Stage::Header { head } => {
                let from = head.len().saturating_sub(3);
                head.extend_from_slice(&buf[..n]);
                let Some(end) = header_end(&head[from..], self.fault).map(|end| from + end) else {
                    return if head.len() > MAX_HEADER {
                        Err("bad-response")
                    } else {
                        Ok(None)
                    };
                };
                let status = status_code(&head[..end]).ok_or("bad-response")?;
                if self.fault == Fault::Non2xxFails && !(200..300).contains(&status) {
                    // The mistake: a 404 WAS fetched; the contract counts it a success.
                    return Err("status");
                }
                let rest = head.split_off(end);
                self.stage = Stage::Body { status };
                self.open_file()?;
                self.write_body(&rest)?;
            }
            Stage::Body { .. } => self.write_body(&buf[..n])?,
            Stage::Connecting | Stage::Sending { .. } => unreachable!("handled above"),
        }
        Ok(None)
    }

    fn io_reason(&self, e: io::Error) -> &'static str {
        if self.fault == Fault::WritableConnected {
            // The mistake's other half: with SO_ERROR never read, a refused connect
            // shows up here, and this client calls every such failure a reset.
            return "reset";
        }
        reason(&e)
    }

    /// The server closed: the end of the body, or a response cut short.
    fn at_eof(&mut self) -> Result<Outcome, &'static str> {
        let status = match &self.stage {
            Stage::Body { status } => *status,
            Stage::Header { head } if self.fault == Fault::EofIsSuccess => {
                // The mistake: a stream that ends before the empty line "succeeds".
                let status = status_code(head).unwrap_or(0);
                self.open_file()?;
                status
            }
            _ => return Err("bad-response"),
        };
        let mut file = self.file.take().ok_or("file")?;
        if self.fault == Fault::BodyInMemory {
            file.write_all(&self.in_memory).map_err(|_| "file")?;
        }
        drop(file);
        // Renamed only now, complete: DIR/i never exists half-written.
        fs::rename(&self.part_path, &self.done_path).map_err(|_| "file")?;
        Ok(Outcome::Fetched {
            status,
            bytes: self.bytes,
        })
    }

    fn open_file(&mut self) -> Result<(), &'static str> {
        if self.file.is_some() {
            return Ok(());
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.part_path);
        match file {
            Ok(file) => self.file = Some(file),
            Err(e) if self.fault == Fault::LazyDir => {
                // The mistake: the directory is checked only now, after connecting.
                eprintln!(
                    "web_client: cannot create {}: {e}",
                    self.part_path.display()
                );
                std::process::exit(1);
            }
            Err(_) => return Err("file"),
        }
        Ok(())
    }

    fn write_body(&mut self, data: &[u8]) -> Result<(), &'static str> {
        self.bytes += data.len() as u64;
        if self.fault == Fault::BodyInMemory {
            // The mistake: the whole body in memory, however large.
            self.in_memory.extend_from_slice(data);
            return Ok(());
        }
        let file = self.file.as_mut().ok_or("file")?;
        // A regular file: this write may block, the contract allows it.
        file.write_all(data).map_err(|_| "file")
    }

    /// Ends this fetch as failed with `why`: its partial file goes.
    pub fn fail(&mut self, why: &'static str) -> Outcome {
        self.file = None;
        if self.fault != Fault::PartialFile {
            discard(
                self.done_path.parent().unwrap_or(Path::new(".")),
                self.index,
            );
        }
        Outcome::Failed(why)
    }
}

/// Where the header ends (just past its `\r\n\r\n`) in `bytes`, if it does.
fn header_end(bytes: &[u8], fault: Fault) -> Option<usize> {
    // The HeaderCrlf mistake: the first line's end taken for the header's.
    let end: &[u8] = if fault == Fault::HeaderCrlf {
        b"\r\n"
    } else {
        b"\r\n\r\n"
    };
    bytes
        .windows(end.len())
        .position(|w| w == end)
        .map(|at| at + end.len())
}

/// The CODE of a status line `HTTP/1.D CODE[ reason]` at the start of `head`.
fn status_code(head: &[u8]) -> Option<u16> {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = &head[..line_end];
    let digit = |i: usize| line.get(i).is_some_and(u8::is_ascii_digit);
    let shaped = line.starts_with(b"HTTP/1.")
        && digit(7)
        && line.get(8) == Some(&b' ')
        && (9..12).all(digit)
        && (line.len() == 12 || line[12] == b' ');
    if !shaped {
        return None;
    }
    std::str::from_utf8(&line[9..12]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.0 200 OK\r\n\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.1 503\r\n\r\n"), Some(503));
        assert_eq!(status_code(b"HTTP/1.0 20 OK\r\n\r\n"), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.0 2000\r\n\r\n"), None);
        assert_eq!(status_code(b"HTTP/2.0 200 OK\r\n\r\n"), None);
    }

    #[test]
    fn header_ends() {
        assert_eq!(
            header_end(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nxy", Fault::None),
            Some(25)
        );
        assert_eq!(
            header_end(b"HTTP/1.0 200 OK\r\nA: b\r\n", Fault::None),
            None
        );
    }
}
