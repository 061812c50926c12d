//! One emit job: hand a batch to the emitter, retry what is retryable, dead-letter what is not.
//!
//! The job ends when every item is either acknowledged by the emitter, durably in the dead-letter
//! target, or given up because its shard's lease ran out here ([`Fence`]); it returns the
//! acknowledgements of the first two kinds, which the runner hands to the checkpoint tracker. Items of a
//! fenced shard are never acknowledged: the shard is abandoned and another worker delivers them again.
//! A dead-letter target that keeps failing ends the job with an error, and the pipeline stops with
//! nothing of the batch checkpointed.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::checkpoint::{Fence, ShardCheckpointer};
use crate::batch::{Batch, Envelope};
use crate::dead_letter::{DeadLetter, DeadLetterEntry, FailedStage};
use crate::emitter::{EmitError, EmitOutcome, Emitter, FailureKind};
use crate::error::PipelineError;
use crate::metrics::PipelineMetrics;
use crate::record::ShardId;
use crate::retry::RetryPolicy;

/// Attempts at writing to the dead-letter target before the pipeline gives up and stops.
pub(crate) const DEAD_LETTER_ATTEMPTS: u32 = 10;

/// `count` consecutive items of the record `ordinal` of `shard` are done; `last_index` is the highest
/// item index among them (`None`: the record as a whole, dead-lettered by the transformer stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ack {
    pub(crate) shard: ShardId,
    pub(crate) ordinal: u64,
    pub(crate) count: u32,
    pub(crate) last_index: Option<u32>,
}

/// Run-length acknowledgements for a list of items (items of one record are adjacent).
pub(crate) fn acks_for<'a, I: 'a>(items: impl IntoIterator<Item = &'a Envelope<I>>) -> Vec<Ack> {
    let mut acks: Vec<Ack> = Vec::new();
    for e in items {
        let ord = e.origin.ordinal;
        match acks.last_mut() {
            Some(a) if a.ordinal == ord && a.shard == e.record().shard_id => {
                a.count += 1;
                a.last_index = a.last_index.max(Some(e.index));
            }
            _ => acks.push(Ack {
                shard: e.record().shard_id.clone(),
                ordinal: ord,
                count: 1,
                last_index: Some(e.index),
            }),
        }
    }
    acks
}

/// The checkpointers of the shards in one batch, as the runner knew them when it started the job:
/// they say how long each shard may still be delivered ([`ShardCheckpointer::fence`]).
pub(crate) type Owners = Vec<(ShardId, Arc<dyn ShardCheckpointer>)>;

fn fence_of(owners: &Owners, shard: &ShardId) -> Option<Fence> {
    owners
        .iter()
        .find(|(s, _)| s == shard)
        .and_then(|(_, c)| c.fence())
}

/// What the emit job needs, shared by all jobs of a pipeline.
pub(crate) struct Deliverer<I> {
    pub(crate) pipeline: Arc<str>,
    pub(crate) emitter: Arc<dyn Emitter<I>>,
    pub(crate) dead_letter: Arc<dyn DeadLetter>,
    pub(crate) retry: RetryPolicy,
    pub(crate) metrics: Arc<PipelineMetrics>,
}

/// How one attempt ended, as the retry loop sees it.
enum Attempt<I> {
    /// Everything left is done (acknowledged, dead-lettered or fenced off).
    Done,
    /// These items are tried again after the wait.
    Retry {
        items: Vec<Envelope<I>>,
        hint: Option<Duration>,
        reason: String,
    },
}

impl<I: Send + Sync + 'static> Deliverer<I> {
    /// Delivers `items`; see the module documentation. Returns the acknowledgements.
    pub(crate) async fn deliver(
        &self,
        items: Vec<Envelope<I>>,
        owners: &Owners,
    ) -> Result<Vec<Ack>, PipelineError> {
        let mut acked: Vec<Ack> = Vec::new();
        let mut dead: Vec<DeadLetterEntry> = Vec::new();
        let mut dead_acks: Vec<Ack> = Vec::new();
        let mut attempts: u32 = 0;
        let mut items = items;
        let mut fenced: Vec<ShardId> = Vec::new();
        loop {
            items = self.drop_fenced(items, owners, &mut fenced);
            if items.is_empty() {
                break;
            }
            let batch = Batch::new(self.pipeline.clone(), items, attempts);
            attempts += 1;
            let outcome = self.attempt(
                batch,
                owners,
                attempts,
                &mut acked,
                &mut dead,
                &mut dead_acks,
            );
            match outcome.await {
                Attempt::Done => break,
                Attempt::Retry {
                    items: retry,
                    hint,
                    reason,
                } => {
                    let wait = self.retry.delay(attempts - 1, hint);
                    PipelineMetrics::add(&self.metrics.retries, 1);
                    tracing::warn!(
                        pipeline = %self.pipeline, attempt = attempts, items = retry.len(),
                        wait_ms = wait.as_millis() as u64, reason = %reason,
                        "emit failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    items = retry;
                }
            }
        }
        if !dead.is_empty() {
            self.dead_letter(&dead).await?;
            acked.extend(dead_acks);
        }
        // A fenced shard's acknowledgements would have a hole (its items not written), while a shard's
        // acknowledged items must be a prefix: none of them count. The shard is abandoned anyway, and
        // its next reader delivers from the last checkpoint.
        if !fenced.is_empty() {
            acked.retain(|a| !fenced.contains(&a.shard));
        }
        Ok(acked)
    }

    /// Removes the items of shards this process may no longer deliver (their lease ran out here).
    fn drop_fenced(
        &self,
        items: Vec<Envelope<I>>,
        owners: &Owners,
        dropped: &mut Vec<ShardId>,
    ) -> Vec<Envelope<I>> {
        let fenced: Vec<&ShardId> = owners
            .iter()
            // The clock is read after the fence is: a fence that ran out at the instant it was
            // answered must not look open to a `now` read before.
            .filter(|(_, c)| c.fence().is_some_and(|f| !f.allows_start(Instant::now())))
            .map(|(s, _)| s)
            .collect();
        if fenced.is_empty() {
            return items;
        }
        for s in &fenced {
            if !dropped.contains(s) {
                dropped.push((*s).clone());
            }
        }
        let before = items.len();
        let kept: Vec<Envelope<I>> = items
            .into_iter()
            .filter(|e| !fenced.contains(&&e.record().shard_id))
            .collect();
        if kept.len() < before {
            tracing::warn!(
                pipeline = %self.pipeline, shards = ?fenced, items = before - kept.len(),
                "lease not confirmed within the failover time; not emitting these shards' items (another worker delivers them)"
            );
        }
        kept
    }

    /// One emit call of `batch` and what follows from its result.
    async fn attempt(
        &self,
        batch: Batch<I>,
        owners: &Owners,
        attempts: u32,
        acked: &mut Vec<Ack>,
        dead: &mut Vec<DeadLetterEntry>,
        dead_acks: &mut Vec<Ack>,
    ) -> Attempt<I> {
        PipelineMetrics::add(&self.metrics.emit_calls, 1);
        let stop_by = || {
            batch
                .context
                .shards
                .iter()
                .filter_map(|r| fence_of(owners, &r.shard).map(|f| f.stop_by))
                .min()
        };
        let started = std::time::Instant::now();
        let result = match stop_by() {
            // Not even polled once: a first poll may already write (a file emitter does).
            Some(deadline) if deadline <= Instant::now() => Err(EmitError::retryable(
                "the shard's lease ran out here before the emit started; not emitted",
            )),
            Some(mut deadline) => {
                // The deadline moves with the lease: renewals confirmed while the emit runs extend
                // it. (A deadline fixed at the start gave up every emit slower than the failover
                // time, and retried it for ever, although the lease was held throughout.)
                let emit = self.emitter.emit(&batch);
                tokio::pin!(emit);
                loop {
                    tokio::select! {
                        r = &mut emit => break r,
                        () = tokio::time::sleep_until(deadline) => match stop_by() {
                            // The fence is read before the clock.
                            Some(later) if later > Instant::now() => deadline = later,
                            _ => break Err(EmitError::retryable(
                                "the emit was still running when the shard's lease ran out here; given up",
                            )),
                        },
                    }
                }
            }
            None => self.emitter.emit(&batch).await,
        };
        let elapsed = started.elapsed();
        self.metrics.observe_emit(elapsed.as_secs_f64());
        let result = result.and_then(|o| validate(o, batch.len()));
        let whole_batch_failed = matches!(&result, Err(e) if e.is_retryable());
        self.metrics.set_failing(whole_batch_failed);
        let dead_entry = |env: &Envelope<I>, reason: String| {
            DeadLetterEntry::for_item(&self.pipeline, env, FailedStage::Emit, reason)
        };
        match result {
            Ok(outcome) if outcome.is_success() => {
                PipelineMetrics::add(&self.metrics.items_emitted, batch.len() as u64);
                tracing::debug!(pipeline = %self.pipeline, items = batch.len(), ms = elapsed.as_millis() as u64, "batch emitted");
                acked.extend(acks_for(&batch.items));
                Attempt::Done
            }
            Ok(outcome) => {
                let n = batch.len();
                let mut verdict: Vec<Option<(FailureKind, String)>> = vec![None; n];
                let mut hint: Option<Duration> = None;
                PipelineMetrics::add(&self.metrics.item_failures, outcome.failures.len() as u64);
                for f in outcome.failures {
                    // `validate` checked every index.
                    if let Some(v) = verdict.get_mut(f.index) {
                        *v = Some((f.kind, f.reason));
                    }
                    hint = hint.max(f.retry_after);
                }
                let mut retry = Vec::new();
                let mut first_reason = None;
                let mut ok = 0u64;
                let mut written: Vec<Envelope<I>> = Vec::new();
                for (env, v) in batch.items.into_iter().zip(verdict) {
                    match v {
                        None => {
                            ok += 1;
                            written.push(env);
                        }
                        Some((FailureKind::Permanent, reason)) => {
                            dead.push(dead_entry(&env, reason));
                            dead_acks.extend(acks_for([&env]));
                        }
                        Some((FailureKind::Retryable, reason)) => {
                            first_reason.get_or_insert(reason.clone());
                            retry.push((env, reason));
                        }
                    }
                }
                PipelineMetrics::add(&self.metrics.items_emitted, ok);
                acked.extend(acks_for(&written));
                if retry.is_empty() {
                    return Attempt::Done;
                }
                if !self.retry.allows(attempts) {
                    for (env, reason) in retry {
                        let reason =
                            format!("retries exhausted after {attempts} attempts: {reason}");
                        dead.push(dead_entry(&env, reason));
                        dead_acks.extend(acks_for([&env]));
                    }
                    return Attempt::Done;
                }
                Attempt::Retry {
                    items: retry.into_iter().map(|(e, _)| e).collect(),
                    hint,
                    reason: first_reason.unwrap_or_default(),
                }
            }
            Err(e) if e.is_retryable() && self.retry.allows(attempts) => {
                PipelineMetrics::add(&self.metrics.item_failures, batch.len() as u64);
                Attempt::Retry {
                    items: batch.items,
                    hint: e.retry_after,
                    reason: e.message,
                }
            }
            Err(e) => {
                PipelineMetrics::add(&self.metrics.item_failures, batch.len() as u64);
                let reason = if e.is_retryable() {
                    format!("retries exhausted after {attempts} attempts: {}", e.message)
                } else {
                    e.message
                };
                for env in &batch.items {
                    dead.push(dead_entry(env, reason.clone()));
                }
                dead_acks.extend(acks_for(&batch.items));
                Attempt::Done
            }
        }
    }

    /// Writes entries to the dead-letter target, retrying a bounded number of times.
    pub(crate) async fn dead_letter(
        &self,
        entries: &[DeadLetterEntry],
    ) -> Result<(), PipelineError> {
        let mut attempt = 0;
        loop {
            match self.dead_letter.write(entries).await {
                Ok(()) => {
                    PipelineMetrics::add(&self.metrics.dead_lettered, entries.len() as u64);
                    tracing::warn!(
                        pipeline = %self.pipeline, records = entries.len(),
                        target = %self.dead_letter.describe(), reason = %entries[0].reason,
                        "records dead-lettered"
                    );
                    return Ok(());
                }
                Err(e) if attempt + 1 < DEAD_LETTER_ATTEMPTS => {
                    let wait = self.retry.delay(attempt, None);
                    tracing::error!(pipeline = %self.pipeline, attempt = attempt + 1, error = %e, "dead-letter write failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// An outcome that names an item outside the batch cannot be trusted about any item: it is treated as
/// a retryable failure of the whole batch (nothing acknowledged), never as a success.
fn validate(outcome: EmitOutcome, len: usize) -> Result<EmitOutcome, EmitError> {
    match outcome.failures.iter().find(|f| f.index >= len) {
        Some(bad) => Err(EmitError::retryable(format!(
            "the emitter reported a failure of item {} in a batch of {len}: its outcome is malformed, so no item of the batch counts as written",
            bad.index
        ))),
        None => Ok(outcome),
    }
}
