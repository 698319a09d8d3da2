//! The reactor: one epoll instance, the wakers waiting on each registered
//! fd, and a heap of timers.
//!
//! Each socket is registered once, when it is wrapped in `Async`, for both
//! directions and edge-triggered (`EPOLLET`): the reactor never changes a
//! registration, and an edge is a reason to try the system call again, not a
//! promise that it will succeed. A task that wants to read first tries; only
//! on `WouldBlock` does it leave its waker here. Because it always tries
//! before waiting, no edge can be missed: bytes that arrived before the
//! waker was left are read by the attempt itself.

use crate::given::Slab;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::os::fd::AsFd;
use std::task::Waker;
use std::time::Instant;

/// What a registered fd is waiting for.
#[derive(Default)]
struct Source {
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// A timer's name: from a counter, never reused, so that a cancelled or
/// fired timer can never be mistaken for a newer one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

struct Reactor {
    epoll: Epoll,
    /// Indexed by the token each registration carries in its epoll data.
    sources: Slab<Source>,
    /// Deadlines, earliest first. A cancelled timer stays in the heap until
    /// its deadline; it is then found missing from `timers` and skipped.
    heap: BinaryHeap<Reverse<(Instant, TimerId)>>,
    timers: HashMap<TimerId, Waker>,
    next_timer: u64,
    events: Vec<EpollEvent>,
}

thread_local! {
    static REACTOR: RefCell<Reactor> = RefCell::new(Reactor::new());
}

/// Runs `f` on this thread's reactor. Each public function below borrows it
/// for one call only, so no borrow is ever held while a task runs.
fn with<T>(f: impl FnOnce(&mut Reactor) -> T) -> T {
    REACTOR.with(|reactor| f(&mut reactor.borrow_mut()))
}

/// Registers a non-blocking fd (for both directions, edge-triggered);
/// returns its token.
pub fn register(fd: impl AsFd) -> std::io::Result<usize> {
    with(|reactor| reactor.register(fd))
}

/// Forgets a registration before its fd is closed.
pub fn deregister(token: usize, fd: impl AsFd) {
    with(|reactor| reactor.deregister(token, fd))
}

/// Wakes `waker` once the fd of `token` may be readable.
pub fn wait_readable(token: usize, waker: &Waker) {
    with(|reactor| {
        if let Some(source) = reactor.sources.get_mut(token) {
            source.reader = Some(waker.clone());
        }
    })
}

/// Wakes `waker` once the fd of `token` may be writable.
pub fn wait_writable(token: usize, waker: &Waker) {
    with(|reactor| {
        if let Some(source) = reactor.sources.get_mut(token) {
            source.writer = Some(waker.clone());
        }
    })
}

/// Wakes `waker` at `deadline`, unless cancelled first.
pub fn add_timer(deadline: Instant, waker: &Waker) -> TimerId {
    with(|reactor| reactor.add_timer(deadline, waker))
}

/// Cancels a timer; one that already fired is simply no longer there.
pub fn cancel_timer(id: TimerId) {
    with(|reactor| reactor.timers.remove(&id));
}

/// Sleeps in `epoll_wait` until an fd is ready or the earliest live timer is
/// due, and returns the wakers of everything that fired. The caller wakes
/// them once the reactor is no longer borrowed (waking runs executor code).
pub fn turn() -> Vec<Waker> {
    with(Reactor::turn)
}

impl Reactor {
    fn new() -> Reactor {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .unwrap_or_else(|err| labkit::fail(format_args!("epoll_create1: {err}")));
        Reactor {
            epoll,
            sources: Slab::default(),
            heap: BinaryHeap::new(),
            timers: HashMap::new(),
            next_timer: 0,
            events: vec![EpollEvent::empty(); 1024],
        }
    }

    fn register(&mut self, fd: impl AsFd) -> std::io::Result<usize> {
        let token = self.sources.insert(Source::default());
        let interest = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        if let Err(err) = self.epoll.add(fd, EpollEvent::new(interest, token as u64)) {
            self.sources.remove(token);
            return Err(err.into());
        }
        Ok(token)
    }

    /// The fd is about to be closed, which removes it from the epoll set.
    /// Its wakers are dropped: a token reused by the next socket starts
    /// with none.
    fn deregister(&mut self, token: usize, fd: impl AsFd) {
        let _ = self.epoll.delete(fd);
        self.sources.remove(token);
    }

    fn add_timer(&mut self, deadline: Instant, waker: &Waker) -> TimerId {
        let id = TimerId(self.next_timer);
        self.next_timer += 1;
        self.heap.push(Reverse((deadline, id)));
        self.timers.insert(id, waker.clone());
        id
    }

    /// The earliest deadline of a live timer, dropping dead ones on the way.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((deadline, id))) = self.heap.peek() {
            if self.timers.contains_key(&id) {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    fn turn(&mut self) -> Vec<Waker> {
        // The earliest deadline is the epoll timeout: the only timer this
        // program has is the wait itself, so it never wakes for nothing and
        // never oversleeps a deadline. Rounded up to the next millisecond:
        // rounding down would wake just before the deadline, find nothing
        // due, and wait again (a busy loop in the last millisecond).
        let timeout = match self.next_deadline() {
            None => EpollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = left.as_nanos().div_ceil(1_000_000);
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
            }
        };
        let n = match self.epoll.wait(&mut self.events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(err) => labkit::fail(format_args!("epoll_wait: {err}")),
        };
        let mut woken = Vec::new();
        for event in &self.events[..n] {
            let Some(source) = self.sources.get_mut(event.data() as usize) else {
                continue;
            };
            let flags = event.events();
            let failed = EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
            if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | failed) {
                woken.extend(source.reader.take());
            }
            if flags.intersects(EpollFlags::EPOLLOUT | failed) {
                woken.extend(source.writer.take());
            }
        }
        let now = Instant::now();
        while let Some(&Reverse((deadline, id))) = self.heap.peek() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            woken.extend(self.timers.remove(&id));
        }
        woken
    }
}
