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
            emit_latency: Histogram,
            failing_since_ms: AtomicU64,
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
    /// Items the emitter reported failed (retryable or permanent), counted per attempt.
    item_failures,
    /// Items (or records) durably written to the dead-letter target.
    dead_lettered,
    /// Checkpoints written (a boundary written with a checkpoint counts once).
    checkpoints,
    /// Checkpoint-store writes made to store a batch boundary before the batch was emitted.
    boundary_writes,
    /// Batches closed by `max_records`.
    batches_closed_by_count,
    /// Batches closed by `max_bytes`.
    batches_closed_by_bytes,
    /// Batches closed by `max_age`.
    batches_closed_by_age,
    /// Batches closed by a drain (shard finished or handed off, shutdown).
    batches_closed_by_drain,
    /// Batches closed early by `max_buffered_bytes`.
    batches_closed_by_pressure,
    /// Batches closed at a boundary stored by an earlier reader of the shard.
    batches_closed_at_boundary,
    /// Emitted bytes currently held in buffers and queues (a gauge).
    buffered_bytes,
}

impl PipelineMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records the duration of one emit call.
    pub(crate) fn observe_emit(&self, seconds: f64) {
        self.emit_latency.observe(seconds);
    }

    /// The emit latency histogram.
    pub fn emit_latency(&self) -> HistogramSnapshot {
        self.emit_latency.snapshot()
    }

    /// Marks the start (or end, `false`) of a run of failing emit attempts.
    pub(crate) fn set_failing(&self, failing: bool) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if failing {
            let _ = self.failing_since_ms.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else {
            self.failing_since_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Since when emits have been failing without a success (milliseconds since the epoch), if they are.
    pub fn failing_since_ms(&self) -> Option<u64> {
        Some(self.failing_since_ms.load(Ordering::Relaxed)).filter(|t| *t != 0)
    }
}

/// Upper bounds (seconds) of the emit latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A fixed-bucket histogram updated without locks.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A copy of a [`Histogram`]: per-bucket counts (not cumulative), the total count and the sum.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HistogramSnapshot {
    /// Observations in each bucket of [`LATENCY_BUCKETS`] (beyond the last: `count` minus their sum).
    pub buckets: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Reads the histogram.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}
