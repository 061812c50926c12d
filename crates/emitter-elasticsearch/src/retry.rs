//! What is retryable: the verdicts on a bulk item's status and on a whole bulk request.
//!
//! Items (the cluster answered the request, item by item):
//!
//! | status | verdict | why |
//! |---|---|---|
//! | 2xx | delivered | |
//! | 409 on `create` | delivered | the document exists: a redelivery of a record already written |
//! | 404 on `delete` | delivered | the document is already gone |
//! | 429, 5xx, 408, 409 (other actions), none | retryable | a full queue, a node failing, a write race: may pass later |
//! | other 4xx (400 mapping / parse errors, invalid index names, …) | permanent | this document will never be accepted; the dead letter keeps the server's reason |
//!
//! Whole requests (no per-item answer):
//!
//! | failure | verdict | why |
//! |---|---|---|
//! | connection refused / reset, timeout | retryable | the cluster is down or unreachable |
//! | 429, 5xx, 408 | retryable (honouring `Retry-After`) | overloaded |
//! | 401, 403, 404 | retryable | the data is fine; the credentials, role, URL or an index block (read-only on full disks) must be fixed by an operator; the runner keeps retrying with backoff, logging each attempt, and backpressure holds the stream meanwhile — nothing is dead-lettered because of a configuration mistake |
//! | 413 | split in two and sent again (within the same call); a single document too large is permanent | `max_bulk_bytes` is above the cluster's `http.max_content_length` |
//! | other 4xx | permanent for every item of the request | the cluster refused the request itself |
//!
//! The emitter never loops on a retryable failure itself: it reports it, and the pipeline runner
//! retries just those items with its one policy (exponential backoff, cap, full jitter).

use std::time::Duration;

use serde_json::Value;

use crate::config::Action;

/// What becomes of one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemVerdict {
    /// Written (or already in the state asked for).
    Delivered,
    /// Not written; may pass on a later try.
    Retry(String),
    /// Not written; never will be.
    Permanent(String),
}

/// The verdict on one item of a bulk response.
pub fn item_verdict(action: Action, status: u16, error: Option<&Value>) -> ItemVerdict {
    match status {
        200..=299 => ItemVerdict::Delivered,
        409 if action == Action::Create => ItemVerdict::Delivered,
        404 if action == Action::Delete => ItemVerdict::Delivered,
        0 | 408 | 409 | 429 | 500..=599 => ItemVerdict::Retry(reason(status, error)),
        _ => ItemVerdict::Permanent(reason(status, error)),
    }
}

/// What becomes of a whole request that got no per-item answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestVerdict {
    /// Retry every item of the request (after `retry_after` at least, when the server said).
    Retry {
        /// What the server or the transport said.
        reason: String,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The body is larger than the cluster accepts: send it again in smaller pieces.
    TooLarge(String),
    /// Every item of the request fails for good.
    Permanent(String),
}

/// The verdict on a bulk request answered with a non-2xx `status`; `body` is the response body.
pub fn request_verdict(status: u16, body: &[u8], retry_after: Option<Duration>) -> RequestVerdict {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let reason = match error {
        Some(e) => reason(status, Some(e)),
        None => {
            let text = crate::request::preview(body);
            if text.trim().is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {}", text.trim())
            }
        }
    };
    match status {
        413 => RequestVerdict::TooLarge(reason),
        401 | 403 | 404 | 408 | 429 | 500..=599 => RequestVerdict::Retry {
            reason,
            retry_after,
        },
        _ => RequestVerdict::Permanent(reason),
    }
}

/// `STATUS TYPE: REASON; caused by TYPE: REASON` from an Elasticsearch error object (or string).
pub fn reason(status: u16, error: Option<&Value>) -> String {
    let mut out = format!("HTTP {status}");
    match error {
        None => out.push_str(" with no error details"),
        Some(Value::String(s)) => {
            out.push(' ');
            out.push_str(s);
        }
        Some(e) => {
            describe(&mut out, e);
            if let Some(cause) = e.get("caused_by") {
                out.push_str("; caused by");
                describe(&mut out, cause);
            }
        }
    }
    out
}

fn describe(out: &mut String, e: &Value) {
    if let Some(t) = e.get("type").and_then(Value::as_str) {
        out.push(' ');
        out.push_str(t);
        out.push(':');
    }
    match e.get("reason").and_then(Value::as_str) {
        Some(r) => {
            out.push(' ');
            out.push_str(r);
        }
        None if e.get("type").is_none() => {
            out.push(' ');
            out.push_str(&e.to_string());
        }
        None => {}
    }
}

/// Parses a `Retry-After` header given in seconds.
pub(crate) fn retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn item_statuses() {
        let e = json!({"type": "mapper_parsing_exception", "reason": "failed to parse field [n]",
                        "caused_by": {"type": "illegal_argument_exception", "reason": "For input string: \"x\""}});
        assert_eq!(
            item_verdict(Action::Index, 201, None),
            ItemVerdict::Delivered
        );
        assert_eq!(
            item_verdict(Action::Create, 409, None),
            ItemVerdict::Delivered
        );
        assert_eq!(
            item_verdict(Action::Delete, 404, None),
            ItemVerdict::Delivered
        );
        assert!(matches!(
            item_verdict(Action::Index, 409, None),
            ItemVerdict::Retry(_)
        ));
        assert!(matches!(
            item_verdict(Action::Update, 404, None),
            ItemVerdict::Permanent(_)
        ));
        for s in [0, 408, 429, 500, 503] {
            assert!(
                matches!(item_verdict(Action::Index, s, None), ItemVerdict::Retry(_)),
                "{s}"
            );
        }
        assert_eq!(
            item_verdict(Action::Index, 400, Some(&e)),
            ItemVerdict::Permanent(
                "HTTP 400 mapper_parsing_exception: failed to parse field [n]; caused by illegal_argument_exception: For input string: \"x\"".into()
            )
        );
        let t = json!({"type": "es_rejected_execution_exception", "reason": "rejected execution"});
        assert_eq!(
            item_verdict(Action::Index, 429, Some(&t)),
            ItemVerdict::Retry(
                "HTTP 429 es_rejected_execution_exception: rejected execution".into()
            )
        );
    }

    #[test]
    fn request_statuses() {
        let body = br#"{"error":{"type":"cluster_block_exception","reason":"index read-only"},"status":403}"#;
        assert_eq!(
            request_verdict(403, body, None),
            RequestVerdict::Retry {
                reason: "HTTP 403 cluster_block_exception: index read-only".into(),
                retry_after: None
            }
        );
        assert_eq!(
            request_verdict(503, b"", Some(Duration::from_secs(2))),
            RequestVerdict::Retry {
                reason: "HTTP 503".into(),
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert!(
            matches!(request_verdict(413, b"too big", None), RequestVerdict::TooLarge(r) if r == "HTTP 413: too big")
        );
        assert!(matches!(
            request_verdict(400, br#"{"error":{"type":"parse_exception","reason":"request body is required"}}"#, None),
            RequestVerdict::Permanent(r) if r.contains("request body is required")
        ));
        assert_eq!(retry_after(Some(" 3 ")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2026 07:28:00 GMT")), None);
    }
}
