//! The UDP side: each datagram goes back to its sender, unchanged.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};

/// The receive buffer's size: more than the largest datagram (65,507 bytes
/// of payload over IPv4), so no datagram is ever cut short.
pub const BUFFER: usize = 65_536;

/// The most datagrams echoed in one round of the loop.
///
/// A cap, not "until EAGAIN": a flood of datagrams must not starve the TCP
/// clients either. Epoll is level-triggered, so datagrams left in the
/// socket make the next wait report it again at once.
pub const PER_ROUND: usize = 64;

/// Echoes the datagrams waiting on the non-blocking `socket`, at most
/// [`PER_ROUND`] of them, until EAGAIN.
pub fn echo_some(socket: &UdpSocket, buf: &mut [u8]) {
    for _ in 0..PER_ROUND {
        match socket.recv_from(buf) {
            // 0 bytes is an empty datagram, echoed empty: UDP has no
            // connection, so there is no end of input to mean.
            Ok((len, sender)) => reply(socket, &buf[..len], sender),
            Err(err) if err.kind() == ErrorKind::WouldBlock => return,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            // Without IP_RECVERR an unconnected UDP socket is told of no
            // ICMP error: any other error is a bug here (EBADF, EFAULT).
            // Say so, rather than spin on it.
            Err(err) => labkit::fail(format_args!("recvfrom: {err}")),
        }
    }
}

/// Sends one datagram back, unchanged, to the address it came from.
///
/// A reply that cannot be sent (EAGAIN: our send buffer is full; or an
/// error for that one sender) is dropped: UDP promises no delivery, and
/// waiting for room would hold up every TCP client and every other sender.
fn reply(socket: &UdpSocket, datagram: &[u8], to: SocketAddr) {
    let _ = socket.send_to(datagram, to);
}
