//! Throughput of the S3 emitter per format on one core, in MB/s of input (the items' bytes): encoding
//! alone, and encoding plus upload to an in-process s3s-fs server (running on another thread, so the
//! emitter's own core is what is measured).
//!
//! Run: `cargo bench -p kinesis-connectors-emitter-s3 --bench s3`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kinesis_connectors_core::testing::record;
use kinesis_connectors_core::{Batch, Emitter, Envelope, Item, Origin};
use kinesis_connectors_emitter_s3::encode::Encoder;
use kinesis_connectors_emitter_s3::{S3Emitter, S3Options, S3Writer};

const ITEMS: usize = 20_000;

fn batch() -> Batch<Item> {
    let items = (0..ITEMS)
        .map(|i| {
            let text = format!(
                r#"{{"id":{i},"user":"user-{:04}","event_type":"click","page":"/products/{:04}","ts":"2026-11-25T12:00:00.000Z","amount":{}.5,"session":"{:016x}","agent":"Mozilla/5.0 (X11; Linux x86_64) bench"}}"#,
                i % 500,
                i % 5000,
                i % 100,
                i as u64 * 2654435761
            );
            Envelope::new(Item::parse_json(Bytes::from(text)).unwrap(), Origin::new(record("shardId-000000000000", i as u64, b"")))
        })
        .collect();
    Batch::new("bench".into(), items, 0)
}

fn serve_s3() -> String {
    let dir = tempfile::tempdir().unwrap().keep();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use hyper_util::rt::{TokioExecutor, TokioIo};
            let fs = s3s_fs::FileSystem::new(&dir).unwrap();
            std::fs::create_dir_all(dir.join("bench")).unwrap();
            let mut b = s3s::service::S3ServiceBuilder::new(fs);
            b.set_auth(s3s::auth::SimpleAuth::from_single("AKIAX", "x"));
            let service = b.build();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

fn bench(c: &mut Criterion) {
    // SAFETY of env: set before any thread reads credentials.
    unsafe_free_env();
    let endpoint = serve_s3();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let batch = batch();
    let input: u64 = batch.items.iter().map(|e| e.item.data().len() as u64).sum();
    let mut group = c.benchmark_group("s3-emitter-5MB-batch");
    group.throughput(Throughput::Bytes(input));
    group.sample_size(10);
    let formats = [
        ("ndjson", "format = \"ndjson\""),
        ("ndjson+gzip", "format = \"ndjson\"\ncompression = \"gzip\""),
        ("ndjson+zstd", "format = \"ndjson\"\ncompression = \"zstd\""),
        (
            "parquet+zstd",
            "format = \"parquet\"\ncompression = \"zstd\"",
        ),
    ];
    for (name, options) in formats {
        let text = format!(
            "bucket = \"bench\"\nendpoint = \"{endpoint}\"\nkey = \"{{batch_id}}{{ext}}\"\n{options}"
        );
        let settings: S3Options = toml::from_str(&text).unwrap();
        let settings = settings.validate().unwrap();
        let o = settings.options.clone();
        let schema = (o.format == kinesis_connectors_emitter_s3::Format::Parquet).then(|| {
            kinesis_connectors_emitter_s3::encode::infer_schema(batch.items.iter().map(|e| &e.item))
        });
        group.bench_function(format!("{name}: encode"), |b| {
            b.iter(|| {
                let mut e =
                    Encoder::new(o.format, o.compression, &o.delimiter, schema.as_deref()).unwrap();
                for it in &batch.items {
                    e.push(&it.item).unwrap();
                }
                e.finish().unwrap().len()
            })
        });
        let emitter = Arc::new(rt.block_on(async {
            S3Emitter::new(S3Writer::connect("bench", settings, "us-east-1").await)
        }));
        group.bench_function(format!("{name}: encode + upload"), |b| {
            b.iter(|| rt.block_on(emitter.emit(&batch)).unwrap())
        });
    }
    group.finish();
}

/// Credentials for the local server come from the environment the SDK reads.
fn unsafe_free_env() {
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "AKIAX"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        if std::env::var_os(k).is_none() {
            panic!(
                "set {k}={v} (the bench's local S3 credentials), e.g. `eval \"$(integration-tests/local-stack env)\"`"
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
