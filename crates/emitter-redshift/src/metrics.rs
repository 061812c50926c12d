//! Counters of one Redshift emitter, for logs, tests and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

/// A point-in-time copy of the emitter's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedshiftMetricsSnapshot {
    /// `BatchExecuteStatement` calls (loads and start-up checks).
    pub statements: u64,
    /// `DescribeStatement` calls made while waiting.
    pub polls: u64,
    /// Loads committed with new rows.
    pub loads: u64,
    /// Rows inserted into the target table.
    pub rows_loaded: u64,
    /// Loads whose file was already in the loaded-files table (redelivered after a crash): nothing
    /// inserted.
    pub loads_skipped: u64,
    /// Loads that failed permanently (their records dead-lettered).
    pub loads_failed: u64,
}

/// Live counters, one per field of [`RedshiftMetricsSnapshot`].
#[derive(Debug, Default)]
pub(crate) struct RedshiftMetrics {
    pub(crate) statements: AtomicU64,
    pub(crate) polls: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) rows_loaded: AtomicU64,
    pub(crate) loads_skipped: AtomicU64,
    pub(crate) loads_failed: AtomicU64,
}

impl RedshiftMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RedshiftMetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RedshiftMetricsSnapshot {
            statements: get(&self.statements),
            polls: get(&self.polls),
            loads: get(&self.loads),
            rows_loaded: get(&self.rows_loaded),
            loads_skipped: get(&self.loads_skipped),
            loads_failed: get(&self.loads_failed),
        }
    }
}
