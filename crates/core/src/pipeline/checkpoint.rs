//! Writing checkpoints off the pipeline's hot loop.
//!
//! The runner records each shard's newest progress; a writer task persists whatever is newest when it
//! gets to it, so under load many acknowledgements coalesce into one write per shard. A barrier lets
//! `finish_shard` wait until a shard's final position is durably stored.
//!
//! **Batch boundaries.** A batch closed by its count or byte limit re-forms from the records alone
//! when they are read again. One closed for any other reason — its age, a drain at shutdown, memory
//! pressure — would close elsewhere, so before it is emitted its last item is stored with the shard's
//! progress, and whoever reads the shard next closes its first batches exactly there ([`Resume`]).
//! The writer is the one place that writes a shard's progress, so a boundary and a checkpoint never
//! overwrite each other; a boundary is dropped from what is stored once the checkpoint passes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::error::{CheckpointError, PipelineError};
use crate::metrics::PipelineMetrics;
use crate::record::{ItemPosition, Position, ShardId};
use crate::retry::RetryPolicy;

/// Persists a shard's delivered position (implemented by the consumer engine's checkpoint and lease
/// stores). Implementations must ignore positions at or before the stored one.
#[async_trait]
pub trait ShardCheckpointer: Send + Sync {
    /// Durably records that everything up to and including `position` is delivered.
    async fn checkpoint(&self, position: &Position) -> Result<(), CheckpointError>;

    /// Durably records the shard's progress: the delivered position and what the next reader needs to
    /// re-form the batches already emitted ([`Resume`]). A store that keeps only positions (the
    /// default) checkpoints `delivered` and drops the rest: delivery stays at least once, but a batch
    /// closed by its age may be re-formed differently after a restart.
    async fn save(&self, progress: &ShardProgress) -> Result<(), CheckpointError> {
        match &progress.delivered {
            Some(p) => self.checkpoint(p).await,
            None => Ok(()),
        }
    }

    /// Whether [`save`](Self::save) stores the [`Resume`] part too. When it does not, the runner
    /// stores no batch boundaries through it (they would be lost anyway).
    fn stores_resume(&self) -> bool {
        false
    }

    /// How long this process may still deliver the shard's records; `None` when nothing limits it (a
    /// store only this process uses). A lease store whose lease was last confirmed at `t` knows that no
    /// other worker may take the shard before `t + failover time`; it answers a fence inside that
    /// window, and the runner starts no emit of the shard's items after [`Fence::start_by`] and gives
    /// up on one still running at [`Fence::stop_by`].
    fn fence(&self) -> Option<Fence> {
        None
    }
}

/// Until when a process may deliver a shard's records; see [`ShardCheckpointer::fence`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    /// No emit attempt of the shard's items starts at or after this instant.
    pub start_by: Instant,
    /// An emit attempt still running at this instant is given up (its items are not acknowledged):
    /// from then on another worker may hold the shard.
    pub stop_by: Instant,
}

impl Fence {
    /// Whether an emit attempt may start at `now`.
    pub fn allows_start(&self, now: Instant) -> bool {
        now < self.start_by
    }
}

/// What the next reader of a shard needs, beyond its checkpoint, to deliver each item once: how far
/// into the first undelivered record delivery got, and where batches that records alone cannot
/// re-form ended. Stored with the checkpoint; empty in the common case (a busy shard whose batches all
/// close by count or size, checkpointed between records).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The last delivered item of the first record not fully delivered: its earlier items are not
    /// delivered again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<ItemPosition>,
    /// The last items of batches emitted beyond the checkpoint that closed for a reason the records
    /// cannot reproduce (age, drain, memory pressure), in order: the next batches close there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boundaries: Vec<ItemPosition>,
}

impl Resume {
    /// Whether there is nothing beyond the checkpoint to keep.
    pub fn is_empty(&self) -> bool {
        self.partial.is_none() && self.boundaries.is_empty()
    }

    /// Drops the boundaries at or before what `progress` says is delivered.
    fn prune(&mut self, delivered: Option<&Position>) {
        self.boundaries.retain(|b| {
            let passed_by_records = delivered.is_some_and(|d| *d >= b.position);
            let passed_inside = self.partial.as_ref().is_some_and(|p| p >= b);
            !passed_by_records && !passed_inside
        });
    }
}

/// A shard's progress as a store keeps it; see [`ShardCheckpointer::save`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardProgress {
    /// Every record up to and including this one is delivered.
    pub delivered: Option<Position>,
    /// The rest of what the next reader needs.
    pub resume: Resume,
}

type Reply = oneshot::Sender<Result<Option<Position>, PipelineError>>;
type BoundaryReply = oneshot::Sender<Result<(), CheckpointError>>;

struct Barrier {
    shard: ShardId,
    position: Option<Position>,
    reply: Reply,
}

/// One shard's progress as the writer keeps it.
struct Entry {
    progress: ShardProgress,
    to: Arc<dyn ShardCheckpointer>,
    /// Changed since it was last handed to the writer.
    dirty: bool,
    /// Emit jobs waiting for their boundary to be stored.
    waiting: Vec<BoundaryReply>,
}

#[derive(Default)]
struct State {
    shards: HashMap<ShardId, Entry>,
    barriers: Vec<Barrier>,
    /// Shards whose last write was refused because the lease was lost (until opened again).
    lost: HashMap<ShardId, String>,
    closed: bool,
}

/// The queue between the runner and the writer task.
#[derive(Default)]
pub(crate) struct CheckpointQueue {
    state: Mutex<State>,
    wake: Notify,
}

impl CheckpointQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the map inconsistent; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entry<'a>(
        state: &'a mut State,
        shard: &ShardId,
        to: &Arc<dyn ShardCheckpointer>,
    ) -> &'a mut Entry {
        let e = state.shards.entry(shard.clone()).or_insert_with(|| Entry {
            progress: ShardProgress::default(),
            to: to.clone(),
            dirty: false,
            waiting: Vec::new(),
        });
        e.to = to.clone();
        e
    }

    /// Starts a shard's entry with what its store holds beyond the checkpoint (a resumed shard):
    /// the boundaries stay stored until the checkpoint passes them.
    pub(crate) fn open(&self, shard: &ShardId, resume: &Resume, to: &Arc<dyn ShardCheckpointer>) {
        let mut s = self.lock();
        s.lost.remove(shard);
        let e = Self::entry(&mut s, shard, to);
        e.progress = ShardProgress {
            delivered: None,
            resume: resume.clone(),
        };
        e.dirty = false;
    }

    /// Asks for the shard's progress to be stored (replacing any older pending progress).
    pub(crate) fn put(
        &self,
        shard: &ShardId,
        delivered: Option<Position>,
        partial: Option<ItemPosition>,
        to: &Arc<dyn ShardCheckpointer>,
    ) {
        let mut s = self.lock();
        let e = Self::entry(&mut s, shard, to);
        if delivered.is_some() {
            e.progress.delivered = delivered;
        }
        e.progress.resume.partial = partial;
        let delivered = e.progress.delivered.clone();
        e.progress.resume.prune(delivered.as_ref());
        e.dirty = true;
        drop(s);
        self.wake.notify_one();
    }

    /// Stores `boundary` with the shard's progress; the receiver answers once it is durable (an emit
    /// job waits for it before emitting its batch).
    pub(crate) fn add_boundary(
        &self,
        shard: &ShardId,
        boundary: ItemPosition,
        to: &Arc<dyn ShardCheckpointer>,
    ) -> oneshot::Receiver<Result<(), CheckpointError>> {
        let (tx, rx) = oneshot::channel();
        let mut s = self.lock();
        // Only through the shard's current checkpointer: a job of a lease since lost (the shard
        // forgotten, or opened again with another) must not write, nor redirect the entry.
        let Some(e) = s.shards.get_mut(shard).filter(|e| Arc::ptr_eq(&e.to, to)) else {
            let _ = tx.send(Err(CheckpointError::LeaseLost(format!(
                "shard {shard} is no longer read through this lease"
            ))));
            return rx;
        };
        if !e.progress.resume.boundaries.contains(&boundary) {
            e.progress.resume.boundaries.push(boundary);
            e.progress.resume.boundaries.sort();
        }
        e.waiting.push(tx);
        e.dirty = true;
        drop(s);
        self.wake.notify_one();
        rx
    }

    /// Replies on `reply` once every position queued so far for `shard` is stored.
    pub(crate) fn barrier(&self, shard: ShardId, position: Option<Position>, reply: Reply) {
        self.lock().barriers.push(Barrier {
            shard,
            position,
            reply,
        });
        self.wake.notify_one();
    }

    /// Forgets a shard's pending progress (its lease was lost); jobs waiting for a boundary learn so.
    pub(crate) fn forget(&self, shard: &ShardId) {
        let removed = self.lock().shards.remove(shard);
        for w in removed.into_iter().flat_map(|e| e.waiting) {
            let _ = w.send(Err(CheckpointError::LeaseLost(format!(
                "shard {shard} was abandoned"
            ))));
        }
    }

    /// Lets the writer end once the queue is empty.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// The writer task: runs until closed and empty.
    pub(crate) async fn run(self: Arc<Self>, metrics: Arc<PipelineMetrics>, retry: RetryPolicy) {
        let mut failures: u32 = 0;
        loop {
            let (work, barriers, closed) = {
                let mut s = self.lock();
                let work: Vec<(ShardId, ShardProgress, Arc<dyn ShardCheckpointer>, Vec<_>)> = s
                    .shards
                    .iter_mut()
                    .filter(|(_, e)| e.dirty)
                    .map(|(shard, e)| {
                        e.dirty = false;
                        (
                            shard.clone(),
                            e.progress.clone(),
                            e.to.clone(),
                            std::mem::take(&mut e.waiting),
                        )
                    })
                    .collect();
                (work, std::mem::take(&mut s.barriers), s.closed)
            };
            if work.is_empty() && barriers.is_empty() {
                if closed {
                    return;
                }
                self.wake.notified().await;
                continue;
            }
            let mut failed: Vec<ShardId> = Vec::new();
            for (shard, progress, to, waiting) in work {
                let boundary = !waiting.is_empty();
                match to.save(&progress).await {
                    Ok(()) => {
                        PipelineMetrics::add(&metrics.checkpoints, 1);
                        if boundary {
                            PipelineMetrics::add(&metrics.boundary_writes, 1);
                        }
                        self.lock().lost.remove(&shard);
                        for w in waiting {
                            let _ = w.send(Ok(()));
                        }
                        tracing::debug!(shard = %shard, delivered = ?progress.delivered, resume = ?progress.resume, "checkpoint written");
                    }
                    Err(CheckpointError::LeaseLost(msg)) => {
                        tracing::warn!(shard = %shard, reason = %msg, "checkpoint refused: lease lost");
                        for w in waiting {
                            let _ = w.send(Err(CheckpointError::LeaseLost(msg.clone())));
                        }
                        // Unless the shard was opened again (a new lease) while this write ran.
                        let mut s = self.lock();
                        let same = s.shards.get(&shard).is_none_or(|e| Arc::ptr_eq(&e.to, &to));
                        if same {
                            s.lost.insert(shard, msg);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(shard = %shard, delivered = ?progress.delivered, error = %e, "checkpoint failed; will retry");
                        // Written again (with whatever is newest by then), and the waiting jobs with it.
                        let mut s = self.lock();
                        if let Some(entry) = s.shards.get_mut(&shard) {
                            entry.dirty = true;
                            entry.waiting.extend(waiting);
                        } else {
                            for w in waiting {
                                let _ = w.send(Err(e.clone()));
                            }
                        }
                        failed.push(shard);
                    }
                }
            }
            let mut waiting = Vec::new();
            for b in barriers {
                let lost = self.lock().lost.get(&b.shard).cloned();
                if let Some(msg) = lost {
                    let _ = b.reply.send(Err(PipelineError::LeaseLost {
                        shard: b.shard.to_string(),
                        message: msg,
                    }));
                } else if failed.contains(&b.shard)
                    || self.lock().shards.get(&b.shard).is_some_and(|e| e.dirty)
                {
                    waiting.push(b);
                } else {
                    let _ = b.reply.send(Ok(b.position));
                }
            }
            if !waiting.is_empty() {
                self.lock().barriers.extend(waiting);
            }
            if failed.is_empty() {
                failures = 0;
            } else {
                tokio::time::sleep(retry.delay(failures, None)).await;
                failures = failures.saturating_add(1);
            }
        }
    }
}
