//! What is retryable: the verdict on one POST.
//!
//! | answer | verdict | why |
//! |---|---|---|
//! | 2xx | delivered | |
//! | 429, 5xx, 408 | retryable, honouring `Retry-After` (seconds) | the receiver is overloaded or failing |
//! | 401, 403, 404 | retryable | the data is fine; a token, a role or the URL must be fixed by an operator, and meanwhile the pipeline retries with backoff (each attempt logged) and stops fetching; nothing is dead-lettered for a configuration mistake |
//! | timeout, connection refused or reset | retryable | the receiver is down or unreachable |
//! | 413 | permanent | the request is too large for the receiver: lower `max_request_bytes` |
//! | any other 3xx or 4xx | permanent | the receiver refused these items; they go to the dead letter with its answer |
//!
//! The emitter never retries by itself: it reports the verdict and the pipeline runner retries just the
//! failed items with its one policy (exponential backoff, capped, full jitter, at least `Retry-After`).

pub use kinesis_connectors_core::kit::Verdict;
use kinesis_connectors_core::kit::{error_chain, http_verdict, retry_after, status_reason};

/// The verdict on an HTTP answer (`body` is read only for failures, for the reason).
pub fn classify_status(status: u16, retry_after_header: Option<&str>, body: &str) -> Verdict {
    let reason = status_reason(status, body);
    match status {
        413 => Verdict::Permanent(format!("{reason} (lower max_request_bytes)")),
        _ => http_verdict(status, retry_after(retry_after_header), reason),
    }
}

/// The verdict on a request that got no answer.
pub fn classify_transport(error: &reqwest::Error) -> Verdict {
    if error.is_builder() {
        return Verdict::Permanent(format!("request not sent: {error}"));
    }
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    Verdict::Retry(format!("{what}: {}", error_chain(error)), None)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify_status(200, None, ""), Verdict::Delivered);
        assert_eq!(classify_status(204, None, "x"), Verdict::Delivered);
        for s in [408, 429, 500, 502, 503, 504, 401, 403, 404] {
            assert!(
                matches!(classify_status(s, None, ""), Verdict::Retry(..)),
                "{s}"
            );
        }
        for s in [400, 405, 409, 410, 413, 422, 301] {
            assert!(
                matches!(classify_status(s, None, ""), Verdict::Permanent(_)),
                "{s}"
            );
        }
    }

    #[test]
    fn retry_after_and_the_receivers_answer_are_kept() {
        assert_eq!(
            classify_status(429, Some("3"), "slow down"),
            Verdict::Retry("HTTP 429: slow down".into(), Some(Duration::from_secs(3)))
        );
        assert_eq!(
            classify_status(503, Some("Wed, 21 Oct 2026 07:28:00 GMT"), ""),
            Verdict::Retry("HTTP 503".into(), None)
        );
        let long = "e".repeat(1000);
        let Verdict::Permanent(reason) = classify_status(400, None, &long) else {
            panic!("400 is permanent")
        };
        assert!(reason.len() < 220, "{reason}");
    }
}
