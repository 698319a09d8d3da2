//! The listening socket (TCP or UDP) and the fd limit, set up the way every
//! server lab needs.

use crate::OrFail;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

/// Raises the soft limit on open files to the hard limit.
///
/// Every connection costs one fd, and the soft limit is often 1024: a server
/// meant for 10,000 clients would otherwise fail at accept with EMFILE.
pub fn raise_fd_limit() {
    let (_soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).or_fail("getrlimit(RLIMIT_NOFILE)");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).or_fail("setrlimit(RLIMIT_NOFILE)");
}

/// Binds 127.0.0.1:`port` (0: any free port) and listens. Exits 1 on failure.
///
/// The socket is still in blocking mode: making it non-blocking is part of
/// every lab, and the lab's code should say why.
pub fn bind_loopback(port: u16) -> TcpListener {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    listen_loopback(port).or_fail(format_args!("cannot listen on {addr}"))
}

fn listen_loopback(port: u16) -> io::Result<TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    // Restarting the server right after it exits must not fail because old
    // connections to this port are still in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// How many TCP ports `bind_tcp_udp_loopback` tries, with port 0, before it
/// gives up: each try fails only if another program holds that UDP port.
const TCP_UDP_TRIES: usize = 100;

/// A TCP listener and a UDP socket on 127.0.0.1 and the same port (0: any
/// free port). Exits 1 on failure.
///
/// TCP and UDP ports are separate spaces: a free TCP port says nothing about
/// the UDP port of the same number. So the TCP listener comes first (with
/// port 0 the system picks its port), then the UDP socket binds that number;
/// if another program holds it, a new TCP port is tried. With an explicit
/// port there is nothing else to try. Both sockets are left in blocking mode.
pub fn bind_tcp_udp_loopback(port: u16) -> (TcpListener, UdpSocket) {
    for _ in 0..TCP_UDP_TRIES {
        let listener = bind_loopback(port);
        let got = listener.local_addr().or_fail("getsockname").port();
        match UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, got))) {
            Ok(udp) => return (listener, udp),
            // Taken: the listener is dropped, and the next one gets another port.
            Err(err) if err.kind() == io::ErrorKind::AddrInUse && port == 0 => continue,
            Err(err) => crate::fail(format_args!(
                "cannot listen on 127.0.0.1:{got} (UDP): {err}"
            )),
        }
    }
    crate::fail(format_args!(
        "cannot listen on 127.0.0.1: no port out of {TCP_UDP_TRIES} tried was free for both TCP and UDP"
    ))
}

/// Binds a UDP socket to 127.0.0.1:`port` (0: any free port). Exits 1 on failure.
///
/// No SO_REUSEADDR here: on UDP it would let a second server bind the same
/// port and silently share its datagrams. Like `bind_loopback`, the socket is
/// left in blocking mode: how it is told of datagrams is the lab's subject.
pub fn bind_udp_loopback(port: u16) -> UdpSocket {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    UdpSocket::bind(addr).or_fail(format_args!("cannot listen on {addr} (UDP)"))
}

/// Prints the `listening on 127.0.0.1:PORT` line graders wait for, and flushes it.
pub fn announce(listener: &TcpListener) {
    announce_addr(listener.local_addr().or_fail("getsockname"));
}

/// `announce` for a UDP server: the line names the socket's UDP port.
pub fn announce_udp(socket: &UdpSocket) {
    announce_addr(socket.local_addr().or_fail("getsockname"));
}

fn announce_addr(addr: SocketAddr) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}")
        .and_then(|()| stdout.flush())
        .or_fail("cannot write to stdout");
}
