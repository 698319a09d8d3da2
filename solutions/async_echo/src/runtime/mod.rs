//! The runtime: what tokio would be, small enough to read in one sitting.
//!
//! - [`reactor`]: epoll and a timer heap. It turns "fd 12 is readable" and
//!   "it is 10:00:03.250" into wake-ups of the tasks waiting for them.
//! - [`executor`]: the tasks, and a queue of the ones that were woken. It
//!   polls only those; when none is left it parks in the reactor.
//! - [`net`]: `Async<T>`, a socket whose reads and writes try the system call
//!   and, when it would block, ask the reactor for a wake-up and return
//!   `Pending`.
//! - [`time`]: `sleep`, and the idle timeout that wraps a connection.
//!
//! Everything runs on one thread. The reactor and the executor live in
//! thread-locals, the way tokio's "current runtime" does, so that an
//! `async fn` anywhere can spawn a task or wait for a socket without being
//! handed a runtime.

pub mod executor;
pub mod net;
pub mod reactor;
pub mod time;

/// The stub's own tests of step 1 (the executor, the timers, `sleep`): the
/// same file, so that this runtime is checked against the API students fill
/// in. `cargo test -p async_echo_solution -- --ignored`.
#[cfg(test)]
#[path = "../../../../labs/async_echo/src/runtime/tests.rs"]
mod tests;
