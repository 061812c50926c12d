//! Building bulk requests from a batch, split to the configured limits, and reading their responses.
//!
//! Each item becomes an action line (`{"index":{"_index":"…","_id":"…"}}`) and, except for `delete`,
//! a source line: the item's JSON text as it is (raw newlines, which valid JSON holds only as
//! whitespace, become spaces so the body stays NDJSON), or `{"doc":…,"doc_as_upsert":true}` for
//! `update`. Lines go straight into the request body, with no per-item allocation when index names are
//! fixed. A request closes at `max_bulk_documents` items or when the next item would pass
//! `max_bulk_bytes`; an item larger than the cap on its own goes alone.

use std::collections::HashMap;
use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::Utc;
use kinesis_connectors_core::{Batch, Envelope, Item, ItemFailure};
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::config::{Action, DocumentId, ElasticsearchOptions};
use crate::template::parse_date;

/// The response fields the emitter reads (`filter_path` keeps the cluster from sending the rest).
pub(crate) const FILTER_PATH: &str = "errors,items.*.status,items.*.error";

/// `retry_on_conflict` of `update` actions: the server re-applies a partial update that raced
/// another write of the same document this many times before answering 409.
const RETRY_ON_CONFLICT: u32 = 3;

/// One bulk request: its body and, per item, where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    /// The NDJSON body.
    pub(crate) body: Bytes,
    /// Index in the batch of each item, in body order.
    pub(crate) items: Vec<usize>,
    /// Each item's action (a 409 means "delivered" only for `create`).
    pub(crate) actions: Vec<Action>,
    /// Byte offset in `body` where each item's lines start (to split the request in two).
    pub(crate) offsets: Vec<usize>,
}

impl Chunk {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Two requests of half the items each (for a request the cluster found too large).
    pub(crate) fn split(self) -> (Chunk, Chunk) {
        let mid = self.items.len() / 2;
        let at = self.offsets[mid];
        let first = Chunk {
            body: self.body.slice(..at),
            items: self.items[..mid].to_vec(),
            actions: self.actions[..mid].to_vec(),
            offsets: self.offsets[..mid].to_vec(),
        };
        let second = Chunk {
            body: self.body.slice(at..),
            items: self.items[mid..].to_vec(),
            actions: self.actions[mid..].to_vec(),
            offsets: self.offsets[mid..].iter().map(|o| o - at).collect(),
        };
        (first, second)
    }
}

/// The requests for a batch, and the items rejected before sending.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) chunks: Vec<Chunk>,
    /// Items that cannot be written (no index name, no id, not JSON): permanent failures.
    pub(crate) rejected: Vec<ItemFailure>,
    /// Groups of batch indices writing the same document (same index and id), in batch order; only
    /// groups of two or more. Their writes must apply in order, so the requests of such a batch are
    /// sent one after the other, and a later write is re-sent after an earlier one that failed.
    pub(crate) same_document: Vec<Vec<usize>>,
}

struct Builder<'a> {
    o: &'a ElasticsearchOptions,
    plan: Plan,
    body: BytesMut,
    items: Vec<usize>,
    actions: Vec<Action>,
    offsets: Vec<usize>,
}

impl Builder<'_> {
    fn finish(&mut self) {
        if self.items.is_empty() {
            return;
        }
        let body = std::mem::take(&mut self.body).freeze();
        self.plan.chunks.push(Chunk {
            body,
            items: std::mem::take(&mut self.items),
            actions: std::mem::take(&mut self.actions),
            offsets: std::mem::take(&mut self.offsets),
        });
    }

    /// Starts the next item: closes the current request if it is full.
    fn room(&mut self) {
        if self.items.len() >= self.o.max_bulk_documents
            || (!self.items.is_empty() && self.body.len() >= self.o.max_bulk_bytes)
        {
            self.finish();
        }
        if self.body.capacity() == 0 {
            self.body = BytesMut::with_capacity(self.o.max_bulk_bytes.min(1 << 20));
        }
    }

    /// Records the item just written at `start`, moving it to a request of its own when it made the
    /// current one pass the byte cap.
    fn written(&mut self, start: usize, index: usize, action: Action) {
        let mut offset = start;
        if !self.items.is_empty() && self.body.len() > self.o.max_bulk_bytes {
            let tail = self.body.split_off(start);
            self.finish();
            self.body = tail;
            offset = 0;
        }
        self.items.push(index);
        self.actions.push(action);
        self.offsets.push(offset);
    }
}

/// Builds the bulk requests for `batch`; see the module documentation.
pub(crate) fn plan(batch: &Batch<Item>, o: &ElasticsearchOptions) -> Plan {
    let mut b = Builder {
        o,
        plan: Plan::default(),
        body: BytesMut::new(),
        items: Vec::new(),
        actions: Vec::new(),
        offsets: Vec::new(),
    };
    let mut index = String::new();
    let mut id = String::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, env) in batch.items.iter().enumerate() {
        let action = match describe(env, o, &mut index, &mut id) {
            Ok(a) => a,
            Err(reason) => {
                b.plan.rejected.push(ItemFailure::permanent(i, reason));
                continue;
            }
        };
        if matches!(o.document_id, DocumentId::Field(_)) {
            let first = *seen.entry((index.clone(), id.clone())).or_insert(i);
            if first != i {
                groups.entry(first).or_insert_with(|| vec![first]).push(i);
            }
        }
        b.room();
        let start = b.body.len();
        write_action(
            &mut b.body,
            action,
            &index,
            (!id.is_empty()).then_some(&*id),
        );
        match action {
            Action::Delete => {}
            Action::Update => {
                b.body.put_slice(b"{\"doc\":");
                put_one_line(&mut b.body, env.item.data());
                b.body.put_slice(b",\"doc_as_upsert\":true}\n");
            }
            Action::Index | Action::Create => {
                put_one_line(&mut b.body, env.item.data());
                b.body.put_u8(b'\n');
            }
        }
        b.written(start, i, action);
    }
    b.finish();
    let mut same: Vec<Vec<usize>> = groups.into_values().collect();
    same.sort();
    b.plan.same_document = same;
    b.plan
}

/// Works out an item's action, index name and id (`id` left empty for none).
fn describe(
    env: &Envelope<Item>,
    o: &ElasticsearchOptions,
    index: &mut String,
    id: &mut String,
) -> Result<Action, String> {
    let item = &env.item;
    let action = match &o.action_field {
        None => o.action,
        Some(path) => match item.field(path) {
            None | Some(Value::Null) => o.action,
            Some(Value::String(s)) => Action::parse(&s).ok_or_else(|| {
                format!(
                    "action field {path} is {s:?}; expected \"index\", \"create\", \"update\" or \"delete\""
                )
            })?,
            Some(v) => return Err(format!("action field {path} is {v}, not a string")),
        },
    };
    if !item.is_json() && action != Action::Delete {
        return Err(
            "the item is not a JSON document (use the json transformer to index records)".into(),
        );
    }
    o.index.render(index, item, || match &o.index_date_field {
        Some(path) => match item.field(path) {
            Some(v) => parse_date(&v).map_err(|e| format!("index date field {path}: {e}")),
            None => Err(format!("index date field {path} is missing")),
        },
        // Kinesis gives every record an arrival time; records built by hand may have none.
        None => Ok(env.record().approximate_arrival.unwrap_or_else(Utc::now)),
    })?;
    id.clear();
    match &o.document_id {
        DocumentId::Deterministic => {
            let r = env.record();
            let _ = write!(
                id,
                "{}-{}-{}",
                r.shard_id, r.position.sequence, r.position.sub_sequence
            );
            // The second and later items of one record: their index keeps the ids apart (the first
            // item's id is the record's, as for single-item records).
            if env.index > 0 {
                let _ = write!(id, "-{}", env.index);
            }
        }
        DocumentId::Field(path) => match item.field(path) {
            Some(Value::String(s)) if !s.is_empty() => id.push_str(&s),
            Some(Value::Number(n)) => {
                let _ = write!(id, "{n}");
            }
            Some(Value::String(_)) => return Err(format!("document id field {path} is empty")),
            None | Some(Value::Null) => {
                return Err(format!("document id field {path} is missing"));
            }
            Some(_) => {
                return Err(format!(
                    "document id field {path} is not a string or number"
                ));
            }
        },
        DocumentId::None => {
            if action.needs_id() {
                return Err(format!("{:?} needs a document id", action.name()));
            }
        }
    }
    Ok(action)
}

fn write_action(out: &mut BytesMut, action: Action, index: &str, id: Option<&str>) {
    out.put_slice(b"{\"");
    out.put_slice(action.name().as_bytes());
    out.put_slice(b"\":{\"_index\":");
    put_json_string(out, index);
    if let Some(id) = id {
        out.put_slice(b",\"_id\":");
        put_json_string(out, id);
    }
    if action == Action::Update {
        let _ = write!(StrSink(out), ",\"retry_on_conflict\":{RETRY_ON_CONFLICT}");
    }
    out.put_slice(b"}}\n");
}

/// `fmt::Write` into a `BytesMut`.
struct StrSink<'a>(&'a mut BytesMut);

impl std::fmt::Write for StrSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// Writes `s` as a JSON string literal.
fn put_json_string(out: &mut BytesMut, s: &str) {
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match c {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.put_slice(&bytes[from..i]);
        match escape {
            Some(e) => out.put_slice(e),
            None => {
                let _ = write!(StrSink(out), "\\u{c:04x}");
            }
        }
        from = i + 1;
    }
    out.put_slice(&bytes[from..]);
    out.put_u8(b'"');
}

/// Copies a JSON document, turning raw line breaks (whitespace in valid JSON) into spaces.
fn put_one_line(out: &mut BytesMut, data: &[u8]) {
    if data.iter().any(|&b| b == b'\n' || b == b'\r') {
        out.extend(
            data.iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    } else {
        out.put_slice(data);
    }
}

/// One item of a bulk response: its status and, when it failed, the error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ItemResult {
    pub(crate) status: u16,
    pub(crate) error: Option<Value>,
}

#[derive(Deserialize)]
struct Inner {
    #[serde(default)]
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// `{"<action>": {"status": …, "error": …}}`, reading the one entry whatever its action name.
impl<'de> Deserialize<'de> for ItemResult {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ItemResult;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a bulk response item")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ItemResult, A::Error> {
                let mut found: Option<Inner> = None;
                while map.next_key::<IgnoredAny>()?.is_some() {
                    let inner: Inner = map.next_value()?;
                    found.get_or_insert(inner);
                }
                let inner = found.ok_or_else(|| de::Error::custom("empty bulk response item"))?;
                Ok(ItemResult {
                    status: inner.status,
                    error: inner.error,
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<ItemResult>,
}

/// Reads a bulk response: one result per item sent, in order.
pub(crate) fn parse_response(body: &[u8], expected: usize) -> Result<Vec<ItemResult>, String> {
    let r: BulkResponse = serde_json::from_slice(body)
        .map_err(|e| format!("unreadable bulk response ({e}): {}", preview(body)))?;
    if r.items.len() != expected {
        return Err(format!(
            "bulk response lists {} items for {expected} sent",
            r.items.len()
        ));
    }
    Ok(r.items)
}

/// The start of a body, for error messages.
pub(crate) fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let mut s = text.replace('\n', " ");
    if body.len() > 300 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinesis_connectors_core::testing::record;
    use kinesis_connectors_core::{Envelope, FieldPath, Origin};

    fn batch(docs: &[&str]) -> Batch<Item> {
        let items = docs
            .iter()
            .enumerate()
            .map(|(n, d)| {
                let rec = record("shardId-000000000001", n as u64, d.as_bytes());
                let item = Item::parse_json(Bytes::copy_from_slice(d.as_bytes()))
                    .unwrap_or_else(|_| Item::raw(Bytes::copy_from_slice(d.as_bytes())));
                Envelope::new(item, Origin::new(rec))
            })
            .collect();
        Batch::new(std::sync::Arc::from("p"), items, 0)
    }

    fn options(index: &str) -> ElasticsearchOptions {
        ElasticsearchOptions::new("http://127.0.0.1:9200", index).unwrap()
    }

    fn lines(chunk: &Chunk) -> Vec<Value> {
        std::str::from_utf8(&chunk.body)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn index_actions_with_deterministic_ids() {
        let b = batch(&[r#"{"a":1}"#, "{\n \"b\": \"x\\ny\"\n}"]);
        let p = plan(&b, &options("logs-{yyyy.MM.dd}"));
        assert!(p.rejected.is_empty());
        assert_eq!(p.chunks.len(), 1);
        let c = &p.chunks[0];
        assert_eq!(c.items, vec![0, 1]);
        assert!(c.body.ends_with(b"\n"));
        let l = lines(c);
        assert_eq!(l.len(), 4);
        let seq0 = kinesis_connectors_core::testing::sequence(0);
        assert_eq!(
            l[0],
            serde_json::json!({"index": {"_index": "logs-2026.01.01", "_id": format!("shardId-000000000001-{seq0}-0")}})
        );
        assert_eq!(l[1], serde_json::json!({"a": 1}));
        assert_eq!(
            l[3],
            serde_json::json!({"b": "x\ny"}),
            "raw newlines became spaces"
        );
    }

    #[test]
    fn update_delete_and_actions_from_a_field() {
        let b = batch(&[
            r#"{"id":"a","v":1}"#,
            r#"{"id":"b","op":"delete"}"#,
            r#"{"id":"c","op":"create"}"#,
            r#"{"id":"d","op":"upsert"}"#,
            r#"{"id":7,"op":"update"}"#,
            r#"{"v":2}"#,
        ]);
        let mut o = options("docs");
        o.action = Action::Update;
        o.action_field = FieldPath::parse("op");
        o.document_id = DocumentId::Field(FieldPath::parse("id").unwrap());
        let p = plan(&b, &o);
        assert_eq!(p.rejected.len(), 2);
        assert_eq!(p.rejected[0].index, 3);
        assert!(p.rejected[0].reason.contains("\"upsert\""));
        assert_eq!(p.rejected[1].index, 5);
        assert!(
            p.rejected[1]
                .reason
                .contains("document id field id is missing")
        );
        let c = &p.chunks[0];
        assert_eq!(c.items, vec![0, 1, 2, 4]);
        assert_eq!(
            c.actions,
            vec![
                Action::Update,
                Action::Delete,
                Action::Create,
                Action::Update
            ]
        );
        let l = lines(c);
        assert_eq!(
            l[0],
            serde_json::json!({"update": {"_index": "docs", "_id": "a", "retry_on_conflict": 3}})
        );
        assert_eq!(
            l[1],
            serde_json::json!({"doc": {"id": "a", "v": 1}, "doc_as_upsert": true})
        );
        assert_eq!(
            l[2],
            serde_json::json!({"delete": {"_index": "docs", "_id": "b"}})
        );
        assert_eq!(
            l[3],
            serde_json::json!({"create": {"_index": "docs", "_id": "c"}})
        );
        assert_eq!(l[5]["update"]["_id"], "7");
        assert_eq!(l.len(), 7, "delete has no source line");
    }

    #[test]
    fn requests_are_capped_by_documents_and_bytes() {
        let doc = format!(r#"{{"pad":"{}"}}"#, "x".repeat(200));
        let docs: Vec<&str> = std::iter::repeat_n(doc.as_str(), 100).collect();
        let b = batch(&docs);
        let mut o = options("i");
        o.max_bulk_documents = 30;
        let p = plan(&b, &o);
        assert_eq!(
            p.chunks.iter().map(Chunk::len).collect::<Vec<_>>(),
            vec![30, 30, 30, 10]
        );
        o.max_bulk_documents = 1000;
        o.max_bulk_bytes = 2048;
        let p = plan(&b, &o);
        let item_bytes = p.chunks[0].body.len() / p.chunks[0].len();
        assert!(p.chunks.iter().all(|c| c.body.len() <= 2048));
        assert_eq!(p.chunks[0].len(), 2048 / item_bytes);
        let all: Vec<usize> = p.chunks.iter().flat_map(|c| c.items.clone()).collect();
        assert_eq!(
            all,
            (0..100).collect::<Vec<_>>(),
            "every item once, in order"
        );
        for c in &p.chunks {
            assert_eq!(lines(c).len(), 2 * c.len());
        }
    }

    #[test]
    fn an_item_above_the_byte_cap_goes_alone() {
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(3000));
        let b = batch(&[r#"{"a":1}"#, &big, r#"{"a":2}"#]);
        let mut o = options("i");
        o.max_bulk_bytes = 1024;
        let p = plan(&b, &o);
        assert_eq!(
            p.chunks.iter().map(|c| c.items.clone()).collect::<Vec<_>>(),
            vec![vec![0], vec![1], vec![2]]
        );
    }

    #[test]
    fn split_halves_keep_lines_and_offsets() {
        let docs: Vec<String> = (0..5).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let p = plan(&batch(&refs), &options("i"));
        let (a, b) = p.chunks[0].clone().split();
        assert_eq!(a.items, vec![0, 1]);
        assert_eq!(b.items, vec![2, 3, 4]);
        assert_eq!(lines(&a)[3], serde_json::json!({"n": 1}));
        assert_eq!(lines(&b)[1], serde_json::json!({"n": 2}));
        let (c, d) = b.split();
        assert_eq!((&c.items, &d.items), (&vec![2], &vec![3, 4]));
        assert_eq!(lines(&d)[1], serde_json::json!({"n": 3}));
    }

    #[test]
    fn rejected_before_sending() {
        let mut b = batch(&[r#"{"a":1}"#, "not json", r#"{"a":2}"#]);
        // A second item of the same record, with deterministic ids: a document of its own.
        let origin = b.items[2].origin.clone();
        b.items.push(Envelope::with_index(
            Item::parse_json(Bytes::from_static(b"{}")).unwrap(),
            origin,
            1,
        ));
        let p = plan(&b, &options("i"));
        let rejected: Vec<usize> = p.rejected.iter().map(|f| f.index).collect();
        assert_eq!(rejected, vec![1]);
        assert!(p.rejected[0].reason.contains("not a JSON document"));
        assert_eq!(p.chunks[0].items, vec![0, 2, 3]);
        let ids: Vec<String> = lines(&p.chunks[0])
            .iter()
            .step_by(2)
            .map(|l| l["index"]["_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids[2], format!("{}-1", ids[1]), "{ids:?}");
        assert!(p.same_document.is_empty());

        let mut o = options("i-{yyyy}");
        o.index_date_field = FieldPath::parse("ts");
        let p = plan(
            &batch(&[r#"{"ts":"2026-05-01"}"#, r#"{"ts":"soon"}"#, "{}"]),
            &o,
        );
        assert_eq!(p.rejected.len(), 2);
        assert!(p.rejected[0].reason.contains("index date field ts"));
        assert!(p.rejected[1].reason.contains("missing"));
        assert_eq!(lines(&p.chunks[0])[0]["index"]["_index"], "i-2026");
    }

    #[test]
    fn writes_to_one_document_are_grouped() {
        let b = batch(&[
            r#"{"id":"a"}"#,
            r#"{"id":"b"}"#,
            r#"{"id":"a"}"#,
            r#"{"id":"a"}"#,
            r#"{"id":"c"}"#,
        ]);
        let mut o = options("i");
        o.document_id = DocumentId::Field(FieldPath::parse("id").unwrap());
        assert_eq!(plan(&b, &o).same_document, vec![vec![0, 2, 3]]);
        assert!(plan(&b, &options("i")).same_document.is_empty());
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = BytesMut::new();
        put_json_string(&mut out, "a\"b\\c\nd\u{1}é");
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn responses_are_read_item_by_item() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"status":201}},
            {"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"update":{"_id":"x","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}"#;
        let items = parse_response(body, 3).unwrap();
        assert_eq!(items[0].status, 201);
        assert!(items[0].error.is_none());
        assert_eq!(items[1].status, 409);
        assert_eq!(items[2].error.as_ref().unwrap()["reason"], "queue full");
        assert!(
            parse_response(body, 4)
                .unwrap_err()
                .contains("3 items for 4")
        );
        assert!(
            parse_response(b"<html>", 1)
                .unwrap_err()
                .contains("unreadable")
        );
    }
}
