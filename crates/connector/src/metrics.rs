//! The HTTP endpoint of a running pipeline (`metrics_addr`): `/metrics` (Prometheus text format),
//! `/health` (the process is alive) and `/ready` (leases scanned, the sink answering).
//!
//! Labels are low-cardinality: `pipeline`, `emitter`, and `shard` only on the per-shard gauges (bounded
//! by the stream's shard count).

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kinesis_connectors_consumer::ConsumerMetrics;
use kinesis_connectors_core::{LATENCY_BUCKETS, PipelineMetrics};

/// A pipeline that keeps failing to emit for this long is reported not ready.
pub const NOT_READY_AFTER_FAILING: Duration = Duration::from_secs(30);

/// What the endpoint reports on.
pub struct Observed {
    /// The pipeline's name.
    pub pipeline: String,
    /// The emitter's type.
    pub emitter: String,
    /// The pipeline's counters.
    pub pipeline_metrics: Arc<PipelineMetrics>,
    /// The consumer engine's counters.
    pub consumer: Arc<ConsumerMetrics>,
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric in the Prometheus text format.
pub fn render(o: &Observed) -> String {
    let m = o.pipeline_metrics.snapshot();
    let p = label(&o.pipeline);
    let e = label(&o.emitter);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{pipeline=\"{p}\"}} {value}"
        );
    };
    metric(
        "kc_records_read_total",
        "counter",
        "Records received from the stream.",
        m.records_in,
    );
    metric(
        "kc_items_transformed_total",
        "counter",
        "Items the transformer produced.",
        m.items_transformed,
    );
    metric(
        "kc_items_filtered_total",
        "counter",
        "Items a filter dropped.",
        m.items_filtered,
    );
    metric(
        "kc_transform_failures_total",
        "counter",
        "Records the transformer failed on.",
        m.transform_failures,
    );
    metric(
        "kc_items_emitted_total",
        "counter",
        "Items the emitter acknowledged.",
        m.items_emitted,
    );
    metric(
        "kc_items_failed_total",
        "counter",
        "Item failures reported by the emitter, per attempt.",
        m.item_failures,
    );
    metric(
        "kc_emit_calls_total",
        "counter",
        "Batches handed to the emitter, retries included.",
        m.emit_calls,
    );
    metric(
        "kc_retries_total",
        "counter",
        "Retries of items or batches.",
        m.retries,
    );
    metric(
        "kc_dead_lettered_total",
        "counter",
        "Records durably written to the dead-letter target.",
        m.dead_lettered,
    );
    metric(
        "kc_checkpoints_total",
        "counter",
        "Checkpoints written.",
        m.checkpoints,
    );
    metric(
        "kc_buffered_bytes",
        "gauge",
        "Emitted bytes held in buffers and queues.",
        m.buffered_bytes,
    );
    metric(
        "kc_leases_held",
        "gauge",
        "Shard leases this process holds.",
        o.consumer.leases_held(),
    );

    metric(
        "kc_boundary_writes_total",
        "counter",
        "Checkpoint-store writes that recorded where a batch the records cannot re-form closed (age, drain, memory pressure), before it was emitted.",
        m.boundary_writes,
    );
    // Why batches closed: count and bytes re-form from the records alone after a restart; age, drain
    // and pressure need a stored boundary; `boundary` is a batch closed at one stored earlier.
    let name = "kc_batches_closed_total";
    let _ = writeln!(
        out,
        "# HELP {name} Batches closed, by reason.\n# TYPE {name} counter"
    );
    for (reason, value) in [
        ("count", m.batches_closed_by_count),
        ("bytes", m.batches_closed_by_bytes),
        ("age", m.batches_closed_by_age),
        ("drain", m.batches_closed_by_drain),
        ("pressure", m.batches_closed_by_pressure),
        ("boundary", m.batches_closed_at_boundary),
    ] {
        let _ = writeln!(
            out,
            "{name}{{pipeline=\"{p}\",reason=\"{reason}\"}} {value}"
        );
    }

    let h = o.pipeline_metrics.emit_latency();
    let name = "kc_emit_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Duration of emit calls.\n# TYPE {name} histogram"
    );
    let mut cumulative = 0;
    for (bound, n) in LATENCY_BUCKETS.iter().zip(&h.buckets) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{pipeline=\"{p}\",emitter=\"{e}\",le=\"{bound}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{pipeline=\"{p}\",emitter=\"{e}\",le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(
        out,
        "{name}_sum{{pipeline=\"{p}\",emitter=\"{e}\"}} {}",
        h.sum
    );
    let _ = writeln!(
        out,
        "{name}_count{{pipeline=\"{p}\",emitter=\"{e}\"}} {}",
        h.count
    );

    let shards = o.consumer.shards();
    let now = chrono::Utc::now();
    let per_shard: [(&str, &str, &str); 4] = [
        (
            "kc_shard_millis_behind_latest",
            "gauge",
            "How far the last page ended behind the shard's tip, as Kinesis said.",
        ),
        (
            "kc_shard_iterator_age_milliseconds",
            "gauge",
            "Age of the last record read from the shard (0 at the tip).",
        ),
        (
            "kc_shard_records_read_total",
            "counter",
            "Records read from the shard.",
        ),
        (
            "kc_shard_throttled_total",
            "counter",
            "Throttled reads of the shard.",
        ),
    ];
    for (name, kind, help) in per_shard {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (shard, s) in &shards {
            let value = match name {
                "kc_shard_millis_behind_latest" => s.millis_behind_latest,
                "kc_shard_iterator_age_milliseconds" => s.iterator_age_ms(now),
                "kc_shard_records_read_total" => Some(s.records_read as i64),
                _ => Some(s.throttled as i64),
            };
            if let Some(v) = value {
                let _ = writeln!(
                    out,
                    "{name}{{pipeline=\"{p}\",shard=\"{}\"}} {v}",
                    label(shard)
                );
            }
        }
    }
    out
}

/// Whether the pipeline is ready: the worker has scanned its leases, and emits are not failing for
/// longer than [`NOT_READY_AFTER_FAILING`].
pub fn ready(o: &Observed) -> Result<(), String> {
    if !o.consumer.started() {
        return Err("leases not scanned yet".into());
    }
    if let Some(since) = o.pipeline_metrics.failing_since_ms() {
        let now = chrono::Utc::now().timestamp_millis() as u64;
        let failing = Duration::from_millis(now.saturating_sub(since));
        if failing > NOT_READY_AFTER_FAILING {
            return Err(format!(
                "the sink has been failing for {}s",
                failing.as_secs()
            ));
        }
    }
    Ok(())
}

/// Serves the endpoint on `addr` until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    observed: Arc<Observed>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(o): State<Arc<Observed>>| async move { render(&o) }),
        )
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/ready",
            get(|State(o): State<Arc<Observed>>| async move {
                match ready(&o) {
                    Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                    Err(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    ),
                }
            }),
        )
        .with_state(observed);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics endpoint listening (/metrics, /health, /ready)");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}
