//! A small fault-injecting HTTP proxy: a documented test stand-in for what the local servers cannot do
//! (throttling, 429s, 5xx). It forwards every request to a target, except those a rule answers itself,
//! and logs what it saw. Clients reach it only through their normal endpoint override.
//!
//! Two hooks, both optional:
//! * a [`Rule`] answers a whole request itself (a canned [`Fault`]: 429, 503, an AWS error, ...);
//! * a [`Rewrite`] changes what is forwarded and what comes back, for faults inside one request (e.g.
//!   failing chosen items of an Elasticsearch `_bulk` request: they are left out of the forwarded body
//!   and given an error in the response; see [`crate::opensearch::bulk_item_faults`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// When its answer was ready.
    pub done: Instant,
    /// The method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// The `X-Amz-Target` header (the API operation of AWS JSON protocols), if any.
    pub target: Option<String>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The request body, as the client sent it.
    pub body: Bytes,
    /// The status returned.
    pub status: u16,
    /// The response body returned to the client.
    pub response: Bytes,
    /// Whether the proxy answered itself (a fault) instead of forwarding.
    pub injected: bool,
    /// Whether a [`Rewrite`] changed the request or its response.
    pub rewritten: bool,
}

/// A canned answer.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl Fault {
    /// An AWS JSON-protocol error (`{"__type": CODE, "message": ...}`), status 400.
    pub fn aws_json(code: &str, message: &str) -> Self {
        Self {
            status: 400,
            content_type: "application/x-amz-json-1.1",
            body: serde_json::json!({"__type": code, "message": message}).to_string(),
        }
    }
}

/// Decides, per request (method, path, headers, body, index of the request), whether to inject a fault.
pub type Rule =
    Arc<dyn Fn(&Method, &str, &HeaderMap, &Bytes, usize) -> Option<Fault> + Send + Sync>;

/// A request the [`Rewrite`] hook changed: what to forward instead, and how to change the answer.
pub struct Rewritten {
    /// The body forwarded instead of the client's; `None` forwards nothing (then `respond` is called
    /// with status 200 and an empty body, and makes the whole answer).
    pub forward: Option<Bytes>,
    /// Turns the target's answer (status, body) into the one the client gets.
    pub respond: Box<dyn FnOnce(u16, Bytes) -> (u16, Bytes) + Send>,
}

/// Decides, per forwarded request (method, path, headers, body, index of the request), whether to
/// rewrite it; `None` forwards it untouched.
pub type Rewrite =
    Arc<dyn Fn(&Method, &str, &HeaderMap, &Bytes, usize) -> Option<Rewritten> + Send + Sync>;

struct Inner {
    target: String,
    rule: Rule,
    rewrite: Option<Rewrite>,
    log: Mutex<Vec<Seen>>,
    client: reqwest::Client,
    latency: Duration,
}

/// A running proxy; see the module documentation.
#[derive(Clone)]
pub struct FaultProxy {
    /// The proxy's URL (give this to the client as its endpoint).
    pub url: String,
    inner: Arc<Inner>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 (a free port) forwarding to `target`.
    pub async fn start(target: &str, rule: Rule) -> Self {
        Self::start_with(target, rule, None).await
    }

    /// A proxy that only forwards and logs.
    pub async fn passthrough(target: &str) -> Self {
        Self::start_with(target, Arc::new(|_, _, _, _, _| None), None).await
    }

    /// A proxy that forwards every request after `latency` (a distant region), and logs.
    pub async fn slow(target: &str, latency: Duration) -> Self {
        Self::build(target, Arc::new(|_, _, _, _, _| None), None, latency).await
    }

    /// Starts a proxy with a [`Rule`] for whole-request faults and a [`Rewrite`] for the rest.
    pub async fn start_with(target: &str, rule: Rule, rewrite: Option<Rewrite>) -> Self {
        Self::build(target, rule, rewrite, Duration::ZERO).await
    }

    async fn build(target: &str, rule: Rule, rewrite: Option<Rewrite>, latency: Duration) -> Self {
        let inner = Arc::new(Inner {
            target: target.trim_end_matches('/').to_owned(),
            rule,
            rewrite,
            log: Mutex::new(Vec::new()),
            client: reqwest::Client::new(),
            latency,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let url = crate::serve_local(app).await;
        Self { url, inner }
    }

    /// Everything seen so far.
    pub fn log(&self) -> Vec<Seen> {
        self.inner.log.lock().unwrap().clone()
    }

    /// Requests seen for an `X-Amz-Target` operation suffix (e.g. `GetRecords`).
    pub fn calls(&self, operation: &str) -> Vec<Seen> {
        self.log()
            .into_iter()
            .filter(|s| s.target.as_deref().is_some_and(|t| t.ends_with(operation)))
            .collect()
    }
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, 64 << 20).await.unwrap_or_default();
    // Finish (forward and log) even if the client goes away meanwhile (e.g. a killed process): what
    // reached the target is always in the log.
    tokio::spawn(answer(inner, at, parts, body))
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn answer(
    inner: Arc<Inner>,
    at: Instant,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !inner.latency.is_zero() {
        tokio::time::sleep(inner.latency).await;
    }
    let index = inner.log.lock().unwrap().len();
    let fault = (inner.rule)(&parts.method, &path, &parts.headers, &body, index);
    let mut rewritten = false;
    let (status, headers, response_body, injected) = match fault {
        Some(f) => {
            let mut h = HeaderMap::new();
            h.insert("content-type", f.content_type.parse().unwrap());
            (f.status, h, Bytes::from(f.body), true)
        }
        None => {
            let rewrite = inner
                .rewrite
                .as_ref()
                .and_then(|r| r(&parts.method, &path, &parts.headers, &body, index));
            rewritten = rewrite.is_some();
            let (forward, respond) = match rewrite {
                Some(r) => (r.forward, Some(r.respond)),
                None => (Some(body.clone()), None),
            };
            let (status, mut headers, bytes) = match forward {
                Some(forward) => {
                    let mut headers = parts.headers.clone();
                    if respond.is_some() {
                        // The rewrite reads the answer: ask the target for a plain body.
                        headers.remove("accept-encoding");
                    }
                    forward_to(&inner, &parts.method, &path, &headers, forward).await
                }
                None => {
                    // Nothing forwarded: answer in the protocol's content type (AWS JSON protocols
                    // answer in the type they were asked in).
                    let mut h = HeaderMap::new();
                    let asked = parts
                        .headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let ty = if asked.contains("amz-json") {
                        asked.to_owned()
                    } else {
                        "application/json".to_owned()
                    };
                    if let Ok(v) = ty.parse() {
                        h.insert("content-type", v);
                    }
                    (200, h, Bytes::new())
                }
            };
            let (status, bytes) = match respond {
                Some(respond) => {
                    // A changed body no longer matches the target's checksum header (DynamoDB's CRC32).
                    headers.remove("x-amz-crc32");
                    respond(status, bytes)
                }
                None => (status, bytes),
            };
            (status, headers, bytes, false)
        }
    };
    let mut b = Response::builder().status(status);
    for (k, v) in &headers {
        if k != "content-length" && k != "transfer-encoding" {
            b = b.header(k, v);
        }
    }
    let response = b.body(Body::from(response_body.clone())).unwrap();
    inner.log.lock().unwrap().push(Seen {
        at,
        done: Instant::now(),
        method: parts.method,
        path,
        target,
        headers: parts.headers,
        body,
        status,
        response: response_body,
        injected,
        rewritten,
    });
    response
}

/// Forwards a request to the target; a target that cannot be reached is a 502.
async fn forward_to(
    inner: &Inner,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> (u16, HeaderMap, Bytes) {
    let mut out = inner
        .client
        .request(method.clone(), format!("{}{}", inner.target, path))
        .body(body);
    // Headers pass unchanged, Host included: signed requests (SigV4 covers Host) stay valid.
    for (k, v) in headers {
        if k != "content-length" {
            out = out.header(k, v);
        }
    }
    match out.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let bytes = r.bytes().await.unwrap_or_default();
            (status, headers, bytes)
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY.as_u16(),
            HeaderMap::new(),
            Bytes::from(e.to_string()),
        ),
    }
}
