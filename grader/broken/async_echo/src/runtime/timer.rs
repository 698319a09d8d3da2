//! Timers: a deadline in the reactor's ordered set, owned by a value that
//! moves it and, when dropped, cancels it.

use super::reactor;
use std::future::poll_fn;
use std::os::fd::RawFd;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

pub struct Timer {
    key: u64,
    at: Option<Instant>,
    /// Whether dropping the timer removes it from the reactor.
    cancel_on_drop: bool,
}

impl Timer {
    /// A timer with a key of its own, cancelled when dropped.
    pub fn new() -> Timer {
        Timer {
            key: reactor::with(|reactor| reactor.timer_key()),
            at: None,
            cancel_on_drop: true,
        }
    }

    /// FAULT(StaleTimer): a connection's timer keyed by its socket's fd, and
    /// left behind when the connection ends. When it fires, it fires for the
    /// fd: for whichever connection has that fd by then.
    pub fn keyed_by_fd(fd: RawFd) -> Timer {
        Timer {
            key: fd as u64,
            at: None,
            cancel_on_drop: false,
        }
    }

    /// Fires at `deadline` (moved there if it was set for another one).
    pub fn set(&mut self, deadline: Instant) {
        if self.at == Some(deadline) {
            return;
        }
        let (key, old) = (self.key, self.at);
        reactor::with(|reactor| reactor.set_timer(key, old, deadline));
        self.at = Some(deadline);
    }

    /// Wake `waker` when the timer fires.
    pub fn listen(&self, waker: &Waker) {
        reactor::with(|reactor| reactor.listen_timer(self.key, waker));
    }

    /// Whether the deadline it was last set for has come.
    pub fn fired(&self) -> bool {
        reactor::with(|reactor| reactor.timer_fired(self.key))
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if self.cancel_on_drop {
            let (key, at) = (self.key, self.at);
            reactor::with(|reactor| reactor.cancel_timer(key, at));
        }
    }
}

/// Completes `duration` from now.
pub async fn sleep(duration: Duration) {
    let mut timer = Timer::new();
    timer.set(Instant::now() + duration);
    poll_fn(|cx| {
        if timer.fired() {
            return Poll::Ready(());
        }
        timer.listen(cx.waker());
        Poll::Pending
    })
    .await
}
