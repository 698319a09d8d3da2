//! The connection's decisions, without a ring: completions are fed by hand
//! and the submissions it asks for are checked, above all that a buffer the
//! kernel is using is never touched.

use super::*;
use std::net::TcpListener;

const TOKEN: usize = 7;

/// A connection on a real (idle) socket: the tests never submit anything.
fn conn() -> Conn {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    Conn::new(listener.accept().unwrap().0)
}

/// The operations `next_ops` asks for, by kind.
fn next(conn: &mut Conn) -> Vec<ConnOp> {
    conn.next_ops(TOKEN)
        .map(|entry| match Op::from_user_data(entry.get_user_data()) {
            Op::Conn(TOKEN, op) => op,
            other => panic!("an entry for {other:?}"),
        })
        .collect()
}

/// Completes the posted receive with `data`, as the kernel would.
fn receive(conn: &mut Conn, data: &[u8]) {
    conn.recv_buf[..data.len()].copy_from_slice(data);
    conn.complete(ConnOp::Recv, data.len() as i32);
}

#[test]
fn a_new_connection_posts_a_receive() {
    let mut conn = conn();
    assert_eq!(next(&mut conn), [ConnOp::Recv]);
    assert_eq!(next(&mut conn), [], "one receive at a time");
}

#[test]
fn replies_made_during_a_send_wait_in_the_second_buffer() {
    let mut conn = conn();
    next(&mut conn);
    receive(&mut conn, b"one\n");
    assert_eq!(next(&mut conn), [ConnOp::Send, ConnOp::Recv]);
    let (ptr, len) = (conn.out.as_ptr(), conn.out.len());
    receive(&mut conn, b"two\n");
    assert_eq!(next(&mut conn), [ConnOp::Recv], "no second send in flight");
    assert_eq!(
        (conn.out.as_ptr(), conn.out.len()),
        (ptr, len),
        "out untouched"
    );
    assert_eq!(conn.queued, b"two\n");
    conn.complete(ConnOp::Send, 4);
    assert_eq!(next(&mut conn), [ConnOp::Send]);
    assert_eq!(conn.out, b"two\n");
}

#[test]
fn a_short_send_is_resubmitted_for_the_rest() {
    let mut conn = conn();
    next(&mut conn);
    receive(&mut conn, b"hello\n");
    next(&mut conn);
    conn.complete(ConnOp::Send, 2);
    assert_eq!(next(&mut conn), [ConnOp::Send]);
    assert_eq!(&conn.out[conn.sent..], b"llo\n");
}

#[test]
fn no_receive_while_64_kib_are_unsent() {
    let mut conn = conn();
    next(&mut conn);
    let line = [b'x'; 1023]
        .iter()
        .chain(b"\n")
        .copied()
        .collect::<Vec<u8>>();
    receive(&mut conn, &line);
    next(&mut conn); // the first send, in flight from now on
    for _ in 0..64 {
        receive(&mut conn, &line);
        next(&mut conn);
    }
    assert!(conn.unsent() >= BACKPRESSURE_LIMIT);
    assert!(
        !conn.receiving,
        "no receive posted at {} unsent",
        conn.unsent()
    );
    // The first line is out; the 64 queued meanwhile are exactly 64 KiB.
    conn.complete(ConnOp::Send, 1024);
    assert_eq!(next(&mut conn), [ConnOp::Send]);
    conn.complete(ConnOp::Send, 1024);
    assert_eq!(next(&mut conn), [ConnOp::Send, ConnOp::Recv]);
}

#[test]
fn quit_sends_the_replies_then_lingers_until_the_client_s_eof() {
    let mut conn = conn();
    next(&mut conn);
    receive(&mut conn, b"a\nquit\nb\n");
    assert_eq!(next(&mut conn), [ConnOp::Send, ConnOp::Recv]);
    conn.complete(ConnOp::Send, 2);
    assert_eq!(next(&mut conn), [ConnOp::Shutdown]);
    conn.complete(ConnOp::Shutdown, 0);
    receive(&mut conn, b"discarded\n");
    assert_eq!(next(&mut conn), [ConnOp::Recv]);
    assert!(conn.unsent() == 0 && !conn.is_finished());
    conn.complete(ConnOp::Recv, 0);
    assert_eq!(next(&mut conn), []);
    assert!(conn.is_finished());
}

#[test]
fn eof_echoes_the_fragment_then_closes() {
    let mut conn = conn();
    next(&mut conn);
    receive(&mut conn, b"frag");
    next(&mut conn);
    conn.complete(ConnOp::Recv, 0);
    assert_eq!(next(&mut conn), [ConnOp::Send]);
    assert_eq!(conn.out, b"frag");
    conn.complete(ConnOp::Send, 4);
    assert_eq!(next(&mut conn), []);
    assert!(conn.is_finished());
}

#[test]
fn a_failed_send_cancels_the_receive_and_waits_for_it() {
    let mut conn = conn();
    next(&mut conn);
    receive(&mut conn, b"a\n");
    next(&mut conn);
    conn.complete(ConnOp::Send, -libc::EPIPE);
    assert_eq!(next(&mut conn), [ConnOp::Cancel]);
    conn.complete(ConnOp::Cancel, 0);
    assert!(
        !conn.is_finished(),
        "the receive's buffer is still the kernel's"
    );
    conn.complete(ConnOp::Recv, -libc::ECANCELED);
    assert_eq!(next(&mut conn), []);
    assert!(conn.is_finished());
}

#[test]
fn a_reset_waits_for_the_send_in_flight() {
    let mut conn = conn();
    next(&mut conn);
    receive(&mut conn, b"a\n");
    next(&mut conn);
    conn.complete(ConnOp::Recv, -libc::ECONNRESET);
    assert_eq!(next(&mut conn), []);
    assert!(
        !conn.is_finished(),
        "the send's buffer is still the kernel's"
    );
    conn.complete(ConnOp::Send, -libc::ECONNRESET);
    assert!(conn.is_finished());
}
