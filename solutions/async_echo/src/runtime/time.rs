//! Timers: `sleep`, and the idle timeout that wraps a whole connection.

use super::reactor::{self, TimerId};
use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A timer of the reactor that this future owns: cancelled when dropped, so
/// a finished connection leaves nothing behind to fire later.
#[derive(Default)]
struct Armed(Option<(TimerId, Instant)>);

impl Armed {
    /// Makes sure a timer wakes this task no later than `deadline`.
    ///
    /// The reactor cannot be asked whether a timer has fired, and need not
    /// be: it pops every timer whose deadline has passed at its next turn.
    /// So a timer whose deadline is still ahead has not fired and will, no
    /// later than `deadline` (deadlines only move forward): keep it. One
    /// whose deadline has passed has fired, or will at the next turn: cancel
    /// it (a no-op if it fired) and arm a new one.
    fn at(&mut self, deadline: Instant, cx: &mut Context<'_>) {
        if let Some((_, at)) = self.0
            && at > Instant::now()
        {
            return;
        }
        self.cancel();
        let id = reactor::add_timer(deadline, cx.waker());
        self.0 = Some((id, deadline));
    }

    fn cancel(&mut self) {
        if let Some((id, _)) = self.0.take() {
            reactor::cancel_timer(id);
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Completes `duration` from now.
pub async fn sleep(duration: Duration) {
    let deadline = Instant::now() + duration;
    let mut timer = Armed::default();
    poll_fn(|cx| {
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        timer.at(deadline, cx);
        Poll::Pending
    })
    .await
}

/// The idle timeout expired: nothing moved for the whole timeout.
#[derive(Debug)]
pub struct Idle;

/// Runs `future` until it completes, or until `idle` has passed since the
/// instant in `last_activity` (which the future moves forward each time a
/// byte moves), whichever comes first.
///
/// One timer per connection, not one per byte: it is armed at the deadline
/// as it stands; when it fires, the deadline is computed again from the last
/// activity, and either it has passed (idle) or the timer is armed again for
/// the new one.
pub async fn idle_timeout<F: Future>(
    idle: Duration,
    last_activity: &Cell<Instant>,
    future: F,
) -> Result<F::Output, Idle> {
    // Pinned in this function's own state (itself pinned inside the task):
    // `poll` needs a `Pin<&mut F>`, and `F` may borrow from itself.
    let mut future = pin!(future);
    let mut timer = Armed::default();
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let deadline = last_activity.get() + idle;
        if Instant::now() >= deadline {
            return Poll::Ready(Err(Idle));
        }
        timer.at(deadline, cx);
        Poll::Pending
    })
    .await
}
