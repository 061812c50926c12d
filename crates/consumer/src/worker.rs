//! The worker: discovers a stream's shards, decides where each starts, runs one reader per shard, and
//! starts a child shard only after its parents were read to their end and delivered.
//!
//! Shard discovery (`ListShards`) runs at start, every `shard_sync_interval`, and at once whenever a
//! shard ends, so children are picked up without waiting. A newly seen shard gets a store entry before it
//! is read:
//!
//! * a child of a shard this pipeline has already tracked starts at TRIM_HORIZON (nothing lost across a
//!   reshard);
//! * otherwise the configured initial position applies; with `latest`, a shard that is already closed is
//!   skipped (marked ended) and an open one starts at the time the worker started, stored as
//!   AT_TIMESTAMP, so that a restart before its first checkpoint skips nothing.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use chrono::{DateTime, Utc};
use kinesis_connectors_core::ShardId;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::error::ConsumerError;
use crate::position::{Checkpoint, InitialPosition};
use crate::processor::{
    Checkpointer, InitializationInput, ShardRecordProcessorFactory, ShutdownReason,
};
use crate::reader::{ReadOutcome, ReaderSettings, ShardReader};
use crate::shard::{ShardInfo, live_parents, parents_first};
use crate::store::{CheckpointStore, ShardState};

/// Default time between shard discoveries.
pub const DEFAULT_SHARD_SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// How the worker reads a stream.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// The stream.
    pub stream: String,
    /// Where shards without a checkpoint start.
    pub initial_position: InitialPosition,
    /// How each shard is polled.
    pub reader: ReaderSettings,
    /// Time between shard discoveries.
    pub shard_sync_interval: Duration,
    /// Stop each shard at its tip, and the worker once every shard is at its tip or ended (for batch
    /// runs, the demo and tests) instead of following the stream.
    pub until_tip: bool,
}

impl WorkerSettings {
    /// Settings for `stream` with defaults.
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            initial_position: InitialPosition::TrimHorizon,
            reader: ReaderSettings::default(),
            shard_sync_interval: DEFAULT_SHARD_SYNC_INTERVAL,
            until_tip: false,
        }
    }
}

/// Reads every shard of one stream in this process; see the module documentation.
pub struct Worker {
    client: Client,
    settings: WorkerSettings,
    store: Arc<dyn CheckpointStore>,
    factory: Arc<dyn ShardRecordProcessorFactory>,
}

impl Worker {
    /// A worker reading with `client`, checkpointing in `store`, processing with `factory`'s processors.
    pub fn new(
        client: Client,
        settings: WorkerSettings,
        store: Arc<dyn CheckpointStore>,
        factory: Arc<dyn ShardRecordProcessorFactory>,
    ) -> Self {
        Self {
            client,
            settings,
            store,
            factory,
        }
    }

    /// Runs until `cancel` fires (or, with `until_tip`, until every shard is at its tip or ended). On the
    /// way out every shard's processor is shut down with [`ShutdownReason::Requested`].
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), ConsumerError> {
        let started_at = Utc::now();
        let stream: Arc<str> = Arc::from(self.settings.stream.as_str());
        let shard_cancel = cancel.child_token();
        let mut tasks: JoinSet<(String, Result<ReadOutcome, ConsumerError>)> = JoinSet::new();
        let mut running: HashSet<String> = HashSet::new();
        let mut done: HashSet<String> = HashSet::new();
        let mut result = Ok(());
        loop {
            match self.startable(&running, &done, started_at, &cancel).await {
                Ok(start) => {
                    for (shard, checkpoint) in start {
                        tracing::info!(stream = %stream, shard = %shard, from = %checkpoint, "starting shard");
                        running.insert(shard.clone());
                        let task = ShardTask {
                            client: self.client.clone(),
                            stream: stream.clone(),
                            shard: Arc::from(shard.as_str()),
                            checkpoint,
                            settings: self.settings.reader.clone(),
                            until_tip: self.settings.until_tip,
                            store: self.store.clone(),
                            factory: self.factory.clone(),
                            cancel: shard_cancel.clone(),
                        };
                        tasks.spawn(async move { (shard, task.run().await) });
                    }
                }
                Err(_) if cancel.is_cancelled() => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            if self.settings.until_tip && running.is_empty() {
                tracing::info!(stream = %stream, "every shard is at its tip or ended");
                break;
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    let (shard, outcome) = match joined {
                        Ok(v) => v,
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        Err(e) => (String::new(), Err(ConsumerError::Protocol(e.to_string()))),
                    };
                    running.remove(&shard);
                    match outcome {
                        Ok(ReadOutcome::ShardEnd) | Ok(ReadOutcome::AtTip) => {
                            done.insert(shard);
                        }
                        Ok(ReadOutcome::Cancelled) => {}
                        Err(e) => {
                            tracing::error!(shard = %shard, error = %e, "shard failed; stopping the worker");
                            result = Err(e);
                            break;
                        }
                    }
                }
                () = tokio::time::sleep(self.settings.shard_sync_interval) => {}
            }
        }
        shard_cancel.cancel();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((shard, Err(e))) => {
                    tracing::error!(shard = %shard, error = %e, "shard failed while stopping")
                }
                Ok(_) => {}
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {}
            }
        }
        result
    }

    /// Lists shards, creates store entries for new ones, and returns those ready to start.
    async fn startable(
        &self,
        running: &HashSet<String>,
        done: &HashSet<String>,
        started_at: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Result<Vec<(String, Checkpoint)>, ConsumerError> {
        let stream = &self.settings.stream;
        let shards = api::with_retry(&self.settings.reader.retry, cancel, "ListShards", || {
            api::list_shards(&self.client, stream)
        })
        .await?;
        let mut stored = self.store.load().await?;
        let tracked_before: HashSet<String> = stored.keys().cloned().collect();
        for shard in parents_first(&shards) {
            if stored.contains_key(&shard.shard_id) {
                continue;
            }
            let checkpoint = self.first_checkpoint(shard, &tracked_before, started_at);
            let parents: Vec<String> = shard.parents().map(str::to_owned).collect();
            self.store
                .create(&shard.shard_id, checkpoint.clone(), parents.clone())
                .await?;
            stored.insert(
                shard.shard_id.clone(),
                ShardState {
                    checkpoint,
                    parents,
                    updated_at: Utc::now(),
                    owner: None,
                },
            );
        }
        Ok(ready_shards(&shards, &stored, running, done))
    }

    fn first_checkpoint(
        &self,
        shard: &ShardInfo,
        tracked: &HashSet<String>,
        started_at: DateTime<Utc>,
    ) -> Checkpoint {
        if shard.parents().any(|p| tracked.contains(p)) {
            return Checkpoint::TrimHorizon;
        }
        if self.settings.initial_position == InitialPosition::Latest && !shard.is_open() {
            return Checkpoint::ShardEnd;
        }
        Checkpoint::initial(&self.settings.initial_position, &shard.shard_id, started_at)
    }
}

/// Shards that are neither running, done nor ended, whose live parents have all ended.
fn ready_shards(
    shards: &[ShardInfo],
    stored: &BTreeMap<String, ShardState>,
    running: &HashSet<String>,
    done: &HashSet<String>,
) -> Vec<(String, Checkpoint)> {
    let known: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    let ended = |id: &str| stored.get(id).is_some_and(|s| s.checkpoint.is_shard_end());
    parents_first(shards)
        .into_iter()
        .filter(|s| {
            !running.contains(&s.shard_id) && !done.contains(&s.shard_id) && !ended(&s.shard_id)
        })
        .filter(|s| live_parents(s, &known).iter().all(|p| ended(p)))
        .filter_map(|s| {
            stored
                .get(&s.shard_id)
                .map(|st| (s.shard_id.clone(), st.checkpoint.clone()))
        })
        .collect()
}

struct ShardTask {
    client: Client,
    stream: Arc<str>,
    shard: ShardId,
    checkpoint: Checkpoint,
    settings: ReaderSettings,
    until_tip: bool,
    store: Arc<dyn CheckpointStore>,
    factory: Arc<dyn ShardRecordProcessorFactory>,
    cancel: CancellationToken,
}

impl ShardTask {
    async fn run(self) -> Result<ReadOutcome, ConsumerError> {
        let processor_error = |e: crate::processor::ProcessorError| ConsumerError::Processor {
            shard: self.shard.to_string(),
            message: e.to_string(),
        };
        let checkpointer = Checkpointer::new(self.store.clone(), self.shard.clone());
        let mut processor = self.factory.create_processor();
        processor
            .initialize(InitializationInput {
                shard_id: self.shard.clone(),
                checkpoint: self.checkpoint.clone(),
            })
            .await
            .map_err(processor_error)?;
        let reader = ShardReader {
            client: &self.client,
            stream: &self.stream,
            shard: &self.shard,
            settings: &self.settings,
            until_tip: self.until_tip,
            cancel: &self.cancel,
        };
        let outcome = reader
            .run(&self.checkpoint, processor.as_mut(), &checkpointer)
            .await;
        let reason = match outcome {
            Ok(ReadOutcome::ShardEnd) => ShutdownReason::ShardEnd,
            _ => ShutdownReason::Requested,
        };
        let shutdown = processor.shutdown(reason, &checkpointer).await;
        let outcome = outcome?;
        shutdown.map_err(processor_error)?;
        if outcome == ReadOutcome::ShardEnd {
            let ended = self
                .store
                .load()
                .await?
                .get(self.shard.as_ref())
                .is_some_and(|s| s.checkpoint.is_shard_end());
            if !ended {
                return Err(ConsumerError::Processor {
                    shard: self.shard.to_string(),
                    message: "the processor did not checkpoint SHARD_END at the end of the shard; its children cannot start".into(),
                });
            }
            tracing::info!(shard = %self.shard, "shard ended and delivered");
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], open: bool) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            parent_shard_id: parents.first().map(|s| s.to_string()),
            adjacent_parent_shard_id: parents.get(1).map(|s| s.to_string()),
            starting_hash_key: "0".into(),
            ending_hash_key: "1".into(),
            starting_sequence_number: "1".into(),
            ending_sequence_number: (!open).then(|| "9".into()),
        }
    }

    fn state(cp: Checkpoint) -> ShardState {
        ShardState {
            checkpoint: cp,
            parents: vec![],
            updated_at: Utc::now(),
            owner: None,
        }
    }

    #[test]
    fn children_wait_for_every_live_parent_to_end() {
        let shards = vec![
            shard("p1", &[], false),
            shard("p2", &[], false),
            shard("c", &["p1", "p2"], true),
            shard("orphan", &["expired"], true),
        ];
        let mut stored: BTreeMap<String, ShardState> = shards
            .iter()
            .map(|s| (s.shard_id.clone(), state(Checkpoint::TrimHorizon)))
            .collect();
        let none = HashSet::new();
        let ids = |v: Vec<(String, Checkpoint)>| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(
            ids(ready_shards(&shards, &stored, &none, &none)),
            ["p1", "p2", "orphan"]
        );
        stored.insert("p1".into(), state(Checkpoint::ShardEnd));
        assert_eq!(
            ids(ready_shards(&shards, &stored, &none, &none)),
            ["p2", "orphan"]
        );
        stored.insert("p2".into(), state(Checkpoint::ShardEnd));
        let running: HashSet<String> = ["orphan".to_string()].into();
        assert_eq!(ids(ready_shards(&shards, &stored, &running, &none)), ["c"]);
    }
}
