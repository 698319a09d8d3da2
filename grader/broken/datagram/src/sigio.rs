//! The `sigio_udp` lab: a UDP echo server driven by `SIGIO`, correct or with one mistake.
//!
//! [`run`] is one single-threaded, signal-driven UDP echo server written from scratch to
//! the contract in `CONTRACT.md` ("sigio_udp"). With [`Fault::None`] it is a correct
//! implementation (`correct_sigio_udp`); every other [`Fault`] adds exactly one classic
//! mistake, marked `FAULT(<name>)` in the code, so that each grader check can be shown to
//! fail on a program that is wrong in just that way.
//!
//! How the correct server works, and where it chose what the contract leaves open:
//! - `SIGIO` is blocked for the whole run, except inside `sigsuspend`: the only moment a
//!   signal may be delivered is while the thread sleeps, so "nothing left" and "go to
//!   sleep" are one atomic step and no wake-up is lost.
//! - The handler (installed with `sigaction`, `SA_RESTART`) only sets an atomic flag; the
//!   loop sleeps again if `sigsuspend` returns without it (another handled signal).
//! - It drains once before its first sleep: a datagram that arrived between `bind` and
//!   `O_ASYNC` raised no signal.
//! - A 64 KiB receive buffer (more than the largest datagram, 65,507 bytes); replies sent
//!   with `sendto` straight from it, so a reply is never queued: one the kernel refuses
//!   (`EAGAIN`, an error) is dropped, as UDP allows.

use crate::{MAX_DATAGRAM, bind_or_exit};
use broken_common::{announce, port_or_exit, program_name};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::sigprocmask;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction};
use nix::unistd::{getpid, pause};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::process;
use std::sync::atomic::{AtomicBool, Ordering};

/// The receive buffer: room for the largest datagram.
const RECV_BUF: usize = 64 * 1024;
/// FAULT(SmallBuffer): the receive buffer a server sized for "normal" messages.
const SMALL_BUF: usize = 4096;
/// FAULT(Tick): how long each wait for `SIGIO` lasts before the server looks anyway.
const TICK_NS: libc::c_long = 10_000_000;

/// The one mistake a server makes; [`Fault::None`] is a correct server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Correct per the contract.
    None,
    /// One datagram received per signal, not until `EAGAIN`: a signal that stood for many
    /// datagrams leaves the rest waiting for signals that will not come.
    NoDrain,
    /// No signals at all: a blocking socket and a blocking `recvfrom` loop.
    BlockingRecv,
    /// Never waits: back to `recvfrom` at once after `EAGAIN`, spinning while idle.
    Spin,
    /// Waits for the socket in `poll` instead of waiting for the signal.
    UsesPoll,
    /// Waits for `SIGIO` with a 10 ms timeout and looks anyway when it expires: 100
    /// wake-ups a second while idle.
    Tick,
    /// Every reply goes to the first sender the server heard from.
    FirstSender,
    /// A 4 KiB receive buffer: larger datagrams come back truncated.
    SmallBuffer,
    /// A 0-byte datagram is taken for "nothing received" and not echoed.
    DropsEmpty,
    /// A 0-byte datagram is taken for the end of input, as `read` returning 0 would be:
    /// the server exits.
    EmptyIsEof,
    /// `F_SETFL` with `O_ASYNC` alone, not added to the flags `F_GETFL` gave: the socket
    /// is left blocking, so the drain's last `recvfrom` sleeps instead of saying `EAGAIN`.
    FlagsOverwritten,
    /// `SIGIO` never blocked: the server receives until `EAGAIN`, then sends its replies,
    /// then calls `pause()`; a datagram whose signal arrives between the last `EAGAIN` and
    /// `pause()` (the handler runs then, and the signal is spent) waits unanswered until
    /// the next signal. Replying after the drain rather than during it is allowed; it
    /// only widens the window from a few hundred nanoseconds to the time the replies take,
    /// so that the race shows within a few hundred pairs of datagrams, not tens of
    /// thousands.
    UnmaskedPause,
    /// The socket bound to 0.0.0.0 (every address of the machine) instead of 127.0.0.1.
    BindAny,
    /// Replies sent from a second UDP socket of the server's own: they come from another
    /// port than the one the client sent to.
    OtherSocket,
    /// Unknown flags, a `--port` without a number and extra arguments are ignored, and the
    /// server starts anyway.
    IgnoresBadArgs,
}

/// Set by the handler, cleared by the loop: a `SIGIO` arrived.
static SIGIO_SEEN: AtomicBool = AtomicBool::new(false);

/// The `SIGIO` handler. It runs between any two instructions of the thread it
/// interrupts, so it only does what is async-signal-safe: one lock-free atomic store.
/// The datagrams are received by the loop.
extern "C" fn note_sigio(_: libc::c_int) {
    SIGIO_SEEN.store(true, Ordering::Relaxed);
}

/// Runs the echo server with the given fault, exiting 2 on a usage error and 1 on a fatal
/// error. Never returns.
pub fn run(fault: Fault) -> ! {
    let prog = program_name("broken_sigio_udp");
    let port = if fault == Fault::IgnoresBadArgs {
        lenient_port()
    } else {
        port_or_exit(&prog)
    };
    // FAULT(BindAny): every address of the machine, not just loopback.
    let ip = match fault {
        Fault::BindAny => Ipv4Addr::UNSPECIFIED,
        _ => Ipv4Addr::LOCALHOST,
    };
    let (sock, port) = bind_or_exit(&prog, ip, port);
    // FAULT(OtherSocket): a socket just for sending, on a port of its own.
    let other = (fault == Fault::OtherSocket).then(|| bind_or_exit(&prog, ip, 0).0);
    // FAULT(SmallBuffer): sized for "normal" messages.
    let buf_len = if fault == Fault::SmallBuffer {
        SMALL_BUF
    } else {
        RECV_BUF
    };
    let mut server = Server {
        sock,
        other,
        buf: vec![0; buf_len],
        first_peer: None,
        fault,
    };
    if fault == Fault::BlockingRecv {
        // FAULT(BlockingRecv): no handler, no owner, no O_ASYNC: the thread sleeps in
        // recvfrom until a datagram comes.
        announce(port);
        loop {
            server.serve_one();
        }
    }
    let unblocked = signal_driven_or_exit(&prog, &server.sock, fault);
    announce(port);
    server.serve(&unblocked)
}

/// FAULT(IgnoresBadArgs): takes `--port N` or `--port=N` where it finds one, and ignores
/// everything else.
fn lenient_port() -> u16 {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .filter_map(|arg| arg.into_string().ok())
        .collect();
    let mut port = 0;
    for (at, arg) in args.iter().enumerate() {
        let value = match arg.strip_prefix("--port=") {
            Some(value) => Some(value),
            None if arg == "--port" => args.get(at + 1).map(String::as_str),
            None => None,
        };
        if let Some(value) = value.and_then(|value| value.parse().ok()) {
            port = value;
        }
    }
    port
}

/// Makes `sock` signal-driven, or prints what failed and exits 1: the `SIGIO` handler,
/// `SIGIO` blocked, this process as the socket's owner, then `O_ASYNC | O_NONBLOCK`.
/// Returns the signal mask to sleep with: the old one, without `SIGIO` in it.
fn signal_driven_or_exit(prog: &str, sock: &UdpSocket, fault: Fault) -> SigSet {
    let fail = |what: &str, e: Errno| -> ! {
        eprintln!("{prog}: {what}: {e}");
        process::exit(1);
    };
    // The handler comes first: SIGIO's default action ends the process.
    let action = SigAction::new(
        SigHandler::Handler(note_sigio),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGIO, &action) }
        .unwrap_or_else(|e| fail("cannot install the SIGIO handler", e));
    // Blocked before the socket can raise it: from here on a SIGIO stays pending until
    // sigsuspend opens the mask, so one that comes while the loop checks for work wakes
    // the next sigsuspend at once instead of being lost.
    let mut sigio = SigSet::empty();
    sigio.add(Signal::SIGIO);
    let mut unblocked = SigSet::empty();
    if fault != Fault::UnmaskedPause {
        // FAULT(UnmaskedPause) skips this: SIGIO can interrupt the loop anywhere.
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&sigio), Some(&mut unblocked))
            .unwrap_or_else(|e| fail("cannot block SIGIO", e));
        unblocked.remove(Signal::SIGIO);
    }
    // Whom the kernel signals: without an owner, O_ASYNC signals nobody.
    // (nix has no F_SETOWN.) SAFETY: F_SETOWN takes an int and touches no memory of ours.
    let owned = unsafe { libc::fcntl(sock.as_raw_fd(), libc::F_SETOWN, getpid().as_raw()) };
    Errno::result(owned).unwrap_or_else(|e| fail("cannot set the socket's owner (F_SETOWN)", e));
    let flags = fcntl(sock.as_fd(), FcntlArg::F_GETFL)
        .map(OFlag::from_bits_retain)
        .unwrap_or_else(|e| fail("cannot read the socket's flags (F_GETFL)", e));
    // Added to the flags already there, never set alone: O_NONBLOCK makes the drain end
    // with EAGAIN instead of sleeping in recvfrom.
    let wanted = match fault {
        // FAULT(FlagsOverwritten): "turn on O_ASYNC", O_NONBLOCK forgotten.
        Fault::FlagsOverwritten => OFlag::O_ASYNC,
        _ => flags | OFlag::O_ASYNC | OFlag::O_NONBLOCK,
    };
    fcntl(sock.as_fd(), FcntlArg::F_SETFL(wanted))
        .unwrap_or_else(|e| fail("cannot set O_ASYNC | O_NONBLOCK (F_SETFL)", e));
    unblocked
}

/// The server's state: its socket, its buffer, and what its fault needs.
struct Server {
    sock: UdpSocket,
    /// FAULT(OtherSocket): the socket replies leave from.
    other: Option<UdpSocket>,
    buf: Vec<u8>,
    /// FAULT(FirstSender): where every reply goes.
    first_peer: Option<SocketAddr>,
    fault: Fault,
}

impl Server {
    /// The loop: receive until nothing is left, sleep until a signal, again.
    fn serve(&mut self, unblocked: &SigSet) -> ! {
        loop {
            match self.fault {
                // FAULT(NoDrain): "one signal, one datagram".
                Fault::NoDrain => {
                    self.serve_one();
                }
                Fault::UnmaskedPause => self.receive_all_then_reply(),
                _ => while self.serve_one() {},
            }
            self.wait(unblocked);
        }
    }

    /// Receives one datagram and echoes it. Returns whether to go on receiving: false
    /// once the socket says `EAGAIN` (nothing left).
    fn serve_one(&mut self) -> bool {
        match self.sock.recv_from(&mut self.buf) {
            Ok((len, peer)) => {
                self.echo(len, peer);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            // Interrupted, or an error the socket reports once and then forgets: the
            // datagrams behind it are still there.
            Err(_) => true,
        }
    }

    /// FAULT(UnmaskedPause): receives every datagram waiting, then sends every reply:
    /// the time the replies take is time in which a SIGIO is handled and forgotten
    /// before `pause()`.
    fn receive_all_then_reply(&mut self) {
        let mut batch = Vec::new();
        loop {
            match self.sock.recv_from(&mut self.buf) {
                Ok((len, peer)) => batch.push((self.buf[..len].to_vec(), peer)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {}
            }
        }
        for (data, peer) in batch {
            let _ = self.sock.send_to(&data, peer);
        }
    }

    /// Sends the `len` bytes just received back to `peer`.
    fn echo(&mut self, len: usize, peer: SocketAddr) {
        debug_assert!(len <= MAX_DATAGRAM);
        if len == 0 {
            match self.fault {
                // FAULT(DropsEmpty): "0 bytes: nothing came".
                Fault::DropsEmpty => return,
                // FAULT(EmptyIsEof): "0 bytes: the end".
                Fault::EmptyIsEof => process::exit(0),
                _ => {}
            }
        }
        let to = match self.fault {
            // FAULT(FirstSender): one client in mind.
            Fault::FirstSender => *self.first_peer.get_or_insert(peer),
            _ => peer,
        };
        let from = self.other.as_ref().unwrap_or(&self.sock);
        // A reply the kernel will not take now is dropped: UDP promises no delivery, and
        // a server that queued replies for a slow client would grow without bound.
        let _ = from.send_to(&self.buf[..len], to);
    }

    /// Sleeps until there may be work.
    fn wait(&self, unblocked: &SigSet) {
        match self.fault {
            // FAULT(Spin): "EAGAIN? try again".
            Fault::Spin => {}
            // FAULT(UsesPoll): the readiness API this lab replaces.
            Fault::UsesPoll => {
                let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::NONE);
            }
            // FAULT(Tick): "in case a signal was missed".
            Fault::Tick => tick(),
            // FAULT(UnmaskedPause): between the drain's EAGAIN and this call, a SIGIO
            // runs the handler and is gone; pause() then sleeps past its datagram.
            Fault::UnmaskedPause => pause(),
            _ => {
                // SIGIO is delivered only in here, with the mask sigsuspend installs for
                // the duration of the call; a signal that came while we were draining
                // is pending and ends the call at once.
                while !SIGIO_SEEN.swap(false, Ordering::Relaxed) {
                    let _ = unblocked.suspend();
                }
            }
        }
    }
}

/// FAULT(Tick): waits for a pending `SIGIO` (taking it without running the handler) for
/// at most 10 ms.
fn tick() {
    let mut sigio = SigSet::empty();
    sigio.add(Signal::SIGIO);
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: TICK_NS,
    };
    let set: &libc::sigset_t = sigio.as_ref();
    // SAFETY: valid set and timeout; no siginfo wanted.
    unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
}
