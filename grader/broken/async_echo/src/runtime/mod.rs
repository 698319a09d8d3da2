//! The runtime of these servers, written apart from the reference solution's:
//!
//! - [`executor`]: tasks in a slab, a FIFO run queue, a `RawWakerVTable`
//!   waker that is just the task's id;
//! - [`reactor`]: level-triggered, one-shot epoll re-armed with
//!   `EPOLL_CTL_MOD`, and timers in a `BTreeSet` by deadline;
//! - [`io`]: sockets whose calls are single attempts, and futures that wait
//!   for readiness (or a deadline);
//! - [`timer`]: a timer owned by a value, and `sleep`.
//!
//! One thread: the executor and the reactor are thread-locals.

pub mod executor;
pub mod io;
pub mod reactor;
pub mod timer;
