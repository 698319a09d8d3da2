//! The UDP side: each datagram goes back to its sender, unchanged.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};

/// The receive buffer's size: more than the largest datagram (65,507 bytes
/// of payload over IPv4), so no datagram is ever cut short.
pub const BUFFER: usize = 65_536;

/// The most datagrams echoed in one round of the loop.
pub const PER_ROUND: usize = 64;

/// Echoes the datagrams waiting on the non-blocking `socket`, at most
/// [`PER_ROUND`] of them, until EAGAIN.
pub fn echo_some(socket: &UdpSocket, buf: &mut [u8]) {
    // TODO 3: up to PER_ROUND times, `socket.recv_from(buf)`:
    //    - Ok((len, sender)): `reply` with `&buf[..len]`. 0 bytes is an
    //      empty datagram, echoed empty (UDP has no end of input);
    //    - WouldBlock: nothing left, return;
    //    - Interrupted: try again; anything else: `labkit::fail` (a bug).
    //    Why a cap and not "until EAGAIN": a flood of datagrams must not
    //    starve the TCP clients either; level-triggered epoll reports the
    //    socket again at the next wait if datagrams are left.
    todo!("TODO 3: echo datagrams in echo_some, src/udp.rs")
}

/// Sends one datagram back, unchanged, to the address it came from.
fn reply(socket: &UdpSocket, datagram: &[u8], to: SocketAddr) {
    // TODO 3: `socket.send_to(datagram, to)`, and ignore its result. A
    //    reply that cannot be sent (EAGAIN: the send buffer is full; or an
    //    error for that one sender) is dropped: UDP promises no delivery,
    //    and waiting for room would hold up everyone else.
    todo!("TODO 3: send the reply in reply, src/udp.rs")
}
