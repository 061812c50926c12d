//! The Kinesis consumer engine of kinesis-connectors.
//!
//! * [`Worker`] discovers a stream's shards, reads each with the polling reader ([`reader`]), respects
//!   parent-before-child order across resharding, and drives one [`ShardRecordProcessor`] per shard.
//! * [`LeaseStore`] keeps per-shard leases and checkpoints: [`FileCheckpointStore`] is the embedded
//!   default for one process, [`DynamoDbLeaseStore`] the KCL-compatible lease table that lets several
//!   processes share a stream ([`lease`] explains leases, fencing and balancing).
//! * [`kpl`] de-aggregates records written by the Kinesis Producer Library.
//! * [`PipelineProcessorFactory`] connects a core [`Pipeline`](kinesis_connectors_core::Pipeline) to the
//!   worker: the connector binary is exactly this.
//! * [`StreamClient`] is the high-level stream API (list, describe, create, put, batched put).
#![warn(missing_docs, unreachable_pub)]

pub mod api;
mod client;
mod dead_letter;
mod dynamodb;
mod error;
mod fanout;
pub mod kpl;
pub mod lease;
mod metrics;
mod pipeline_processor;
mod position;
mod processor;
pub mod reader;
mod shard;
mod store;
pub mod wire;
mod worker;

pub use client::{PutEntry, PutResult, StreamClient, StreamDescription};
pub use dead_letter::{KinesisDeadLetter, KinesisDeadLetterOptions};
pub use dynamodb::DynamoDbLeaseStore;
pub use error::{ConsumerError, KinesisError, StoreError};
pub use fanout::ensure_consumer;
pub use lease::{DEFAULT_FAILOVER_TIME, HeldLease, Lease, LeaseSettings, LeaseStore};
pub use metrics::{ConsumerMetrics, ShardProgress};
pub use pipeline_processor::PipelineProcessorFactory;
pub use position::{Checkpoint, InitialPosition};
pub use processor::{
    Checkpointer, InitializationInput, ProcessRecordsInput, ProcessorError, ShardRecordProcessor,
    ShardRecordProcessorFactory, ShutdownReason,
};
pub use reader::{Decoder, ReadOutcome, ReaderSettings};
pub use shard::{ShardInfo, leaf_shards, parents_first};
pub use store::FileCheckpointStore;
pub use wire::WireClient;
pub use worker::{DEFAULT_SHARD_SYNC_INTERVAL, ReaderKind, Worker, WorkerSettings};

/// The Kinesis SDK client type the engine uses.
pub use aws_sdk_kinesis::Client as KinesisClient;
