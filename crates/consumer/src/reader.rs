//! The polling reader: `GetRecords` in a loop for one shard, within the service's limits.
//!
//! * At most one call per `poll_interval` (default 200 ms: the 5 calls/s per shard limit), and one per
//!   `idle_poll_interval` after an empty page, so idle shards cost little.
//! * Throttling and transient errors back off with the retry policy's jittered delays.
//! * An expired iterator (a processor that blocked for over 5 minutes) is replaced by one after the last
//!   record handed to the processor.
//! * A page without a next iterator is the shard's end.
//! * Handing a page to the processor is awaited: a full pipeline stops the reading (backpressure).
//! * `GetShardIterator` and `GetRecords` calls of all the process's shards share a limit of
//!   `max_concurrent_requests` in flight: each call in flight holds an HTTP connection with its buffers,
//!   so without the limit a process holding many shards pays for one connection per shard (all at once
//!   at start, when every shard asks for its iterator). The permit is held only while the call is in
//!   flight, never while a page waits for the pipeline.
//! * Pages in hand — read, and waiting for the pipeline to take them — share a process-wide byte
//!   budget ([`ReaderSettings::max_fetched_bytes`]): a page is held only once its bytes fit, and the
//!   call's permit is kept until then, so with a full pipeline fetching stops and memory does not grow
//!   with the number of shards held (at most the budget plus one page per call in flight).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use kinesis_connectors_core::{Position, Record, RetryPolicy, SequenceNumber, ShardId};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{self, GET_RECORDS_MAX_LIMIT, IteratorStart};
use crate::error::{ConsumerError, KinesisError};
use crate::kpl;
use crate::metrics::ConsumerMetrics;
use crate::position::Checkpoint;
use crate::processor::{Checkpointer, ProcessRecordsInput, ShardRecordProcessor};
use crate::wire::WireClient;

/// Default time between `GetRecords` calls of one shard (5 calls/s).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Default wait after an empty page.
pub const DEFAULT_IDLE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default budget of bytes in pages read but not yet taken by the pipeline, across a process's shards.
pub const DEFAULT_MAX_FETCHED_BYTES: usize = 64 * 1024 * 1024;
/// What a record costs in memory beyond its data (the record's fields and bookkeeping), for budgets.
pub const RECORD_OVERHEAD_BYTES: usize = 160;

/// Default limit of `GetShardIterator` and `GetRecords` calls in flight at once in one process. At
/// 50-300 ms a call (AWS), 64 calls in flight serve 200-1,300 calls/s: every shard of a process holding
/// hundreds of busy shards polled once a second or more.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 64;

/// Which code sends the polling reader's `GetShardIterator` and `GetRecords` calls and decodes their
/// answers. Both classify errors alike and hand out the same records.
#[derive(Clone, Debug, Default)]
pub enum Decoder {
    /// The AWS SDK: the reference path.
    #[default]
    Sdk,
    /// Our own calls ([`crate::wire`]): signed requests on one shared HTTP client, answers decoded
    /// straight into records borrowing the body.
    Own(Arc<WireClient>),
}

/// How a shard is polled.
#[derive(Clone, Debug)]
pub struct ReaderSettings {
    /// Records per `GetRecords` call (1..=10,000).
    pub max_records: i32,
    /// Least time between two calls.
    pub poll_interval: Duration,
    /// Time between calls after an empty page.
    pub idle_poll_interval: Duration,
    /// Backoff for throttling and transient errors.
    pub retry: RetryPolicy,
    /// `GetShardIterator` and `GetRecords` calls in flight at once across the worker's shards.
    pub max_concurrent_requests: usize,
    /// Bytes of pages read but not yet taken by the pipeline, across the worker's shards.
    pub max_fetched_bytes: usize,
    /// Who sends and decodes `GetShardIterator` and `GetRecords`.
    pub decoder: Decoder,
}

impl Default for ReaderSettings {
    fn default() -> Self {
        Self {
            max_records: GET_RECORDS_MAX_LIMIT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            idle_poll_interval: DEFAULT_IDLE_POLL_INTERVAL,
            retry: RetryPolicy {
                base_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(10),
                max_attempts: None,
            },
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_fetched_bytes: DEFAULT_MAX_FETCHED_BYTES,
            decoder: Decoder::Sdk,
        }
    }
}

/// How reading a shard ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The shard is closed and was read to its end.
    ShardEnd,
    /// An empty page with nothing behind it (only when reading until the tip).
    AtTip,
    /// The worker is stopping.
    Cancelled,
}

/// Where an iterator starts for a stored checkpoint, and the position up to which records are to be
/// skipped; `None` for a shard already ended.
///
/// A checkpoint inside a KPL aggregate (or at its first user record) cannot be resumed with
/// `AFTER_SEQUENCE_NUMBER`, which would skip the rest of the aggregate: every sequence checkpoint is
/// resumed `AT_SEQUENCE_NUMBER` and the records at or before the checkpointed position are dropped —
/// one re-read record, never a lost one.
pub fn iterator_start(checkpoint: &Checkpoint) -> Option<(IteratorStart, Option<Position>)> {
    Some(match checkpoint {
        Checkpoint::TrimHorizon => (IteratorStart::TrimHorizon, None),
        Checkpoint::Latest => (IteratorStart::Latest, None),
        Checkpoint::AtTimestamp { timestamp } => (IteratorStart::AtTimestamp(*timestamp), None),
        Checkpoint::AtSequence { sequence } => (IteratorStart::AtSequence(sequence.clone()), None),
        Checkpoint::Sequence { position } => (
            IteratorStart::AtSequence(position.sequence.clone()),
            Some(position.clone()),
        ),
        Checkpoint::ShardEnd => return None,
    })
}

/// Turns a page of Kinesis records into user records: KPL aggregates are expanded (sub-records outside
/// the shard's hash range dropped, as the KCL does), and records at or before `skip` are dropped.
pub(crate) fn user_records(
    records: Vec<Record>,
    hash_range: Option<(u128, u128)>,
    skip: Option<&Position>,
    shard: &ShardId,
) -> Vec<Record> {
    let mut out = Vec::with_capacity(records.len());
    let mut discarded = 0usize;
    for r in records {
        match kpl::deaggregate(&r.data) {
            Ok(users) => {
                for (i, u) in users.into_iter().enumerate() {
                    if let Some((lo, hi)) = hash_range {
                        let h = u.hash_key();
                        if h < lo || h > hi {
                            discarded += 1;
                            continue;
                        }
                    }
                    out.push(Record {
                        data: u.data,
                        partition_key: u.partition_key,
                        position: Position::new(r.position.sequence.clone(), i as u64),
                        approximate_arrival: r.approximate_arrival,
                        shard_id: r.shard_id.clone(),
                        stream: r.stream.clone(),
                    });
                }
            }
            Err(kpl::NotAggregate::Plain) => out.push(r),
            Err(why) => {
                tracing::warn!(shard = %shard, sequence = %r.position.sequence, reason = ?why, "KPL aggregate unreadable; delivered as a plain record");
                out.push(r);
            }
        }
    }
    if discarded > 0 {
        tracing::debug!(shard = %shard, discarded, "KPL user records outside the shard's hash-key range discarded (the KPL re-sent them to their shard)");
    }
    if let Some(skip) = skip {
        out.retain(|r| r.position > *skip);
    }
    out
}

/// The process-wide budget of bytes in pages in hand (see the module documentation), counted in KiB.
#[derive(Debug)]
pub(crate) struct PageBudget {
    kib: Semaphore,
    total_kib: u32,
}

impl PageBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        Self {
            kib: Semaphore::new(total_kib as usize),
            total_kib,
        }
    }

    /// Waits until `bytes` fit in the budget (a page larger than the whole budget waits for all of
    /// it) and holds them until the returned permit is dropped.
    pub(crate) async fn hold(&self, bytes: usize) -> Option<SemaphorePermit<'_>> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.total_kib);
        // The semaphore is never closed.
        self.kib.acquire_many(kib).await.ok()
    }
}

/// What `records` cost against the page budget.
pub(crate) fn page_bytes(records: &[Record]) -> usize {
    records
        .iter()
        .map(|r| r.data.len() + r.partition_key.len() + RECORD_OVERHEAD_BYTES)
        .sum()
}

/// What every reader of one shard (polling or fan-out) works with.
#[derive(Clone, Copy)]
pub(crate) struct ShardContext<'a> {
    pub(crate) client: &'a Client,
    pub(crate) stream: &'a Arc<str>,
    pub(crate) shard: &'a ShardId,
    pub(crate) settings: &'a ReaderSettings,
    pub(crate) hash_range: Option<(u128, u128)>,
    pub(crate) until_tip: bool,
    pub(crate) cancel: &'a CancellationToken,
    pub(crate) metrics: &'a ConsumerMetrics,
    pub(crate) budget: &'a PageBudget,
}

/// The polling reader of one shard.
pub(crate) struct ShardReader<'a> {
    pub(crate) ctx: ShardContext<'a>,
    /// The worker's limit of calls in flight (see the module documentation).
    pub(crate) requests: &'a Semaphore,
}

impl ShardReader<'_> {
    async fn iterator(&self, start: &IteratorStart) -> Result<Option<String>, KinesisError> {
        let call = || async {
            let _permit = self.permit().await?;
            // Boxed: the SDK's call future is large, and inline it would be part of every idle
            // shard's task for the task's whole life.
            match &self.ctx.settings.decoder {
                Decoder::Sdk => {
                    Box::pin(api::get_shard_iterator(
                        self.ctx.client,
                        self.ctx.stream,
                        self.ctx.shard,
                        start,
                    ))
                    .await
                }
                Decoder::Own(wire) => {
                    Box::pin(wire.get_shard_iterator(self.ctx.stream, self.ctx.shard, start)).await
                }
            }
        };
        match api::with_retry(
            &self.ctx.settings.retry,
            self.ctx.cancel,
            "GetShardIterator",
            call,
        )
        .await
        {
            Ok(it) => Ok(Some(it)),
            Err(_) if self.ctx.cancel.is_cancelled() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A place among the calls in flight; the semaphore is never closed.
    async fn permit(&self) -> Result<SemaphorePermit<'_>, KinesisError> {
        self.requests
            .acquire()
            .await
            .map_err(|e| KinesisError::Transient {
                operation: "request limit",
                message: e.to_string(),
            })
    }

    /// Reads the shard from `checkpoint`, handing every page to `processor`.
    pub(crate) async fn run(
        &self,
        checkpoint: &Checkpoint,
        processor: &mut dyn ShardRecordProcessor,
        checkpointer: &Checkpointer,
    ) -> Result<ReadOutcome, ConsumerError> {
        let Some((first, mut skip)) = iterator_start(checkpoint) else {
            return Ok(ReadOutcome::ShardEnd);
        };
        let Some(mut iterator) = self.iterator(&first).await? else {
            return Ok(ReadOutcome::Cancelled);
        };
        let mut last_read: Option<SequenceNumber> = None;
        let mut signaled_tip = false;
        let mut next_call = Instant::now();
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next_call) => {}
                () = self.ctx.cancel.cancelled() => return Ok(ReadOutcome::Cancelled),
            }
            let called_at = Instant::now();
            let response = tokio::select! {
                permit = self.permit() => match permit {
                    // Boxed, as in `iterator`: allocated only while a call is in flight.
                    Ok(_permit) => {
                        let page = match &self.ctx.settings.decoder {
                            Decoder::Sdk => Box::pin(api::get_records(
                                self.ctx.client,
                                &iterator,
                                self.ctx.settings.max_records,
                                self.ctx.stream,
                                self.ctx.shard,
                            ))
                            .await,
                            Decoder::Own(wire) => Box::pin(wire.get_records(
                                &iterator,
                                self.ctx.settings.max_records,
                                self.ctx.stream,
                                self.ctx.shard,
                            ))
                            .await,
                        };
                        match page {
                            // The call's permit is kept until the page fits the budget.
                            Ok(page) => {
                                let held = self.ctx.budget.hold(page_bytes(&page.records)).await;
                                Ok((page, held))
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                },
                () = self.ctx.cancel.cancelled() => return Ok(ReadOutcome::Cancelled),
            };
            let (page, _held) = match response {
                Ok(page) => {
                    failures = 0;
                    page
                }
                Err(KinesisError::ExpiredIterator { .. }) => {
                    let start = match &last_read {
                        Some(seq) => IteratorStart::AfterSequence(seq.clone()),
                        None => first.clone(),
                    };
                    tracing::info!(shard = %self.ctx.shard, "shard iterator expired; getting a new one");
                    match self.iterator(&start).await? {
                        Some(it) => iterator = it,
                        None => return Ok(ReadOutcome::Cancelled),
                    }
                    next_call = called_at + self.ctx.settings.poll_interval;
                    continue;
                }
                Err(e) if e.is_retryable() => {
                    let wait = self
                        .ctx
                        .settings
                        .retry
                        .delay(failures, None)
                        .max(self.ctx.settings.poll_interval);
                    failures = failures.saturating_add(1);
                    if matches!(e, KinesisError::Throttled { .. }) {
                        self.ctx.metrics.on_throttle(self.ctx.shard);
                    }
                    tracing::warn!(shard = %self.ctx.shard, error = %e, wait_ms = wait.as_millis() as u64, "GetRecords failed; backing off");
                    next_call = Instant::now() + wait;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let empty = page.records.is_empty();
            let at_tip = empty && page.millis_behind_latest.unwrap_or(0) == 0;
            // Everything there was: not a full page, and nothing behind it.
            let caught_up = page.millis_behind_latest.unwrap_or(0) == 0
                && page.records.len() < self.ctx.settings.max_records.max(1) as usize;
            let last_sequence = page.records.last().map(|r| r.position.sequence.clone());
            let last_arrival = page.records.last().and_then(|r| r.approximate_arrival);
            let records = user_records(
                page.records,
                self.ctx.hash_range,
                skip.as_ref(),
                self.ctx.shard,
            );
            self.ctx.metrics.on_page(
                self.ctx.shard,
                records.len(),
                page.millis_behind_latest,
                last_arrival,
            );
            if let Some(last) = last_sequence {
                // Past the checkpointed record, nothing more needs skipping.
                if skip.as_ref().is_some_and(|s| last > s.sequence) {
                    skip = None;
                }
                last_read = Some(last);
            }
            // A page with records, or the first empty one at the tip (the processor learns it got
            // there; later empty pages at the tip tell it nothing new).
            if !records.is_empty() || (caught_up && !signaled_tip) {
                signaled_tip = caught_up;
                let input = ProcessRecordsInput {
                    records,
                    millis_behind_latest: page.millis_behind_latest,
                    at_tip: caught_up,
                };
                tokio::select! {
                    r = processor.process_records(input, checkpointer) => r.map_err(|e| ConsumerError::Processor {
                        shard: self.ctx.shard.to_string(),
                        message: e.to_string(),
                    })?,
                    () = self.ctx.cancel.cancelled() => return Ok(ReadOutcome::Cancelled),
                }
            }
            match page.next_iterator {
                None => {
                    self.ctx.metrics.on_end(self.ctx.shard);
                    tracing::info!(shard = %self.ctx.shard, children = ?page.child_shards, "shard end reached");
                    return Ok(ReadOutcome::ShardEnd);
                }
                Some(next) => iterator = next,
            }
            if at_tip && self.ctx.until_tip {
                return Ok(ReadOutcome::AtTip);
            }
            let interval = if empty {
                self.ctx.settings.idle_poll_interval
            } else {
                self.ctx.settings.poll_interval
            };
            next_call = called_at + interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpl::{UserRecord, aggregate};
    use kinesis_connectors_core::testing::record;

    #[test]
    fn aggregates_expand_with_sub_sequences_skipping_delivered_and_out_of_range_records() {
        let users: Vec<UserRecord> = (0..4)
            .map(|i| UserRecord {
                partition_key: format!("k{i}").into(),
                explicit_hash_key: Some(if i == 2 { 900 } else { 10 + i }),
                data: bytes::Bytes::from(format!("u{i}")),
            })
            .collect();
        let mut agg = record("s", 5, b"");
        agg.data = aggregate(&users);
        let plain = record("s", 6, b"plain");
        let shard: ShardId = Arc::from("s");
        // Hash range 0..=100: user record 2 (hash 900) belongs to another shard.
        let out = user_records(
            vec![agg.clone(), plain.clone()],
            Some((0, 100)),
            None,
            &shard,
        );
        let got: Vec<(u64, &[u8])> = out
            .iter()
            .map(|r| (r.position.sub_sequence, r.data.as_ref()))
            .collect();
        assert_eq!(
            got,
            vec![(0, &b"u0"[..]), (1, b"u1"), (3, b"u3"), (0, b"plain")]
        );
        assert_eq!(&*out[1].partition_key, "k1");
        // Resuming after sub-record 1 of the aggregate delivers 3 and the plain record.
        let skip = Position::new(agg.position.sequence.clone(), 1);
        let out = user_records(vec![agg, plain], Some((0, 100)), Some(&skip), &shard);
        let got: Vec<u64> = out.iter().map(|r| r.position.sub_sequence).collect();
        assert_eq!(got, vec![3, 0]);
    }
}
