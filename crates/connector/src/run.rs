//! `kinesis-connector run`: one pipeline, from its stream to its sink, until stopped.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use kinesis_connectors_consumer::{
    Decoder, DynamoDbLeaseStore, FileCheckpointStore, LeaseSettings, LeaseStore,
    PipelineProcessorFactory, ReaderKind, Worker, WorkerSettings, api,
};
use kinesis_connectors_core::{DeadLetter, Emitter, Item, MetricsSnapshot, Pipeline};
use tokio_util::sync::CancellationToken;

use crate::config::{CheckpointSpec, PipelineSpec, SourceDecoder};

/// How `run` behaves.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// End once every shard is at its tip (or ended) and everything read is delivered.
    pub until_tip: bool,
    /// Serve `/metrics`, `/health` and `/ready` here.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Show per-shard progress (bars on a terminal, a summary otherwise).
    pub progress: bool,
}

/// Builds the pipeline of `spec` (emitter built and checked, dead-letter target built); returns it
/// with its dead-letter target, or `None` when `cancel` fired while the sink was not ready yet.
pub async fn build_pipeline(
    spec: &mut PipelineSpec,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<(Pipeline<Item>, Arc<dyn DeadLetter>)>> {
    let name = spec.name.clone();
    let emitter = spec
        .emitter
        .take()
        .ok_or_else(|| anyhow!("pipeline {name:?}: emitter already built"))?
        .await
        .with_context(|| {
            format!(
                "pipeline {name:?}: cannot build emitter {:?}",
                spec.emitter_type
            )
        })?;
    if !wait_until_ready(&name, spec, emitter.as_ref(), cancel).await? {
        return Ok(None);
    }
    let dead_letter = spec
        .dead_letter
        .take()
        .ok_or_else(|| anyhow!("pipeline {name:?}: dead-letter target already built"))?
        .await
        .with_context(|| {
            format!(
                "pipeline {name:?}: cannot build dead-letter target {:?}",
                spec.dead_letter_type
            )
        })?;
    let mut pipeline = Pipeline::new(
        name.as_str(),
        spec.transformer.clone(),
        emitter,
        dead_letter.clone(),
    )
    .settings(spec.settings.clone());
    for f in &spec.filters {
        pipeline = pipeline.filter(f.clone());
    }
    Ok(Some((pipeline, dead_letter)))
}

/// Runs the emitter's start-up check. A permanent failure (missing bucket or table, access denied, bad
/// mapping) ends the start with its reason; a retryable one (5xx, throttling, connection refused: the
/// sink is down or busy for now) is retried with the pipeline's retry policy, each attempt logged, as
/// every emit is — so workers started while a sink restarts come up when it does. `Ok(false)` when
/// `cancel` fired first.
async fn wait_until_ready(
    name: &str,
    spec: &PipelineSpec,
    emitter: &dyn Emitter<Item>,
    cancel: &CancellationToken,
) -> anyhow::Result<bool> {
    let retry = &spec.settings.retry;
    let mut attempts = 0u32;
    loop {
        let error = tokio::select! {
            result = emitter.check() => match result {
                Ok(()) => return Ok(true),
                Err(e) => e,
            },
            () = cancel.cancelled() => return Ok(false),
        };
        attempts += 1;
        if !error.is_retryable() || !retry.allows(attempts) {
            return Err(anyhow!(
                "pipeline {name:?}: emitter {:?} is not ready: {error}",
                spec.emitter_type
            ));
        }
        let wait = retry.delay(attempts - 1, error.retry_after);
        tracing::warn!(
            pipeline = name, emitter = %spec.emitter_type, attempts, retry_in = ?wait, %error,
            "sink not ready, retrying its start-up check"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return Ok(false),
        }
    }
}

/// Runs `spec` until `cancel` fires (or the tip is reached with `until_tip`), then stops fetching,
/// delivers what was read, writes the last checkpoints and returns the pipeline's counters.
pub async fn run_pipeline(
    mut spec: PipelineSpec,
    options: RunOptions,
    cancel: CancellationToken,
) -> anyhow::Result<MetricsSnapshot> {
    let name = spec.name.clone();
    let Some((pipeline, dead_letter)) = build_pipeline(&mut spec, &cancel).await? else {
        tracing::info!(pipeline = %name, "stopped before the sink was ready; nothing was read");
        return Ok(MetricsSnapshot::default());
    };
    let store: Arc<dyn LeaseStore> = match &spec.checkpoint {
        CheckpointSpec::File { path } => Arc::new(
            FileCheckpointStore::open(path, &spec.source.stream)
                .with_context(|| format!("pipeline {name:?}"))?,
        ),
        CheckpointSpec::DynamoDb {
            table,
            region,
            endpoint,
        } => Arc::new(
            DynamoDbLeaseStore::connect(region, endpoint.as_deref(), table)
                .await
                .with_context(|| format!("pipeline {name:?}: lease table {table:?}"))?,
        ),
    };
    let mut leases = LeaseSettings::new(
        spec.leases
            .worker_id
            .clone()
            .unwrap_or_else(LeaseSettings::default_worker_id),
        spec.leases.failover_time,
    );
    leases.max_leases = spec.leases.max_leases;

    let (handle, running) = pipeline.start();
    let mut pipeline_task = tokio::spawn(running.wait());

    let (client, wire) = api::clients(&spec.source.region, spec.source.endpoint.as_deref()).await;
    let mut reader = spec.source.reader.clone();
    // The decoder serves the polling reader; enhanced fan-out reads through the SDK.
    reader.decoder = match (spec.source.decoder, &spec.source.reader_kind) {
        (SourceDecoder::Sdk, _) | (_, ReaderKind::FanOut { .. }) => Decoder::Sdk,
        (SourceDecoder::Own, ReaderKind::Polling) => {
            Decoder::Own(Arc::new(wire.with_context(|| {
                format!("pipeline {name:?}: source.decoder = \"own\"")
            })?))
        }
    };
    let worker = Worker::new(
        client,
        WorkerSettings {
            stream: spec.source.stream.clone(),
            initial_position: spec.source.initial_position.clone(),
            reader,
            shard_sync_interval: spec.source.shard_sync_interval,
            until_tip: options.until_tip,
            leases,
            reader_kind: spec.source.reader_kind.clone(),
        },
        store.clone(),
        Arc::new(PipelineProcessorFactory::new(handle.clone())),
    );
    let endpoint = match options.metrics_addr {
        Some(addr) => {
            let observed = Arc::new(crate::metrics::Observed {
                pipeline: name.clone(),
                emitter: spec.emitter_type.clone(),
                pipeline_metrics: handle.metrics_handle(),
                consumer: worker.metrics(),
            });
            Some(
                crate::metrics::serve(addr, observed)
                    .await
                    .with_context(|| {
                        format!("pipeline {name:?}: cannot serve metrics on {addr}")
                    })?,
            )
        }
        None => None,
    };
    let progress = options
        .progress
        .then(|| crate::progress::Progress::start(worker.metrics()));
    tracing::info!(
        pipeline = %name, stream = %spec.source.stream, emitter = %spec.emitter_type,
        checkpoints = %store.describe(), dead_letter = %dead_letter.describe(),
        "pipeline started"
    );
    let worker_cancel = cancel.child_token();
    let worker_result = tokio::select! {
        r = worker.run(worker_cancel.clone()) => r,
        ended = &mut pipeline_task => {
            worker_cancel.cancel();
            return match ended {
                Ok(Ok(_)) => Err(anyhow!("pipeline {name:?} stopped unexpectedly")),
                Ok(Err(e)) => Err(anyhow!("pipeline {name:?} failed: {e}")),
                Err(e) => Err(anyhow!("pipeline {name:?} failed: {e}")),
            };
        }
    };
    if let Some(p) = progress {
        p.finish();
    }
    if let Some(e) = endpoint {
        e.abort();
    }
    drop(worker);
    let _ = handle.shutdown().await;
    drop(handle);
    let metrics = match pipeline_task.await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return Err(anyhow!("pipeline {name:?} failed: {e}")),
        Err(e) => return Err(anyhow!("pipeline {name:?} failed: {e}")),
    };
    worker_result.with_context(|| format!("pipeline {name:?}"))?;
    tracing::info!(
        pipeline = %name,
        records = metrics.records_in, emitted = metrics.items_emitted, filtered = metrics.items_filtered,
        dead_lettered = metrics.dead_lettered, retries = metrics.retries,
        closed_by_count = metrics.batches_closed_by_count, closed_by_bytes = metrics.batches_closed_by_bytes,
        closed_by_age = metrics.batches_closed_by_age, closed_by_drain = metrics.batches_closed_by_drain,
        closed_by_pressure = metrics.batches_closed_by_pressure, closed_at_boundary = metrics.batches_closed_at_boundary,
        boundary_writes = metrics.boundary_writes,
        "pipeline stopped"
    );
    Ok(metrics)
}
