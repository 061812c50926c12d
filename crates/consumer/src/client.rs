//! The high-level stream client (the seed's `KinesisClient`): list, exists, describe, leaf shards,
//! create, put, put without waiting, batched put that re-sends only the failed entries, reshard.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use kinesis_connectors_core::RetryPolicy;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::api::{self, MAX_RECORD_BYTES, PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_ENTRIES};
use crate::error::KinesisError;
use crate::shard::ShardInfo;

/// A stream's description: its summary and every shard.
#[derive(Clone, Debug, Serialize)]
pub struct StreamDescription {
    /// The stream's name.
    pub name: String,
    /// The stream's ARN.
    pub arn: String,
    /// CREATING, ACTIVE, UPDATING or DELETING.
    pub status: String,
    /// Hours records are kept.
    pub retention_hours: i32,
    /// When the stream was created.
    pub created: Option<DateTime<Utc>>,
    /// Every shard, closed ones included.
    pub shards: Vec<ShardInfo>,
}

impl StreamDescription {
    /// The open shards, where new records go.
    pub fn leaf_shards(&self) -> Vec<&ShardInfo> {
        crate::shard::leaf_shards(&self.shards)
    }
}

/// One record to put.
#[derive(Clone, Debug)]
pub struct PutEntry {
    /// The payload (≤ 1 MiB with the partition key).
    pub data: Bytes,
    /// The partition key (1..=256 characters).
    pub partition_key: String,
    /// An explicit hash key (decimal) that places the record instead of the partition key's hash.
    pub explicit_hash_key: Option<String>,
}

impl PutEntry {
    /// An entry placed by its partition key.
    pub fn new(data: impl Into<Bytes>, partition_key: impl Into<String>) -> Self {
        Self {
            data: data.into(),
            partition_key: partition_key.into(),
            explicit_hash_key: None,
        }
    }
}

/// Where a put record landed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PutResult {
    /// The shard.
    pub shard_id: String,
    /// The record's sequence number.
    pub sequence_number: String,
}

/// The high-level client; see the module documentation.
#[derive(Clone, Debug)]
pub struct StreamClient {
    client: Client,
    retry: RetryPolicy,
}

impl StreamClient {
    /// A client over an SDK client; retries throttled puts up to 20 attempts.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            retry: RetryPolicy {
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(5),
                max_attempts: Some(20),
            },
        }
    }

    /// Connects to `region`, or to a local emulator at `endpoint`.
    pub async fn connect(region: &str, endpoint: Option<&str>) -> Self {
        Self::new(api::client(region, endpoint).await)
    }

    /// The SDK client.
    pub fn sdk(&self) -> &Client {
        &self.client
    }

    async fn retrying<T, F, Fut>(&self, what: &str, call: F) -> Result<T, KinesisError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, KinesisError>>,
    {
        api::with_retry(&self.retry, &CancellationToken::new(), what, call).await
    }

    /// Every stream name.
    pub async fn list_streams(&self) -> Result<Vec<String>, KinesisError> {
        self.retrying("ListStreams", || api::list_streams(&self.client))
            .await
    }

    /// Whether `stream` exists.
    pub async fn exists(&self, stream: &str) -> Result<bool, KinesisError> {
        match self
            .retrying("DescribeStreamSummary", || {
                api::describe_stream_summary(&self.client, stream)
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(KinesisError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every shard of `stream`.
    pub async fn shards(&self, stream: &str) -> Result<Vec<ShardInfo>, KinesisError> {
        self.retrying("ListShards", || api::list_shards(&self.client, stream))
            .await
    }

    /// The open shards of `stream`.
    pub async fn leaf_shards(&self, stream: &str) -> Result<Vec<ShardInfo>, KinesisError> {
        Ok(self
            .shards(stream)
            .await?
            .into_iter()
            .filter(ShardInfo::is_open)
            .collect())
    }

    /// Summary and shards of `stream`.
    pub async fn describe(&self, stream: &str) -> Result<StreamDescription, KinesisError> {
        let summary = self
            .retrying("DescribeStreamSummary", || {
                api::describe_stream_summary(&self.client, stream)
            })
            .await?;
        let shards = self.shards(stream).await?;
        Ok(StreamDescription {
            name: summary.stream_name().to_owned(),
            arn: summary.stream_arn().to_owned(),
            status: summary.stream_status().as_str().to_owned(),
            retention_hours: summary.retention_period_hours(),
            created: api::to_chrono(*summary.stream_creation_timestamp()),
            shards,
        })
    }

    /// Waits until `stream` is ACTIVE (polling with backoff, up to `timeout`).
    pub async fn wait_active(&self, stream: &str, timeout: Duration) -> Result<(), KinesisError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut attempt = 0;
        loop {
            let summary = self
                .retrying("DescribeStreamSummary", || {
                    api::describe_stream_summary(&self.client, stream)
                })
                .await?;
            if *summary.stream_status() == StreamStatus::Active {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(KinesisError::Transient {
                    operation: "DescribeStreamSummary",
                    message: format!("stream {stream} not ACTIVE after {timeout:?}"),
                });
            }
            let poll = RetryPolicy {
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_secs(2),
                max_attempts: None,
            };
            tokio::time::sleep(poll.ceiling(attempt)).await;
            attempt += 1;
        }
    }

    /// Creates `stream` with `shards` shards and waits until it is ACTIVE.
    pub async fn create(&self, stream: &str, shards: i32) -> Result<(), KinesisError> {
        api::create_stream(&self.client, stream, shards).await?;
        self.wait_active(stream, Duration::from_secs(300)).await
    }

    /// Puts one record and waits for its sequence number.
    pub async fn put(
        &self,
        stream: &str,
        data: Bytes,
        partition_key: &str,
    ) -> Result<PutResult, KinesisError> {
        let (shard_id, sequence_number) = self
            .retrying("PutRecord", || {
                api::put_record(&self.client, stream, data.clone(), partition_key)
            })
            .await?;
        Ok(PutResult {
            shard_id,
            sequence_number,
        })
    }

    /// Puts one record in the background; the handle yields its result.
    pub fn put_without_waiting(
        &self,
        stream: &str,
        data: Bytes,
        partition_key: &str,
    ) -> tokio::task::JoinHandle<Result<PutResult, KinesisError>> {
        let this = self.clone();
        let (stream, key) = (stream.to_owned(), partition_key.to_owned());
        tokio::spawn(async move { this.put(&stream, data, &key).await })
    }

    /// Puts many records with `PutRecords`, in calls of at most 500 entries and 5 MiB. Entries the
    /// service rejects (throttling, internal failure) are re-sent alone, with backoff, until they land or
    /// the retry policy gives up. Results are in the order of `entries`.
    pub async fn put_batch(
        &self,
        stream: &str,
        entries: Vec<PutEntry>,
    ) -> Result<Vec<PutResult>, KinesisError> {
        let mut results: Vec<Option<PutResult>> = vec![None; entries.len()];
        // Every entry is checked before anything is put: a refusal must not leave earlier chunks put
        // (a caller that retries would put them again).
        if let Some((i, size)) = entries
            .iter()
            .map(|e| e.data.len() + e.partition_key.len())
            .enumerate()
            .find(|(_, size)| *size > MAX_RECORD_BYTES)
        {
            return Err(KinesisError::Permanent {
                operation: "PutRecords",
                code: "InvalidArgumentException".into(),
                message: format!("entry {i} is {size} bytes, over the 1 MiB record limit"),
            });
        }
        let mut chunk: Vec<usize> = Vec::new();
        let mut chunk_bytes = 0usize;
        for (i, e) in entries.iter().enumerate() {
            let size = e.data.len() + e.partition_key.len();
            if !chunk.is_empty()
                && (chunk.len() == PUT_RECORDS_MAX_ENTRIES
                    || chunk_bytes + size > PUT_RECORDS_MAX_BYTES)
            {
                self.put_chunk(stream, &entries, std::mem::take(&mut chunk), &mut results)
                    .await?;
                chunk_bytes = 0;
            }
            chunk.push(i);
            chunk_bytes += size;
        }
        if !chunk.is_empty() {
            self.put_chunk(stream, &entries, chunk, &mut results)
                .await?;
        }
        Ok(results.into_iter().flatten().collect())
    }

    async fn put_chunk(
        &self,
        stream: &str,
        entries: &[PutEntry],
        mut pending: Vec<usize>,
        results: &mut [Option<PutResult>],
    ) -> Result<(), KinesisError> {
        let mut attempt = 0u32;
        loop {
            let request: Vec<PutRecordsRequestEntry> = pending
                .iter()
                .map(|&i| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(entries[i].data.to_vec()))
                        .partition_key(&entries[i].partition_key)
                        .set_explicit_hash_key(entries[i].explicit_hash_key.clone())
                        .build()
                        .map_err(|e| KinesisError::Permanent {
                            operation: "PutRecords",
                            code: "InvalidArgumentException".into(),
                            message: e.to_string(),
                        })
                })
                .collect::<Result<_, _>>()?;
            let outcome = self
                .retrying("PutRecords", || {
                    api::put_records(&self.client, stream, request.clone())
                })
                .await?;
            let mut failed = Vec::new();
            let mut last_error = String::new();
            for (&i, r) in pending.iter().zip(outcome) {
                match (r.shard_id, r.sequence_number, r.error_code) {
                    (Some(shard_id), Some(sequence_number), None) => {
                        results[i] = Some(PutResult {
                            shard_id,
                            sequence_number,
                        })
                    }
                    (_, _, code) => {
                        last_error = format!(
                            "{}: {}",
                            code.unwrap_or_default(),
                            r.error_message.unwrap_or_default()
                        );
                        failed.push(i);
                    }
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            attempt += 1;
            if !self.retry.allows(attempt) {
                return Err(KinesisError::Throttled {
                    operation: "PutRecords",
                    message: format!(
                        "{} entries still failing after {attempt} attempts: {last_error}",
                        failed.len()
                    ),
                });
            }
            let wait = self.retry.delay(attempt - 1, None);
            tracing::debug!(
                failed = failed.len(),
                wait_ms = wait.as_millis() as u64,
                "re-sending failed PutRecords entries"
            );
            tokio::time::sleep(wait).await;
            pending = failed;
        }
    }

    /// Changes the number of open shards with `UpdateShardCount` (uniform scaling) and waits until the
    /// stream is ACTIVE again.
    pub async fn reshard(&self, stream: &str, target: i32) -> Result<(), KinesisError> {
        api::update_shard_count(&self.client, stream, target).await?;
        self.wait_active(stream, Duration::from_secs(600)).await
    }

    /// Splits `shard` in the middle of its hash-key range and waits until the stream is ACTIVE.
    pub async fn split_in_half(&self, stream: &str, shard: &ShardInfo) -> Result<(), KinesisError> {
        let lo: u128 = shard.starting_hash_key.parse().unwrap_or(0);
        let hi: u128 = shard.ending_hash_key.parse().unwrap_or(u128::MAX);
        let mid = lo + (hi - lo) / 2 + 1;
        api::split_shard(&self.client, stream, &shard.shard_id, &mid.to_string()).await?;
        self.wait_active(stream, Duration::from_secs(300)).await
    }

    /// Splits `shard` at `new_starting_hash_key` and waits until the stream is ACTIVE.
    pub async fn split_at(
        &self,
        stream: &str,
        shard: &str,
        new_starting_hash_key: &str,
    ) -> Result<(), KinesisError> {
        api::split_shard(&self.client, stream, shard, new_starting_hash_key).await?;
        self.wait_active(stream, Duration::from_secs(300)).await
    }

    /// Merges two adjacent shards and waits until the stream is ACTIVE.
    pub async fn merge(
        &self,
        stream: &str,
        shard: &str,
        adjacent: &str,
    ) -> Result<(), KinesisError> {
        api::merge_shards(&self.client, stream, shard, adjacent).await?;
        self.wait_active(stream, Duration::from_secs(300)).await
    }
}
