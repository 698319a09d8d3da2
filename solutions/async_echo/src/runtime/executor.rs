//! The executor: the tasks, and the queue of those that were woken.
//!
//! A task is a boxed future that yields nothing (`Future<Output = ()>`),
//! pinned: an `async fn`'s state machine may hold references into itself (a
//! buffer borrowed across an `.await`), so it must never move once polled.
//! `Box::pin` gives it an address of its own for its whole life.
//!
//! The executor polls a task only after its waker was called. That is the
//! whole point: with 10,000 connections of which one is active, one
//! wake-up polls one task. Polling every task "just in case" would be
//! correct (a future must tolerate being polled for nothing) and would cost
//! O(number of tasks) per event: the poll loop's problem, brought back.

use super::reactor;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// A task's waker: pushing its id on the run queue is all waking does.
///
/// `Waker` is `Send + Sync` by contract: any code holding one may call it
/// from any thread (a library could hand it to a thread of its own). So the
/// queue it pushes to is behind a `Mutex`, even though in this program
/// nothing but the main thread ever wakes anyone; the lock is never contended.
struct TaskWaker {
    id: u64,
    queue: Arc<Mutex<Vec<u64>>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.lock().unwrap().push(self.id);
    }
}

#[derive(Default)]
struct Executor {
    /// Task ids are never reused: a waker that outlives its task (kept by a
    /// timer, say) names an id that is simply no longer there.
    tasks: RefCell<HashMap<u64, (Task, Waker)>>,
    next_id: Cell<u64>,
    queue: Arc<Mutex<Vec<u64>>>,
}

thread_local! {
    static EXECUTOR: Executor = Executor::default();
}

/// Starts `future` as a task of its own; it runs once the current task
/// yields.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    EXECUTOR.with(|executor| {
        let id = executor.next_id.get();
        executor.next_id.set(id + 1);
        let waker = Waker::from(Arc::new(TaskWaker {
            id,
            queue: executor.queue.clone(),
        }));
        executor
            .tasks
            .borrow_mut()
            .insert(id, (Box::pin(future), waker));
        // A new task has never been polled: it is woken once to start.
        executor.queue.lock().unwrap().push(id);
    });
}

/// Runs `main` and every task it spawns, for ever.
pub fn run(main: impl Future<Output = ()> + 'static) -> ! {
    spawn(main);
    EXECUTOR.with(|executor| {
        loop {
            let mut woken = std::mem::take(&mut *executor.queue.lock().unwrap());
            // A task woken twice (its socket and its timer) is polled once.
            woken.sort_unstable();
            woken.dedup();
            if woken.is_empty() {
                // Nothing to run: park in the reactor until an fd or a timer
                // wakes someone. The wakers are called here, after the
                // reactor is released, since waking may run code that uses it.
                reactor::turn().into_iter().for_each(Waker::wake);
                continue;
            }
            for id in woken {
                executor.poll(id);
            }
        }
    })
}

impl Executor {
    /// Polls one task, if it still exists (one woken after it finished is not).
    fn poll(&self, id: u64) {
        // Taken out of the map while it runs, so that it can spawn tasks
        // (which inserts into the map) without a double borrow.
        let Some((mut task, waker)) = self.tasks.borrow_mut().remove(&id) else {
            return;
        };
        match task.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(()) => {} // dropped: its socket closes, its timers are cancelled
            Poll::Pending => {
                self.tasks.borrow_mut().insert(id, (task, waker));
            }
        }
    }
}
