//! Core of kinesis-connectors: records, the stages a record passes through, and the pipeline runner
//! that delivers them at least once.
//!
//! ```text
//! Record ─▶ Transformer ─▶ Filter ─▶ Buffer ─▶ Emitter ─ack─▶ checkpoint tracker ─▶ ShardCheckpointer
//!                 └─ errors ─────────────────────┴─ permanent failures ─▶ DeadLetter ─ack─┘
//! ```
//!
//! * [`Transformer`] turns a [`Record`] into zero or more items; its errors dead-letter the record.
//! * [`Filter`] keeps or drops items; dropped items count as delivered.
//! * [`Buffer`] closes batches by count, emitted bytes and age ([`BufferLimits`]).
//! * [`Emitter`] writes a [`Batch`] and reports which items failed, retryably or permanently.
//! * The [`Pipeline`] runner retries with one [`RetryPolicy`], dead-letters what cannot be delivered, and
//!   checkpoints a shard only up to the highest position below which everything is delivered
//!   ([`ShardTracker`]).
//!
//! Pipelines are generic over the item type: a typed pipeline uses your own type; pipelines configured
//! in `connectors.toml` use the dynamic [`Item`]. This crate has no AWS dependency so that a custom
//! emitter crate stays light.
#![warn(missing_docs, unreachable_pub)]

mod batch;
mod buffer;
pub mod contract;
mod dead_letter;
mod emitter;
mod error;
mod item;
pub mod kit;
mod metrics;
mod pipeline;
mod record;
mod retry;
mod stage;
pub mod stages;
pub mod testing;
mod tracker;
pub mod units;

pub use batch::{Batch, BatchContext, Envelope, Origin, ShardRange};
pub use buffer::{
    Buffer, BufferLimits, DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES, DEFAULT_MAX_RECORDS, MemoryBuffer,
};
pub use dead_letter::{
    DeadLetter, DeadLetterEntry, DeadLetterError, DeadLetterFile, FailedStage, FileDeadLetter,
    encode_base64,
};
pub use emitter::{EmitError, EmitOutcome, Emitter, FailureKind, ItemFailure};
pub use error::{CheckpointError, PipelineError};
pub use item::{EmittedSize, FieldPath, Item, ItemFormat};
pub use metrics::{
    Histogram, HistogramSnapshot, LATENCY_BUCKETS, MetricsSnapshot, PipelineMetrics,
};
pub use pipeline::{
    BufferFactory, DEFAULT_INTAKE_CAPACITY, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_QUEUED_BATCHES, Fence, Pipeline, PipelineHandle, PipelineSettings, Resume,
    RunningPipeline, ShardCheckpointer, ShardProgress,
};
pub use record::{InvalidSequenceNumber, ItemPosition, Position, Record, SequenceNumber, ShardId};
pub use retry::RetryPolicy;
pub use stage::{Filter, FilterFn, TransformError, TransformFn, Transformer};
pub use tracker::ShardTracker;

/// Re-exported so emitter crates implement [`Emitter`] with the same macro version.
pub use async_trait::async_trait;
