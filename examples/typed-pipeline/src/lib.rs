//! An example of a pipeline built in code with a typed item and no configuration file.
//!
//! Click events (JSON such as `{"event_type": "view", "user": "u-7"}`) are read from a stream with the
//! consumer engine's [`Worker`], parsed into [`Click`] values by a closure transformer, filtered
//! (heartbeats dropped) and counted per event type by [`CountsEmitter`], which keeps the counts exact
//! under redelivery. The wiring is what `kinesis-connector run` does for configured pipelines:
//!
//! ```text
//! Worker (shards, leases, checkpoints) ─▶ PipelineProcessorFactory ─▶ Pipeline<Click>
//!     TransformFn(JSON → Click) ─▶ FilterFn(no heartbeats) ─▶ buffer ─▶ CountsEmitter ─ack─▶ checkpoints
//! ```
//!
//! Run it against the local stack (`eval "$(integration-tests/local-stack up)"`):
//!
//! ```sh
//! cargo run -p kinesis-connector -- streams create clicks --shards 2
//! cargo run -p kinesis-connector -- streams put clicks --sample 1000
//! cargo run -p example-typed-pipeline -- --stream clicks --until-tip
//! ```
#![warn(missing_docs, unreachable_pub)]

mod counts;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kinesis_connectors_consumer::{
    FileCheckpointStore, PipelineProcessorFactory, Worker, WorkerSettings, api,
};
use kinesis_connectors_core::{
    BufferLimits, FileDeadLetter, FilterFn, Pipeline, PipelineSettings, Record, TransformError,
    TransformFn,
};
use tokio_util::sync::CancellationToken;

pub use counts::{Click, Counts, CountsEmitter};

/// Where to read and where to keep state.
#[derive(Clone, Debug)]
pub struct Options {
    /// The stream.
    pub stream: String,
    /// Its AWS region.
    pub region: String,
    /// An endpoint override (a local Kinesis), if any.
    pub endpoint: Option<String>,
    /// Directory of the checkpoints, the counts and the dead letters.
    pub state_dir: PathBuf,
    /// Stop once every shard is read to its tip and delivered.
    pub until_tip: bool,
}

/// The counts file in `state_dir`.
pub fn counts_path(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("counts.json")
}

/// Runs the pipeline until `cancel` fires (or the tip, with `until_tip`); returns the counts.
pub async fn run(options: Options, cancel: CancellationToken) -> anyhow::Result<Counts> {
    std::fs::create_dir_all(&options.state_dir)
        .with_context(|| format!("{}", options.state_dir.display()))?;
    let emitter = Arc::new(CountsEmitter::open(counts_path(&options.state_dir))?);
    let parse = TransformFn(|record: &Record, out: &mut Vec<Click>| {
        out.push(serde_json::from_slice(&record.data).map_err(TransformError::new)?);
        Ok(())
    });
    let no_heartbeats = FilterFn(|click: &Click, _: &Record| click.event_type != "heartbeat");
    let pipeline = Pipeline::new(
        "click-counts",
        Arc::new(parse),
        emitter.clone(),
        Arc::new(FileDeadLetter::new(
            options.state_dir.join("dead-letter.jsonl"),
        )),
    )
    .filter(Arc::new(no_heartbeats))
    .settings(PipelineSettings {
        buffer: BufferLimits {
            max_records: 1_000,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(2),
        },
        ..PipelineSettings::default()
    });
    let (handle, running) = pipeline.start();

    let store = Arc::new(FileCheckpointStore::open(
        options.state_dir.join("checkpoints.json"),
        &options.stream,
    )?);
    let client = api::client(&options.region, options.endpoint.as_deref()).await;
    let settings = WorkerSettings {
        until_tip: options.until_tip,
        ..WorkerSettings::new(options.stream.clone())
    };
    let worker = Worker::new(
        client,
        settings,
        store,
        Arc::new(PipelineProcessorFactory::new(handle.clone())),
    );
    let read = worker.run(cancel).await;
    // Deliver what was read and write the last checkpoints, whatever ended the reading.
    handle.shutdown().await?;
    running.wait().await?;
    read?;
    Ok(emitter.counts())
}
