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
    // TODO 1: record that SIGIO came: store `true` in SIGIO_ARRIVED. Nothing
    //    else, not even a todo!() (a panic is not async-signal-safe either).
}

/// Installs `on_sigio` as the handler of SIGIO.
pub fn catch_sigio() {
    // TODO 1: install `on_sigio` for Signal::SIGIO with `sigaction` (a
    //    `SigAction::new(SigHandler::Handler(on_sigio), ..)`, no flags, an
    //    empty mask). It is `unsafe`: say in a SAFETY comment why your
    //    handler is fine. A failure ends the program: `.or_fail("...")`.
    todo!("TODO 1: install the SIGIO handler in catch_sigio, src/signals.rs")
}

/// Asks the kernel to send this process SIGIO whenever a datagram arrives
/// on `socket`, and makes receiving from it never block.
pub fn make_signal_driven(socket: &UdpSocket) {
    // TODO 2: first the owner, the process that gets the signal: F_SETOWN
    //    with our pid (`getpid()`). nix has no F_SETOWN, so call
    //    `libc::fcntl(socket.as_raw_fd(), libc::F_SETOWN, ...)` and check
    //    its result with `Errno::result`.
    //    Then ADD O_ASYNC and O_NONBLOCK to the socket's flags: read them
    //    with `fcntl(socket, FcntlArg::F_GETFL)`, set them back with
    //    `FcntlArg::F_SETFL` (`OFlag::from_bits_retain` turns the number
    //    into flags). Never F_SETFL without F_GETFL: it would clear the rest.
    todo!("TODO 2: F_SETOWN, O_ASYNC and O_NONBLOCK in make_signal_driven, src/signals.rs")
}

/// Blocks SIGIO, and returns the mask to wait with: the thread's mask as it
/// was, with SIGIO unblocked.
///
/// A blocked signal is not lost: it stays *pending* until it is unblocked,
/// and is delivered then. So SIGIO stays blocked while the server receives
/// and replies, and only `wait_for_sigio` lets it in.
pub fn block_sigio() -> SigSet {
    // TODO 3: a `SigSet` holding SIGIO; `thread_swap_mask(SigmaskHow::SIG_BLOCK)`
    //    blocks it and returns the old mask. Return the old mask with SIGIO
    //    removed: the mask is inherited through exec, and a program
    //    started with SIGIO blocked would otherwise never wake.
    todo!("TODO 3: block SIGIO in block_sigio, src/signals.rs")
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
    // TODO 6: `mask.suspend()` (sigsuspend) until SIGIO_ARRIVED says the
    //    handler ran: sigsuspend returns after any handler, not only ours.
    //    Take the flag as you test it (`swap(false, ..)`), so that the next
    //    wait needs a new SIGIO.
    todo!("TODO 6: sleep in sigsuspend in wait_for_sigio, src/signals.rs")
}
