//! Timers on the reactor: `sleep` (step 1), and `idle_timeout` (step 4),
//! which runs a future until it completes or until `idle` has passed since
//! `last_activity` (which the connection moves forward each time a byte
//! moves).
//!
//! Both keep their reactor timer in an `Armed`, which cancels it when the
//! future is dropped, so that a finished connection leaves no timer behind.

use super::reactor::{self, TimerId};
use std::cell::Cell;
use std::future::Future;
use std::task::Context;
use std::time::{Duration, Instant};

/// A reactor timer owned by a future: the id and the deadline it was armed
/// for, if any.
#[derive(Default)]
struct Armed(Option<(TimerId, Instant)>);

impl Armed {
    /// Makes sure a timer wakes this task no later than `deadline`.
    ///
    /// The rule: keep the armed timer while its deadline is still ahead (it
    /// has not fired, and fires no later than `deadline`, since deadlines
    /// only move forward). Once its deadline has passed, it has fired or
    /// will at the reactor's next turn: cancel it (a no-op if it fired) and
    /// arm a new one for `deadline` with `cx.waker()`.
    fn at(&mut self, deadline: Instant, cx: &mut Context<'_>) {
        todo!("Armed::at (step 1)")
    }
}

impl Drop for Armed {
    /// Cancels the timer, if one is armed.
    fn drop(&mut self) {
        todo!("Armed::drop (step 1)")
    }
}

/// Completes `duration` from now: a `std::future::poll_fn` that is `Ready`
/// once the deadline has passed, and otherwise arms its timer and returns
/// `Pending`.
pub async fn sleep(duration: Duration) {
    todo!("time::sleep (step 1)")
}

/// The idle timeout expired: nothing moved for the whole timeout.
#[derive(Debug)]
pub struct Idle;

/// Runs `future` until it completes, or until `idle` has passed since the
/// instant in `last_activity`, whichever comes first.
///
/// On each poll (a `poll_fn` again): poll `future`, pinned with
/// `std::pin::pin!`; `Ready` is `Ok`. Otherwise the deadline is
/// `last_activity + idle`: passed, `Err(Idle)`; not yet, make sure the timer
/// wakes this task by then (`Armed::at`), and `Pending`.
pub async fn idle_timeout<F: Future>(
    idle: Duration,
    last_activity: &Cell<Instant>,
    future: F,
) -> Result<F::Output, Idle> {
    todo!("time::idle_timeout (step 4)")
}
