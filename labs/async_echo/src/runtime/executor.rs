//! The executor. Suggested shape (see "The executor" in the handout): tasks
//! as `Pin<Box<dyn Future<Output = ()>>>` in a map by id, a run queue of
//! woken ids shared with the wakers (a `Waker` built from an
//! `Arc<impl std::task::Wake>` that pushes its task's id), `spawn`, and `run`,
//! which polls only the woken tasks and, when none is left, parks in
//! `reactor::turn()` and calls the wakers it returns. Step 1 of the build
//! order.

use std::future::Future;

/// Starts `future` as a task of its own; it runs once the current task
/// yields.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    todo!("executor::spawn (step 1)")
}

/// Runs `main` and every task it spawns, for ever.
pub fn run(main: impl Future<Output = ()> + 'static) -> ! {
    todo!("executor::run (step 1): see src/runtime/executor.rs")
}
