//! One emit job: hand a batch to the emitter, retry what is retryable, dead-letter what is not.
//!
//! The job ends only when every item is either acknowledged by the emitter or durably in the dead-letter
//! target; then the runner acknowledges the items to the checkpoint tracker. A dead-letter target that
//! keeps failing ends the job with an error, and the pipeline stops with nothing of the batch checkpointed.

use std::sync::Arc;
use std::time::Duration;

use crate::batch::{Batch, Envelope};
use crate::dead_letter::{DeadLetter, DeadLetterEntry, FailedStage};
use crate::emitter::{Emitter, FailureKind};
use crate::error::PipelineError;
use crate::metrics::PipelineMetrics;
use crate::record::ShardId;
use crate::retry::RetryPolicy;

/// Attempts at writing to the dead-letter target before the pipeline gives up and stops.
pub(crate) const DEAD_LETTER_ATTEMPTS: u32 = 10;

/// `count` consecutive items of the record `ordinal` of `shard` are done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ack {
    pub(crate) shard: ShardId,
    pub(crate) ordinal: u64,
    pub(crate) count: u32,
}

/// Run-length acknowledgements for a list of items (items of one record are adjacent).
pub(crate) fn acks_for<I>(items: &[Envelope<I>]) -> Vec<Ack> {
    let mut acks: Vec<Ack> = Vec::new();
    for e in items {
        let ord = e.origin.ordinal;
        match acks.last_mut() {
            Some(a) if a.ordinal == ord && a.shard == e.record().shard_id => a.count += 1,
            _ => acks.push(Ack {
                shard: e.record().shard_id.clone(),
                ordinal: ord,
                count: 1,
            }),
        }
    }
    acks
}

/// What the emit job needs, shared by all jobs of a pipeline.
pub(crate) struct Deliverer<I> {
    pub(crate) pipeline: Arc<str>,
    pub(crate) emitter: Arc<dyn Emitter<I>>,
    pub(crate) dead_letter: Arc<dyn DeadLetter>,
    pub(crate) retry: RetryPolicy,
    pub(crate) metrics: Arc<PipelineMetrics>,
}

impl<I: Send + Sync + 'static> Deliverer<I> {
    /// Delivers `items`; see the module documentation.
    pub(crate) async fn deliver(&self, items: Vec<Envelope<I>>) -> Result<(), PipelineError> {
        let mut batch = Batch::new(self.pipeline.clone(), items, 0);
        let mut dead: Vec<DeadLetterEntry> = Vec::new();
        let mut attempts: u32 = 0;
        while !batch.is_empty() {
            attempts += 1;
            PipelineMetrics::add(&self.metrics.emit_calls, 1);
            let started = std::time::Instant::now();
            let result = self.emitter.emit(&batch).await;
            let elapsed = started.elapsed();
            self.metrics.observe_emit(elapsed.as_secs_f64());
            let whole_batch_failed = matches!(&result, Err(e) if e.is_retryable());
            self.metrics.set_failing(whole_batch_failed);
            let (retry, hint, reason) = match result {
                Ok(outcome) if outcome.is_success() => {
                    PipelineMetrics::add(&self.metrics.items_emitted, batch.len() as u64);
                    tracing::debug!(pipeline = %self.pipeline, items = batch.len(), ms = elapsed.as_millis() as u64, "batch emitted");
                    break;
                }
                Ok(outcome) => {
                    let n = batch.len();
                    let mut verdict: Vec<Option<(FailureKind, String)>> = vec![None; n];
                    let mut hint: Option<Duration> = None;
                    PipelineMetrics::add(
                        &self.metrics.item_failures,
                        outcome.failures.len() as u64,
                    );
                    for f in outcome.failures {
                        match verdict.get_mut(f.index) {
                            Some(v) => *v = Some((f.kind, f.reason)),
                            None => {
                                tracing::warn!(pipeline = %self.pipeline, index = f.index, items = n, "emitter reported a failure for an item not in the batch; ignored")
                            }
                        }
                        hint = hint.max(f.retry_after);
                    }
                    let items = std::mem::take(&mut batch.items);
                    let mut retry = Vec::new();
                    let mut first_reason = None;
                    let mut ok = 0u64;
                    for (env, v) in items.into_iter().zip(verdict) {
                        match v {
                            None => ok += 1,
                            Some((FailureKind::Permanent, reason)) => {
                                dead.push(DeadLetterEntry::new(
                                    &self.pipeline,
                                    env.record(),
                                    FailedStage::Emit,
                                    reason,
                                ));
                            }
                            Some((FailureKind::Retryable, reason)) => {
                                first_reason.get_or_insert(reason.clone());
                                retry.push((env, reason));
                            }
                        }
                    }
                    PipelineMetrics::add(&self.metrics.items_emitted, ok);
                    if retry.is_empty() {
                        break;
                    }
                    if !self.retry.allows(attempts) {
                        for (env, reason) in retry {
                            let reason =
                                format!("retries exhausted after {attempts} attempts: {reason}");
                            dead.push(DeadLetterEntry::new(
                                &self.pipeline,
                                env.record(),
                                FailedStage::Emit,
                                reason,
                            ));
                        }
                        break;
                    }
                    let items: Vec<Envelope<I>> = retry.into_iter().map(|(e, _)| e).collect();
                    batch = Batch::new(self.pipeline.clone(), items, attempts);
                    (true, hint, first_reason.unwrap_or_default())
                }
                Err(e) if e.is_retryable() && self.retry.allows(attempts) => {
                    PipelineMetrics::add(&self.metrics.item_failures, batch.len() as u64);
                    batch.context.attempt = attempts;
                    (true, e.retry_after, e.message)
                }
                Err(e) => {
                    PipelineMetrics::add(&self.metrics.item_failures, batch.len() as u64);
                    let reason = if e.is_retryable() {
                        format!("retries exhausted after {attempts} attempts: {}", e.message)
                    } else {
                        e.message
                    };
                    for env in std::mem::take(&mut batch.items) {
                        dead.push(DeadLetterEntry::new(
                            &self.pipeline,
                            env.record(),
                            FailedStage::Emit,
                            reason.clone(),
                        ));
                    }
                    break;
                }
            };
            if retry {
                let wait = self.retry.delay(attempts - 1, hint);
                PipelineMetrics::add(&self.metrics.retries, 1);
                tracing::warn!(
                    pipeline = %self.pipeline, attempt = attempts, items = batch.len(),
                    wait_ms = wait.as_millis() as u64, reason = %reason,
                    "emit failed; retrying"
                );
                tokio::time::sleep(wait).await;
            }
        }
        if !dead.is_empty() {
            self.dead_letter(&dead).await?;
        }
        Ok(())
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
