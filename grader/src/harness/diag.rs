//! The queues of one TCP socket, asked of the kernel by its addresses
//! (netlink `sock_diag`, what `ss` uses): bytes written and not yet
//! acknowledged, bytes received and not yet read. One exact lookup costs
//! microseconds, where `/proc/net/tcp` lists every socket of the machine
//! (tens of thousands after a grading, 75 ms to read).

use socket2::{Domain, Protocol, Socket, Type};
use std::io::{Read, Write};
use std::net::SocketAddrV4;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_req_v2` and `struct inet_diag_msg`.
const REQUEST_LEN: usize = 56;
const MSG_LEN: usize = 72;

/// A TCP socket's queues, and whether a process still holds it (a socket
/// closed with bytes still to send lives on as an orphan, inode 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queues {
    pub tx: u64,
    pub rx: u64,
    pub held: bool,
}

pub struct Diag {
    socket: Socket,
}

impl Diag {
    pub fn new() -> std::io::Result<Diag> {
        let socket = Socket::new(
            Domain::from(nix::libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(NETLINK_SOCK_DIAG)),
        )?;
        // The kernel answers at once; a bound in case it never does.
        socket.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
        Ok(Diag { socket })
    }

    /// The queues of the TCP socket bound to `local` and connected to
    /// `remote`, or `None` when there is none (closed).
    pub fn queues(&self, local: SocketAddrV4, remote: SocketAddrV4) -> Option<Queues> {
        (&self.socket).write_all(&request(local, remote)).ok()?;
        let mut reply = [0u8; 512];
        let n = (&self.socket).read(&mut reply).ok()?;
        parse_reply(&reply[..n], remote.port())
    }
}

/// `nlmsghdr` + `inet_diag_req_v2` asking for one socket by its addresses.
fn request(local: SocketAddrV4, remote: SocketAddrV4) -> Vec<u8> {
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + REQUEST_LEN);
    msg.extend(((NLMSG_HDRLEN + REQUEST_LEN) as u32).to_ne_bytes());
    msg.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend(NLM_F_REQUEST.to_ne_bytes());
    msg.extend(1u32.to_ne_bytes()); // sequence number
    msg.extend(0u32.to_ne_bytes()); // port id: the kernel fills it in
    msg.push(nix::libc::AF_INET as u8);
    msg.push(nix::libc::IPPROTO_TCP as u8);
    msg.push(0); // no extensions
    msg.push(0);
    msg.extend(u32::MAX.to_ne_bytes()); // any state
    // inet_diag_sockid: ports and addresses in network order.
    msg.extend(local.port().to_be_bytes());
    msg.extend(remote.port().to_be_bytes());
    for ip in [local.ip(), remote.ip()] {
        msg.extend(ip.octets());
        msg.extend([0u8; 12]);
    }
    msg.extend(0u32.to_ne_bytes()); // any interface
    msg.extend(u64::MAX.to_ne_bytes()); // INET_DIAG_NOCOOKIE
    msg
}

/// The queues in the kernel's answer: an `inet_diag_msg`, or an error
/// (`ENOENT`: no such socket). Once a connection is gone, the kernel's
/// lookup falls back to a listening socket on the local port: only a socket
/// connected to `remote_port` is the one asked for.
fn parse_reply(reply: &[u8], remote_port: u16) -> Option<Queues> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(reply.get(at..at + 4)?.try_into().ok()?))
    };
    let kind = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    if kind != SOCK_DIAG_BY_FAMILY || reply.len() < NLMSG_HDRLEN + MSG_LEN {
        return None;
    }
    let msg = NLMSG_HDRLEN;
    let port = u16::from_be_bytes(reply.get(msg + 6..msg + 8)?.try_into().ok()?);
    if port != remote_port {
        return None;
    }
    Some(Queues {
        rx: u64::from(u32_at(msg + 56)?),
        tx: u64::from(u32_at(msg + 60)?),
        held: u32_at(msg + 68)? != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    #[test]
    fn a_connection_is_found_by_its_addresses_and_gone_once_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let v4 = |addr: std::net::SocketAddr| match addr {
            std::net::SocketAddr::V4(addr) => addr,
            _ => unreachable!(),
        };
        let (c, s) = (
            v4(client.local_addr().unwrap()),
            v4(server.local_addr().unwrap()),
        );
        (&client).write_all(b"hello").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let diag = Diag::new().unwrap();
        let queues = diag.queues(s, c).unwrap();
        assert_eq!((queues.rx, queues.tx, queues.held), (5, 0, true));
        drop(server);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(diag.queues(s, c).is_none_or(|q| !q.held));
        assert!(
            diag.queues(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1), c)
                .is_none()
        );
    }
}
