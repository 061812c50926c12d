//! The [`Emitter`] implementation: a batch becomes one or more POSTs, sent in order.

use kinesis_connectors_core::{
    Batch, EmitError, EmitOutcome, Emitter, Item, ItemFailure, async_trait,
};
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::config::WebhookSettings;
use crate::request::{self, Request};
use crate::retry::{self, Verdict};

/// POSTs batches of items as JSON to a URL; see the crate documentation.
#[derive(Debug)]
pub struct WebhookEmitter {
    client: reqwest::Client,
    settings: WebhookSettings,
}

impl WebhookEmitter {
    /// An emitter for validated settings (builds the HTTP client; sends nothing).
    pub fn new(settings: WebhookSettings) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .default_headers(settings.headers.clone())
            .build()?;
        Ok(Self { client, settings })
    }

    /// Sends one request and classifies the answer.
    async fn send(&self, request: &Request) -> Verdict {
        let mut post = self
            .client
            .post(self.settings.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(request.body.clone());
        // The id depends only on the records, so retries and redeliveries carry the same key.
        if let Ok(key) = HeaderValue::from_str(&request.batch_id) {
            post = post.header("idempotency-key", key);
        }
        match post.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = if (200..300).contains(&status) {
                    String::new()
                } else {
                    response.text().await.unwrap_or_default()
                };
                retry::classify_status(status, retry_after.as_deref(), &body)
            }
            Err(e) => retry::classify_transport(&e),
        }
    }
}

#[async_trait]
impl Emitter<Item> for WebhookEmitter {
    /// Sends the batch's requests one after another, so the receiver sees each shard's items in order.
    /// After a retryable failure nothing later in the batch is sent (it is reported retryable too, and
    /// comes again in order on the retry); a permanent failure dead-letters that request's items and the
    /// rest go on.
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        let plan = request::plan(
            batch,
            self.settings.format,
            self.settings.max_items_per_request,
            self.settings.max_request_bytes,
        );
        let mut failures = plan.refused;
        for (k, request) in plan.requests.iter().enumerate() {
            match self.send(request).await {
                Verdict::Delivered => {}
                Verdict::Permanent(reason) => failures.extend(
                    request
                        .indices
                        .iter()
                        .map(|&i| ItemFailure::permanent(i, reason.clone())),
                ),
                Verdict::Retry(reason, wait) => {
                    if k == 0 && failures.is_empty() {
                        // Nothing of the batch was taken: the whole batch is retried.
                        let error = EmitError::retryable(reason);
                        return Err(match wait {
                            Some(w) => error.with_retry_after(w),
                            None => error,
                        });
                    }
                    for r in &plan.requests[k..] {
                        failures.extend(r.indices.iter().map(|&i| ItemFailure {
                            retry_after: wait,
                            ..ItemFailure::retryable(i, reason.clone())
                        }));
                    }
                    break;
                }
            }
        }
        Ok(EmitOutcome::with_failures(failures))
    }

    /// A `HEAD` request to the URL: any answer but 401, 403 and 404 means the receiver is there (many
    /// webhook receivers answer 405 to anything but `POST`).
    async fn check(&self) -> Result<(), EmitError> {
        match self.client.head(self.settings.url.clone()).send().await {
            Ok(r) if matches!(r.status().as_u16(), 401 | 403 | 404) => Err(EmitError::permanent(
                format!("{} answered HTTP {}", self.settings.url, r.status()),
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(EmitError::retryable(format!(
                "{} cannot be reached: {e}",
                self.settings.url
            ))),
        }
    }
}
