//! Both sockets on the announced port, and TCP and UDP traffic at once,
//! each reply on its own transport to its own sender.

use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, secs, within};
use crate::harness::proc::{self, TCP_LISTEN};
use crate::suites::datagram::{self, peer};
use crate::suites::echo::{SHORT, send, start};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

pub(super) const SAME_PORT: Check = Check {
    name: "same_port",
    points: 6,
    title: "a TCP listener and a UDP socket, both bound to 127.0.0.1 and the announced port, both held by the program",
    limit: secs(20),
    run: same_port,
    proven_by: &[broken("broken_tcp_udp_other_port", "another port")],
};

fn same_port(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let pid = server.pid();
    let port = server.addr.port();
    let sockets = proc::inet_sockets(pid);
    server.alive("once listening")?;
    let want = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let listener = sockets.iter().find(|s| !s.udp && s.state == TCP_LISTEN);
    let udp: Vec<_> = sockets.iter().filter(|s| s.udp).collect();
    let shown: Vec<String> = sockets
        .iter()
        .map(|s| {
            format!(
                "fd {} {} {}{}",
                s.fd,
                if s.udp { "UDP" } else { "TCP" },
                s.local,
                if !s.udp && s.state == TCP_LISTEN {
                    " (listening)"
                } else {
                    ""
                }
            )
        })
        .collect();
    ctx.note(format!("sockets: {}", shown.join(", ")));
    ensure(listener.is_some_and(|l| l.local == want), || {
        Failure::new(format!(
            "the server announced port {port}, and holds: {}",
            if shown.is_empty() {
                "no TCP or UDP socket".into()
            } else {
                shown.join(", ")
            }
        ))
        .expected(format!("a TCP listener bound to {want}"))
        .cause("bind the TCP listener to 127.0.0.1 and announce the port it got")
    })?;
    ensure(udp.iter().any(|s| s.local == want), || {
        Failure::new(format!(
            "the server announced port {port}; its UDP sockets: {}",
            if udp.is_empty() {
                "none".to_string()
            } else {
                udp.iter().map(|s| format!("fd {} {}", s.fd, s.local)).collect::<Vec<_>>().join(", ")
            }
        ))
        .expected(format!("a UDP socket bound to {want} too"))
        .cause(if udp.iter().any(|s| s.local.port() != port) {
            "the UDP socket is on another port: bind it to the port the TCP listener got (TCP and UDP ports are separate spaces, so the same number is free for both; with port 0, bind TCP first, then UDP to its port, and start over if that UDP port is taken)"
        } else {
            "bind the UDP socket to 127.0.0.1 and the TCP listener's port"
        })
    })
}

pub(super) const BOTH_AT_ONCE: Check = Check {
    name: "both_at_once",
    points: 8,
    title: "10 TCP clients and 10 UDP peers send at once; each TCP client gets exactly its lines, each peer exactly its datagrams",
    limit: secs(30),
    run: both_at_once,
    proven_by: &[broken(
        "broken_tcp_udp_crossed_replies",
        "on the other transport",
    )],
};

fn both_at_once(ctx: &Ctx) -> Outcome {
    const EACH: usize = 20;
    let mut server = start(ctx)?;
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(ctx.connect(&server)?);
    }
    let peers = (0..10u8)
        .map(|i| peer(ctx, 30 + i))
        .collect::<Result<Vec<_>, _>>()?;
    let line = |c: usize, k: usize| format!("tcp {c} line {k}\n").into_bytes();
    let datagram = |p: usize, k: usize| format!("udp {p} datagram {k}").into_bytes();
    for k in 0..EACH {
        for (c, client) in clients.iter_mut().enumerate() {
            send(client, &line(c, k))?;
        }
        for (p, peer) in peers.iter().enumerate() {
            datagram::send(peer, &server, &datagram(p, k))?;
        }
    }
    for (p, peer) in peers.iter().enumerate() {
        let got = peer.recv_up_to(EACH, Instant::now() + SHORT);
        let expected: Vec<Vec<u8>> = (0..EACH).map(|k| datagram(p, k)).collect();
        let data: Vec<Vec<u8>> = got.iter().map(|d| d.data.clone()).collect();
        ensure(
            data == expected && got.iter().all(|d| d.from == server.addr),
            || {
                Failure::new(format!(
                "10 TCP clients and 10 UDP peers sent {EACH} lines and datagrams each, interleaved; peer c{} got {} of its {EACH} datagrams back",
                peer.id,
                data.iter().zip(&expected).take_while(|(a, b)| a == b).count()
            ))
            .expected(format!("its own {EACH} datagrams, in order, from {}", server.addr))
            .cause("each datagram's echo goes to its sender over UDP (sendto the address recvfrom gave), never on a TCP connection: a reply sent on the other transport is lost to its sender")
            .transcript(&[peer.id])
            },
        )?;
    }
    for (c, client) in clients.iter_mut().enumerate() {
        let expected: Vec<u8> = (0..EACH).flat_map(|k| line(c, k)).collect();
        let got = client.recv_exact(expected.len(), within(SHORT));
        ensure(got.data == expected, || {
            let foreign = got.data.windows(4).any(|w| w == b"udp ");
            Failure::new(format!(
                "10 TCP clients and 10 UDP peers sent {EACH} lines and datagrams each, interleaved; TCP client c{} got {} bytes back{}",
                client.id,
                got.data.len(),
                if foreign { ", among them a datagram's bytes" } else { "" }
            ))
            .expected(format!("exactly its own {EACH} lines"))
            .cause(if foreign {
                "a datagram's echo was sent on a TCP connection, on the other transport: reply to a datagram with sendto on the UDP socket, to the address it came from"
            } else {
                "each TCP client gets its own lines, whatever the UDP peers do: keep the two sides' buffers apart"
            })
            .transcript(&[client.id])
        })?;
    }
    server.alive("with TCP and UDP at once")
}
