//! The [`Emitter`] implementation: plans a batch into bulk requests, sends them concurrently (bounded
//! by one semaphore per emitter), and maps every item's answer back to its index in the batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use elasticsearch::http::transport::{SingleNodeConnectionPool, Transport, TransportBuilder};
use elasticsearch::http::{Method, Url};
use futures::future::join_all;
use kinesis_connectors_core::{
    Batch, EmitError, EmitOutcome, Emitter, Item, ItemFailure, async_trait,
};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::auth::SigV4;
use crate::config::{Auth, ElasticsearchOptions};
use crate::error::ElasticsearchError;
use crate::metrics::{ElasticsearchMetrics, MetricsSnapshot};
use crate::request::{self, Chunk, FILTER_PATH};
use crate::retry::{self, ItemVerdict, RequestVerdict};

/// Writes batches to Elasticsearch or OpenSearch with the bulk API; see the crate documentation.
pub struct ElasticsearchEmitter {
    options: ElasticsearchOptions,
    /// The cluster's URL, ending with `/` (the transport joins request paths to it).
    base: Url,
    transport: Transport,
    signer: Option<SigV4>,
    permits: Semaphore,
    metrics: Arc<ElasticsearchMetrics>,
}

impl std::fmt::Debug for ElasticsearchEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchEmitter")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A whole request's failure, for every item it carried.
struct RequestFailure {
    items: Vec<usize>,
    reason: String,
    retry_after: Option<Duration>,
    permanent: bool,
}

/// What one planned request came to (several requests if a 413 split it).
#[derive(Default)]
struct Sent {
    items: Vec<(usize, ItemVerdict)>,
    failures: Vec<RequestFailure>,
}

#[derive(Serialize)]
struct Query<'a> {
    filter_path: &'a str,
}

/// A response: status, `Retry-After`, body.
type Answer = (u16, Option<Duration>, Bytes);

impl ElasticsearchEmitter {
    /// Builds the client (reading the CA file, loading AWS credentials for SigV4). `default_region` is
    /// the SigV4 region when the options name none (the pipeline's region). Nothing is sent yet:
    /// [`Emitter::check`] checks the cluster.
    pub async fn connect(
        options: ElasticsearchOptions,
        default_region: &str,
    ) -> Result<Self, ElasticsearchError> {
        options.validate()?;
        let mut base = options.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(base.clone()))
            .timeout(options.request_timeout);
        let mut signer = None;
        match &options.auth {
            Auth::None => {}
            Auth::Basic { username, password } => {
                builder = builder.auth(Credentials::Basic(
                    username.clone(),
                    password.expose().to_owned(),
                ));
            }
            Auth::ApiKey { id: Some(id), key } => {
                builder = builder.auth(Credentials::ApiKey(id.clone(), key.expose().to_owned()));
            }
            Auth::ApiKey { id: None, key } => {
                builder = builder.auth(Credentials::EncodedApiKey(key.expose().to_owned()));
            }
            Auth::AwsSigV4 { region, service } => {
                let region = region.as_deref().unwrap_or(default_region);
                signer = Some(SigV4::from_env(region, service).await?);
            }
        }
        if let Some(path) = &options.tls_ca_file {
            let ca_error = |message: String| ElasticsearchError::CaFile {
                path: path.display().to_string(),
                message,
            };
            let pem = tokio::fs::read(path)
                .await
                .map_err(|e| ca_error(e.to_string()))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
            builder = builder.cert_validation(CertificateValidation::Full(cert));
        }
        let transport = builder
            .build()
            .map_err(|e| ElasticsearchError::Transport(e.to_string()))?;
        Ok(Self {
            permits: Semaphore::new(options.max_concurrent_requests),
            options,
            base,
            transport,
            signer,
            metrics: Arc::new(ElasticsearchMetrics::default()),
        })
    }

    /// The emitter's options.
    pub fn options(&self) -> &ElasticsearchOptions {
        &self.options
    }

    /// The emitter's counters so far.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Sends one request through the transport, signing it first when SigV4 is configured. An `Err`
    /// means no answer (unreachable, timeout): the transport's reason.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: Option<&Query<'_>>,
        body: Option<Bytes>,
    ) -> Result<Answer, String> {
        let mut headers = HeaderMap::new();
        if body.is_some() {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
        }
        if let Some(signer) = &self.signer {
            let mut url = self
                .base
                .join(path.trim_start_matches('/'))
                .map_err(|e| format!("invalid request path {path:?}: {e}"))?;
            if let Some(q) = query {
                url.query_pairs_mut()
                    .append_pair("filter_path", q.filter_path);
            }
            let verb = match method {
                Method::Get => "GET",
                Method::Put => "PUT",
                Method::Post => "POST",
                Method::Delete => "DELETE",
                Method::Head => "HEAD",
            };
            let signed = signer
                .headers(verb, &url, body.as_deref().unwrap_or_default())
                .await?;
            headers.extend(signed);
        }
        let response = self
            .transport
            .send(method, path, headers, query, body, None)
            .await
            .map_err(|e| kinesis_connectors_aws::error_chain(&e))?;
        let status = response.status_code().as_u16();
        let retry_after = retry::retry_after(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
        );
        let body = response.bytes().await.map_err(|e| {
            format!(
                "reading the response: {}",
                kinesis_connectors_aws::error_chain(&e)
            )
        })?;
        Ok((status, retry_after, body))
    }

    /// Sends one planned request (splitting it on 413) and judges every item.
    async fn send_chunk(&self, chunk: Chunk) -> Sent {
        let mut sent = Sent::default();
        let mut todo = vec![chunk];
        while let Some(chunk) = todo.pop() {
            let answer = {
                let _permit = self.permits.acquire().await;
                let started = Instant::now();
                ElasticsearchMetrics::add(&self.metrics.bulk_requests, 1);
                ElasticsearchMetrics::add(&self.metrics.bulk_bytes, chunk.body.len() as u64);
                let answer = self
                    .send(
                        Method::Post,
                        "/_bulk",
                        Some(&Query {
                            filter_path: FILTER_PATH,
                        }),
                        Some(chunk.body.clone()),
                    )
                    .await;
                tracing::debug!(
                    items = chunk.len(),
                    bytes = chunk.body.len(),
                    status = answer.as_ref().map_or(0, |a| a.0),
                    ms = started.elapsed().as_millis() as u64,
                    "bulk request"
                );
                answer
            };
            let (status, retry_after, body) = match answer {
                Ok(a) => a,
                Err(reason) => {
                    ElasticsearchMetrics::add(&self.metrics.request_failures, 1);
                    sent.failures.push(RequestFailure {
                        items: chunk.items,
                        reason: format!("bulk request failed: {reason}"),
                        retry_after: None,
                        permanent: false,
                    });
                    continue;
                }
            };
            if (200..300).contains(&status) {
                match request::parse_response(&body, chunk.len()) {
                    Ok(results) => {
                        for ((index, action), r) in
                            chunk.items.iter().zip(&chunk.actions).zip(results)
                        {
                            let verdict = retry::item_verdict(*action, r.status, r.error.as_ref());
                            sent.items.push((*index, verdict));
                        }
                    }
                    Err(reason) => {
                        ElasticsearchMetrics::add(&self.metrics.request_failures, 1);
                        sent.failures.push(RequestFailure {
                            items: chunk.items,
                            reason,
                            retry_after: None,
                            permanent: false,
                        });
                    }
                }
                continue;
            }
            ElasticsearchMetrics::add(&self.metrics.request_failures, 1);
            let failure = |reason: String, retry_after, permanent| RequestFailure {
                items: chunk.items.clone(),
                reason: format!("bulk request rejected: {reason}"),
                retry_after,
                permanent,
            };
            match retry::request_verdict(status, &body, retry_after) {
                RequestVerdict::TooLarge(reason) if chunk.len() > 1 => {
                    ElasticsearchMetrics::add(&self.metrics.splits, 1);
                    tracing::warn!(
                        items = chunk.len(), bytes = chunk.body.len(), reason = %reason,
                        "bulk request too large for the cluster; splitting it (lower max_bulk_bytes)"
                    );
                    let (first, second) = chunk.split();
                    todo.push(second);
                    todo.push(first);
                }
                RequestVerdict::TooLarge(reason) => sent.failures.push(failure(
                    format!("{reason} (one document of {} bytes)", chunk.body.len()),
                    None,
                    true,
                )),
                RequestVerdict::Retry {
                    reason,
                    retry_after,
                } => sent.failures.push(failure(reason, retry_after, false)),
                RequestVerdict::Permanent(reason) => {
                    sent.failures.push(failure(reason, None, true));
                }
            }
        }
        sent
    }
}

#[async_trait]
impl Emitter<Item> for ElasticsearchEmitter {
    async fn emit(&self, batch: &Batch<Item>) -> Result<EmitOutcome, EmitError> {
        let plan = request::plan(batch, &self.options);
        let requests = plan.chunks.len();
        // Writes of one document must apply in batch order: then requests go one after the other.
        let in_order = !plan.same_document.is_empty();
        let sent: Vec<Sent> = if in_order || requests <= 1 {
            let mut all = Vec::with_capacity(requests);
            for chunk in plan.chunks {
                all.push(self.send_chunk(chunk).await);
            }
            all
        } else {
            join_all(plan.chunks.into_iter().map(|c| self.send_chunk(c))).await
        };

        // Every request failed as a whole, retryably, and nothing was rejected: the cluster is down
        // or overloaded. One batch-level error says so plainly to the runner's log.
        let whole_failures = sent.iter().all(|s| s.items.is_empty())
            && sent.iter().flat_map(|s| &s.failures).all(|f| !f.permanent);
        if requests > 0 && whole_failures && plan.rejected.is_empty() {
            let mut reasons = sent.iter().flat_map(|s| &s.failures);
            let first = reasons.next();
            let reason = first.map(|f| f.reason.clone()).unwrap_or_default();
            let wait = sent
                .iter()
                .flat_map(|s| &s.failures)
                .filter_map(|f| f.retry_after)
                .max();
            ElasticsearchMetrics::add(&self.metrics.items_retryable, batch.len() as u64);
            let mut e = EmitError::retryable(reason);
            e.retry_after = wait;
            return Err(e);
        }

        let mut verdicts: Vec<Option<(ItemVerdict, Option<Duration>)>> = vec![None; batch.len()];
        for f in plan.rejected {
            verdicts[f.index] = Some((ItemVerdict::Permanent(f.reason), None));
        }
        for s in sent {
            for (index, v) in s.items {
                verdicts[index] = Some((v, None));
            }
            for f in s.failures {
                for index in f.items {
                    let v = if f.permanent {
                        ItemVerdict::Permanent(f.reason.clone())
                    } else {
                        ItemVerdict::Retry(f.reason.clone())
                    };
                    verdicts[index] = Some((v, f.retry_after));
                }
            }
        }
        // A later write of a document whose earlier write failed retryably is re-sent after it, so
        // the retried earlier write cannot overwrite the later one.
        for group in &plan.same_document {
            let Some(first_failed) = group
                .iter()
                .position(|&i| matches!(verdicts[i], Some((ItemVerdict::Retry(_), _))))
            else {
                continue;
            };
            for &i in &group[first_failed + 1..] {
                if matches!(verdicts[i], Some((ItemVerdict::Delivered, _))) {
                    verdicts[i] = Some((
                        ItemVerdict::Retry(
                            "re-sent after an earlier write of the same document that failed"
                                .into(),
                        ),
                        None,
                    ));
                }
            }
        }

        let mut failures = Vec::new();
        let (mut ok, mut retryable, mut permanent) = (0u64, 0u64, 0u64);
        for (index, v) in verdicts.into_iter().enumerate() {
            match v {
                Some((ItemVerdict::Delivered, _)) => ok += 1,
                Some((ItemVerdict::Retry(reason), wait)) => {
                    retryable += 1;
                    let mut f = ItemFailure::retryable(index, reason);
                    f.retry_after = wait;
                    failures.push(f);
                }
                Some((ItemVerdict::Permanent(reason), _)) => {
                    permanent += 1;
                    failures.push(ItemFailure::permanent(index, reason));
                }
                None => {
                    // Cannot happen: every item is planned into a request or rejected.
                    retryable += 1;
                    failures.push(ItemFailure::retryable(index, "item was not sent"));
                }
            }
        }
        ElasticsearchMetrics::add(&self.metrics.items_ok, ok);
        ElasticsearchMetrics::add(&self.metrics.items_retryable, retryable);
        ElasticsearchMetrics::add(&self.metrics.items_permanent, permanent);
        tracing::debug!(
            items = batch.len(),
            requests,
            ok,
            retryable,
            permanent,
            attempt = batch.context.attempt,
            "batch sent to the bulk API"
        );
        Ok(EmitOutcome::with_failures(failures))
    }

    /// The cluster answers `GET /` with 2xx: reachable, and the credentials are accepted.
    async fn check(&self) -> Result<(), EmitError> {
        let (status, _, body) = self
            .send(Method::Get, "/", None, None)
            .await
            .map_err(|e| EmitError::retryable(format!("cannot reach {}: {e}", self.options.url)))?;
        if (200..300).contains(&status) {
            let info: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            tracing::info!(
                url = %self.options.url,
                distribution = info["version"]["distribution"].as_str().unwrap_or("elasticsearch"),
                version = info["version"]["number"].as_str().unwrap_or("unknown"),
                auth = self.options.auth.kind(),
                "search cluster reachable"
            );
            return Ok(());
        }
        let reason = retry::reason(
            status,
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .as_ref()
                .and_then(|v| v.get("error")),
        );
        Err(EmitError::permanent(format!(
            "{} answered GET /: {reason}",
            self.options.url
        )))
    }

    async fn close(&self) -> Result<(), EmitError> {
        let m = self.metrics.snapshot();
        tracing::info!(
            requests = m.bulk_requests,
            bytes = m.bulk_bytes,
            failed_requests = m.request_failures,
            items_ok = m.items_ok,
            items_retryable = m.items_retryable,
            items_permanent = m.items_permanent,
            splits = m.splits,
            "elasticsearch emitter closed"
        );
        Ok(())
    }
}
