//! Helpers for the Elasticsearch / OpenSearch tests: a small client of the local osmem-server (count,
//! get, search, mappings), a reader of `_bulk` request bodies, and the proxy rewrite that fails chosen
//! items of a bulk request.

use std::sync::Arc;

use axum::http::Method;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::fault_proxy::{Rewrite, Rewritten};

/// A client of the search server's REST API, for checking what landed.
#[derive(Clone)]
pub struct Search {
    /// The server's URL.
    pub url: String,
    client: reqwest::Client,
}

impl Search {
    /// A client of the server at `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Makes recent writes visible to search (a no-op on servers that index synchronously).
    pub async fn refresh(&self, index: &str) {
        self.call(reqwest::Method::POST, &format!("/{index}/_refresh"), None)
            .await;
    }

    /// `_count` of an index (0 if it does not exist).
    pub async fn count(&self, index: &str) -> u64 {
        self.refresh(index).await;
        let (status, v) = self
            .call(reqwest::Method::GET, &format!("/{index}/_count"), None)
            .await;
        if status == 404 {
            return 0;
        }
        assert_eq!(status, 200, "{v}");
        v["count"].as_u64().unwrap()
    }

    /// A document's `_source`, if it exists.
    pub async fn get(&self, index: &str, id: &str) -> Option<Value> {
        let (status, v) = self
            .call(reqwest::Method::GET, &format!("/{index}/_doc/{id}"), None)
            .await;
        (status == 200 && v["found"] == true).then(|| v["_source"].clone())
    }

    /// Every document of an index (up to 10,000): (id, source).
    pub async fn all(&self, index: &str) -> Vec<(String, Value)> {
        self.refresh(index).await;
        let (status, v) = self
            .call(
                reqwest::Method::POST,
                &format!("/{index}/_search"),
                Some(json!({"size": 10000, "query": {"match_all": {}}})),
            )
            .await;
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "{v}");
        v["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["_id"].as_str().unwrap().to_owned(), h["_source"].clone()))
            .collect()
    }

    /// Creates an index with `mappings`.
    pub async fn create_index(&self, index: &str, mappings: Value) {
        let (status, v) = self
            .call(
                reqwest::Method::PUT,
                &format!("/{index}"),
                Some(json!({ "mappings": mappings })),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }

    /// Deletes indices matching `pattern` (ignoring absent ones).
    pub async fn delete_index(&self, pattern: &str) {
        self.call(reqwest::Method::DELETE, &format!("/{pattern}"), None)
            .await;
    }

    /// Names of the indices starting with `prefix`.
    pub async fn indices(&self, prefix: &str) -> Vec<String> {
        let (_, v) = self
            .call(reqwest::Method::GET, "/_cat/indices?format=json", None)
            .await;
        let mut names: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["index"].as_str())
                    .filter(|n| n.starts_with(prefix))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// One operation of a `_bulk` request body.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkOp {
    /// `index`, `create`, `update` or `delete`.
    pub action: String,
    /// The action's metadata (`_index`, `_id`, ...).
    pub meta: Value,
    /// The source line (absent for `delete`).
    pub source: Option<Value>,
    /// The operation's lines as sent.
    pub lines: Bytes,
}

impl BulkOp {
    /// The `_index`.
    pub fn index(&self) -> &str {
        self.meta["_index"].as_str().unwrap_or_default()
    }

    /// The `_id`, if given.
    pub fn id(&self) -> Option<&str> {
        self.meta["_id"].as_str()
    }

    /// The document: the source, or the `doc` of an update.
    pub fn doc(&self) -> Option<&Value> {
        let s = self.source.as_ref()?;
        if self.action == "update" {
            s.get("doc")
        } else {
            Some(s)
        }
    }
}

/// Reads the operations of a `_bulk` request body (NDJSON).
pub fn bulk_ops(body: &[u8]) -> Vec<BulkOp> {
    let mut ops = Vec::new();
    let mut lines = body
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    while let Some(first) = lines.next() {
        let head: Value = serde_json::from_slice(first).unwrap();
        let (action, meta) = head.as_object().unwrap().iter().next().unwrap();
        let mut raw = first.to_vec();
        let source = if action == "delete" {
            None
        } else {
            let line = lines.next().unwrap();
            raw.extend_from_slice(line);
            Some(serde_json::from_slice(line).unwrap())
        };
        ops.push(BulkOp {
            action: action.clone(),
            meta: meta.clone(),
            source,
            lines: Bytes::from(raw),
        });
    }
    ops
}

/// The `_bulk` requests a proxy saw, with their operations.
pub fn bulk_requests(log: &[crate::fault_proxy::Seen]) -> Vec<Vec<BulkOp>> {
    log.iter()
        .filter(|s| {
            s.method == Method::POST && s.path.split('?').next().unwrap().ends_with("/_bulk")
        })
        .map(|s| bulk_ops(&s.body))
        .collect()
}

/// An item failure a proxy injects: the status and the error object the item gets.
#[derive(Clone, Debug)]
pub struct ItemFault {
    /// The item's status (429, 400, 503, ...).
    pub status: u16,
    /// The error's `type`.
    pub error_type: String,
    /// The error's `reason`.
    pub reason: String,
}

impl ItemFault {
    /// A 429 as Elasticsearch gives when its write queue is full.
    pub fn rejected() -> Self {
        Self {
            status: 429,
            error_type: "es_rejected_execution_exception".into(),
            reason: "rejected execution of coordinating operation [injected by the test proxy]"
                .into(),
        }
    }

    /// A 400 mapping error with `reason`.
    pub fn mapping(reason: &str) -> Self {
        Self {
            status: 400,
            error_type: "mapper_parsing_exception".into(),
            reason: reason.into(),
        }
    }
}

/// A proxy [`Rewrite`] failing chosen items of `_bulk` requests, the way a cluster does: `decide` picks
/// the items (it sees each operation; keep state in it to fail an item only once). Picked items are
/// left out of the forwarded body — they are *not* written — and get `fault` in the response, at their
/// place among the target's real answers (`errors` becomes true).
pub fn bulk_item_faults(
    decide: impl Fn(&BulkOp) -> Option<ItemFault> + Send + Sync + 'static,
) -> Rewrite {
    Arc::new(move |method, path, _headers, body, _index| {
        if method != Method::POST || !path.split('?').next().unwrap().ends_with("/_bulk") {
            return None;
        }
        let ops = bulk_ops(body);
        let faults: Vec<Option<ItemFault>> = ops.iter().map(&decide).collect();
        if faults.iter().all(Option::is_none) {
            return None;
        }
        let mut forward = Vec::new();
        for (op, f) in ops.iter().zip(&faults) {
            if f.is_none() {
                forward.extend_from_slice(&op.lines);
            }
        }
        let injected: Vec<Option<Value>> = ops
            .iter()
            .zip(&faults)
            .map(|(op, f)| {
                f.as_ref().map(|f| {
                    json!({ op.action.clone(): {
                        "_index": op.index(), "_id": op.id(), "status": f.status,
                        "error": { "type": f.error_type, "reason": f.reason }
                    }})
                })
            })
            .collect();
        let all_faulted = forward.is_empty();
        Some(Rewritten {
            forward: (!all_faulted).then(|| Bytes::from(forward)),
            respond: Box::new(move |status, body| {
                let mut real: Vec<Value> = if all_faulted {
                    Vec::new()
                } else {
                    if !(200..300).contains(&status) {
                        return (status, body);
                    }
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    v["items"].as_array().cloned().unwrap_or_default()
                };
                real.reverse();
                let items: Vec<Value> = injected
                    .into_iter()
                    .map(|i| i.unwrap_or_else(|| real.pop().unwrap()))
                    .collect();
                let out = json!({"took": 1, "errors": true, "items": items});
                (200, Bytes::from(out.to_string()))
            }),
        })
    })
}
