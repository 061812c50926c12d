//! The enhanced fan-out reader: `SubscribeToShard` (an HTTP/2 event stream) instead of polling.
//!
//! The stream consumer is registered once per pipeline (`RegisterStreamConsumer`, idempotent across
//! workers) and waited for until ACTIVE. Each shard is subscribed from its checkpoint; events are handed
//! to the processor one at a time, so a full pipeline stops reading (HTTP/2 flow control then holds the
//! service back). A subscription ends after 5 minutes, or on an error; the reader subscribes again right
//! after the last record it handed on, dropping any record at or before it should the service replay
//! it. The shard's end is the event that names child shards and carries no more records.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::DateTime as AwsDateTime;
use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
};
use bytes::Bytes;
use kinesis_connectors_core::{Position, Record, SequenceNumber};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{self, IteratorStart};
use crate::error::{ConsumerError, KinesisError};
use crate::position::Checkpoint;
use crate::processor::{Checkpointer, ProcessRecordsInput, ShardRecordProcessor};
use crate::reader::{ReadOutcome, ReaderSettings, ShardContext, iterator_start, user_records};

/// Registers (or finds) the stream consumer `name` of `stream` and waits until it is ACTIVE; returns
/// its ARN. Limits: 20 consumers per stream; RegisterStreamConsumer 5 calls/s per stream.
pub async fn ensure_consumer(
    client: &Client,
    stream: &str,
    name: &str,
    cancel: &CancellationToken,
) -> Result<String, KinesisError> {
    let retry = ReaderSettings::default().retry;
    let summary = api::with_retry(&retry, cancel, "DescribeStreamSummary", || {
        api::describe_stream_summary(client, stream)
    })
    .await?;
    let stream_arn = summary.stream_arn().to_owned();
    match client
        .register_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name(name)
        .send()
        .await
    {
        Ok(_) => tracing::info!(stream, consumer = name, "stream consumer registered"),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(KinesisError::from_sdk("RegisterStreamConsumer", e)),
    }
    for attempt in 0u32..300 {
        let out = client
            .describe_stream_consumer()
            .stream_arn(&stream_arn)
            .consumer_name(name)
            .send()
            .await
            .map_err(|e| KinesisError::from_sdk("DescribeStreamConsumer", e))?;
        if let Some(d) = out.consumer_description
            && d.consumer_status == ConsumerStatus::Active
        {
            return Ok(d.consumer_arn);
        }
        tokio::time::sleep(retry.ceiling(attempt.min(5))).await;
    }
    Err(KinesisError::Transient {
        operation: "DescribeStreamConsumer",
        message: format!("consumer {name} did not become ACTIVE"),
    })
}

fn starting_position(start: &IteratorStart) -> StartingPosition {
    let b = StartingPosition::builder();
    let b = match start {
        IteratorStart::TrimHorizon => b.r#type(ShardIteratorType::TrimHorizon),
        IteratorStart::Latest => b.r#type(ShardIteratorType::Latest),
        IteratorStart::AtTimestamp(t) => b
            .r#type(ShardIteratorType::AtTimestamp)
            .timestamp(AwsDateTime::from_millis(t.timestamp_millis())),
        IteratorStart::AtSequence(s) => b
            .r#type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(s.as_str()),
        IteratorStart::AfterSequence(s) => b
            .r#type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(s.as_str()),
    };
    // Every required field is set above.
    b.build().unwrap_or_else(|_| {
        StartingPosition::builder()
            .r#type(ShardIteratorType::TrimHorizon)
            .build()
            .unwrap_or_else(|_| unreachable!())
    })
}

/// Reads one shard through a subscription of the consumer `consumer_arn`.
pub(crate) struct FanOutReader<'a> {
    pub(crate) ctx: ShardContext<'a>,
    pub(crate) consumer_arn: &'a str,
}

enum Step {
    Continue,
    Done(ReadOutcome),
}

impl FanOutReader<'_> {
    /// Reads the shard from `checkpoint`, handing every event's records to `processor`.
    pub(crate) async fn run(
        &self,
        checkpoint: &Checkpoint,
        processor: &mut dyn ShardRecordProcessor,
        checkpointer: &Checkpointer,
    ) -> Result<ReadOutcome, ConsumerError> {
        let Some((first, mut skip)) = iterator_start(checkpoint) else {
            return Ok(ReadOutcome::ShardEnd);
        };
        let mut last_read: Option<SequenceNumber> = None;
        let mut failures = 0u32;
        loop {
            if self.ctx.cancel.is_cancelled() {
                return Ok(ReadOutcome::Cancelled);
            }
            let start = match &last_read {
                Some(s) => {
                    // Drop anything at or before what was already handed on, should the service
                    // replay it (a subscription is at-least-once from its starting position).
                    skip = Some(Position::new(s.clone(), u64::MAX));
                    IteratorStart::AfterSequence(s.clone())
                }
                None => first.clone(),
            };
            let subscribed = self
                .ctx
                .client
                .subscribe_to_shard()
                .consumer_arn(self.consumer_arn)
                .shard_id(self.ctx.shard.as_ref())
                .starting_position(starting_position(&start))
                .send()
                .await;
            let mut events = match subscribed {
                Ok(out) => out.event_stream,
                Err(e) => {
                    let e = KinesisError::from_sdk("SubscribeToShard", e);
                    if !e.is_retryable()
                        && !matches!(e, KinesisError::Permanent { ref code, .. } if code == "ResourceInUseException")
                    {
                        return Err(e.into());
                    }
                    self.back_off(&mut failures, &e).await;
                    continue;
                }
            };
            let subscribed_at = Instant::now();
            loop {
                let next = tokio::select! {
                    n = events.recv() => n,
                    () = self.ctx.cancel.cancelled() => return Ok(ReadOutcome::Cancelled),
                };
                match next {
                    Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event))) => {
                        failures = 0;
                        let step = self
                            .on_event(event, &mut skip, &mut last_read, processor, checkpointer)
                            .await?;
                        if let Step::Done(outcome) = step {
                            return Ok(outcome);
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::debug!(shard = %self.ctx.shard, after = ?subscribed_at.elapsed(), "subscription ended; subscribing again");
                        break;
                    }
                    Err(e) => {
                        let e = KinesisError::Transient {
                            operation: "SubscribeToShard",
                            message: kinesis_connectors_aws::error_chain(&e),
                        };
                        self.back_off(&mut failures, &e).await;
                        break;
                    }
                }
            }
        }
    }

    async fn back_off(&self, failures: &mut u32, e: &KinesisError) {
        let wait = self
            .ctx
            .settings
            .retry
            .delay(*failures, None)
            .max(Duration::from_millis(200));
        *failures = failures.saturating_add(1);
        tracing::warn!(shard = %self.ctx.shard, error = %e, wait_ms = wait.as_millis() as u64, "subscription failed; subscribing again");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.ctx.cancel.cancelled() => {}
        }
    }

    async fn on_event(
        &self,
        event: aws_sdk_kinesis::types::SubscribeToShardEvent,
        skip: &mut Option<Position>,
        last_read: &mut Option<SequenceNumber>,
        processor: &mut dyn ShardRecordProcessor,
        checkpointer: &Checkpointer,
    ) -> Result<Step, ConsumerError> {
        let children = event.child_shards.unwrap_or_default();
        let empty = event.records.is_empty();
        let mut records = Vec::with_capacity(event.records.len());
        for r in event.records {
            let sequence = SequenceNumber::new(r.sequence_number)
                .map_err(|e| ConsumerError::Protocol(e.to_string()))?;
            records.push(Record {
                data: Bytes::from(r.data.into_inner()),
                partition_key: Arc::from(r.partition_key.unwrap_or_default()),
                position: Position::new(sequence, 0),
                approximate_arrival: r.approximate_arrival_timestamp.and_then(api::to_chrono),
                shard_id: self.ctx.shard.clone(),
                stream: self.ctx.stream.clone(),
            });
        }
        let last = records.last().map(|r| r.position.sequence.clone());
        let last_arrival = records.last().and_then(|r| r.approximate_arrival);
        let records = user_records(records, self.ctx.hash_range, skip.as_ref(), self.ctx.shard);
        self.ctx.metrics.on_page(
            self.ctx.shard,
            records.len(),
            Some(event.millis_behind_latest),
            last_arrival,
        );
        if let Some(last) = last {
            if skip.as_ref().is_some_and(|s| last > s.sequence) {
                *skip = None;
            }
            *last_read = Some(last);
        }
        // Pushed events are what there is: at the tip when nothing is behind.
        let at_tip = event.millis_behind_latest == 0;
        if !records.is_empty() || at_tip {
            let _held = tokio::select! {
                held = self.ctx.budget.hold(crate::reader::page_bytes(&records)) => held,
                () = self.ctx.cancel.cancelled() => return Ok(Step::Done(ReadOutcome::Cancelled)),
            };
            let input = ProcessRecordsInput {
                records,
                millis_behind_latest: Some(event.millis_behind_latest),
                at_tip,
            };
            tokio::select! {
                r = processor.process_records(input, checkpointer) => r.map_err(|e| ConsumerError::Processor {
                    shard: self.ctx.shard.to_string(),
                    message: e.to_string(),
                })?,
                () = self.ctx.cancel.cancelled() => return Ok(Step::Done(ReadOutcome::Cancelled)),
            }
        }
        if !children.is_empty() && (empty || event.continuation_sequence_number.is_empty()) {
            self.ctx.metrics.on_end(self.ctx.shard);
            tracing::info!(shard = %self.ctx.shard, children = ?children.iter().map(|c| &c.shard_id).collect::<Vec<_>>(), "shard end reached");
            return Ok(Step::Done(ReadOutcome::ShardEnd));
        }
        if self.ctx.until_tip && empty && event.millis_behind_latest == 0 {
            return Ok(Step::Done(ReadOutcome::AtTip));
        }
        Ok(Step::Continue)
    }
}
