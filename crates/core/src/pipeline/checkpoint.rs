//! Writing checkpoints off the pipeline's hot loop.
//!
//! The runner records the newest delivered position per shard; a writer task persists whatever is newest
//! when it gets to it, so under load many acknowledgements coalesce into one write per shard. A barrier
//! lets `finish_shard` wait until a shard's final position is durably stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::error::{CheckpointError, PipelineError};
use crate::metrics::PipelineMetrics;
use crate::record::{Position, ShardId};
use crate::retry::RetryPolicy;

/// Persists a shard's delivered position (implemented by the consumer engine's checkpoint and lease
/// stores). Implementations must ignore positions at or before the stored one.
#[async_trait]
pub trait ShardCheckpointer: Send + Sync {
    /// Durably records that everything up to and including `position` is delivered.
    async fn checkpoint(&self, position: &Position) -> Result<(), CheckpointError>;

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

type Reply = oneshot::Sender<Result<Option<Position>, PipelineError>>;

struct Barrier {
    shard: ShardId,
    position: Option<Position>,
    reply: Reply,
}

#[derive(Default)]
struct State {
    latest: HashMap<ShardId, (Position, Arc<dyn ShardCheckpointer>)>,
    barriers: Vec<Barrier>,
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

    /// Asks for `position` to be stored for `shard` (replacing any older pending position).
    pub(crate) fn put(&self, shard: ShardId, position: Position, to: Arc<dyn ShardCheckpointer>) {
        self.lock().latest.insert(shard, (position, to));
        self.wake.notify_one();
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

    /// Forgets a pending position (the shard's lease was lost).
    pub(crate) fn forget(&self, shard: &ShardId) {
        self.lock().latest.remove(shard);
    }

    /// Lets the writer end once the queue is empty.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// The writer task: runs until closed and empty.
    pub(crate) async fn run(self: Arc<Self>, metrics: Arc<PipelineMetrics>, retry: RetryPolicy) {
        let mut failures: u32 = 0;
        let mut lost: HashMap<ShardId, String> = HashMap::new();
        loop {
            let (work, barriers, closed) = {
                let mut s = self.lock();
                (
                    std::mem::take(&mut s.latest),
                    std::mem::take(&mut s.barriers),
                    s.closed,
                )
            };
            if work.is_empty() && barriers.is_empty() {
                if closed {
                    return;
                }
                self.wake.notified().await;
                continue;
            }
            let mut failed: Vec<ShardId> = Vec::new();
            for (shard, (position, to)) in work {
                match to.checkpoint(&position).await {
                    Ok(()) => {
                        PipelineMetrics::add(&metrics.checkpoints, 1);
                        lost.remove(&shard);
                        tracing::debug!(shard = %shard, position = %position, "checkpoint written");
                    }
                    Err(CheckpointError::LeaseLost(msg)) => {
                        tracing::warn!(shard = %shard, reason = %msg, "checkpoint refused: lease lost");
                        lost.insert(shard, msg);
                    }
                    Err(e) => {
                        tracing::warn!(shard = %shard, position = %position, error = %e, "checkpoint failed; will retry");
                        // Put it back unless something newer arrived meanwhile.
                        self.lock()
                            .latest
                            .entry(shard.clone())
                            .or_insert((position, to));
                        failed.push(shard);
                    }
                }
            }
            let mut waiting = Vec::new();
            for b in barriers {
                if let Some(msg) = lost.get(&b.shard) {
                    let _ = b.reply.send(Err(PipelineError::LeaseLost {
                        shard: b.shard.to_string(),
                        message: msg.clone(),
                    }));
                } else if failed.contains(&b.shard) {
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
