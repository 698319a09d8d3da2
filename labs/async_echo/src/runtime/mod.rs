//! Your runtime. Four parts, in the order to write them:
//!
//! - `reactor`: one epoll instance, the wakers waiting on each fd, a timer
//!   heap; `turn()` sleeps in epoll_wait until an fd is ready or the earliest
//!   timer is due, and returns the wakers to call.
//! - `executor`: tasks, a run queue of woken task ids, `spawn`, `run`.
//! - `net`: `Async<T>`, whose `read`, `write` and `accept` try the call and,
//!   on WouldBlock, leave the task's waker with the reactor.
//! - `time`: `sleep`, and `idle_timeout` for the connections.

pub mod executor;
pub mod net;
pub mod reactor;
pub mod time;
