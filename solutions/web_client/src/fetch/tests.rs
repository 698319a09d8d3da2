//! The header's end and the status line, fed read by read as a socket would.

use super::*;

/// Feeds `reads` one by one; the status and body start once complete.
fn feed(reads: &[&[u8]]) -> Result<Option<(u16, Vec<u8>)>, Failure> {
    let mut header = Header::default();
    for (n, read) in reads.iter().enumerate() {
        if let Some((status, body)) = header.push(read)? {
            assert_eq!(n, reads.len() - 1, "complete before the last read");
            return Ok(Some((status, body.to_vec())));
        }
    }
    Ok(None)
}

#[test]
fn the_header_ends_at_the_first_empty_line() {
    let got = feed(&[b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nbody\r\n\r\nmore"]);
    assert_eq!(got, Ok(Some((200, b"body\r\n\r\nmore".to_vec()))));
}

#[test]
fn an_empty_line_straddling_two_reads_is_found() {
    for split in [
        "HTTP/1.0 200 OK\r\nA: b\r".len(),
        "HTTP/1.0 200 OK\r\nA: b\r\n\r".len(),
    ] {
        let whole = b"HTTP/1.0 200 OK\r\nA: b\r\n\r\n\0\r\n";
        let (first, second) = whole.split_at(split);
        assert_eq!(
            feed(&[first, second]),
            Ok(Some((200, b"\0\r\n".to_vec()))),
            "split after {split} bytes"
        );
    }
}

#[test]
fn a_header_byte_by_byte() {
    let whole = b"HTTP/1.1 404 Not Found\r\n\r\n";
    let reads: Vec<&[u8]> = whole.chunks(1).collect();
    assert_eq!(feed(&reads), Ok(Some((404, Vec::new()))));
}

#[test]
fn a_line_end_alone_does_not_end_the_header() {
    assert_eq!(feed(&[b"HTTP/1.0 200 OK\r\n", b"A: b\r\n"]), Ok(None));
}

#[test]
fn an_empty_body_start() {
    assert_eq!(
        feed(&[b"HTTP/1.1 503\r\n\r\n"]),
        Ok(Some((503, Vec::new())))
    );
}

#[test]
fn status_lines_are_checked_as_the_contract_says() {
    for good in [
        "HTTP/1.0 200 OK\r\n",
        "HTTP/1.1 503\r\n",
        "HTTP/1.9 999 x\r\n",
    ] {
        assert!(status_code(good.as_bytes()).unwrap().is_some(), "{good:?}");
    }
    for bad in [
        "SSH-2.0-OpenSSH_9.6\r\n",
        "HTTP/1.0 20 OK\r\n",
        "HTTP/2.0 200 OK\r\n",
        "HTTP/1.0 2000 OK\r\n",
        "HTTP/1.0  200 OK\r\n",
        "http/1.0 200 OK\r\n",
        "\r\n\r\n",
    ] {
        assert_eq!(
            status_code(bad.as_bytes()),
            Err(Failure::BadResponse),
            "{bad:?}"
        );
    }
}

#[test]
fn a_bad_status_line_is_seen_before_the_header_ends() {
    assert_eq!(feed(&[b"SSH"]), Err(Failure::BadResponse));
    assert_eq!(feed(&[b"HTTP/1.0 20 "]), Err(Failure::BadResponse));
    assert_eq!(feed(&[b"HTTP/1."]), Ok(None), "too short to tell");
}

#[test]
fn a_header_too_long_is_a_bad_response() {
    let line = format!("X: {}\r\n", "a".repeat(1000));
    let mut reads = vec![b"HTTP/1.0 200 OK\r\n".to_vec()];
    reads.extend(std::iter::repeat_n(line.into_bytes(), 17));
    let reads: Vec<&[u8]> = reads.iter().map(Vec::as_slice).collect();
    assert_eq!(feed(&reads), Err(Failure::BadResponse));
}
