//! What most emitters need beside the [stage contract](crate::contract), written once: a [`Secret`],
//! bounded options with one phrasing ([`count`], [`bytes()`], [`duration`], [`field_path`]), a
//! count-and-bytes [`chunks`] splitter that keeps batch indices, [`retry_after`] and the usual HTTP
//! [`http_verdict`], one [`Verdict`] type and the fold of verdicts into an [`EmitOutcome`]
//! ([`OutcomeBuilder`], [`send_in_order`]).

use std::fmt;
use std::future::Future;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;

use crate::contract::OptionError;
use crate::emitter::{EmitError, EmitOutcome, FailureKind, ItemFailure};
use crate::item::FieldPath;
use crate::units::{ByteSize, DurationText};

/// A secret string (a password, a token, an API key): redacted in `Debug`, no `Display`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// A count option: `default` when absent, else within `range` ("must be between 1 and 500, got 0").
pub fn count(
    key: &str,
    value: Option<i64>,
    default: usize,
    range: RangeInclusive<usize>,
) -> Result<usize, OptionError> {
    let Some(n) = value else { return Ok(default) };
    match usize::try_from(n) {
        Ok(u) if range.contains(&u) => Ok(u),
        _ => Err(OptionError::at(
            key,
            format!(
                "must be between {} and {}, got {n}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// A size option: `default` when absent, else within `range` ("must be at least 1KiB").
pub fn bytes(
    key: &str,
    value: Option<ByteSize>,
    default: u64,
    range: RangeInclusive<u64>,
) -> Result<usize, OptionError> {
    let b = value.map_or(default, |b| b.0);
    if range.contains(&b) {
        return Ok(usize::try_from(b).unwrap_or(usize::MAX));
    }
    let message = if *range.end() == u64::MAX {
        format!("must be at least {}", ByteSize(*range.start()))
    } else {
        format!(
            "must be between {} and {}",
            ByteSize(*range.start()),
            ByteSize(*range.end())
        )
    };
    Err(OptionError::at(key, message))
}

/// A duration option: `default` when absent, else longer than zero ("must be longer than 0s").
pub fn duration(
    key: &str,
    value: Option<DurationText>,
    default: Duration,
) -> Result<Duration, OptionError> {
    let d = value.map_or(default, |d| d.0);
    if d.is_zero() {
        return Err(OptionError::at(key, "must be longer than 0s"));
    }
    Ok(d)
}

/// A dotted field path option (`event.type`).
pub fn field_path(key: &str, text: &str) -> Result<FieldPath, OptionError> {
    FieldPath::parse(text).ok_or_else(|| {
        OptionError::at(
            key,
            format!("invalid field path {text:?}: segments must not be empty"),
        )
    })
}

/// A `Retry-After` header given in seconds (an HTTP date is ignored: the retry policy's backoff
/// applies).
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Most characters of a response body kept in a reason.
pub const REASON_BODY_CHARS: usize = 200;

/// `HTTP 503` or `HTTP 503: <the start of the body>`, for a reason.
pub fn status_reason(status: u16, body: &str) -> String {
    let body: String = body.trim().chars().take(REASON_BODY_CHARS).collect();
    if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    }
}

/// The usual verdict on an HTTP answer: 2xx delivered; 408, 429 and 5xx retryable (after `wait`, the
/// parsed `Retry-After`); 401, 403 and 404 retryable without a wait (an operator fixes a token, a
/// role or a URL while the pipeline backs off; nothing is dead-lettered for a configuration mistake);
/// any other status permanent.
pub fn http_verdict(status: u16, wait: Option<Duration>, reason: String) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry(reason, wait),
        401 | 403 | 404 => Verdict::Retry(reason, None),
        _ => Verdict::Permanent(reason),
    }
}

/// An error with its sources, `error: cause: cause` (many clients' `Display` omits the cause).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// The verdict on one request or one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Written.
    Delivered,
    /// Not written; may pass later (the reason, and a wait the sink asked for).
    Retry(String, Option<Duration>),
    /// Not written and never will be; dead-lettered with the reason.
    Permanent(String),
}

/// Consecutive items of a batch that go in one request: their batch indices and their parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk<T> {
    /// The items' indices in the batch, ascending.
    pub indices: Vec<usize>,
    /// The items' parts (e.g. rendered bytes), in the same order.
    pub parts: Vec<T>,
    /// The sum of the parts' sizes.
    pub bytes: usize,
}

/// Splits `(index, part)` pairs, in order, into chunks of at most `max_items` parts and `max_bytes`
/// (as `size` counts a part, separators included); a single part larger than `max_bytes` goes alone.
pub fn chunks<T>(
    parts: impl IntoIterator<Item = (usize, T)>,
    size: impl Fn(&T) -> usize,
    max_items: usize,
    max_bytes: usize,
) -> Vec<Chunk<T>> {
    let mut out = Vec::new();
    let mut current = Chunk {
        indices: Vec::new(),
        parts: Vec::new(),
        bytes: 0,
    };
    for (index, part) in parts {
        let n = size(&part);
        let full = current.indices.len() >= max_items
            || (!current.indices.is_empty() && current.bytes + n > max_bytes);
        if full {
            let next = Chunk {
                indices: Vec::new(),
                parts: Vec::new(),
                bytes: 0,
            };
            out.push(std::mem::replace(&mut current, next));
        }
        current.bytes += n;
        current.indices.push(index);
        current.parts.push(part);
    }
    if !current.indices.is_empty() {
        out.push(current);
    }
    out
}

/// Folds per-item or per-request verdicts into an [`EmitOutcome`].
#[derive(Debug, Default)]
pub struct OutcomeBuilder {
    failures: Vec<ItemFailure>,
}

impl OutcomeBuilder {
    /// A builder starting with failures found before anything was sent (items refused while
    /// rendering).
    pub fn new(refused: Vec<ItemFailure>) -> Self {
        Self { failures: refused }
    }

    /// The verdict on item `index`.
    pub fn item(&mut self, index: usize, verdict: &Verdict) {
        let (kind, reason, retry_after) = match verdict {
            Verdict::Delivered => return,
            Verdict::Retry(r, w) => (FailureKind::Retryable, r, *w),
            Verdict::Permanent(r) => (FailureKind::Permanent, r, None),
        };
        self.failures.push(ItemFailure {
            index,
            kind,
            reason: reason.clone(),
            retry_after,
        });
    }

    /// The verdict on one request holding the items `indices`.
    pub fn request(&mut self, indices: &[usize], verdict: &Verdict) {
        for &i in indices {
            self.item(i, verdict);
        }
    }

    /// Whether no failure is recorded yet.
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }

    /// The outcome.
    pub fn finish(self) -> EmitOutcome {
        EmitOutcome::with_failures(self.failures)
    }
}

/// Sends requests one after another (so a receiver sees a shard's items in order) and folds their
/// verdicts; `requests` holds each request's batch indices and `send(k)` sends request `k`. A
/// permanent failure fails that request's items and the rest go on; after a retryable failure
/// nothing later is sent and every later item is reported retryable too (it comes again, in order,
/// on the retry). If the first request is retryable and nothing was refused, the whole batch fails
/// with one retryable [`EmitError`] (carrying the wait asked for).
pub async fn send_in_order<F, Fut>(
    requests: &[&[usize]],
    refused: Vec<ItemFailure>,
    mut send: F,
) -> Result<EmitOutcome, EmitError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Verdict>,
{
    let mut outcome = OutcomeBuilder::new(refused);
    for (k, indices) in requests.iter().enumerate() {
        let verdict = send(k).await;
        if let Verdict::Retry(reason, wait) = &verdict {
            if k == 0 && outcome.is_clean() {
                let error = EmitError::retryable(reason.clone());
                return Err(match wait {
                    Some(w) => error.with_retry_after(*w),
                    None => error,
                });
            }
            for rest in &requests[k..] {
                outcome.request(rest, &verdict);
            }
            break;
        }
        outcome.request(indices, &verdict);
    }
    Ok(outcome.finish())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bounded_options_share_one_phrasing() {
        assert_eq!(count("n", None, 5, 1..=10), Ok(5));
        assert_eq!(count("n", Some(10), 5, 1..=10), Ok(10));
        let e = count("n", Some(0), 5, 1..=10).unwrap_err();
        assert_eq!(e.to_string(), "n: must be between 1 and 10, got 0");
        assert!(count("n", Some(-1), 5, 1..=10).is_err());
        assert_eq!(
            bytes("b", Some(ByteSize(10)), 2048, 1024..=u64::MAX)
                .unwrap_err()
                .message,
            "must be at least 1KiB"
        );
        assert_eq!(bytes("b", None, 2048, 1024..=u64::MAX), Ok(2048));
        assert!(
            duration(
                "t",
                Some(DurationText(Duration::ZERO)),
                Duration::from_secs(1)
            )
            .is_err()
        );
        assert_eq!(field_path("f", "a..b").unwrap_err().key, "f");
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "\"<redacted>\"");
        assert_eq!(retry_after(Some(" 3 ")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2026 07:28:00 GMT")), None);
    }

    #[test]
    fn chunks_keep_indices_and_respect_both_caps() {
        let parts = (0..10).map(|i| (i * 2, vec![0u8; 9]));
        let c = chunks(parts, |p| p.len() + 1, 4, 1 << 20);
        let sizes: Vec<usize> = c.iter().map(|c| c.indices.len()).collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(c[2].indices, [16, 18]);
        let c = chunks((0..10).map(|i| (i, vec![0u8; 9])), |p| p.len() + 1, 100, 25);
        assert!(c.iter().all(|c| c.indices.len() == 2 && c.bytes == 20));
        let c = chunks((0..3).map(|i| (i, vec![0u8; 99])), Vec::len, 100, 10);
        assert_eq!(c.len(), 3, "an oversized part goes alone");
    }

    #[tokio::test]
    async fn in_order_sending_stops_at_the_first_retryable_request() {
        let requests: [&[usize]; 3] = [&[0, 1], &[2], &[3, 4]];
        let verdicts = [
            Verdict::Delivered,
            Verdict::Permanent("bad".into()),
            Verdict::Retry("slow".into(), None),
        ];
        let mut k = 0;
        let outcome = send_in_order(&requests, Vec::new(), |_| {
            k += 1;
            let v = verdicts[k - 1].clone();
            async move { v }
        })
        .await
        .unwrap();
        let failed: Vec<(usize, FailureKind)> =
            outcome.failures.iter().map(|f| (f.index, f.kind)).collect();
        assert_eq!(
            failed,
            [
                (2, FailureKind::Permanent),
                (3, FailureKind::Retryable),
                (4, FailureKind::Retryable)
            ]
        );
        let wait = Some(Duration::from_secs(2));
        let e = send_in_order(&requests, Vec::new(), |_| async move {
            Verdict::Retry("slow".into(), wait)
        })
        .await
        .unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.retry_after, wait);
    }
}
