//! web_client: fetches many URLs at once over HTTP/1.0, up to N in progress,
//! in one thread and one readiness loop.
//!
//! A client with one blocking socket at a time is simple and slow: each
//! fetch waits for the previous one, and one host that never answers holds
//! everything for minutes (a blocking `connect` waits for the handshake).
//! Here every socket is non-blocking from the start, `connect` only starts
//! the handshake, and one `poll` waits for all of them at once, with a
//! deadline per fetch.
//!
//! The files: `main.rs` (start-up), `given.rs` (the command line, the output
//! lines and the exit code, the same as the stub's), `client.rs` (the loop,
//! the sliding window, the deadlines), `fetch.rs` (one fetch: its state
//! machine, from the connect to the body's file).

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
