//! Errors of the core crate.

use crate::dead_letter::DeadLetterError;

/// Why a checkpoint could not be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Another worker holds the shard's lease now; this process must stop processing the shard.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// A passing failure (throttling, timeout); the write is retried.
    #[error("checkpoint store unavailable: {0}")]
    Transient(String),
    /// The store refused the write for good (e.g. a position before the stored one).
    #[error("checkpoint refused: {0}")]
    Rejected(String),
}

impl CheckpointError {
    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// Why a pipeline stopped, or an operation on it failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The pipeline has shut down (or failed); it accepts nothing more.
    #[error("the pipeline is closed")]
    Closed,
    /// Records could not be dead-lettered; they were not checkpointed and will be redelivered.
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    /// The shard's lease was lost while finishing it; its last records were not checkpointed here.
    #[error("lease lost on shard {shard}: {message}")]
    LeaseLost {
        /// The shard.
        shard: String,
        /// What the store said.
        message: String,
    },
    /// A shard was used before `open_shard`.
    #[error("shard {0} was not opened")]
    UnknownShard(String),
}
