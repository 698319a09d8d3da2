//! The reactor: one epoll instance, the task waiting on each registered
//! socket, and the timers in a `BTreeSet` ordered by deadline.
//!
//! Sockets are level-triggered and one-shot (`EPOLLONESHOT`): a waiting task
//! arms its socket with `EPOLL_CTL_MOD` for exactly the directions it waits
//! for; the kernel reports it once and disarms it, and the task arms it again
//! the next time it has to wait. Level-triggered, arming finds bytes that are
//! already there: nothing can be missed between a failed read and the wait.
//! One-shot, a socket nobody waits on (a hang-up seen while its task waits for
//! a timer) cannot make `epoll_wait` return over and over.
//!
//! Each socket has one waiter (its connection's task waits for reading and
//! writing at once) and a set of readiness bits that events add to and the
//! waiting future takes from.
//!
//! Timers are keyed by a number. A timer that reaches its deadline is marked
//! fired and its task woken; its owner asks whether it fired.

use crate::{Fault, fault};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::task::Waker;
use std::time::{Duration, Instant};

/// Readiness bits.
pub const READABLE: u8 = 1;
pub const WRITABLE: u8 = 2;

/// Events fetched per `epoll_wait`.
const MAX_EVENTS: usize = 256;
/// The first timer key handed out; the keys below are left free (fds fit there).
const FIRST_TIMER_KEY: u64 = 1 << 32;

/// A registered socket: its slot in the reactor and the slot's generation,
/// which is also the epoll data of its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token(u64);

impl Token {
    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
}

struct Source {
    waker: Option<Waker>,
    /// What the kernel reported and nobody has taken yet.
    ready: u8,
    /// The directions armed in the kernel; `None` once an event disarmed it.
    armed: Option<u8>,
}

struct Slot {
    generation: u32,
    source: Option<Source>,
}

#[derive(Default)]
struct TimerState {
    waker: Option<Waker>,
    fired: bool,
}

pub struct Reactor {
    epoll: Arc<Epoll>,
    slots: Vec<Slot>,
    vacant: Vec<usize>,
    /// `(deadline, key)`, earliest first.
    deadlines: BTreeSet<(Instant, u64)>,
    timers: HashMap<u64, TimerState>,
    next_key: u64,
    events: Vec<EpollEvent>,
    /// FAULT(LostWakeup): sockets are registered once, edge-triggered.
    edge: bool,
    /// FAULT(ReactorThread): the events come from a helper thread.
    relay: Option<Receiver<Vec<EpollEvent>>>,
}

thread_local! {
    static REACTOR: RefCell<Reactor> = RefCell::new(Reactor::new());
}

/// Runs `f` on this thread's reactor.
pub fn with<T>(f: impl FnOnce(&mut Reactor) -> T) -> T {
    REACTOR.with(|reactor| f(&mut reactor.borrow_mut()))
}

fn die(what: &str, err: Errno) -> ! {
    eprintln!(
        "{}: {what}: {err}",
        broken_common::program_name("broken_async_echo")
    );
    std::process::exit(1)
}

/// The readiness bits of an epoll event (a hang-up or an error makes both
/// directions worth trying: the call then reports what happened).
fn bits(flags: EpollFlags) -> u8 {
    let failed = EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
    let mut bits = 0;
    if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | failed) {
        bits |= READABLE;
    }
    if flags.intersects(EpollFlags::EPOLLOUT | failed) {
        bits |= WRITABLE;
    }
    bits
}

fn interest(want: u8) -> EpollFlags {
    let mut flags = EpollFlags::EPOLLONESHOT;
    if want & READABLE != 0 {
        flags |= EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
    }
    if want & WRITABLE != 0 {
        flags |= EpollFlags::EPOLLOUT;
    }
    flags
}

impl Reactor {
    fn new() -> Reactor {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .unwrap_or_else(|err| die("epoll_create1", err));
        let epoll = Arc::new(epoll);
        let relay = (fault() == Fault::ReactorThread).then(|| spawn_relay(epoll.clone()));
        Reactor {
            epoll,
            slots: Vec::new(),
            vacant: Vec::new(),
            deadlines: BTreeSet::new(),
            timers: HashMap::new(),
            next_key: FIRST_TIMER_KEY,
            events: vec![EpollEvent::empty(); MAX_EVENTS],
            edge: fault() == Fault::LostWakeup,
            relay,
        }
    }

    /// Adds a non-blocking socket to the epoll set, armed for nothing yet.
    pub fn register(&mut self, fd: BorrowedFd<'_>) -> std::io::Result<Token> {
        let index = match self.vacant.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    source: None,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        let token = Token((u64::from(slot.generation) << 32) | index as u64);
        let flags = if self.edge {
            // FAULT(LostWakeup): one registration for good, edge-triggered.
            EpollFlags::EPOLLIN
                | EpollFlags::EPOLLOUT
                | EpollFlags::EPOLLRDHUP
                | EpollFlags::EPOLLET
        } else {
            EpollFlags::EPOLLONESHOT
        };
        if let Err(err) = self.epoll.add(fd, EpollEvent::new(flags, token.0)) {
            self.vacant.push(index);
            return Err(err.into());
        }
        slot.source = Some(Source {
            waker: None,
            ready: 0,
            armed: Some(0),
        });
        Ok(token)
    }

    /// Removes a socket about to be closed; its waker goes with it.
    pub fn deregister(&mut self, token: Token, fd: BorrowedFd<'_>) {
        let _ = self.epoll.delete(fd);
        if self.source(token).is_some() {
            let slot = &mut self.slots[token.index()];
            slot.source = None;
            slot.generation = slot.generation.wrapping_add(1);
            self.vacant.push(token.index());
        }
    }

    fn source(&mut self, token: Token) -> Option<&mut Source> {
        let slot = self.slots.get_mut(token.index())?;
        if u64::from(slot.generation) != token.0 >> 32 {
            return None;
        }
        slot.source.as_mut()
    }

    /// Takes the readiness bits of `want` that arrived for `token`.
    pub fn take_ready(&mut self, token: Token, want: u8) -> u8 {
        let Some(source) = self.source(token) else {
            return want; // gone: let the caller try, and learn it
        };
        let got = source.ready & want;
        source.ready &= !want;
        got
    }

    /// Wake `waker` when `fd` is ready for one of the directions in `want`.
    pub fn arm(&mut self, token: Token, fd: BorrowedFd<'_>, want: u8, waker: &Waker) {
        let edge = self.edge;
        let epoll = self.epoll.clone();
        let Some(source) = self.source(token) else {
            waker.wake_by_ref();
            return;
        };
        if !source.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            source.waker = Some(waker.clone());
        }
        if edge || source.armed == Some(want) {
            return;
        }
        let mut event = EpollEvent::new(interest(want), token.0);
        match epoll.modify(fd, &mut event) {
            Ok(()) => source.armed = Some(want),
            // Cannot wait on it: wake the task, whose next call reports why.
            Err(_) => {
                source.ready |= want;
                waker.wake_by_ref();
            }
        }
    }

    /// A key for a new timer.
    pub fn timer_key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    /// Moves timer `key` from deadline `old` (if it had one) to `deadline`;
    /// it has not fired for the new deadline.
    pub fn set_timer(&mut self, key: u64, old: Option<Instant>, deadline: Instant) {
        if let Some(old) = old {
            self.deadlines.remove(&(old, key));
        }
        self.deadlines.insert((deadline, key));
        self.timers.entry(key).or_default().fired = false;
    }

    /// Wake `waker` when timer `key` fires.
    pub fn listen_timer(&mut self, key: u64, waker: &Waker) {
        let state = self.timers.entry(key).or_default();
        if !state.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            state.waker = Some(waker.clone());
        }
    }

    pub fn timer_fired(&self, key: u64) -> bool {
        self.timers.get(&key).is_some_and(|state| state.fired)
    }

    pub fn cancel_timer(&mut self, key: u64, at: Option<Instant>) {
        if let Some(at) = at {
            self.deadlines.remove(&(at, key));
        }
        self.timers.remove(&key);
    }

    /// How long the next wait may last: until the earliest deadline.
    fn timeout(&self) -> Option<Duration> {
        if let Fault::FixedTick { ms } = fault() {
            // FAULT(FixedTick): a fixed wait, whatever the deadlines.
            return Some(Duration::from_millis(ms));
        }
        let &(deadline, _) = self.deadlines.first()?;
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    /// Sleeps until a socket is ready or the earliest timer is due; returns
    /// the wakers of everything that happened (the caller wakes them once the
    /// reactor is no longer borrowed).
    pub fn turn(&mut self) -> Vec<Waker> {
        let timeout = self.timeout();
        let events = match &self.relay {
            Some(relay) => receive(relay, timeout),
            None => {
                // Whole milliseconds, rounded up: waking before the deadline
                // would find nothing due and wait again for 0 ms.
                let ms = timeout.map_or(EpollTimeout::NONE, |left| {
                    let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128);
                    EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
                });
                let n = match self.epoll.wait(&mut self.events, ms) {
                    Ok(n) => n,
                    Err(Errno::EINTR) => 0,
                    Err(err) => die("epoll_wait", err),
                };
                self.events[..n].to_vec()
            }
        };
        let mut woken = Vec::new();
        let edge = self.edge;
        for event in events {
            let Some(source) = self.source(Token(event.data())) else {
                continue;
            };
            if !edge {
                source.armed = None; // one-shot: disarmed by this event
            }
            source.ready |= bits(event.events());
            woken.extend(source.waker.take());
        }
        let now = Instant::now();
        let due: Vec<(Instant, u64)> = if matches!(fault(), Fault::FixedTick { .. }) {
            // FAULT(FixedTick): every timer is looked at on every wake-up.
            self.deadlines
                .iter()
                .filter(|(deadline, _)| *deadline <= now)
                .copied()
                .collect()
        } else {
            let mut due = Vec::new();
            while let Some(&first) = self.deadlines.first()
                && first.0 <= now
            {
                self.deadlines.pop_first();
                due.push(first);
            }
            due
        };
        for entry in due {
            self.deadlines.remove(&entry);
            if let Some(state) = self.timers.get_mut(&entry.1) {
                state.fired = true;
                woken.extend(state.waker.take());
            }
        }
        woken
    }
}

/// FAULT(ReactorThread): a helper thread sleeps in `epoll_wait` and sends
/// what it gets to the main thread, which sleeps on the channel.
fn spawn_relay(epoll: Arc<Epoll>) -> Receiver<Vec<EpollEvent>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("reactor".into())
        .spawn(move || {
            let mut events = vec![EpollEvent::empty(); MAX_EVENTS];
            loop {
                match epoll.wait(&mut events, EpollTimeout::NONE) {
                    Ok(n) => {
                        if tx.send(events[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                    Err(Errno::EINTR) => {}
                    Err(err) => die("epoll_wait", err),
                }
            }
        })
        .unwrap_or_else(|err| {
            eprintln!("cannot start the reactor thread: {err}");
            std::process::exit(1)
        });
    rx
}

/// FAULT(ReactorThread): the events the helper thread sent, waiting at most
/// `timeout` for the first batch.
fn receive(relay: &Receiver<Vec<EpollEvent>>, timeout: Option<Duration>) -> Vec<EpollEvent> {
    let first = match timeout {
        None => relay.recv().ok(),
        Some(timeout) => match relay.recv_timeout(timeout) {
            Ok(events) => Some(events),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                eprintln!("the reactor thread ended");
                std::process::exit(1)
            }
        },
    };
    let mut events = first.unwrap_or_default();
    while let Ok(more) = relay.try_recv() {
        events.extend(more);
    }
    events
}
