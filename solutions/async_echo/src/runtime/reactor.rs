//! The reactor: one epoll instance, the readiness and wakers of each
//! registered fd, and a heap of timers.
//!
//! Each socket is registered once, when it is wrapped in `Async`, for both
//! directions and edge-triggered (`EPOLLET`): the reactor never changes a
//! registration. An edge says "something changed", once; the reactor
//! remembers it in a flag per direction, so that an edge that came while no
//! task was waiting (the task was busy writing, say) is kept, not lost. A
//! task tries its system call while the flag is set, clears it when the
//! call proves the socket drained (`WouldBlock`, or a short read), and only
//! then waits for the next edge (see net.rs).

use crate::given::Slab;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::os::fd::AsFd;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Which way a socket must be ready for a call to go on.
#[derive(Clone, Copy)]
pub enum Direction {
    Read,
    Write,
}

/// What the reactor knows of one registered fd, per direction: whether it
/// may be ready, and the task waiting for it to be.
struct Source {
    /// Set by every edge in that direction, cleared by `clear_ready`.
    /// True at registration: a fresh socket may already have bytes or room,
    /// and no edge may ever come for them, so the first call tries.
    readable: bool,
    writable: bool,
    /// The peer's FIN (`EPOLLRDHUP`), a hang-up or an error was seen: never
    /// cleared. A FIN that came with the last bytes raises no edge after
    /// the short read that takes those bytes, so a short read must not make
    /// the task wait for one; and a read after it returns 0 or the error,
    /// never `WouldBlock`, so trying costs nothing.
    read_closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl Source {
    fn new() -> Source {
        Source {
            readable: true,
            writable: true,
            read_closed: false,
            reader: None,
            writer: None,
        }
    }
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

/// `Ready` if the fd of `token` may be ready in `direction` (an edge came
/// since the last `clear_ready`); otherwise stores the task's waker, for
/// the next edge to wake, and returns `Pending`.
pub fn poll_ready(token: usize, direction: Direction, cx: &mut Context<'_>) -> Poll<()> {
    with(|reactor| {
        let Some(source) = reactor.sources.get_mut(token) else {
            return Poll::Ready(()); // never happens: a token lives as long as its Async
        };
        let (ready, waiter) = match direction {
            Direction::Read => (source.readable || source.read_closed, &mut source.reader),
            Direction::Write => (source.writable, &mut source.writer),
        };
        if ready {
            return Poll::Ready(());
        }
        *waiter = Some(cx.waker().clone());
        Poll::Pending
    })
}

/// Forgets the readiness of `token` in `direction`: the last call proved
/// the socket drained. Safe without a race: `turn()` never runs while a
/// task is being polled, and an edge that came meanwhile waits in epoll's
/// ready list for the next `epoll_wait`, which sets the flag again.
pub fn clear_ready(token: usize, direction: Direction) {
    with(|reactor| {
        if let Some(source) = reactor.sources.get_mut(token) {
            match direction {
                Direction::Read => source.readable = false,
                Direction::Write => source.writable = false,
            }
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
/// due, sets the readiness flags of the fds that had an edge, and returns
/// the wakers of everything that fired. The caller wakes them once the
/// reactor is no longer borrowed (waking runs executor code).
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
        let token = self.sources.insert(Source::new());
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
    /// Its wakers and flags are dropped: a token reused by the next socket
    /// starts afresh.
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
            let closed = EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
            let failed = EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
            if flags.intersects(EpollFlags::EPOLLIN | closed) {
                source.readable = true;
                source.read_closed |= flags.intersects(closed);
                woken.extend(source.reader.take());
            }
            if flags.intersects(EpollFlags::EPOLLOUT | failed) {
                source.writable = true;
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
