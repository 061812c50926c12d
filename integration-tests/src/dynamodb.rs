//! Helpers for the DynamoDB emitter's tests: tables on the local DynamoDB (dynalite), scans, the
//! pipeline configuration, and a [`Rewrite`] rule that turns some writes of a BatchWriteItem into
//! `UnprocessedItems` the way a busy DynamoDB does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::fault_proxy::{Rewrite, Rewritten, Seen};

/// A DynamoDB client for `endpoint` (no SDK retries, like the emitter's).
pub async fn client(endpoint: &str) -> Client {
    Client::new(&kinesis_connectors_aws::sdk_config("us-east-1", Some(endpoint)).await)
}

/// Creates an on-demand table with a partition key and an optional sort key, and waits until it is
/// ACTIVE.
pub async fn create_table(
    client: &Client,
    table: &str,
    partition: (&str, ScalarAttributeType),
    sort: Option<(&str, ScalarAttributeType)>,
) {
    let mut req = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, ty, role) in std::iter::once((partition.0, partition.1, KeyType::Hash))
        .chain(sort.map(|(n, t)| (n, t, KeyType::Range)))
    {
        req = req
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ty)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(role)
                    .build()
                    .unwrap(),
            );
    }
    req.send().await.unwrap();
    for _ in 0..200 {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap();
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("table {table} did not become ACTIVE");
}

/// Deletes a table (best effort: dynalite keeps tables in memory, so tests clean up).
pub async fn delete_table(client: &Client, table: &str) {
    let _ = client.delete_table().table_name(table).send().await;
}

/// Every item of a table.
pub async fn scan(client: &Client, table: &str) -> Vec<HashMap<String, AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(out.items().iter().cloned());
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            return items;
        }
    }
}

/// A string attribute of an item.
pub fn s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> &'a str {
    item[name].as_s().unwrap()
}

/// A number attribute of an item, as an integer.
pub fn n(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    item[name].as_n().unwrap().parse().unwrap()
}

/// A pipeline `p` reading `stream`, writing with `type = "dynamodb"` and the inline `emitter`
/// options, state in `state/`. `extra` is appended inside the pipeline table (TOML lines).
pub fn dynamodb_pipeline(stream: &str, kinesis: &str, emitter: &str, extra: &str) -> String {
    format!(
        r#"state_dir = "state"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}", idle_poll_interval = "200ms", shard_sync_interval = "1s" }}
transformer = {{ type = "json" }}
emitter = {{ type = "dynamodb", {emitter} }}
{extra}
"#
    )
}

/// Whether a request the proxy saw is the DynamoDB operation `op` (e.g. `BatchWriteItem`).
pub fn is_op(seen: &Seen, op: &str) -> bool {
    seen.target
        .as_deref()
        .is_some_and(|t| t.strip_prefix("DynamoDB_20120810.") == Some(op))
}

/// The write requests (`{"PutRequest": ...}` / `{"DeleteRequest": ...}`) of a BatchWriteItem body.
pub fn batch_writes(body: &Bytes) -> Vec<Value> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["RequestItems"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .flat_map(|l| l.as_array().cloned().unwrap_or_default())
        .collect()
}

/// A rewrite for [`crate::fault_proxy::FaultProxy::start_with`]: in every BatchWriteItem, the write
/// requests `pick` chooses are not forwarded but handed back in `UnprocessedItems`, as a busy DynamoDB
/// does. `pick` is called once per write request of each BatchWriteItem.
pub fn unprocessed_items(pick: impl Fn(&Value) -> bool + Send + Sync + 'static) -> Rewrite {
    Arc::new(move |_, _, headers, body, _| {
        let target = headers.get("x-amz-target")?.to_str().ok()?;
        if !target.ends_with(".BatchWriteItem") {
            return None;
        }
        let mut request: Value = serde_json::from_slice(body).ok()?;
        let items = request["RequestItems"].as_object_mut()?;
        let mut dropped: serde_json::Map<String, Value> = serde_json::Map::new();
        let mut forwarded = 0;
        for (table, writes) in items.iter_mut() {
            let writes = writes.as_array_mut()?;
            let (keep, drop): (Vec<Value>, Vec<Value>) = writes.drain(..).partition(|w| !pick(w));
            forwarded += keep.len();
            *writes = keep;
            if !drop.is_empty() {
                dropped.insert(table.clone(), Value::Array(drop));
            }
        }
        if dropped.is_empty() {
            return None;
        }
        if forwarded == 0 {
            // Nothing to forward (an empty BatchWriteItem is invalid): answer for DynamoDB.
            let body = Bytes::from(json!({ "UnprocessedItems": dropped }).to_string());
            return Some(Rewritten {
                forward: None,
                respond: Box::new(move |_, _| (200, body)),
            });
        }
        items.retain(|_, w| w.as_array().is_some_and(|a| !a.is_empty()));
        Some(Rewritten {
            forward: Some(Bytes::from(serde_json::to_vec(&request).unwrap())),
            respond: Box::new(move |status, response: Bytes| {
                let mut v: Value = serde_json::from_slice(&response).unwrap_or(json!({}));
                if v.get("__type").is_some() {
                    return (status, response); // an error: the client retries the whole request anyway
                }
                v["UnprocessedItems"] = Value::Object(dropped);
                (status, Bytes::from(serde_json::to_vec(&v).unwrap()))
            }),
        })
    })
}
