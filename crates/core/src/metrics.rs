//! Counters of a running pipeline, cheap to update on the hot path and readable at any time.
//!
//! The connector binary exports them to Prometheus; tests and `status` read [`MetricsSnapshot`]s.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Live counters of one pipeline; see the field documentation of [`MetricsSnapshot`].
        #[derive(Debug, Default)]
        pub struct PipelineMetrics {
            $( pub(crate) $name: AtomicU64, )*
        }

        /// A point-in-time copy of [`PipelineMetrics`].
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct MetricsSnapshot {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl PipelineMetrics {
            /// Reads every counter.
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }
    };
}

counters! {
    /// Records received from the source.
    records_in,
    /// Items the transformer produced.
    items_transformed,
    /// Items a filter dropped.
    items_filtered,
    /// Records the transformer failed on (each dead-lettered).
    transform_failures,
    /// Items the emitter acknowledged.
    items_emitted,
    /// Batches handed to the emitter (retries included).
    emit_calls,
    /// Retries of items or whole batches.
    retries,
    /// Items (or records) durably written to the dead-letter target.
    dead_lettered,
    /// Checkpoints written.
    checkpoints,
    /// Emitted bytes currently held in buffers and queues (a gauge).
    buffered_bytes,
}

impl PipelineMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
