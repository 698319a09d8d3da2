//! The loop: one thread, one `poll` over the sockets of every fetch in
//! progress, a sliding window of at most N fetches, a deadline per fetch.
//!
//! Why `poll`: the set of sockets changes every round (fetches end, new ones
//! start, a socket waits for writability, then for reading), and poll takes
//! the whole set anew each call, rebuilt from the fetches in progress: no
//! registrations to keep in step, as epoll would need. `select` is out:
//! N goes up to 1,000, a socket and a file each, so fd numbers reach about
//! 2,000, and select cannot watch an fd at or above FD_SETSIZE (1024). And
//! N sockets per call is cheap enough at this scale for poll.

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
        loop {
            self.start_fetches();
            if self.fetches.is_empty() {
                break;
            }
            let ready = self.wait();
            self.serve(&ready);
        }
        self.report.done()
    }

    /// The sliding window: URLs start in command-line order until N fetches
    /// are in progress. Called every round, so the next one starts as soon
    /// as one ends, not when a whole batch has.
    fn start_fetches(&mut self) {
        while self.fetches.len() < self.config.parallel && self.started < self.config.urls.len() {
            self.started += 1;
            let (i, url) = (self.started, &self.config.urls[self.started - 1]);
            match Fetch::start(i, url, &self.config.out, self.config.timeout) {
                Ok(fetch) => self.fetches.push(fetch),
                // Nothing to clean: no file exists before the header ends.
                Err(why) => self.report(&[(i, Outcome::Failed(why))]),
            }
        }
    }

    /// Sleeps in `poll` until a socket is ready or the earliest deadline;
    /// returns each fetch's readiness, in the order of `self.fetches`.
    fn wait(&self) -> Vec<PollFlags> {
        let mut fds: Vec<PollFd> = self
            .fetches
            .iter()
            .map(|fetch| PollFd::new(fetch.fd(), fetch.interest()))
            .collect();
        match poll(&mut fds, self.timeout()) {
            // EINTR: nothing is ready; the caller checks the deadlines.
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => Err(err).or_fail("poll"),
        }
        fds.iter()
            .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
            .collect()
    }

    /// Until the earliest deadline, rounded UP to whole milliseconds: poll
    /// counts in ms, and waking a fraction of a ms before the deadline would
    /// find nothing to do and spin with timeouts of 0 until it passes.
    fn timeout(&self) -> PollTimeout {
        let earliest = self.fetches.iter().map(|fetch| fetch.deadline).min();
        let left = earliest.map_or(Default::default(), |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
        let ms = left.as_nanos().div_ceil(1_000_000);
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
    }

    /// Moves every ready fetch on, ends those past their deadline, and
    /// reports the ended ones. An ended fetch's socket and file close at
    /// once: the fds in use stay at 2N + a few, however many URLs.
    fn serve(&mut self, ready: &[PollFlags]) {
        let mut ended = Vec::new();
        for (mut fetch, &events) in std::mem::take(&mut self.fetches).into_iter().zip(ready) {
            let mut outcome = None;
            if !events.is_empty() {
                outcome = fetch.on_ready(&mut self.scratch);
            }
            // The deadline holds whatever the state, even for a socket that
            // is ready every round (a server trickling a byte at a time).
            if outcome.is_none() && Instant::now() >= fetch.deadline {
                outcome = Some(Outcome::Failed(Failure::Timeout));
            }
            match outcome {
                None => self.fetches.push(fetch),
                Some(outcome) => ended.push((fetch.index, fetch.finish(outcome))),
            }
        }
        self.report(&ended);
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
