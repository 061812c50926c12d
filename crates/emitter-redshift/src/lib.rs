//! The Redshift emitter of kinesis-connectors (`type = "redshift"`): each batch is staged in S3 with
//! the S3 emitter's writer and loaded with `COPY` through the Redshift Data API.
//!
//! * **Staging** ([`StagingOptions`]): JSON lines (`format = "json"`) or CSV of `columns`
//!   (`format = "csv"`), gzip by default, under keys that depend only on the batch's records; in
//!   manifest mode (the default) a `COPY … MANIFEST` file lists exactly the batch's files (several when
//!   the key partitions by `{field:...}`).
//! * **Loading**: one `BatchExecuteStatement` per batch — one transaction that locks the loaded-files
//!   table, COPYs into a session-local stage table, skips the rows if the manifest (or file) is already
//!   in the loaded-files table, records it, and inserts the rows into the target table. A batch
//!   redelivered after a crash (between the COPY's commit and the checkpoint) is recognised and
//!   inserts nothing: no row is loaded twice. See [`request`] for the SQL.
//! * **Clusters and Serverless**: `cluster_identifier` with `db_user` (temporary credentials) or
//!   `secret_arn`; or `workgroup_name` (the caller's IAM identity, or `secret_arn`).
//! * **COPY options**: `JSON 'auto'` / `'auto ignorecase'` / a JSONPaths file, `CSV DELIMITER`, `GZIP` /
//!   `ZSTD`, `TIMEFORMAT`, `TRUNCATECOLUMNS`, `MAXERROR` (0 by default), `REGION`. The files are read
//!   with `IAM_ROLE` (an ARN or the cluster's default role); access keys never appear in SQL.
//! * **No SQL from record data**: table and column names are validated identifiers, folded to lower
//!   case and quoted; literals are the emitter's own (staged URLs, the pipeline's name, a timestamp).
//! * **Failures** (see [`retry`](crate#failures)): a COPY that fails on the data (e.g. a type error,
//!   with `MAXERROR 0`) fails the batch's records permanently with Redshift's error text; they go to
//!   the dead letter and the staged file stays in S3 for inspection. Throttling, 5xx, aborted or timed
//!   out statements and serialization conflicts are retried by the pipeline's retry policy, loading the
//!   same staged file again.
//!
//! # Failures
//!
//! | what happens | verdict |
//! |---|---|
//! | Data API throttling, 5xx, timeouts, network errors; a statement aborted or past `statement_timeout` (then cancelled) | the same batch is retried |
//! | SQL failing for a passing reason (serialization conflict, deadlock, dropped connection, missing relation) | retried |
//! | SQL failing on the data (bad row) or on privileges | permanent: dead letter with Redshift's text; staged file kept |
//! | an item that is not a JSON object (CSV) or not JSON | permanent for that item alone |
//!
//! # Limits
//!
//! A redelivered batch is recognised when it is the *same* batch: batches closed by count or size are
//! (the pipeline checkpoints at batch boundaries); a batch closed by `max_age` on a quiet shard, or a
//! batch across shards (`batch_across_shards`), may be cut differently when redelivered, and its
//! records can then be loaded twice — the same trade-off as the S3 emitter's overlapping objects.
//! Loads are serialised by the `LOCK` on the loaded-files table (Redshift serialises writes to one
//! table anyway; the lock avoids serializable-isolation aborts).
#![warn(missing_docs, unreachable_pub)]

mod api;
pub mod config;
mod emitter;
mod metrics;
pub mod request;
mod retry;
mod stage;

pub use config::{
    ColumnOption, LoadCompression, LoadFormat, RedshiftConfig, RedshiftOptions, StagingOptions,
    Target,
};
pub use emitter::RedshiftEmitter;
pub use metrics::RedshiftMetricsSnapshot;
