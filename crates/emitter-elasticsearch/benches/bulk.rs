//! Bulk indexing throughput into osmem-server (the local OpenSearch-API server) for bulk sizes of 1, 5
//! and 10 MiB, side by side, with a floor: the same bodies posted by a bare HTTP client (no planning,
//! no response reading) — the most the server takes from one process.
//!
//! Needs the local stack: `eval "$(integration-tests/local-stack up)"`, then
//! `cargo bench -p kinesis-connectors-emitter-elasticsearch --bench bulk`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use kinesis_connectors_core::testing::record;
use kinesis_connectors_core::{Batch, Emitter, Envelope, Item, Origin};
use kinesis_connectors_emitter_elasticsearch::{ElasticsearchEmitter, ElasticsearchOptions};

/// Documents per emit call (one batch): 10 MB of JSON, 13 MB of bulk bodies. (osmem-server indexes
/// about 7,000 documents a second on one core, so one iteration takes seconds.)
const DOCS: usize = 40_000;
const MIB: usize = 1024 * 1024;

/// A 250-byte click event, like the pipeline benchmark's records.
fn doc(n: usize) -> String {
    let mut s = format!(
        r#"{{"event_id":"e-{n:08}","event_type":"click","user":{{"id":"u-{}","country":"de"}},"page":"/products/{}","ts":"2026-11-25T10:{:02}:{:02}Z","pad":""#,
        n % 5_000,
        n % 700,
        (n / 60) % 60,
        n % 60
    );
    while s.len() < 247 {
        s.push('x');
    }
    s.push_str("\"}");
    s
}

fn batch() -> Batch<Item> {
    let items = (0..DOCS)
        .map(|n| {
            let text = doc(n);
            let rec = record("shardId-000000000000", n as u64, text.as_bytes());
            Envelope::new(
                Item::parse_json(Bytes::from(text)).unwrap(),
                Origin::new(rec),
            )
        })
        .collect();
    Batch::new(Arc::from("bench"), items, 0)
}

/// (case, bulk body bytes per iteration, time of each iteration)
type Results = Arc<Mutex<Vec<(String, u64, Vec<Duration>)>>>;

fn bench(c: &mut Criterion) {
    let Ok(endpoint) = std::env::var("OPENSEARCH_ENDPOINT") else {
        eprintln!("OPENSEARCH_ENDPOINT is not set: start the local stack first; skipping");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let index = format!("bench-bulk-{}", std::process::id());
    let batch = batch();
    let results: Results = Arc::default();
    let mut group = c.benchmark_group("bulk into osmem-server (40,000 docs of 250 B)");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(60));

    // The floor: 5 MiB bodies prepared once, posted 4 at a time by a bare client.
    let bodies: Vec<Bytes> = {
        let mut bodies = Vec::new();
        let mut body = Vec::with_capacity(5 * MIB + 1024);
        for (n, env) in batch.items.iter().enumerate() {
            body.extend_from_slice(
                format!(r#"{{"index":{{"_index":"{index}","_id":"floor-{n}"}}}}"#).as_bytes(),
            );
            body.push(b'\n');
            body.extend_from_slice(env.item.data());
            body.push(b'\n');
            if body.len() >= 5 * MIB {
                bodies.push(Bytes::from(std::mem::take(&mut body)));
            }
        }
        bodies.push(Bytes::from(body));
        bodies
    };
    let floor_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    let client = reqwest::Client::new();
    let url = format!("{}/_bulk", endpoint.trim_end_matches('/'));
    let r = results.clone();
    let mut floor_times = Vec::new();
    group.bench_function(
        "floor: prepared 5 MiB bodies, bare HTTP, 4 in flight",
        |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(async {
                        futures::stream::iter(bodies.iter().cloned())
                            .map(|body| {
                                let req = client
                                    .post(&url)
                                    .header("content-type", "application/x-ndjson")
                                    .body(body);
                                async move {
                                    let resp = req.send().await.unwrap();
                                    assert!(resp.status().is_success());
                                    resp.bytes().await.unwrap()
                                }
                            })
                            .buffer_unordered(4)
                            .for_each(|_| async {})
                            .await;
                    });
                }
                let t = start.elapsed();
                floor_times.push(t / iters as u32);
                t
            });
        },
    );
    r.lock()
        .unwrap()
        .push(("floor (bare HTTP, 5 MiB)".into(), floor_bytes, floor_times));

    for mib in [1usize, 5, 10] {
        let mut o = ElasticsearchOptions::new(&endpoint, &index).unwrap();
        o.max_bulk_bytes = mib * MIB;
        o.max_bulk_documents = DOCS;
        let emitter = rt
            .block_on(ElasticsearchEmitter::connect(o, "us-east-1"))
            .unwrap();
        let mut times = Vec::new();
        group.bench_function(
            format!("emitter: {mib} MiB bulk requests, 4 in flight"),
            |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let out = rt.block_on(emitter.emit(&batch)).unwrap();
                        assert!(out.is_success(), "{:?}", out.failures.first());
                    }
                    let t = start.elapsed();
                    times.push(t / iters as u32);
                    t
                });
            },
        );
        let m = emitter.metrics();
        let per_iteration = m.bulk_bytes / (m.items_ok / DOCS as u64).max(1);
        results
            .lock()
            .unwrap()
            .push((format!("emitter, {mib} MiB"), per_iteration, times));
    }
    group.finish();
    rt.block_on(
        client
            .delete(format!("{}/{index}", endpoint.trim_end_matches('/')))
            .send(),
    )
    .ok();

    println!("\n| case | median time per {DOCS} docs | documents/s | MB/s (bulk bodies) |");
    println!("|---|---|---|---|");
    for (name, bytes, mut times) in results.lock().unwrap().drain(..) {
        times.sort();
        let median = times[times.len() / 2];
        let secs = median.as_secs_f64();
        println!(
            "| {name} | {:.0} ms | {:.0} | {:.1} |",
            secs * 1e3,
            DOCS as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
