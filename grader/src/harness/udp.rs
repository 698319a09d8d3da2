//! UDP peers for the datagram labs: a socket of the grader's own on a
//! loopback address, sending datagrams and waiting for replies with a
//! deadline, or for silence ("no reply within"). It knows no lab.
//!
//! Each peer has a receive buffer big enough for a burst of replies (the
//! kernel's default, about 208 KiB, holds only about 256 small datagrams:
//! each costs about 1 KiB of bookkeeping), and receives into a buffer of
//! 65,536 bytes, one more than the largest datagram, so nothing it is sent
//! is ever truncated.

use super::transcript::Transcript;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A datagram received: its bytes and who sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub data: Vec<u8>,
    pub from: SocketAddr,
}

/// One UDP socket of the grader's; what it sends and receives goes in the
/// check's transcript under its id (`c3 -> 5 bytes "hello"`), a datagram
/// an entry.
pub struct Peer {
    socket: UdpSocket,
    /// Its own address (127.0.0.x and the port the kernel chose).
    pub addr: SocketAddr,
    pub id: usize,
    log: Arc<Mutex<Transcript>>,
}

/// Bigger than any datagram (65,507 bytes of payload over IPv4).
const RECEIVE: usize = 65_536;
/// The peer's kernel receive buffer: room for thousands of small replies.
const RECEIVE_BUFFER: usize = 4 << 20;

impl Peer {
    /// A socket bound to `ip` on a port the kernel picks.
    pub fn bind(ip: Ipv4Addr, id: usize, log: &Arc<Mutex<Transcript>>) -> io::Result<Peer> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        // Root may exceed rmem_max; others get what the system allows.
        let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
        socket.bind(&SocketAddr::from((ip, 0)).into())?;
        let socket: UdpSocket = socket.into();
        let addr = socket.local_addr()?;
        Ok(Peer {
            socket,
            addr,
            id,
            log: log.clone(),
        })
    }

    /// Sends one datagram to `to` (a UDP send never waits for the peer).
    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<()> {
        self.log.lock().unwrap().sent_datagram(self.id, data);
        let sent = self.socket.send_to(data, to)?;
        if sent != data.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                data.len()
            )));
        }
        Ok(())
    }

    /// The next datagram, or `None` if none came by `deadline`.
    pub fn recv_by(&self, deadline: Instant) -> Option<Datagram> {
        let mut buf = vec![0u8; RECEIVE];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            // A zero timeout would mean "wait forever".
            let _ = self
                .socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    buf.truncate(n);
                    let mut log = self.log.lock().unwrap();
                    log.received_datagram(self.id, &buf);
                    if n == 0 {
                        log.note(self.id, "<- (that was an empty datagram)");
                    }
                    return Some(Datagram { data: buf, from });
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.log.lock().unwrap().timeout(self.id);
                    return None;
                }
            }
        }
    }

    /// Up to `count` datagrams, as many as came by `deadline`.
    pub fn recv_up_to(&self, count: usize, deadline: Instant) -> Vec<Datagram> {
        let mut got = Vec::with_capacity(count);
        while got.len() < count {
            match self.recv_by(deadline) {
                Some(datagram) => got.push(datagram),
                None => break,
            }
        }
        got
    }

    /// `None` if nothing arrives for `quiet`; else what did.
    pub fn silent_for(&self, quiet: Duration) -> Option<Datagram> {
        self.recv_by(Instant::now() + quiet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_of_every_size_keep_their_bounds_and_sender() {
        let log = Arc::new(Mutex::new(Transcript::default()));
        let a = Peer::bind(Ipv4Addr::LOCALHOST, 1, &log).unwrap();
        let b = Peer::bind(Ipv4Addr::new(127, 0, 0, 2), 2, &log).unwrap();
        for size in [0, 1, 1472, 65_507] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            a.send_to(&data, b.addr).unwrap();
            let got = b.recv_by(Instant::now() + Duration::from_secs(2)).unwrap();
            assert_eq!((got.data.len(), got.from), (size, a.addr));
            assert_eq!(got.data, data);
        }
        assert_eq!(b.silent_for(Duration::from_millis(50)), None);
        for i in 0..3u8 {
            a.send_to(&[i], b.addr).unwrap();
        }
        let got = b.recv_up_to(5, Instant::now() + Duration::from_millis(300));
        assert_eq!(got.len(), 3);
    }
}
