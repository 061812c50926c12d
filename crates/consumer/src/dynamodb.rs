//! The DynamoDB lease table: several processes share a stream's shards.
//!
//! Items use the KCL's attribute names and sentinels, so a KCL application's table can be taken over:
//!
//! | attribute | meaning |
//! |---|---|
//! | `leaseKey` (S, hash key) | the shard id |
//! | `leaseOwner` (S) | the worker holding it; absent when free |
//! | `leaseCounter` (N) | bumped by every write; every write is conditional on it |
//! | `checkpoint` (S) | a sequence number, or `TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`, `SHARD_END` |
//! | `checkpointSubSequenceNumber` (N) | the KPL sub-record within the checkpointed record |
//! | `ownerSwitchesSinceCheckpoint` (N) | takes since the last checkpoint |
//! | `parentShardId`, `childShardIds` (SS) | the shard graph |
//! | `startingHashKey`, `endingHashKey` (S) | the shard's hash-key range |
//!
//! Two attributes of ours complete sentinels the KCL keeps in its configuration instead:
//! `kcStartTimestamp` (the time of an `AT_TIMESTAMP` start) and `kcStartSequence` (an `at_sequence`
//! start); `kcCheckpointedAt` records when the checkpoint was written (for `status`), and `kcResume`
//! (JSON, absent when empty) what the next reader needs beyond the checkpoint to re-form the batches
//! already emitted ([`Resume`]: the delivered items of a record split over batches, and the ends of
//! batches closed by age or a drain). It is written in the same conditional update as the
//! checkpoint. KCL applications ignore these attributes. The table is created on demand (on-demand
//! billing).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use chrono::DateTime;
use kinesis_connectors_core::{Position, Resume, SequenceNumber};

use crate::error::StoreError;
use crate::lease::{Lease, LeaseStore};
use crate::position::Checkpoint;

const KEY: &str = "leaseKey";
const OWNER: &str = "leaseOwner";
const COUNTER: &str = "leaseCounter";
const CHECKPOINT: &str = "checkpoint";
const SUB_SEQUENCE: &str = "checkpointSubSequenceNumber";
const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
const PARENTS: &str = "parentShardId";
const CHILDREN: &str = "childShardIds";
const START_HASH: &str = "startingHashKey";
const END_HASH: &str = "endingHashKey";
const START_TIMESTAMP: &str = "kcStartTimestamp";
const START_SEQUENCE: &str = "kcStartSequence";
const CHECKPOINTED_AT: &str = "kcCheckpointedAt";
const RESUME: &str = "kcResume";

/// The lease table; see the module documentation.
pub struct DynamoDbLeaseStore {
    client: Client,
    table: String,
    /// Unreadable rows already reported (each is logged as an error once, not at every scan).
    reported: std::sync::Mutex<std::collections::HashSet<String>>,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A checkpoint as (`checkpoint`, `checkpointSubSequenceNumber`, extra attributes).
fn encode_checkpoint(cp: &Checkpoint) -> (String, u64, Vec<(&'static str, AttributeValue)>) {
    match cp {
        Checkpoint::TrimHorizon => ("TRIM_HORIZON".into(), 0, vec![]),
        Checkpoint::Latest => ("LATEST".into(), 0, vec![]),
        Checkpoint::AtTimestamp { timestamp } => (
            "AT_TIMESTAMP".into(),
            0,
            vec![(START_TIMESTAMP, s(&timestamp.to_rfc3339()))],
        ),
        Checkpoint::AtSequence { sequence } => (
            "AT_SEQUENCE_NUMBER".into(),
            0,
            vec![(START_SEQUENCE, s(sequence.as_str()))],
        ),
        Checkpoint::Sequence { position } => {
            (position.sequence.to_string(), position.sub_sequence, vec![])
        }
        Checkpoint::ShardEnd => ("SHARD_END".into(), 0, vec![]),
    }
}

fn decode_checkpoint(item: &HashMap<String, AttributeValue>) -> Result<Checkpoint, String> {
    let text = item
        .get(CHECKPOINT)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or("TRIM_HORIZON");
    let sub: u64 = item
        .get(SUB_SEQUENCE)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(match text {
        "TRIM_HORIZON" => Checkpoint::TrimHorizon,
        "LATEST" => Checkpoint::Latest,
        "SHARD_END" => Checkpoint::ShardEnd,
        "AT_TIMESTAMP" => match item.get(START_TIMESTAMP).and_then(|v| v.as_s().ok()) {
            Some(t) => Checkpoint::AtTimestamp {
                timestamp: DateTime::parse_from_rfc3339(t)
                    .map_err(|e| e.to_string())?
                    .to_utc(),
            },
            // A KCL table: the timestamp lived in the KCL application's configuration.
            None => Checkpoint::TrimHorizon,
        },
        "AT_SEQUENCE_NUMBER" => Checkpoint::AtSequence {
            sequence: item
                .get(START_SEQUENCE)
                .and_then(|v| v.as_s().ok())
                .map(|t| SequenceNumber::new(t.as_str()))
                .ok_or("AT_SEQUENCE_NUMBER without kcStartSequence")?
                .map_err(|e| e.to_string())?,
        },
        seq => Checkpoint::Sequence {
            position: Position::new(SequenceNumber::new(seq).map_err(|e| e.to_string())?, sub),
        },
    })
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<Lease, String> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let set = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default()
    };
    let shard_id = text(KEY).ok_or("item without leaseKey")?;
    let hash_range = match (text(START_HASH), text(END_HASH)) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    let resume = match text(RESUME) {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| format!("lease {shard_id}: {RESUME} is not a resume state: {e}"))?,
        None => Resume::default(),
    };
    Ok(Lease {
        resume,
        owner: text(OWNER).filter(|o| !o.is_empty()),
        counter: number(COUNTER).unwrap_or(0),
        checkpoint: decode_checkpoint(item).map_err(|e| format!("lease {shard_id}: {e}"))?,
        owner_switches: number(OWNER_SWITCHES).unwrap_or(0),
        parents: set(PARENTS),
        children: set(CHILDREN),
        hash_range,
        updated_at: text(CHECKPOINTED_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.to_utc()),
        shard_id,
        unreadable: None,
    })
}

/// A row that does not decode: kept as a lease that is never taken or read (its children wait), so a
/// damaged row cannot let a child be read before its parent ended.
fn unreadable(item: &HashMap<String, AttributeValue>, why: String) -> Option<Lease> {
    let shard = item.get(KEY).and_then(|v| v.as_s().ok())?;
    let mut lease = Lease::new(shard.clone(), Checkpoint::TrimHorizon, Vec::new(), None);
    lease.owner = item
        .get(OWNER)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .filter(|o| !o.is_empty());
    lease.counter = item
        .get(COUNTER)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    lease.unreadable = Some(why);
    Some(lease)
}

impl DynamoDbLeaseStore {
    /// Opens the lease table `table`, creating it (on-demand billing) if it does not exist.
    pub async fn open(client: Client, table: &str) -> Result<Self, StoreError> {
        let store = Self {
            client,
            table: table.to_owned(),
            reported: std::sync::Mutex::default(),
        };
        store.ensure_table().await?;
        Ok(store)
    }

    /// Connects to DynamoDB in `region` (or at `endpoint`) and opens the table.
    pub async fn connect(
        region: &str,
        endpoint: Option<&str>,
        table: &str,
    ) -> Result<Self, StoreError> {
        let sdk = kinesis_connectors_aws::sdk_config(region, endpoint).await;
        Self::open(Client::new(&sdk), table).await
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn error<E, R>(&self, what: &str, e: SdkError<E, R>) -> StoreError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let (code, message) = kinesis_connectors_aws::describe(&e);
        let class = kinesis_connectors_aws::classify(code.as_deref());
        StoreError::Service {
            table: self.table.clone(),
            message: format!(
                "{what}: {}{message}",
                code.map(|c| format!("{c}: ")).unwrap_or_default()
            ),
            retryable: class.is_retryable(),
        }
    }

    async fn ensure_table(&self) -> Result<(), StoreError> {
        let exists = match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                false
            }
            Err(e) => return Err(self.error("DescribeTable", e)),
        };
        if !exists {
            let created = self
                .client
                .create_table()
                .table_name(&self.table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(KEY)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(|e| StoreError::Service {
                            table: self.table.clone(),
                            message: e.to_string(),
                            retryable: false,
                        })?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(KEY)
                        .key_type(KeyType::Hash)
                        .build()
                        .map_err(|e| StoreError::Service {
                            table: self.table.clone(),
                            message: e.to_string(),
                            retryable: false,
                        })?,
                )
                .send()
                .await;
            match created {
                Ok(_) => tracing::info!(table = %self.table, "lease table created"),
                // Another worker created it first.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) => {}
                Err(e) => return Err(self.error("CreateTable", e)),
            }
        }
        for attempt in 0..600u32 {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.error("DescribeTable", e))?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10) + 1))).await;
        }
        Err(StoreError::Service {
            table: self.table.clone(),
            message: "table did not become ACTIVE".into(),
            retryable: true,
        })
    }

    /// Runs a conditional update; `Ok(false)` when the condition failed.
    async fn conditional(
        &self,
        what: &str,
        req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<bool, StoreError> {
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.error(what, e)),
        }
    }

    fn update(
        &self,
        shard: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(shard))
    }
}

#[async_trait]
impl LeaseStore for DynamoDbLeaseStore {
    async fn list(&self) -> Result<Vec<Lease>, StoreError> {
        let mut leases = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.error("Scan", e))?;
            for item in out.items() {
                match decode(item) {
                    Ok(l) => {
                        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
                        if !reported.is_empty() && reported.remove(&l.shard_id) {
                            tracing::info!(table = %self.table, shard = %l.shard_id, "lease row readable again");
                        }
                        drop(reported);
                        leases.push(l);
                    }
                    Err(e) => match unreadable(item, e.clone()) {
                        Some(l) => {
                            let first = self
                                .reported
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(l.shard_id.clone());
                            if first {
                                tracing::error!(table = %self.table, shard = %l.shard_id, error = %e, "lease row unreadable: the shard is not read, nor are its children, until the row is mended");
                            } else {
                                tracing::debug!(table = %self.table, shard = %l.shard_id, error = %e, "lease row still unreadable");
                            }
                            leases.push(l);
                        }
                        None => {
                            tracing::error!(table = %self.table, error = %e, "lease row without a readable leaseKey ignored")
                        }
                    },
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(leases),
            }
        }
    }

    async fn create(&self, lease: &Lease) -> Result<bool, StoreError> {
        let (cp, sub, extra) = encode_checkpoint(&lease.checkpoint);
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, s(&lease.shard_id))
            .item(COUNTER, n(lease.counter))
            .item(CHECKPOINT, s(&cp))
            .item(SUB_SEQUENCE, n(sub))
            .item(OWNER_SWITCHES, n(0))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", KEY);
        for (k, v) in extra {
            req = req.item(k, v);
        }
        if !lease.parents.is_empty() {
            req = req.item(PARENTS, AttributeValue::Ss(lease.parents.clone()));
        }
        if let Some((a, b)) = &lease.hash_range {
            req = req.item(START_HASH, s(a)).item(END_HASH, s(b));
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.error("PutItem", e)),
        }
    }

    async fn take(
        &self,
        shard: &str,
        expected: u64,
        owner: &str,
    ) -> Result<Option<u64>, StoreError> {
        let next = expected + 1;
        let req = self
            .update(shard)
            .update_expression("SET #o = :me, #c = :next, #sw = if_not_exists(#sw, :zero) + :one")
            .condition_expression("#c = :expected")
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_names("#sw", OWNER_SWITCHES)
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":expected", n(expected))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1));
        Ok(self
            .conditional("UpdateItem (take)", req)
            .await?
            .then_some(next))
    }

    async fn renew(
        &self,
        shard: &str,
        expected: u64,
        owner: &str,
    ) -> Result<Option<u64>, StoreError> {
        let next = expected + 1;
        let req = self
            .update(shard)
            .update_expression("SET #c = :next")
            .condition_expression("#c = :expected AND #o = :me")
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":expected", n(expected));
        Ok(self
            .conditional("UpdateItem (renew)", req)
            .await?
            .then_some(next))
    }

    async fn release(&self, shard: &str, expected: u64, owner: &str) -> Result<bool, StoreError> {
        let req = self
            .update(shard)
            .update_expression("REMOVE #o SET #c = :next")
            .condition_expression("#c = :expected AND #o = :me")
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":next", n(expected + 1))
            .expression_attribute_values(":expected", n(expected));
        self.conditional("UpdateItem (release)", req).await
    }

    async fn save(
        &self,
        shard: &str,
        expected: u64,
        owner: &str,
        checkpoint: Option<&Checkpoint>,
        resume: &Resume,
    ) -> Result<Option<u64>, StoreError> {
        let next = expected + 1;
        let mut set = String::from("SET #c = :next");
        let mut req = self.update(shard);
        if let Some(checkpoint) = checkpoint {
            let (cp, sub, extra) = encode_checkpoint(checkpoint);
            set.push_str(", #cp = :cp, #sub = :sub, #sw = :zero, #at = :at");
            for (i, (k, v)) in extra.into_iter().enumerate() {
                set.push_str(&format!(", #x{i} = :x{i}"));
                req = req
                    .expression_attribute_names(format!("#x{i}"), k)
                    .expression_attribute_values(format!(":x{i}"), v);
            }
            req = req
                .expression_attribute_names("#cp", CHECKPOINT)
                .expression_attribute_names("#sub", SUB_SEQUENCE)
                .expression_attribute_names("#sw", OWNER_SWITCHES)
                .expression_attribute_names("#at", CHECKPOINTED_AT)
                .expression_attribute_values(":cp", s(&cp))
                .expression_attribute_values(":sub", n(sub))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":at", s(&chrono::Utc::now().to_rfc3339()));
        }
        let expression = if resume.is_empty() {
            format!("{set} REMOVE #rs")
        } else {
            let json = serde_json::to_string(resume).map_err(|e| StoreError::Service {
                table: self.table.clone(),
                message: format!("cannot encode {RESUME}: {e}"),
                retryable: false,
            })?;
            req = req.expression_attribute_values(":rs", s(&json));
            format!("{set}, #rs = :rs")
        };
        let req = req
            .update_expression(expression)
            .condition_expression("#c = :expected AND #o = :me")
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_names("#rs", RESUME)
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":next", n(next))
            .expression_attribute_values(":expected", n(expected));
        Ok(self
            .conditional("UpdateItem (checkpoint)", req)
            .await?
            .then_some(next))
    }

    async fn set_children(&self, shard: &str, children: &[String]) -> Result<(), StoreError> {
        if children.is_empty() {
            return Ok(());
        }
        let req = self
            .update(shard)
            .update_expression("SET #ch = :ch")
            .condition_expression("attribute_exists(#k)")
            .expression_attribute_names("#ch", CHILDREN)
            .expression_attribute_names("#k", KEY)
            .expression_attribute_values(":ch", AttributeValue::Ss(children.to_vec()));
        self.conditional("UpdateItem (children)", req)
            .await
            .map(|_| ())
    }

    async fn delete_ended(&self, shard: &str) -> Result<(), StoreError> {
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, s(shard))
            .condition_expression("#cp = :end")
            .expression_attribute_names("#cp", CHECKPOINT)
            .expression_attribute_values(":end", s("SHARD_END"))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error("DeleteItem", e)),
        }
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("dynamodb:{}", self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_through_item_attributes() {
        let seq = SequenceNumber::new("49590338271490256608559692538361571095921575989136588898")
            .unwrap();
        let cases = [
            Checkpoint::TrimHorizon,
            Checkpoint::Latest,
            Checkpoint::ShardEnd,
            Checkpoint::AtTimestamp {
                timestamp: DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
                    .unwrap()
                    .to_utc(),
            },
            Checkpoint::AtSequence {
                sequence: seq.clone(),
            },
            Checkpoint::Sequence {
                position: Position::new(seq, 7),
            },
        ];
        for cp in cases {
            let (text, sub, extra) = encode_checkpoint(&cp);
            let mut item: HashMap<String, AttributeValue> =
                extra.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            item.insert(CHECKPOINT.into(), s(&text));
            item.insert(SUB_SEQUENCE.into(), n(sub));
            assert_eq!(decode_checkpoint(&item).unwrap(), cp);
        }
    }
}
