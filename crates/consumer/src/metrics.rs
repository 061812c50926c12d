//! What the consumer engine reports about itself: per-shard progress and leases held. The connector
//! binary exports it to Prometheus and shows it in `replay`'s progress.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Progress of one shard read by this process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShardProgress {
    /// Records (user records, after KPL de-aggregation) handed to the processor.
    pub records_read: u64,
    /// `GetRecords` calls (or fan-out events) received.
    pub fetches: u64,
    /// Throttled calls.
    pub throttled: u64,
    /// How far the last page ended behind the tip, as Kinesis said.
    pub millis_behind_latest: Option<i64>,
    /// Arrival time of the last record read.
    pub last_arrival: Option<DateTime<Utc>>,
    /// When the shard was last fetched.
    pub last_fetch: Option<DateTime<Utc>>,
    /// Whether the last fetch found the shard at its tip.
    pub at_tip: bool,
    /// Whether the shard was read to its end.
    pub ended: bool,
}

impl ShardProgress {
    /// Age of the last record read, in milliseconds (how far behind in time the reader is).
    pub fn iterator_age_ms(&self, now: DateTime<Utc>) -> Option<i64> {
        if self.at_tip {
            return Some(0);
        }
        self.last_arrival
            .map(|t| (now - t).num_milliseconds().max(0))
    }
}

/// The engine's live counters; see the module documentation.
#[derive(Debug, Default)]
pub struct ConsumerMetrics {
    shards: Mutex<BTreeMap<String, ShardProgress>>,
    leases_held: AtomicU64,
    started: AtomicBool,
}

impl ConsumerMetrics {
    fn with_shard(&self, shard: &str, f: impl FnOnce(&mut ShardProgress)) {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        f(shards.entry(shard.to_owned()).or_default());
    }

    /// Records a page read from `shard`.
    pub(crate) fn on_page(
        &self,
        shard: &str,
        records: usize,
        millis_behind: Option<i64>,
        last_arrival: Option<DateTime<Utc>>,
    ) {
        self.with_shard(shard, |s| {
            s.fetches += 1;
            s.records_read += records as u64;
            s.millis_behind_latest = millis_behind;
            if last_arrival.is_some() {
                s.last_arrival = last_arrival;
            }
            s.last_fetch = Some(Utc::now());
            s.at_tip = records == 0 && millis_behind.unwrap_or(0) == 0;
        });
    }

    /// Records a throttled call.
    pub(crate) fn on_throttle(&self, shard: &str) {
        self.with_shard(shard, |s| s.throttled += 1);
    }

    /// Records that `shard` was read to its end.
    pub(crate) fn on_end(&self, shard: &str) {
        self.with_shard(shard, |s| s.ended = true);
    }

    /// Forgets a shard this process no longer reads.
    pub(crate) fn forget(&self, shard: &str) {
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(shard);
    }

    pub(crate) fn set_leases_held(&self, n: usize) {
        self.leases_held.store(n as u64, Ordering::Relaxed);
        self.started.store(true, Ordering::Relaxed);
    }

    /// Leases this worker holds.
    pub fn leases_held(&self) -> u64 {
        self.leases_held.load(Ordering::Relaxed)
    }

    /// Whether the worker has scanned its leases at least once.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Progress of every shard this process reads.
    pub fn shards(&self) -> BTreeMap<String, ShardProgress> {
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
