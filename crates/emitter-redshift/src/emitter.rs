//! [`RedshiftEmitter`]: stage a batch in S3, load it with one transaction, acknowledge.
//!
//! One `emit` call:
//! 1. writes the batch with the S3 emitter's [`S3Writer`] (JSON lines or CSV, compressed; in manifest
//!    mode also the manifest listing the staged files). Keys depend only on the batch's records, so a
//!    batch redelivered after a crash is staged under the same names. Items that do not fit the format
//!    (not JSON objects) fail permanently on their own;
//! 2. loads it with one `BatchExecuteStatement` (see [`crate::request`]): the COPY, the loaded-files
//!    check and record, and the insert into the target commit together or not at all;
//! 3. acknowledges the batch when the transaction committed — also when it inserted nothing because the
//!    file was loaded before (a redelivery);
//! 4. on a SQL failure that will not pass (a bad row), fails every staged item permanently with
//!    Redshift's error text and the staged file's URL (the file stays in S3); on a passing failure
//!    returns a retryable error for the whole batch, so the pipeline retries the *same* batch (same
//!    keys, same loaded-files entry).

use std::sync::Arc;

/// How often the start-up check runs when it creates tables and fails (see `check`).
const CREATE_RACE_TRIES: u64 = 3;

use async_trait::async_trait;
use aws_sdk_redshiftdata::Client;
use kinesis_connectors_core::{Batch, EmitError, EmitOutcome, Emitter, Item, ItemFailure};
use kinesis_connectors_emitter_s3::S3Writer;

use crate::api::{DataApi, StatementError};
use crate::config::RedshiftConfig;
use crate::metrics::{RedshiftMetrics, RedshiftMetricsSnapshot};
use crate::request::{
    COPY_INDEX, CopySource, INSERT_INDEX, RECORD_INDEX, check_statements, load_statements,
    load_step,
};

/// Loads batches into a Redshift table through S3 and `COPY`; see the module documentation.
pub struct RedshiftEmitter {
    config: RedshiftConfig,
    pipeline: String,
    writer: S3Writer,
    api: DataApi,
    metrics: Arc<RedshiftMetrics>,
}

impl std::fmt::Debug for RedshiftEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedshiftEmitter")
            .field("pipeline", &self.pipeline)
            .field("target", &self.config.target)
            .field("table", &self.config.table.to_string())
            .field("bucket", &self.writer.bucket())
            .finish_non_exhaustive()
    }
}

impl RedshiftEmitter {
    /// Builds the Data API client (region: the configured one, else `default_region`; no SDK retries)
    /// and the staging writer.
    pub async fn connect(pipeline: &str, config: RedshiftConfig, default_region: &str) -> Self {
        let region = config
            .region
            .as_deref()
            .unwrap_or(default_region)
            .to_owned();
        let sdk = kinesis_connectors_aws::sdk_config(&region, config.endpoint.as_deref()).await;
        let writer = S3Writer::connect(pipeline, config.staging.clone(), &region).await;
        Self::new(Client::new(&sdk), writer, pipeline, config)
    }

    /// An emitter using `client` for the Data API and `writer` for staging.
    pub fn new(client: Client, writer: S3Writer, pipeline: &str, config: RedshiftConfig) -> Self {
        let metrics = Arc::new(RedshiftMetrics::default());
        Self {
            api: DataApi::new(client, &config, pipeline, metrics.clone()),
            config,
            pipeline: pipeline.to_owned(),
            writer,
            metrics,
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &RedshiftConfig {
        &self.config
    }

    /// The emitter's counters so far.
    pub fn metrics(&self) -> RedshiftMetricsSnapshot {
        self.metrics.snapshot()
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.writer.bucket())
    }
}

#[async_trait]
impl Emitter<Item> for RedshiftEmitter {
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        let written = self.writer.write_batch(batch).await?;
        let mut failures = written.failures;
        let Some(first) = written.objects.first() else {
            // Nothing fit the format: only item failures to report.
            return Ok(EmitOutcome::with_failures(failures));
        };
        let source = match (&written.manifest, self.config.manifest) {
            (Some(m), true) => CopySource {
                url: self.url(m),
                manifest: true,
            },
            _ => CopySource {
                url: self.url(&first.key),
                manifest: false,
            },
        };
        let staged = if source.manifest {
            format!(
                "manifest {} listing {} file(s)",
                source.url,
                written.objects.len()
            )
        } else {
            source.url.clone()
        };
        let load = load_statements(&self.config, &source, &self.pipeline, chrono::Utc::now())
            .map_err(|m| EmitError::permanent(format!("cannot build the load: {m}")))?;
        match self.api.run(load.sqls).await {
            Ok(done) => {
                let rows = done.rows.get(INSERT_INDEX).copied().unwrap_or(0).max(0) as u64;
                let recorded = done.rows.get(RECORD_INDEX).copied().unwrap_or(0);
                if recorded == 0 {
                    RedshiftMetrics::add(&self.metrics.loads_skipped, 1);
                    tracing::info!(pipeline = %self.pipeline, staged = %staged, "already loaded (in the loaded-files table); skipped");
                } else {
                    RedshiftMetrics::add(&self.metrics.loads, 1);
                    RedshiftMetrics::add(&self.metrics.rows_loaded, rows);
                    tracing::debug!(pipeline = %self.pipeline, staged = %staged, rows, "loaded");
                }
                Ok(EmitOutcome::with_failures(failures))
            }
            Err(e) if e.is_retryable() => {
                let message = match e {
                    StatementError::Api(e) => e.message,
                    StatementError::Sql { index, message } => format!(
                        "Redshift {} failed: {message}",
                        load_step(index.unwrap_or(COPY_INDEX))
                    ),
                };
                Err(EmitError::retryable(format!(
                    "{message} (staged: {staged})"
                )))
            }
            Err(StatementError::Api(e)) => Err(e),
            Err(StatementError::Sql { index, message }) => {
                RedshiftMetrics::add(&self.metrics.loads_failed, 1);
                let reason = format!(
                    "Redshift {} failed: {message} (staged data kept for inspection: {staged})",
                    load_step(index.unwrap_or(COPY_INDEX))
                );
                tracing::warn!(pipeline = %self.pipeline, reason = %reason, "load failed; the batch goes to the dead letter");
                let unfit: std::collections::HashSet<usize> =
                    failures.iter().map(|f| f.index).collect();
                failures.extend(
                    (0..batch.len())
                        .filter(|i| !unfit.contains(i))
                        .map(|i| ItemFailure::permanent(i, reason.clone())),
                );
                Ok(EmitOutcome::with_failures(failures))
            }
        }
    }

    /// The staging bucket exists and is writable; the tables exist (created when configured) and the
    /// configured columns and the loaded-files table can be read.
    ///
    /// Workers of one pipeline start together, and each creates the tables when `create_table` is
    /// set: `CREATE TABLE IF NOT EXISTS` of two sessions at once can fail in the one that loses the
    /// race (a duplicate catalog entry, a serialisation conflict) although the table then exists. So
    /// a failed check that created tables is run again, up to `CREATE_RACE_TRIES` (3) times; a failure
    /// that persists is permanent, as without `create_table`.
    async fn check(&self) -> Result<(), EmitError> {
        self.writer.check().await?;
        let tries = if self.config.create_table {
            CREATE_RACE_TRIES
        } else {
            1
        };
        let mut tried = 0;
        loop {
            tried += 1;
            match self.api.run(check_statements(&self.config)).await {
                Ok(_) => return Ok(()),
                Err(StatementError::Api(e)) => return Err(e),
                Err(StatementError::Sql { message, .. }) if tried < tries => {
                    tracing::info!(pipeline = %self.pipeline, table = %self.config.table, error = %message, "start-up check failed while creating tables (another worker creating them at once?); checking again");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * tried)).await;
                }
                Err(StatementError::Sql { message, .. }) => {
                    return Err(EmitError::permanent(format!(
                        "Redshift start-up check on {} failed: {message}",
                        self.config.table
                    )));
                }
            }
        }
    }
}
