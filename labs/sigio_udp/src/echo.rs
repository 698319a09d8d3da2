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
    // TODO 4: loop on `socket.recv_from(buf)`: each datagram (0 bytes is a
    //    datagram too, not an end of input) goes to `reply`; WouldBlock
    //    (EAGAIN) means nothing is left: return. Any other error is a bug
    //    of yours: `labkit::fail` with it.
    todo!("TODO 4: receive until EAGAIN in drain, src/echo.rs")
}

/// Sends one datagram back, unchanged, to the address it came from.
///
/// A reply that cannot be sent (EAGAIN: our send buffer is full; or an
/// error for that one sender) is dropped: UDP promises no delivery, and
/// waiting for room would hold up every other sender.
fn reply(socket: &UdpSocket, datagram: &[u8], to: SocketAddr) {
    // TODO 5: `socket.send_to`, its result ignored (see above).
    todo!("TODO 5: send the datagram back in reply, src/echo.rs")
}
