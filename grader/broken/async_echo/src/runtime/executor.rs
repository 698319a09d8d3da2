//! The executor: a slab of tasks, a FIFO run queue of the woken ones, and a
//! waker built by hand from a `RawWakerVTable`.
//!
//! A task is named by its slot in the slab and the slot's generation, packed
//! into one `u64`; that number is the whole waker (its data pointer carries it,
//! no allocation, cloning copies it). Waking looks the slot up: a waker that
//! outlived its task finds a newer generation there and does nothing.
//!
//! The slab is borrowed only for a moment at a time (to take a task out, to
//! put it back), never while a task runs: a running task may spawn, and may
//! wake itself or others.

use super::reactor;
use crate::{Fault, fault};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

type Task = Pin<Box<dyn Future<Output = ()>>>;

// The task id (32 bits of slot, 32 of generation) travels in a pointer.
const _: () = assert!(usize::BITS >= 64);

enum State {
    Vacant,
    /// Taken out of the slab while it is being polled.
    Running,
    Parked(Task),
}

struct Slot {
    generation: u32,
    /// Already in the run queue: a second wake-up before the poll adds nothing.
    queued: bool,
    state: State,
}

#[derive(Default)]
struct Executor {
    slots: RefCell<Vec<Slot>>,
    vacant: RefCell<Vec<u32>>,
    queue: RefCell<VecDeque<u64>>,
}

thread_local! {
    static EXECUTOR: Executor = Executor::default();
}

fn task_id(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn split(id: u64) -> (usize, u32) {
    ((id & 0xffff_ffff) as usize, (id >> 32) as u32)
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_waker, wake, wake, drop_waker);

/// The data pointer is the task id, not an address: cloning copies it,
/// dropping frees nothing.
unsafe fn clone_waker(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

/// Both `wake` and `wake_by_ref`. The run queue is this thread's: in this
/// program only the executor's own thread ever wakes a task (a wake from any
/// other thread would reach that thread's empty executor and be lost, never
/// touch this one's data).
unsafe fn wake(data: *const ()) {
    schedule(data.addr() as u64);
}

unsafe fn drop_waker(_: *const ()) {}

fn waker_for(id: u64) -> Waker {
    let raw = RawWaker::new(std::ptr::without_provenance(id as usize), &VTABLE);
    // SAFETY: the vtable's functions only read the id out of the pointer,
    // never dereference it, and touch nothing but this thread's executor.
    unsafe { Waker::from_raw(raw) }
}

/// Puts task `id` on the run queue, unless it is already there or gone.
fn schedule(id: u64) {
    let _ = EXECUTOR.try_with(|executor| {
        let (index, generation) = split(id);
        let mut slots = executor.slots.borrow_mut();
        let Some(slot) = slots.get_mut(index) else {
            return;
        };
        if slot.generation != generation || slot.queued || matches!(slot.state, State::Vacant) {
            return;
        }
        slot.queued = true;
        executor.queue.borrow_mut().push_back(id);
    });
}

/// Starts `future` as a task of its own; it first runs after the current task
/// yields.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    EXECUTOR.with(|executor| {
        let mut slots = executor.slots.borrow_mut();
        let index = match executor.vacant.borrow_mut().pop() {
            Some(index) => index,
            None => {
                slots.push(Slot {
                    generation: 0,
                    queued: false,
                    state: State::Vacant,
                });
                (slots.len() - 1) as u32
            }
        };
        let slot = &mut slots[index as usize];
        slot.state = State::Parked(Box::pin(future));
        slot.queued = true;
        executor
            .queue
            .borrow_mut()
            .push_back(task_id(index, slot.generation));
    });
}

/// Runs `main` and every task spawned from it, for ever: polls the woken
/// tasks in the order they were woken, and when none is left parks in the
/// reactor until readiness or a timer wakes some.
pub fn run(main: impl Future<Output = ()> + 'static) -> ! {
    spawn(main);
    EXECUTOR.with(|executor| {
        loop {
            if fault() == Fault::ScansAll {
                // FAULT(ScansAll): the woken tasks are found by looking at
                // every task: a wake-up costs a walk over all connections.
                while executor.poll_flagged() {}
            }
            while let Some(id) = executor.next_woken() {
                executor.poll(id);
            }
            let woken = reactor::with(|reactor| reactor.turn());
            woken.into_iter().for_each(Waker::wake);
            if fault() == Fault::PollsAll {
                // FAULT(PollsAll): every task is polled on every wake-up, as if
                // each had been woken: the cost of one round trip grows with
                // the number of connections, idle ones included.
                executor.queue_every_task();
            }
        }
    })
}

impl Executor {
    fn next_woken(&self) -> Option<u64> {
        self.queue.borrow_mut().pop_front()
    }

    /// Polls task `id` if it still exists.
    fn poll(&self, id: u64) {
        let (index, generation) = split(id);
        let mut task = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(index) else {
                return;
            };
            if slot.generation != generation {
                return;
            }
            slot.queued = false;
            match std::mem::replace(&mut slot.state, State::Running) {
                State::Parked(task) => task,
                other => {
                    slot.state = other;
                    return;
                }
            }
        };
        let waker = waker_for(id);
        let finished = task
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready();
        if finished {
            // Dropped outside the borrow: its socket and timers go with it.
            drop(task);
            let mut slots = self.slots.borrow_mut();
            let slot = &mut slots[index];
            slot.state = State::Vacant;
            slot.queued = false;
            slot.generation = slot.generation.wrapping_add(1);
            self.vacant.borrow_mut().push(index as u32);
        } else {
            self.slots.borrow_mut()[index].state = State::Parked(task);
        }
    }

    /// FAULT(ScansAll): the run queue is ignored; every slot's `queued` flag
    /// is looked at, in slot order, and the flagged tasks are polled. A scan
    /// that polled something is followed by another (a task may have woken
    /// one already passed), so a wake-up costs two walks over every task
    /// there is or was (the slab never shrinks). Whether it polled any.
    fn poll_flagged(&self) -> bool {
        self.queue.borrow_mut().clear();
        let count = self.slots.borrow().len();
        let mut polled = false;
        for index in 0..count {
            let flagged = {
                let slots = self.slots.borrow();
                let slot = &slots[index];
                (slot.queued && matches!(slot.state, State::Parked(_)))
                    .then(|| task_id(index as u32, slot.generation))
            };
            if let Some(id) = flagged {
                self.poll(id);
                polled = true;
            }
        }
        polled
    }

    /// FAULT(PollsAll) only.
    fn queue_every_task(&self) {
        let ids: Vec<u64> = self
            .slots
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, slot)| matches!(slot.state, State::Parked(_)))
            .map(|(index, slot)| task_id(index as u32, slot.generation))
            .collect();
        ids.into_iter().for_each(schedule);
    }
}

/// Gives the other woken tasks a turn: completes on its second poll.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}
