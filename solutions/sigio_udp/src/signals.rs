//! SIGIO: the handler and its flag, which process the socket signals, the
//! signal mask, and the wait.

use labkit::OrFail;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction};
use nix::unistd::getpid;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// "A SIGIO came": set by the handler, taken by `wait_for_sigio`.
static SIGIO_ARRIVED: AtomicBool = AtomicBool::new(false);

/// The SIGIO handler: it only records that the signal came.
///
/// A handler interrupts the thread wherever it is, possibly in the middle of
/// `malloc`, of a `println!` holding stdout's lock, of a `Vec` being grown.
/// Allocating, printing or locking here could deadlock on the lock the
/// interrupted code holds, or see its data half-updated. Only
/// async-signal-safe operations are allowed: a store to a lock-free atomic
/// is one. The work (receiving, replying) happens in the normal flow, after
/// the wait returns.
extern "C" fn on_sigio(_signal: libc::c_int) {
    SIGIO_ARRIVED.store(true, Ordering::SeqCst);
}

/// Installs `on_sigio` as the handler of SIGIO.
pub fn catch_sigio() {
    // sigaction, not signal(): its meaning is the same everywhere (with
    // signal() some systems reset the handler after one delivery). No
    // SA_RESTART: SIGIO is delivered only inside sigsuspend, which returns
    // after a handler whatever the flags.
    let action = SigAction::new(
        SigHandler::Handler(on_sigio),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing but store to an atomic.
    unsafe { sigaction(Signal::SIGIO, &action) }.or_fail("sigaction(SIGIO)");
}

/// Asks the kernel to send this process SIGIO whenever a datagram arrives
/// on `socket`, and makes receiving from it never block.
pub fn make_signal_driven(socket: &UdpSocket) {
    // The owner first: O_ASYNC without one signals nobody. Our pid: the
    // process has one thread, which gets it. (nix has no F_SETOWN: libc.)
    // SAFETY: F_SETOWN takes an integer and touches none of our memory.
    let owned = unsafe { libc::fcntl(socket.as_raw_fd(), libc::F_SETOWN, getpid().as_raw()) };
    Errno::result(owned).or_fail("fcntl(F_SETOWN)");
    // Add our flags to those already set (F_GETFL, then F_SETFL): F_SETFL
    // with O_ASYNC alone would clear every other flag, O_NONBLOCK with them.
    // O_NONBLOCK: the drain receives until EAGAIN; on a blocking socket its
    // last recvfrom would sleep instead, until some later datagram.
    let flags = fcntl(socket, FcntlArg::F_GETFL).or_fail("fcntl(F_GETFL)");
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_ASYNC | OFlag::O_NONBLOCK;
    fcntl(socket, FcntlArg::F_SETFL(flags)).or_fail("fcntl(F_SETFL)");
}

/// Blocks SIGIO, and returns the mask to wait with: the thread's mask as it
/// was, with SIGIO unblocked.
///
/// A blocked signal is not lost: it stays *pending* until it is unblocked,
/// and is delivered then. So SIGIO stays blocked while the server receives
/// and replies, and only `wait_for_sigio` lets it in.
pub fn block_sigio() -> SigSet {
    let mut sigio = SigSet::empty();
    sigio.add(Signal::SIGIO);
    // One thread: the thread's mask is the process's (sigprocmask).
    let mut old = sigio
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .or_fail("pthread_sigmask(SIG_BLOCK, SIGIO)");
    // The mask is inherited through fork and exec: started with SIGIO
    // blocked, the old mask would keep it blocked in sigsuspend for ever.
    old.remove(Signal::SIGIO);
    old
}

/// Sleeps until a SIGIO has been handled. `mask` is `block_sigio`'s.
///
/// The race this closes, were SIGIO unblocked while the server works:
///
/// ```text
///   server                                 kernel
///   recvfrom -> EAGAIN: nothing left
///                                          a datagram arrives: SIGIO,
///                                          the handler runs now
///   pause(): sleeps until the *next* signal, the datagram unanswered
/// ```
///
/// With SIGIO blocked, that SIGIO stays pending instead, and sigsuspend
/// installs `mask` (SIGIO unblocked) and sleeps in one system call: no
/// instant exists between the two where the signal could slip by. A pending
/// SIGIO is delivered at once and sigsuspend returns at once; on return the
/// old mask (SIGIO blocked) is back.
pub fn wait_for_sigio(mask: &SigSet) {
    // sigsuspend returns after any handler: sleep again unless it was ours.
    // `swap` takes the flag, so the next wait needs a new SIGIO.
    while !SIGIO_ARRIVED.swap(false, Ordering::SeqCst) {
        mask.suspend().or_fail("sigsuspend");
    }
}
