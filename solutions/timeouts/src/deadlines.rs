//! Idle deadlines for thousands of connections, cheap to keep up to date.
//!
//! Every connection has a deadline, "last activity + idle timeout", and the
//! server must know the earliest one before each wait. Scanning every
//! connection on every wakeup costs O(n) per wakeup; a min-heap gives the
//! earliest in O(1) and costs O(log n) per insertion.
//!
//! The trick that keeps activity cheap: a connection's heap entry is *not*
//! moved when bytes move (that would be O(n) in a binary heap). The server
//! only records the time of the last activity. When an entry comes due, the
//! server looks at that time: still idle, the connection is closed; active
//! since, the entry goes back into the heap with the new deadline ("lazy
//! refresh"). So each connection has at most one entry, and an active
//! connection costs one heap operation per idle period, not one per byte.
//! Entries of connections that have closed are dropped when they come due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Which connection a deadline belongs to: its slab token, and a serial number
/// that is never reused, because a token is reused once its connection closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    pub serial: u64,
    pub token: usize,
}

/// A min-heap of deadlines (std's BinaryHeap is a max-heap: hence `Reverse`).
#[derive(Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, Owner)>>,
}

impl Deadlines {
    pub fn push(&mut self, at: Instant, owner: Owner) {
        self.heap.push(Reverse((at, owner)));
    }

    /// The earliest deadline, if any. It may belong to a connection that has
    /// been active (or closed) since: waking for it is then a wasted wakeup,
    /// at most one per connection per idle period.
    pub fn earliest(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Owner> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, o))| o),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn owner(serial: u64) -> Owner {
        Owner {
            serial,
            token: serial as usize,
        }
    }

    #[test]
    fn earliest_first_whatever_the_insertion_order() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut deadlines = Deadlines::default();
        deadlines.push(t0 + ms(30), owner(3));
        deadlines.push(t0 + ms(10), owner(1));
        deadlines.push(t0 + ms(20), owner(2));
        assert_eq!(deadlines.earliest(), Some(t0 + ms(10)));
        assert_eq!(deadlines.pop_due(t0 + ms(5)), None);
        assert_eq!(deadlines.pop_due(t0 + ms(25)), Some(owner(1)));
        assert_eq!(deadlines.pop_due(t0 + ms(25)), Some(owner(2)));
        assert_eq!(deadlines.pop_due(t0 + ms(25)), None);
        assert_eq!(deadlines.len(), 1);
    }
}
