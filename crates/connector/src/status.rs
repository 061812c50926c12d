//! `kinesis-connector status`: one row per shard — state, owner, checkpoint, lag, last checkpoint time.
//!
//! Read-only: leases come from the pipeline's store (the embedded file is read without taking its lock,
//! so `status` works while the pipeline runs), shards from `ListShards`. The lag of a shard is the age
//! of its oldest undelivered record (now minus that record's arrival time; 0 when nothing is waiting),
//! read with one `GetRecords` after the checkpoint; `millis_behind_latest` is what Kinesis reports for
//! that position.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use kinesis_connectors_consumer::api::{self, IteratorStart};
use kinesis_connectors_consumer::{
    Checkpoint, DynamoDbLeaseStore, FileCheckpointStore, Lease, LeaseStore, ShardInfo,
};
use serde::Serialize;

use crate::config::{CheckpointSpec, PipelineSpec};

/// One shard's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardStatus {
    /// The shard.
    pub shard: String,
    /// `open` (takes writes), `closed` (split or merged, not yet read to its end) or `ended` (read to its
    /// end and delivered).
    pub state: String,
    /// The worker holding its lease.
    pub owner: Option<String>,
    /// The checkpoint (a sequence number or a sentinel such as `TRIM_HORIZON`, `SHARD_END`).
    pub checkpoint: Option<String>,
    /// The KPL sub-record of the checkpoint.
    pub sub_sequence: Option<u64>,
    /// Age of the oldest undelivered record in milliseconds (0 when caught up), where known.
    pub lag_ms: Option<i64>,
    /// How far the checkpoint is behind the tip, as Kinesis reports it.
    pub millis_behind_latest: Option<i64>,
    /// When the checkpoint was last written, where the store records it.
    pub last_checkpoint: Option<DateTime<Utc>>,
}

/// The status of every shard of `spec`'s stream.
pub async fn shard_status(spec: &PipelineSpec) -> anyhow::Result<Vec<ShardStatus>> {
    let leases: BTreeMap<String, Lease> = match &spec.checkpoint {
        CheckpointSpec::File { path } => FileCheckpointStore::read_file(path)
            .with_context(|| format!("reading {}", path.display()))?
            .unwrap_or_default(),
        CheckpointSpec::DynamoDb {
            table,
            region,
            endpoint,
        } => DynamoDbLeaseStore::connect(region, endpoint.as_deref(), table)
            .await?
            .list()
            .await?
            .into_iter()
            .map(|l| (l.shard_id.clone(), l))
            .collect(),
    };
    let client = api::client(&spec.source.region, spec.source.endpoint.as_deref()).await;
    let shards: BTreeMap<String, ShardInfo> = api::list_shards(&client, &spec.source.stream)
        .await?
        .into_iter()
        .map(|s| (s.shard_id.clone(), s))
        .collect();
    let stream: Arc<str> = Arc::from(spec.source.stream.as_str());
    let now = Utc::now();
    let mut rows = Vec::new();
    let ids: std::collections::BTreeSet<&String> = shards.keys().chain(leases.keys()).collect();
    for id in ids {
        let lease = leases.get(id);
        let checkpoint = lease.map(|l| &l.checkpoint);
        let ended = checkpoint.is_some_and(Checkpoint::is_shard_end);
        let state = if ended {
            "ended"
        } else if shards.get(id).is_some_and(ShardInfo::is_open) {
            "open"
        } else {
            "closed"
        };
        let (lag_ms, millis_behind_latest) = if ended {
            (Some(0), Some(0))
        } else if shards.contains_key(id) {
            lag(&client, &stream, id, checkpoint, now)
                .await
                .unwrap_or((None, None))
        } else {
            (None, None)
        };
        rows.push(ShardStatus {
            shard: id.clone(),
            state: state.into(),
            owner: lease.and_then(|l| l.owner.clone()),
            checkpoint: checkpoint.map(|c| match c {
                Checkpoint::Sequence { position } => position.sequence.to_string(),
                other => other.to_string(),
            }),
            sub_sequence: checkpoint
                .and_then(|c| c.position())
                .map(|p| p.sub_sequence),
            lag_ms,
            millis_behind_latest,
            last_checkpoint: lease.and_then(|l| l.updated_at),
        });
    }
    Ok(rows)
}

/// The age of the first record after `checkpoint`, and the service's millis-behind-latest there.
async fn lag(
    client: &kinesis_connectors_consumer::KinesisClient,
    stream: &Arc<str>,
    shard: &str,
    checkpoint: Option<&Checkpoint>,
    now: DateTime<Utc>,
) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let start = match checkpoint {
        None | Some(Checkpoint::TrimHorizon) => IteratorStart::TrimHorizon,
        Some(Checkpoint::Latest) => IteratorStart::Latest,
        Some(Checkpoint::AtTimestamp { timestamp }) => IteratorStart::AtTimestamp(*timestamp),
        Some(Checkpoint::AtSequence { sequence }) => IteratorStart::AtSequence(sequence.clone()),
        Some(Checkpoint::Sequence { position }) => {
            IteratorStart::AfterSequence(position.sequence.clone())
        }
        Some(Checkpoint::ShardEnd) => return Ok((Some(0), Some(0))),
    };
    let iterator = api::get_shard_iterator(client, stream, shard, &start).await?;
    let shard_id: Arc<str> = Arc::from(shard);
    let page = api::get_records(client, &iterator, 1, stream, &shard_id).await?;
    let lag = match page.records.first().and_then(|r| r.approximate_arrival) {
        Some(arrival) => (now - arrival).num_milliseconds().max(0),
        None => 0,
    };
    Ok((Some(lag), page.millis_behind_latest))
}

/// Prints the rows: a table on a terminal (or when asked), JSON with `json`.
pub fn print(rows: &[ShardStatus], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<7} {:<28} {:<58} {:>9} {:>12}  LAST CHECKPOINT",
        "SHARD", "STATE", "OWNER", "CHECKPOINT", "LAG (ms)", "BEHIND (ms)"
    );
    let dash = || "-".to_owned();
    for r in rows {
        let checkpoint = match (&r.checkpoint, r.sub_sequence) {
            (Some(c), Some(s)) if s > 0 => format!("{c}/{s}"),
            (Some(c), _) => c.clone(),
            (None, _) => dash(),
        };
        println!(
            "{:<24} {:<7} {:<28} {:<58} {:>9} {:>12}  {}",
            r.shard,
            r.state,
            r.owner.clone().unwrap_or_else(dash),
            checkpoint,
            r.lag_ms.map_or_else(dash, |v| v.to_string()),
            r.millis_behind_latest.map_or_else(dash, |v| v.to_string()),
            r.last_checkpoint.map_or_else(dash, |t| t.to_rfc3339()),
        );
    }
    Ok(())
}
