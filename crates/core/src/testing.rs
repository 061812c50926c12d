//! Helpers for tests of stages and emitters (here and in other crates): records without a stream.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{TimeZone, Utc};

use crate::record::{Position, Record, SequenceNumber};

/// A record of `shard` whose sequence number is derived from `n` (increasing with `n`), with an arrival
/// time of `n` seconds after 2026-01-01T00:00:00Z.
pub fn record(shard: &str, n: u64, data: &[u8]) -> Record {
    Record {
        data: Bytes::copy_from_slice(data),
        partition_key: Arc::from(format!("pk-{n}")),
        position: Position::new(sequence(n), 0),
        approximate_arrival: Utc.timestamp_opt(1_767_225_600 + n as i64, 0).single(),
        shard_id: Arc::from(shard),
        stream: Arc::from("test-stream"),
    }
}

/// A sequence number that grows with `n`, shaped like a real one (56 digits).
pub fn sequence(n: u64) -> SequenceNumber {
    // 36 fixed digits then a 20-digit zero-padded counter: equal lengths compare by counter.
    let text = format!("4959033827149025660855969253836157{:022}", n);
    SequenceNumber::new(text).unwrap_or_else(|_| unreachable!("digits only, no leading zero"))
}
