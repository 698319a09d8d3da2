//! web_client: fetches many URLs at once over HTTP/1.0, up to N in progress,
//! in one thread and one readiness loop.
//!
//! Read the handout first: docs/labs/web_client.md. Grade your work with
//! `make grade LAB=web_client`.
//!
//! A client with one blocking socket at a time is simple and slow: each
//! fetch waits for the previous one, and one host that never answers holds
//! everything for minutes (a blocking `connect` waits for the handshake).
//! Here every socket is non-blocking from the start, `connect` only starts
//! the handshake, and one readiness call waits for all of them at once,
//! with a deadline per fetch.
//!
//! Given: the command line, the URLs and the request, the check that DIR is
//! writable, the output lines and the exit code (`given.rs`, the same file
//! as the solution's), start-up (below), and the skeleton of `client.rs`
//! and `fetch.rs`. Yours: the TODOs, numbered in the order to write them.
//!
//! 1 to 4. `client.rs`: the loop, the sliding window, the readiness call,
//!    one round of work.
//! 5 to 8. `fetch.rs`: starting a non-blocking connect, its end (SO_ERROR),
//!    sending the request, receiving.
//! 9. `fetch.rs`: the header: its end and the status line.
//! 10. `fetch.rs`: the body's file: streamed, renamed or removed.
//! 11. `client.rs`: the deadlines and the readiness call's timeout.

// Remove once you have written the TODOs: the skeleton's parameters and
// fields are unused until then.
#![allow(unused_variables, unused_mut, dead_code, unused_imports)]

mod client;
mod fetch;
mod given;

use given::Config;

fn main() {
    let config = Config::parse();
    // A socket and a body file per fetch in progress: 2N + a few fds.
    labkit::raise_fd_limit();
    // Before any connection: a client that cannot store what it fetches
    // should not fetch it.
    given::check_writable_dir(&config.out);
    client::Client::new(config).run()
}
