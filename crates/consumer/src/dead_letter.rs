//! A Kinesis stream as a dead-letter target: each entry (JSON, with the record's data in base64) is put
//! to the stream with the record's partition key; the write is durable once `PutRecords` accepted every
//! entry (failed entries are re-sent).
//!
//! An entry's JSON is about 4/3 of the record's data plus its metadata, so a record over ~750 KB makes
//! an entry over the 1 MiB Kinesis record limit. Such an entry is put as several **parts**, each a
//! Kinesis record of at most 1 MiB: the line `KCDL-PART {id} {index}/{count}\n` and then a slice of
//! the entry's JSON; parts share the entry's partition key (so they land on one shard, in order), and
//! [`read_all`](DeadLetter::read_all) joins them back. Sizes are checked before anything is put, so a
//! large record never stops the pipeline and nothing is put twice because a later entry was refused.

use std::collections::HashMap;

use async_trait::async_trait;
use bytes::Bytes;
use kinesis_connectors_core::contract::{
    BuildError, DeadLetterConfig, OptionError, StageConfig, StageContext,
};
use kinesis_connectors_core::{DeadLetter, DeadLetterEntry, DeadLetterError};

use crate::api::{self, IteratorStart, MAX_RECORD_BYTES};
use crate::client::{PutEntry, StreamClient};

/// Opens every part record of an entry too large for one Kinesis record.
const PART_MAGIC: &[u8] = b"KCDL-PART ";

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

/// The Kinesis records one entry is put as: itself, or its parts when it is too large.
fn records_for(entry: &DeadLetterEntry) -> Result<Vec<PutEntry>, serde_json::Error> {
    let key = if entry.partition_key.is_empty() {
        entry.shard.clone()
    } else {
        entry.partition_key.clone()
    };
    let json = serde_json::to_vec(entry)?;
    if json.len() + key.len() <= MAX_RECORD_BYTES {
        return Ok(vec![PutEntry::new(Bytes::from(json), key)]);
    }
    // Names the entry's parts apart from any other entry's: where the record was, and when it failed.
    let id = format!(
        "{}-{}-{}-{}-{}",
        entry.shard,
        entry.sequence,
        entry.sub_sequence,
        entry.item.unwrap_or(0),
        entry.failed_at.timestamp_nanos_opt().unwrap_or_default()
    );
    // The header: magic, id, " {index}/{count}\n" (two numbers of at most 20 digits).
    let header = PART_MAGIC.len() + id.len() + 44;
    let room = MAX_RECORD_BYTES - key.len() - header;
    let count = json.len().div_ceil(room);
    Ok(json
        .chunks(room)
        .enumerate()
        .map(|(i, chunk)| {
            let mut data = Vec::with_capacity(chunk.len() + header);
            data.extend_from_slice(PART_MAGIC);
            data.extend_from_slice(format!("{id} {i}/{count}\n").as_bytes());
            data.extend_from_slice(chunk);
            PutEntry::new(Bytes::from(data), key.clone())
        })
        .collect())
}

/// One part of an entry put in parts.
struct Part<'a> {
    id: String,
    index: usize,
    count: usize,
    chunk: &'a [u8],
}

/// The parts of an entry read so far: how many, and each by index.
#[derive(Default)]
struct Parts {
    seen: usize,
    chunks: Vec<Option<Vec<u8>>>,
}

/// A part record's header and slice of JSON; `None` for a whole entry.
fn parse_part(data: &[u8]) -> Option<Result<Part<'_>, String>> {
    let rest = data.strip_prefix(PART_MAGIC)?;
    let bad = || "a malformed dead-letter part header".to_string();
    let parsed = (|| {
        let nl = rest.iter().position(|b| *b == b'\n')?;
        let header = std::str::from_utf8(&rest[..nl]).ok()?;
        let (id, numbers) = header.rsplit_once(' ')?;
        let (i, n) = numbers.split_once('/')?;
        Some(Part {
            id: id.to_owned(),
            index: i.parse().ok()?,
            count: n.parse().ok()?,
            chunk: &rest[nl + 1..],
        })
    })();
    Some(parsed.ok_or_else(bad))
}

/// Joins entries and entry parts read from the stream, in order; parts of an entry whose other parts
/// are missing are reported as an error.
#[derive(Default)]
struct Assembler {
    entries: Vec<DeadLetterEntry>,
    partial: HashMap<String, Parts>,
}

impl Assembler {
    fn push(&mut self, data: &[u8]) -> Result<(), String> {
        let Part {
            id,
            index,
            count,
            chunk,
        } = match parse_part(data) {
            None => {
                let entry = serde_json::from_slice(data)
                    .map_err(|e| format!("not a dead-letter entry: {e}"))?;
                self.entries.push(entry);
                return Ok(());
            }
            Some(part) => part?,
        };
        if count == 0 || index >= count {
            return Err(format!(
                "dead-letter part {index}/{count} of {id} is out of range"
            ));
        }
        let parts = self.partial.entry(id.clone()).or_insert_with(|| Parts {
            seen: 0,
            chunks: vec![None; count],
        });
        if parts.chunks.len() != count {
            return Err(format!("dead-letter parts of {id} disagree on their count"));
        }
        if parts.chunks[index].replace(chunk.to_vec()).is_none() {
            parts.seen += 1;
        }
        if parts.seen == count {
            let parts = self.partial.remove(&id).unwrap_or_default();
            let json: Vec<u8> = parts.chunks.into_iter().flatten().flatten().collect();
            let entry = serde_json::from_slice(&json)
                .map_err(|e| format!("dead-letter entry {id} joined from {count} parts: {e}"))?;
            self.entries.push(entry);
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<DeadLetterEntry>, String> {
        match self.partial.keys().next() {
            Some(id) => Err(format!(
                "dead-letter entry {id} is incomplete: some of its parts are not in the stream"
            )),
            None => Ok(self.entries),
        }
    }
}

#[async_trait]
impl DeadLetter for KinesisDeadLetter {
    async fn write(&self, entries: &[DeadLetterEntry]) -> Result<(), DeadLetterError> {
        let mut puts = Vec::with_capacity(entries.len());
        for e in entries {
            puts.extend(records_for(e).map_err(|e| self.error(e))?);
        }
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
        let mut assembler = Assembler::default();
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
                    assembler.push(&r.data).map_err(|e| self.error(e))?;
                }
                match page.next_iterator {
                    Some(next) if !(empty && page.millis_behind_latest.unwrap_or(0) == 0) => {
                        iterator = next
                    }
                    _ => break,
                }
            }
        }
        assembler.finish().map_err(|e| self.error(e))
    }
}

/// Dead-letter `type = "kinesis"`: entries (JSON, data in base64) put to another stream.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisDeadLetterOptions {
    /// The dead-letter stream.
    pub stream: String,
    /// Its region (default: the pipeline's).
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint: Option<String>,
}

impl StageConfig for KinesisDeadLetterOptions {
    const TYPE: &'static str = "kinesis";
    type Options = Self;
    fn check(options: Self, _: &StageContext) -> Result<Self, OptionError> {
        Ok(options)
    }
}

impl DeadLetterConfig for KinesisDeadLetterOptions {
    async fn build(self, ctx: StageContext) -> Result<std::sync::Arc<dyn DeadLetter>, BuildError> {
        let region = self.region.unwrap_or(ctx.region);
        let endpoint = self.endpoint.as_deref().filter(|e| !e.is_empty());
        let client = StreamClient::connect(&region, endpoint).await;
        Ok(std::sync::Arc::new(KinesisDeadLetter::new(
            client,
            self.stream,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinesis_connectors_core::FailedStage;
    use kinesis_connectors_core::testing::record;

    #[test]
    fn an_entry_over_the_record_limit_is_put_in_parts_that_join_back() {
        // A 900 KB record: its entry's JSON (base64) is ~1.2 MB.
        let big = record("shardId-1", 7, &vec![0xAB; 900 * 1024]);
        let small = record("shardId-1", 8, b"x");
        let entries = [
            DeadLetterEntry::new("p", &big, FailedStage::Transform, "not JSON"),
            DeadLetterEntry::new("p", &small, FailedStage::Transform, "not JSON"),
        ];
        let puts: Vec<PutEntry> = entries
            .iter()
            .flat_map(|e| records_for(e).unwrap())
            .collect();
        assert_eq!(puts.len(), 3, "two parts and one whole entry");
        for p in &puts {
            assert!(p.data.len() + p.partition_key.len() <= MAX_RECORD_BYTES);
        }
        // Read back in order, and with the parts swapped.
        for order in [[0, 1, 2], [1, 0, 2]] {
            let mut a = Assembler::default();
            for i in order {
                a.push(&puts[i].data).unwrap();
            }
            assert_eq!(a.finish().unwrap(), entries.to_vec());
        }
        let mut a = Assembler::default();
        a.push(&puts[0].data).unwrap();
        assert!(a.finish().unwrap_err().contains("incomplete"));
    }
}
