//! The asynchronous sink stage: [`Emitter`] and what it reports back.

use std::time::Duration;

use async_trait::async_trait;

use crate::batch::Batch;

/// Whether a failure may succeed if tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Throttling, timeouts, 5xx, connection errors: retried under the retry policy.
    Retryable,
    /// Bad data or a request the sink will never accept: dead-lettered at once.
    Permanent,
}

/// A failure of the whole batch (nothing was written, or the emitter cannot tell what was).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct EmitError {
    /// Retryable or permanent.
    pub kind: FailureKind,
    /// What went wrong, as the sink said it.
    pub message: String,
    /// A wait the sink asked for (e.g. `Retry-After`); the retry policy waits at least this long.
    pub retry_after: Option<Duration>,
}

impl EmitError {
    /// A failure that may pass on a later try.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Retryable,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure that will not pass however often it is tried.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Sets the wait the sink asked for.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Whether the failure may pass on a later try.
    pub fn is_retryable(&self) -> bool {
        self.kind == FailureKind::Retryable
    }
}

/// One item of a batch that was not written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemFailure {
    /// Index of the item in the batch given to [`Emitter::emit`].
    pub index: usize,
    /// Retryable or permanent.
    pub kind: FailureKind,
    /// The sink's reason; written to the dead-letter entry if the item ends there.
    pub reason: String,
    /// A wait the sink asked for, if any.
    pub retry_after: Option<Duration>,
}

impl ItemFailure {
    /// A retryable failure of item `index`.
    pub fn retryable(index: usize, reason: impl Into<String>) -> Self {
        Self {
            index,
            kind: FailureKind::Retryable,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A permanent failure of item `index`.
    pub fn permanent(index: usize, reason: impl Into<String>) -> Self {
        Self {
            index,
            kind: FailureKind::Permanent,
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// What happened to a batch the emitter accepted: every item not listed in `failures` was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmitOutcome {
    /// Items that were not written, each with its reason.
    pub failures: Vec<ItemFailure>,
}

impl EmitOutcome {
    /// Every item was written.
    pub fn success() -> Self {
        Self::default()
    }

    /// Some items were not written.
    pub fn with_failures(failures: Vec<ItemFailure>) -> Self {
        Self { failures }
    }

    /// Whether every item was written.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Writes batches of items to a sink.
///
/// `emit` is called with at most one batch per shard at a time (so per-shard order holds at the sink),
/// and with batches of several shards concurrently. Returning `Ok` with no failures acknowledges every
/// item: only then may the records behind them be checkpointed. Emitters should be idempotent under
/// redelivery (deterministic keys and ids from [`crate::BatchContext`]) because after a crash the
/// records since the last checkpoint are delivered again.
#[async_trait]
pub trait Emitter<I: Send + Sync + 'static>: Send + Sync {
    /// Writes `batch`; see the trait documentation for what the result means.
    async fn emit(&self, batch: &Batch<I>) -> Result<EmitOutcome, EmitError>;

    /// Checks at start-up that the sink is reachable and writable (for `run` and `check`).
    async fn check(&self) -> Result<(), EmitError> {
        Ok(())
    }

    /// Flushes and releases resources at shutdown, after the last batch.
    async fn close(&self) -> Result<(), EmitError> {
        Ok(())
    }
}
