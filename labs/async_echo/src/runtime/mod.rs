//! Your runtime. Four parts, in the order to write them (the handout's
//! "Build it in this order"):
//!
//! - `executor`: tasks, a run queue of woken task ids, `spawn`, `run`.
//! - `reactor`: one epoll instance, the wakers waiting on each fd, a timer
//!   heap; `turn()` sleeps in epoll_wait until an fd is ready or the earliest
//!   timer is due, and returns the wakers to call.
//! - `time`: `sleep`, then (last) `idle_timeout` for the connections.
//! - `net`: `Async<T>`, whose `read`, `write` and `accept` try the call and,
//!   on WouldBlock, leave the task's waker with the reactor.
//!
//! `tests.rs` checks step 1 (the executor, the timers and `sleep`):
//! `cargo test -p async_echo -- --ignored`.

pub mod executor;
pub mod net;
pub mod reactor;
pub mod time;

#[cfg(test)]
mod tests;
