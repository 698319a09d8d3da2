//! What comes back: every size, empty datagrams, many senders at once.

use super::{SHORT, describe, expect_reply, peer, round_trip, send, start};
use crate::check::{Check, Ctx, Failure, Outcome, broken, ensure, secs};
use std::time::Instant;

pub(super) const SIZES: Check = Check {
    name: "sizes",
    points: 16,
    title: "datagrams of 0, 1, 1472, 8192 and 65,507 bytes come back unchanged, one reply each, from the address in the listening line; three sent back to back come back as three",
    limit: secs(30),
    run: sizes,
    proven_by: &[
        broken("broken_sigio_udp_small_buffer", "cut short"),
        broken("broken_sigio_udp_other_socket", "another address"),
    ],
};

/// Bytes that show where a reply went wrong: position-dependent.
fn pattern(size: usize, seed: usize) -> Vec<u8> {
    (0..size)
        .map(|i| b'a' + ((i * 7 + seed) % 26) as u8)
        .collect()
}

fn sizes(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let peer = peer(ctx, 1)?;
    for (seed, size) in [0, 1, 1472, 8192, 65_507].into_iter().enumerate() {
        round_trip(ctx, &peer, &mut server, &pattern(size, seed))?;
    }
    // Datagrams keep their bounds: three in a row are three replies.
    let three: Vec<Vec<u8>> = (0..3).map(|i| pattern(100 + i, i)).collect();
    for datagram in &three {
        send(&peer, &server, datagram)?;
    }
    for datagram in &three {
        let got = peer.recv_by(Instant::now() + SHORT);
        expect_reply(ctx, &peer, &mut server, datagram, &got)?;
    }
    server.alive("after datagrams of every size")
}

pub(super) const EMPTY_DATAGRAM: Check = Check {
    name: "empty_datagram",
    points: 10,
    title: "an empty datagram comes back as an empty datagram, between the replies to the datagrams around it, and the server goes on serving",
    limit: secs(20),
    run: empty_datagram,
    proven_by: &[
        broken(
            "broken_sigio_udp_drops_empty",
            "an empty datagram is a datagram",
        ),
        broken("broken_sigio_udp_empty_is_eof", "not an end of input"),
    ],
};

fn empty_datagram(ctx: &Ctx) -> Outcome {
    let mut server = start(ctx)?;
    let peer = peer(ctx, 1)?;
    for datagram in [&b"before"[..], b"", b"after"] {
        send(&peer, &server, datagram)?;
    }
    for datagram in [&b"before"[..], b"", b"after"] {
        let got = peer.recv_by(Instant::now() + SHORT);
        let wrong = expect_reply(ctx, &peer, &mut server, datagram, &got);
        if wrong.is_err() && datagram.is_empty() {
            let ended = server.program.check_alive().err();
            return Err(Failure::new(format!(
                "c{} sent \"before\", an empty datagram, then \"after\"; for the empty one it {}{}",
                peer.id,
                describe(&got, SHORT),
                ended.map(|how| format!(", and the server stopped: {how}")).unwrap_or_default()
            ))
            .expected(format!("an empty datagram back from {}, then \"after\"", server.addr))
            .cause(if server.program.check_alive().is_err() {
                "an empty datagram is not an end of input: UDP has no connection to end, and recvfrom returning 0 only means a datagram of 0 bytes came (its sender is in the address)"
            } else {
                "an empty datagram is a datagram: recvfrom returned 0 bytes and an address, so send 0 bytes back to that address (only EAGAIN means nothing is left)"
            })
            .transcript(&[peer.id])
            .into());
        }
        wrong?;
    }
    round_trip(ctx, &peer, &mut server, b"still here?")?;
    server.alive("after an empty datagram")
}

pub(super) const MANY_SENDERS: Check = Check {
    name: "many_senders",
    points: 12,
    title: "five senders on five addresses send 20 datagrams each, interleaved; each gets exactly its own replies, in order, from the server's address",
    limit: secs(30),
    run: many_senders,
    proven_by: &[
        broken("broken_sigio_udp_first_sender", "its sender"),
        broken("broken_tcp_udp_wrong_address", "its sender"),
    ],
};

fn many_senders(ctx: &Ctx) -> Outcome {
    const SENDERS: u8 = 5;
    const EACH: usize = 20;
    let mut server = start(ctx)?;
    let peers = (0..SENDERS)
        .map(|i| peer(ctx, 10 + i))
        .collect::<Result<Vec<_>, _>>()?;
    let datagram = |p: usize, k: usize| format!("sender {p} datagram {k}").into_bytes();
    for k in 0..EACH {
        for (p, peer) in peers.iter().enumerate() {
            send(peer, &server, &datagram(p, k))?;
        }
    }
    for (p, peer) in peers.iter().enumerate() {
        let got = peer.recv_up_to(EACH, Instant::now() + SHORT);
        let expected: Vec<Vec<u8>> = (0..EACH).map(|k| datagram(p, k)).collect();
        let all_from_server = got.iter().all(|d| d.from == server.addr);
        let data: Vec<&[u8]> = got.iter().map(|d| d.data.as_slice()).collect();
        let own = data.iter().zip(&expected).all(|(a, b)| a == b);
        let foreign = data
            .iter()
            .filter(|d| !d.starts_with(format!("sender {p} ").as_bytes()))
            .count();
        ensure(got.len() == EACH && own && all_from_server, || {
            Failure::new(format!(
                "{} senders each sent {EACH} datagrams, interleaved; c{} (sender {p}, {}) got {} replies, {foreign} of them another sender's{}",
                SENDERS,
                peer.id,
                peer.addr,
                got.len(),
                if all_from_server { String::new() } else { ", some not from the server's address".into() }
            ))
            .expected(format!("its own {EACH} datagrams back, in order, from {}", server.addr))
            .cause(if !all_from_server {
                "a reply came from another address: send each reply from the socket its datagram came in on, so that its sender sees its server answer"
            } else if foreign > 0 || got.len() < EACH {
                "each reply goes to its sender: sendto the address recvfrom returned with that very datagram (not the first sender's, not a saved one)"
            } else {
                "the replies came back out of order or changed: send each datagram back as soon as it is received, unchanged"
            })
            .transcript(&[peer.id])
        })?;
    }
    server.alive("with five senders")
}
