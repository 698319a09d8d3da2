//! The select_echo servers: the same server waiting in `select(2)` instead
//! of `ppoll`, refusing clients whose fd is 1024 or more with
//! `ERR server full`.
//!
//! Unlike the reference solution (nix's `FdSet`), the sets here are raw
//! `fd_set` bitmaps handed to `libc::select`, laid out side by side as two
//! locals of a C function often are: that is what lets
//! [`SelectFault::Overrun`] write past the end of one into the other, as C's
//! `FD_SET` does, while staying inside memory this program owns.

use nix::errno::Errno;
use nix::libc;
use socket2::Socket;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::process;
use std::time::Duration;

const FD_SETSIZE: RawFd = libc::FD_SETSIZE as RawFd;
const FULL: &[u8] = b"ERR server full\n";
/// u64 words per fd_set (1024 bits).
const WORDS: usize = FD_SETSIZE as usize / 64;
/// FAULT(TimeoutRetry): select's timeout, after which unsent replies are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The one mistake a select_echo server makes; [`SelectFault::None`] is correct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectFault {
    None,
    /// Never refuses: fd 1024 goes into nix's `FdSet`, which panics.
    FdInSet,
    /// Never refuses, and sets the bit of fd 1024 and up the way C's
    /// `FD_SET` does: past the end of the read set, in the write set.
    Overrun,
    /// Refuses once 1,000 clients are connected, whatever their fds.
    RefuseEarly,
    /// Refuses by closing, without the `ERR server full` line.
    RefuseSilently,
    /// `nfds` is the last accepted fd plus one, not the highest fd in the sets.
    StaleNfds,
    /// The read set is built once and handed to every `select`, which
    /// overwrites it with the fds that were ready.
    NoRebuild,
    /// A zero timeout: `select` returns at once, in a loop.
    ZeroTimeout,
    /// Client sockets left blocking: a read or write in the loop can stall everyone.
    BlockingRead,
    /// Never puts anything in the write set: replies that hit EAGAIN wait for the next read.
    NoWriteSet,
    /// Never puts anything in the write set either, but waits at most
    /// [`RETRY_EVERY`] and, each time select times out, tries every
    /// connection's pending replies again: they go out, only late.
    TimeoutRetry,
    /// Does not raise the soft fd limit: accept fails with EMFILE at fd 1024.
    NoRlimit,
}

/// A read set and a write set, adjacent, and room after them so that the
/// kernel, told an `nfds` above 1024, reads and writes only our memory.
#[derive(Clone)]
#[repr(C, align(8))]
struct Sets {
    words: [u64; 3 * WORDS],
}

const READ: usize = 0;
const WRITE: usize = WORDS;

impl Sets {
    fn empty() -> Sets {
        Sets {
            words: [0; 3 * WORDS],
        }
    }

    /// C's `FD_SET`: no bounds check for FAULT(Overrun), where a large fd's
    /// bit lands in whatever follows the set.
    fn insert(&mut self, set: usize, fd: RawFd, fault: SelectFault) {
        if fd >= FD_SETSIZE && fault != SelectFault::Overrun {
            // FAULT(FdInSet): nix checks, and panics.
            // SAFETY: `fd` is an open socket of this server for the whole call.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            nix::sys::select::FdSet::new().insert(borrowed);
        }
        let word = set + fd as usize / 64;
        if let Some(w) = self.words.get_mut(word) {
            *w |= 1 << (fd % 64);
        }
    }

    fn contains(&self, set: usize, fd: RawFd) -> bool {
        let word = set + fd as usize / 64;
        fd < FD_SETSIZE
            && self
                .words
                .get(word)
                .is_some_and(|w| w & (1 << (fd % 64)) != 0)
    }

    fn ptr(&mut self, set: usize) -> *mut libc::fd_set {
        self.words[set..].as_mut_ptr().cast()
    }
}

pub(crate) struct Select {
    fault: SelectFault,
    listener: RawFd,
    /// FAULT(NoRebuild): the sets from the last call, used again.
    kept: Sets,
    /// FAULT(StaleNfds): the fd of the last connection accepted.
    last_accepted: RawFd,
}

impl Select {
    pub(crate) fn new(fault: SelectFault, listener: RawFd) -> Select {
        let mut kept = Sets::empty();
        kept.insert(READ, listener, fault);
        Select {
            fault,
            listener,
            kept,
            last_accepted: listener,
        }
    }

    /// Whether to serve a connection just accepted; if not, it has been told
    /// and shut down, and the caller drops (closes) it.
    pub(crate) fn admit(&mut self, sock: &Socket, connected: usize) -> bool {
        let fd = sock.as_raw_fd();
        self.last_accepted = fd;
        let full = match self.fault {
            // FAULT(RefuseEarly): a limit of its own, by count.
            SelectFault::RefuseEarly => connected >= 1000,
            // FAULT(FdInSet), FAULT(Overrun): every client is served.
            SelectFault::FdInSet | SelectFault::Overrun => false,
            _ => fd >= FD_SETSIZE,
        };
        if !full {
            if self.fault == SelectFault::NoRebuild {
                // FAULT(NoRebuild): added once, when accepted.
                self.kept.insert(READ, fd, self.fault);
            }
            return true;
        }
        if self.fault != SelectFault::RefuseSilently {
            // FAULT(RefuseSilently) skips the line.
            let _ = sock.send(FULL);
        }
        let _ = sock.shutdown(Shutdown::Write);
        false
    }

    /// One `select`; returns (fd, input ready) for every fd reported, the
    /// listener included.
    pub(crate) fn wait(
        &mut self,
        prog: &str,
        watch_listener: bool,
        conns: impl Iterator<Item = (RawFd, (bool, bool))>,
        timeout: Option<Duration>,
    ) -> Vec<(RawFd, bool)> {
        let fault = self.fault;
        let rebuild = fault != SelectFault::NoRebuild;
        let mut sets = if rebuild {
            Sets::empty()
        } else {
            self.kept.clone()
        };
        if rebuild && watch_listener {
            sets.insert(READ, self.listener, fault);
        }
        let mut nfds = self.listener + 1;
        let mut fds = Vec::new();
        for (fd, (read, write)) in conns {
            if read && rebuild {
                sets.insert(READ, fd, fault);
            }
            let uses_write_set =
                !matches!(fault, SelectFault::NoWriteSet | SelectFault::TimeoutRetry);
            if write && uses_write_set {
                sets.insert(WRITE, fd, fault);
            }
            nfds = nfds.max(fd + 1);
            fds.push((fd, write));
        }
        if fault == SelectFault::StaleNfds {
            nfds = self.last_accepted.max(self.listener) + 1;
        }
        // Never more bits than `sets` has after the write set.
        nfds = nfds.min(2 * FD_SETSIZE);
        let timeout = match fault {
            SelectFault::ZeroTimeout => Some(Duration::ZERO),
            SelectFault::TimeoutRetry => Some(timeout.map_or(RETRY_EVERY, |t| t.min(RETRY_EVERY))),
            _ => timeout,
        };
        let mut tv = timeout.map(|t| libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        });
        let tv_ptr = tv
            .as_mut()
            .map_or(std::ptr::null_mut(), |tv| tv as *mut libc::timeval);
        let (read_ptr, write_ptr) = (sets.ptr(READ), sets.ptr(WRITE));
        // SAFETY: both pointers point into `sets`, which has room for
        // `nfds` bits (at most 2048) from each of them.
        let n = unsafe { libc::select(nfds, read_ptr, write_ptr, std::ptr::null_mut(), tv_ptr) };
        if n < 0 {
            match Errno::last() {
                Errno::EINTR | Errno::EBADF => return Vec::new(),
                err => {
                    eprintln!("{prog}: select: {err}");
                    process::exit(1);
                }
            }
        }
        if !rebuild {
            self.kept = sets.clone();
        }
        let mut ready = Vec::new();
        if sets.contains(READ, self.listener) {
            ready.push((self.listener, true));
        }
        for (fd, wants_write) in fds {
            let (read, write) = (sets.contains(READ, fd), sets.contains(WRITE, fd));
            // FAULT(TimeoutRetry): a timeout counts as "writable" for every
            // connection with replies to send.
            let retry = n == 0 && fault == SelectFault::TimeoutRetry && wants_write;
            if read || write || retry {
                ready.push((fd, read));
            }
        }
        ready
    }
}
