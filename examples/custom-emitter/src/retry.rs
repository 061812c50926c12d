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

use std::time::Duration;

/// What became of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every item of the request was taken.
    Delivered,
    /// Not taken; may pass later (with the wait the receiver asked for, if any).
    Retry(String, Option<Duration>),
    /// Not taken; never will be.
    Permanent(String),
}

/// Most of the receiver's answer quoted in a failure reason.
const REASON_BODY_CHARS: usize = 200;

/// The verdict on an HTTP answer: its status, `Retry-After` header and body.
pub fn classify_status(status: u16, retry_after: Option<&str>, body: &str) -> Verdict {
    if (200..300).contains(&status) {
        return Verdict::Delivered;
    }
    let body: String = body.trim().chars().take(REASON_BODY_CHARS).collect();
    let reason = if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    };
    match status {
        408 | 429 | 500..=599 => Verdict::Retry(reason, retry_after.and_then(parse_retry_after)),
        401 | 403 | 404 => Verdict::Retry(reason, None),
        413 => Verdict::Permanent(format!("{reason} (lower max_request_bytes)")),
        _ => Verdict::Permanent(reason),
    }
}

/// The verdict on a request that got no answer (timeout, connection error).
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
    // reqwest's Display names the URL but not the cause: add the sources.
    let mut reason = format!("{what}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        reason.push_str(&format!(": {s}"));
        source = s.source();
    }
    Verdict::Retry(reason, None)
}

/// `Retry-After` in seconds (the HTTP-date form is not used by webhook receivers in practice and is
/// ignored: the retry policy's own backoff applies).
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
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
