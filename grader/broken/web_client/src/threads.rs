//! The ThreadPerFetch fault: each fetch in a thread of its own with blocking I/O and
//! socket timeouts (the contract asks for one thread). Otherwise as correct as the
//! loop: a sliding window of N, a deadline per fetch, lines in completion order.

use std::io;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::args::Url;
use crate::fetch::{Fetch, Step, discard, reason};
use crate::{Config, Fault, Outcome, Output, Tally};

pub fn run(_prog: &str, config: &Config, fault: Fault, out: &mut Output) -> io::Result<Tally> {
    let (done_tx, done_rx) = mpsc::channel();
    let mut tally = Tally::default();
    let (mut next, mut running) = (0, 0);
    loop {
        while running < config.parallel && next < config.urls.len() {
            let index = next + 1;
            let url = Url::parse(&config.urls[index - 1]).expect("checked up front");
            let (dir, timeout, done_tx) = (config.dir.clone(), config.timeout, done_tx.clone());
            let spawned = thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let outcome = fetch_blocking(index, &url, &dir, timeout, fault);
                    let _ = done_tx.send((index, outcome));
                });
            match spawned {
                Ok(_) => {}
                // Out of threads (RLIMIT_NPROC): wait for one to end, then retry.
                Err(_) if running > 0 => break,
                Err(_) => {
                    let outcome = failed(&config.dir, index, "thread");
                    tally.count(&outcome);
                    out.report(index, &config.urls[index - 1], &outcome)?;
                    next = index;
                    continue;
                }
            }
            next = index;
            running += 1;
        }
        if running == 0 {
            return Ok(tally);
        }
        let (index, outcome) = done_rx.recv().expect("a fetch thread ends by sending");
        running -= 1;
        tally.count(&outcome);
        out.report(index, &config.urls[index - 1], &outcome)?;
    }
}

fn fetch_blocking(index: usize, url: &Url, dir: &Path, timeout: Duration, fault: Fault) -> Outcome {
    let deadline = Instant::now() + timeout;
    let sock = match Socket::new(Domain::IPV4, Type::STREAM, None) {
        Ok(sock) => sock,
        Err(_) => return failed(dir, index, "socket"),
    };
    if let Err(e) = sock.connect_timeout(&url.addr.into(), timeout) {
        return failed(dir, index, reason(&e));
    }
    let mut fetch = Fetch::connected(index, url, dir, fault, sock);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return fetch.fail("timeout");
        }
        // A blocking call waits at most until the deadline, then fails with EAGAIN.
        let _ = fetch.sock.set_read_timeout(Some(left));
        let _ = fetch.sock.set_write_timeout(Some(left));
        if let Step::Done(outcome) = fetch.advance(&mut buf) {
            return outcome;
        }
    }
}

fn failed(dir: &Path, index: usize, why: &'static str) -> Outcome {
    discard(dir, index);
    Outcome::Failed(why)
}
