//! Rows/s and commits/s of the Iceberg emitter on one core, side by side with the S3 emitter's Parquet
//! output on the same records in the same run, for batches of 1,000, 10,000 and 100,000 rows:
//!
//! * **Iceberg**: one `IcebergEmitter::emit` per batch — load the table through the SQL catalog on the
//!   local PostgreSQL, read the committed positions, convert the JSON items to Arrow, write zstd Parquet
//!   data files to the local S3 (s3s-fs), and commit one snapshot (manifest, manifest list, metadata
//!   file, catalog row). Unpartitioned, and partitioned by `identity(event_type)` (5 values: 5 files
//!   per batch).
//! * **S3 Parquet**: one `S3Emitter::emit` of the same batch as one zstd Parquet object with the same
//!   columns (the emitter's explicit `schema`).
//!
//! Every iteration emits a new batch (new positions), so the Iceberg emitter never skips one as
//! already committed; building the batch is not timed. The emitters run on a current-thread runtime
//! (one core); the servers are other processes.
//!
//! Run with the local stack up (`eval "$(integration-tests/local-stack up)"`):
//! `cargo bench -p integration-tests --bench iceberg`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use integration_tests::{Stack, unique};
use kinesis_connectors_core::testing::record;
use kinesis_connectors_core::{Batch, Emitter, Envelope, Item, Origin};
use kinesis_connectors_emitter_iceberg::{IcebergEmitter, IcebergOptions};
use kinesis_connectors_emitter_s3::{S3Emitter, S3Options, S3Writer};

const SIZES: [u64; 3] = [1_000, 10_000, 100_000];
const EVENT_TYPES: [&str; 5] = ["view", "click", "add_to_cart", "purchase", "search"];

fn doc(i: u64) -> String {
    format!(
        r#"{{"id":{i},"user":"user-{:04}","event_type":"{}","page":"/products/{:04}","ts":"2026-11-25T{:02}:{:02}:00.000Z","amount":{}.5,"session":"{:016x}","agent":"Mozilla/5.0 (X11; Linux x86_64) bench"}}"#,
        i % 500,
        EVENT_TYPES[(i % 5) as usize],
        i % 5000,
        i / 60 % 24,
        i % 60,
        i % 100,
        i.wrapping_mul(2_654_435_761)
    )
}

/// `rows` items whose positions start at `first`.
fn batch(first: u64, rows: u64) -> Batch<Item> {
    let items = (first..first + rows)
        .map(|i| {
            Envelope::new(
                Item::parse_json(Bytes::from(doc(i))).unwrap(),
                Origin::new(record("shardId-000000000000", i, b"")),
            )
        })
        .collect();
    Batch::new("bench".into(), items, 0)
}

const ICEBERG_COLUMNS: &str = r#"[{ name = "id", type = "long", required = true }, { name = "user", type = "string" }, { name = "event_type", type = "string" }, { name = "page", type = "string" }, { name = "ts", type = "timestamptz" }, { name = "amount", type = "double" }, { name = "session", type = "string" }]"#;
const S3_SCHEMA: &str = r#"[{ name = "id", type = "int64" }, { name = "user", type = "string" }, { name = "event_type", type = "string" }, { name = "page", type = "string" }, { name = "ts", type = "timestamp" }, { name = "amount", type = "float64" }, { name = "session", type = "string" }]"#;

async fn iceberg(stack: &Stack, bucket: &str, partition_by: &str) -> IcebergEmitter {
    let port = std::env::var("PGPORT").expect("PGPORT: start the local stack");
    let text = format!(
        r#"catalog = "sql"
catalog_uri = "postgres://postgres@127.0.0.1:{port}/dev"
warehouse = "s3://{bucket}/warehouse"
namespace = "{namespace}"
table = "clicks"
endpoint = "{s3}"
create_table = true
columns = {ICEBERG_COLUMNS}
partition_by = {partition_by}
"#,
        namespace = unique("bench").replace('-', "_"),
        s3 = stack.s3,
    );
    let options: IcebergOptions = toml::from_str(&text).unwrap();
    IcebergEmitter::connect("bench", options.validate().unwrap(), "us-east-1")
        .await
        .unwrap()
}

async fn s3_parquet(stack: &Stack, bucket: &str) -> S3Emitter {
    let text = format!(
        "bucket = \"{bucket}\"\nendpoint = \"{}\"\nprefix = \"{}/\"\nformat = \"parquet\"\ncompression = \"zstd\"\nschema = {S3_SCHEMA}\n",
        stack.s3,
        unique("bench-parquet")
    );
    let settings: S3Options = toml::from_str(&text).unwrap();
    S3Emitter::new(S3Writer::connect("bench", settings.validate().unwrap(), "us-east-1").await)
}

fn bench(c: &mut Criterion) {
    let stack = Stack::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bucket = rt.block_on(stack.bucket());
    let mut group = c.benchmark_group("iceberg-vs-s3-parquet");
    group.sample_size(10);
    // Each sample the same number of batches (a 100,000-row batch takes seconds).
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(15));
    let mut next = 0u64;
    for rows in SIZES {
        group.throughput(Throughput::Elements(rows));
        let cases: [(&str, Box<dyn Emitter<Item>>); 3] = rt.block_on(async {
            [
                (
                    "iceberg, unpartitioned",
                    Box::new(iceberg(&stack, &bucket, "[]").await) as Box<dyn Emitter<Item>>,
                ),
                (
                    "iceberg, identity(event_type)",
                    Box::new(iceberg(&stack, &bucket, r#"["identity(event_type)"]"#).await),
                ),
                ("s3 parquet", Box::new(s3_parquet(&stack, &bucket).await)),
            ]
        });
        for (name, emitter) in &cases {
            group.bench_function(BenchmarkId::new(*name, rows), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let batch = batch(next, rows);
                        next += rows;
                        let started = Instant::now();
                        let outcome = rt.block_on(emitter.emit(&batch)).unwrap();
                        total += started.elapsed();
                        assert!(outcome.is_success(), "{outcome:?}");
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
