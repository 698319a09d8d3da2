//! The readiness loop: one readiness call (level-triggered epoll; select for the Select
//! fault) over every socket in progress, a sliding window of N fetches, and each
//! fetch's deadline in a `BTreeSet` ordered by time, so that the earliest one, the
//! set's first, is the readiness call's timeout.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::args::{Url, usage_exit};
use crate::fetch::{Fetch, Stage, Step};
use crate::poller::{Poller, Want};
use crate::{Config, Fault, Outcome, Output, Tally};

/// The ShortTick fault's fixed wake-up interval.
const TICK: Duration = Duration::from_millis(10);

/// Every fetch in progress, keyed by its index (which is also its readiness token).
struct Loop<'a> {
    prog: &'a str,
    config: &'a Config,
    fault: Fault,
    poller: Poller,
    fetches: HashMap<usize, Fetch>,
    deadlines: BTreeSet<(Instant, usize)>,
    /// The KeepsSockets fault's finished sockets, closed only at exit.
    kept: Vec<Socket>,
    program_start: Instant,
    tally: Tally,
}

/// Runs every fetch of `config`, reporting each on `out`. Err: stdout failed.
pub fn run(prog: &str, config: &Config, fault: Fault, out: &mut Output) -> io::Result<Tally> {
    let mut lp = Loop {
        prog,
        config,
        fault,
        poller: Poller::new(fault == Fault::Select)?,
        fetches: HashMap::new(),
        deadlines: BTreeSet::new(),
        kept: Vec::new(),
        program_start: Instant::now(),
        tally: Tally::default(),
    };
    let result = lp.run(out);
    if result.is_err() {
        // stdout is gone (or select is out of room): stop, leave no partial file behind.
        for fetch in lp.fetches.values_mut() {
            fetch.fail("stopped");
        }
    }
    result.map(|()| lp.tally)
}

impl Loop<'_> {
    fn run(&mut self, out: &mut Output) -> io::Result<()> {
        let limit = match self.fault {
            Fault::OneAtATime => 1,
            Fault::NoLimit => usize::MAX,
            _ => self.config.parallel,
        };
        let urls = &self.config.urls;
        let mut next = 0;
        let mut ready = Vec::new();
        // One receive buffer for every fetch: a fetch's memory is its header at most.
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // The sliding window: whenever a fetch ends, the next one starts (the
            // Batches fault waits until the whole window has ended).
            let may_start = self.fault != Fault::Batches || self.fetches.is_empty();
            while may_start && self.fetches.len() < limit && next < urls.len() {
                next += 1;
                self.start(next, out)?;
            }
            if self.fetches.is_empty() && next == urls.len() {
                return Ok(());
            }
            self.poller.wait(self.timeout(), &mut ready)?;
            for &index in &ready {
                // LT: a fetch ended earlier in this round simply is not here any more.
                let Some(fetch) = self.fetches.get_mut(&index) else {
                    continue;
                };
                let (was_connecting, wanted) = (connecting(fetch), want(fetch));
                match fetch.advance(&mut buf) {
                    Step::Done(outcome) => self.end(index, outcome, out)?,
                    Step::Pending => self.after_step(index, was_connecting, wanted)?,
                }
            }
            let now = Instant::now();
            while let Some(&(deadline, index)) = self.deadlines.first() {
                if deadline > now {
                    break;
                }
                let outcome = self.fetches.get_mut(&index).map(|f| f.fail("timeout"));
                self.end(index, outcome.unwrap_or(Outcome::Failed("timeout")), out)?;
            }
        }
    }

    /// The readiness call's timeout: until the earliest deadline (rounded up to a
    /// whole millisecond, so that the loop never wakes just before it and spins), or
    /// none when no deadline is pending.
    fn timeout(&self) -> Option<Duration> {
        let left = self.deadlines.first().map(|&(deadline, _)| {
            let left = deadline.saturating_duration_since(Instant::now());
            Duration::from_millis(left.as_nanos().div_ceil(1_000_000) as u64)
        });
        if self.fault == Fault::ShortTick {
            // The mistake: a fixed short tick, whatever the deadlines.
            return Some(left.map_or(TICK, |left| left.min(TICK)));
        }
        left
    }

    /// Starts fetch `index` and watches its socket, or reports it ended at once.
    fn start(&mut self, index: usize, out: &mut Output) -> io::Result<()> {
        let text = &self.config.urls[index - 1];
        // Checked up front already, except by the LazyUrls fault, whose mistake
        // surfaces here, after the fetches before it have connected.
        let url = Url::parse(text).unwrap_or_else(|why| usage_exit(self.prog, &why));
        let fetch = match Fetch::start(index, &url, &self.config.dir, self.fault) {
            Ok(fetch) => fetch,
            Err(outcome) => return self.report(index, &outcome, out),
        };
        let deadline = self.deadline_of(&fetch);
        // A connect that succeeded at once waits for writability too: its socket is
        // writable now, so the loop's next round sends.
        if let Err(e) = self.poller.add(fetch.sock.as_fd(), index, want(&fetch)) {
            let mut fetch = fetch;
            let outcome = fetch.fail("poll");
            if self.fault == Fault::Select {
                // select cannot go on: stop (one line on stderr, exit 1).
                return Err(e);
            }
            return self.report(index, &outcome, out);
        }
        // (The ConnectDeadline fault: no deadline for a connect that succeeded at once.)
        if self.fault != Fault::ConnectDeadline || connecting(&fetch) {
            self.deadlines.insert((deadline, index));
        }
        self.fetches.insert(index, fetch);
        Ok(())
    }

    /// After a turn that did not end fetch `index`, which was connecting or not and
    /// waited for `wanted`: watch what it waits for now.
    fn after_step(&mut self, index: usize, was_connecting: bool, wanted: Want) -> io::Result<()> {
        let fetch = &self.fetches[&index];
        if self.fault == Fault::ConnectDeadline && was_connecting && !connecting(fetch) {
            // The mistake: once connected, no deadline at all.
            self.deadlines.remove(&(self.deadline_of(fetch), index));
        }
        if want(fetch) == wanted {
            return Ok(());
        }
        // A level-triggered call keeps reporting a writable socket: once the request
        // is out, wait for input only.
        self.poller.modify(fetch.sock.as_fd(), index, want(fetch))
    }

    /// Fetch `index` ended with `outcome`: close its socket at once, report it.
    fn end(&mut self, index: usize, outcome: Outcome, out: &mut Output) -> io::Result<()> {
        if let Some(fetch) = self.fetches.remove(&index) {
            self.deadlines.remove(&(self.deadline_of(&fetch), index));
            self.poller.delete(fetch.sock.as_fd(), index);
            if self.fault == Fault::KeepsSockets {
                // The mistake: the finished socket stays open until the program ends.
                self.kept.push(fetch.sock);
            }
        }
        self.report(index, &outcome, out)
    }

    /// When `fetch` fails with `timeout`: T after its connect started (the
    /// GlobalDeadline fault: T after the program started).
    fn deadline_of(&self, fetch: &Fetch) -> Instant {
        match self.fault {
            Fault::GlobalDeadline => self.program_start + self.config.timeout,
            _ => fetch.started + self.config.timeout,
        }
    }

    fn report(&mut self, index: usize, outcome: &Outcome, out: &mut Output) -> io::Result<()> {
        self.tally.count(outcome);
        out.report(index, &self.config.urls[index - 1], outcome)
    }
}

/// What fetch `f` waits for: writability while connecting or sending, else input.
fn want(f: &Fetch) -> Want {
    if f.wants_write() {
        Want::Write
    } else {
        Want::Read
    }
}

fn connecting(f: &Fetch) -> bool {
    matches!(f.stage, Stage::Connecting)
}
