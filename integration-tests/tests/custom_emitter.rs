//! The examples end to end: the custom-emitter example's binary (`webhook-connector`, the connector
//! with `type = "webhook"` registered) reading the local Kinesis and POSTing to an HTTP receiver served
//! by this test; plus the deployment manifests in `deploy/`, parsed and checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use integration_tests::fault_proxy::{Fault, FaultProxy, Rule};
use integration_tests::{Connector, Stack, Workdir, put_records, unique};
use kinesis_connectors_core::SequenceNumber;
use serde_json::Value;

/// The example's binary, built from `examples/custom-emitter/src/main.rs` (see this package's
/// Cargo.toml).
fn webhook_connector() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_webhook-connector"))
}

/// One POST the receiver took.
#[derive(Clone, Debug)]
struct Post {
    headers: HeaderMap,
    body: Value,
}

/// A webhook receiver on 127.0.0.1: answers every POST to `/hook` with 200 and keeps it.
struct Receiver {
    url: String,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl Receiver {
    async fn start() -> Self {
        let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
        async fn take(
            State(posts): State<Arc<Mutex<Vec<Post>>>>,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let body: Value = serde_json::from_slice(&body).expect("the body is JSON");
            posts.lock().unwrap().push(Post { headers, body });
            StatusCode::OK
        }
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(take))
            .with_state(posts.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, posts }
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }
}

/// A rule failing the POSTs whose number (0-based, POSTs only) `fail` picks, with `fault`.
fn fail_posts(fail: impl Fn(usize, &Bytes) -> bool + Send + Sync + 'static, fault: Fault) -> Rule {
    let posts = AtomicUsize::new(0);
    Arc::new(move |method, _path, _headers, body, _index| {
        if method != Method::POST {
            return None;
        }
        let n = posts.fetch_add(1, Ordering::SeqCst);
        fail(n, body).then(|| fault.clone())
    })
}

fn webhook_pipeline(stream: &str, kinesis: &str, url: &str, extra: &str) -> String {
    format!(
        r#"state_dir = "state"
[pipelines.p]
source = {{ stream = "{stream}", endpoint = "{kinesis}", idle_poll_interval = "200ms", shard_sync_interval = "1s" }}
transformer = {{ type = "json" }}
retry = {{ base_delay = "50ms", max_delay = "200ms" }}
emitter = {{ type = "webhook", url = "{url}/hook", format = "envelope", max_items_per_request = 50, bearer_token = "${{HOOK_TOKEN}}" }}
{extra}
"#
    )
}

/// (id, shard, sequence) of every item of a body in `envelope` format.
fn items(body: &Value) -> Vec<(u64, String, SequenceNumber)> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["data"]["id"].as_u64().unwrap(),
                i["shard"].as_str().unwrap().to_owned(),
                SequenceNumber::new(i["sequence"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_posted_once_in_shard_order_and_a_5xx_is_retried() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("webhook");
    client.create(&stream, 2).await.unwrap();
    let total = 1_000u64;
    let ledger = put_records(&client, &stream, 0..total, 31, &|_| false).await;

    let receiver = Receiver::start().await;
    // The receiver fails the 1st and the 4th POST with a 503 (the proxy answers them itself: they
    // never reach the receiver).
    let proxy = FaultProxy::start(
        &receiver.url,
        fail_posts(
            |n, _| n == 0 || n == 3,
            Fault {
                status: 503,
                content_type: "text/plain",
                body: "receiver restarting".into(),
            },
        ),
    )
    .await;
    let work = Workdir::new();
    let config = work.config(&webhook_pipeline(
        &stream,
        &stack.kinesis,
        &proxy.url,
        "buffer = { max_records = 100, max_age = \"1s\" }",
    ));
    Connector::run_bin_until_tip(
        webhook_connector(),
        work.dir.path(),
        &config,
        "p",
        &[("HOOK_TOKEN", "token-1234".to_owned())],
    );

    let posts = receiver.posts();
    let landed: Vec<(u64, String, SequenceNumber)> =
        posts.iter().flat_map(|p| items(&p.body)).collect();
    assert_eq!(landed.len() as u64, total, "every record posted once");
    let ids: HashSet<u64> = landed.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids, (0..total).collect::<HashSet<_>>());
    let mut last: HashMap<&str, &SequenceNumber> = HashMap::new();
    for (id, shard, seq) in &landed {
        assert_eq!(&ledger.records[id].0, shard);
        if let Some(prev) = last.insert(shard, seq) {
            assert!(seq > prev, "shard {shard} posted out of order");
        }
    }
    for p in &posts {
        assert_eq!(p.headers["authorization"], "Bearer token-1234");
        assert_eq!(p.headers["content-type"], "application/json");
        assert_eq!(
            p.headers["idempotency-key"].to_str().unwrap(),
            p.body["batch_id"].as_str().unwrap()
        );
        assert!(p.body["items"].as_array().unwrap().len() <= 50);
    }

    // Both 503s were retried: the same request (same id, same items) came again and was taken.
    let log: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|s| s.method == Method::POST)
        .collect();
    let failed: Vec<_> = log.iter().filter(|s| s.injected).collect();
    assert_eq!(failed.len(), 2, "two POSTs answered 503");
    for f in failed {
        let body: Value = serde_json::from_slice(&f.body).unwrap();
        let again = log
            .iter()
            .filter(|s| !s.injected && s.at > f.at)
            .map(|s| serde_json::from_slice::<Value>(&s.body).unwrap())
            .find(|b| b["batch_id"] == body["batch_id"])
            .expect("the failed request was sent again");
        assert_eq!(items(&again), items(&body), "retried with the same items");
    }

    let checkpoints = work.checkpoints("p");
    for (shard, seq) in ledger.last_per_shard() {
        let at = checkpoints[&shard].position().map(|p| p.sequence.clone());
        assert_eq!(at, Some(seq), "checkpoint of {shard}");
    }
    assert!(work.dead_letters("p").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_dead_letters_the_refused_requests_items_and_the_rest_is_posted() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("webhook-4xx");
    client.create(&stream, 1).await.unwrap();
    let total = 60u64;
    let ledger = put_records(&client, &stream, 0..total, 7, &|_| false).await;

    let receiver = Receiver::start().await;
    let proxy = FaultProxy::start(
        &receiver.url,
        fail_posts(
            |_, body| String::from_utf8_lossy(body).contains("\"id\":17,"),
            Fault {
                status: 422,
                content_type: "application/json",
                body: r#"{"error":"field amount missing"}"#.into(),
            },
        ),
    )
    .await;
    let work = Workdir::new();
    let config = work.config(&webhook_pipeline(
        &stream,
        &stack.kinesis,
        &proxy.url,
        "buffer = { max_records = 20, max_age = \"1s\" }",
    ));
    // Requests of 5 items: the refused one holds ids 15..=19.
    let config_text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_items_per_request = 50", "max_items_per_request = 5");
    std::fs::write(&config, config_text).unwrap();
    Connector::run_bin_until_tip(
        webhook_connector(),
        work.dir.path(),
        &config,
        "p",
        &[("HOOK_TOKEN", "t".to_owned())],
    );

    let refused: Vec<_> = proxy.log().into_iter().filter(|s| s.injected).collect();
    assert_eq!(refused.len(), 1, "a permanent failure is not retried");
    let refused_ids: HashSet<u64> = items(&serde_json::from_slice(&refused[0].body).unwrap())
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(refused_ids, (15..20).collect::<HashSet<_>>());

    let dead = work.dead_letters("p");
    let dead_ids: HashSet<u64> = dead
        .iter()
        .map(|d| {
            serde_json::from_slice::<Value>(&d.data).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(dead_ids, refused_ids, "exactly the refused request's items");
    for d in &dead {
        assert!(
            d.reason.contains("HTTP 422") && d.reason.contains("field amount missing"),
            "{}",
            d.reason
        );
    }
    let posted: BTreeMap<u64, usize> = receiver.posts().iter().flat_map(|p| items(&p.body)).fold(
        BTreeMap::new(),
        |mut m, (id, _, _)| {
            *m.entry(id).or_default() += 1;
            m
        },
    );
    let expected: Vec<u64> = (0..total).filter(|i| !refused_ids.contains(i)).collect();
    assert_eq!(posted.keys().copied().collect::<Vec<_>>(), expected);
    assert!(posted.values().all(|&n| n == 1));
    // Dead-lettered items count as done: the shard is checkpointed to its end.
    let (shard, seq) = ledger.last_per_shard().into_iter().next().unwrap();
    let checkpoints = work.checkpoints("p");
    assert_eq!(
        checkpoints[&shard].position().map(|p| p.sequence.clone()),
        Some(seq)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_validates_webhook_options_by_key() {
    let work = Workdir::new();
    let config = work.config(
        r#"[pipelines.p]
source = { stream = "s" }
emitter = { type = "webhook", url = "http://127.0.0.1:9/hook", max_items_per_request = 0 }
"#,
    );
    let out = std::process::Command::new(webhook_connector())
        .args(["check", "--offline", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("emitter.max_items_per_request") && stderr.contains("between 1 and"),
        "{stderr}"
    );
}
