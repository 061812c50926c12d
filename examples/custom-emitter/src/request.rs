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

use kinesis_connectors_core::stages::LineFormat;
use kinesis_connectors_core::{Batch, Envelope, Item, ItemFailure};

/// One POST: the batch indices of its items and its body.
#[derive(Debug)]
pub struct Request {
    /// Indices into the batch, in batch order.
    pub indices: Vec<usize>,
    /// The JSON body.
    pub body: Vec<u8>,
    /// The body's `batch_id`.
    pub batch_id: String,
}

/// What a batch becomes: requests in batch order, and items refused before sending.
#[derive(Debug, Default)]
pub struct Plan {
    /// The requests, to be sent in order.
    pub requests: Vec<Request>,
    /// Items that cannot be written in the configured format (permanent failures).
    pub refused: Vec<ItemFailure>,
}

/// Renders one item in `format`: `Err` for an item the format cannot carry.
fn render(format: LineFormat, entry: &Envelope<Item>) -> Result<Vec<u8>, String> {
    if format == LineFormat::Data && !entry.item.is_json() {
        return Err(
            "the webhook's format \"data\" needs JSON items: use the json transformer or format = \"envelope\""
                .into(),
        );
    }
    let mut out = Vec::with_capacity(entry.item.data().len() + 1);
    // Both line formats produce one JSON document (for JSON items, or any item as an envelope).
    format.write(entry, &mut out);
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    Ok(out)
}

/// The id of a request holding `entries` (a non-empty slice, in batch order): item positions, so the
/// requests a many-item record is split over have ids of their own.
fn batch_id(pipeline: &str, first: &Envelope<Item>, last: &Envelope<Item>) -> String {
    let shard = &first.record().shard_id;
    format!(
        "{pipeline}:{shard}:{}:{}",
        first.item_position(),
        last.item_position()
    )
}

fn body(batch: &Batch<Item>, batch_id: &str, items: &[Vec<u8>]) -> Vec<u8> {
    let head = serde_json::json!({
        "batch_id": batch_id,
        "pipeline": &*batch.context.pipeline,
        "stream": &*batch.context.stream,
    });
    let mut out = head.to_string().into_bytes();
    out.pop(); // the closing brace: the items follow
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}");
    out
}

/// Splits `batch` into requests of at most `max_items` items and (except for a single larger item)
/// `max_bytes` bytes of items.
pub fn plan(batch: &Batch<Item>, format: LineFormat, max_items: usize, max_bytes: usize) -> Plan {
    let mut plan = Plan::default();
    let mut indices: Vec<usize> = Vec::new();
    let mut rendered: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    let flush = |plan: &mut Plan, indices: &mut Vec<usize>, rendered: &mut Vec<Vec<u8>>| {
        if let (Some(&first), Some(&last)) = (indices.first(), indices.last()) {
            let id = batch_id(
                &batch.context.pipeline,
                &batch.items[first],
                &batch.items[last],
            );
            plan.requests.push(Request {
                body: body(batch, &id, rendered),
                indices: std::mem::take(indices),
                batch_id: id,
            });
            rendered.clear();
        }
    };
    for (i, entry) in batch.items.iter().enumerate() {
        match render(format, entry) {
            Err(reason) => plan.refused.push(ItemFailure::permanent(i, reason)),
            Ok(r) => {
                let full = indices.len() >= max_items
                    || (!indices.is_empty() && bytes + r.len() + 1 > max_bytes);
                if full {
                    flush(&mut plan, &mut indices, &mut rendered);
                    bytes = 0;
                }
                bytes += r.len() + 1;
                indices.push(i);
                rendered.push(r);
            }
        }
    }
    flush(&mut plan, &mut indices, &mut rendered);
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
