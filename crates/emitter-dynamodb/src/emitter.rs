//! [`DynamoDbEmitter`]: the [`Emitter`] writing items to one table.
//!
//! One `emit` call:
//! 1. maps every item to a write (a record that cannot be mapped — no key, not JSON — fails
//!    permanently and is dead-lettered by the pipeline);
//! 2. groups the writes by primary key, newest last;
//! 3. writes, in rounds, the newest write of every key: in BatchWriteItem requests of at most 25 items
//!    and 16 MB, several in flight (bounded across all shards by `max_concurrent_writes`), or, in
//!    ordering-safe mode, as conditional PutItem / DeleteItem calls;
//! 4. settles each key by its newest write's outcome: written (or, ordering-safe, already newer in the
//!    table) → every item of the key is delivered; retryable (throttled, unprocessed) → every item of the
//!    key is reported retryable, so the retry writes the newest again; refused by DynamoDB → that item
//!    fails permanently and the key's next-newest write goes in the next round, so the table ends at the
//!    newest record DynamoDB accepts — as it would if the records had come in separate batches.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{KeyType as SchemaKeyType, TableStatus, WriteRequest};
use futures::future::join_all;
use kinesis_connectors_core::{Batch, EmitError, EmitOutcome, Emitter, Item, ItemFailure};
use tokio::sync::Semaphore;

use crate::config::{DEFAULT_SEQUENCE_ATTRIBUTE, DynamoDbConfig};
use crate::mapping::{Mapper, Op, Write, identity_of};
use crate::metrics::{DynamoDbMetrics, DynamoDbMetricsSnapshot};
use crate::request::{
    NEWER_CONDITION, chunk, condition_parts, group_by_key, request_attributes, write_request,
};
use crate::retry::{Verdict, verdict};

/// Reason given for writes DynamoDB returned in `UnprocessedItems`.
pub const UNPROCESSED_REASON: &str = "returned by DynamoDB in UnprocessedItems (throttled or busy)";

/// What became of one key's write.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// Applied, or (ordering-safe) a newer write is already stored.
    Written,
    /// Try again later.
    Retry(String),
    /// DynamoDB refused this item; an older write of the key may still go in.
    Refused(String),
    /// Failed permanently for reasons not tied to the item.
    Failed(String),
}

/// Writes batches of JSON items to a DynamoDB table; see the module documentation.
pub struct DynamoDbEmitter {
    client: Client,
    config: DynamoDbConfig,
    mapper: Mapper,
    permits: Arc<Semaphore>,
    metrics: Arc<DynamoDbMetrics>,
    /// Region and endpoint, for error messages.
    target: String,
}

impl std::fmt::Debug for DynamoDbEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbEmitter")
            .field("table", &self.config.table)
            .field("target", &self.target)
            .field("ordering_safe", &self.config.ordering_safe)
            .finish_non_exhaustive()
    }
}

impl DynamoDbEmitter {
    /// An emitter with a client for the configured region (`default_region` if none) and endpoint,
    /// without SDK retries (the pipeline's retry policy retries).
    pub async fn connect(config: DynamoDbConfig, default_region: &str) -> Self {
        let region = config
            .region
            .clone()
            .unwrap_or_else(|| default_region.to_owned());
        let sdk = kinesis_connectors_aws::sdk_config(&region, config.endpoint.as_deref()).await;
        let target = format!(
            "region {region}, endpoint {}",
            config.endpoint.as_deref().unwrap_or("AWS")
        );
        let mut emitter = Self::new(Client::new(&sdk), config);
        emitter.target = target;
        emitter
    }

    /// An emitter using `client`.
    pub fn new(client: Client, mut config: DynamoDbConfig) -> Self {
        if config.ordering_safe && config.mapping.sequence_attribute.is_none() {
            config.mapping.sequence_attribute = Some(DEFAULT_SEQUENCE_ATTRIBUTE.to_owned());
        }
        let target = client
            .config()
            .region()
            .map_or_else(|| "default region".to_owned(), |r| format!("region {r}"));
        Self {
            client,
            mapper: Mapper::new(config.mapping.clone()),
            permits: Arc::new(Semaphore::new(config.max_concurrent_writes.max(1))),
            metrics: Arc::default(),
            target,
            config,
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &DynamoDbConfig {
        &self.config
    }

    /// The emitter's counters so far.
    pub fn metrics(&self) -> DynamoDbMetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Writes the given writes (at most one per key) and returns each one's outcome, in order.
    async fn write_round(&self, writes: &[&Write]) -> Vec<Outcome> {
        if self.config.ordering_safe {
            join_all(writes.iter().map(|w| self.write_conditional(w))).await
        } else {
            let sizes: Vec<usize> = writes.iter().map(|w| w.size).collect();
            let chunks = chunk(
                &sizes,
                self.config.max_batch_items,
                self.config.max_batch_bytes,
            );
            join_all(chunks.into_iter().map(|r| self.write_chunk(&writes[r])))
                .await
                .into_iter()
                .flatten()
                .collect()
        }
    }

    /// Writes one BatchWriteItem's worth, splitting it in halves while DynamoDB refuses an item of it,
    /// until the refused items stand alone.
    async fn write_chunk(&self, writes: &[&Write]) -> Vec<Outcome> {
        let mut outcomes: Vec<Outcome> = vec![Outcome::Written; writes.len()];
        let mut todo: Vec<std::ops::Range<usize>> = Vec::with_capacity(8);
        todo.push(0..writes.len());
        while let Some(r) = todo.pop() {
            match self.batch_write(&writes[r.clone()]).await {
                Ok(unprocessed) => {
                    for i in unprocessed {
                        outcomes[r.start + i] = Outcome::Retry(UNPROCESSED_REASON.to_owned());
                    }
                }
                Err(Verdict::InvalidItem(_)) if r.len() > 1 => {
                    DynamoDbMetrics::add(&self.metrics.splits, 1);
                    let mid = r.start + r.len() / 2;
                    todo.push(mid..r.end);
                    todo.push(r.start..mid);
                }
                Err(v) => {
                    let outcome = match v {
                        Verdict::InvalidItem(reason) => Outcome::Refused(reason),
                        Verdict::Retry(reason) => Outcome::Retry(reason),
                        Verdict::Permanent(reason) => Outcome::Failed(reason),
                        Verdict::ConditionFailed => Outcome::Failed(
                            "unexpected ConditionalCheckFailedException from BatchWriteItem".into(),
                        ),
                    };
                    for o in &mut outcomes[r] {
                        *o = outcome.clone();
                    }
                }
            }
        }
        outcomes
    }

    /// One BatchWriteItem call; returns the positions (in `writes`) DynamoDB left unprocessed.
    async fn batch_write(&self, writes: &[&Write]) -> Result<Vec<usize>, Verdict> {
        let requests: Vec<WriteRequest> = writes
            .iter()
            .map(|w| write_request(w))
            .collect::<Result<_, _>>()
            .map_err(Verdict::Permanent)?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Verdict::Retry("emitter closed".into()))?;
        DynamoDbMetrics::add(&self.metrics.requests, 1);
        let out = self
            .client
            .batch_write_item()
            .request_items(&self.config.table, requests)
            .send()
            .await
            .map_err(|e| verdict(&e, &self.config.table))?;
        let unprocessed = out
            .unprocessed_items()
            .and_then(|u| u.get(&self.config.table))
            .filter(|u| !u.is_empty());
        let Some(unprocessed) = unprocessed else {
            DynamoDbMetrics::add(&self.metrics.items_written, writes.len() as u64);
            return Ok(Vec::new());
        };
        let mut positions: Vec<usize> = Vec::with_capacity(unprocessed.len());
        for r in unprocessed {
            let found = request_attributes(r)
                .and_then(|attrs| identity_of(self.config.mapping.keys(), attrs))
                .and_then(|id| writes.iter().position(|w| w.identity == id));
            match found {
                Some(p) => positions.push(p),
                None => {
                    // Cannot tell which write it was: retry them all (rewriting is idempotent).
                    tracing::warn!(table = %self.config.table, "an UnprocessedItems entry matches no write of the request; retrying the whole request");
                    positions = (0..writes.len()).collect();
                    break;
                }
            }
        }
        positions.sort_unstable();
        positions.dedup();
        DynamoDbMetrics::add(&self.metrics.items_unprocessed, positions.len() as u64);
        DynamoDbMetrics::add(
            &self.metrics.items_written,
            (writes.len() - positions.len()) as u64,
        );
        Ok(positions)
    }

    /// One ordering-safe write: PutItem / DeleteItem under [`NEWER_CONDITION`].
    async fn write_conditional(&self, w: &Write) -> Outcome {
        let Ok(_permit) = self.permits.acquire().await else {
            return Outcome::Retry("emitter closed".into());
        };
        let attribute = self
            .config
            .mapping
            .sequence_attribute
            .as_deref()
            .unwrap_or(DEFAULT_SEQUENCE_ATTRIBUTE);
        let (names, values) = condition_parts(attribute, &w.sequence);
        DynamoDbMetrics::add(&self.metrics.requests, 1);
        let table = &self.config.table;
        let result = match &w.op {
            Op::Put(item) => self
                .client
                .put_item()
                .table_name(table)
                .set_item(Some(item.clone()))
                .condition_expression(NEWER_CONDITION)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| verdict(&e, table)),
            Op::Delete => self
                .client
                .delete_item()
                .table_name(table)
                .set_key(Some(w.key.clone()))
                .condition_expression(NEWER_CONDITION)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| verdict(&e, table)),
        };
        match result {
            Ok(()) => {
                DynamoDbMetrics::add(&self.metrics.items_written, 1);
                Outcome::Written
            }
            Err(Verdict::ConditionFailed) => {
                DynamoDbMetrics::add(&self.metrics.items_already_newer, 1);
                Outcome::Written
            }
            Err(Verdict::InvalidItem(reason)) => Outcome::Refused(reason),
            Err(Verdict::Retry(reason)) => Outcome::Retry(reason),
            Err(Verdict::Permanent(reason)) => Outcome::Failed(reason),
        }
    }

    /// The table's key schema as `name type` pairs, partition key first, for comparing with the
    /// configuration.
    /// Creates the table with the configured keys (on-demand billing) unless it exists; waits until
    /// it is ACTIVE.
    async fn create_table_if_missing(&self) -> Result<(), EmitError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType as Role,
            ScalarAttributeType, TableStatus,
        };
        let table = &self.config.table;
        if self
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        let fail = |e: String| {
            EmitError::permanent(format!("cannot create DynamoDB table {table:?}: {e}"))
        };
        let mut req = self
            .client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest);
        for (i, key) in self.config.mapping.keys().enumerate() {
            let role = if i == 0 { Role::Hash } else { Role::Range };
            req = req
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(&key.attribute)
                        .attribute_type(ScalarAttributeType::from(key.kind.as_str()))
                        .build()
                        .map_err(|e| fail(e.to_string()))?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(&key.attribute)
                        .key_type(role)
                        .build()
                        .map_err(|e| fail(e.to_string()))?,
                );
        }
        match req.send().await {
            Ok(_) => tracing::info!(table = %table, "DynamoDB table created"),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(fail(kinesis_connectors_aws::describe(&e).1)),
        }
        for _ in 0..100 {
            let out = self.client.describe_table().table_name(table).send().await;
            if out
                .ok()
                .and_then(|o| o.table().and_then(|t| t.table_status().cloned()))
                == Some(TableStatus::Active)
            {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(EmitError::retryable(format!(
            "DynamoDB table {table:?} did not become ACTIVE"
        )))
    }

    fn configured_keys(&self) -> Vec<(String, &'static str)> {
        self.config
            .mapping
            .keys()
            .map(|k| (k.attribute.clone(), k.kind.as_str()))
            .collect()
    }
}

#[async_trait]
impl Emitter<Item> for DynamoDbEmitter {
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        let mut failures: Vec<ItemFailure> = Vec::new();
        let mut writes = Vec::with_capacity(batch.len());
        for (i, env) in batch.items.iter().enumerate() {
            match self.mapper.map(&env.item, env.record(), env.index) {
                Ok(w) => writes.push((i, w)),
                Err(reason) => failures.push(ItemFailure::permanent(i, reason)),
            }
        }
        let mapped = writes.len();
        let mut groups = group_by_key(writes);
        DynamoDbMetrics::add(
            &self.metrics.items_superseded,
            (mapped - groups.len()) as u64,
        );
        loop {
            let open: Vec<usize> = (0..groups.len())
                .filter(|&g| !groups[g].is_empty())
                .collect();
            if open.is_empty() {
                break;
            }
            let outcomes = {
                let picks: Vec<&Write> = open
                    .iter()
                    .filter_map(|&g| groups[g].last().map(|(_, w)| w))
                    .collect();
                self.write_round(&picks).await
            };
            for (g, outcome) in open.into_iter().zip(outcomes) {
                let group = &mut groups[g];
                match outcome {
                    Outcome::Written => group.clear(),
                    Outcome::Retry(reason) => {
                        // Unprocessed writes are counted where they are found.
                        if reason != UNPROCESSED_REASON {
                            DynamoDbMetrics::add(&self.metrics.items_retryable, 1);
                        }
                        failures.extend(
                            group
                                .drain(..)
                                .map(|(i, _)| ItemFailure::retryable(i, reason.clone())),
                        );
                    }
                    Outcome::Failed(reason) => failures.extend(
                        group
                            .drain(..)
                            .map(|(i, _)| ItemFailure::permanent(i, reason.clone())),
                    ),
                    Outcome::Refused(reason) => {
                        DynamoDbMetrics::add(&self.metrics.items_refused, 1);
                        if let Some((i, _)) = group.pop() {
                            failures.push(ItemFailure::permanent(
                                i,
                                format!("DynamoDB refused the item: {reason}"),
                            ));
                        }
                    }
                }
            }
        }
        if failures.is_empty() {
            Ok(EmitOutcome::success())
        } else {
            failures.sort_by_key(|f| f.index);
            tracing::debug!(
                table = %self.config.table, items = batch.len(), failed = failures.len(),
                attempt = batch.context.attempt, "batch partly written"
            );
            Ok(EmitOutcome::with_failures(failures))
        }
    }

    async fn check(&self) -> Result<(), EmitError> {
        let table = &self.config.table;
        if self.config.create_table {
            self.create_table_if_missing().await?;
        }
        let out = match self.client.describe_table().table_name(table).send().await {
            Ok(out) => out,
            Err(e) => {
                let (code, message) = kinesis_connectors_aws::describe(&e);
                let keys = self
                    .configured_keys()
                    .iter()
                    .map(|(n, t)| format!("{n} ({t})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(match code.as_deref() {
                    Some("ResourceNotFoundException") => EmitError::permanent(format!(
                        "DynamoDB table {table:?} does not exist ({}); create it with key {keys}, or set create_table = true (development)",
                        self.target
                    )),
                    _ => EmitError::permanent(format!(
                        "cannot describe DynamoDB table {table:?} ({}): {}{message}",
                        self.target,
                        code.map(|c| format!("{c}: ")).unwrap_or_default()
                    )),
                });
            }
        };
        let Some(description) = out.table() else {
            return Err(EmitError::permanent(format!(
                "DynamoDB table {table:?}: DescribeTable returned no description"
            )));
        };
        match description.table_status() {
            Some(TableStatus::Active | TableStatus::Updating) | None => {}
            Some(status) => {
                return Err(EmitError::permanent(format!(
                    "DynamoDB table {table:?} is {status}, not ACTIVE ({})",
                    self.target
                )));
            }
        }
        let type_of = |name: &str| {
            description
                .attribute_definitions()
                .iter()
                .find(|d| d.attribute_name() == name)
                .map(|d| d.attribute_type().as_str().to_owned())
                .unwrap_or_default()
        };
        let mut actual: Vec<(String, String)> = Vec::new();
        for role in [SchemaKeyType::Hash, SchemaKeyType::Range] {
            if let Some(k) = description
                .key_schema()
                .iter()
                .find(|k| k.key_type() == &role)
            {
                actual.push((k.attribute_name().to_owned(), type_of(k.attribute_name())));
            }
        }
        let expected: Vec<(String, String)> = self
            .configured_keys()
            .into_iter()
            .map(|(n, t)| (n, t.to_owned()))
            .collect();
        if actual != expected {
            let show = |keys: &[(String, String)]| {
                keys.iter()
                    .map(|(n, t)| format!("{n} ({t})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(EmitError::permanent(format!(
                "DynamoDB table {table:?} has key {}, but the configuration says {} (partition key first)",
                show(&actual),
                show(&expected)
            )));
        }
        Ok(())
    }

    async fn close(&self) -> Result<(), EmitError> {
        let m = self.metrics();
        tracing::info!(
            table = %self.config.table, requests = m.requests, written = m.items_written,
            superseded = m.items_superseded, already_newer = m.items_already_newer,
            unprocessed = m.items_unprocessed, refused = m.items_refused,
            "dynamodb emitter closed"
        );
        Ok(())
    }
}
