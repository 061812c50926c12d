//! One small function per Kinesis API call the engine makes, each naming the call's limits.
//!
//! None of them retries: callers decide, with the one [`RetryPolicy`]
//! (see [`with_retry`]). Errors are classified into [`KinesisError`] by the service's error code.

use std::future::Future;
use std::sync::Arc;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::{Blob, DateTime as AwsDateTime};
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, PutRecordsResultEntry, ShardIteratorType, StreamDescriptionSummary,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use kinesis_connectors_core::{Position, Record, RetryPolicy, SequenceNumber};
use tokio_util::sync::CancellationToken;

use crate::error::KinesisError;
use crate::shard::ShardInfo;

/// Most records one `GetRecords` call may return.
pub const GET_RECORDS_MAX_LIMIT: i32 = 10_000;
/// `GetRecords` calls allowed per shard per second (so at least 200 ms between calls).
pub const GET_RECORDS_PER_SHARD_PER_SECOND: u32 = 5;
/// Shards per `ListShards` page we ask for (the API allows up to 10,000).
pub const LIST_SHARDS_PAGE: i32 = 1_000;
/// Most entries in one `PutRecords` call.
pub const PUT_RECORDS_MAX_ENTRIES: usize = 500;
/// Most bytes (data plus partition keys) in one `PutRecords` call.
pub const PUT_RECORDS_MAX_BYTES: usize = 5 * 1024 * 1024;
/// Largest record (data plus partition key).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Where a shard iterator starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IteratorStart {
    /// The oldest record.
    TrimHorizon,
    /// After the newest record.
    Latest,
    /// Records that arrived at or after a time.
    AtTimestamp(DateTime<Utc>),
    /// At a sequence number.
    AtSequence(SequenceNumber),
    /// After a sequence number.
    AfterSequence(SequenceNumber),
}

/// Lists every shard of `stream`, following `NextToken` pages. Limit: 100 calls/s per stream (throttled
/// as `LimitExceededException`).
pub async fn list_shards(client: &Client, stream: &str) -> Result<Vec<ShardInfo>, KinesisError> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        // With a NextToken the stream name must not be sent.
        let req = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let out = req
            .max_results(LIST_SHARDS_PAGE)
            .send()
            .await
            .map_err(|e| KinesisError::from_sdk("ListShards", e))?;
        shards.extend(
            out.shards
                .unwrap_or_default()
                .into_iter()
                .map(ShardInfo::from),
        );
        match out.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(shards),
        }
    }
}

/// Gets a shard iterator. Limit: 5 calls/s per shard. Iterators expire after 5 minutes.
pub async fn get_shard_iterator(
    client: &Client,
    stream: &str,
    shard: &str,
    start: &IteratorStart,
) -> Result<String, KinesisError> {
    let req = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard);
    let req = match start {
        IteratorStart::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        IteratorStart::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
        IteratorStart::AtTimestamp(t) => req
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(AwsDateTime::from_millis(t.timestamp_millis())),
        IteratorStart::AtSequence(s) => req
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(s.as_str()),
        IteratorStart::AfterSequence(s) => req
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(s.as_str()),
    };
    let out = req
        .send()
        .await
        .map_err(|e| KinesisError::from_sdk("GetShardIterator", e))?;
    out.shard_iterator.ok_or_else(|| KinesisError::Transient {
        operation: "GetShardIterator",
        message: "no iterator in the response".into(),
    })
}

/// One page of a shard.
#[derive(Debug)]
pub struct RecordsPage {
    /// The records, converted.
    pub records: Vec<Record>,
    /// The iterator for the next call; `None` once a closed shard is read to its end.
    pub next_iterator: Option<String>,
    /// How far the page's end is behind the tip of the shard.
    pub millis_behind_latest: Option<i64>,
    /// Children of the shard, reported at its end.
    pub child_shards: Vec<String>,
}

/// Reads up to `limit` (≤ 10,000) records. Limits: 5 calls/s per shard, 2 MiB/s per shard, 10 MiB per
/// call; over them the call fails with `ProvisionedThroughputExceededException`.
pub async fn get_records(
    client: &Client,
    iterator: &str,
    limit: i32,
    stream: &Arc<str>,
    shard: &Arc<str>,
) -> Result<RecordsPage, KinesisError> {
    let out = client
        .get_records()
        .shard_iterator(iterator)
        .limit(limit.clamp(1, GET_RECORDS_MAX_LIMIT))
        .send()
        .await
        .map_err(|e| KinesisError::from_sdk("GetRecords", e))?;
    let mut records = Vec::with_capacity(out.records.len());
    for r in out.records {
        let sequence =
            SequenceNumber::new(r.sequence_number).map_err(|e| KinesisError::Transient {
                operation: "GetRecords",
                message: e.to_string(),
            })?;
        records.push(Record {
            data: Bytes::from(r.data.into_inner()),
            partition_key: Arc::from(r.partition_key.unwrap_or_default()),
            position: Position::new(sequence, 0),
            approximate_arrival: r.approximate_arrival_timestamp.and_then(to_chrono),
            shard_id: shard.clone(),
            stream: stream.clone(),
        });
    }
    Ok(RecordsPage {
        records,
        next_iterator: out.next_shard_iterator,
        millis_behind_latest: out.millis_behind_latest,
        child_shards: out
            .child_shards
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.shard_id)
            .collect(),
    })
}

/// Converts an SDK timestamp.
pub fn to_chrono(t: AwsDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// `DescribeStreamSummary`: status, open shard count, retention. Limit: 20 calls/s per account.
pub async fn describe_stream_summary(
    client: &Client,
    stream: &str,
) -> Result<StreamDescriptionSummary, KinesisError> {
    client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| KinesisError::from_sdk("DescribeStreamSummary", e))?
        .stream_description_summary
        .ok_or_else(|| KinesisError::Transient {
            operation: "DescribeStreamSummary",
            message: "no summary in the response".into(),
        })
}

/// Every stream name of the account and region, following pages. Limit: 5 calls/s per account.
pub async fn list_streams(client: &Client) -> Result<Vec<String>, KinesisError> {
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = client.list_streams().limit(100);
        if let Some(t) = &token {
            req = req.next_token(t);
        }
        let out = req
            .send()
            .await
            .map_err(|e| KinesisError::from_sdk("ListStreams", e))?;
        names.extend(out.stream_names);
        match (out.has_more_streams, out.next_token) {
            (true, Some(t)) => token = Some(t),
            _ => return Ok(names),
        }
    }
}

/// `CreateStream` in provisioned mode with `shards` shards. Limit: 5 calls/s per account.
pub async fn create_stream(client: &Client, stream: &str, shards: i32) -> Result<(), KinesisError> {
    client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
        .map_err(|e| KinesisError::from_sdk("CreateStream", e))?;
    Ok(())
}

/// `PutRecord`: one record (≤ 1 MiB); returns its shard and sequence number. Limit per shard: 1,000
/// records/s and 1 MiB/s.
pub async fn put_record(
    client: &Client,
    stream: &str,
    data: Bytes,
    partition_key: &str,
) -> Result<(String, String), KinesisError> {
    let out = client
        .put_record()
        .stream_name(stream)
        .data(Blob::new(data.to_vec()))
        .partition_key(partition_key)
        .send()
        .await
        .map_err(|e| KinesisError::from_sdk("PutRecord", e))?;
    Ok((out.shard_id, out.sequence_number))
}

/// `PutRecords`: up to 500 entries and 5 MiB; returns one result per entry, in order (failed entries
/// carry an error code).
pub async fn put_records(
    client: &Client,
    stream: &str,
    entries: Vec<PutRecordsRequestEntry>,
) -> Result<Vec<PutRecordsResultEntry>, KinesisError> {
    let out = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .map_err(|e| KinesisError::from_sdk("PutRecords", e))?;
    Ok(out.records)
}

/// `UpdateShardCount` with uniform scaling. Limits: at most doubling or halving per call, 10 calls per
/// rolling 24 hours.
pub async fn update_shard_count(
    client: &Client,
    stream: &str,
    target: i32,
) -> Result<(), KinesisError> {
    client
        .update_shard_count()
        .stream_name(stream)
        .target_shard_count(target)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .map_err(|e| KinesisError::from_sdk("UpdateShardCount", e))?;
    Ok(())
}

/// `SplitShard` at `new_starting_hash_key`. Limit: 5 calls/s per account; the stream must be ACTIVE.
pub async fn split_shard(
    client: &Client,
    stream: &str,
    shard: &str,
    new_starting_hash_key: &str,
) -> Result<(), KinesisError> {
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(shard)
        .new_starting_hash_key(new_starting_hash_key)
        .send()
        .await
        .map_err(|e| KinesisError::from_sdk("SplitShard", e))?;
    Ok(())
}

/// `MergeShards` of two adjacent shards. Limit: 5 calls/s per account; the stream must be ACTIVE.
pub async fn merge_shards(
    client: &Client,
    stream: &str,
    shard: &str,
    adjacent: &str,
) -> Result<(), KinesisError> {
    client
        .merge_shards()
        .stream_name(stream)
        .shard_to_merge(shard)
        .adjacent_shard_to_merge(adjacent)
        .send()
        .await
        .map_err(|e| KinesisError::from_sdk("MergeShards", e))?;
    Ok(())
}

/// Runs an idempotent call until it succeeds, fails permanently, the policy gives up, or `cancel` fires
/// (then the last error is returned). Throttling and transient errors are retried with the policy's
/// jittered backoff; each retry is logged.
pub async fn with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    what: &str,
    mut call: F,
) -> Result<T, KinesisError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, KinesisError>>,
{
    let mut attempt = 0u32;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && policy.allows(attempt + 1) && !cancel.is_cancelled() => {
                let wait = policy.delay(attempt, None);
                tracing::warn!(call = what, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, error = %e, "Kinesis call failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = cancel.cancelled() => return Err(e),
                }
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Builds the SDK client for `region` at `endpoint` as [`client`] does, and our own `GetRecords` client
/// ([`crate::wire::WireClient`]) on the same SDK configuration: the same credential chain (one cache),
/// region and endpoint.
pub async fn clients(
    region: &str,
    endpoint: Option<&str>,
) -> (
    Client,
    Result<crate::wire::WireClient, crate::wire::WireSetupError>,
) {
    let sdk = kinesis_connectors_aws::sdk_config(region, endpoint).await;
    let wire = crate::wire::WireClient::from_sdk_config(&sdk).await;
    (Client::new(&sdk), wire)
}

/// Builds a Kinesis client for `region`, optionally at `endpoint` (a local emulator), with the standard
/// credential chain and no SDK retries (see [`kinesis_connectors_aws::sdk_config`]): the engine retries
/// with its policy, so throttling behaviour is explicit and logged.
pub async fn client(region: &str, endpoint: Option<&str>) -> Client {
    Client::new(&kinesis_connectors_aws::sdk_config(region, endpoint).await)
}
