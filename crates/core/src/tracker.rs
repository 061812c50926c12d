//! The checkpoint tracker: per shard, the highest position below which every record is delivered.
//!
//! Records enter in shard order, each with the number of items it produced that are still outstanding
//! (0 for a record that was filtered out entirely). Items are acknowledged in any order — batches of one
//! shard may be retried, batches of many shards complete concurrently — and the checkpointable position
//! only ever advances over a contiguous prefix of fully delivered records. A dead-lettered item counts as
//! delivered once the dead-letter target has durably taken it.
//!
//! Beyond the delivered prefix the tracker also knows how far into the first undelivered record
//! delivery got: the items of a record split over several batches are acknowledged batch by batch,
//! in order (one batch of a shard is in flight at a time), so the acknowledged items of that record
//! are its first ones. [`ShardTracker::partial`] names the last of them, so a restart can resume
//! inside the record instead of delivering its first items again.

use std::collections::VecDeque;

use crate::record::{ItemPosition, Position};

#[derive(Debug)]
struct Pending {
    position: Position,
    outstanding: u32,
    /// The highest item index acknowledged so far.
    acked: Option<u32>,
}

/// Delivery state of one shard; see the module documentation.
#[derive(Debug, Default)]
pub struct ShardTracker {
    /// Ordinal of `pending[0]`.
    base: u64,
    /// Ordinal the next record will get.
    next: u64,
    pending: VecDeque<Pending>,
    delivered: Option<Position>,
}

impl ShardTracker {
    /// A tracker with nothing delivered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker whose first record gets `ordinal` (a shard re-opened after being abandoned continues
    /// its ordinals, so acknowledgements of the abandoned records can never match new ones).
    pub fn starting_at(ordinal: u64) -> Self {
        Self {
            base: ordinal,
            next: ordinal,
            ..Self::default()
        }
    }

    /// The ordinal the next [`track`](Self::track)ed record will receive.
    pub fn next_ordinal(&self) -> u64 {
        self.next
    }

    /// Registers the next record of the shard with `outstanding` items in flight; returns its ordinal.
    /// Positions must increase.
    pub fn track(&mut self, position: Position, outstanding: u32) -> u64 {
        let ordinal = self.next;
        self.next += 1;
        self.pending.push_back(Pending {
            position,
            outstanding,
            acked: None,
        });
        if outstanding == 0 {
            self.advance();
        }
        ordinal
    }

    /// Acknowledges `count` items of the record with `ordinal`, the highest of them with index
    /// `last_index` (`None` for a record acknowledged as a whole: the transformer rejected it and the
    /// dead-letter target took it). Returns whether the checkpointable position moved. Acknowledging
    /// an unknown or already complete record is ignored (it belongs to a lease this process lost and
    /// regained, or is a bug upstream; either way it must not move anything).
    pub fn ack(&mut self, ordinal: u64, count: u32, last_index: Option<u32>) -> bool {
        let Some(idx) = ordinal.checked_sub(self.base) else {
            return false;
        };
        let Some(p) = self.pending.get_mut(idx as usize) else {
            return false;
        };
        p.outstanding = p.outstanding.saturating_sub(count);
        if let Some(last_index) = last_index {
            p.acked = Some(p.acked.map_or(last_index, |a| a.max(last_index)));
        }
        idx == 0 && (p.outstanding == 0 && self.advance() || count > 0)
    }

    /// Whether the delivered position (with [`partial`](Self::partial)) is where the acknowledged
    /// batches end: no item of a later record is acknowledged yet. It is not while a record the
    /// transformer rejected waits for the dead-letter target and batches after it were acknowledged;
    /// progress stored then would name a place inside a batch, and a later reader could not re-form
    /// that batch.
    pub fn aligned(&self) -> bool {
        self.pending.iter().skip(1).all(|p| p.acked.is_none())
    }

    /// How far into the first undelivered record delivery got: its last acknowledged item, when some
    /// but not all of its items are acknowledged.
    pub fn partial(&self) -> Option<ItemPosition> {
        let head = self.pending.front()?;
        let acked = head.acked?;
        (head.outstanding > 0).then(|| ItemPosition::new(head.position.clone(), acked))
    }

    fn advance(&mut self) -> bool {
        let mut moved = false;
        while self.pending.front().is_some_and(|p| p.outstanding == 0) {
            if let Some(p) = self.pending.pop_front() {
                self.delivered = Some(p.position);
                self.base += 1;
                moved = true;
            }
        }
        moved
    }

    /// The highest position below which everything is delivered.
    pub fn delivered(&self) -> Option<&Position> {
        self.delivered.as_ref()
    }

    /// Whether every tracked record is delivered.
    pub fn is_drained(&self) -> bool {
        self.pending.is_empty()
    }

    /// Records not yet fully delivered.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SequenceNumber;
    use proptest::prelude::*;

    fn pos(n: u64) -> Position {
        Position::new(SequenceNumber::new((n + 1).to_string()).unwrap(), 0)
    }

    #[test]
    fn checkpoint_waits_for_the_oldest_record() {
        let mut t = ShardTracker::new();
        let a = t.track(pos(0), 2);
        let b = t.track(pos(1), 1);
        assert!(!t.ack(b, 1, Some(0)));
        assert_eq!(t.delivered(), None);
        assert!(t.ack(a, 1, Some(0)), "the head's progress moved");
        assert_eq!(t.partial(), Some(ItemPosition::new(pos(0), 0)));
        assert!(t.ack(a, 1, Some(1)));
        assert_eq!(t.partial(), None);
        assert_eq!(t.delivered(), Some(&pos(1)));
        assert!(t.is_drained());
    }

    #[test]
    fn filtered_records_advance_at_once_when_nothing_is_before_them() {
        let mut t = ShardTracker::new();
        t.track(pos(0), 0);
        assert_eq!(t.delivered(), Some(&pos(0)));
        let b = t.track(pos(1), 1);
        t.track(pos(2), 0);
        assert_eq!(t.delivered(), Some(&pos(0)));
        t.ack(b, 1, Some(0));
        assert_eq!(t.delivered(), Some(&pos(2)));
    }

    #[test]
    fn stale_acks_are_ignored() {
        let mut t = ShardTracker::new();
        let a = t.track(pos(0), 1);
        assert!(t.ack(a, 1, Some(0)));
        assert!(!t.ack(a, 1, Some(0)));
        assert!(!t.ack(99, 1, Some(0)));
        assert_eq!(t.delivered(), Some(&pos(0)));
    }

    proptest! {
        /// For any item counts and any acknowledgement order, the checkpoint is always the end of the
        /// longest fully-acknowledged prefix, and never moves backwards.
        #[test]
        fn checkpoint_is_the_longest_delivered_prefix(
            counts in proptest::collection::vec(0u32..4, 1..60),
            seed in any::<u64>(),
        ) {
            let mut t = ShardTracker::new();
            let mut acks = Vec::new();
            for (n, c) in counts.iter().enumerate() {
                let ord = t.track(pos(n as u64), *c);
                for _ in 0..*c { acks.push(ord); }
            }
            // Deterministic shuffle from the seed.
            let mut state = seed | 1;
            for i in (1..acks.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                acks.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let mut remaining = counts.clone();
            let mut last: Option<Position> = None;
            let expected = |remaining: &[u32]| {
                let k = remaining.iter().take_while(|c| **c == 0).count();
                (k > 0).then(|| pos(k as u64 - 1))
            };
            prop_assert_eq!(t.delivered().cloned(), expected(&remaining));
            for ord in acks {
                t.ack(ord, 1, Some(0));
                remaining[ord as usize] -= 1;
                let now = t.delivered().cloned();
                prop_assert_eq!(now.clone(), expected(&remaining));
                prop_assert!(now >= last);
                last = now;
            }
            prop_assert!(t.is_drained());
        }
    }
}
