//! sigio_udp: a UDP echo server driven by SIGIO (signal-driven I/O).
//!
//! Receiving a datagram has two phases: waiting until one is there, then
//! copying it from the kernel into our buffer. Blocking I/O sleeps in
//! `recvfrom` through both; select, poll and epoll sleep in the readiness
//! call through the first. Here the kernel *tells* us the first phase is
//! over, with a signal: SIGIO. The copy (`recvfrom`) is still ours to make.
//!
//! Two properties of signals shape the whole program:
//! - they do not queue: ten datagrams may arrive as one SIGIO, so every
//!   SIGIO is followed by receiving until EAGAIN (the drain, `echo.rs`);
//! - a SIGIO that arrives between "nothing left to receive" and going to
//!   sleep must not be lost: SIGIO stays blocked while we work, and
//!   `sigsuspend` unblocks it and sleeps in one step (`signals.rs`).
//!
//! The files: `main.rs` (start-up and the loop), `signals.rs` (the handler,
//! who the socket signals, the mask, the wait), `echo.rs` (the drain).

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
