use super::*;
use std::net::TcpListener;
use std::time::Duration;

/// A connected pair: the server side wrapped in a `Connection`, and the client.
fn pair() -> (Connection, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (Connection::new(server), client)
}

/// Reads and handles everything the client has sent so far.
fn pump(conn: &mut Connection) {
    let mut scratch = vec![0; READ_CHUNK];
    std::thread::sleep(Duration::from_millis(20));
    while conn.wants_read() {
        match conn.read_once(&mut scratch).unwrap() {
            ReadOutcome::WouldBlock | ReadOutcome::Eof => break,
            ReadOutcome::Data(_) => {}
        }
    }
    conn.flush().unwrap();
}

fn read_to_end(client: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    got
}

#[test]
fn quit_is_recognised_with_and_without_cr() {
    assert!(is_quit(b"quit\n"));
    assert!(is_quit(b"quit\r\n"));
    assert!(!is_quit(b"quit now\n"));
    assert!(!is_quit(b" quit\n"));
}

#[test]
fn echoes_lines_and_holds_fragments() {
    let (mut conn, mut client) = pair();
    client.write_all(b"one\r\ntwo\nthr").unwrap();
    pump(&mut conn);
    let mut buf = [0; 9];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"one\r\ntwo\n");
    client.write_all(b"ee\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    pump(&mut conn);
    pump(&mut conn);
    assert!(conn.is_done());
    drop(conn);
    assert_eq!(read_to_end(&mut client), b"three\n");
}

#[test]
fn eof_echoes_the_trailing_fragment() {
    let (mut conn, mut client) = pair();
    client.write_all(b"a\nrest").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    pump(&mut conn);
    assert!(conn.is_done());
    drop(conn);
    assert_eq!(read_to_end(&mut client), b"a\nrest");
}

#[test]
fn quit_ends_with_a_lingering_close() {
    let (mut conn, mut client) = pair();
    client.write_all(b"a\nquit\r\nignored\n").unwrap();
    pump(&mut conn);
    assert!(!conn.is_done(), "waits for the client to close");
    assert!(conn.wants_read(), "keeps discarding input");
    let mut got = [0; 2];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"a\n");
    assert_eq!(
        client.read(&mut [0; 1]).unwrap(),
        0,
        "FIN after the replies"
    );
    client.shutdown(Shutdown::Write).unwrap();
    pump(&mut conn);
    assert!(conn.is_done());
}

#[test]
fn a_line_of_exactly_max_bytes_is_echoed() {
    let (mut conn, mut client) = pair();
    let mut line = vec![b'x'; MAX_LINE - 1];
    line.push(b'\n');
    client.write_all(&line).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    pump(&mut conn);
    pump(&mut conn);
    drop(conn);
    assert_eq!(read_to_end(&mut client), line);
}

#[test]
fn the_8193rd_byte_without_newline_is_too_long() {
    let (mut conn, mut client) = pair();
    client.write_all(b"ok\n").unwrap();
    client.write_all(&vec![b'x'; MAX_LINE]).unwrap();
    pump(&mut conn);
    assert_eq!(conn.pending(), 0);
    let mut got = [0; 3];
    client.read_exact(&mut got).unwrap();
    assert_eq!(
        &got, b"ok\n",
        "8192 bytes without newline: wait for one more"
    );
    client.write_all(b"y").unwrap();
    pump(&mut conn);
    client.shutdown(Shutdown::Write).unwrap();
    pump(&mut conn);
    assert!(conn.is_done());
    drop(conn);
    assert_eq!(read_to_end(&mut client), TOO_LONG_REPLY);
}

#[test]
fn reading_stops_at_the_backpressure_limit() {
    let (mut conn, mut client) = pair();
    let line = [b'z'; 1023]
        .iter()
        .chain(b"\n")
        .copied()
        .collect::<Vec<u8>>();
    let mut scratch = vec![0; READ_CHUNK];
    let mut queued = 0;
    client.set_nonblocking(true).unwrap();
    // Fill the server's socket with far more than the limit, never reading.
    for _ in 0..200 {
        if client.write(&line).is_ok() {
            queued += 1;
        }
    }
    assert!(queued * 1024 > BACKPRESSURE_LIMIT);
    std::thread::sleep(Duration::from_millis(20));
    while conn.wants_read() {
        if conn.read_once(&mut scratch).unwrap() == ReadOutcome::WouldBlock {
            break;
        }
    }
    assert!(!conn.wants_read());
    assert!(conn.pending() >= BACKPRESSURE_LIMIT);
    assert!(conn.pending() < BACKPRESSURE_LIMIT + READ_CHUNK);
}

#[test]
fn slab_reuses_freed_tokens() {
    let mut slab = Slab::default();
    let a = slab.insert("a");
    let b = slab.insert("b");
    assert_eq!(slab.remove(a), Some("a"));
    assert_eq!(slab.remove(a), None);
    assert_eq!(slab.insert("c"), a);
    assert_eq!(slab.get_mut(b), Some(&mut "b"));
    assert_eq!(slab.get_mut(99), None);
}

#[test]
fn bytes_moved_counts_both_directions_and_discarded_input() {
    let (mut conn, mut client) = pair();
    assert_eq!(conn.bytes_moved(), 0);
    client.write_all(b"abc\n").unwrap();
    pump(&mut conn);
    // 4 read, 4 echoed.
    assert_eq!(conn.bytes_moved(), 8);
    client.write_all(b"quit\n").unwrap();
    pump(&mut conn);
    assert_eq!(conn.bytes_moved(), 13);
    // Lingering close: input is discarded but still counts as moved.
    client.write_all(b"ignored\n").unwrap();
    pump(&mut conn);
    assert_eq!(conn.bytes_moved(), 21);
}

#[test]
fn slab_len_counts_stored_values() {
    let mut slab = Slab::default();
    assert!(slab.is_empty());
    let a = slab.insert("a");
    slab.insert("b");
    assert_eq!(slab.len(), 2);
    slab.remove(a);
    assert_eq!(slab.len(), 1);
    slab.remove(a);
    assert_eq!(slab.len(), 1);
}
