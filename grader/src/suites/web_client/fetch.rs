//! What one fetch gets right: the request, the header's end wherever the
//! reads cut it, the body byte for byte, any status, the two kinds of bad
//! response, a body too big for memory, a request too long for one write.

use super::run::{self, Fetched, OutDir, Run};
use super::site::{self, Options, Pattern, Reply, Site, Step};
use super::start_site;
use crate::check::{Check, Ctx, Failure, Outcome, Verdict, broken, grader_error, secs};
use crate::harness::proc;
use crate::harness::text::{bytes, quote, thousands};
use std::sync::Arc;
use std::time::Duration;

pub(super) const ONE_FETCH: Check = Check {
    name: "one_fetch",
    points: 10,
    title: "one URL: the exact request (GET PATH HTTP/1.0, Host: HOST:PORT), a 6 KiB header whose empty line is split across two writes, a binary body (\\r\\n\\r\\n and zero bytes inside) in DIR/1 byte for byte, `1 URL status=200 bytes=B`, `done ok=1 failed=0`, exit 0; a URL without a path asks for /",
    limit: secs(30),
    run: one_fetch,
    proven_by: &[broken(
        "broken_web_client_header_crlf",
        "at the first \\r\\n",
    )],
};

/// A body with every byte value, `\r\n\r\n` and zeros inside it.
fn binary_body(seed: u64, len: usize) -> Vec<u8> {
    let mut body = Pattern::bytes(seed, len);
    for at in [0, len / 3, len / 2] {
        body[at..at + 4].copy_from_slice(b"\r\n\r\n");
    }
    body[len / 4..len / 4 + 16].fill(0);
    body
}

fn one_fetch(ctx: &Ctx) -> Outcome {
    let body = binary_body(1, 100_000);
    // A header of about 6 KiB, its final `\r\n\r\n` cut in two: whatever
    // the client's read size, the empty line straddles two reads.
    let mut header = site::head(200, "OK");
    header.truncate(header.len() - 2);
    let padding = format!("X-Padding: {}\r\n", "p".repeat(6000));
    header.extend_from_slice(padding.as_bytes());
    header.extend_from_slice(b"\r");
    let mut rest = b"\n".to_vec();
    rest.extend_from_slice(&body);
    let reply = Reply(vec![
        Step::Send(Arc::new(header)),
        Step::Wait(Duration::from_millis(100)),
        Step::Send(Arc::new(rest)),
    ]);
    let path = "/one/file.bin";
    let site = start_site(vec![
        (path.into(), reply),
        ("/".into(), Reply::ok(b"root\n")),
    ])?;
    let dir = OutDir::new()?;
    let mut run = run::start(ctx, &dir.path, &[], &[site.url(path)])?;
    let status = run.finish(Duration::from_secs(15));
    expect_request(&site, path, &mut run)?;
    let header_crlf = |failure: Failure| {
        failure.cause("the header ends at the first empty line (\\r\\n\\r\\n), not at the first \\r\\n; and the empty line may be split between two reads: look for it in everything received so far")
    };
    run.expect(
        1,
        &Fetched::Status {
            code: 200,
            bytes: body.len() as u64,
        },
        status,
    )
    .map_err(header_crlf)?;
    run.expect_done(1, 0, status)?;
    run::expect_body(&dir, 1, &body, &mut run).map_err(header_crlf)?;
    // The same site, the URL with no path at all.
    let dir = OutDir::new()?;
    let bare = format!("http://{}", site.addr);
    let mut run = run::start(ctx, &dir.path, &[], &[bare])?;
    let status = run.finish(Duration::from_secs(15));
    expect_request(&site, "/", &mut run)?;
    run.expect_all(
        &[Fetched::Status {
            code: 200,
            bytes: 5,
        }],
        status,
    )?;
    run::expect_body(&dir, 1, b"root\n", &mut run).map_err(Verdict::from)
}

/// The site received exactly the contract's request for `path`.
fn expect_request(site: &Site, path: &str, run: &mut Run) -> Outcome {
    let want = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", site.addr).into_bytes();
    let visits = site.visits();
    let Some(visit) = visits.last() else {
        return Err(Failure::new(format!(
            "the server at {} saw no connection\n{}",
            site.addr,
            run.story(None)
        ))
        .expected("a connection to the URL's host and port, then the request")
        .into());
    };
    if visit.request == want {
        return Ok(());
    }
    let got = &visit.request;
    let cause = if got.is_empty() {
        "nothing was sent: once connected, send the request"
    } else if !got.ends_with(b"\r\n\r\n") {
        "the request must end with an empty line (\\r\\n\\r\\n), and every line end is \\r\\n"
    } else if !got.starts_with(format!("GET {path} ").as_bytes()) {
        "the request line is `GET PATH HTTP/1.0`, PATH as in the URL (/ when the URL has none)"
    } else if !got.starts_with(format!("GET {path} HTTP/1.0\r\n").as_bytes()) {
        "HTTP/1.0, not 1.1: a 1.0 server closes the connection after the body, which is how the client knows the body ended"
    } else {
        "the only header is `Host: HOST:PORT`, with the URL's host and port (:80 when the URL gives none)"
    };
    Err(Failure::new(format!(
        "the server received the request {}\n{}",
        quote(got),
        run.story(None)
    ))
    .expected(format!("exactly {}", quote(&want)))
    .cause(cause)
    .into())
}

pub(super) const STATUS_CODES: Check = Check {
    name: "status_codes",
    points: 4,
    title: "a 404 with a body and an `HTTP/1.1 503` status line without a reason phrase are successful fetches: status=404 and status=503, their bodies in DIR/1 and DIR/2, exit 0",
    limit: secs(20),
    run: status_codes,
    proven_by: &[broken(
        "broken_web_client_non_2xx_fails",
        "a 404 was fetched",
    )],
};

fn status_codes(ctx: &Ctx) -> Outcome {
    let missing = b"<h1>404 Not Found</h1>\n".to_vec();
    let busy = b"try again later\n".to_vec();
    let routes = vec![
        ("/missing".into(), Reply::status(404, "Not Found", &missing)),
        (
            "/busy".into(),
            Reply::raw(
                [
                    b"HTTP/1.1 503\r\nRetry-After: 1\r\n\r\n".to_vec(),
                    busy.clone(),
                ]
                .concat(),
            ),
        ),
    ];
    let site = start_site(routes)?;
    let dir = OutDir::new()?;
    let mut run = run::start(
        ctx,
        &dir.path,
        &[],
        &[site.url("/missing"), site.url("/busy")],
    )?;
    let status = run.finish(Duration::from_secs(15));
    let any_code = |failure: Failure| {
        failure.cause("any status code is a successful fetch: a 404 was fetched (the server answered), so its line says status=404 and its body is saved; and a status line may end right after the code")
    };
    run.expect_all(
        &[
            Fetched::Status {
                code: 404,
                bytes: missing.len() as u64,
            },
            Fetched::Status {
                code: 503,
                bytes: busy.len() as u64,
            },
        ],
        status,
    )
    .map_err(any_code)?;
    run::expect_body(&dir, 1, &missing, &mut run)?;
    run::expect_body(&dir, 2, &busy, &mut run).map_err(Verdict::from)
}

pub(super) const BAD_RESPONSE: Check = Check {
    name: "bad_response",
    points: 8,
    title: "a server that closes before the header's empty line, one that answers `SSH-2.0-...` and one with `HTTP/1.0 20 OK`: each error=bad-response and no file left for it; a good fetch beside them succeeds; exit 1",
    limit: secs(20),
    run: bad_response,
    proven_by: &[broken(
        "broken_web_client_eof_is_success",
        "ended before the header's empty line",
    )],
};

fn bad_response(ctx: &Ctx) -> Outcome {
    let good = binary_body(4, 3000);
    let routes = vec![
        (
            "/cut".into(),
            Reply::raw(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n".to_vec()),
        ),
        (
            "/ssh".into(),
            Reply::raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\nhello".to_vec()),
        ),
        (
            "/short".into(),
            Reply::raw(b"HTTP/1.0 20 OK\r\n\r\nhello".to_vec()),
        ),
        ("/good".into(), Reply::ok(&good)),
    ];
    let site = start_site(routes)?;
    let dir = OutDir::new()?;
    let urls: Vec<String> = ["/cut", "/ssh", "/short", "/good"]
        .iter()
        .map(|p| site.url(p))
        .collect();
    let mut run = run::start(ctx, &dir.path, &[], &urls)?;
    let status = run.finish(Duration::from_secs(15));
    let bad = Fetched::Error("bad-response".into());
    let causes = [
        "the stream ended before the header's empty line (\\r\\n\\r\\n): that is error=bad-response, not a success with an empty body",
        "the status line must start `HTTP/1.`, one digit, a space and a three-digit code: anything else is error=bad-response",
        "the code must be exactly three digits (`HTTP/1.0 20 OK` is not a status line): error=bad-response",
    ];
    for (i, cause) in causes.iter().enumerate() {
        run.expect(i + 1, &bad, status)
            .map_err(|f| f.cause(*cause))?;
    }
    run.expect(
        4,
        &Fetched::Status {
            code: 200,
            bytes: good.len() as u64,
        },
        status,
    )?;
    run.expect_done(1, 3, status)?;
    run::expect_body(&dir, 4, &good, &mut run)?;
    only_files(&dir, &["4"], &mut run)
}

/// After the run, the folder holds exactly `names`: no body of a failed
/// fetch, no `.part` left over.
pub(super) fn only_files(dir: &OutDir, names: &[&str], run: &mut Run) -> Outcome {
    let found = dir.names();
    if found == names {
        return Ok(());
    }
    let extra: Vec<&String> = found
        .iter()
        .filter(|n| !names.contains(&n.as_str()))
        .collect();
    Err(Failure::new(format!(
        "after the run DIR holds {found:?}; {extra:?} should not be there\n{}",
        run.story(None)
    ))
    .expected(format!("only {names:?}: a fetch that fails leaves neither DIR/i nor DIR/i.part"))
    .cause("a failed fetch's partial file was left behind: write the body to DIR/i.part, rename it to DIR/i only when the fetch succeeds, and remove it (and any older DIR/i) when it fails")
    .into())
}

pub(super) const LARGE_BODY: Check = Check {
    name: "large_body",
    points: 8,
    title: "a 256 MiB body made on the fly is streamed to DIR/1 byte for byte, while the program's peak memory (VmHWM) stays under 64 MiB",
    limit: secs(60),
    run: large_body,
    proven_by: &[broken(
        "broken_web_client_body_in_memory",
        "the whole body was kept in memory",
    )],
};

const LARGE: u64 = 256 << 20;
const MEMORY_KIB: u64 = 64 << 10;

fn large_body(ctx: &Ctx) -> Outcome {
    let reply = Reply(vec![
        Step::Send(Arc::new(site::head(200, "OK"))),
        Step::Generate {
            len: LARGE,
            seed: 9,
        },
        // The whole body is out: a program that holds it all holds it now.
        Step::Wait(Duration::from_millis(300)),
    ]);
    let site = start_site(vec![("/large".into(), reply)])?;
    let dir = OutDir::new()?;
    let mut run = run::start(
        ctx,
        &dir.path,
        &["--timeout-ms", "50000"],
        &[site.url("/large")],
    )?;
    let mut peak = 0;
    run.watch(
        Duration::from_secs(50),
        Duration::from_millis(20),
        |pid, _| {
            peak = peak.max(proc::peak_rss_kib(pid).unwrap_or(0));
        },
    );
    let status = run.finish(Duration::from_secs(52));
    ctx.note(format!("peak memory {} KiB", thousands(peak as usize)));
    run.expect_all(
        &[Fetched::Status {
            code: 200,
            bytes: LARGE,
        }],
        status,
    )?;
    if peak > MEMORY_KIB {
        return Err(Failure::new(format!(
            "while a {} body arrived, the program's memory peaked at {} (VmHWM)\n{}",
            bytes(LARGE as usize),
            bytes(peak as usize * 1024),
            run.story(status)
        ))
        .expected(format!("under {}: the body streamed to the file as it arrives", bytes(MEMORY_KIB as usize * 1024)))
        .cause("the whole body was kept in memory: write each piece to DIR/i.part as soon as it is read, and reuse one buffer")
        .into());
    }
    same_as_pattern(&dir, 1, 9, LARGE, &mut run)
}

/// `DIR/i` is `len` bytes of pattern `seed`, compared a piece at a time.
fn same_as_pattern(dir: &OutDir, i: usize, seed: u64, len: u64, run: &mut Run) -> Outcome {
    let mut file = std::fs::File::open(dir.body(i))
        .map_err(|err| grader_error(format!("cannot open DIR/{i}: {err}")))?;
    let mut pattern = Pattern::new(seed);
    let (mut want, mut got) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut at = 0u64;
    loop {
        let n = read_full(&mut file, &mut got)
            .map_err(|err| grader_error(format!("reading DIR/{i}: {err}")))?;
        let n_want = (len - at).min(want.len() as u64) as usize;
        pattern.fill(&mut want[..n_want]);
        if n != n_want || got[..n] != want[..n] {
            let place = want[..n_want]
                .iter()
                .zip(&got[..n])
                .position(|(a, b)| a != b)
                .unwrap_or(n.min(n_want));
            return Err(Failure::new(format!(
                "DIR/{i} differs from the body at byte {}\n{}",
                thousands((at + place as u64) as usize),
                run.story(None)
            ))
            .expected(format!(
                "DIR/{i} the body byte for byte ({})",
                bytes(len as usize)
            ))
            .into());
        }
        at += n as u64;
        if at == len {
            return Ok(());
        }
    }
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            got => n += got,
        }
    }
    Ok(n)
}

pub(super) const SHORT_REQUEST: Check = Check {
    name: "short_request",
    points: 6,
    title: "a URL with a 64,000-byte path to a server with a small receive window that starts reading after 500 ms (the request, 64 KB, is more than one write takes): the whole request arrives (a short write is continued) and the fetch succeeds",
    limit: secs(30),
    run: short_request,
    proven_by: &[broken(
        "broken_web_client_short_write",
        "fewer bytes than asked",
    )],
};

fn short_request(ctx: &Ctx) -> Outcome {
    let path = format!("/long/{}", "a".repeat(64_000));
    let body = b"the long path was served\n";
    let options = Options {
        small_window: true,
        read_after: Duration::from_millis(500),
        // With a fresh address a client's send buffer takes 47,684 bytes at
        // first (two windows of 10 segments of 536 bytes, with overhead):
        // the request, 64 KB, needs two writes.
        fresh_address: true,
    };
    let site = Site::start_with(vec![(path.clone(), Reply::ok(body))], options)
        .map_err(|err| grader_error(format!("cannot start an HTTP server: {err}")))?;
    let dir = OutDir::new()?;
    let mut run = run::start(
        ctx,
        &dir.path,
        &["--timeout-ms", "3000"],
        &[site.url(&path)],
    )?;
    let status = run.finish(Duration::from_secs(15));
    let want = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", site.addr);
    let got = site.visits().first().map_or(0, |visit| visit.request.len());
    if got < want.len() {
        return Err(Failure::new(format!(
            "the request is {} long; the server received {} of it\n{}",
            bytes(want.len()),
            bytes(got),
            run.story(status)
        ))
        .expected("the whole request, however many writes it takes")
        .cause("a write to a non-blocking socket may write fewer bytes than asked (here the server's window is small): keep what is left and write it when the socket is writable again")
        .into());
    }
    expect_request(&site, &path, &mut run)?;
    run.expect_all(
        &[Fetched::Status {
            code: 200,
            bytes: body.len() as u64,
        }],
        status,
    )?;
    Ok(())
}
