//! The drain: receive every waiting datagram, send each back to its sender.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};

/// The receive buffer's size: more than the largest datagram (65,507 bytes
/// of payload over IPv4), so no datagram is ever cut short.
pub const BUFFER: usize = 65_536;

/// Receives until EAGAIN, sending each datagram back as it comes.
///
/// Until EAGAIN, not once: signals do not queue, so the one SIGIO that woke
/// us may stand for many datagrams, and no new SIGIO will come for those
/// already waiting (the kernel signals arrivals, not what is left).
pub fn drain(socket: &UdpSocket, buf: &mut [u8]) {
    loop {
        match socket.recv_from(buf) {
            // 0 bytes is an empty datagram, echoed empty: UDP has no
            // connection, so there is no end of input to mean.
            Ok((len, sender)) => reply(socket, &buf[..len], sender),
            Err(err) if err.kind() == ErrorKind::WouldBlock => return,
            // Without IP_RECVERR an unconnected UDP socket is told of no
            // ICMP error, and a non-blocking call is never interrupted:
            // any other error is a bug here (EBADF, EFAULT). Say so, rather
            // than spin on it.
            Err(err) => labkit::fail(format_args!("recvfrom: {err}")),
        }
    }
}

/// Sends one datagram back, unchanged, to the address it came from.
///
/// A reply that cannot be sent (EAGAIN: our send buffer is full; or an
/// error for that one sender) is dropped: UDP promises no delivery, and
/// waiting for room would hold up every other sender.
fn reply(socket: &UdpSocket, datagram: &[u8], to: SocketAddr) {
    let _ = socket.send_to(datagram, to);
}
