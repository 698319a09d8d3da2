//! The loop: one thread, one readiness call over the sockets of every fetch
//! in progress, a sliding window of at most N fetches, a deadline per fetch.
//!
//! The skeleton uses `poll` (nix::poll): the set of sockets changes every
//! round (fetches end, new ones start, a socket waits for writability, then
//! for reading), and poll takes the whole set anew each call. `select`
//! would not do: N goes up to 1,000, a socket and a file each, so fd
//! numbers reach about 2,000, and select cannot watch an fd at or above
//! FD_SETSIZE (1024).

use crate::fetch::Fetch;
use crate::given::{Config, Failure, Outcome, Report};
use labkit::OrFail;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::time::Instant;

/// The loop's one read buffer, shared by every fetch: a fetch keeps only
/// its header until it is complete, and its body goes straight to its file.
const READ_SIZE: usize = 64 * 1024;

pub struct Client {
    config: Config,
    /// How many URLs have been started: the next fetch is `started + 1`.
    started: usize,
    /// The fetches in progress, at most `config.parallel`.
    fetches: Vec<Fetch>,
    report: Report,
    scratch: Vec<u8>,
}

impl Client {
    pub fn new(config: Config) -> Client {
        Client {
            config,
            started: 0,
            fetches: Vec::new(),
            report: Report::new(),
            scratch: vec![0; READ_SIZE],
        }
    }

    /// Runs every fetch, then `done ok=K failed=F` and exits.
    pub fn run(mut self) -> ! {
        // TODO 1: the loop. Each round: `start_fetches`; if no fetch is in
        //    progress any more, leave the loop; else `wait` for readiness and
        //    `serve` what it returns. After the loop, `self.report.done()`.
        todo!("TODO 1: the loop in Client::run, src/client.rs")
    }

    /// The sliding window: URLs start in command-line order until N fetches
    /// are in progress. Called every round, so the next one starts as soon
    /// as one ends, not when a whole batch has.
    fn start_fetches(&mut self) {
        // TODO 2: while fewer than `self.config.parallel` fetches are in
        //    progress and URLs are left: `self.started += 1` (fetch i is
        //    the i-th URL, counting from 1), `Fetch::start` it and push it
        //    onto `self.fetches`; if it fails at once, report it with
        //    `self.report(&[(i, Outcome::Failed(why))])`.
        todo!("TODO 2: the sliding window in Client::start_fetches, src/client.rs")
    }

    /// Sleeps in `poll` until a socket is ready or the earliest deadline;
    /// returns each fetch's readiness, in the order of `self.fetches`.
    fn wait(&self) -> Vec<PollFlags> {
        // TODO 3: one `PollFd::new(fetch.fd(), fetch.interest())` per fetch
        //    in progress, rebuilt every round, then `poll(&mut fds, timeout)`:
        //    `PollTimeout::NONE` for now, `self.timeout()` once you write
        //    TODO 11. EINTR: nothing ready; another error: `or_fail("poll")`.
        //    Return each fd's `revents()` (`None` as `PollFlags::empty()`).
        todo!("TODO 3: the readiness call in Client::wait, src/client.rs")
    }

    /// Until the earliest deadline, rounded UP to whole milliseconds.
    fn timeout(&self) -> PollTimeout {
        // TODO 11: the time left until the earliest `fetch.deadline`
        //    (`saturating_duration_since(Instant::now())`), in whole ms
        //    rounded UP (`as_nanos().div_ceil(1_000_000)`): rounded down,
        //    poll would wake just before the deadline, find nothing to do,
        //    and spin with timeouts of 0 until it passes. Then in `serve`,
        //    end every fetch still in progress past its deadline with
        //    `Outcome::Failed(Failure::Timeout)`, ready or not (a server that
        //    trickles a byte at a time makes its socket ready every round).
        todo!("TODO 11: the earliest deadline in Client::timeout, src/client.rs")
    }

    /// Moves every ready fetch on, ends those past their deadline, and
    /// reports the ended ones. An ended fetch's socket and file close at
    /// once: the fds in use stay at 2N + a few, however many URLs.
    fn serve(&mut self, ready: &[PollFlags]) {
        // TODO 4: for each fetch in progress and its readiness (take
        //    `self.fetches` with `std::mem::take` and zip it with `ready`):
        //    if any event came, `fetch.on_ready(&mut self.scratch)`. A fetch
        //    that ended: `fetch.finish(outcome)` (this closes its socket and
        //    file now), and its line goes in a list reported at the end with
        //    `self.report(&ended)`; one still in progress goes back into
        //    `self.fetches`, in the same order. (Deadlines: TODO 11.)
        todo!("TODO 4: one round of work in Client::serve, src/client.rs")
    }

    /// One line per ended fetch, flushed at once. If stdout's reader is
    /// gone, the fetches in progress are abandoned (no file left) and the
    /// program exits 1.
    fn report(&mut self, ended: &[(usize, Outcome)]) {
        for &(i, outcome) in ended {
            if let Err(err) = self.report.ended(i, &self.config.urls[i - 1], outcome) {
                for fetch in self.fetches.drain(..) {
                    fetch.finish(Outcome::Failed(Failure::Other("stopped")));
                }
                Report::stdout_failed(err)
            }
        }
    }
}
