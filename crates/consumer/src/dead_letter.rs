//! A Kinesis stream as a dead-letter target: each entry (JSON, with the record's data in base64) is put
//! to the stream with the record's partition key; the write is durable once `PutRecords` accepted every
//! entry (failed entries are re-sent).

use async_trait::async_trait;
use bytes::Bytes;
use kinesis_connectors_core::{DeadLetter, DeadLetterEntry, DeadLetterError};

use crate::api::{self, IteratorStart};
use crate::client::{PutEntry, StreamClient};

/// The dead-letter target `type = "kinesis"`.
pub struct KinesisDeadLetter {
    client: StreamClient,
    stream: String,
}

impl KinesisDeadLetter {
    /// A target putting entries to `stream`.
    pub fn new(client: StreamClient, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> DeadLetterError {
        DeadLetterError {
            target: self.describe(),
            message: e.to_string(),
        }
    }
}

#[async_trait]
impl DeadLetter for KinesisDeadLetter {
    async fn write(&self, entries: &[DeadLetterEntry]) -> Result<(), DeadLetterError> {
        let puts = entries
            .iter()
            .map(|e| {
                let key = if e.partition_key.is_empty() {
                    e.shard.clone()
                } else {
                    e.partition_key.clone()
                };
                serde_json::to_vec(e).map(|json| PutEntry::new(Bytes::from(json), key))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(e))?;
        self.client
            .put_batch(&self.stream, puts)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("kinesis:{}", self.stream)
    }

    async fn read_all(&self) -> Result<Vec<DeadLetterEntry>, DeadLetterError> {
        let client = self.client.sdk();
        let stream: std::sync::Arc<str> = std::sync::Arc::from(self.stream.as_str());
        let mut entries = Vec::new();
        for shard in self
            .client
            .shards(&self.stream)
            .await
            .map_err(|e| self.error(e))?
        {
            let shard_id: std::sync::Arc<str> = std::sync::Arc::from(shard.shard_id.as_str());
            let mut iterator = api::get_shard_iterator(
                client,
                &self.stream,
                &shard.shard_id,
                &IteratorStart::TrimHorizon,
            )
            .await
            .map_err(|e| self.error(e))?;
            loop {
                let page = api::get_records(
                    client,
                    &iterator,
                    api::GET_RECORDS_MAX_LIMIT,
                    &stream,
                    &shard_id,
                )
                .await
                .map_err(|e| self.error(e))?;
                let empty = page.records.is_empty();
                for r in page.records {
                    entries.push(
                        serde_json::from_slice(&r.data)
                            .map_err(|e| self.error(format!("not a dead-letter entry: {e}")))?,
                    );
                }
                match page.next_iterator {
                    Some(next) if !(empty && page.millis_behind_latest.unwrap_or(0) == 0) => {
                        iterator = next
                    }
                    _ => break,
                }
            }
        }
        Ok(entries)
    }
}
