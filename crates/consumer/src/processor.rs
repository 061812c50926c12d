//! The KCL-style record-processor API: a factory makes one processor per shard; the engine calls
//! `initialize`, then `process_records` for each page read, then `shutdown` with the reason.
//!
//! | KCL (Java)                          | here                                          |
//! |-------------------------------------|-----------------------------------------------|
//! | `ShardRecordProcessorFactory`       | [`ShardRecordProcessorFactory`]               |
//! | `initialize(InitializationInput)`   | [`ShardRecordProcessor::initialize`]          |
//! | `processRecords(ProcessRecordsInput)` | [`ShardRecordProcessor::process_records`]   |
//! | `shardEnded` / `leaseLost` / `shutdownRequested` | [`ShardRecordProcessor::shutdown`] with a [`ShutdownReason`] |
//! | `RecordProcessorCheckpointer`       | [`Checkpointer`] (cloneable: checkpoint later, from any task) |
//!
//! At [`ShutdownReason::ShardEnd`] the processor must call [`Checkpointer::checkpoint_shard_end`] once
//! everything it was given is delivered; until then the shard's children are not read.

use std::sync::Arc;

use async_trait::async_trait;
use kinesis_connectors_core::{
    CheckpointError, Position, Record, Resume, ShardCheckpointer, ShardId, ShardProgress,
};

use crate::error::StoreError;
use crate::lease::HeldLease;
use crate::position::Checkpoint;

/// An error a processor returns; the engine logs it and stops the shard (and the worker).
pub type ProcessorError = Box<dyn std::error::Error + Send + Sync>;

/// What a processor learns when its shard starts.
#[derive(Clone, Debug)]
pub struct InitializationInput {
    /// The shard.
    pub shard_id: ShardId,
    /// Where reading resumes.
    pub checkpoint: Checkpoint,
    /// What the previous reader stored beyond the checkpoint to re-form the batches it emitted.
    pub resume: Resume,
}

/// One page of records.
#[derive(Debug)]
pub struct ProcessRecordsInput {
    /// The records, in shard order (empty for a page that only says the reader reached the tip).
    pub records: Vec<Record>,
    /// How far behind the tip of the shard this page ends, if Kinesis said.
    pub millis_behind_latest: Option<i64>,
    /// The reader is at the shard's tip: this page held everything there was. A page with no records
    /// is handed on once when the reader gets there from behind.
    pub at_tip: bool,
}

/// Why a processor is shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// The shard was read to its end (it was split or merged). Checkpoint SHARD_END when done.
    ShardEnd,
    /// Another worker took the lease: stop at once, do not checkpoint.
    LeaseLost,
    /// The worker is shutting down (or a bounded read reached the tip): deliver and checkpoint.
    Requested,
}

/// Processes the records of one shard.
#[async_trait]
pub trait ShardRecordProcessor: Send {
    /// Called once before any records.
    async fn initialize(&mut self, input: InitializationInput) -> Result<(), ProcessorError>;

    /// Called with each page of records, in order. Awaiting here is backpressure: the shard is not read
    /// further until this returns.
    async fn process_records(
        &mut self,
        input: ProcessRecordsInput,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError>;

    /// Called once at the end.
    async fn shutdown(
        &mut self,
        reason: ShutdownReason,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError>;
}

/// Makes one processor per shard.
pub trait ShardRecordProcessorFactory: Send + Sync {
    /// A fresh processor.
    fn create_processor(&self) -> Box<dyn ShardRecordProcessor>;
}

/// Records a shard's progress through the lease this worker holds on it. Cloneable (checkpoint later,
/// from any task); a checkpoint after the lease was lost is refused with [`StoreError::LeaseLost`].
#[derive(Clone)]
pub struct Checkpointer {
    lease: Arc<HeldLease>,
    shard: ShardId,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("shard", &self.shard)
            .finish()
    }
}

impl Checkpointer {
    /// A checkpointer writing through `lease`.
    pub fn new(lease: Arc<HeldLease>) -> Self {
        let shard = ShardId::from(lease.shard());
        Self { lease, shard }
    }

    /// The shard.
    pub fn shard_id(&self) -> &ShardId {
        &self.shard
    }

    /// Whether the lease was lost (checkpoints will be refused).
    pub fn is_lease_lost(&self) -> bool {
        self.lease.is_lost()
    }

    /// Records that everything up to and including `position` is delivered.
    pub async fn checkpoint(&self, position: &Position) -> Result<(), StoreError> {
        self.lease
            .checkpoint(&Checkpoint::Sequence {
                position: position.clone(),
            })
            .await
    }

    /// Records that the shard was read to its end and everything in it delivered.
    pub async fn checkpoint_shard_end(&self) -> Result<(), StoreError> {
        self.lease.checkpoint(&Checkpoint::ShardEnd).await
    }
}

fn checkpoint_error(e: StoreError) -> CheckpointError {
    match e {
        StoreError::LeaseLost { .. } => CheckpointError::LeaseLost(e.to_string()),
        e if e.is_retryable() => CheckpointError::Transient(e.to_string()),
        StoreError::Locked { .. } => CheckpointError::Transient(e.to_string()),
        e => CheckpointError::Rejected(e.to_string()),
    }
}

#[async_trait]
impl ShardCheckpointer for Checkpointer {
    async fn checkpoint(&self, position: &Position) -> Result<(), CheckpointError> {
        Checkpointer::checkpoint(self, position)
            .await
            .map_err(checkpoint_error)
    }

    async fn save(&self, progress: &ShardProgress) -> Result<(), CheckpointError> {
        let checkpoint = progress.delivered.as_ref().map(|p| Checkpoint::Sequence {
            position: p.clone(),
        });
        self.lease
            .save(checkpoint.as_ref(), &progress.resume)
            .await
            .map_err(checkpoint_error)
    }

    fn stores_resume(&self) -> bool {
        true
    }

    fn fence(&self) -> Option<kinesis_connectors_core::Fence> {
        self.lease.fence()
    }
}
