//! Building the POST bodies of a batch and splitting them to the configured limits.
//!
//! A body is one JSON object:
//!
//! ```json
//! {"batch_id": "clicks:shardId-000000000001:4960…:4960…", "pipeline": "clicks", "stream": "clicks",
//!  "items": [ {…}, {…} ]}
//! ```
//!
//! `batch_id` (also sent as the `Idempotency-Key` header) depends only on the records in the request:
//! the pipeline, the first record's shard and the positions of the first and last item. A request
//! redelivered after a crash or retried carries the same id, so a receiver can drop duplicates.

use kinesis_connectors_core::kit::chunks;
use kinesis_connectors_core::stages::LineFormat;
use kinesis_connectors_core::{Batch, Envelope, Item, ItemFailure};

/// One POST: the batch indices of its items, its body and its id.
#[derive(Debug)]
pub struct Request {
    /// Indices (in the batch) of the items in this request, ascending.
    pub indices: Vec<usize>,
    /// The JSON body.
    pub body: Vec<u8>,
    /// The request's id (`Idempotency-Key`).
    pub batch_id: String,
}

/// A batch split into requests, and the items that cannot be sent at all.
#[derive(Debug, Default)]
pub struct Plan {
    /// The requests, in the batch's order.
    pub requests: Vec<Request>,
    /// Items refused before sending (e.g. raw bytes with `format = "data"`): permanent failures.
    pub refused: Vec<ItemFailure>,
}

/// One item as it appears in the body's `items` array.
fn render(format: LineFormat, entry: &Envelope<Item>) -> Result<Vec<u8>, String> {
    if format == LineFormat::Data && !entry.item.is_json() {
        return Err(
            "the webhook's format \"data\" needs JSON items: use the json transformer or format = \"envelope\""
                .into(),
        );
    }
    let mut out = Vec::with_capacity(entry.item.data().len() + 1);
    format.write(entry, &mut out);
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    Ok(out)
}

/// Splits `batch` into requests of at most `max_items` items and about `max_bytes` of items each
/// (an item larger than `max_bytes` goes alone), keeping the batch's order.
pub fn plan(batch: &Batch<Item>, format: LineFormat, max_items: usize, max_bytes: usize) -> Plan {
    let mut plan = Plan::default();
    let mut rendered = Vec::new();
    for (i, entry) in batch.items.iter().enumerate() {
        match render(format, entry) {
            Ok(r) => rendered.push((i, r)),
            Err(reason) => plan.refused.push(ItemFailure::permanent(i, reason)),
        }
    }
    for chunk in chunks(rendered, |r| r.len() + 1, max_items, max_bytes) {
        let (first, last) = (
            &batch.items[chunk.indices[0]],
            &batch.items[chunk.indices[chunk.indices.len() - 1]],
        );
        let batch_id = format!(
            "{}:{}:{}:{}",
            batch.context.pipeline,
            first.record().shard_id,
            first.item_position(),
            last.item_position()
        );
        let head = serde_json::json!({
            "batch_id": batch_id,
            "pipeline": &*batch.context.pipeline,
            "stream": &*batch.context.stream,
        });
        let mut body = head.to_string().into_bytes();
        body.pop(); // the closing brace: the items follow
        body.extend_from_slice(b",\"items\":[");
        body.extend(chunk.parts.join(&b','));
        body.extend_from_slice(b"]}");
        plan.requests.push(Request {
            indices: chunk.indices,
            body,
            batch_id,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use kinesis_connectors_core::{Origin, testing};
    use serde_json::Value;

    use super::*;

    fn batch(items: Vec<Item>) -> Batch<Item> {
        let envelopes = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let record = testing::record("shardId-000000000001", 100 + i as u64, b"");
                Envelope::new(item, Origin::new(record))
            })
            .collect();
        Batch::new(Arc::from("p"), envelopes, 0)
    }

    fn json(n: usize) -> Item {
        Item::parse_json(Bytes::from(format!("{{\"n\":{n}}}"))).unwrap()
    }

    #[test]
    fn requests_respect_item_and_byte_caps_and_keep_order() {
        let b = batch((0..10).map(json).collect());
        let p = plan(&b, LineFormat::Data, 4, 1 << 20);
        let sizes: Vec<usize> = p.requests.iter().map(|r| r.indices.len()).collect();
        assert_eq!(sizes, [4, 4, 2]);
        let all: Vec<usize> = p.requests.iter().flat_map(|r| r.indices.clone()).collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        // Each item is 7 bytes plus a separator: 3 fit in 27 bytes.
        let p = plan(&b, LineFormat::Data, 100, 27);
        assert!(p.requests.iter().all(|r| r.indices.len() <= 3));
        assert_eq!(p.requests.len(), 4);
        // A single item larger than the cap goes alone.
        let p = plan(&b, LineFormat::Data, 100, 1);
        assert_eq!(p.requests.len(), 10);
    }

    #[test]
    fn bodies_are_json_with_deterministic_ids() {
        let b = batch((0..3).map(json).collect());
        let p = plan(&b, LineFormat::Data, 2, 1 << 20);
        let v: Value = serde_json::from_slice(&p.requests[0].body).unwrap();
        assert_eq!(v["items"], serde_json::json!([{"n": 0}, {"n": 1}]));
        assert_eq!(v["pipeline"], "p");
        assert_eq!(v["stream"], "test-stream");
        let seq = |n| testing::sequence(n).to_string();
        assert_eq!(
            v["batch_id"],
            format!("p:shardId-000000000001:{}:{}", seq(100), seq(101))
        );
        assert_eq!(
            p.requests[1].batch_id,
            format!("p:shardId-000000000001:{}:{}", seq(102), seq(102))
        );
        let again = plan(&b, LineFormat::Data, 2, 1 << 20);
        assert_eq!(
            again.requests[1].body, p.requests[1].body,
            "same records, same body"
        );
    }

    #[test]
    fn raw_items_need_the_envelope_format() {
        let b = batch(vec![
            json(0),
            Item::raw(Bytes::from_static(b"\xff\x00")),
            json(2),
        ]);
        let p = plan(&b, LineFormat::Data, 10, 1 << 20);
        assert_eq!(p.refused.len(), 1);
        assert_eq!(p.refused[0].index, 1);
        assert_eq!(p.requests[0].indices, [0, 2]);
        let p = plan(&b, LineFormat::Envelope, 10, 1 << 20);
        assert!(p.refused.is_empty());
        let v: Value = serde_json::from_slice(&p.requests[0].body).unwrap();
        assert_eq!(v["items"][1]["data_base64"], "/wA=");
        assert_eq!(v["items"][2]["data"]["n"], 2);
        assert_eq!(v["items"][0]["shard"], "shardId-000000000001");
    }
}
