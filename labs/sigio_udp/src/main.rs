//! sigio_udp: a UDP echo server driven by SIGIO (signal-driven I/O).
//!
//! Read the handout first: docs/labs/sigio_udp.md. Grade your work with
//! `make grade LAB=sigio_udp`.
//!
//! Receiving a datagram has two phases: waiting until one is there, then
//! copying it from the kernel into our buffer. Blocking I/O sleeps in
//! `recvfrom` through both; select, poll and epoll sleep in the readiness
//! call through the first. Here the kernel *tells* us the first phase is
//! over, with a signal: SIGIO. The copy (`recvfrom`) is still ours to make.
//!
//! Given: the command line, the UDP socket, the `listening on` line, and
//! the loop in `serve` below. Yours: the TODOs, numbered in the order the
//! server runs them (and the order to write them):
//!
//! 1. `on_sigio` and `catch_sigio` in `signals.rs`: the handler.
//! 2. `make_signal_driven` in `signals.rs`: F_SETOWN, O_ASYNC, O_NONBLOCK.
//! 3. `block_sigio` in `signals.rs`: the signal mask.
//! 4. `drain` in `echo.rs`: receive until EAGAIN.
//! 5. `reply` in `echo.rs`: send a datagram back.
//! 6. `wait_for_sigio` in `signals.rs`: sleep in sigsuspend.

// Remove once you have written the TODOs: the skeleton's parameters are
// unused until then.
#![allow(unused_variables, dead_code, unused_imports)]

mod echo;
mod signals;

use labkit::EchoArgs;
use std::net::UdpSocket;

fn main() {
    let args = EchoArgs::parse();
    let socket = labkit::bind_udp_loopback(args.port);
    labkit::announce_udp(&socket);
    serve(&socket)
}

/// Echoes datagrams for ever.
fn serve(socket: &UdpSocket) -> ! {
    // The handler comes first: SIGIO's default action ends the process, and
    // once the socket is signal-driven the next datagram raises one.
    signals::catch_sigio();
    signals::make_signal_driven(socket);
    // From here on, SIGIO is delivered only inside `wait_for_sigio`.
    let wait_mask = signals::block_sigio();
    let mut buf = vec![0; echo::BUFFER];
    loop {
        // Drain before the first wait too: a datagram that arrived before
        // O_ASYNC was set (a client may send as soon as it reads the
        // listening line) raised no signal, and none will come for it.
        echo::drain(socket, &mut buf);
        signals::wait_for_sigio(&wait_mask);
    }
}
