//! Newline-delimited output shared by the `stdout` and `file` emitters, and the `null` emitter.

use std::io::Write;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::batch::{Batch, Envelope};
use crate::dead_letter::encode_base64;
use crate::emitter::{EmitError, EmitOutcome, Emitter};
use crate::item::Item;

/// How each item becomes a line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    /// The item's bytes as they are, then `\n`.
    #[default]
    Data,
    /// A JSON object with the record's metadata and the item: `stream`, `shard`, `sequence`,
    /// `sub_sequence`, `item` (the item's index among its record's items), `partition_key`, `arrival`,
    /// and `data` (the JSON document) or `data_base64`.
    Envelope,
}

impl LineFormat {
    /// Appends the line for `entry` (with its trailing newline) to `out`.
    pub fn write(self, entry: &Envelope<Item>, out: &mut Vec<u8>) {
        match self {
            LineFormat::Data => out.extend_from_slice(entry.item.data()),
            LineFormat::Envelope => {
                let r = entry.record();
                let arrival = r.approximate_arrival.map(|t| t.to_rfc3339());
                let head = serde_json::json!({
                    "stream": &*r.stream,
                    "shard": &*r.shard_id,
                    "sequence": r.position.sequence.as_str(),
                    "sub_sequence": r.position.sub_sequence,
                    "item": entry.index,
                    "partition_key": &*r.partition_key,
                    "arrival": arrival,
                });
                let mut text = head.to_string();
                text.pop(); // the closing brace; the data field follows
                out.extend_from_slice(text.as_bytes());
                if entry.item.is_json() {
                    out.extend_from_slice(b",\"data\":");
                    out.extend_from_slice(entry.item.data());
                } else {
                    out.extend_from_slice(b",\"data_base64\":\"");
                    out.extend_from_slice(encode_base64(entry.item.data()).as_bytes());
                    out.push(b'"');
                }
                out.push(b'}');
            }
        }
        out.push(b'\n');
    }

    /// The lines of a whole batch.
    pub fn render(self, batch: &Batch<Item>) -> Vec<u8> {
        let mut out = Vec::with_capacity(batch.items.iter().map(|e| e.item.data().len() + 1).sum());
        for e in &batch.items {
            self.write(e, &mut out);
        }
        out
    }
}

/// Writes items to standard output, one per line.
#[derive(Debug, Default)]
pub struct StdoutEmitter {
    format: LineFormat,
}

impl StdoutEmitter {
    /// An emitter writing lines in `format`.
    pub fn new(format: LineFormat) -> Self {
        Self { format }
    }
}

#[async_trait]
impl Emitter<Item> for StdoutEmitter {
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        let text = self.format.render(batch);
        let mut out = std::io::stdout().lock();
        out.write_all(&text)
            .and_then(|()| out.flush())
            .map_err(|e| EmitError::retryable(format!("stdout: {e}")))?;
        Ok(EmitOutcome::success())
    }
}

/// Acknowledges every batch without writing anything (benchmarks, dry runs).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullEmitter;

#[async_trait]
impl<I: Send + Sync + 'static> Emitter<I> for NullEmitter {
    async fn emit(&self, _: &Batch<I>) -> Result<EmitOutcome, EmitError> {
        Ok(EmitOutcome::success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Origin;
    use crate::testing::record;
    use bytes::Bytes;

    #[test]
    fn envelope_lines_are_json_with_metadata() {
        let rec = record("shardId-9", 3, b"");
        let json = Envelope::new(
            Item::parse_json(Bytes::from_static(br#"{"a":[1]}"#)).unwrap(),
            Origin::new(rec.clone()),
        );
        let raw = Envelope::new(Item::raw(Bytes::from_static(b"\xff\n")), Origin::new(rec));
        let mut out = Vec::new();
        LineFormat::Envelope.write(&json, &mut out);
        LineFormat::Envelope.write(&raw, &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["data"], serde_json::json!({"a":[1]}));
        assert_eq!(lines[0]["shard"], "shardId-9");
        assert_eq!(lines[0]["sequence"], crate::testing::sequence(3).as_str());
        assert_eq!(lines[1]["data_base64"], encode_base64(b"\xff\n"));
    }
}
