//! The pipeline runner: records in, batches out, checkpoints after acknowledgement.
//!
//! A [`Pipeline`] is built from its stages and started once; it runs as one task that owns all state
//! (no locks on the hot path) and is driven through a cloneable [`PipelineHandle`]:
//!
//! ```text
//! open_shard(shard, checkpointer) ─┐
//! push(shard, records) ────────────┼─▶ runner: transform → filter → buffer (per lane) ─▶ emit jobs
//! finish_shard / abandon_shard ────┘        ▲                                              │
//!                                           └──── acks → checkpoint tracker → checkpoint writer
//! ```
//!
//! Backpressure: `push` waits while the intake queue is full; the runner stops taking from it while
//! `max_queued_batches` closed batches wait for an emitter slot or buffers hold `max_buffered_bytes`.
//! A reader that awaits `push` therefore stops fetching when the sink is slow or down.
//!
//! Lanes: by default every shard has its own buffer and at most one batch in flight, so the sink sees
//! each shard's items in order. With `batch_across_shards` all shards share one buffer (fewer, larger
//! batches); each shard is still checkpointed only up to what has been acknowledged.

mod checkpoint;
mod deliver;
mod lane;
mod runner;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use checkpoint::{Fence, Resume, ShardCheckpointer, ShardProgress};

use crate::buffer::{Buffer, BufferLimits, MemoryBuffer};
use crate::dead_letter::DeadLetter;
use crate::emitter::Emitter;
use crate::error::PipelineError;
use crate::item::EmittedSize;
use crate::metrics::{MetricsSnapshot, PipelineMetrics};
use crate::record::{Position, Record, ShardId};
use crate::retry::RetryPolicy;
use crate::stage::{Filter, Transformer};

/// Default number of emit calls in flight at once (across lanes).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// Default number of closed batches that may wait for an emit slot before intake pauses.
pub const DEFAULT_MAX_QUEUED_BATCHES: usize = 8;
/// Default cap on bytes held in buffers across all lanes; past it the oldest lane flushes early.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 64 * 1024 * 1024;
/// Default number of pushed record batches waiting in the intake queue.
pub const DEFAULT_INTAKE_CAPACITY: usize = 4;

/// How a pipeline batches, retries and bounds its memory.
#[derive(Clone, Debug)]
pub struct PipelineSettings {
    /// Batch limits of each lane's buffer.
    pub buffer: BufferLimits,
    /// Retry policy of emits (and checkpoint and dead-letter writes).
    pub retry: RetryPolicy,
    /// Emit calls in flight at once.
    pub max_in_flight: usize,
    /// Closed batches that may wait before intake pauses.
    pub max_queued_batches: usize,
    /// Bytes buffered across lanes before the oldest lane flushes early.
    pub max_buffered_bytes: usize,
    /// Record batches waiting in the intake queue.
    pub intake_capacity: usize,
    /// One buffer for all shards instead of one per shard.
    pub batch_across_shards: bool,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            buffer: BufferLimits::default(),
            retry: RetryPolicy::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_queued_batches: DEFAULT_MAX_QUEUED_BATCHES,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            intake_capacity: DEFAULT_INTAKE_CAPACITY,
            batch_across_shards: false,
        }
    }
}

/// Makes the buffer of each lane.
pub type BufferFactory<I> = Arc<dyn Fn(BufferLimits) -> Box<dyn Buffer<I>> + Send + Sync>;

/// A pipeline ready to start: its stages and settings. `I` is the item type (the dynamic
/// [`crate::Item`] for configured pipelines, any type of yours for typed ones).
pub struct Pipeline<I> {
    name: Arc<str>,
    transformer: Arc<dyn Transformer<I>>,
    filters: Vec<Arc<dyn Filter<I>>>,
    emitter: Arc<dyn Emitter<I>>,
    dead_letter: Arc<dyn DeadLetter>,
    settings: PipelineSettings,
    buffer_factory: BufferFactory<I>,
    metrics: Arc<PipelineMetrics>,
}

impl<I: EmittedSize + Send + Sync + 'static> Pipeline<I> {
    /// A pipeline named `name` with the given transformer, emitter and dead-letter target, no filters
    /// and default settings.
    pub fn new(
        name: impl Into<Arc<str>>,
        transformer: Arc<dyn Transformer<I>>,
        emitter: Arc<dyn Emitter<I>>,
        dead_letter: Arc<dyn DeadLetter>,
    ) -> Self {
        Self {
            name: name.into(),
            transformer,
            filters: Vec::new(),
            emitter,
            dead_letter,
            settings: PipelineSettings::default(),
            buffer_factory: Arc::new(|limits| Box::new(MemoryBuffer::new(limits))),
            metrics: Arc::new(PipelineMetrics::default()),
        }
    }

    /// Adds a filter; items must pass every filter.
    pub fn filter(mut self, filter: Arc<dyn Filter<I>>) -> Self {
        self.filters.push(filter);
        self
    }

    /// Replaces the settings.
    pub fn settings(mut self, settings: PipelineSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Replaces the buffer implementation.
    pub fn buffer_factory(mut self, factory: BufferFactory<I>) -> Self {
        self.buffer_factory = factory;
        self
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pipeline's counters (live; also reachable from the handle once started).
    pub fn metrics(&self) -> Arc<PipelineMetrics> {
        self.metrics.clone()
    }

    /// Starts the runner on the current tokio runtime.
    pub fn start(self) -> (PipelineHandle, RunningPipeline) {
        let (tx, rx) = mpsc::channel(self.settings.intake_capacity.max(1));
        let metrics = self.metrics.clone();
        let task = tokio::spawn(runner::Runner::new(self, rx).run());
        (PipelineHandle { tx, metrics }, RunningPipeline { task })
    }
}

/// What the runner is asked to do.
pub(crate) enum Command {
    Open {
        shard: ShardId,
        checkpointer: Arc<dyn ShardCheckpointer>,
        resume: Resume,
    },
    Push {
        shard: ShardId,
        records: Vec<Record>,
        caught_up: bool,
    },
    Finish {
        shard: ShardId,
        mode: FinishMode,
        reply: oneshot::Sender<Result<Option<Position>, PipelineError>>,
    },
    Abandon {
        shard: ShardId,
    },
    Shutdown,
}

/// How a shard is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FinishMode {
    /// Everything pushed is delivered (the shard ended, or a bounded run is over).
    Complete,
    /// The shard is handed to its next reader: what can be delivered without changing a batch's
    /// identity is; a tail waiting for a stored boundary is left to that reader.
    HandOff,
}

/// Drives a started pipeline; cheap to clone (one per shard reader).
#[derive(Clone)]
pub struct PipelineHandle {
    tx: mpsc::Sender<Command>,
    metrics: Arc<PipelineMetrics>,
}

impl PipelineHandle {
    async fn send(&self, cmd: Command) -> Result<(), PipelineError> {
        self.tx.send(cmd).await.map_err(|_| PipelineError::Closed)
    }

    /// Starts tracking `shard`; its delivered positions go to `checkpointer`.
    pub async fn open_shard(
        &self,
        shard: ShardId,
        checkpointer: Arc<dyn ShardCheckpointer>,
    ) -> Result<(), PipelineError> {
        self.open_shard_at(shard, checkpointer, Resume::default())
            .await
    }

    /// Starts tracking `shard` where an earlier reader left it: `resume` (stored with the shard's
    /// checkpoint) says which items of the first record are delivered already and where the batches
    /// that reader emitted ended, so they re-form with the same identities.
    pub async fn open_shard_at(
        &self,
        shard: ShardId,
        checkpointer: Arc<dyn ShardCheckpointer>,
        resume: Resume,
    ) -> Result<(), PipelineError> {
        self.send(Command::Open {
            shard,
            checkpointer,
            resume,
        })
        .await
    }

    /// Hands records of one shard (in shard order) to the pipeline. Waits while the pipeline is full:
    /// this is the backpressure that stops readers from fetching.
    ///
    /// The shard counts as caught up (its buffer flushes by age); a reader that knows whether it is
    /// at the tip says so with [`push_page`](Self::push_page).
    pub async fn push(&self, shard: ShardId, records: Vec<Record>) -> Result<(), PipelineError> {
        self.push_page(shard, records, true).await
    }

    /// [`push`](Self::push) for a page read from the stream: `caught_up` says the reader is at the
    /// shard's tip (it read everything there was). Only a caught-up shard's buffer flushes by its age:
    /// before, the records that fill the batch are in the stream and on their way, and a batch an
    /// earlier reader emitted by count must re-form the same. An empty page at the tip is worth
    /// pushing for that flag.
    pub async fn push_page(
        &self,
        shard: ShardId,
        records: Vec<Record>,
        caught_up: bool,
    ) -> Result<(), PipelineError> {
        if records.is_empty() && !caught_up {
            return Ok(());
        }
        self.send(Command::Push {
            shard,
            records,
            caught_up,
        })
        .await
    }

    /// Flushes the shard's buffer and waits until every record pushed for it is delivered (or
    /// dead-lettered) and its last position checkpointed; returns that position. The shard is then
    /// forgotten. Used at shard end and when a shard is handed off.
    pub async fn finish_shard(&self, shard: ShardId) -> Result<Option<Position>, PipelineError> {
        self.finish(shard, FinishMode::Complete).await
    }

    /// Like [`finish_shard`](Self::finish_shard) for a shard handed to another reader (shutdown, a
    /// lease released): buffered items that would complete a batch an earlier reader emitted and
    /// stored a boundary for are left to the next reader instead of being emitted under another
    /// identity. Returns the last checkpointed position.
    pub async fn hand_off_shard(&self, shard: ShardId) -> Result<Option<Position>, PipelineError> {
        self.finish(shard, FinishMode::HandOff).await
    }

    async fn finish(
        &self,
        shard: ShardId,
        mode: FinishMode,
    ) -> Result<Option<Position>, PipelineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Finish { shard, mode, reply }).await?;
        rx.await.map_err(|_| PipelineError::Closed)?
    }

    /// Drops the shard's buffered items and stops checkpointing it (its lease was lost: another worker
    /// redelivers from the last checkpoint).
    pub async fn abandon_shard(&self, shard: ShardId) -> Result<(), PipelineError> {
        self.send(Command::Abandon { shard }).await
    }

    /// Flushes every buffer, delivers everything, writes the last checkpoints and stops the runner.
    pub async fn shutdown(&self) -> Result<(), PipelineError> {
        self.send(Command::Shutdown).await
    }

    /// Current counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// The live counters.
    pub fn metrics_handle(&self) -> Arc<PipelineMetrics> {
        self.metrics.clone()
    }
}

/// The running pipeline's task.
pub struct RunningPipeline {
    task: JoinHandle<Result<MetricsSnapshot, PipelineError>>,
}

impl RunningPipeline {
    /// Waits for the runner to end (after `shutdown`, or when every handle is dropped); returns the final
    /// counters, or the error that stopped it.
    pub async fn wait(self) -> Result<MetricsSnapshot, PipelineError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(PipelineError::Closed),
        }
    }

    /// Stops the runner at once (after a shutdown bound expired); nothing more is checkpointed.
    pub fn abort(&self) {
        self.task.abort();
    }
}
