//! The readiness loop: level-triggered epoll over every socket in progress, a sliding
//! window of N fetches, and each fetch's deadline in a `BTreeSet` ordered by time, so
//! that the earliest one, the set's first, is the epoll timeout.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use socket2::Socket;

use crate::args::{Url, usage_exit};
use crate::fetch::{Fetch, Step};
use crate::{Config, Fault, Outcome, Output, Tally};

/// The ShortTick fault's fixed wake-up interval.
const TICK: Duration = Duration::from_millis(10);

/// Every fetch in progress, keyed by its index (which is also its epoll token).
struct Loop<'a> {
    prog: &'a str,
    config: &'a Config,
    fault: Fault,
    epoll: Epoll,
    fetches: HashMap<usize, Fetch>,
    deadlines: BTreeSet<(Instant, usize)>,
    /// The KeepsSockets fault's finished sockets, closed only at exit.
    kept: Vec<Socket>,
    program_start: Instant,
    tally: Tally,
}

/// Runs every fetch of `config`, reporting each on `out`. Err: stdout failed.
pub fn run(prog: &str, config: &Config, fault: Fault, out: &mut Output) -> io::Result<Tally> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let mut lp = Loop {
        prog,
        config,
        fault,
        epoll,
        fetches: HashMap::new(),
        deadlines: BTreeSet::new(),
        kept: Vec::new(),
        program_start: Instant::now(),
        tally: Tally::default(),
    };
    let result = lp.run(out);
    if result.is_err() {
        // stdout is gone: stop, and leave no partial file behind.
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
        let mut events = vec![EpollEvent::empty(); 256];
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
            let ready = match self.epoll.wait(&mut events, self.timeout()) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(e.into()),
            };
            for event in &events[..ready] {
                let index = event.data() as usize;
                // LT: a fetch ended earlier in this round simply is not here any more.
                let Some(fetch) = self.fetches.get_mut(&index) else {
                    continue;
                };
                let was_connecting = matches!(fetch.stage, crate::fetch::Stage::Connecting);
                match fetch.advance(&mut buf) {
                    Step::Done(outcome) => self.end(index, outcome, out)?,
                    Step::Pending => self.after_step(index, was_connecting)?,
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

    /// The epoll timeout: until the earliest deadline (rounded up, so that the loop
    /// never wakes just before it and spins), or none when no deadline is pending.
    fn timeout(&self) -> EpollTimeout {
        let left = self.deadlines.first().map(|&(deadline, _)| {
            let left = deadline.saturating_duration_since(Instant::now());
            left + Duration::from_nanos(999_999)
        });
        let left = match (self.fault, left) {
            // The mistake: a fixed short tick, whatever the deadlines.
            (Fault::ShortTick, left) => Some(left.map_or(TICK, |left| left.min(TICK))),
            (_, left) => left,
        };
        match left {
            None => EpollTimeout::NONE,
            Some(left) => {
                let ms = left.as_millis().min(i32::MAX as u128) as i32;
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
            }
        }
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
        let deadline = match self.fault {
            Fault::GlobalDeadline => self.program_start + self.config.timeout,
            _ => fetch.started + self.config.timeout,
        };
        let event = EpollEvent::new(interest(&fetch), index as u64);
        if let Err(e) = self.epoll.add(&fetch.sock, event) {
            let mut fetch = fetch;
            let outcome = fetch.fail(if e == Errno::ENOMEM {
                "memory"
            } else {
                "epoll"
            });
            return self.report(index, &outcome, out);
        }
        self.deadlines.insert((deadline, index));
        self.fetches.insert(index, fetch);
        // A connect that succeeded at once is writable now: the loop's first round sends.
        self.after_step(index, true)
    }

    /// After a turn that did not end fetch `index`: watch what it now waits for.
    fn after_step(&mut self, index: usize, was_connecting: bool) -> io::Result<()> {
        let fetch = &self.fetches[&index];
        if self.fault == Fault::ConnectDeadline
            && was_connecting
            && !matches!(fetch.stage, crate::fetch::Stage::Connecting)
        {
            // The mistake: once connected, no deadline at all.
            self.deadlines.retain(|&(_, i)| i != index);
        }
        let mut event = EpollEvent::new(interest(fetch), index as u64);
        // LT epoll keeps reporting a writable socket: stop asking once the request is out.
        self.epoll.modify(&fetch.sock, &mut event)?;
        Ok(())
    }

    /// Fetch `index` ended with `outcome`: close its socket at once, report it.
    fn end(&mut self, index: usize, outcome: Outcome, out: &mut Output) -> io::Result<()> {
        if let Some(fetch) = self.fetches.remove(&index) {
            self.deadlines.remove(&(self.deadline_of(&fetch), index));
            let _ = self.epoll.delete(&fetch.sock);
            if self.fault == Fault::KeepsSockets {
                // The mistake: the finished socket stays open until the program ends.
                self.kept.push(fetch.sock);
            }
        }
        self.report(index, &outcome, out)
    }

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
fn interest(f: &Fetch) -> EpollFlags {
    if f.wants_write() {
        EpollFlags::EPOLLOUT
    } else {
        EpollFlags::EPOLLIN
    }
}
