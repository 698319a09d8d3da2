//! Timers: `sleep`, and the idle timeout that wraps a whole connection.

use super::reactor::{self, TimerId};
use std::cell::Cell;
use std::future::Future;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A timer of the reactor that this future owns: cancelled when dropped, so
/// a finished connection leaves nothing behind to fire later.
#[derive(Default)]
struct Armed(Option<(TimerId, Instant)>);

impl Armed {
    /// Makes sure a timer wakes this task no later than `deadline`.
    fn at(&mut self, deadline: Instant, cx: &mut Context<'_>) {
        if let Some((_, at)) = self.0
            && at > Instant::now()
        {
            // Still to fire, and no later than the deadline (deadlines only
            // move forward): when it fires, the owner looks again.
            return;
        }
        self.cancel();
        let id = reactor::with(|reactor| reactor.add_timer(deadline, cx.waker()));
        self.0 = Some((id, deadline));
    }

    fn cancel(&mut self) {
        if let Some((id, _)) = self.0.take() {
            reactor::with(|reactor| reactor.cancel_timer(id));
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
    std::future::poll_fn(|cx| {
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
pub fn idle_timeout<'a, F: Future + 'a>(
    idle: Duration,
    last_activity: &'a Cell<Instant>,
    future: F,
) -> impl Future<Output = Result<F::Output, Idle>> + 'a {
    // Pinned on the heap: `poll_fn` needs to poll it through `&mut`.
    let mut future = Box::pin(future);
    let mut timer = Armed::default();
    std::future::poll_fn(move |cx| {
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
}
