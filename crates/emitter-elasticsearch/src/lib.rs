//! The Elasticsearch / OpenSearch emitter of kinesis-connectors: bulk indexing through the
//! [`elasticsearch`] crate's HTTP transport, speaking the `_bulk` API that Elasticsearch 7–9, OpenSearch
//! and Amazon OpenSearch Service share.
//!
//! ```text
//! Batch ─plan─▶ NDJSON bulk requests (≤ max_bulk_documents, ≤ max_bulk_bytes each)
//!        ─send (≤ max_concurrent_requests at once, per emitter)─▶ _bulk ─per-item statuses─▶ EmitOutcome
//! ```
//!
//! * **Requests**: a batch is split into bulk requests capped by documents and bytes (5 MiB by default);
//!   they are sent concurrently, bounded by a semaphore shared by every emit call of the emitter, and
//!   each item's result is mapped back to its index in the batch.
//! * **Index names** ([`IndexTemplate`]): a fixed name, a date pattern (`logs-{yyyy.MM.dd}`) from the
//!   record's arrival time or a field, or a field value (`events-{field:tenant}`).
//! * **Document ids** ([`DocumentId`]): deterministic `{shard}-{sequence}-{subsequence}` (default: a
//!   redelivered record overwrites its document instead of duplicating it), from a field, or none
//!   (server-generated, **not idempotent**: a redelivery after a crash indexes a second copy).
//! * **Actions** ([`Action`]): `index`, `create`, `update` (`doc_as_upsert`), `delete`, fixed or taken
//!   per item from a field.
//! * **Results** ([`retry`]): 429 and 5xx items are reported retryable, so the pipeline runner re-sends
//!   only them with its backoff and jitter; a 409 on `create` counts as delivered; other 4xx items
//!   (mapping and parse errors) are permanent and reach the dead letter with the server's reason. A
//!   cluster that cannot be reached fails the emit call retryably: the runner logs, counts and backs
//!   off, and backpressure stops fetching meanwhile — the emitter has no retry loop of its own.
//! * **Auth** ([`Auth`]): none, basic, API key, AWS SigV4 (Amazon OpenSearch Service, credentials from
//!   the standard AWS chain); TLS with a custom CA file. Secrets never appear in `Debug` or logs.
#![warn(missing_docs, unreachable_pub)]

mod auth;
mod config;
mod emitter;
mod error;
mod metrics;
mod request;
pub mod retry;
mod stage;
mod template;

pub use config::{
    Action, Auth, DEFAULT_MAX_BULK_BYTES, DEFAULT_MAX_BULK_DOCUMENTS,
    DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SIGV4_SERVICE, DocumentId,
    ElasticsearchOptions, ElasticsearchToml, MAX_BULK_BYTES_LIMIT, MAX_BULK_DOCUMENTS_LIMIT,
    MAX_CONCURRENT_REQUESTS_LIMIT, Secret,
};
pub use emitter::ElasticsearchEmitter;
pub use error::ElasticsearchError;
pub use metrics::{ElasticsearchMetrics, MetricsSnapshot};
pub use template::IndexTemplate;
