//! Timers on the reactor: `sleep`, and `idle_timeout`, which runs a future
//! until it completes or until `idle` has passed since `last_activity`
//! (which the connection moves forward each time a byte moves). Keep one
//! timer per connection armed at the deadline as it stands; when it fires,
//! look again. Cancel it when the future is dropped, so that a finished
//! connection leaves no timer behind.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

/// The idle timeout expired.
#[derive(Debug)]
pub struct Idle;

/// Completes `duration` from now.
pub async fn sleep(duration: Duration) {
    todo!("time::sleep")
}

pub async fn idle_timeout<F: Future>(
    idle: Duration,
    last_activity: &Cell<Instant>,
    future: F,
) -> Result<F::Output, Idle> {
    todo!("time::idle_timeout")
}
