//! The DynamoDB emitter of kinesis-connectors (`type = "dynamodb"`): keeps a "latest state per key"
//! table fed from a stream.
//!
//! * **Mapping** ([`DynamoDbConfig`], `mapping`): each item is a JSON object; its fields become
//!   attributes (numbers keep their exact text), with renames, dropped fields, an optional TTL
//!   attribute (from a field or the arrival time) and an optional sequence attribute. The partition key
//!   (and sort key) are named with their types; an item without them is dead-lettered on its own.
//! * **Last writer wins**: within a batch each primary key is written once, from the record with the
//!   highest position (sequence number, then KPL sub-sequence). Records are in shard order, so the table
//!   holds each key's last record. Items whose delete field matches delete their key instead.
//! * **Limits**: BatchWriteItem requests of at most 25 items and 16 MB; up to `max_concurrent_writes`
//!   requests in flight across all shards.
//! * **Failures** (see [below](crate#failures)): `UnprocessedItems`, throttling and 5xx are reported to the
//!   pipeline as retryable item failures, so the pipeline's one retry policy (exponential backoff with
//!   full jitter, `max_attempts`) re-sends just them and dead-letters them if it gives up; a request
//!   DynamoDB refuses (`ValidationException`) is split in halves until the refused item stands alone,
//!   and only that item is dead-lettered.
//! * **Ordering-safe mode** (`ordering_safe = true`): every write is a conditional PutItem / DeleteItem
//!   `attribute_not_exists(seq) OR seq < :seq` on the sequence attribute, so a record redelivered after a
//!   restart never replaces a newer one. The position is stored as text that sorts like the position
//!   ([`encode_position`]): Kinesis sequence numbers (56 digits, up to 129) exceed DynamoDB's 38-digit
//!   numbers.
//!
//! # Failures
//!
//! | what DynamoDB says | what happens to the items |
//! |---|---|
//! | throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`, `RequestLimitExceeded`), 5xx, timeouts, connection errors, `TransactionConflictException` | retryable: the pipeline retries them with its policy |
//! | `UnprocessedItems` in a successful BatchWriteItem | those items retryable, the rest delivered |
//! | `ResourceNotFoundException` (table deleted or not active) | retryable, the message names the table |
//! | `ValidationException`, `SerializationException`, `ItemCollectionSizeLimitExceededException` | the request is split in halves until the refused item stands alone; it is dead-lettered, the key's next-newest record in the batch is written instead |
//! | `ConditionalCheckFailedException` (ordering-safe) | a newer record's write is stored: delivered |
//! | other permanent errors (access denied, bad credentials) | the request's items are dead-lettered |
//!
//! Why `UnprocessedItems` go back to the pipeline rather than being re-sent inside `emit`: the
//! pipeline's retry policy is the one place that backs off (exponential, capped, full jitter), counts
//! attempts against `max_attempts`, logs and counts each retry, and dead-letters what it gives up on —
//! exactly what DynamoDB asks for unprocessed items. A hidden loop inside the emitter would duplicate
//! it and hide the retries from metrics.
#![warn(missing_docs, unreachable_pub)]

pub mod config;
mod emitter;
mod mapping;
mod metrics;
mod request;
mod retry;
mod stage;

pub use config::{DynamoDbConfig, DynamoDbOptions};
pub use emitter::{DynamoDbEmitter, UNPROCESSED_REASON};
pub use mapping::encode_position;
pub use metrics::DynamoDbMetricsSnapshot;
pub use request::NEWER_CONDITION;
