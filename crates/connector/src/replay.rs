//! `replay` (re-read a range of the stream through a pipeline) and `dead-letter replay` (re-inject
//! dead-lettered records), neither touching the pipeline's checkpoints.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::DateTime;
use kinesis_connectors_consumer::{
    Checkpoint, FileCheckpointStore, InitialPosition, Lease, LeaseStore, PutEntry, StreamClient,
    api,
};
use kinesis_connectors_core::{
    CheckpointError, DeadLetterEntry, MetricsSnapshot, Position, Record, SequenceNumber,
    ShardCheckpointer, async_trait,
};
use tokio_util::sync::CancellationToken;

use crate::config::{CheckpointSpec, PipelineSpec};
use crate::run::{RunOptions, build_pipeline, run_pipeline};

/// Where `--from` starts a replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayFrom {
    /// Every shard, from records that arrived at or after this time.
    Timestamp(DateTime<chrono::Utc>),
    /// The listed shards, from these sequence numbers (inclusive); other shards are not replayed.
    Sequences(BTreeMap<String, SequenceNumber>),
}

/// Parses `--from`: an RFC 3339 time, or `SHARD:SEQUENCE[,SHARD:SEQUENCE...]`.
pub fn parse_from(text: &str) -> anyhow::Result<ReplayFrom> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(ReplayFrom::Timestamp(t.to_utc()));
    }
    let mut map = BTreeMap::new();
    for part in text.split(',') {
        let Some((shard, seq)) = part.split_once(':') else {
            bail!(
                "--from {text:?}: expected an RFC 3339 time (2026-11-25T10:00:00Z) or SHARD:SEQUENCE[,SHARD:SEQUENCE...]"
            );
        };
        map.insert(shard.trim().to_owned(), SequenceNumber::new(seq.trim())?);
    }
    Ok(ReplayFrom::Sequences(map))
}

/// Re-reads the stream from `from` through `spec`'s stages with a throw-away checkpoint store, so the
/// pipeline's own checkpoints do not move; with `until_tip` it ends when every shard is at its tip.
pub async fn replay(
    mut spec: PipelineSpec,
    from: ReplayFrom,
    until_tip: bool,
    cancel: CancellationToken,
) -> anyhow::Result<MetricsSnapshot> {
    let dir = std::env::temp_dir().join(format!(
        "kc-replay-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("replay.checkpoints.json");
    match &from {
        ReplayFrom::Timestamp(t) => spec.source.initial_position = InitialPosition::AtTimestamp(*t),
        ReplayFrom::Sequences(map) => {
            spec.source.initial_position = InitialPosition::AtSequence(map.clone());
            // Shards not listed are not replayed: their leases start out ended.
            let client = api::client(&spec.source.region, spec.source.endpoint.as_deref()).await;
            let store = FileCheckpointStore::open(&path, &spec.source.stream)?;
            for shard in api::list_shards(&client, &spec.source.stream).await? {
                if !map.contains_key(&shard.shard_id) {
                    store
                        .create(&Lease::new(
                            shard.shard_id,
                            Checkpoint::ShardEnd,
                            vec![],
                            None,
                        ))
                        .await?;
                }
            }
            let unknown: Vec<&String> = map.keys().filter(|s| !s.starts_with("shardId-")).collect();
            if !unknown.is_empty() {
                bail!("--from names shards that are not shard ids: {unknown:?}");
            }
        }
    }
    spec.checkpoint = CheckpointSpec::File { path };
    let options = RunOptions {
        until_tip,
        metrics_addr: None,
        progress: true,
    };
    let result = run_pipeline(spec, options, cancel).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Where dead-lettered records are re-injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayInto {
    /// Put the original records back into the pipeline's source stream.
    Stream,
    /// Run them through the pipeline's stages straight into its sink.
    Pipeline,
}

/// A checkpointer that writes nothing (re-injected records are not part of any shard's progress).
struct NoCheckpoints;

#[async_trait]
impl ShardCheckpointer for NoCheckpoints {
    async fn checkpoint(&self, _: &Position) -> Result<(), CheckpointError> {
        Ok(())
    }
}

/// What a dead-letter replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetterReplay {
    /// Entries read from the target.
    pub entries: usize,
    /// Records put back into the stream (`--into stream`).
    pub put: usize,
    /// Items the sink acknowledged (`--into pipeline`).
    pub emitted: u64,
    /// Records that failed again and went back to the dead-letter target.
    pub dead_lettered_again: u64,
}

/// Re-injects every entry of `spec`'s dead-letter target.
pub async fn replay_dead_letters(
    mut spec: PipelineSpec,
    into: ReplayInto,
) -> anyhow::Result<DeadLetterReplay> {
    let target = spec
        .dead_letter
        .take()
        .context("dead-letter target already built")?
        .await?;
    let mut entries: Vec<DeadLetterEntry> = target.read_all().await?;
    entries.retain(|e| e.pipeline == spec.name);
    let mut report = DeadLetterReplay {
        entries: entries.len(),
        ..Default::default()
    };
    if entries.is_empty() {
        return Ok(report);
    }
    match into {
        ReplayInto::Stream => {
            let client =
                StreamClient::connect(&spec.source.region, spec.source.endpoint.as_deref()).await;
            let puts = entries
                .iter()
                .map(|e| {
                    PutEntry::new(
                        e.data.clone(),
                        if e.partition_key.is_empty() {
                            e.shard.clone()
                        } else {
                            e.partition_key.clone()
                        },
                    )
                })
                .collect();
            report.put = client.put_batch(&spec.source.stream, puts).await?.len();
        }
        ReplayInto::Pipeline => {
            // The dead-letter target was taken above; build_pipeline needs its own.
            spec.dead_letter = Some(Box::pin(async move { Ok(target) }));
            // Nothing stops a replay into the pipeline early: a sink that stays down fails it once
            // the retry policy gives up (or waits, as `run` does, with no attempt limit).
            let (pipeline, _) = build_pipeline(&mut spec, &CancellationToken::new())
                .await?
                .context("the sink was not ready")?;
            let (handle, running) = pipeline.start();
            let mut by_shard: BTreeMap<String, Vec<Record>> = BTreeMap::new();
            entries.sort_by(|a, b| (&a.shard, a.position()).cmp(&(&b.shard, b.position())));
            for e in entries {
                by_shard.entry(e.shard.clone()).or_default().push(Record {
                    data: e.data.clone(),
                    partition_key: Arc::from(e.partition_key.as_str()),
                    position: e.position(),
                    approximate_arrival: e.arrival,
                    shard_id: Arc::from(e.shard.as_str()),
                    stream: Arc::from(e.stream.as_str()),
                });
            }
            for (shard, records) in by_shard {
                let shard: Arc<str> = Arc::from(shard.as_str());
                handle
                    .open_shard(shard.clone(), Arc::new(NoCheckpoints))
                    .await?;
                handle.push(shard.clone(), records).await?;
                handle.finish_shard(shard).await?;
            }
            handle.shutdown().await?;
            let m = running.wait().await?;
            report.emitted = m.items_emitted;
            report.dead_lettered_again = m.dead_lettered;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_is_a_time_or_shard_sequences() {
        assert!(matches!(
            parse_from("2026-11-25T10:00:00Z").unwrap(),
            ReplayFrom::Timestamp(_)
        ));
        match parse_from("shardId-000000000001:4959,shardId-000000000002:12").unwrap() {
            ReplayFrom::Sequences(m) => assert_eq!(m.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(parse_from("yesterday").is_err());
        assert!(parse_from("shardId-1:12x").is_err());
    }
}
