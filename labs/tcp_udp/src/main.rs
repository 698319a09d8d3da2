//! tcp_udp: one server, one thread, one loop: the line echo protocol over
//! TCP and datagram echo over UDP, both on 127.0.0.1 and the same port.
//!
//! Read the handout first: docs/labs/tcp_udp.md. Grade your work with
//! `make grade LAB=tcp_udp`.
//!
//! The loop's sources are the TCP listener, every TCP client and the UDP
//! socket; it waits until some of them are ready and gives each ready one a
//! bounded share of work. The point is fairness: nothing a TCP client does,
//! or fails to do, may delay a datagram's echo.
//!
//! Given: the command line, the fd limit, binding both sockets to the same
//! port and the `listening on` line (below), the line framing and a slab
//! (`given.rs`), and the skeleton of `server.rs`, `udp.rs` and `tcp.rs`.
//! Yours: the TODOs, numbered in the order to write them.
//!
//! 1, 2. `server.rs`: the epoll instance and its registrations, the loop.
//! 3. `udp.rs`: echoing datagrams, a bounded number per round.
//! 4, 5. `server.rs`: one round of work, accepting clients.
//! 6 to 9. `tcp.rs`: one TCP client: its state, one round's share of work,
//!    the end of a connection, what it waits for.
//! 10. `server.rs`: dropping finished clients, changing registrations.

// Remove once you have written the TODOs: the skeleton's parameters and
// fields are unused until then.
#![allow(unused_variables, unused_mut, dead_code, unused_imports)]

mod given;
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
