//! A small fault-injecting HTTP proxy: a documented test stand-in for what the local servers cannot do
//! (throttling, 429s, 5xx, DynamoDB's `UnprocessedItems`). It forwards every request to a target,
//! except those a rule answers itself, and logs what it saw. A second, optional rule may rewrite a
//! forwarded exchange: send the target a changed request body and hand the client a changed response
//! body (e.g. forward only some writes of a DynamoDB BatchWriteItem and report the others as
//! `UnprocessedItems`, as DynamoDB does when busy). Clients reach it only through their normal
//! endpoint override.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// The method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// The `X-Amz-Target` header (the API operation of AWS JSON protocols), if any.
    pub target: Option<String>,
    /// The request body.
    pub body: Bytes,
    /// The status returned.
    pub status: u16,
    /// Whether the proxy answered itself (a fault) instead of forwarding.
    pub injected: bool,
    /// Whether a rewrite rule changed the exchange (`body` is the request as the client sent it).
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

/// How a rewrite rule changes an exchange.
pub enum Rewritten {
    /// Forward `body` instead of the client's, and give the client `response(target's body)` (status
    /// and headers are the target's).
    Forward {
        /// The request body to forward.
        body: Bytes,
        /// Turns the target's response body into the client's.
        response: Box<dyn FnOnce(Bytes) -> Bytes + Send>,
    },
    /// Answer without forwarding (when nothing of the request is to reach the target).
    Answer(Fault),
}

/// Decides, per request the fault rule declined (same arguments as [`Rule`]), whether to rewrite the
/// exchange.
pub type Rewrite =
    Arc<dyn Fn(&Method, &str, &HeaderMap, &Bytes, usize) -> Option<Rewritten> + Send + Sync>;

struct Inner {
    target: String,
    rule: Rule,
    rewrite: Option<Rewrite>,
    log: Mutex<Vec<Seen>>,
    client: reqwest::Client,
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
        Self::launch(target, rule, None).await
    }

    /// Starts a proxy that also rewrites the exchanges `rewrite` picks (after `rule` declined them).
    pub async fn start_rewriting(target: &str, rule: Rule, rewrite: Rewrite) -> Self {
        Self::launch(target, rule, Some(rewrite)).await
    }

    async fn launch(target: &str, rule: Rule, rewrite: Option<Rewrite>) -> Self {
        let inner = Arc::new(Inner {
            target: target.trim_end_matches('/').to_owned(),
            rule,
            rewrite,
            log: Mutex::new(Vec::new()),
            client: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
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
    let index = inner.log.lock().unwrap().len();
    let mut fault = (inner.rule)(&parts.method, &path, &parts.headers, &body, index);
    let mut rewritten = false;
    let mut change = None;
    if fault.is_none() {
        match inner
            .rewrite
            .as_ref()
            .and_then(|r| r(&parts.method, &path, &parts.headers, &body, index))
        {
            Some(Rewritten::Answer(f)) => fault = Some(f),
            Some(Rewritten::Forward { body, response }) => change = Some((body, response)),
            None => {}
        }
        rewritten = fault.is_some() || change.is_some();
    }
    let (response, status, injected) = match fault {
        Some(f) => {
            let resp = Response::builder()
                .status(f.status)
                .header("content-type", f.content_type)
                .body(Body::from(f.body))
                .unwrap();
            (resp, f.status, true)
        }
        None => {
            let (forward, on_response) = match change {
                Some((b, r)) => (b, Some(r)),
                None => (body.clone(), None),
            };
            let mut out = inner
                .client
                .request(parts.method.clone(), format!("{}{}", inner.target, path))
                .body(forward);
            // Headers pass unchanged, Host included: signed requests (SigV4 covers Host) stay valid.
            for (k, v) in &parts.headers {
                if k != "content-length" {
                    out = out.header(k, v);
                }
            }
            match out.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let mut b = Response::builder().status(status);
                    for (k, v) in r.headers() {
                        // A rewritten body no longer matches the target's checksum.
                        let stale = on_response.is_some() && k == "x-amz-crc32";
                        if k != "content-length" && k != "transfer-encoding" && !stale {
                            b = b.header(k, v);
                        }
                    }
                    let mut bytes = r.bytes().await.unwrap_or_default();
                    if let Some(f) = on_response {
                        bytes = f(bytes);
                    }
                    (b.body(Body::from(bytes)).unwrap(), status, false)
                }
                Err(e) => {
                    let resp = Response::builder()
                        .status(StatusCode::BAD_GATEWAY)
                        .body(Body::from(e.to_string()))
                        .unwrap();
                    (resp, 502, false)
                }
            }
        }
    };
    inner.log.lock().unwrap().push(Seen {
        at,
        method: parts.method,
        path,
        target,
        body,
        status,
        injected,
        rewritten,
    });
    response
}
