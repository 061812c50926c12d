//! Rows/s into the same PostgreSQL two ways, side by side in one run:
//!
//! * **S3 + COPY**: `RedshiftEmitter::emit` of one batch — stage to the local S3 (s3s-fs, JSON lines,
//!   gzip or none, plus a manifest), then one `BatchExecuteStatement` through the Redshift Data API
//!   stand-in, which reads the objects back and loads them with PostgreSQL's `COPY … FROM STDIN` (the
//!   loaded-files check and the insert from the stage table included);
//! * **row-by-row INSERT**: one prepared `INSERT … VALUES ($1, …)` per row on a direct connection,
//!   each its own transaction (what a naive JDBC emitter does), and the same inside one transaction.
//!
//! Run with the local stack up (`eval "$(integration-tests/local-stack up)"`):
//! `cargo bench -p integration-tests --bench redshift`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use integration_tests::redshift_data::{Postgres, RedshiftDataStandIn};
use integration_tests::{Stack, unique};
use kinesis_connectors_core::testing::record;
use kinesis_connectors_core::{Batch, Emitter, Envelope, Item, Origin};
use kinesis_connectors_emitter_redshift::{RedshiftEmitter, RedshiftOptions};

/// Rows per emitted batch (S3 + COPY).
const COPY_ROWS: u64 = 20_000;
/// Rows per iteration of the INSERT cases (fewer: they are two orders of magnitude slower).
const INSERT_ROWS: u64 = 1_000;

const DDL: &str = "(id BIGINT, user_id VARCHAR(32), event_type VARCHAR(16), page VARCHAR(64), ts TIMESTAMP, amount DOUBLE PRECISION, session VARCHAR(32))";

fn doc(i: u64) -> String {
    format!(
        r#"{{"id":{i},"user_id":"user-{:04}","event_type":"click","page":"/products/{:04}","ts":"2026-11-25T12:00:00.000Z","amount":{}.5,"session":"{:016x}"}}"#,
        i % 500,
        i % 5000,
        i % 100,
        i.wrapping_mul(2_654_435_761)
    )
}

/// A batch of `COPY_ROWS` items whose positions start at `first` (each iteration a new batch, so the
/// loaded-files table never skips it).
fn batch(first: u64) -> Batch<Item> {
    let items = (first..first + COPY_ROWS)
        .map(|i| {
            Envelope::new(
                Item::parse_json(Bytes::from(doc(i))).unwrap(),
                Origin::new(record("shardId-000000000000", i, b"")),
            )
        })
        .collect();
    Batch::new("bench".into(), items, 0)
}

fn bench(c: &mut Criterion) {
    let stack = Stack::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stand_in, pg, bucket) = rt.block_on(async {
        let rs = RedshiftDataStandIn::start(Postgres::from_env(), &stack.s3).await;
        let pg = Postgres::from_env().connect("postgres").await.unwrap();
        (rs, pg, stack.bucket().await)
    });
    let mut group = c.benchmark_group("redshift-load");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    let next = AtomicU64::new(0);
    for (name, compression) in [("S3 + COPY, gzip", "gzip"), ("S3 + COPY, none", "none")] {
        let table = unique("bench_copy").replace('-', "_");
        let emitter = rt.block_on(async {
            pg.batch_execute(&format!("CREATE TABLE \"{table}\" {DDL}"))
                .await
                .unwrap();
            let text = format!(
                r#"cluster_identifier = "local"
database = "postgres"
db_user = "postgres"
endpoint = "{}"
table = "{table}"
loaded_files_table = "{table}_loaded"
iam_role = "arn:aws:iam::123456789012:role/bench"
compression = "{compression}"
poll_interval = "5ms"
max_poll_interval = "50ms"
staging = {{ bucket = "{bucket}", endpoint = "{}", prefix = "b/", key = "{{prefix}}{{batch_id}}{{ext}}" }}
"#,
                stand_in.url, stack.s3
            );
            let o: RedshiftOptions = toml::from_str(&text).unwrap();
            let e = RedshiftEmitter::connect("bench", o.validate().unwrap(), "us-east-1").await;
            e.check().await.unwrap();
            e
        });
        group.throughput(Throughput::Elements(COPY_ROWS));
        group.bench_function(format!("{name}: {COPY_ROWS} rows per batch"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let b = batch(next.fetch_add(COPY_ROWS, Ordering::SeqCst));
                    let started = Instant::now();
                    let out = rt.block_on(emitter.emit(&b)).unwrap();
                    total += started.elapsed();
                    assert!(out.is_success());
                }
                total
            })
        });
        let m = emitter.metrics();
        assert_eq!(m.loads_skipped, 0);
        assert_eq!(m.rows_loaded, m.loads * COPY_ROWS);
    }

    for (name, one_transaction) in [
        ("row-by-row INSERT, autocommit", false),
        ("row-by-row INSERT, one transaction", true),
    ] {
        let table = unique("bench_insert").replace('-', "_");
        let insert = rt.block_on(async {
            pg.batch_execute(&format!("CREATE TABLE \"{table}\" {DDL}"))
                .await
                .unwrap();
            pg.prepare(&format!(
                "INSERT INTO \"{table}\" (id, user_id, event_type, page, ts, amount, session) VALUES ($1, $2, $3, $4, $5::text::timestamp, $6, $7)"
            ))
            .await
            .unwrap()
        });
        group.throughput(Throughput::Elements(INSERT_ROWS));
        group.bench_function(format!("{name}: {INSERT_ROWS} rows"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let first = next.fetch_add(INSERT_ROWS, Ordering::SeqCst);
                    // Parsing the JSON is part of the work, as the emitter's is.
                    let docs: Vec<Bytes> = (first..first + INSERT_ROWS)
                        .map(|i| Bytes::from(doc(i)))
                        .collect();
                    let started = Instant::now();
                    rt.block_on(async {
                        if one_transaction {
                            pg.batch_execute("BEGIN").await.unwrap();
                        }
                        for d in &docs {
                            let v: serde_json::Value = serde_json::from_slice(d).unwrap();
                            let id = v["id"].as_i64().unwrap();
                            let amount = v["amount"].as_f64().unwrap();
                            let s = |k: &str| v[k].as_str().unwrap().to_owned();
                            pg.execute(
                                &insert,
                                &[
                                    &id,
                                    &s("user_id"),
                                    &s("event_type"),
                                    &s("page"),
                                    &s("ts"),
                                    &amount,
                                    &s("session"),
                                ],
                            )
                            .await
                            .unwrap();
                        }
                        if one_transaction {
                            pg.batch_execute("COMMIT").await.unwrap();
                        }
                    });
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
