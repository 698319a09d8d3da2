//! tcp_udp: one server, one thread, one loop: the line echo protocol over
//! TCP and datagram echo over UDP, both on 127.0.0.1 and the same port.
//!
//! This is the classic single-loop server: the loop's sources are the TCP
//! listener, every TCP client and the UDP socket, and all it does is wait
//! until some of them are ready and give each ready one a bounded share of
//! work. Two threads (one per protocol) would hide the question this lab
//! asks, which is fairness: nothing a TCP client does, or fails to do, may
//! delay a datagram's echo (`server.rs` says how).
//!
//! The files: `main.rs` (start-up), `server.rs` (the loop and its rounds),
//! `tcp.rs` (one TCP client, on `echo_core`'s connection shared with the
//! other echo labs), `udp.rs` (echoing datagrams).

mod server;
mod tcp;
mod udp;

use labkit::EchoArgs;

fn main() {
    let args = EchoArgs::parse();
    labkit::raise_fd_limit();
    // Same port, two sockets: TCP and UDP ports are separate spaces, so the
    // listener is bound first and the UDP socket takes the number it got.
    let (listener, udp) = labkit::bind_tcp_udp_loopback(args.port);
    labkit::announce(&listener);
    server::Server::new(listener, udp).run()
}
