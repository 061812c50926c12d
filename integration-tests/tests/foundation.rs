//! Foundation, end to end against the local Kinesis: delivery and order, checkpoints, crash safety
//! under SIGKILL, dead letters for invalid JSON, and a shard split while the pipeline runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use integration_tests::{
    Connector, Stack, Workdir, file_pipeline, put_records, read_landed, unique, wait_until,
};
use kinesis_connectors_consumer::Checkpoint;
use rand::Rng;

fn checkpoint_seq(c: &Checkpoint) -> Option<kinesis_connectors_core::SequenceNumber> {
    c.position().map(|p| p.sequence.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_over_four_shards_are_delivered_in_shard_order_and_checkpointed() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("foundation-10k");
    client.create(&stream, 4).await.unwrap();
    let ledger = put_records(&client, &stream, 0..10_000, 97, &|_| false).await;
    assert_eq!(
        ledger.last_per_shard().len(),
        4,
        "records spread over 4 shards"
    );

    let work = Workdir::new();
    let config = work.config(&file_pipeline(
        &stream,
        &stack.kinesis,
        "buffer = { max_records = 250, max_age = \"1s\" }",
    ));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    let landed = read_landed(&work.path("out"));
    assert_eq!(landed.len(), 10_000, "every record once");
    let ids: HashSet<u64> = landed.iter().map(|l| l.id()).collect();
    assert_eq!(ids.len(), 10_000);
    // Order per shard: within the output, each shard's sequence numbers increase.
    let mut last: HashMap<&str, &kinesis_connectors_core::SequenceNumber> = HashMap::new();
    for l in &landed {
        if let Some(prev) = last.insert(&l.shard, &l.sequence) {
            assert!(&l.sequence > prev, "shard {} out of order", l.shard);
        }
        assert_eq!(
            ledger.records[&l.id()].0,
            l.shard,
            "record landed with its shard"
        );
    }
    // Checkpoint = last sequence per shard.
    let checkpoints = work.checkpoints("p");
    for (shard, seq) in ledger.last_per_shard() {
        assert_eq!(
            checkpoint_seq(&checkpoints[&shard]).as_ref(),
            Some(&seq),
            "checkpoint of {shard}"
        );
    }
    assert!(work.dead_letters("p").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_three_random_moments_loses_nothing_and_duplicates_only_after_the_last_checkpoint()
 {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("foundation-kill");
    client.create(&stream, 4).await.unwrap();
    let total = 12_000u64;
    let ledger = put_records(&client, &stream, 0..total, 61, &|_| false).await;

    let work = Workdir::new();
    // Small pages and batches make the run last a few seconds, so kills land mid-stream.
    let config = work.config(&file_pipeline(
        &stream,
        &stack.kinesis,
        "buffer = { max_records = 40, max_age = \"200ms\" }",
    ));
    let config_text = std::fs::read_to_string(&config).unwrap().replace(
        "idle_poll_interval = \"200ms\"",
        "idle_poll_interval = \"200ms\", max_records_per_call = 150",
    );
    std::fs::write(&config, config_text).unwrap();

    let mut rng = rand::rng();
    // Checkpoints as they stood when run k started (run 0: none).
    let mut at_start: Vec<BTreeMap<String, Checkpoint>> = vec![BTreeMap::new()];
    for run in 0..3 {
        let out = format!("out-{run}");
        let mut c = Connector::start(
            work.dir.path(),
            &config,
            "p",
            &[],
            &[("OUT_DIR", out.clone())],
        );
        // A random moment while records are flowing: after a random share of the remaining records
        // landed in this run's output (or a short random time if the run is still starting).
        let target = rng.random_range(200..1_500);
        let out_dir = work.path(&out);
        wait_until(
            Duration::from_secs(60),
            "records to flow before the kill",
            || read_landed(&out_dir).len() >= target,
        );
        c.kill();
        at_start.push(work.checkpoints("p"));
        eprintln!(
            "run {run}: killed after >= {target} records; checkpoints {:?}",
            at_start
                .last()
                .unwrap()
                .values()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
        );
    }
    Connector::run_until_tip(
        work.dir.path(),
        &config,
        "p",
        &[("OUT_DIR", "out-3".into())],
    );

    let mut seen: HashMap<u64, u32> = HashMap::new();
    for (run, start) in at_start.iter().enumerate() {
        let landed = read_landed(&work.path(&format!("out-{run}")));
        let mut in_run = HashSet::new();
        for l in &landed {
            assert!(
                in_run.insert(l.id()),
                "run {run}: record {} twice in one run",
                l.id()
            );
            *seen.entry(l.id()).or_default() += 1;
            // A restarted run delivers only records after the checkpoint stored when it started.
            if let Some(seq) = start.get(&l.shard).and_then(checkpoint_seq) {
                assert!(
                    l.sequence > seq,
                    "run {run} redelivered record {} at or before its checkpoint",
                    l.id()
                );
            }
        }
    }
    let missing: Vec<u64> = (0..total).filter(|id| !seen.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "lost {} records, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let duplicates = seen.values().filter(|n| **n > 1).count();
    eprintln!("{total} records, {duplicates} delivered more than once (all after a checkpoint)");
    let checkpoints = work.checkpoints("p");
    for (shard, seq) in ledger.last_per_shard() {
        assert_eq!(checkpoint_seq(&checkpoints[&shard]).as_ref(), Some(&seq));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_records_are_dead_lettered_and_the_rest_flows() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("foundation-dlq");
    client.create(&stream, 2).await.unwrap();
    let bad = |id: u64| id % 100 == 7;
    let ledger = put_records(&client, &stream, 0..1_000, 13, &bad).await;

    let work = Workdir::new();
    let config = work.config(&file_pipeline(
        &stream,
        &stack.kinesis,
        "buffer = { max_records = 100, max_age = \"500ms\" }",
    ));
    Connector::run_until_tip(work.dir.path(), &config, "p", &[]);

    let landed = read_landed(&work.path("out"));
    assert_eq!(landed.len(), 990);
    assert!(landed.iter().all(|l| !bad(l.id())));
    let dead = work.dead_letters("p");
    assert_eq!(dead.len(), 10);
    for d in &dead {
        assert!(d.reason.starts_with("invalid JSON"), "{}", d.reason);
        let text = String::from_utf8(d.data.to_vec()).unwrap();
        let id: u64 = text.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(bad(id));
        assert_eq!(
            ledger.records[&id].1, d.sequence,
            "dead letter carries the record's sequence number"
        );
        assert_eq!(ledger.records[&id].0, d.shard);
        assert_eq!(d.pipeline, "p");
    }
    // Dead-lettered records count as delivered: checkpoints reach the last record of each shard.
    let checkpoints = work.checkpoints("p");
    for (shard, seq) in ledger.last_per_shard() {
        assert_eq!(checkpoint_seq(&checkpoints[&shard]).as_ref(), Some(&seq));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_while_running_reads_children_after_the_parent_ends_and_keeps_per_key_order() {
    let stack = Stack::from_env();
    let client = stack.streams().await;
    let stream = unique("foundation-split");
    client.create(&stream, 1).await.unwrap();
    let keys = 20;
    let mut ledger = put_records(&client, &stream, 0..2_000, keys, &|_| false).await;

    let work = Workdir::new();
    let config = work.config(&file_pipeline(
        &stream,
        &stack.kinesis,
        "buffer = { max_records = 100, max_age = \"200ms\" }",
    ));
    let mut c = Connector::start(work.dir.path(), &config, "p", &[], &[]);
    let out = work.path("out");
    wait_until(
        Duration::from_secs(60),
        "the pipeline to read the parent",
        || read_landed(&out).len() >= 500,
    );

    let parent = client.shards(&stream).await.unwrap().remove(0);
    client.split_in_half(&stream, &parent).await.unwrap();
    let children: Vec<String> = client
        .shards(&stream)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.parent_shard_id.as_deref() == Some(&parent.shard_id))
        .map(|s| s.shard_id)
        .collect();
    assert_eq!(children.len(), 2);
    let after = put_records(&client, &stream, 2_000..4_000, keys, &|_| false).await;
    ledger.records.extend(after.records);
    assert!(
        ledger
            .records
            .range(2_000..)
            .all(|(_, (s, _))| children.contains(s)),
        "new records go to the children"
    );

    wait_until(Duration::from_secs(60), "every record to land", || {
        read_landed(&out).len() >= 4_000
    });
    c.terminate();
    assert!(
        c.wait(Duration::from_secs(30)).success(),
        "graceful shutdown"
    );

    let landed = read_landed(&out);
    let ids: HashSet<u64> = landed.iter().map(|l| l.id()).collect();
    assert_eq!(ids.len(), 4_000, "no record lost");
    // Children only after the parent's end: every parent line precedes every child line.
    let last_parent = landed
        .iter()
        .rposition(|l| l.shard == parent.shard_id)
        .unwrap();
    let first_child = landed
        .iter()
        .position(|l| children.contains(&l.shard))
        .unwrap();
    assert!(
        last_parent < first_child,
        "a child record landed before the parent was finished"
    );
    // Per-key order: each key's counter increases through the output.
    let mut per_key: HashMap<String, i64> = HashMap::new();
    for l in &landed {
        let n = l.data["n"].as_i64().unwrap();
        let prev = per_key.insert(l.partition_key.clone(), n).unwrap_or(-1);
        assert!(
            n > prev,
            "key {} out of order: {n} after {prev}",
            l.partition_key
        );
    }
    let checkpoints = work.checkpoints("p");
    assert_eq!(checkpoints[&parent.shard_id], Checkpoint::ShardEnd);
    for child in &children {
        assert!(
            checkpoints[child].position().is_some(),
            "child {child} checkpointed"
        );
    }
}
