//! The reactor. Suggested shape (see "The reactor" in the handout):
//!
//! - a `nix::sys::epoll::Epoll`, created once;
//! - a slab of sources indexed by a token (the epoll event's data): for each
//!   registered fd, the `Waker` waiting to read and the one waiting to write;
//! - a `BinaryHeap` of (deadline, timer id), and the waker of each live timer
//!   (a cancelled timer is removed from the map and skipped in the heap);
//! - in a `thread_local!`, so that futures can reach it.

use std::os::fd::AsFd;
use std::task::Waker;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

/// Registers a non-blocking fd (for both directions; edge-triggered is
/// fine, since every operation tries its system call first); returns its
/// token.
pub fn register(fd: impl AsFd) -> std::io::Result<usize> {
    todo!("reactor::register: epoll.add the fd with a token of its own")
}

/// Forgets a registration before its fd is closed.
pub fn deregister(token: usize, fd: impl AsFd) {
    todo!("reactor::deregister")
}

/// Wakes `waker` once the fd of `token` may be readable (or writable).
pub fn wait_readable(token: usize, waker: &Waker) {
    todo!("reactor::wait_readable")
}

pub fn wait_writable(token: usize, waker: &Waker) {
    todo!("reactor::wait_writable")
}

/// Wakes `waker` at `deadline`, unless cancelled first.
pub fn add_timer(deadline: Instant, waker: &Waker) -> TimerId {
    todo!("reactor::add_timer")
}

pub fn cancel_timer(id: TimerId) {
    todo!("reactor::cancel_timer")
}

/// Sleeps in epoll_wait until an fd is ready or the earliest live timer is
/// due (that deadline is the timeout, rounded up to a millisecond), and
/// returns the wakers of everything that fired. Never a fixed short timeout.
pub fn turn() -> Vec<Waker> {
    todo!("reactor::turn: epoll_wait with the earliest timer as its timeout")
}
