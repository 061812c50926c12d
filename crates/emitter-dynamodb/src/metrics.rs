//! Counters of one DynamoDB emitter, for logs, tests and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Live counters; see the field documentation of [`DynamoDbMetricsSnapshot`].
        #[derive(Debug, Default)]
        pub(crate) struct DynamoDbMetrics {
            $( pub(crate) $name: AtomicU64, )*
        }

        /// A point-in-time copy of the emitter's counters.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct DynamoDbMetricsSnapshot {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl DynamoDbMetrics {
            pub(crate) fn snapshot(&self) -> DynamoDbMetricsSnapshot {
                DynamoDbMetricsSnapshot { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }
    };
}

counters! {
    /// DynamoDB calls made (BatchWriteItem, PutItem, DeleteItem).
    requests,
    /// Writes DynamoDB applied (puts and deletes).
    items_written,
    /// Items not written because a newer record of the same key in the same batch was.
    items_superseded,
    /// Ordering-safe writes refused because a newer record's write was already stored.
    items_already_newer,
    /// Writes DynamoDB returned in `UnprocessedItems` (reported to the pipeline for a retry).
    items_unprocessed,
    /// Writes that failed retryably otherwise (throttling, 5xx, network).
    items_retryable,
    /// Writes DynamoDB refused (validation): dead-lettered.
    items_refused,
    /// Requests split in two to find a refused item.
    splits,
}

impl DynamoDbMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
