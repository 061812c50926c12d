//! What travels from the buffer to the emitter: items with their origin, and the batch context.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::record::{ItemPosition, Record, ShardId};

/// The record an item was made from, plus the pipeline's bookkeeping for it.
#[derive(Debug)]
pub struct Origin {
    record: Record,
    /// The record's place in its shard's delivery order within this process (for the checkpoint tracker).
    pub(crate) ordinal: u64,
}

impl Origin {
    /// An origin for `record`, as used by emitter tests that build batches by hand.
    pub fn new(record: Record) -> Arc<Self> {
        Arc::new(Self { record, ordinal: 0 })
    }

    pub(crate) fn tracked(record: Record, ordinal: u64) -> Arc<Self> {
        Arc::new(Self { record, ordinal })
    }

    /// The record.
    pub fn record(&self) -> &Record {
        &self.record
    }
}

/// An item on its way to the emitter, with the record it came from.
#[derive(Debug)]
pub struct Envelope<I> {
    /// The item to emit.
    pub item: I,
    /// The record it was made from (shared by every item of that record).
    pub origin: Arc<Origin>,
    /// The item's index among the items the transformer made of its record (0 for the first or only
    /// one); with the record's position it is the item's identity ([`ItemPosition`]).
    pub index: u32,
}

impl<I> Envelope<I> {
    /// An envelope for `item`, the first (or only) item made from the record of `origin`.
    pub fn new(item: I, origin: Arc<Origin>) -> Self {
        Self::with_index(item, origin, 0)
    }

    /// An envelope for `item`, the item `index` made from the record of `origin`.
    pub fn with_index(item: I, origin: Arc<Origin>, index: u32) -> Self {
        Self {
            item,
            origin,
            index,
        }
    }

    /// The record this item was made from.
    pub fn record(&self) -> &Record {
        &self.origin.record
    }

    /// The item's identity in its shard: its record's position and its index.
    pub fn item_position(&self) -> ItemPosition {
        ItemPosition::new(self.origin.record.position.clone(), self.index)
    }
}

/// The range of one shard's items inside a batch. Ranges are of items, not records: when a record's
/// items are split over two batches, each batch's range names the item indices it holds, so no two
/// batches of a shard ever have the same range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardRange {
    /// The shard.
    pub shard: ShardId,
    /// The first item of this shard in the batch.
    pub first: ItemPosition,
    /// The last item of this shard in the batch.
    pub last: ItemPosition,
    /// How many items of this shard the batch holds.
    pub items: usize,
}

impl ShardRange {
    /// The ranges of items (in shard order per shard), one per shard in order of first appearance.
    pub fn collect<'a, I: 'a>(items: impl Iterator<Item = &'a Envelope<I>>) -> Vec<ShardRange> {
        let mut shards: Vec<ShardRange> = Vec::new();
        let mut last_hit = 0usize;
        for env in items {
            let rec = env.record();
            let idx = if shards
                .get(last_hit)
                .is_some_and(|r| r.shard == rec.shard_id)
            {
                Some(last_hit)
            } else {
                shards.iter().position(|r| r.shard == rec.shard_id)
            };
            match idx {
                Some(i) => {
                    let r = &mut shards[i];
                    r.last = env.item_position();
                    r.items += 1;
                    last_hit = i;
                }
                None => {
                    let at = env.item_position();
                    shards.push(ShardRange {
                        shard: rec.shard_id.clone(),
                        first: at.clone(),
                        last: at,
                        items: 1,
                    });
                    last_hit = shards.len() - 1;
                }
            }
        }
        shards
    }
}

/// Where a batch comes from; lets emitters build deterministic keys and ids.
#[derive(Clone, Debug)]
pub struct BatchContext {
    /// The pipeline's name.
    pub pipeline: Arc<str>,
    /// The stream the records were read from.
    pub stream: Arc<str>,
    /// One range per shard present, in order of first appearance.
    pub shards: Vec<ShardRange>,
    /// 0 on the first try; n on the n-th retry (then the batch holds only the items being retried).
    pub attempt: u32,
}

/// Items handed to an emitter in one call.
#[derive(Debug)]
pub struct Batch<I> {
    /// Where the items come from.
    pub context: BatchContext,
    /// The items, in shard order (and in the order the records were read, per shard).
    pub items: Vec<Envelope<I>>,
}

impl<I> Batch<I> {
    /// A batch of `items` for `pipeline`, computing its context.
    pub fn new(pipeline: Arc<str>, items: Vec<Envelope<I>>, attempt: u32) -> Self {
        let stream = items
            .first()
            .map(|e| e.record().stream.clone())
            .unwrap_or_else(|| Arc::from(""));
        let shards = ShardRange::collect(items.iter());
        Self {
            context: BatchContext {
                pipeline,
                stream,
                shards,
                attempt,
            },
            items,
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch holds no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Arrival time of the first item's record, if known (S3 keys use it for their date path).
    pub fn first_arrival(&self) -> Option<DateTime<Utc>> {
        self.items
            .first()
            .and_then(|e| e.record().approximate_arrival)
    }
}
