//! Deliberately broken UDP echo servers, and independent correct ones.
//!
//! What the datagram servers share and never break lives here: the one UDP socket they
//! bind and the size of the largest datagram. Each lab's server is a module of its own:
//! [`sigio`] for the `sigio_udp` lab (signal-driven I/O), [`tcp_udp`] for the `tcp_udp`
//! lab (one `poll` loop over a TCP listener, its clients and a UDP socket).

pub mod sigio;
pub mod tcp_udp;

use std::net::{Ipv4Addr, UdpSocket};
use std::process;

/// The largest UDP payload over IPv4: 65,535 minus the IP (20) and UDP (8) headers.
pub const MAX_DATAGRAM: usize = 65_507;

/// Binds a UDP socket on `ip:port`, or prints why not and exits 1. Returns the socket
/// and its port (the one the system picked when `port` is 0).
pub fn bind_or_exit(prog: &str, ip: Ipv4Addr, port: u16) -> (UdpSocket, u16) {
    let fail = |what: String| -> ! {
        eprintln!("{prog}: {what}");
        process::exit(1);
    };
    let sock = UdpSocket::bind((ip, port))
        .unwrap_or_else(|e| fail(format!("cannot bind UDP {ip}:{port}: {e}")));
    let port = sock
        .local_addr()
        .unwrap_or_else(|e| fail(format!("cannot read the UDP socket's address: {e}")))
        .port();
    (sock, port)
}
