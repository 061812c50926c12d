//! Counters of one emitter, beside the pipeline's own (which count emit calls, retries and dead
//! letters): what went over the wire and how the cluster answered, item by item.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Live counters of an [`crate::ElasticsearchEmitter`]; see [`MetricsSnapshot`].
        #[derive(Debug, Default)]
        pub struct ElasticsearchMetrics {
            $( pub(crate) $name: AtomicU64, )*
        }

        /// A point-in-time copy of [`ElasticsearchMetrics`].
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct MetricsSnapshot {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl ElasticsearchMetrics {
            /// Reads every counter.
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }
    };
}

counters! {
    /// Bulk requests sent (answered or not).
    bulk_requests,
    /// Bytes of bulk request bodies sent.
    bulk_bytes,
    /// Bulk requests that failed as a whole (unreachable, timeout, 429/5xx/4xx status).
    request_failures,
    /// Bulk requests split in two after a 413 (body larger than the cluster accepts).
    splits,
    /// Items the cluster acknowledged (409 on `create` and 404 on `delete` included).
    items_ok,
    /// Items the cluster answered with a retryable status (429, 5xx, 409 outside `create`).
    items_retryable,
    /// Items rejected for good, by the cluster (mapping and parse errors) or before sending.
    items_permanent,
}

impl ElasticsearchMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
