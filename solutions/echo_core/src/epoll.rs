//! The parts of an epoll event loop that do not depend on the trigger mode.

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::net::TcpListener;

/// The `data` of the listener's registration; clients use their slab token.
pub const LISTENER: u64 = u64::MAX;
/// How many ready sockets one `epoll_wait` may return.
pub const MAX_EVENTS: usize = 1024;

/// Creates the epoll instance with the listener registered for `events`.
pub fn with_listener(listener: &TcpListener, events: EpollFlags) -> Epoll {
    use labkit::OrFail;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).or_fail("epoll_create1");
    epoll
        .add(listener, EpollEvent::new(events, LISTENER))
        .or_fail("epoll_ctl(ADD, listener)");
    epoll
}

/// Sleeps until at least one registered socket is ready; returns how many
/// entries of `events` were filled.
///
/// No timeout: with nothing to do, the server sleeps and uses no CPU.
pub fn wait(epoll: &Epoll, events: &mut [EpollEvent]) -> usize {
    loop {
        match epoll.wait(events, EpollTimeout::NONE) {
            Ok(n) => return n,
            // A signal interrupted the wait: nothing happened, wait again.
            Err(Errno::EINTR) => continue,
            Err(err) => labkit::fail(format_args!("epoll_wait: {err}")),
        }
    }
}
