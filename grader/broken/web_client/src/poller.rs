//! The readiness call: level-triggered epoll for every variant but one; the Select
//! fault waits in select(2), whose fd sets end at FD_SETSIZE (1024).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::select::{FD_SETSIZE, FdSet, select};
use nix::sys::time::TimeVal;

/// What a watched socket waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Write,
    Read,
}

/// Every watched socket, by token (the fetch's index).
pub enum Poller {
    Epoll(Epoll, Vec<EpollEvent>),
    /// The Select fault: the fd and what it waits for, rebuilt into fd sets each round.
    Select(HashMap<usize, (RawFd, Want)>),
}

impl Poller {
    pub fn new(select: bool) -> io::Result<Poller> {
        if select {
            return Ok(Poller::Select(HashMap::new()));
        }
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        Ok(Poller::Epoll(epoll, vec![EpollEvent::empty(); 256]))
    }

    pub fn add(&mut self, fd: BorrowedFd, token: usize, want: Want) -> io::Result<()> {
        match self {
            Poller::Epoll(epoll, _) => Ok(epoll.add(fd, event(token, want))?),
            Poller::Select(watched) => {
                let raw = fd.as_raw_fd();
                if raw as usize >= FD_SETSIZE {
                    // The mistake: select's fd sets cannot hold this fd at all.
                    return Err(io::Error::other(format!(
                        "fd {raw} is not below FD_SETSIZE ({FD_SETSIZE}): select() cannot watch it"
                    )));
                }
                watched.insert(token, (raw, want));
                Ok(())
            }
        }
    }

    pub fn modify(&mut self, fd: BorrowedFd, token: usize, want: Want) -> io::Result<()> {
        match self {
            Poller::Epoll(epoll, _) => Ok(epoll.modify(fd, &mut event(token, want))?),
            Poller::Select(watched) => {
                watched.insert(token, (fd.as_raw_fd(), want));
                Ok(())
            }
        }
    }

    /// Stops watching; the caller closes the socket right after (or keeps it).
    pub fn delete(&mut self, fd: BorrowedFd, token: usize) {
        match self {
            Poller::Epoll(epoll, _) => {
                let _ = epoll.delete(fd);
            }
            Poller::Select(watched) => {
                watched.remove(&token);
            }
        }
    }

    /// Waits until a socket is ready or `timeout` (None: no deadline pending) passes;
    /// the tokens of the ready sockets go to `ready`.
    pub fn wait(&mut self, timeout: Option<Duration>, ready: &mut Vec<usize>) -> io::Result<()> {
        ready.clear();
        match self {
            Poller::Epoll(epoll, events) => {
                let timeout = match timeout {
                    None => EpollTimeout::NONE,
                    Some(left) => {
                        let ms = left.as_millis().min(i32::MAX as u128) as i32;
                        EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
                    }
                };
                match epoll.wait(events, timeout) {
                    Ok(n) => ready.extend(events[..n].iter().map(|e| e.data() as usize)),
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Poller::Select(watched) => {
                // SAFETY: every watched fd belongs to a fetch in progress and stays
                // open at least until this call returns.
                let fd = |raw: RawFd| unsafe { BorrowedFd::borrow_raw(raw) };
                let (mut reads, mut writes) = (FdSet::new(), FdSet::new());
                for &(raw, want) in watched.values() {
                    match want {
                        Want::Read => reads.insert(fd(raw)),
                        Want::Write => writes.insert(fd(raw)),
                    }
                }
                let mut tv = timeout
                    .map(|left| TimeVal::new(left.as_secs() as _, left.subsec_micros() as _));
                match select(None, &mut reads, &mut writes, None, tv.as_mut()) {
                    Ok(_) => {
                        for (&token, &(raw, want)) in watched.iter() {
                            let set = if want == Want::Read { &reads } else { &writes };
                            if set.contains(fd(raw)) {
                                ready.push(token);
                            }
                        }
                    }
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

fn event(token: usize, want: Want) -> EpollEvent {
    let flags = match want {
        Want::Write => EpollFlags::EPOLLOUT,
        Want::Read => EpollFlags::EPOLLIN,
    };
    EpollEvent::new(flags, token as u64)
}
