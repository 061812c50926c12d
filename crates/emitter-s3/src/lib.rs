//! The S3 emitter of kinesis-connectors.
//!
//! Each batch becomes one object (one per partition when the key template uses `{field:...}`), written
//! in NDJSON, raw delimited bytes, CSV, or Parquet, optionally compressed (gzip, zstd; Parquet codecs), with a
//! single `PutObject` or — past one part — a streaming multipart upload.
//!
//! # Deterministic keys
//!
//! The default key is `{prefix}{pipeline}/{yyyy}/{MM}/{dd}/{HH}/{shard}-{first_sequence}-{last_sequence}{ext}`:
//! the date of the first record's arrival, then the shard and the sequence range of the object. A key
//! depends only on the records in the object. Batches start right after the last checkpoint (the
//! pipeline checkpoints at batch boundaries, one batch per shard in flight) and close at thresholds
//! computed from the records: a count, a byte size. So after a crash the batch in flight is rebuilt from
//! the same records and overwrites its object instead of adding a new one.
//!
//! The rule's one exception is the **age** limit: a batch that closed because `max_age` passed on the
//! wall clock (a quiet shard) holds whatever had arrived; redelivered later, more records may have
//! arrived and the batch closes elsewhere, writing a second object that overlaps the first. Set
//! `max_age` long enough for the count or size to close batches on busy shards; quiet shards flush by age
//! and may then produce one overlapping object after a crash. With `batch_across_shards` an object holds
//! records of several shards in whatever order they were read; its composition is not reproducible, so
//! redelivery after a crash may write overlapping objects (documented trade-off for fewer objects).
#![warn(missing_docs, unreachable_pub)]

pub mod config;
mod dead_letter;
mod emitter;
pub mod encode;
pub mod key;
mod retry;
mod stage;
mod upload;

pub use config::{Column, ColumnType, Compression, CsvOptions, Format, S3Options, S3Settings};
pub use dead_letter::S3DeadLetter;
pub use emitter::{BatchWrite, S3Emitter, S3Writer, WrittenObject};
pub use stage::S3DeadLetterOptions;
