//! Buffers: where items wait until a batch is worth emitting.
//!
//! A batch closes when it holds `max_records` items, when its emitted bytes reach `max_bytes`, when the
//! next item would push it past `max_bytes` (so a batch never exceeds the byte limit unless a single item
//! does), or when `max_age` has passed since its first item arrived. The count and byte checks run on every
//! item; the age check runs on a real timer in the pipeline, so an idle buffer flushes with no new record.

use std::time::Duration;

use tokio::time::Instant;

use crate::batch::Envelope;
use crate::item::EmittedSize;

/// Default batch size in items.
pub const DEFAULT_MAX_RECORDS: usize = 500;
/// Default batch size in emitted bytes (5 MiB).
pub const DEFAULT_MAX_BYTES: usize = 5 * 1024 * 1024;
/// Default age after which a non-empty buffer flushes.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30);

/// When a batch closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferLimits {
    /// Items per batch (at least 1).
    pub max_records: usize,
    /// Emitted bytes per batch (at least 1); a single larger item forms a batch of its own.
    pub max_bytes: usize,
    /// Time from a batch's first item to its flush.
    pub max_age: Duration,
}

impl Default for BufferLimits {
    fn default() -> Self {
        Self {
            max_records: DEFAULT_MAX_RECORDS,
            max_bytes: DEFAULT_MAX_BYTES,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// Holds items until a batch closes. The pipeline keeps one per lane (per shard, or one for all shards
/// with cross-shard batching).
pub trait Buffer<I>: Send {
    /// Adds an item. Every batch this closes is appended to `closed`, oldest first: possibly the items
    /// before it (the new item would cross the byte limit) and then possibly a batch ending with it.
    fn push(&mut self, entry: Envelope<I>, now: Instant, closed: &mut Vec<Vec<Envelope<I>>>);

    /// When the current batch must flush by age; `None` when empty.
    fn deadline(&self) -> Option<Instant>;

    /// Takes every buffered item (for an age flush, a shard end or shutdown).
    fn take(&mut self) -> Vec<Envelope<I>>;

    /// Items buffered.
    fn len(&self) -> usize;

    /// Whether nothing is buffered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Emitted bytes buffered.
    fn bytes(&self) -> usize;
}

/// The in-memory buffer implementing [`BufferLimits`].
#[derive(Debug)]
pub struct MemoryBuffer<I> {
    limits: BufferLimits,
    items: Vec<Envelope<I>>,
    bytes: usize,
    opened_at: Option<Instant>,
}

impl<I> MemoryBuffer<I> {
    /// An empty buffer; limits below 1 are raised to 1.
    pub fn new(limits: BufferLimits) -> Self {
        let limits = BufferLimits {
            max_records: limits.max_records.max(1),
            max_bytes: limits.max_bytes.max(1),
            max_age: limits.max_age,
        };
        Self {
            limits,
            items: Vec::new(),
            bytes: 0,
            opened_at: None,
        }
    }

    fn close(&mut self) -> Vec<Envelope<I>> {
        self.bytes = 0;
        self.opened_at = None;
        std::mem::take(&mut self.items)
    }
}

impl<I: EmittedSize + Send> Buffer<I> for MemoryBuffer<I> {
    fn push(&mut self, entry: Envelope<I>, now: Instant, closed: &mut Vec<Vec<Envelope<I>>>) {
        let size = entry.item.emitted_size();
        if !self.items.is_empty() && self.bytes + size > self.limits.max_bytes {
            closed.push(self.close());
        }
        if self.items.is_empty() {
            self.opened_at = Some(now);
            self.items.reserve(self.limits.max_records.min(1024));
        }
        self.items.push(entry);
        self.bytes += size;
        if self.items.len() >= self.limits.max_records || self.bytes >= self.limits.max_bytes {
            closed.push(self.close());
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.limits.max_age)
    }

    fn take(&mut self) -> Vec<Envelope<I>> {
        self.close()
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Origin;
    use crate::testing::record;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn env(size: usize, n: u64) -> Envelope<Bytes> {
        Envelope::new(
            Bytes::from(vec![b'x'; size]),
            Origin::new(record("s", n, b"")),
        )
    }

    fn run(limits: BufferLimits, sizes: &[usize]) -> (Vec<Vec<usize>>, Vec<usize>) {
        let mut buf = MemoryBuffer::new(limits);
        let mut closed = Vec::new();
        let now = Instant::now();
        for (n, s) in sizes.iter().enumerate() {
            buf.push(env(*s, n as u64), now, &mut closed);
        }
        let sizes_of = |b: &Vec<Envelope<Bytes>>| b.iter().map(|e| e.item.len()).collect();
        let batches = closed.iter().map(sizes_of).collect();
        let rest = sizes_of(&buf.take());
        (batches, rest)
    }

    proptest! {
        /// Every closed batch is within the limits, and was closed exactly at a limit: it is full by
        /// count, full by bytes, or the next item would have crossed the byte limit. Nothing is lost or
        /// reordered.
        #[test]
        fn batches_close_exactly_at_the_limits(
            max_records in 1usize..20,
            max_bytes in 1usize..400,
            sizes in proptest::collection::vec(0usize..120, 0..200),
        ) {
            let limits = BufferLimits { max_records, max_bytes, max_age: Duration::from_secs(60) };
            let (batches, rest) = run(limits, &sizes);
            let mut seen: Vec<usize> = Vec::new();
            for (i, b) in batches.iter().enumerate() {
                let bytes: usize = b.iter().sum();
                prop_assert!(!b.is_empty());
                prop_assert!(b.len() <= max_records);
                prop_assert!(bytes <= max_bytes || b.len() == 1, "batch over the byte limit");
                let next = batches.get(i + 1).and_then(|n| n.first()).or(rest.first());
                let full = b.len() == max_records
                    || bytes >= max_bytes
                    || next.is_some_and(|n| bytes + n > max_bytes);
                prop_assert!(full, "batch {:?} closed before a limit", b);
                seen.extend(b);
            }
            // The remainder is below every limit.
            let rest_bytes: usize = rest.iter().sum();
            prop_assert!(rest.len() < max_records);
            prop_assert!(rest.is_empty() || rest_bytes < max_bytes);
            seen.extend(&rest);
            prop_assert_eq!(seen, sizes);
        }

        /// With a count limit alone, batches are exactly `max_records` long.
        #[test]
        fn count_limit_is_exact(max_records in 1usize..50, n in 0usize..500) {
            let limits = BufferLimits { max_records, max_bytes: usize::MAX, max_age: Duration::from_secs(60) };
            let (batches, rest) = run(limits, &vec![10; n]);
            prop_assert!(batches.iter().all(|b| b.len() == max_records));
            prop_assert_eq!(batches.len(), n / max_records);
            prop_assert_eq!(rest.len(), n % max_records);
        }
    }

    #[test]
    fn an_oversized_item_forms_its_own_batch() {
        let limits = BufferLimits {
            max_records: 10,
            max_bytes: 100,
            max_age: Duration::from_secs(1),
        };
        let (batches, rest) = run(limits, &[30, 500, 30]);
        assert_eq!(batches, vec![vec![30], vec![500]]);
        assert_eq!(rest, vec![30]);
    }

    #[test]
    fn deadline_counts_from_the_first_item() {
        let limits = BufferLimits {
            max_records: 10,
            max_bytes: 100,
            max_age: Duration::from_secs(5),
        };
        let mut buf = MemoryBuffer::new(limits);
        assert_eq!(buf.deadline(), None);
        let t0 = Instant::now();
        let mut closed = Vec::new();
        buf.push(env(1, 0), t0, &mut closed);
        buf.push(env(1, 1), t0 + Duration::from_secs(3), &mut closed);
        assert_eq!(buf.deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(buf.take().len(), 2);
        assert_eq!(buf.deadline(), None);
    }
}
