//! Throughput of the in-process pipeline on one core: 250-byte JSON records through the `json`
//! transformer, a field filter and the buffer into an emitter that acknowledges at once, with checkpoint
//! tracking — against the floor of the same transform and filter in a bare loop, in the same run.
//!
//! Run: `cargo bench -p kinesis-connectors-core --bench pipeline`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kinesis_connectors_core::stages::{FieldFilter, FieldPredicate, JsonTransformer, NullEmitter};
use kinesis_connectors_core::testing::record;
use kinesis_connectors_core::{
    BufferLimits, CheckpointError, FieldPath, FileDeadLetter, Filter, Item, Pipeline,
    PipelineSettings, Position, Record, ShardCheckpointer, Transformer, async_trait,
};

const RECORDS: usize = 200_000;
const PAGE: usize = 1_000;
const SHARDS: usize = 4;

struct NoCheckpoints;

#[async_trait]
impl ShardCheckpointer for NoCheckpoints {
    async fn checkpoint(&self, _: &Position) -> Result<(), CheckpointError> {
        Ok(())
    }
}

fn event(i: usize) -> Vec<u8> {
    let kind = ["click", "view", "purchase", "scroll"][i % 4];
    let text = format!(
        r#"{{"id":{i},"user":"user-{:04}","event_type":"{kind}","page":"/products/{:04}","ts":"2026-11-25T12:00:00.{:03}Z","amount":0,"session":"{:016x}","agent":"Mozilla/5.0 (X11; Linux x86_64) bench"}}"#,
        i % 500,
        i % 5000,
        i % 1000,
        i as u64 * 2654435761
    );
    let mut bytes = text.into_bytes();
    bytes.resize(250.max(bytes.len()), b' ');
    bytes
}

/// Pages of records, round-robin over shards, as readers would push them.
fn pages() -> Vec<(Arc<str>, Vec<Record>)> {
    let shards: Vec<Arc<str>> = (0..SHARDS)
        .map(|s| Arc::from(format!("shardId-{s:012}")))
        .collect();
    let mut per_shard: Vec<Vec<Record>> = vec![Vec::new(); SHARDS];
    for i in 0..RECORDS {
        let s = i % SHARDS;
        per_shard[s].push(record(&shards[s], (i / SHARDS) as u64, &event(i)));
    }
    let mut out = Vec::new();
    for (s, records) in per_shard.into_iter().enumerate() {
        for chunk in records.chunks(PAGE) {
            out.push((shards[s].clone(), chunk.to_vec()));
        }
    }
    out
}

fn filter() -> Arc<dyn Filter<Item>> {
    let one_of = FieldPredicate::OneOf(vec!["click".into(), "view".into(), "purchase".into()]);
    Arc::new(FieldFilter::new(
        FieldPath::parse("event_type").unwrap(),
        one_of,
        false,
    ))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let template = pages();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("pipeline-250B-json");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(20);

    group.bench_function("floor: transform + filter in a loop", |b| {
        let f = filter();
        b.iter_batched(
            || template.clone(),
            |pages| {
                let mut out = Vec::new();
                let mut kept = 0usize;
                for (_, records) in &pages {
                    for r in records {
                        out.clear();
                        JsonTransformer.transform(r, &mut out).unwrap();
                        kept += out.iter().filter(|i| f.keep(i, r)).count();
                    }
                }
                kept
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("pipeline: runner + buffer + tracker -> null emitter", |b| {
        b.iter_batched(
            || template.clone(),
            |pages| {
                rt.block_on(async {
                    let p = Pipeline::new(
                        "bench",
                        Arc::new(JsonTransformer),
                        Arc::new(NullEmitter),
                        Arc::new(FileDeadLetter::new(dir.path().join("dead.jsonl"))),
                    )
                    .filter(filter())
                    .settings(PipelineSettings {
                        buffer: BufferLimits {
                            max_records: 500,
                            max_bytes: 5 << 20,
                            max_age: std::time::Duration::from_secs(30),
                        },
                        ..PipelineSettings::default()
                    });
                    let (h, running) = p.start();
                    let mut shards: Vec<Arc<str>> = Vec::new();
                    for (s, _) in &pages {
                        if !shards.contains(s) {
                            h.open_shard(s.clone(), Arc::new(NoCheckpoints))
                                .await
                                .unwrap();
                            shards.push(s.clone());
                        }
                    }
                    for (s, records) in pages {
                        h.push(s, records).await.unwrap();
                    }
                    h.shutdown().await.unwrap();
                    let m = running.wait().await.unwrap();
                    assert_eq!(m.records_in, RECORDS as u64);
                })
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
