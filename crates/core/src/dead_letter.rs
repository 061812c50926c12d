//! Dead-letter targets: where records that cannot be delivered go, durably, with their reason.
//!
//! A record reaches the dead-letter target when its transformer fails, when the emitter reports an item
//! failure as permanent, or when the retry policy gives up on it. Only after the target has durably
//! taken the entry does the record count as delivered for checkpointing, so nothing is ever lost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::batch::Envelope;
use crate::record::{Position, Record, SequenceNumber};

/// Which stage gave up on the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedStage {
    /// The transformer returned an error.
    Transform,
    /// The emitter reported a permanent failure, or retries were exhausted.
    Emit,
}

/// One dead-lettered record (one line of the file target).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterEntry {
    /// Why the record could not be delivered.
    pub reason: String,
    /// Which stage gave up.
    pub stage: FailedStage,
    /// The pipeline's name.
    pub pipeline: String,
    /// The stream the record was read from.
    pub stream: String,
    /// The shard the record was read from.
    pub shard: String,
    /// The record's sequence number.
    pub sequence: SequenceNumber,
    /// The record's KPL sub-sequence number (0 for plain records).
    pub sub_sequence: u64,
    /// For a failed item (emit stage), its index among the items the transformer made of the record:
    /// a replay through the pipeline delivers only that item. Absent when the whole record failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    /// The record's partition key.
    pub partition_key: String,
    /// When Kinesis accepted the record, if known.
    pub arrival: Option<DateTime<Utc>>,
    /// When the record was dead-lettered.
    pub failed_at: DateTime<Utc>,
    /// The record's original data (base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub data: Bytes,
}

impl DeadLetterEntry {
    /// An entry for `record`, failed at `stage` for `reason`.
    pub fn new(
        pipeline: &str,
        record: &Record,
        stage: FailedStage,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            reason: reason.into(),
            stage,
            pipeline: pipeline.to_owned(),
            stream: record.stream.to_string(),
            shard: record.shard_id.to_string(),
            sequence: record.position.sequence.clone(),
            sub_sequence: record.position.sub_sequence,
            item: None,
            partition_key: record.partition_key.to_string(),
            arrival: record.approximate_arrival,
            failed_at: Utc::now(),
            data: record.data.clone(),
        }
    }

    /// An entry for one item of a record (`stage` is where it failed).
    pub fn for_item<I>(
        pipeline: &str,
        item: &Envelope<I>,
        stage: FailedStage,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            item: Some(item.index),
            ..Self::new(pipeline, item.record(), stage, reason)
        }
    }

    /// The record's position.
    pub fn position(&self) -> Position {
        Position::new(self.sequence.clone(), self.sub_sequence)
    }
}

mod base64_bytes {
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

/// A dead-letter target could not take entries. The pipeline retries and, failing that, stops without
/// checkpointing the records concerned.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter target {target}: {message}")]
pub struct DeadLetterError {
    /// The target, as [`DeadLetter::describe`] names it.
    pub target: String,
    /// What went wrong.
    pub message: String,
}

/// A durable place for records that cannot be delivered.
#[async_trait]
pub trait DeadLetter: Send + Sync {
    /// Durably stores `entries`; returns only once they survive a crash.
    async fn write(&self, entries: &[DeadLetterEntry]) -> Result<(), DeadLetterError>;

    /// Where entries go, for logs and `status` (e.g. `file:/var/lib/kc/dead.jsonl`).
    fn describe(&self) -> String;

    /// Every entry the target holds (for `dead-letter replay`); targets that cannot be read back say so.
    async fn read_all(&self) -> Result<Vec<DeadLetterEntry>, DeadLetterError> {
        Err(DeadLetterError {
            target: self.describe(),
            message: "this dead-letter target cannot be read back".into(),
        })
    }
}

/// Appends entries as JSON lines to a local file and `fsync`s before returning.
#[derive(Debug)]
pub struct FileDeadLetter {
    path: PathBuf,
    file: Arc<Mutex<Option<std::fs::File>>>,
}

impl FileDeadLetter {
    /// A target appending to `path` (created with its directory on first write).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every entry of a dead-letter file (for replay and tests). Lines that are not entries — a
    /// line torn by a crash or a full disk mid-write — are skipped with a warning naming their line
    /// number; [`FileDeadLetter::read_lines`] reports them.
    pub fn read_all(path: &Path) -> std::io::Result<Vec<DeadLetterEntry>> {
        let file = Self::read_lines(path)?;
        for (line, error) in &file.unreadable {
            tracing::warn!(path = %path.display(), line, error = %error, "dead-letter line is not an entry (torn by a crash?); skipped");
        }
        Ok(file.entries)
    }

    /// Reads a dead-letter file line by line: the entries, and the lines that are not entries.
    pub fn read_lines(path: &Path) -> std::io::Result<DeadLetterFile> {
        let bytes = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DeadLetterFile::default());
            }
            Err(e) => return Err(e),
        };
        let mut file = DeadLetterFile::default();
        for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice(line) {
                Ok(entry) => file.entries.push(entry),
                Err(e) => file.unreadable.push((n + 1, e.to_string())),
            }
        }
        Ok(file)
    }
}

/// What [`FileDeadLetter::read_lines`] found in a dead-letter file.
#[derive(Debug, Default)]
pub struct DeadLetterFile {
    /// The entries, in file order.
    pub entries: Vec<DeadLetterEntry>,
    /// Lines (1-based) that are not entries, with the parse error.
    pub unreadable: Vec<(usize, String)>,
}

#[async_trait]
impl DeadLetter for FileDeadLetter {
    async fn write(&self, entries: &[DeadLetterEntry]) -> Result<(), DeadLetterError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut text = Vec::with_capacity(entries.len() * 256);
        for e in entries {
            serde_json::to_writer(&mut text, e).map_err(|e| self.error(e))?;
            text.push(b'\n');
        }
        let path = self.path.clone();
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut guard = file
                .lock()
                .map_err(|_| std::io::Error::other("poisoned lock"))?;
            if guard.is_none() {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .read(true)
                    .open(&path)?;
                // A line torn by an earlier crash (no final newline) is closed first, so the
                // entries appended now start lines of their own and stay readable.
                if ends_without_newline(&mut f)? {
                    f.write_all(b"\n")?;
                }
                *guard = Some(f);
            }
            let f = guard
                .as_mut()
                .ok_or_else(|| std::io::Error::other("file not open"))?;
            f.write_all(&text)?;
            f.sync_data()
        })
        .await
        .map_err(|e| self.error(e))?
        .map_err(|e| self.error(e))
    }

    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    async fn read_all(&self) -> Result<Vec<DeadLetterEntry>, DeadLetterError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || FileDeadLetter::read_all(&path))
            .await
            .map_err(|e| self.error(e))?
            .map_err(|e| self.error(e))
    }
}

impl FileDeadLetter {
    fn error(&self, e: impl std::fmt::Display) -> DeadLetterError {
        DeadLetterError {
            target: self.describe(),
            message: e.to_string(),
        }
    }
}

/// Whether a non-empty file's last byte is not a newline.
fn ends_without_newline(f: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// Encodes bytes as base64 (standard alphabet), the form dead-letter entries carry data in.
pub fn encode_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::record;

    #[tokio::test]
    async fn entries_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dead.jsonl");
        let dl = FileDeadLetter::new(&path);
        let rec = record("shardId-1", 7, b"\x00\xffnot json");
        let e = DeadLetterEntry::new("p", &rec, FailedStage::Transform, "invalid JSON: eof");
        dl.write(std::slice::from_ref(&e)).await.unwrap();
        dl.write(std::slice::from_ref(&e)).await.unwrap();
        let back = FileDeadLetter::read_all(&path).unwrap();
        assert_eq!(back, vec![e.clone(), e]);
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(line.contains("\"reason\":\"invalid JSON: eof\""));
        assert!(line.contains(&encode_base64(b"\x00\xffnot json")));
    }

    #[tokio::test]
    async fn a_torn_line_leaves_the_rest_of_the_file_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        let rec = record("shardId-1", 7, b"x");
        let e = DeadLetterEntry::new("p", &rec, FailedStage::Transform, "bad");
        FileDeadLetter::new(&path)
            .write(std::slice::from_ref(&e))
            .await
            .unwrap();
        // A crash mid-write: half a line, no newline.
        let whole = std::fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(&whole[..whole.len() / 2]);
        std::fs::write(&path, &torn).unwrap();
        // The next process appends after it.
        FileDeadLetter::new(&path)
            .write(std::slice::from_ref(&e))
            .await
            .unwrap();
        let file = FileDeadLetter::read_lines(&path).unwrap();
        assert_eq!(file.entries, vec![e.clone(), e]);
        assert_eq!(file.unreadable.len(), 1);
        assert_eq!(file.unreadable[0].0, 2);
    }
}
