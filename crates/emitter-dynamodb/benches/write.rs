//! Items per second written to the local DynamoDB (dynalite) by the emitter, with 1, 4 and 16
//! BatchWriteItem requests in flight (`max_concurrent_writes`), side by side in one run; plus the
//! ordering-safe mode (one conditional PutItem per item) at 16 in flight.
//!
//! Each iteration emits one batch of 1,000 JSON items of about 200 bytes with distinct keys (40
//! BatchWriteItem requests of 25), so the emitter's own work (mapping, grouping, chunking) is measured
//! with the writes. Needs the local servers: `eval "$(integration-tests/local-stack env)"`, then
//!
//! `cargo bench -p kinesis-connectors-emitter-dynamodb --bench write`
//!
//! (`DYNAMODB_SERVER_PID=$(pgrep -f dynalite/cli.js)` adds the server's CPU use to the report.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kinesis_connectors_core::testing::record;
use kinesis_connectors_core::{Batch, Emitter, Envelope, Item, Origin};
use kinesis_connectors_emitter_dynamodb::{DynamoDbConfig, DynamoDbEmitter};

const ITEMS: usize = 1_000;

/// A batch of `ITEMS` distinct keys from records `offset..offset + ITEMS` (later batches carry newer
/// positions, so ordering-safe writes are real writes, not refusals).
fn batch(offset: u64) -> Batch<Item> {
    let items = (0..ITEMS)
        .map(|i| {
            let doc = serde_json::json!({
                "id": format!("user-{i:05}"), "event_type": "click", "page": format!("/products/{:04}", i % 5000),
                "ts": "2026-11-25T12:00:00.000Z", "amount": i % 100, "session": format!("{:016x}", i as u64 * 2654435761),
                "agent": "Mozilla/5.0 (X11; Linux x86_64) bench",
            });
            Envelope::new(
                Item::from_value(&doc),
                Origin::new(record("shardId-000000000000", offset + i as u64, b"")),
            )
        })
        .collect();
    Batch::new("bench".into(), items, 0)
}

async fn create_table(client: &Client, table: &str) {
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    loop {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap();
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CPU seconds process `pid` (`self` for this one) used so far (Linux `/proc/PID/stat`; 0 elsewhere):
/// shows how the time splits between the emitter's own work and the server's.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name; 100 ticks a second.
    (ticks(11) + ticks(12)) / 100.0
}

fn bench(c: &mut Criterion) {
    let endpoint = std::env::var("DYNAMODB_ENDPOINT").expect(
        "DYNAMODB_ENDPOINT is not set: start the local servers (eval \"$(integration-tests/local-stack env)\")",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        Client::new(&kinesis_connectors_aws::sdk_config("us-east-1", Some(&endpoint)).await)
    });
    let table = format!("bench-write-{}", std::process::id());
    rt.block_on(create_table(&client, &table));
    let mut offset = 0u64;

    let mut group = c.benchmark_group("dynamodb-write-1000-items");
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.warm_up_time(Duration::from_secs(2));
    let cases = [
        ("batch/in-flight-1", 1, false),
        ("batch/in-flight-4", 4, false),
        ("batch/in-flight-16", 16, false),
        ("ordering-safe/in-flight-16", 16, true),
    ];
    for (name, in_flight, ordering_safe) in cases {
        let mut config = DynamoDbConfig::new(&table, "id");
        config.endpoint = Some(endpoint.clone());
        config.max_concurrent_writes = in_flight;
        config.ordering_safe = ordering_safe;
        let emitter = rt.block_on(DynamoDbEmitter::connect(config, "us-east-1"));
        // Set DYNAMODB_SERVER_PID to the local server's process id to see its CPU use too.
        let server = std::env::var("DYNAMODB_SERVER_PID").unwrap_or_default();
        let (cpu, server_cpu, started) = (
            cpu_seconds("self"),
            cpu_seconds(&server),
            std::time::Instant::now(),
        );
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    offset += ITEMS as u64;
                    batch(offset)
                },
                |batch| {
                    let outcome = rt.block_on(emitter.emit(&batch)).unwrap();
                    assert!(outcome.is_success(), "{outcome:?}");
                },
                BatchSize::PerIteration,
            )
        });
        let m = emitter.metrics();
        let items = m.items_written + m.items_already_newer;
        let wall = started.elapsed().as_secs_f64();
        eprintln!(
            "{name}: {} requests, {} items written, {} refused as not newer; client CPU {:.1} µs per item (batch building included); cores busy: client {:.2}, server {:.2}",
            m.requests,
            m.items_written,
            m.items_already_newer,
            (cpu_seconds("self") - cpu) * 1e6 / items.max(1) as f64,
            (cpu_seconds("self") - cpu) / wall,
            (cpu_seconds(&server) - server_cpu) / wall,
        );
    }
    group.finish();
    rt.block_on(async {
        let _ = client.delete_table().table_name(&table).send().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
