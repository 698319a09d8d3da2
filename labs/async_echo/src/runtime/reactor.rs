//! The reactor. Suggested shape (see "The reactor" in the handout):
//!
//! - a `nix::sys::epoll::Epoll`, created once;
//! - a `Slab` (crate::given) of sources indexed by a token (the epoll
//!   event's data): for each registered fd and each direction, a
//!   "may be ready" flag (true at registration, set by every edge, cleared
//!   by `clear_ready`) and the `Waker` waiting for the next edge;
//! - a `BinaryHeap` of (deadline, timer id), and the waker of each live timer
//!   in a map by id (a cancelled timer is removed from the map and skipped
//!   in the heap);
//! - all of it in a `struct Reactor`, in a `thread_local!` `RefCell`, so
//!   that the functions below can reach it; each borrows it for its own call
//!   only.
//!
//! Step 1 of the build order needs the timers and `turn()` only: `register`
//! and the other fd functions can wait for step 2.

use std::os::fd::AsFd;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Which way a socket must be ready for a call to go on.
#[derive(Clone, Copy)]
pub enum Direction {
    Read,
    Write,
}

/// A timer's name: from a counter, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

/// Registers a non-blocking fd (for both directions; edge-triggered is
/// fine, since the flags remember each edge until a call proves the socket
/// drained); returns its token.
pub fn register(fd: impl AsFd) -> std::io::Result<usize> {
    todo!("reactor::register (step 2): epoll.add the fd with a token of its own")
}

/// Forgets a registration before its fd is closed.
pub fn deregister(token: usize, fd: impl AsFd) {
    todo!("reactor::deregister (step 2)")
}

/// `Ready` if the fd of `token` may be ready in `direction` (its flag is
/// set; for reading, also once the peer's FIN, a hang-up or an error was
/// seen, which a short read must not clear); otherwise stores a clone of
/// `cx.waker()` in that direction's slot and returns `Pending`.
pub fn poll_ready(token: usize, direction: Direction, cx: &mut Context<'_>) -> Poll<()> {
    todo!("reactor::poll_ready (step 2)")
}

/// Clears the flag of `token` in `direction`: the last call proved the
/// socket drained (`WouldBlock`, or a short read).
pub fn clear_ready(token: usize, direction: Direction) {
    todo!("reactor::clear_ready (step 2)")
}

/// Wakes `waker` at `deadline`, unless cancelled first.
pub fn add_timer(deadline: Instant, waker: &Waker) -> TimerId {
    todo!("reactor::add_timer (step 1)")
}

/// Cancels a timer; one that already fired is simply no longer there.
pub fn cancel_timer(id: TimerId) {
    todo!("reactor::cancel_timer (step 1)")
}

/// Sleeps in epoll_wait until an fd is ready or the earliest live timer is
/// due (that deadline is the timeout, rounded up to a millisecond:
/// `left.as_nanos().div_ceil(1_000_000)`), sets the flag of each event's
/// directions (IN, RDHUP, HUP, ERR: read; OUT, HUP, ERR: write), and
/// returns the wakers of everything that fired. Never a fixed short
/// timeout.
pub fn turn() -> Vec<Waker> {
    todo!("reactor::turn (step 1): epoll_wait with the earliest timer as its timeout")
}
