//! The [`Emitter`] implementation: a batch becomes one or more POSTs, sent in order.

use std::sync::Arc;

use kinesis_connectors_core::contract::{BuildError, EmitterConfig, StageContext};
use kinesis_connectors_core::kit::{Verdict, send_in_order};
use kinesis_connectors_core::{Batch, EmitError, EmitOutcome, Emitter, Item, async_trait};
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::config::WebhookSettings;
use crate::request::{self, Request};
use crate::retry;

/// POSTs batches of items as JSON to a URL; see the crate documentation.
#[derive(Debug)]
pub struct WebhookEmitter {
    client: reqwest::Client,
    settings: WebhookSettings,
}

impl WebhookEmitter {
    /// An emitter for checked settings (builds the HTTP client; sends nothing).
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
        let response = match post.send().await {
            Ok(response) => response,
            Err(e) => return retry::classify_transport(&e),
        };
        let status = response.status().as_u16();
        let wait = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok());
        let wait = wait.map(str::to_owned);
        let body = match status {
            200..=299 => String::new(),
            _ => response.text().await.unwrap_or_default(),
        };
        retry::classify_status(status, wait.as_deref(), &body)
    }
}

#[async_trait]
impl Emitter<Item> for WebhookEmitter {
    /// Sends the batch's requests one after another, so the receiver sees each shard's items in order
    /// ([`send_in_order`]: after a retryable failure nothing later is sent; a permanent failure
    /// dead-letters that request's items and the rest go on).
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        let s = &self.settings;
        let plan = request::plan(
            batch,
            s.format,
            s.max_items_per_request,
            s.max_request_bytes,
        );
        let requests = &plan.requests;
        let indices: Vec<&[usize]> = requests.iter().map(|r| r.indices.as_slice()).collect();
        send_in_order(&indices, plan.refused, |k| self.send(&requests[k])).await
    }

    /// A `HEAD` request to the URL: any answer but 401, 403 and 404 means the receiver is there (many
    /// webhook receivers answer 405 to anything but `POST`).
    async fn check(&self) -> Result<(), EmitError> {
        let url = &self.settings.url;
        match self.client.head(url.clone()).send().await {
            Ok(r) if matches!(r.status().as_u16(), 401 | 403 | 404) => Err(EmitError::permanent(
                format!("{url} answered HTTP {}", r.status()),
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(EmitError::retryable(format!(
                "{url} cannot be reached: {e}"
            ))),
        }
    }
}

impl EmitterConfig for WebhookSettings {
    async fn build(self, _: StageContext) -> Result<Arc<dyn Emitter<Item>>, BuildError> {
        Ok(Arc::new(WebhookEmitter::new(self)?))
    }
}
